import type { LatencySummary, WriterStats } from '../workload/writer';
import type { MainDataset } from './dataset';
import type { IdealResult } from './ideal';
import type { UnitProfile } from './unit-profile';
import type { DiscoverBenchRun } from './discover';
import type { WindowBenchResult } from './window';
import type { StatementTime } from './db-sampler';
import type { PointInTimeScratch } from '../../activities/restore-types';
import type { Options } from './options';

/** The result shapes: what bench-results/<timestamp>.json and latest.json hold. */
export type SectionStatus = 'ok' | 'skipped' | 'not-available' | 'failed' | 'timed-out';

export interface PhaseStats {
  tenants: number;
  sumMs: number;
  medianMs?: number;
  p95Ms?: number;
  maxMs?: number;
}

export interface ProductRun {
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

export interface BenchResults {
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

export interface PointInTimeResult {
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
