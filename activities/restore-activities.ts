/**
 * Thin Temporal activities over the restore engine (activities/plan, preflight, copy, validate). They resolve
 * database references to pools inside the worker (I5), load the plan from S3 by location and digest (an in-worker
 * cache keeps one parsed copy), heartbeat, pass `cancellationSignal()` into I/O, resume a chunked copy from the
 * checkpoint in `activityInfo().heartbeatDetails`, and turn the engine's named errors into non-retryable
 * ApplicationFailures. Payloads carry counts and digests, never rows.
 */
import { activityInfo, cancellationSignal, heartbeat, log } from '@temporalio/activity';
import type { S3Client } from '@aws-sdk/client-s3';
import { createHash } from 'node:crypto';
import { copyTenant } from './copy';
import { withEarlierWrites } from './copy/common';
import { dedicatedSession, type Pools } from './db';
import { validateConfig } from './config';
import { buildPlan, fkChecksFromEnv } from './plan';
import { preflightTenant } from './preflight';
import type { CopyCheckpoint, CopyResult, PreflightResult, RestoreConfig, ValidationResult } from './restore-types';
import {
  defaultGovernorOptions,
  latencyBudgetFromEnv,
  LiveGovernor,
  LivePressure,
  type Pacer,
  type YieldToLive,
} from './live-pressure';
import { putJson, putText } from './s3';
import { rowsRestored, throttleWait } from './metrics';
import { validateTenant } from './validate';
import type { ComparedStepInput } from './sql/session';
import type { ArtifactsRef, PlanRef } from './restore-types';
import {
  committedMarker,
  copyCall,
  copyEvidence,
  engineCall,
  engineCallSync,
  heartbeating,
  isCheckpoint,
  planCache,
  planLoader,
  type CopyHeartbeat,
} from './boundary';
import { copyEvidenceStore } from './copy-evidence';

import type { TenantStepInput } from './step-input';
export { type TenantStepInput, restoredKeysObject } from './step-input';
export { toActivityFailure, heartbeating, copyEvidence, planLoader, type CopyHeartbeat } from './boundary';

export function createRestoreActivities({ pools, s3 }: { pools: Pools; s3: S3Client }) {
  const loadPlan = planLoader(s3);
  const { copyCommitsObject, committedEarlier, earlierWrites, readCommitEvidence, storeRestoredKeys, writtenObject } =
    copyEvidenceStore({ pools, s3 });

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
