/**
 * npm run bench [-- --quick] [flags]: the product measured against the ideal COPY pipeline, side by side in one run.
 *
 *   1. product vs ideal  restore V of N tenants from a pg_dump -Fc archive in MinIO: `tenant-restore start --wait`
 *                        (worker and CLI as child processes) against pg_restore -j2 + one COPY pipe per table;
 *                        the ratio, rows/s, where the product's time goes, the orchestration overhead per tenant
 *                        (measured on empty tenants: a root row only)
 *   2. live protection   the workload writer's p50/p99 before and during the product's restore
 *   3. memory            the worker's peak RSS while it restores one tenant of 1M and one of 5M rows
 *   4. scale             one bulk restore of 10,000 empty tenants: wall time and continue-as-new runs
 *   7. discover          `tenant-restore discover` against one count(*) GROUP BY tenant per owned table and side, on
 *                        the main, wide and scale datasets (bench/discover.ts): the ratio, and the worker's peak RSS
 *   8. point in time     the same victims restored with `start --backup pgbackrest:<stanza>/<db> --at <moment>` from
 *                        the stack's WAL archive (bench/point-in-time.ts): scratch by recovery against scratch by
 *                        pg_restore of the dump, the end-to-end ratio against the same ideal, the recovery point
 *   9. window            the incident window's delta (narrowToWindow: T1 against T0, live for the touched tenants, T0
 *                        narrowed) against one count(*) GROUP BY tenant pass over T0's owned tables (bench/window.ts);
 *                        T0 and T1 are ordinary databases standing in for the recovered scratches: recovery time is
 *                        not included (section 8 measures it)
 *
 * Prints a table (Markdown) on stdout, progress on stderr, and writes bench-results/<timestamp>.json and
 * bench-results/latest.json. A piece of the product that is missing or fails is reported as such, never as a number.
 * Data is cached between runs by parameters (databases bench_src_*, bench_post_*, bench_big_*); --fresh-data rebuilds.
 * Exit code: 0 when every section ran (targets missed or not), 1 when a section could not run, 2 on bad flags.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { summarize, Writer, type LatencySummary, type WriterStats } from './workload/writer';
import { bigTenantDataset, mainDataset, rowsOfTenants, type MainDataset } from './bench/dataset';
import { count, mb, millis, percentile, ratio, seconds, table, verdict, type Row } from './bench/format';
import { copyTenants, runIdeal, type IdealResult } from './bench/ideal';
import { profileUnits, type UnitProfile } from './bench/unit-profile';
import { wideDataset } from './bench/wide';
import { discoverAvailable, discoverSideBySide, type DiscoverBenchRun } from './bench/discover';
import { pointInTimeIncident, writesAfterBackupInLive } from './bench/point-in-time';
import { windowSideBySide, type WindowBenchResult } from './bench/window';
import { toMicros } from '../activities/point-in-time';
import type { WorkloadTable } from './workload/model';
import { createDatabase, dbUrl, dropDatabase, say, serverVersion, sleep, benchEnv, query } from './bench/pg';
import { DbSampler, type StatementTime } from './bench/db-sampler';
import { isRetryableDbError } from '../activities/db';
import { scratchDatabaseName } from '../activities/scratch';
import {
  productReadiness,
  readReport,
  resultsDir,
  runStart,
  WorkerProcess,
  workflowProfile,
  type StartRun,
  type WorkflowProfile,
} from './bench/product';
import { projectRoot } from './stack';
import { defaultConcurrency, defaultGroupSize } from '../workflows/definitions';
import type { PointInTimeScratch } from '../activities/restore-types';

const usage = `npm run bench -- [--quick] [--tenants N] [--rows N] [--victims N] [--empty N] [--scale N]
                    [--big-rows 1000000,5000000] [--concurrency N] [--group-size N] [--scale-concurrency N] [--children-per-run N]
                    [--baseline-seconds S] [--writer-connections N] [--timeout-minutes M] [--overhead-timeout-minutes M]
                    [--scale-timeout-minutes M] [--memory-timeout-minutes M] [--seed N]
                    [--wide-tables N] [--wide-tenants N] [--wide-victims N] [--wide-rows N] [--wide-timeout-minutes M]
                    [--skip-ideal] [--skip-product] [--skip-overhead] [--skip-scale] [--skip-memory] [--skip-live]
                    [--skip-wide] [--skip-units] [--skip-discover] [--discover-timeout-minutes M]
                    [--skip-pitr] [--pitr-timeout-minutes M] [--skip-window] [--window-reps N]
                    [--discover-datasets main,wide,scale]
                    [--fresh-data] [--keep] [--json] [--out <file>]`;

interface Options {
  quick: boolean;
  tenants: number;
  rows: number;
  victims: number;
  empty: number;
  scale: number;
  bigRows: number[];
  concurrency?: number;
  groupSize?: number;
  scaleConcurrency?: number;
  childrenPerRun?: number;
  baselineSeconds: number;
  writerConnections: number;
  timeoutMinutes: number;
  scaleTimeoutMinutes: number;
  overheadTimeoutMinutes: number;
  memoryTimeoutMinutes: number;
  discoverTimeoutMinutes: number;
  pitrTimeoutMinutes: number;
  /** Repetitions of the window section (a fresh copy of T0 each). */
  windowReps: number;
  /** Datasets discover runs on; default main, plus wide and scale unless their sections are skipped. */
  discoverDatasets: string[];
  wide: { tables: number; tenants: number; victims: number; rowsPerTable: number; timeoutMinutes: number };
  seed: number;
  skip: Record<
    'ideal' | 'product' | 'overhead' | 'scale' | 'memory' | 'live' | 'wide' | 'units' | 'discover' | 'pitr' | 'window',
    boolean
  >;
  freshData: boolean;
  keep: boolean;
  json: boolean;
  out?: string;
}

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: false,
    options: {
      quick: { type: 'boolean' },
      tenants: { type: 'string' },
      rows: { type: 'string' },
      victims: { type: 'string' },
      empty: { type: 'string' },
      scale: { type: 'string' },
      'big-rows': { type: 'string' },
      concurrency: { type: 'string' },
      'group-size': { type: 'string' },
      'scale-concurrency': { type: 'string' },
      'children-per-run': { type: 'string' },
      'baseline-seconds': { type: 'string' },
      'writer-connections': { type: 'string' },
      'timeout-minutes': { type: 'string' },
      'scale-timeout-minutes': { type: 'string' },
      'overhead-timeout-minutes': { type: 'string' },
      'memory-timeout-minutes': { type: 'string' },
      'discover-timeout-minutes': { type: 'string' },
      'discover-datasets': { type: 'string' },
      'pitr-timeout-minutes': { type: 'string' },
      'window-reps': { type: 'string' },
      'wide-tables': { type: 'string' },
      'wide-tenants': { type: 'string' },
      'wide-victims': { type: 'string' },
      'wide-rows': { type: 'string' },
      'wide-timeout-minutes': { type: 'string' },
      seed: { type: 'string' },
      'skip-ideal': { type: 'boolean' },
      'skip-product': { type: 'boolean' },
      'skip-overhead': { type: 'boolean' },
      'skip-scale': { type: 'boolean' },
      'skip-memory': { type: 'boolean' },
      'skip-live': { type: 'boolean' },
      'skip-wide': { type: 'boolean' },
      'skip-units': { type: 'boolean' },
      'skip-discover': { type: 'boolean' },
      'skip-pitr': { type: 'boolean' },
      'skip-window': { type: 'boolean' },
      'fresh-data': { type: 'boolean' },
      keep: { type: 'boolean' },
      json: { type: 'boolean' },
      out: { type: 'string' },
      help: { type: 'boolean' },
    },
  });
  if (values.help) {
    process.stdout.write(`${usage}\n`);
    process.exit(0);
  }
  const quick = !!values.quick;
  const int = (name: string, value: string | undefined, fallback: number, min = 0): number => {
    if (value === undefined) return fallback;
    const n = Number(value.replace(/_/g, ''));
    if (!Number.isInteger(n) || n < min) throw new Error(`--${name} '${value}': an integer >= ${min}`);
    return n;
  };
  const optional = (name: string, value: string | undefined) =>
    value === undefined ? undefined : int(name, value, 0, 1);
  return {
    quick,
    tenants: int('tenants', values.tenants, quick ? 60 : 2000, 10),
    rows: int('rows', values.rows, quick ? 25_000 : 3_300_000, 1000),
    victims: int('victims', values.victims, quick ? 6 : 400, 1),
    empty: int('empty', values.empty, quick ? 4 : 20, 1),
    scale: int('scale', values.scale, quick ? 12 : 10_000, 1),
    bigRows: (values['big-rows'] ?? (quick ? '20000,100000' : '1000000,5000000'))
      .split(',')
      .map((s) => int('big-rows', s.trim(), 0, 1000)),
    concurrency: optional('concurrency', values.concurrency),
    // --quick: groups of 2, so that its few tenants still make several children (and continue-as-new, below).
    groupSize: optional('group-size', values['group-size']) ?? (quick ? 2 : undefined),
    scaleConcurrency: optional('scale-concurrency', values['scale-concurrency']),
    // --quick restores fewer tenants than a run holds by default: a smaller run size still exercises continue-as-new.
    childrenPerRun: optional('children-per-run', values['children-per-run']) ?? (quick ? 4 : undefined),
    baselineSeconds: int('baseline-seconds', values['baseline-seconds'], quick ? 4 : 15, 1),
    writerConnections: int('writer-connections', values['writer-connections'], 2, 1),
    timeoutMinutes: int('timeout-minutes', values['timeout-minutes'], quick ? 3 : 12, 1),
    scaleTimeoutMinutes: int('scale-timeout-minutes', values['scale-timeout-minutes'], quick ? 3 : 6, 1),
    overheadTimeoutMinutes: int('overhead-timeout-minutes', values['overhead-timeout-minutes'], quick ? 3 : 5, 1),
    memoryTimeoutMinutes: int('memory-timeout-minutes', values['memory-timeout-minutes'], quick ? 3 : 8, 1),
    discoverTimeoutMinutes: int('discover-timeout-minutes', values['discover-timeout-minutes'], quick ? 3 : 10, 1),
    pitrTimeoutMinutes: int('pitr-timeout-minutes', values['pitr-timeout-minutes'], quick ? 5 : 15, 1),
    windowReps: int('window-reps', values['window-reps'], 3, 1),
    discoverDatasets: (
      values['discover-datasets'] ??
      ['main', values['skip-wide'] ? '' : 'wide', values['skip-scale'] ? '' : 'scale'].filter(Boolean).join(',')
    )
      .split(',')
      .map((d) => d.trim())
      .filter((d) => {
        if (!['main', 'wide', 'scale'].includes(d)) throw new Error(`--discover-datasets '${d}': main, wide or scale`);
        return true;
      }),
    wide: {
      tables: int('wide-tables', values['wide-tables'], quick ? 24 : 120, 2),
      tenants: int('wide-tenants', values['wide-tenants'], quick ? 30 : 600, 2),
      victims: int('wide-victims', values['wide-victims'], quick ? 6 : 120, 1),
      rowsPerTable: int('wide-rows', values['wide-rows'], quick ? 2 : 5, 1),
      timeoutMinutes: int('wide-timeout-minutes', values['wide-timeout-minutes'], quick ? 3 : 10, 1),
    },
    seed: int('seed', values.seed, 42),
    skip: {
      ideal: !!values['skip-ideal'],
      product: !!values['skip-product'],
      overhead: !!values['skip-overhead'],
      scale: !!values['skip-scale'],
      memory: !!values['skip-memory'],
      live: !!values['skip-live'],
      wide: !!values['skip-wide'],
      units: !!values['skip-units'],
      discover: !!values['skip-discover'],
      pitr: !!values['skip-pitr'],
      window: !!values['skip-window'],
    },
    freshData: !!values['fresh-data'],
    keep: !!values.keep,
    json: !!values.json,
    out: values.out,
  };
}

// ---------------------------------------------------------------------------------------------------------------
// result shapes (the JSON file)

type SectionStatus = 'ok' | 'skipped' | 'not-available' | 'failed' | 'timed-out';

interface PhaseStats {
  tenants: number;
  sumMs: number;
  medianMs?: number;
  p95Ms?: number;
  maxMs?: number;
}

interface ProductRun {
  status: SectionStatus;
  reason?: string;
  restoreId?: string;
  wallMs?: number;
  exitCode?: number | null;
  restoreStatus?: string;
  tenants?: { total: number; restored: number; failed: number };
  failures?: Array<{ tenantId: string; error?: string }>;
  rowsReported?: number;
  rowsVerifiedInLive?: number;
  rowsPerSecond?: number;
  /** The report's source.scratchMs: the time to prepare scratch (download and pg_restore, or point-in-time recovery). */
  scratchMs?: number;
  /** The report's source.pointInTime, for a restore from a pgBackRest WAL archive. */
  pointInTime?: PointInTimeScratch;
  profile?: {
    runs: number;
    cliToWorkflowMs?: number;
    activities: Record<string, { count: number; sumMs: number; maxMs: number; wallMs: number; failedAttempts: number }>;
    tenantWindowMs?: number;
    /** Adaptive throttling: the worker's setting, and the time children waited for a busy live (summed). */
    throttle?: { on: boolean; waitedMs: number };
    afterLastTenantMs?: number;
    phases: Record<string, PhaseStats>;
    reportDurationMs?: number;
    historyEventsPerRun: number[];
    /** Statements the product's sessions were seen running (pg_stat_activity samples). */
    dbStatements?: { samples: number; intervalMs: number; statements: StatementTime[] };
  };
  stderrTail?: string;
}

interface BenchResults {
  benchmark: 'tenant-restore';
  version: 1;
  command: string;
  startedAt: string;
  finishedAt?: string;
  durationMs?: number;
  options: Options;
  machine: { cpus: number; memoryGb: number; loadAverageAtStart: number[]; postgres: string; node: string };
  productReadiness: { ready: boolean; gaps: string[] };
  dataset?: Omit<MainDataset, 'victims' | 'empties'> & { victimCount: number; emptyCount: number };
  ideal?: { status: SectionStatus; reason?: string } & Partial<IdealResult>;
  product?: ProductRun;
  comparison?: { ratio?: number; ratioAtLeast?: number; productRowsPerSecond?: number; idealRowsPerSecond?: number };
  overhead?: ProductRun & {
    perTenantMs?: number;
    perTenantWallMs?: number;
    medianTenantMs?: number;
    concurrency: number;
  };
  live?: {
    status: SectionStatus;
    reason?: string;
    before?: LatencySummary;
    during?: LatencySummary;
    duringTenantWindow?: LatencySummary;
    p99Ratio?: number;
    writer?: Omit<WriterStats, 'latency'>;
  };
  memory?: Array<{
    rows: number;
    status: SectionStatus;
    reason?: string;
    idleRssKb?: number;
    peakRssKb?: number;
    hwmKb?: number;
    wallMs?: number;
    rowsRestored?: number;
    productRowsPerSecond?: number;
    /** The ideal COPY of the same tenant from the same scratch. */
    idealRowsPerSecond?: number;
  }>;
  /** Many small tenants (bench/wide.ts, six tables): a product run of its own, beside the ideal for the same rows. */
  scale?: ProductRun & {
    concurrency: number;
    requested: number;
    ideal?: IdealResult;
    ratio?: number;
    victimRows?: number;
  };
  /** One unit's statements and time, alone on the server (scripts/bench/unit-profile.ts), on each dataset. */
  units?: { status: SectionStatus; reason?: string; main?: UnitProfile; wide?: UnitProfile };
  wide?: {
    status: SectionStatus;
    reason?: string;
    tables?: number;
    tenants?: number;
    victims?: number;
    victimRows?: number;
    ideal?: IdealResult;
    product?: ProductRun;
    ratio?: number;
  };
  /** Discover against one count(*) GROUP BY tenant per owned table and side (bench/discover.ts), per dataset. */
  discover?: { status: SectionStatus; reason?: string; runs: DiscoverBenchRun[] };
  /**
   * The main dataset's victims restored to a moment from the stack's pgBackRest WAL archive (bench/point-in-time.ts),
   * beside the dump path (the main product run, or a dump restore of its own) and the same ideal.
   */
  pointInTime?: PointInTimeResult;
  /** The incident window's delta against one count(*) GROUP BY pass over the same tables (bench/window.ts). */
  window?: WindowBenchResult;
  targets?: Array<{ name: string; target: string; value: string; met?: boolean }>;
}

interface PointInTimeResult {
  status: SectionStatus;
  reason?: string;
  stanza?: string;
  /** The live database: a copy of the main dataset's source, in the base backup; the victims deleted after it. */
  database?: string;
  victims?: number;
  /** The victims' rows at the moment (the dataset's, plus the rows written after the base backup). */
  victimRows?: number;
  /** ANALYZE and VACUUM of the bench's databases before the base backup (see bench/point-in-time.ts). */
  quiesceMs?: number;
  /** The incremental base backup before the incident (not part of the restore's time). */
  backupMs?: number;
  writtenAfterBackup?: number;
  /** The writes made after the base backup, found in live after the restore. */
  writesAfterBackupRestored?: { renamedTenants: number; issues: number };
  target?: string;
  /** From the deletion's commit until pg_stat_archiver reported its WAL segment archived. */
  archiveMs?: number;
  /** The point-in-time restore (`start --backup pgbackrest:... --at ... --wait --json`). */
  product?: ProductRun;
  scratch?: {
    /** The PITR restore's report: source.scratchMs (pgbackrest restore, recovery, checks). */
    pitrMs?: number;
    /** The dump path's report: source.scratchMs (download, verify, pg_restore). */
    dumpMs?: number;
    dumpFrom?: 'main product run' | 'own dump restore';
    dumpRestoreId?: string;
    /** pitrMs / dumpMs. */
    ratio?: number;
  };
  endToEnd?: {
    pitrWallMs?: number;
    dumpWallMs?: number;
    idealMs?: number;
    /** PITR `start --wait` / the ideal (download + pg_restore -j2 + COPY pipes), the ideal of section 1. */
    pitrRatio?: number;
    /** The dump path's `start --wait` / the same ideal. */
    dumpRatio?: number;
  };
  recoveryPoint?: {
    /** The report's: target minus the last transaction replayed. */
    gapMs?: number;
    lastTransaction?: string;
    stopped?: string;
    walSegmentsRestored?: number;
    /** The target minus the commit of the bench's last write before it: between these two bounds (ms). */
    lastWriteGapMs?: { min: number; max: number };
    lastWriteCommit?: { before: string; after: string };
  };
}

// ---------------------------------------------------------------------------------------------------------------

const runTag = new Date().toISOString().replace(/[-:]/g, '').replace('T', '_').slice(0, 15).toLowerCase();
const logsDir = join(resultsDir, 'logs', runTag);
const configFile = join(projectRoot, 'scripts', 'workload', 'restore-config.json');

/**
 * Builds data again when the server went away under it (other engineers' tests restart the shared PostgreSQL):
 * the builders start from scratch each time, so a retry is safe.
 */
async function retrying<T>(what: string, fn: () => Promise<T>, attempts = 3): Promise<T> {
  for (let i = 1; ; i++) {
    try {
      return await fn();
    } catch (error) {
      if (i >= attempts || !isRetryableDbError(error)) throw error;
      say(`${what}: ${(error as Error).message}; retrying in 5 s (attempt ${i + 1} of ${attempts})`);
      await sleep(5000);
    }
  }
}

function phaseStats(values: number[]): PhaseStats {
  return {
    tenants: values.length,
    sumMs: values.reduce((a, b) => a + b, 0),
    medianMs: percentile(values, 50),
    p95Ms: percentile(values, 95),
    maxMs: values.length ? Math.max(...values) : undefined,
  };
}

/** Runs `start --wait --json` and gathers what the product recorded about it. */
async function productRun(
  label: string,
  args: {
    taskQueue: string;
    source: { backup: string } | { scratch: string };
    /** --at: a point-in-time restore from a pgbackrest: backup. */
    at?: string;
    live: string;
    tenants: string[];
    concurrency?: number;
    groupSize?: number;
    childrenPerRun?: number;
    timeoutMinutes: number;
    verify?: { database: string; expectedRows: number; tables?: WorkloadTable[] };
    /** The restore config file; null for none (default: the workload's, chunkRows and the re-enable actions). */
    config?: string | null;
  },
): Promise<ProductRun & { run?: StartRun; workflow?: WorkflowProfile }> {
  const restoreId = `bench-${runTag.replace('_', '-')}-${label}`;
  const tenantsFile = join(logsDir, `${label}.tenants`);
  writeFileSync(tenantsFile, `${args.tenants.join('\n')}\n`);
  const artifacts = `s3://${benchEnv().STACK_S3_BUCKET}/bench/runs/${runTag}/`;
  say(`product (${label}): tenant-restore start --wait --json, ${args.tenants.length} tenants`);
  const sampler = new DbSampler();
  await sampler.start();
  let dbStatements: Awaited<ReturnType<DbSampler['stop']>> | undefined;
  const run = await runStart({
    restoreId,
    taskQueue: args.taskQueue,
    source: args.source,
    at: args.at,
    live: args.live,
    tenantsFile,
    artifacts,
    config: args.config === null ? undefined : (args.config ?? configFile),
    concurrency: args.concurrency,
    groupSize: args.groupSize,
    childrenPerRun: args.childrenPerRun,
    timeoutMs: args.timeoutMinutes * 60_000,
    logFile: join(logsDir, `${label}.start.log`),
  }).finally(async () => {
    dbStatements = await sampler.stop();
  });
  const out = run.output;
  const base: ProductRun & { run: StartRun } = {
    status: 'ok',
    restoreId,
    wallMs: run.ms,
    exitCode: run.exitCode,
    run,
    stderrTail: run.stderrTail || undefined,
  };
  const result: ProductRun & { run: StartRun; workflow?: WorkflowProfile } = { ...base };
  if (run.timedOut) {
    const p = run.progressAtTimeout;
    result.status = 'timed-out';
    if (p) result.tenants = { total: p.total, restored: p.restored, failed: p.failed };
    result.reason = `not finished within ${args.timeoutMinutes} min${p ? ` (${p.restored}/${p.total} tenants restored, ${p.failed} failed, phase ${p.phase}, run ${p.runs})` : ''}; the bench terminated it`;
  } else if (!out) {
    result.status = 'failed';
    result.reason = `start printed no JSON (exit ${run.exitCode}): ${run.stderrTail.split('\n').slice(-3).join(' / ')}`;
  } else {
    const restored = out.tenants.filter((t) => t.status === 'restored').length;
    const failedTenants = out.tenants.filter((t) => t.status !== 'restored');
    const rowsReported = out.tenants.reduce((a, t) => a + Object.values(t.rows ?? {}).reduce((x, y) => x + y, 0), 0);
    Object.assign(result, {
      restoreStatus: out.status,
      tenants: {
        total: out.total ?? args.tenants.length,
        restored: out.restored ?? restored,
        failed: out.failed ?? failedTenants.length,
      },
      failures: failedTenants.slice(0, 10).map((t) => ({ tenantId: t.tenantId, error: t.error })),
      rowsReported,
      rowsPerSecond: rowsReported / (run.ms / 1000),
    });
    if (out.status !== 'succeeded') {
      result.status = 'failed';
      result.reason = `restore ${out.status}: ${out.restored ?? restored}/${out.total ?? args.tenants.length} restored${out.error ? `; ${out.error}` : ''}${failedTenants[0]?.error ? `; first failure: tenant ${failedTenants[0].tenantId}: ${failedTenants[0].error}` : ''}`;
    }
    if (args.verify) {
      const rows = await rowsOfTenants(args.verify.database, args.tenants, args.verify.tables);
      result.rowsVerifiedInLive = Object.values(rows).reduce((a, b) => a + b, 0);
      if (result.status === 'ok' && result.rowsVerifiedInLive !== args.verify.expectedRows) {
        result.status = 'failed';
        result.reason = `live holds ${result.rowsVerifiedInLive} rows of the restored tenants, the backup ${args.verify.expectedRows}`;
      }
    }
  }
  try {
    const workflow = await workflowProfile(restoreId);
    const report = run.timedOut ? undefined : await readReport(artifacts, restoreId, out?.report?.json);
    result.scratchMs = report?.source.scratchMs;
    result.pointInTime = report?.source.pointInTime;
    const activities: NonNullable<ProductRun['profile']>['activities'] = {};
    for (const a of workflow.activities) {
      const s = (activities[a.name] ??= { count: 0, sumMs: 0, maxMs: 0, wallMs: 0, failedAttempts: 0 });
      s.count += 1;
      s.sumMs += a.ms;
      s.maxMs = Math.max(s.maxMs, a.ms);
      s.failedAttempts += a.attempts - 1;
    }
    for (const name of Object.keys(activities)) {
      const spans = workflow.activities.filter((a) => a.name === name);
      activities[name].wallMs =
        Math.max(...spans.map((a) => a.closedAt)) - Math.min(...spans.map((a) => a.scheduledAt));
    }
    const reportStart = workflow.activities.find((a) => a.name === 'writeRestoreReport')?.scheduledAt;
    const phases: Record<string, PhaseStats> = {};
    // A group's tenants share one set of durations: count each child once.
    const seen = new Set<string>();
    const children = (report?.tenants ?? []).filter(
      (t) => !t.group || (!seen.has(t.group.workflowId) && seen.add(t.group.workflowId)),
    );
    for (const phase of ['preflight', 'copy', 'validate', 'reenable', 'total'] as const) {
      const values = children.map((t) => t.durations?.[phase]).filter((v): v is number => typeof v === 'number');
      if (values.length) phases[phase] = phaseStats(values);
    }
    result.profile = {
      runs: workflow.runs,
      cliToWorkflowMs: workflow.startedAt ? workflow.startedAt - run.startedAt : undefined,
      activities,
      tenantWindowMs: workflow.firstChildAt && reportStart ? reportStart - workflow.firstChildAt : undefined,
      throttle: {
        on: (process.env.TENANT_RESTORE_THROTTLE ?? 'on') !== 'off',
        waitedMs: children.reduce((a, t) => a + (t.throttledMs ?? 0), 0),
      },
      afterLastTenantMs: reportStart ? run.finishedAt - reportStart : undefined,
      phases,
      reportDurationMs: report?.durationMs,
      historyEventsPerRun: workflow.historyEventsPerRun,
      dbStatements,
    };
    result.workflow = workflow;
  } catch (error) {
    result.profile = undefined;
    say(`  could not read the profile of ${restoreId}: ${(error as Error).message}`);
  }
  return result;
}

function strip<T extends { run?: unknown; workflow?: unknown }>(r: T): Omit<T, 'run' | 'workflow'> {
  const { run: _run, workflow: _workflow, ...rest } = r;
  return rest;
}

type SideBySide = NonNullable<BenchResults['wide']>;

/**
 * A generated many-table dataset (bench/wide.ts): the ideal pipeline, then the product from the same archive into its
 * own copy of the post-deletion live, on a worker of its own; no writer. The ratio is product / ideal, as for the main
 * dataset.
 */
async function sideBySide(
  label: string,
  datasetOptions: Parameters<typeof wideDataset>[0],
  options: Options,
  run: { concurrency?: number; childrenPerRun?: number; timeoutMinutes: number },
): Promise<SideBySide & { product?: ProductRun }> {
  const worker = new WorkerProcess(`bench-${runTag}-${label}`, join(logsDir, `worker-${label}.log`));
  let result: SideBySide = { status: 'ok' };
  try {
    const data = await retrying(`${label} dataset`, () => wideDataset(datasetOptions));
    result = {
      status: 'ok',
      tables: data.tables.length,
      tenants: data.tenants,
      victims: data.victims.length,
      victimRows: data.victimRowsTotal,
    };
    if (!options.skip.ideal) {
      const ideal = await runIdeal(data, runTag, 2, data.tables, `${label}ideal`);
      await dropDatabase(ideal.scratch);
      await dropDatabase(ideal.live);
      result.ideal = ideal;
      say(
        `${label} ideal: ${seconds(ideal.totalMs)} (COPY ${seconds(ideal.copyMs)} over ${data.tables.length} tables)`,
      );
    }
    const live = `bench_${label}_live_${runTag}`;
    await dropDatabase(live);
    await createDatabase(live, data.postDeletion);
    await worker.start();
    try {
      const r = await productRun(label, {
        taskQueue: worker.taskQueue,
        source: { backup: data.backupUrl },
        live: dbUrl(live),
        tenants: data.victims,
        concurrency: run.concurrency,
        groupSize: options.groupSize,
        childrenPerRun: run.childrenPerRun,
        timeoutMinutes: run.timeoutMinutes,
        verify: { database: live, expectedRows: data.victimRowsTotal, tables: data.tables },
        config: null,
      });
      if (!options.keep) await dropDatabase(scratchDatabaseName(r.restoreId!)).catch(() => undefined);
      result.product = strip(r);
      if (result.ideal && r.status === 'ok' && r.wallMs) result.ratio = r.wallMs / result.ideal.totalMs;
      if (r.status !== 'ok') Object.assign(result, { status: r.status, reason: r.reason });
      else say(`${label} product: ${seconds(r.wallMs)} for ${count(r.rowsVerifiedInLive)} rows`);
    } finally {
      if (!options.keep) await dropDatabase(live).catch(() => undefined);
    }
  } catch (error) {
    result = { ...result, status: 'failed', reason: (error as Error).message };
  } finally {
    await worker.stop();
  }
  return result;
}

/**
 * 8. Point in time: the main dataset's victims, restored from the stack's pgBackRest WAL archive to a moment before
 * their deletion (bench/point-in-time.ts stages the incident), by `start --backup pgbackrest:<stanza>/<db> --at`, on a
 * worker of its own. Beside it: the dump path's scratch and wall time (the main product run's, or a dump restore of
 * the same victims run here when that was skipped), and the ideal of section 1.
 */
async function pointInTimeSection(
  dataset: MainDataset,
  options: Options,
  results: BenchResults,
): Promise<PointInTimeResult> {
  const result: PointInTimeResult = { status: 'ok', victims: dataset.victims.length };
  const live = `bench_pitr_live_${runTag}`;
  const worker = new WorkerProcess(`bench-${runTag}-pitr`, join(logsDir, 'worker-pitr.log'));
  const dumpLive = `bench_pitr_dump_live_${runTag}`;
  try {
    const incident = await pointInTimeIncident({
      source: dataset.source,
      live,
      victims: dataset.victims,
      pauseMs: 200,
    });
    Object.assign(result, {
      stanza: incident.stanza,
      database: live,
      victimRows: incident.rowsAtTargetTotal,
      quiesceMs: incident.quiesceMs,
      backupMs: incident.backupMs,
      writtenAfterBackup: incident.writtenAfterBackup,
      target: incident.at,
      archiveMs: incident.archiveMs,
    });
    await worker.start();
    const r = await productRun('pitr', {
      taskQueue: worker.taskQueue,
      source: { backup: `pgbackrest:${incident.stanza}/${live}` },
      at: incident.at,
      live: dbUrl(live),
      tenants: dataset.victims,
      concurrency: options.concurrency,
      groupSize: options.groupSize,
      timeoutMinutes: options.pitrTimeoutMinutes,
      verify: { database: live, expectedRows: incident.rowsAtTargetTotal },
    });
    result.product = strip(r);
    if (r.status === 'ok') result.writesAfterBackupRestored = await writesAfterBackupInLive(live, dataset.victims);
    const pit = r.pointInTime;
    const target = toMicros(incident.at);
    result.recoveryPoint = {
      gapMs: pit?.gapMs,
      lastTransaction: pit?.lastTransaction,
      stopped: pit?.stopped,
      walSegmentsRestored: pit?.walSegmentsRestored,
      lastWriteGapMs: {
        min: (target - toMicros(incident.lastWrite.after)) / 1000,
        max: (target - toMicros(incident.lastWrite.before)) / 1000,
      },
      lastWriteCommit: incident.lastWrite,
    };
    if (r.status !== 'ok') Object.assign(result, { status: r.status, reason: r.reason });
    else if (
      result.writesAfterBackupRestored &&
      (result.writesAfterBackupRestored.renamedTenants !== dataset.victims.length ||
        result.writesAfterBackupRestored.issues !== incident.writtenAfterBackup)
    )
      Object.assign(result, {
        status: 'failed',
        reason: `the writes after the base backup are not all back: ${JSON.stringify(result.writesAfterBackupRestored)} of ${dataset.victims.length} renamed tenants and ${incident.writtenAfterBackup} issues`,
      });

    // The dump path, for the same victims: the main product run's, else a dump restore of its own here.
    let dump: ProductRun | undefined = results.product?.status === 'ok' ? results.product : undefined;
    let dumpFrom: NonNullable<PointInTimeResult['scratch']>['dumpFrom'] = 'main product run';
    if (!dump || dump.scratchMs === undefined) {
      await dropDatabase(dumpLive);
      await createDatabase(dumpLive, dataset.postDeletion);
      const d = await productRun('pitr-dump', {
        taskQueue: worker.taskQueue,
        source: { backup: dataset.backupUrl },
        live: dbUrl(dumpLive),
        tenants: dataset.victims,
        concurrency: options.concurrency,
        groupSize: options.groupSize,
        timeoutMinutes: options.pitrTimeoutMinutes,
        verify: { database: dumpLive, expectedRows: dataset.victimRowsTotal },
      });
      if (!options.keep) await dropDatabase(scratchDatabaseName(d.restoreId!)).catch(() => undefined);
      dump = d.status === 'ok' ? strip(d) : undefined;
      dumpFrom = 'own dump restore';
      if (d.status !== 'ok' && result.status === 'ok')
        Object.assign(result, { status: d.status, reason: `the dump restore beside it: ${d.reason}` });
    }
    result.scratch = {
      pitrMs: r.scratchMs,
      dumpMs: dump?.scratchMs,
      dumpFrom: dump ? dumpFrom : undefined,
      dumpRestoreId: dump?.restoreId,
      ratio: r.scratchMs !== undefined && dump?.scratchMs ? r.scratchMs / dump.scratchMs : undefined,
    };
    const idealMs = results.ideal?.status === 'ok' ? results.ideal.totalMs : undefined;
    const pitrWallMs = r.status === 'ok' ? r.wallMs : undefined;
    result.endToEnd = {
      pitrWallMs,
      dumpWallMs: dump?.wallMs,
      idealMs,
      pitrRatio: idealMs && pitrWallMs ? pitrWallMs / idealMs : undefined,
      dumpRatio: idealMs && dump?.wallMs ? dump.wallMs / idealMs : undefined,
    };
  } catch (error) {
    Object.assign(result, { status: 'failed', reason: (error as Error).message });
  } finally {
    await worker.stop();
    if (!options.keep) {
      await dropDatabase(live).catch(() => undefined);
      await dropDatabase(dumpLive).catch(() => undefined);
    }
  }
  return result;
}

async function main(): Promise<number> {
  let options: Options;
  try {
    options = parseOptions(process.argv.slice(2));
  } catch (error) {
    process.stderr.write(`bench: ${(error as Error).message}\nusage: ${usage}\n`);
    return 2;
  }
  const started = Date.now();
  mkdirSync(logsDir, { recursive: true });
  benchEnv();
  try {
    await query('postgres', 'SELECT 1');
  } catch (error) {
    process.stderr.write(
      `bench: PostgreSQL of the dev stack is not reachable (${(error as Error).message}). Run: npm run stack -- up\n`,
    );
    return 1;
  }
  const results: BenchResults = {
    benchmark: 'tenant-restore',
    version: 1,
    command: `npm run bench --${process.argv
      .slice(2)
      .map((a) => ` ${a}`)
      .join('')}`,
    startedAt: new Date(started).toISOString(),
    options,
    machine: {
      cpus: cpus().length,
      memoryGb: Math.round(totalmem() / 2 ** 30),
      loadAverageAtStart: loadavg().map((l) => Number(l.toFixed(2))),
      postgres: await serverVersion(),
      node: process.version,
    },
    productReadiness: await productReadiness(),
  };
  if (!results.productReadiness.ready) say(`the product is not complete: ${results.productReadiness.gaps.join('; ')}`);
  const cleanup: string[] = [];
  const problems: string[] = [];

  try {
    // --- data ---------------------------------------------------------------------------------------------------
    const dataset = await retrying('dataset', () =>
      mainDataset({
        tenants: options.tenants,
        rows: options.rows,
        victims: options.victims,
        seed: options.seed,
        fresh: options.freshData,
        empties: options.skip.overhead ? 0 : options.empty,
      }),
    );
    const { victims: _v, empties: _e, ...datasetSummary } = dataset;
    results.dataset = { ...datasetSummary, victimCount: dataset.victims.length, emptyCount: dataset.empties.length };

    // --- 1. ideal -----------------------------------------------------------------------------------------------
    if (options.skip.ideal) results.ideal = { status: 'skipped' };
    else {
      try {
        const ideal = await runIdeal(dataset, runTag);
        cleanup.push(ideal.scratch, ideal.live);
        results.ideal = { status: 'ok', ...ideal };
        say(
          `ideal: ${seconds(ideal.totalMs)} (pg_restore ${seconds(ideal.pgRestoreMs)}, COPY ${seconds(ideal.copyMs)}), ${count(ideal.rowsTotal)} rows`,
        );
      } catch (error) {
        results.ideal = { status: 'failed', reason: (error as Error).message };
        problems.push(`ideal: ${(error as Error).message}`);
      }
    }

    // --- product, live protection, overhead, scale: one worker child on its own task queue --------------------------
    const notAvailable = (what: string): ProductRun => ({
      status: 'not-available',
      reason: `${what}: the product is not complete: ${results.productReadiness.gaps.join('; ')}`,
    });
    const productWanted = !options.skip.product || !options.skip.overhead;
    if (!results.productReadiness.ready) {
      if (!options.skip.product) results.product = notAvailable('product restore');
      if (!options.skip.live) results.live = { status: 'not-available', reason: 'needs the product restore' };
      if (!options.skip.overhead)
        results.overhead = { ...notAvailable('overhead'), concurrency: options.concurrency ?? defaultConcurrency };
    } else if (productWanted) {
      const live = `bench_prod_live_${runTag}`;
      await dropDatabase(live);
      await createDatabase(live, dataset.postDeletion);
      cleanup.push(live);
      const taskQueue = `bench-${runTag}`;
      const worker = new WorkerProcess(taskQueue, join(logsDir, 'worker.log'));
      try {
        say(`starting a worker child process on task queue ${taskQueue}`);
        await worker.start();
        const timeoutMinutes = options.timeoutMinutes;

        if (options.skip.product) results.product = { status: 'skipped' };
        else {
          let writer: Writer | undefined;
          let writerStart = 0;
          if (!options.skip.live) {
            writer = new Writer({
              url: dbUrl(live),
              excludeTenants: dataset.victims,
              connections: options.writerConnections,
              seed: options.seed,
            });
            await writer.start();
            writerStart = Date.now();
            say(
              `writer: ${options.writerConnections} sessions on other tenants; ${options.baselineSeconds} s of baseline before the restore`,
            );
            await sleep(options.baselineSeconds * 1000);
          }
          const main = await productRun('main', {
            taskQueue,
            source: { backup: dataset.backupUrl },
            live: dbUrl(live),
            tenants: dataset.victims,
            concurrency: options.concurrency,
            groupSize: options.groupSize,
            timeoutMinutes,
            verify: { database: live, expectedRows: dataset.victimRowsTotal },
          });
          if (writer) {
            const stats = await writer.stop();
            const { latency: _l, ...writerRest } = stats;
            if (main.run) {
              // The first second of the writer warms its sessions and caches: left out of the baseline.
              const before = summarize(writer.samples, writerStart + 1000, main.run.startedAt);
              const during = summarize(writer.samples, main.run.startedAt, main.run.finishedAt);
              const reportStart = main.workflow?.activities.find((a) => a.name === 'writeRestoreReport')?.scheduledAt;
              const window =
                main.workflow?.firstChildAt && reportStart
                  ? summarize(writer.samples, main.workflow.firstChildAt, reportStart)
                  : undefined;
              results.live = {
                status: 'ok',
                reason:
                  main.status === 'ok' ? undefined : `measured while the product restore ran; it ended ${main.status}`,
                before,
                during,
                duringTenantWindow: window,
                p99Ratio: before.p99 ? during.p99 / before.p99 : undefined,
                writer: writerRest,
              };
            } else results.live = { status: 'failed', reason: 'the product run did not start' };
          }
          // A run that did not reach its cleanup leaves its scratch behind.
          cleanup.push(scratchDatabaseName(main.restoreId!));
          results.product = strip(main);
          if (main.status !== 'ok') problems.push(`product: ${main.reason}`);
          else say(`product: ${seconds(main.wallMs)} for ${count(main.rowsVerifiedInLive)} rows`);
        }

        if (options.skip.overhead)
          results.overhead = { status: 'skipped', concurrency: options.concurrency ?? defaultConcurrency };
        else {
          const tenants = dataset.empties.slice(0, options.empty);
          const r = await productRun('overhead', {
            taskQueue,
            source: { scratch: dbUrl(dataset.source) },
            live: dbUrl(live),
            tenants,
            concurrency: options.concurrency,
            groupSize: options.groupSize,
            timeoutMinutes: options.overheadTimeoutMinutes,
          });
          const window = r.profile?.tenantWindowMs;
          results.overhead = {
            ...strip(r),
            concurrency: options.concurrency ?? defaultConcurrency,
            // Not finished: elapsed / tenants restored so far, an upper bound of the same figure.
            perTenantMs:
              window !== undefined
                ? window / tenants.length
                : r.status === 'timed-out' && r.tenants?.restored
                  ? r.wallMs! / r.tenants.restored
                  : undefined,
            perTenantWallMs: r.wallMs !== undefined ? r.wallMs / tenants.length : undefined,
            medianTenantMs: r.profile?.phases.total?.medianMs,
          };
          if (r.status !== 'ok') problems.push(`overhead: ${r.reason}`);
        }
      } catch (error) {
        problems.push(`product harness: ${(error as Error).message}`);
        results.product ??= { status: 'failed', reason: (error as Error).message };
      } finally {
        await worker.stop();
      }
    } else {
      results.product = { status: 'skipped' };
    }

    // --- 8. point in time: the same victims from the stack's WAL archive, beside the dump path and the ideal --------
    if (options.skip.pitr) results.pointInTime = { status: 'skipped' };
    else if (!results.productReadiness.ready)
      results.pointInTime = { status: 'not-available', reason: 'the product is not complete' };
    else {
      results.pointInTime = await pointInTimeSection(dataset, options, results);
      const pit = results.pointInTime;
      if (pit.status !== 'ok') problems.push(`point in time: ${pit.reason}`);
      else
        say(
          `point in time: ${seconds(pit.endToEnd?.pitrWallMs)} (scratch ${seconds(pit.scratch?.pitrMs)} against the dump's ${seconds(pit.scratch?.dumpMs)}), recovery point ${millis(pit.recoveryPoint?.gapMs)} before the target`,
        );
    }

    // --- 4. wide schema, and 5. scale: ideal and product side by side on generated many-table data ----------------
    if (options.skip.wide) results.wide = { status: 'skipped' };
    else if (!results.productReadiness.ready)
      results.wide = { status: 'not-available', reason: 'the product is not complete' };
    else {
      const w = options.wide;
      results.wide = await sideBySide('wide', { ...w, fresh: options.freshData }, options, {
        concurrency: options.concurrency,
        timeoutMinutes: w.timeoutMinutes,
      });
      if (results.wide.status !== 'ok') problems.push(`wide: ${results.wide.reason}`);
    }
    if (options.skip.scale) results.scale = { status: 'skipped', concurrency: 0, requested: options.scale };
    else if (!results.productReadiness.ready)
      results.scale = {
        status: 'not-available',
        reason: 'the product is not complete',
        concurrency: 0,
        requested: options.scale,
      };
    else {
      // Small tenants, not empty: a few rows in each of six tables (two of them children), every tenant restored.
      const concurrency = options.scaleConcurrency ?? options.concurrency ?? defaultConcurrency;
      const r = await sideBySide(
        'scale',
        { tables: 6, tenants: options.scale, victims: options.scale, rowsPerTable: 3, fresh: options.freshData },
        options,
        { concurrency, childrenPerRun: options.childrenPerRun, timeoutMinutes: options.scaleTimeoutMinutes },
      );
      results.scale = {
        ...(r.product ?? {}),
        status: r.status,
        reason: r.reason,
        concurrency,
        requested: options.scale,
        ideal: r.ideal,
        ratio: r.ratio,
        victimRows: r.victimRows,
      };
      if (r.status !== 'ok') problems.push(`scale: ${r.reason}`);
    }

    // --- 7. discover against count(*) GROUP BY per table, on each dataset ------------------------------------------
    if (options.skip.discover) results.discover = { status: 'skipped', runs: [] };
    else if (!(await discoverAvailable()))
      results.discover = {
        status: 'not-available',
        reason: "'tenant-restore discover' is not a CLI command of this build",
        runs: [],
      };
    else {
      results.discover = { status: 'ok', runs: [] };
      const sets: Array<{ name: string; source: string; postDeletion: string; absent: number }> = [];
      const want = (name: string) => options.discoverDatasets.includes(name);
      if (want('main'))
        sets.push({
          name: 'main',
          source: dataset.source,
          postDeletion: dataset.postDeletion,
          absent: dataset.victims.length + dataset.empties.length,
        });
      try {
        if (want('wide')) {
          const wide = await retrying('wide dataset', () => wideDataset({ ...options.wide, fresh: false }));
          sets.push({
            name: 'wide',
            source: wide.source,
            postDeletion: wide.postDeletion,
            absent: wide.victims.length,
          });
        }
        if (want('scale')) {
          const scale = await retrying('scale dataset', () =>
            wideDataset({ tables: 6, tenants: options.scale, victims: options.scale, rowsPerTable: 3, fresh: false }),
          );
          sets.push({
            name: 'scale',
            source: scale.source,
            postDeletion: scale.postDeletion,
            absent: scale.victims.length,
          });
        }
      } catch (error) {
        problems.push(`discover: ${(error as Error).message}`);
      }
      for (const set of sets) {
        const r = await discoverSideBySide({
          dataset: set.name,
          scratch: set.source,
          liveTemplate: set.postDeletion,
          expectedAbsent: set.absent,
          runTag,
          logsDir,
          timeoutMinutes: options.discoverTimeoutMinutes,
          keep: options.keep,
        });
        results.discover.runs.push(r);
        if (r.status !== 'ok') {
          problems.push(`discover ${set.name}: ${r.reason}`);
          results.discover.status = r.status;
          results.discover.reason = `${set.name}: ${r.reason}`;
        } else
          say(
            `discover ${set.name}: ${seconds(r.wallMs)} (tables ${seconds(r.compareMs)}), baseline ${seconds(r.baselineMs)}: ${ratio(r.ratio)}; worker peak RSS ${mb(r.peakRssKb)}`,
          );
      }
    }

    // --- 9. the incident window's delta against one count(*) GROUP BY pass ------------------------------------------
    if (options.skip.window) results.window = { status: 'skipped', reps: [] };
    else {
      results.window = await windowSideBySide({
        dataset,
        runTag,
        reps: options.windowReps,
        fresh: options.freshData,
        keep: options.keep,
      });
      const w = results.window;
      if (w.status !== 'ok') problems.push(`window: ${w.reason}`);
      else
        say(
          `window: delta ${seconds(w.deltaMs)}, baseline ${seconds(w.baselineMs)}: ${ratio(w.ratio)} (median of ${w.reps.length})`,
        );
    }

    // --- 5. one unit, alone: statements per unit and per table -----------------------------------------------------
    if (options.skip.units) results.units = { status: 'skipped' };
    else {
      try {
        say('units: one unit of each dataset, alone on the server, every statement timed');
        const size = options.groupSize ?? defaultGroupSize;
        results.units = {
          status: 'ok',
          main: await profileUnits({
            scratch: dataset.source,
            liveTemplate: dataset.postDeletion,
            tenantIds: dataset.victims,
            size,
            units: 2,
            chunkRows: 200_000,
          }),
        };
        if (!options.skip.wide) {
          const wide = await wideDataset({ ...options.wide, fresh: false });
          results.units.wide = await profileUnits({
            scratch: wide.source,
            liveTemplate: wide.postDeletion,
            tenantIds: wide.victims,
            size,
            units: 2,
          });
        }
      } catch (error) {
        results.units = { status: 'failed', reason: (error as Error).message };
        problems.push(`units: ${(error as Error).message}`);
      }
    }

    // --- 3. memory ----------------------------------------------------------------------------------------------
    if (options.skip.memory) results.memory = [];
    else if (!results.productReadiness.ready)
      results.memory = options.bigRows.map((rows) => ({
        rows,
        status: 'not-available' as const,
        reason: 'the product is not complete',
      }));
    else {
      results.memory = [];
      for (const rows of options.bigRows) {
        const entry: NonNullable<BenchResults['memory']>[number] = { rows, status: 'ok' };
        results.memory.push(entry);
        const worker = new WorkerProcess(`bench-${runTag}-mem-${rows}`, join(logsDir, `worker-mem-${rows}.log`));
        try {
          const big = await retrying('big-tenant dataset', () =>
            bigTenantDataset(rows, options.seed, options.freshData),
          );
          entry.rows = big.rows;
          const live = `bench_big_live_${runTag}_${rows}`;
          await dropDatabase(live);
          await createDatabase(live, big.liveTemplate);
          cleanup.push(live);
          await worker.start();
          entry.idleRssKb = worker.idleRssKb;
          const r = await productRun(`memory-${rows}`, {
            taskQueue: worker.taskQueue,
            source: { scratch: dbUrl(big.source) },
            live: dbUrl(live),
            tenants: [big.tenantId],
            timeoutMinutes: options.memoryTimeoutMinutes,
            verify: { database: live, expectedRows: big.rows },
          });
          entry.peakRssKb = r.run ? worker.peakRssKb(r.run.startedAt, r.run.finishedAt + 1) : undefined;
          if (r.status === 'ok' && r.wallMs && r.rowsVerifiedInLive) {
            entry.productRowsPerSecond = r.rowsVerifiedInLive / (r.wallMs / 1000);
            // The ideal's COPY of the same tenant from the same scratch (the product ran with --scratch: no pg_restore).
            const idealLive = `bench_big_ideal_${runTag}_${rows}`;
            await dropDatabase(idealLive);
            await createDatabase(idealLive, big.liveTemplate);
            try {
              const c = await copyTenants(big.source, idealLive, [big.tenantId]);
              entry.idealRowsPerSecond = Object.values(c.rows).reduce((a, b) => a + b, 0) / (c.ms / 1000);
            } finally {
              await dropDatabase(idealLive).catch(() => undefined);
            }
          }
          entry.hwmKb = worker.hwmKb();
          entry.wallMs = r.wallMs;
          entry.rowsRestored = r.rowsVerifiedInLive;
          if (r.status !== 'ok') {
            entry.status = r.status;
            entry.reason = `${r.reason}${entry.peakRssKb ? `; peak RSS until then ${Math.round(entry.peakRssKb / 1024)} MB` : ''}`;
            problems.push(`memory ${rows}: ${r.reason}`);
          }
          say(
            `memory ${count(big.rows)} rows: peak RSS ${mb(entry.peakRssKb)} (idle ${mb(entry.idleRssKb)}), ${seconds(r.wallMs)}`,
          );
        } catch (error) {
          entry.status = 'failed';
          entry.reason = (error as Error).message;
          problems.push(`memory ${rows}: ${entry.reason}`);
        } finally {
          await worker.stop();
        }
      }
    }
  } catch (error) {
    problems.push((error as Error).message);
    say(`bench failed: ${(error as Error).stack ?? (error as Error).message}`);
  } finally {
    if (!options.keep) for (const name of cleanup) await dropDatabase(name).catch(() => undefined);
  }

  // --- figures, targets, output --------------------------------------------------------------------------------
  const ideal = results.ideal?.status === 'ok' ? results.ideal : undefined;
  const product = results.product?.status === 'ok' ? results.product : undefined;
  const timedOutMain = results.product?.status === 'timed-out' ? results.product : undefined;
  results.comparison = {
    ratio: ideal && product?.wallMs ? product.wallMs / ideal.totalMs! : undefined,
    ratioAtLeast: ideal && timedOutMain?.wallMs ? timedOutMain.wallMs / ideal.totalMs! : undefined,
    productRowsPerSecond:
      product?.rowsVerifiedInLive && product.wallMs ? product.rowsVerifiedInLive / (product.wallMs / 1000) : undefined,
    idealRowsPerSecond: ideal?.rowsPerSecond,
  };
  const memOk = (results.memory ?? []).filter((m) => m.status === 'ok' && m.peakRssKb);
  const memMax = memOk.length ? Math.max(...memOk.map((m) => m.peakRssKb!)) : undefined;
  const memGrowth = memOk.length >= 2 ? memOk[memOk.length - 1].peakRssKb! / memOk[0].peakRssKb! : undefined;
  const liveOk = results.live?.status === 'ok' ? results.live : undefined;
  const bigRate = (results.memory ?? []).filter((m) => m.productRowsPerSecond && m.idealRowsPerSecond).at(-1);
  const within = (value: number | undefined, limit: number) => (value === undefined ? undefined : value <= limit);
  const discoverOk = (results.discover?.runs ?? []).filter((d) => d.status === 'ok');
  const discoverMain = discoverOk.find((d) => d.dataset === 'main');
  // The run with the most tenants: the target is RSS flat in tenants, <= 512 MB at 10,000.
  const discoverRssMax = discoverOk
    .filter((d) => d.peakRssKb)
    .sort((a, b) => (b.tenantsInBackup ?? 0) - (a.tenantsInBackup ?? 0))[0];
  results.targets = [
    {
      name: 'product / ideal',
      target: '<= 1.5 (aim <= 1.2)',
      value:
        results.comparison.ratio !== undefined
          ? ratio(results.comparison.ratio)
          : results.comparison.ratioAtLeast !== undefined
            ? `> ${ratio(results.comparison.ratioAtLeast)} (did not finish)`
            : 'n/a',
      met:
        results.comparison.ratio !== undefined
          ? results.comparison.ratio <= 1.5
          : results.comparison.ratioAtLeast !== undefined && results.comparison.ratioAtLeast > 1.5
            ? false
            : undefined,
    },
    {
      name: 'writer p99 during / before',
      target: '<= 2.0',
      value: ratio(liveOk?.p99Ratio),
      met: within(liveOk?.p99Ratio, 2.0),
    },
    {
      name: 'worker peak RSS (largest tenant)',
      target: '<= 512 MB',
      value: mb(memMax),
      met: memMax === undefined ? undefined : memMax <= 512 * 1024,
    },
    {
      name: 'worker peak RSS growth, smallest to largest tenant',
      target: 'flat (<= 1.25x)',
      value: ratio(memGrowth),
      met: within(memGrowth, 1.25),
    },
    {
      name: `scale: ${count(options.scale)} small tenants, product / ideal`,
      target: 'finishes, no history limit',
      value: results.scale?.ratio !== undefined ? ratio(results.scale.ratio) : (results.scale?.status ?? 'n/a'),
      met:
        results.scale?.status === 'ok'
          ? true
          : results.scale?.status === 'failed' || results.scale?.status === 'timed-out'
            ? false
            : undefined,
    },
    {
      name: `wide schema (${results.wide?.tables ?? options.wide.tables + 1} tables): product / ideal`,
      target: '<= 1.5',
      value: ratio(results.wide?.ratio),
      met: within(results.wide?.ratio, 1.5),
    },
    {
      name: 'largest tenant: product rows/s / ideal rows/s',
      target: '>= 0.5',
      value: bigRate ? ratio(bigRate.productRowsPerSecond! / bigRate.idealRowsPerSecond!) : 'n/a',
      met: bigRate ? bigRate.productRowsPerSecond! / bigRate.idealRowsPerSecond! >= 0.5 : undefined,
    },
    {
      name: 'discover / count(*) GROUP BY per table (main dataset)',
      target: '<= 1.5',
      value: ratio(discoverMain?.ratio),
      met: within(discoverMain?.ratio, 1.5),
    },
    {
      name: `discover: worker peak RSS (up to ${count(discoverRssMax?.tenantsInBackup)} tenants)`,
      target: '<= 512 MB',
      value: mb(discoverRssMax?.peakRssKb),
      met: discoverRssMax?.peakRssKb === undefined ? undefined : discoverRssMax.peakRssKb <= 512 * 1024,
    },
  ];
  results.finishedAt = new Date().toISOString();
  results.durationMs = Date.now() - started;

  mkdirSync(resultsDir, { recursive: true });
  const file = options.out ?? join(resultsDir, `${runTag}.json`);
  const text = `${JSON.stringify(results, null, 2)}\n`;
  writeFileSync(file, text);
  writeFileSync(join(resultsDir, 'latest.json'), text);
  const rendered = render(results);
  process.stdout.write(options.json ? text : `${rendered}\n`);
  writeFileSync(join(logsDir, 'table.md'), `${rendered}\n`);
  say(`results: ${file} (and bench-results/latest.json); logs: ${logsDir}; ${seconds(results.durationMs)} in all`);
  if (problems.length) say(`problems:\n  - ${problems.join('\n  - ')}`);
  return problems.length ? 1 : 0;
}

// ---------------------------------------------------------------------------------------------------------------
// the table

function statusNote(section: { status: SectionStatus; reason?: string } | undefined): string | undefined {
  if (!section) return 'not run';
  if (section.status === 'ok') return undefined;
  return `${section.status.toUpperCase()}: ${section.reason ?? ''}`.trim();
}

export function render(r: BenchResults): string {
  const rows: Row[] = [];
  const d = r.dataset;
  const o = r.options;
  rows.push({
    section: `1. Product vs ideal: restore ${count(d?.victimCount)} of ${count(d?.tenants)} tenants (${count(d?.victimRowsTotal)} of ${count(d?.totalRows)} rows, archive ${d ? Math.round(d.backupBytes / 1e6) : 'n/a'} MB)`,
    metric: '',
    value: '',
  });
  const ideal = r.ideal;
  if (ideal?.status === 'ok') {
    rows.push({
      metric: 'ideal: total',
      value: seconds(ideal.totalMs),
      note: `download ${seconds(ideal.downloadMs)} + pg_restore -j2 ${seconds(ideal.pgRestoreMs)} + COPY pipes ${seconds(ideal.copyMs)}`,
    });
    rows.push({ metric: 'ideal: rows/s', value: count(ideal.rowsPerSecond) });
  } else rows.push({ metric: 'ideal', value: 'n/a', note: statusNote(ideal) });
  const p = r.product;
  if (p?.status === 'ok') {
    rows.push({
      metric: 'product: total (start --wait)',
      value: seconds(p.wallMs),
      note: `${p.tenants?.restored}/${p.tenants?.total} tenants restored, validated, re-enabled; ${count(p.rowsVerifiedInLive)} rows verified in live`,
    });
    rows.push({ metric: 'product: rows/s', value: count(r.comparison?.productRowsPerSecond) });
  } else rows.push({ metric: 'product', value: 'n/a', note: statusNote(p) });
  const t0 = r.targets?.[0];
  rows.push({
    metric: 'ratio product / ideal',
    value: t0?.value ?? 'n/a',
    target: '<= 1.5 (aim <= 1.2)',
    verdict: verdict(t0?.met),
  });
  const ov = r.overhead;
  if (ov?.status === 'timed-out' && ov.perTenantMs !== undefined) {
    rows.push({
      metric: 'orchestration overhead per empty tenant',
      value: `<= ${millis(ov.perTenantMs)}`,
      note: `NOT FINISHED: elapsed / tenants restored so far (${ov.tenants?.restored}/${ov.tenants?.total}) at concurrency ${ov.concurrency}`,
    });
  } else if (ov?.status === 'ok') {
    rows.push({
      metric: `orchestration overhead per empty tenant`,
      value: millis(ov.perTenantMs),
      note: `${ov.tenants?.total} tenants with only a root row at concurrency ${ov.concurrency}: tenant window / N; wall/N ${millis(ov.perTenantWallMs)}, median child latency ${millis(ov.medianTenantMs)}`,
    });
  } else rows.push({ metric: 'orchestration overhead per empty tenant', value: 'n/a', note: statusNote(ov) });

  if (p?.profile) {
    const pr = p.profile;
    rows.push({
      section: `Where the product's time goes (main restore${p.status === 'ok' ? '' : `, ${p.status}: partial`})`,
      metric: '',
      value: '',
    });
    rows.push({ metric: 'CLI start until workflow started', value: seconds(pr.cliToWorkflowMs) });
    const act = (name: string, label: string, note?: string) => {
      const a = pr.activities[name];
      if (a)
        rows.push({
          metric: label,
          value: seconds(a.wallMs),
          note:
            [a.failedAttempts ? `${a.failedAttempts} retried attempts` : '', note ?? ''].filter(Boolean).join('; ') ||
            undefined,
        });
    };
    act('stageTenantList', 'stage tenant list');
    act(
      'prepareScratch',
      'scratch: download, verify, pg_restore',
      ideal?.status === 'ok'
        ? `ideal's download + pg_restore: ${seconds(ideal.downloadMs! + ideal.pgRestoreMs!)}`
        : undefined,
    );
    act('buildRestorePlan', 'plan');
    rows.push({
      metric: 'tenant window (first child start to report)',
      value: seconds(pr.tenantWindowMs),
      note: ideal?.status === 'ok' ? `ideal's COPY pipes: ${seconds(ideal.copyMs)}` : undefined,
    });
    for (const phase of ['preflight', 'copy', 'validate', 'reenable', 'total'] as const) {
      const s = pr.phases[phase];
      if (s)
        rows.push({
          metric: `  per child: ${phase}`,
          value: `${seconds(s.sumMs)} summed`,
          note: `median ${millis(s.medianMs)}, p95 ${millis(s.p95Ms)}, max ${millis(s.maxMs)}`,
        });
    }
    if (!Object.keys(pr.phases).length)
      rows.push({ metric: '  per child phases', value: 'n/a', note: 'the report has no per-child durations' });
    if (pr.throttle)
      rows.push({
        metric: '  adaptive throttling',
        value: pr.throttle.on ? `${seconds(pr.throttle.waitedMs)} waited` : 'off',
        note: pr.throttle.on
          ? 'summed over children: time the steps waited for a busy live'
          : 'TENANT_RESTORE_THROTTLE=off',
      });
    act('writeRestoreReport', 'report');
    act('dropScratch', 'drop scratch');
    rows.push({ metric: 'report start until CLI exit', value: seconds(pr.afterLastTenantMs) });
    for (const st of pr.dbStatements?.statements.slice(0, 6) ?? []) {
      rows.push({
        metric: `  db: ${st.statement.slice(0, 70)}`,
        value: `${seconds(st.ms)} session time`,
        note: `${Math.round(st.share * 100)}% of sampled product session time`,
      });
    }
  }

  rows.push({
    section: `2. Live protection: workload writer (${o.writerConnections} sessions) on other tenants`,
    metric: '',
    value: '',
  });
  const l = r.live;
  if (l?.before && l.during) {
    rows.push({
      metric: 'writer before restore: p50 / p99',
      value: `${millis(l.before.p50)} / ${millis(l.before.p99)}`,
      note: `${count(l.before.count)} transactions over ${o.baselineSeconds - 1} s`,
    });
    rows.push({
      metric: 'writer during restore: p50 / p99',
      value: `${millis(l.during.p50)} / ${millis(l.during.p99)}`,
      note: `${count(l.during.count)} transactions; max ${millis(l.during.max)}`,
    });
    if (l.duringTenantWindow)
      rows.push({
        metric: '  of which tenant window: p50 / p99',
        value: `${millis(l.duringTenantWindow.p50)} / ${millis(l.duringTenantWindow.p99)}`,
        note: 'after scratch and plan',
      });
    rows.push({
      metric: 'p99 during / before',
      value: ratio(l.p99Ratio),
      target: '<= 2.0',
      verdict: verdict(r.targets?.[1]?.met),
      note: `p50 during / before ${ratio(l.during.p50 / l.before.p50)}${l.writer?.errors ? `; ${l.writer.errors} writer errors` : ''}`,
    });
  } else rows.push({ metric: 'writer latency', value: 'n/a', note: statusNote(l) });

  rows.push({ section: '3. Memory: worker peak RSS restoring ONE big tenant', metric: '', value: '' });
  for (const m of r.memory ?? []) {
    if (m.status === 'ok')
      rows.push({
        metric: `tenant of ${count(m.rows)} rows`,
        value: mb(m.peakRssKb),
        target: '<= 512 MB',
        verdict: verdict(m.peakRssKb! <= 512 * 1024),
        note: `idle ${mb(m.idleRssKb)}, VmHWM ${mb(m.hwmKb)} (incl. startup bundling), ${seconds(m.wallMs)}, ${count(m.rowsRestored)} rows restored`,
      });
    if (m.productRowsPerSecond && m.idealRowsPerSecond)
      rows.push({
        metric: `  rows/s, product / ideal COPY`,
        value: ratio(m.productRowsPerSecond / m.idealRowsPerSecond),
        target: '>= 0.5',
        verdict: verdict(m.productRowsPerSecond / m.idealRowsPerSecond >= 0.5),
        note: `product ${count(m.productRowsPerSecond)} rows/s (start --wait, validation included), ideal ${count(m.idealRowsPerSecond)} rows/s`,
      });
    else rows.push({ metric: `tenant of ${count(m.rows)} rows`, value: 'n/a', note: statusNote(m) });
  }
  if (!(r.memory ?? []).length) rows.push({ metric: 'memory', value: 'n/a', note: 'skipped' });
  else
    rows.push({
      metric: 'growth smallest to largest',
      value: r.targets?.[3]?.value ?? 'n/a',
      target: 'flat (<= 1.25x)',
      verdict: verdict(r.targets?.[3]?.met),
    });

  const s = r.scale;
  rows.push({
    section: `4. Scale: one bulk restore of ${count(s?.requested ?? o.scale)} small tenants (${count(s?.victimRows)} rows, 6 tables + root)`,
    metric: '',
    value: '',
  });
  if (s?.status === 'ok') {
    if (s.ideal)
      rows.push({
        metric: 'ideal: total',
        value: seconds(s.ideal.totalMs),
        note: `pg_restore ${seconds(s.ideal.pgRestoreMs)} + COPY ${seconds(s.ideal.copyMs)}`,
      });
    rows.push({
      metric: 'product: wall time',
      value: seconds(s.wallMs),
      note: `concurrency ${s.concurrency}; ${millis(s.wallMs! / s.requested)} per tenant`,
    });
    rows.push({ metric: 'ratio product / ideal', value: ratio(s.ratio) });
    rows.push({
      metric: 'continue-as-new runs',
      value: count(s.profile?.runs),
      target: 'no history limit',
      verdict: 'met',
      note: s.profile
        ? `largest run history: ${count(Math.max(...s.profile.historyEventsPerRun))} events (limit 51,200)`
        : undefined,
    });
  } else {
    rows.push({
      metric: 'bulk restore',
      value: s?.wallMs ? `> ${seconds(s.wallMs)}` : 'n/a',
      verdict: s?.status === 'failed' || s?.status === 'timed-out' ? 'MISSED' : undefined,
      note: statusNote(s),
    });
    if (s?.profile)
      rows.push({
        metric: 'continue-as-new runs so far',
        value: count(s.profile.runs),
        note: `largest run history: ${count(Math.max(...s.profile.historyEventsPerRun))} events (limit 51,200)`,
      });
  }

  const w = r.wide;
  rows.push({
    section: `5. Wide schema: ${count(w?.tables)} tables, restore ${count(w?.victims)} of ${count(w?.tenants)} tenants (${count(w?.victimRows)} rows)`,
    metric: '',
    value: '',
  });
  if (w?.status === 'ok') {
    if (w.ideal)
      rows.push({
        metric: 'ideal: total',
        value: seconds(w.ideal.totalMs),
        note: `pg_restore ${seconds(w.ideal.pgRestoreMs)} + COPY ${seconds(w.ideal.copyMs)}`,
      });
    rows.push({ metric: 'product: total (start --wait)', value: seconds(w.product?.wallMs) });
    rows.push({
      metric: 'ratio product / ideal',
      value: ratio(w.ratio),
      target: '<= 1.5',
      verdict: verdict(r.targets?.[5]?.met),
    });
    const phases = w.product?.profile?.phases;
    if (phases?.total)
      rows.push({
        metric: '  per unit: total',
        value: millis(phases.total.medianMs),
        note: `median; copy ${millis(phases.copy?.medianMs)}, validate ${millis(phases.validate?.medianMs)}`,
      });
  } else rows.push({ metric: 'wide schema', value: 'n/a', note: statusNote(w) });

  const u = r.units;
  rows.push({
    section: '6. One unit alone on the server: statements and time (copy + validate)',
    metric: '',
    value: '',
  });
  if (u?.status === 'ok') {
    for (const [name, p2] of [
      ['main', u.main],
      ['wide', u.wide],
    ] as const) {
      if (!p2) continue;
      rows.push({
        metric: `${name}: ${p2.tenantsPerUnit} tenants, ${p2.tables} tables, ${count(p2.rowsPerUnit)} rows`,
        value: `${Math.round(p2.statementsPerUnit)} statements`,
        note: `${p2.statementsPerTablePerUnit.toFixed(1)} statements and ${p2.msPerTablePerUnit.toFixed(1)} ms per table; copy ${millis(p2.copyMsPerUnit)}, validate ${millis(p2.validateMsPerUnit)} (mean of ${p2.units} units)`,
      });
    }
  } else rows.push({ metric: 'units', value: 'n/a', note: statusNote(u) });

  rows.push({
    section: '7. Discover: tenant-restore discover vs one count(*) GROUP BY tenant per owned table, both sides',
    metric: '',
    value: '',
  });
  const dsc = r.discover;
  // Small datasets take milliseconds.
  const time = (ms: number | undefined) => (ms !== undefined && ms < 1000 ? millis(ms) : seconds(ms));
  if (dsc?.runs.length) {
    for (const d of dsc.runs) {
      const what = `${d.dataset}: ${count(d.tenantsInBackup)} tenants, ${count(d.tables)} tables (${count(d.paths)} paths), ${count(d.rowsRead)} rows`;
      if (d.status !== 'ok' && d.wallMs === undefined) {
        rows.push({ metric: what, value: 'n/a', note: statusNote(d) });
        continue;
      }
      rows.push({
        metric: what,
        value: ratio(d.ratio),
        target: d.dataset === 'main' ? '<= 1.5' : '',
        verdict: d.dataset === 'main' ? verdict(d.ratio === undefined ? undefined : d.ratio <= 1.5) : '',
        note: [
          `discover ${time(d.wallMs)} (CLI to exit; tables ${time(d.compareMs)}, plan ${time(d.planMs)}, summary ${time(d.summarizeMs)}), baseline ${time(d.baselineMs)}`,
          `tables alone / baseline ${ratio(d.compareRatio)}`,
          `discover / baseline along every path ${ratio(d.ratioAllPaths)} (${time(d.baselineAllPathsMs)})`,
          `found ${d.counts?.absent ?? 'n/a'} absent of ${d.expectedAbsent ?? 'n/a'} deleted`,
          d.status !== 'ok' ? statusNote(d) : '',
        ]
          .filter(Boolean)
          .join('; '),
      });
      rows.push({
        metric: `  ${d.dataset}: worker peak RSS`,
        value: mb(d.peakRssKb),
        target: '<= 512 MB',
        verdict: verdict(d.peakRssKb === undefined ? undefined : d.peakRssKb <= 512 * 1024),
        note: `idle ${mb(d.idleRssKb)}`,
      });
    }
  } else rows.push({ metric: 'discover', value: 'n/a', note: statusNote(dsc) });

  const pit = r.pointInTime;
  rows.push({
    section: `8. Point in time: the same ${count(pit?.victims ?? d?.victimCount)} victims recovered from the stack's pgBackRest WAL archive (start --backup pgbackrest:... --at)`,
    metric: '',
    value: '',
  });
  if (pit && (pit.status === 'ok' || pit.product?.wallMs !== undefined)) {
    const sc = pit.scratch;
    rows.push({
      metric: 'scratch: point-in-time recovery / pg_restore of the dump',
      value: ratio(sc?.ratio),
      note: `recovery ${seconds(sc?.pitrMs)} (pgbackrest restore --db-include, WAL replay, checks); dump ${seconds(sc?.dumpMs)} (download, verify, pg_restore; ${sc?.dumpFrom ?? 'n/a'}): the reports' source.scratchMs`,
    });
    const e = pit.endToEnd;
    rows.push({
      metric: 'end to end: point in time / ideal',
      value: ratio(e?.pitrRatio),
      note: `start --wait ${seconds(e?.pitrWallMs)}; ideal ${seconds(e?.idealMs)} (section 1)`,
    });
    rows.push({
      metric: 'end to end: dump / ideal, same run',
      value: ratio(e?.dumpRatio),
      note: `start --wait ${seconds(e?.dumpWallMs)} (${sc?.dumpFrom ?? 'n/a'})`,
    });
    const rp = pit.recoveryPoint;
    rows.push({
      metric: 'recovery point: target - last transaction replayed',
      value: rp?.gapMs === undefined ? 'n/a' : `${rp.gapMs.toFixed(1)} ms`,
      note: `the report's gapMs; last transaction ${rp?.lastTransaction ?? 'n/a'}; stopped ${rp?.stopped ?? 'n/a'}`,
    });
    rows.push({
      metric: "  target - the bench's last write before it",
      value: rp?.lastWriteGapMs
        ? `${rp.lastWriteGapMs.min.toFixed(1)} - ${rp.lastWriteGapMs.max.toFixed(1)} ms`
        : 'n/a',
      note: `its commit lies between clock_timestamp() before COMMIT and after; ${count(pit.writtenAfterBackup)} rows written after the base backup${pit.writesAfterBackupRestored ? `, ${count(pit.writesAfterBackupRestored.issues)} back in live` : ''}`,
    });
    rows.push({
      metric: '  WAL segments restored',
      value: count(rp?.walSegmentsRestored),
      note: `VACUUM of the bench databases ${seconds(pit.quiesceMs)}, base backup (incr) ${seconds(pit.backupMs)} and archiving ${seconds(pit.archiveMs)} before the restore, not in its time`,
    });
    if (pit.status !== 'ok') rows.push({ metric: '  status', value: pit.status, note: statusNote(pit) });
  } else rows.push({ metric: 'point in time', value: 'n/a', note: statusNote(pit) });

  const win = r.window;
  rows.push({
    section: `9. Window: the incident's delta (narrowToWindow) vs one count(*) GROUP BY tenant pass over T0's owned tables; recovery of T0 and T1 NOT included (section 8 measures it)`,
    metric: '',
    value: '',
  });
  rows.push({
    metric: 'recovery of T0 and T1',
    value: 'not included',
    note: 'T0 and T1 stand in for the two point-in-time scratches as ordinary databases on the scratch server (T0 the backup restored, T1 a copy of it after a staged incident): recovery is paid once per scratch and depends on the archive (base backup, WAL to replay), not on the delta; section 8 measures it',
  });
  if (win?.status === 'ok' || win?.reps.length) {
    const inc = win.incident;
    const s1 = win.summary;
    rows.push({
      metric: `delta / baseline (median of ${win.reps.length} runs' ratios)`,
      value: ratio(win.ratio),
      note: `medians: delta ${seconds(win.deltaMs)}, baseline ${seconds(win.baselineMs)}; per run, delta / baseline: ${win.reps.map((x) => `${seconds(x.deltaMs)} / ${seconds(x.baselineMs)} = ${ratio(x.ratio)}`).join(', ')}`,
    });
    rows.push({
      metric: `  data: ${count(win.tables)} owned tables, ${count(win.tenants)} tenants`,
      value: `${count(win.rowsT0)} rows`,
      note: `T0 ${count(win.rowsT0)} rows, T1 ${count(win.rowsT1)}; per table: ${Object.entries(win.rowsPerTable ?? {})
        .map(([t, n]) => `${t.replace(/^app\./, '')} ${count(n)}`)
        .join(', ')}`,
    });
    rows.push({
      metric: '  incident and delta',
      value: `${count(s1?.touched)} tenants touched`,
      note: `incident: ${count(inc?.deletedTenants)} tenants purged (${count(inc?.deletedRows)} rows), ${Object.entries(
        inc?.updatedRows ?? {},
      )
        .map(([t, n]) => `${count(n)} ${t} updated`)
        .join(
          ', ',
        )}, ${count(inc?.addedRows)} rows added; delta: ${count(s1?.rows.deleted)} deleted, ${count(s1?.rows.changed)} changed, ${count(s1?.rows.added)} added, ${count(s1?.rows.conflicts)} conflicts`,
    });
    const ph = win.phases;
    if (ph)
      rows.push({
        metric: '  delta: phase 1 (delta) / phase 2 (narrow)',
        value: `${seconds(ph.t1Ms + ph.liveMs)} / ${seconds(ph.narrowMs)}`,
        note: `medians: T1 against T0 ${seconds(ph.t1Ms)}, live for the touched tenants ${seconds(ph.liveMs)}, narrowing ${seconds(ph.narrowMs)}, ANALYZE and summary ${seconds(ph.analyzeSummaryMs)}, setup ${millis(ph.setupMs)}; T1 against T0, largest (last run): ${Object.entries(
          ph.t1MsPerTable,
        )
          .sort((a, b) => b[1] - a[1])
          .slice(0, 3)
          .map(([t, ms]) => `${t.replace(/^app\./, '')} ${seconds(ms)}`)
          .join(', ')}`,
      });
    const last = win.reps.at(-1);
    if (last)
      rows.push({
        metric: '  other passes over T0 (last run)',
        value: `${seconds(last.hashPassMs)} hashing`,
        note: `count and hash sums per tenant, every owned table (discover's phase 1, one side); plain count(*) GROUP BY tenant_id on the ${win.plainTables?.length} tables with a tenant column ${millis(last.plainMs)} (the baseline on them ${millis(last.plainBaselineMs)}); baseline on the fresh copy, cold ${seconds(last.baselineColdMs)}; ${count(last.rowsKept)} rows left in the narrowed T0`,
      });
    if (win.status !== 'ok') rows.push({ metric: '  status', value: win.status, note: statusNote(win) });
  } else rows.push({ metric: 'window', value: 'n/a', note: statusNote(win) });

  const header = [
    `tenant-restore benchmark, ${r.startedAt} (${r.machine.cpus} CPUs, PostgreSQL ${r.machine.postgres}, load ${r.machine.loadAverageAtStart.join(' ')} at start)`,
    `command: ${r.command}`,
    r.productReadiness.ready ? '' : `PRODUCT NOT COMPLETE: ${r.productReadiness.gaps.join('; ')}`,
  ].filter(Boolean);
  return `${header.join('\n')}\n\n${table(rows)}`;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error: Error) => {
    process.stderr.write(`bench: ${error.stack ?? error.message}\n`);
    process.exitCode = 1;
  },
);
