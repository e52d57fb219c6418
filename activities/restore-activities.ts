/**
 * Thin Temporal activities over the restore engine (activities/plan, preflight, copy, validate). They resolve
 * database references to pools inside the worker (I5), load the plan from S3 by location and digest (an in-worker
 * cache keeps one parsed copy), heartbeat, pass `cancellationSignal()` into I/O, resume a chunked copy from the
 * checkpoint in `activityInfo().heartbeatDetails`, and turn the engine's named errors into non-retryable
 * ApplicationFailures. Payloads carry counts and digests, never rows.
 */
import { activityInfo, cancellationSignal, heartbeat, log } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import type { S3Client } from '@aws-sdk/client-s3';
import { createHash } from 'node:crypto';
import { copyTenant } from './copy';
import { withEarlierWrites, type CopyTotals } from './copy/common';
import { dedicatedSession, type Pools } from './db';
import { classifyDbError, isPgError, nonRetryableErrorTypes, reduceDbError } from './errors';
import { validateConfig } from './config';
import { buildPlan, fkChecksFromEnv, type Plan } from './plan';
import { preflightTenant } from './preflight';
import type {
  ConflictPolicy,
  CopyCheckpoint,
  CopyResult,
  PreflightResult,
  RestoreConfig,
  TenantId,
  ValidationResult,
} from './restore-types';
import {
  defaultGovernorOptions,
  latencyBudgetFromEnv,
  LiveGovernor,
  LivePressure,
  type Pacer,
  type YieldToLive,
} from './live-pressure';
import { getText, putJson, putText } from './s3';
import { rowsRestored, throttleWait } from './metrics';
import { validateTenant } from './validate';
import type { ComparedStepInput } from './sql/session';
import type { ArtifactsRef, ObjectRef, PlanRef } from './restore-types';

/**
 * The activity boundary, for every activity group (activities/index.ts wraps them all): engine errors become
 * non-retryable failures of the same type; PostgreSQL errors are reduced (activities/errors.ts: SQLSTATE, table,
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

async function engineCall<T>(fn: () => Promise<T>): Promise<T> {
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
async function copyCall<T>(fn: () => Promise<T>, wrote: () => boolean): Promise<T> {
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

function engineCallSync<T>(fn: () => T): T {
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

const committedMarker = { committed: true } as const;

function isCheckpoint(details: unknown): details is CopyCheckpoint {
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

export interface TenantStepInput {
  restoreId: string;
  scratch: string;
  live: string;
  plan: PlanRef;
  tenantId: TenantId;
  /** A group restored together (set-based, one copy transaction); `tenantId` is then its first tenant. */
  tenantIds?: TenantId[];
  conflict: ConflictPolicy;
  /** Preflight's depth (see PreflightResult.checks); default full. */
  preflightChecks?: 'full' | 'state';
  /** A partial tenant (allowPartial): the copy records the keys it inserts, validation checks the backup's keys are back. */
  partial?: boolean;
  /** For validation under skip: the rows the copy kept per table (its `skipped`); every other row must be the backup's. */
  kept?: Record<string, number>;
  /** For validation: the copy went direct and proved every reference before its COMMIT (validate.ts). */
  referencesProven?: boolean;
  /** For the copy: tenants preflight found absent that nothing of this restore wrote yet (checked again under the lock). */
  expectAbsent?: TenantId[];
  /** Where a partial tenant's copy stores the keys it inserted (see storeRestoredKeys). */
  artifacts?: ArtifactsRef;
  /** An incident window's revert: scratch is T0 narrowed to the delta; the copy sets changed rows back (window.ts). */
  window?: boolean;
}

/**
 * A partial tenant's restored keys go to S3, not into workflow history: a primary key can be row data (an email), and
 * 1,000 keys per table can grow a payload toward its limit. The result keeps the counts and the object's location. A
 * retry after the COMMIT inserts nothing: it leaves the first attempt's list as it is.
 */
export function restoredKeysObject(artifacts: ArtifactsRef, tenantId: TenantId): ObjectRef {
  return { bucket: artifacts.bucket, key: `${artifacts.prefix}restored-keys/${tenantId}.json` };
}

/** Plans parsed in this worker, by digest. A plan is the same for every tenant of a restore, so one copy serves all. */
const planCache = new Map<string, Promise<Plan>>();
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

export function createRestoreActivities({ pools, s3 }: { pools: Pools; s3: S3Client }) {
  const loadPlan = planLoader(s3);

  /** Where a copy activity records the id of each attempt's first transaction, before committing it. */
  function copyCommitsObject(input: TenantStepInput): { bucket: string; key: string } | undefined {
    if (!input.artifacts) return undefined;
    const info = activityInfo();
    const execution = info.workflowExecution;
    if (!execution) return undefined;
    const unit = execution.workflowId.replace(/[^A-Za-z0-9._-]/g, '_');
    return {
      bucket: input.artifacts.bucket,
      key: `${input.artifacts.prefix}copies/${unit}-${info.activityId}-${execution.runId}.json`,
    };
  }

  async function readCommitEvidence(ref: { bucket: string; key: string }): Promise<string[]> {
    try {
      const ids = JSON.parse(await getText(s3, ref)) as unknown;
      return Array.isArray(ids) ? ids.filter((id): id is string => typeof id === 'string' && /^\d+$/.test(id)) : [];
    } catch (error) {
      if ((error as { name?: string }).name === 'NoSuchKey') return [];
      throw error;
    }
  }

  /** The transactions earlier attempts were about to commit that did commit. */
  async function committedEarlier(live: string, ref: { bucket: string; key: string }): Promise<string[]> {
    const ids = await readCommitEvidence(ref);
    if (!ids.length) return [];
    const { rows } = await pools
      .get(live)
      .query<{ id: string }>(`SELECT id FROM unnest($1::text[]) AS id WHERE pg_xact_status(id::xid8) = 'committed'`, [
        ids,
      ]);
    return rows.map((r) => r.id);
  }

  /** Where a partial tenant's copy records what a transaction wrote, before recording its id and committing it. */
  function writtenObject(evidence: { bucket: string; key: string }, transactionId: string) {
    return { bucket: evidence.bucket, key: evidence.key.replace(/\.json$/, `-written-${transactionId}.json`) };
  }

  /**
   * What the committed transactions of earlier attempts of a partial tenant's copy wrote. A record that is missing
   * (a worker of a release before this one committed it) is named in the log: the report then counts only this
   * attempt's inserts, as those releases did.
   */
  async function earlierWrites(
    evidence: { bucket: string; key: string },
    committed: string[],
    tenantId: TenantId,
  ): Promise<CopyTotals[]> {
    const found: CopyTotals[] = [];
    for (const id of committed) {
      const ref = writtenObject(evidence, id);
      try {
        found.push(JSON.parse(await getText(s3, ref)) as CopyTotals);
      } catch (error) {
        if ((error as { name?: string }).name !== 'NoSuchKey') throw error;
        log.warn('an earlier attempt committed without recording what it wrote; the report counts only this attempt', {
          tenantId,
          transactionId: id,
          object: `s3://${ref.bucket}/${ref.key}`,
        });
      }
    }
    return found;
  }

  async function storeRestoredKeys(input: TenantStepInput, result: CopyResult): Promise<CopyResult> {
    if (!input.artifacts || !result.restoredKeys) return result;
    const ref = restoredKeysObject(input.artifacts, input.tenantId);
    if (Object.values(result.restoredKeys).some((k) => k.total > 0)) await putJson(s3, ref, result.restoredKeys);
    const counts = Object.fromEntries(
      Object.entries(result.restoredKeys).map(([table, k]) => [table, { keys: [], total: k.total }]),
    );
    return { ...result, restoredKeys: counts, restoredKeysObject: ref };
  }

  const dbs = (input: { scratch: string; live: string }) => ({
    scratch: pools.get(input.scratch),
    live: pools.get(input.live),
  });

  // Adaptive throttling (activities/live-pressure.ts), one per live database: on unless the worker's environment says
  // TENANT_RESTORE_THROTTLE=off.
  const pressures = new Map<string, LivePressure>();
  const throttleOn = (process.env.TENANT_RESTORE_THROTTLE ?? 'on') !== 'off';
  const yieldToLive = (live: string): YieldToLive | undefined => {
    if (!throttleOn) return undefined;
    let pressure = pressures.get(live);
    if (!pressure) pressures.set(live, (pressure = new LivePressure()));
    return (client, signal) => pressure.yieldToLive(client, signal ?? cancellationSignal());
  };

  // Pacing of the copy pipes to live's latency budget (live-pressure.ts LiveGovernor), one per live database: the p90 of
  // live's SELECT 1 may grow to TENANT_RESTORE_LIVE_LATENCY_BUDGET times its baseline (unset or 'off': no pacing).
  const governors = new Map<string, LiveGovernor>();
  const budget = latencyBudgetFromEnv();
  const governor = (live: string): LiveGovernor | undefined => {
    if (!throttleOn || budget === undefined) return undefined;
    let g = governors.get(live);
    if (!g)
      governors.set(
        live,
        (g = new LiveGovernor(() => dedicatedSession(pools.get(live), 'tenant-restore-latency-sampler'), {
          ...defaultGovernorOptions,
          budget,
        })),
      );
    return g;
  };
  /** Runs a step with live's governor sampling (the pacer of its copy pipes, when it has any). */
  const governed = async <T>(live: string, fn: (pacer?: Pacer) => Promise<T>): Promise<T> => {
    const g = governor(live);
    const release = await g?.acquire();
    try {
      return await fn(g);
    } finally {
      release?.();
    }
  };

  /** What preflight and validate share: both databases, the plan, the tenants, the policy, the throttle. */
  const comparedStep = async (input: TenantStepInput): Promise<ComparedStepInput> => ({
    ...dbs(input),
    plan: await loadPlan(input.plan),
    tenantId: input.tenantId,
    tenantIds: input.tenantIds,
    conflict: input.conflict,
    yieldToLive: yieldToLive(input.live),
  });

  // Who checks FKs during the copy (BuildPlanInput.fkChecks); a bad value stops the worker at start.
  const fkChecks = fkChecksFromEnv();

  return {
    /** Builds the plan once for the whole restore and stores it in S3; children get its location and digest. */
    async buildRestorePlan(input: {
      restoreId: string;
      scratch: string;
      live: string;
      tenantRoot: string;
      config?: RestoreConfig;
      artifacts: ArtifactsRef;
      /** discover compares what it can: drift that would stop a restore is reported in the plan instead. */
      purpose?: 'restore' | 'discover';
    }): Promise<PlanRef> {
      // The config is checked again here, whoever started the workflow (the CLI, a drill schedule, another client).
      const config =
        input.config === undefined
          ? undefined
          : engineCallSync(() => validateConfig(input.config, 'the restore config'));
      const plan = await heartbeating(
        () => ({ stage: 'plan' }),
        () =>
          engineCall(() =>
            buildPlan({
              ...dbs(input),
              tenantRoot: input.tenantRoot,
              config,
              fkChecks,
              ...(input.purpose === 'discover' ? { tolerateDrift: true } : {}),
            }),
          ),
      );
      const text = JSON.stringify(plan);
      const key = `${input.artifacts.prefix}plan.json`;
      await putText(s3, { bucket: input.artifacts.bucket, key }, text, 'application/json');
      planCache.set(plan.digest, Promise.resolve(plan));
      log.info('plan stored', {
        digest: plan.digest,
        tables: plan.tables.length,
        bytes: text.length,
        sha256: createHash('sha256').update(text).digest('hex'),
      });
      return {
        bucket: input.artifacts.bucket,
        key,
        digest: plan.digest,
        tables: plan.tables.length,
        rootKeyType: plan.rootKey.type,
      };
    },

    async preflightTenantRestore(input: TenantStepInput): Promise<PreflightResult> {
      const step = await comparedStep(input);
      return heartbeating(
        () => ({ stage: 'preflight' }),
        () => engineCall(() => preflightTenant({ ...step, checks: input.preflightChecks })),
      );
    },

    /**
     * Copies one tenant. A chunked copy heartbeats its CopyCheckpoint after each chunk; a retry (another worker, after
     * a crash) resumes from the last heartbeat. A one-transaction copy that dies before its COMMIT commits nothing, so a
     * retry starts over; right after its COMMIT it heartbeats `{ committed: true }`.
     *
     * One restore of a tenant at a time (I7), on every attempt: "this restore wrote it" is evidence, not an attempt
     * number. A retry whose predecessors heartbeated a commit (the marker, or a checkpoint) copies again over its own
     * rows; any other attempt checks `expectAbsent` again under the tenant lock, and a retry accepts a tenant it finds
     * present only when live's rows equal scratch's (an earlier attempt may have committed and died before its
     * heartbeat left the worker).
     */
    async copyTenantRows(input: TenantStepInput & { chunkRows?: number }): Promise<CopyResult> {
      const plan = await loadPlan(input.plan);
      const { attempt } = activityInfo();
      const evidence = copyCommitsObject(input);
      let earlier = copyEvidence(activityInfo().heartbeatDetails);
      // The heartbeat after a COMMIT may be lost with a killed worker: the transaction ids recorded before each first
      // COMMIT of an attempt say for sure whether an earlier attempt committed. A partial tenant's retry also needs
      // what those transactions wrote: it cannot tell their inserts from the rows the tenant's users kept.
      const committed =
        attempt > 1 && evidence && (!earlier.committed || input.partial)
          ? await committedEarlier(input.live, evidence)
          : [];
      if (committed.length && !earlier.committed) earlier = { committed: true };
      const written = input.partial && evidence ? await earlierWrites(evidence, committed, input.tenantId) : [];
      let recorded = false;
      const resumeFrom = earlier.checkpoint;
      let last: CopyHeartbeat | undefined = resumeFrom ?? (earlier.committed ? committedMarker : undefined);
      if (resumeFrom)
        log.info('resuming copy from checkpoint', {
          tenantId: input.tenantId,
          tableIndex: resumeFrom.tableIndex,
          attempt,
        });
      else if (earlier.committed)
        log.info('an earlier attempt committed this copy; copying again over its own rows', {
          tenantId: input.tenantId,
          attempt,
        });
      const result = await heartbeating(
        () => last,
        () =>
          copyCall(
            () =>
              governed(input.live, (pacer) =>
                copyTenant({
                  ...dbs(input),
                  plan,
                  tenantIds: input.tenantIds ?? [input.tenantId],
                  conflict: input.conflict,
                  chunkRows: input.chunkRows,
                  resumeFrom,
                  onCheckpoint: (checkpoint: CopyCheckpoint) => {
                    last = checkpoint;
                    heartbeat(checkpoint);
                  },
                  onCommitted: () => {
                    // A checkpoint says more (and already says that something was committed): it is kept.
                    if (last && isCheckpoint(last)) return;
                    last = committedMarker;
                    heartbeat(last);
                  },
                  beforeCommit: async (transactionId, pending) => {
                    if (recorded || !evidence) return;
                    // What it wrote first, then its id: a committed id always has its record.
                    if (input.partial && pending) await putJson(s3, writtenObject(evidence, transactionId), pending);
                    const ids = await readCommitEvidence(evidence);
                    await putJson(s3, evidence, [...ids, transactionId]);
                    recorded = true;
                  },
                  onLockWait: (tenantId, holder) =>
                    log.warn('tenant lock held by another session; waiting for it', { tenantId, holder }),
                  signal: cancellationSignal(),
                  yieldToLive: yieldToLive(input.live),
                  recordKeys: input.partial,
                  ...(input.window ? { window: true } : {}),
                  restoreId: input.restoreId,
                  expectAbsent: earlier.committed ? undefined : input.expectAbsent,
                  presentMayBeOwn: !earlier.committed && attempt > 1,
                  earlierAttemptCommitted: earlier.committed,
                  pacer,
                }),
              ),
            () => last !== undefined,
          ),
      );
      rowsRestored(Object.values(result.rows).reduce((a, b) => a + b, 0));
      throttleWait(result.throttledMs ?? 0);
      if (!input.partial) return result;
      return await storeRestoredKeys(input, written.length ? withEarlierWrites(result, written) : result);
    },

    async validateTenantRows(input: TenantStepInput): Promise<ValidationResult> {
      const step = await comparedStep(input);
      return heartbeating(
        () => ({ stage: 'validate' }),
        () =>
          engineCall(() =>
            // Sampling runs during validation too: its baseline and window stay current for the next copy.
            governed(input.live, () =>
              validateTenant({
                ...step,
                partial: input.partial,
                kept: input.kept,
                referencesProven: input.referencesProven && !input.partial,
              }),
            ),
          ),
      );
    },
  };
}
