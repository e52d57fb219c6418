import {
  ApplicationFailure,
  CancellationScope,
  executeChild,
  log,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { DrillRecord } from '../activities/drill';
import { drillInput } from '../activities/input-contract';
import type { RestoreConfig, TenantId } from '../activities/restore-types';
import type { ScratchRisk } from '../activities/scratch-server';
import { parentActivities } from './activity-options';
import { failureMessage } from './failures';
import { checkWorkflowInput } from './input-check';
import { prepareScratch } from './scratch';
import { bulkRestore } from './bulk-restore';
import {
  bulkWorkflowId,
  defaultConcurrency,
  defaultGroupSize,
  RestoreIdKey,
  RestoreKindKey,
  RestorePhaseKey,
  type BulkRestoreResult,
  type ScratchInfo,
} from './definitions';

export interface RestoreDrillInput {
  /** `s3://bucket/prefix`: the newest pg_dump archive under it is drilled. */
  backupPrefix: string;
  /** Live: only its schema is read (pg_dump --schema-only). Alias or URL without password. */
  live: string;
  tenantRoot: string;
  /** How many tenants to restore. */
  sample: number;
  /** Server for the scratch and drill databases (default: live's server). */
  server?: string;
  /** Units restored at once, and tenants per unit: the defaults of a restore, so the drill proves the path restores take. */
  concurrency?: number;
  groupSize?: number;
  /** Logical FKs, excluded tables, chunk size. Re-enable actions are never run by a drill. */
  config?: RestoreConfig;
  /** Bucket for `drills/<id>.json` and the drill's restore artifacts (default: the backup's bucket). */
  bucket?: string;
  /** Set by `drill run --id`; scheduled runs derive one from their start time and run id. */
  drillId?: string;
  /** Load a backup that has no sha256 to verify it against (refused otherwise, BackupUnverified): `--allow-unverified-backup`. */
  allowUnverifiedBackup?: boolean;
  /**
   * The risks of loading the backup the operator accepted (`--unsafe-scratch-on-live-server`, `-as-live-role`,
   * `-as-superuser`); without them the worker refuses a scratch server that is live's, or a role that is live's or
   * reaches the host (activities/scratch-server.ts).
   */
  unsafeScratch?: ScratchRisk[];
}

const { steps } = parentActivities('drill');

function drillIdOf(): string {
  const info = workflowInfo();
  const stamp = new Date(info.startTime).toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
  return `${stamp}-${info.runId.slice(0, 8)}`;
}

const reason = (error: unknown): string => failureMessage(error).message;

/**
 * restoreDrill: proves, on a schedule, that a backup can be restored, and how fast.
 * Invariants:
 * - Live is never written: its schema is read with pg_dump --schema-only; the restore targets `drill_<id>`, a new
 *   database with that schema, through the same bulkRestore as a real restore (a child workflow).
 * - Re-enable actions are stripped: a drill must not switch billing on or call webhooks.
 * - The drill database and the scratch are dropped whatever happens.
 * - The figures (time to restore, rows per second) and the outcome are in the result and in `drills/<id>.json`.
 * - A drill that does not restore and validate every sampled tenant, or whose drill database does not hold exactly
 *   the rows the report claims, FAILS its workflow (non-retryable DrillFailed) after recording why.
 */
export async function restoreDrill(input: RestoreDrillInput): Promise<DrillRecord> {
  checkWorkflowInput('restoreDrill', drillInput, input);
  const drillId = input.drillId ?? drillIdOf();
  const restoreId = `drill-${drillId}`;
  // The contract took backupPrefix as s3://<bucket>[/<prefix>] and sample as a positive integer.
  const bucket = input.bucket ?? /^s3:\/\/([^/]+)/.exec(input.backupPrefix)![1]!;
  upsertSearchAttributes([
    { key: RestoreIdKey, value: restoreId },
    { key: RestoreKindKey, value: 'drill' },
    { key: RestorePhaseKey, value: 'running' },
  ]);

  const startedAt = Date.now();
  const record: DrillRecord = {
    drillId,
    status: 'failed',
    startedAt: new Date(startedAt).toISOString(),
    finishedAt: '',
    tenants: [],
    restored: 0,
    failed: 0,
    rows: 0,
    timeToRestoreMs: 0,
    rowsPerSecond: 0,
    restoreId,
    failures: [],
  };
  let scratch: ScratchInfo | undefined;
  let drill: string | undefined;
  try {
    const latest = await steps.findLatestBackup({ backupPrefix: input.backupPrefix });
    record.backup = latest.backup;
    record.backupCreatedAt = latest.lastModified;
    const restoreStarted = Date.now();
    scratch = await prepareScratch({
      kind: 'drill',
      id: restoreId,
      source: { kind: 'backup', backup: latest.backup, scratchServer: input.server },
      live: input.live,
      allowUnverifiedBackup: input.allowUnverifiedBackup,
      unsafeScratch: input.unsafeScratch,
      patience: 'drill',
    });
    record.timeToScratchMs = scratch.durationMs;
    record.tenants = await steps.sampleTenants({
      scratch: scratch.ref,
      tenantRoot: input.tenantRoot,
      sample: input.sample,
      drillId,
    });
    drill = (await steps.createDrillDatabase({ drillId, live: input.live, server: input.server })).drill;
    const result: BulkRestoreResult = await executeChild(bulkRestore, {
      workflowId: bulkWorkflowId(restoreId),
      args: [
        {
          restoreId,
          source: { kind: 'scratch', scratch: scratch.ref },
          live: drill,
          tenantRoot: input.tenantRoot,
          tenants: record.tenants as TenantId[],
          conflict: 'skip',
          concurrency: input.concurrency ?? defaultConcurrency,
          groupSize: input.groupSize ?? defaultGroupSize,
          config: { ...input.config, actions: [] },
          artifacts: { bucket, prefix: `drills/${drillId}/` },
        },
      ],
    });
    record.timeToRestoreMs = Date.now() - restoreStarted;
    record.restored = result.restored;
    record.failed = result.failed;
    record.report = result.report?.json;
    record.failures.push(...result.failures);
    if (result.report) {
      const check = await steps.checkDrillDatabase({ drill, report: result.report.json });
      record.rows = check.rows;
      record.rowCheck = { ok: check.ok, tables: check.tables, mismatches: check.mismatches };
    }
    record.rowsPerSecond = record.timeToRestoreMs > 0 ? Math.round(record.rows / (record.timeToRestoreMs / 1000)) : 0;
    const passed =
      result.status === 'succeeded' && result.restored === record.tenants.length && record.rowCheck?.ok === true;
    if (!passed) {
      record.error =
        result.status !== 'succeeded' || result.restored !== record.tenants.length
          ? `restored ${result.restored}/${record.tenants.length} tenants (restore ${result.status})`
          : `the drill database does not hold what the report says: ${JSON.stringify(record.rowCheck?.mismatches.slice(0, 5))}`;
    }
    record.status = passed ? 'passed' : 'failed';
  } catch (error) {
    record.error = reason(error);
    record.status = 'failed';
  }

  // Clean up and record even when the drill was cancelled.
  await CancellationScope.nonCancellable(async () => {
    if (drill)
      await steps
        .dropDrillDatabase({ drillId, drill, server: input.server, live: input.live })
        .catch((e: unknown) => log.error('could not drop the drill database', { error: reason(e) }));
    const dropScratch = scratch
      ? steps.dropScratch({ kind: 'drill', restoreId, scratch })
      : steps.dropDrillScratch({ restoreId, server: input.server ?? input.live });
    await dropScratch.catch((e: unknown) => log.error('could not drop the drill scratch', { error: reason(e) }));
    record.finishedAt = new Date(Date.now()).toISOString();
    await steps.recordDrill({ bucket, record });
  });
  upsertSearchAttributes([{ key: RestorePhaseKey, value: record.status }]);
  if (record.status === 'failed') {
    throw ApplicationFailure.nonRetryable(`Drill ${drillId} failed: ${record.error}`, 'DrillFailed', record);
  }
  return record;
}
