/**
 * Re-enable a restored tenant: the post-restore actions of the config file (switch billing back on, re-activate app
 * installations). One activity call per action, so that each action retries with backoff on its own and a done
 * action is not repeated after a later one fails. Every action carries the idempotency key
 * `restoreId/tenantId/action`: SQL gets it as `$2`, a webhook as the `Idempotency-Key` header.
 */
import { activityInfo, cancellationSignal, heartbeat, log } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { envHeaderProblem, isSecretHeaderName } from './config';
import type { Pools } from './db';
import { isPgError, reduceDbError } from './errors';
import { toActivityFailure } from './boundary';
import type { ReenableAction, TenantId } from './restore-types';

export const idempotencyKey = (restoreId: string, tenantId: TenantId, action: string): string =>
  `${restoreId}/${tenantId}/${action}`;

export interface RunActionInput {
  restoreId: string;
  tenantId: TenantId;
  live: string;
  action: ReenableAction;
}

export interface RunActionResult {
  name: string;
  attempts: number;
  detail: string;
  durationMs: number;
}
export interface GroupActionResult extends RunActionResult {
  rejected: Array<{ tenantId: TenantId; message: string }>;
}

/**
 * `env:NAME` header values are read from the worker's environment, so that no secret sits in config or history; only
 * variables named TENANT_RESTORE_WEBHOOK_* (config.ts webhookEnvPrefix), so that no config can send the worker's other
 * secrets anywhere. A header that looks like a secret (see isSecretHeaderName) must come from `env:`. Config validation
 * refuses both, and so does the worker, for an input that did not go through it.
 */
export function resolveHeaders(
  headers: Record<string, string> = {},
  env: NodeJS.ProcessEnv = process.env,
): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (!value.startsWith('env:') && isSecretHeaderName(name)) {
      throw ApplicationFailure.nonRetryable(
        `Header ${name} of a webhook looks like a secret but is given literally: give it as 'env:NAME', NAME being a variable of the worker's environment named TENANT_RESTORE_WEBHOOK_*.`,
        'InvalidConfigError',
      );
    }
    if (value.startsWith('env:')) {
      const problem = envHeaderProblem(value);
      if (problem)
        throw ApplicationFailure.nonRetryable(`Header ${name} of a webhook ${problem}.`, 'InvalidConfigError');
      const variable = value.slice(4);
      const resolved = env[variable];
      if (resolved === undefined)
        throw ApplicationFailure.nonRetryable(
          `Header ${name} of a webhook names ${variable}, which is not set in the worker's environment.`,
          'InvalidConfigError',
        );
      out[name] = resolved;
    } else {
      out[name] = value;
    }
  }
  return out;
}

export const defaultWebhookTimeoutSeconds = 30;

/** Status codes that mean "try again later"; other 4xx mean the request itself is wrong. */
const retryableHttp = new Set([408, 409, 425, 429]);

export function createReenableActivities({ pools }: { pools: Pools }) {
  const activities = {
    async runReenableAction(input: RunActionInput): Promise<RunActionResult> {
      const started = Date.now();
      const { action, restoreId, tenantId } = input;
      const key = idempotencyKey(restoreId, tenantId, action.name);
      const attempts = activityInfo().attempt;
      if (action.type === 'sql') {
        // Only bind $2 when the statement uses it: Postgres refuses extra parameters.
        const values = /\$2\b/.test(action.sql) ? [tenantId, key] : [tenantId];
        // A database error is reduced and classified here (not only at the activity boundary): a group's action
        // reports each tenant's failure by its message, and a constraint or privilege error must not be retried.
        const result = await pools
          .get(input.live)
          .query(action.sql, values)
          .catch((error: unknown) => {
            throw sqlActionFailure(error);
          });
        log.info('re-enable action done', { action: action.name, tenantId, rowCount: result.rowCount, attempts });
        return {
          name: action.name,
          attempts,
          detail: `${result.command ?? 'SQL'} ${result.rowCount ?? 0}`,
          durationMs: Date.now() - started,
        };
      }
      // A webhook that never answers must not hold the tenant (or its whole group) until the activity times out.
      const timeoutSeconds = action.timeoutSeconds ?? defaultWebhookTimeoutSeconds;
      let response: Response;
      try {
        response = await fetch(action.url, {
          method: action.method ?? 'POST',
          headers: { 'content-type': 'application/json', ...resolveHeaders(action.headers), 'Idempotency-Key': key },
          body: JSON.stringify({ restoreId, tenantId, action: action.name, idempotencyKey: key }),
          signal: AbortSignal.any([cancellationSignal(), AbortSignal.timeout(timeoutSeconds * 1000)]),
          // Never follow a redirect: it would carry the headers (a token from env:) to wherever the answer points, and
          // a 301/302 turns the POST into a body-less GET that "succeeds" without doing the action.
          redirect: 'manual',
        });
      } catch (error) {
        // The error of a call that never got an answer (DNS, refused connection, an invalid header value) can quote
        // what it was given, a resolved env: secret included: only its name and code go on.
        if ((error as Error).name !== 'TimeoutError') {
          const code = (error as { cause?: { code?: string } }).cause?.code;
          throw ApplicationFailure.retryable(
            `Webhook ${action.name} could not be called (${(error as Error).name}${code ? ` ${code}` : ''}, attempt ${attempts}).`,
            'WebhookUnreachable',
          );
        }
        throw ApplicationFailure.retryable(
          `Webhook ${action.name} did not answer within ${timeoutSeconds} s (attempt ${attempts}).`,
          'WebhookTimeout',
        );
      }
      await response.arrayBuffer().catch(() => undefined);
      if (response.status >= 300 && response.status < 400) {
        throw ApplicationFailure.nonRetryable(
          `Webhook ${action.name} answered HTTP ${response.status}, a redirect to ${redirectTarget(action.url, response.headers.get('location'))}; ` +
            'webhooks do not follow redirects (the headers would go along): put the final URL in the config.',
          'WebhookRedirected',
        );
      }
      if (response.ok) {
        log.info('re-enable webhook done', { action: action.name, tenantId, status: response.status, attempts });
        return { name: action.name, attempts, detail: `HTTP ${response.status}`, durationMs: Date.now() - started };
      }
      const message = `Webhook ${action.name} answered HTTP ${response.status} (attempt ${attempts}).`;
      if (response.status >= 400 && response.status < 500 && !retryableHttp.has(response.status)) {
        throw ApplicationFailure.nonRetryable(message, 'WebhookRejected');
      }
      throw ApplicationFailure.retryable(message, 'WebhookUnavailable');
    },

    /**
     * One action for every tenant of a group, one after the other. A tenant whose call is rejected (a non-retryable
     * failure: a webhook's 4xx) is returned in `rejected` and the others go on. A tenant whose call may succeed later
     * (a 503, a lost connection) does not stop the others either: the activity fails retryably at the end, and the
     * retry skips the tenants that the heartbeat reported done. A tenant may be called twice when the worker dies
     * between its call and the heartbeat: each call carries its tenant's idempotency key for that case.
     */
    async runReenableActionForTenants(
      input: Omit<RunActionInput, 'tenantId'> & { tenantIds: TenantId[] },
    ): Promise<GroupActionResult> {
      const started = Date.now();
      const previous = activityInfo().heartbeatDetails as { done?: TenantId[]; details?: string[] } | undefined;
      const done = new Set<TenantId>(previous?.done ?? []);
      const details: string[] = [...(previous?.details ?? [])];
      const rejected: GroupActionResult['rejected'] = [];
      const retry: string[] = [];
      for (const tenantId of input.tenantIds) {
        if (done.has(tenantId)) continue;
        try {
          details.push((await activities.runReenableAction({ ...input, tenantId })).detail);
          done.add(tenantId);
          heartbeat({ done: [...done], details });
        } catch (error) {
          const failure = error as ApplicationFailure;
          if (failure instanceof ApplicationFailure && failure.nonRetryable)
            rejected.push({ tenantId, message: failure.message });
          else retry.push(`${tenantId}: ${(error as Error).message}`);
        }
      }
      if (retry.length)
        throw ApplicationFailure.retryable(
          `${input.action.name} failed for ${retry.length} tenant(s), retrying them: ${retry.slice(0, 3).join('; ')}`,
          'ActionRetry',
        );
      return {
        name: input.action.name,
        attempts: activityInfo().attempt,
        detail: summarize(details),
        durationMs: Date.now() - started,
        rejected,
      };
    },
  };
  return activities;
}

/** Where a redirect pointed, without its query or credentials (they may hold a token): origin and path only. */
export function redirectTarget(from: string, location: string | null): string {
  if (!location) return 'nowhere (no Location header)';
  try {
    const to = new URL(location, from);
    return `${to.origin}${to.pathname}${to.search ? ' (query left out)' : ''}`;
  } catch {
    return 'an unreadable Location';
  }
}

/**
 * A SQL action's database error, reduced and classified like every other (transient ones are retried), with words for
 * an action: the fix is in the action's SQL, its grants or live, not in the backup.
 */
function sqlActionFailure(error: unknown): unknown {
  const failure = toActivityFailure(error);
  if (!(failure instanceof ApplicationFailure) || !failure.nonRetryable || !isPgError(error)) return failure;
  const what =
    failure.type === 'InsufficientPrivilegeError'
      ? `grant the privilege it needs to the restore's role (README: Grants)`
      : failure.type === 'LiveReadOnlyError'
        ? 'point --live at the primary'
        : `fix the action's SQL in the config file, or the live data it reads`;
  return ApplicationFailure.create({
    // The workflow names the action (`Re-enable action <name> failed: ...`).
    message: `${reduceDbError(error).message}. Retrying will not help: ${what}, then run the action again by hand for this tenant (its rows are restored; a new restore would refuse it as present): the statement from the config with $1 = the tenant id and $2 = the idempotency key <restoreId>/<tenantId>/<action>.`,
    type: failure.type ?? undefined,
    nonRetryable: true,
    details: failure.details ?? undefined,
  });
}

/** `UPDATE 1` ×25 reads better than 25 repeats. */
function summarize(details: string[]): string {
  const counts = new Map<string, number>();
  for (const d of details) counts.set(d, (counts.get(d) ?? 0) + 1);
  return [...counts].map(([d, n]) => (n > 1 ? `${d} ×${n}` : d)).join(', ');
}
