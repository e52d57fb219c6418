/**
 * Re-enable a restored tenant: the post-restore actions of the config file (switch billing back on, re-activate app
 * installations). One activity call per action, so that each action retries with backoff on its own and a done
 * action is not repeated after a later one fails. Every action carries the idempotency key
 * `restoreId/tenantId/action`: SQL gets it as `$2`, a webhook as the `Idempotency-Key` header.
 */
import { activityInfo, cancellationSignal, log } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import type { Pools } from './db';
import type { ReenableAction, TenantId } from './restore-types';

export const idempotencyKey = (restoreId: string, tenantId: TenantId, action: string): string => `${restoreId}/${tenantId}/${action}`;

export interface RunActionInput {
  restoreId: string;
  tenantId: TenantId;
  live: string;
  action: ReenableAction;
}

export interface RunActionResult { name: string; attempts: number; detail: string; durationMs: number }

/** `env:NAME` header values are read from the worker's environment, so that no secret sits in config or history. */
export function resolveHeaders(headers: Record<string, string> = {}, env: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value.startsWith('env:')) {
      const variable = value.slice(4);
      const resolved = env[variable];
      if (resolved === undefined) throw ApplicationFailure.nonRetryable(`Header ${name} of a webhook names ${variable}, which is not set in the worker's environment.`, 'InvalidConfigError');
      out[name] = resolved;
    } else {
      out[name] = value;
    }
  }
  return out;
}

/** Status codes that mean "try again later"; other 4xx mean the request itself is wrong. */
const retryableHttp = new Set([408, 409, 425, 429]);

export function createReenableActivities({ pools }: { pools: Pools }) {
  return {
    async runReenableAction(input: RunActionInput): Promise<RunActionResult> {
      const started = Date.now();
      const { action, restoreId, tenantId } = input;
      const key = idempotencyKey(restoreId, tenantId, action.name);
      const attempts = activityInfo().attempt;
      if (action.type === 'sql') {
        // Only bind $2 when the statement uses it: Postgres refuses extra parameters.
        const values = /\$2\b/.test(action.sql) ? [tenantId, key] : [tenantId];
        const result = await pools.get(input.live).query(action.sql, values);
        log.info('re-enable action done', { action: action.name, tenantId, rowCount: result.rowCount, attempts });
        return { name: action.name, attempts, detail: `${result.command ?? 'SQL'} ${result.rowCount ?? 0}`, durationMs: Date.now() - started };
      }
      const response = await fetch(action.url, {
        method: action.method ?? 'POST',
        headers: { 'content-type': 'application/json', ...resolveHeaders(action.headers), 'Idempotency-Key': key },
        body: JSON.stringify({ restoreId, tenantId, action: action.name, idempotencyKey: key }),
        signal: cancellationSignal(),
      });
      await response.arrayBuffer().catch(() => undefined);
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
  };
}
