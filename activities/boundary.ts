/**
 * The activity boundary: the engine's errors turned into ApplicationFailures (named ones non-retryable), the one
 * heartbeat helper, what a copy heartbeats, and the plan loaded from S3 by location and digest with an in-worker cache.
 */
import { heartbeat } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import type { S3Client } from '@aws-sdk/client-s3';
import { classifyDbError, isPgError, nonRetryableErrorTypes, reduceDbError } from './errors';
import { type Plan } from './plan';
import type { CopyCheckpoint } from './restore-types';
import { getText } from './s3';
import type { PlanRef } from './restore-types';

/**
 * The activity boundary, for every activity group (activities/index.ts wraps them all): engine errors become
 * non-retryable failures of the same type; PostgreSQL errors are reduced (activities/errors/: SQLSTATE, table,
 * constraint, never `detail`, `where` or a data error's message) and classified, so that only transient ones
 * (serialization failure, deadlock, lock timeout, lost connection, restarting server) are retried. The failure gets
 * no `cause`: Temporal would serialize the original error, message and stack, into history.
 */
export function toActivityFailure(error: unknown): unknown {
  if (error instanceof ApplicationFailure) return error;
  const e = error as Error;
  // Every later step would meet the same empty scratch: not retried, and the unit does not split (restore-unit.ts).
  if (e?.name === 'ScratchResetError')
    return ApplicationFailure.create({
      message: `${e.message} This restore does not load it again while units run on it: restore the tenants it reports failed with a new restore (tenant-restore start ... --tenants-file <the failed ids>), which loads scratch again.`,
      type: 'ScratchResetError',
      nonRetryable: true,
      details: [{ scratchReset: true }],
    });
  // A database error, or an error that wraps one (`cause`: Temporal would serialize the whole chain).
  let pgError: unknown = error;
  for (let depth = 0; depth < 5 && pgError && !isPgError(pgError); depth++)
    pgError = (pgError as { cause?: unknown }).cause;
  if (isPgError(pgError) && !(e && nonRetryableErrorTypes.includes(e.name))) {
    const named = classifyDbError(pgError);
    if (named)
      return ApplicationFailure.create({
        message: named.message,
        type: named.name,
        nonRetryable: true,
        details: [named.details],
      });
    const reduced = reduceDbError(pgError);
    const { sqlState, condition, schema, table, constraint } = reduced;
    return ApplicationFailure.create({
      message: `${sqlState === '55P03' ? 'A lock on live was not granted within TENANT_RESTORE_LOCK_TIMEOUT (a migration or a long transaction holds it); retrying with backoff' : 'A transient database error; retrying with backoff'}: ${reduced.message}`,
      type: sqlState === '55P03' ? 'LockTimeoutError' : 'TransientDatabaseError',
      nonRetryable: false,
      details: [{ sqlState, condition, schema, table, constraint }],
    });
  }
  if (e && nonRetryableErrorTypes.includes(e.name)) return ApplicationFailure.nonRetryable(e.message, e.name);
  return error;
}

export async function engineCall<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (error) {
    throw toActivityFailure(error);
  }
}

/**
 * The copy's boundary: as engineCall, and a failure that ends the copy for good after this restore committed rows of it
 * (a chunk, an earlier attempt's transaction) says so in its details (`committed: true`), so that the unit restores
 * those tenants again as its own (workflows/restore-unit.ts) and not as strangers that came back into live.
 */
export async function copyCall<T>(fn: () => Promise<T>, wrote: () => boolean): Promise<T> {
  try {
    return await fn();
  } catch (error) {
    const failure = toActivityFailure(error);
    if (!(failure instanceof ApplicationFailure) || !failure.nonRetryable || !wrote()) throw failure;
    throw ApplicationFailure.create({
      message: failure.message,
      type: failure.type ?? undefined,
      nonRetryable: true,
      details: [{ ...(failure.details?.[0] as object | undefined), committed: true }],
    });
  }
}

export function engineCallSync<T>(fn: () => T): T {
  try {
    return fn();
  } catch (error) {
    throw toActivityFailure(error);
  }
}

/**
 * Heartbeats `details()` every few seconds while `work` runs (a one-transaction copy has no checkpoints to report;
 * discover's tables done so far).
 */
export async function heartbeating<T>(details: () => unknown, work: () => Promise<T>, ms = 2000): Promise<T> {
  heartbeat(details());
  const timer = setInterval(() => heartbeat(details()), ms);
  try {
    return await work();
  } finally {
    clearInterval(timer);
  }
}

/** What a copy heartbeats: its checkpoint (chunks), or, once its one transaction committed, the commit marker. */
export type CopyHeartbeat = CopyCheckpoint | { committed: true };

export const committedMarker = { committed: true } as const;

export function isCheckpoint(details: unknown): details is CopyCheckpoint {
  return typeof details === 'object' && details !== null && typeof (details as CopyCheckpoint).tableIndex === 'number';
}

/**
 * What earlier attempts of a copy reported: a checkpoint (a chunk committed) or the commit marker. Either is evidence
 * that this restore wrote the tenants; no heartbeat, or another one, is not.
 */
export function copyEvidence(details: unknown): { checkpoint?: CopyCheckpoint; committed: boolean } {
  if (isCheckpoint(details)) return { checkpoint: details, committed: true };
  return { committed: (details as { committed?: unknown } | undefined)?.committed === true };
}

/** Plans parsed in this worker, by digest. A plan is the same for every tenant of a restore, so one copy serves all. */
export const planCache = new Map<string, Promise<Plan>>();
const planCacheLimit = 8;

/**
 * Reads a plan from S3 by location and digest (a plan whose digest differs is refused: PlanMismatchError), parsed once
 * per worker: restore units and discover's tables share it.
 */
export function planLoader(s3: S3Client): (ref: PlanRef) => Promise<Plan> {
  return function loadPlan(ref: PlanRef): Promise<Plan> {
    let plan = planCache.get(ref.digest);
    if (!plan) {
      plan = getText(s3, ref).then((text) => {
        const parsed = JSON.parse(text) as Plan;
        if (parsed.digest !== ref.digest) {
          throw ApplicationFailure.nonRetryable(
            `Plan s3://${ref.bucket}/${ref.key} has digest ${parsed.digest}, the restore expects ${ref.digest}.`,
            'PlanMismatchError',
          );
        }
        return parsed;
      });
      plan.catch(() => planCache.delete(ref.digest));
      planCache.set(ref.digest, plan);
      while (planCache.size > planCacheLimit) planCache.delete(planCache.keys().next().value as string);
    }
    return plan;
  };
}
