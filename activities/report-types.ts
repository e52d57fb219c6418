/**
 * The restore's report as it is written to S3 (report.json) and read back by the report command.
 */
import type { TenantId } from './restore-types';
import type {
  ArtifactsRef,
  ObjectRef,
  PlanRef,
  PointInTimeScratch,
  RecoveryTarget,
  RestoreStatus,
  ScratchInfo,
  TenantResult,
} from './restore-types';

export interface ReportTenant {
  tenantId: TenantId;
  status: TenantResult['status'] | 'not-started';
  error?: string;
  rows: Record<string, number>;
  skipped: Record<string, number>;
  conflicts: Record<string, number>;
  /** Its state in live at preflight: absent, partial or present (present and partial are refused unless allowed). */
  liveState?: string;
  /** For a tenant whose root row was in live: rows of the backup missing in live at preflight, per table. */
  missingAtPreflight?: Record<string, number>;
  /** A partial tenant restored with allowPartial: the primary keys of exactly the rows that came back, per table. */
  restoredKeys?: Record<string, { keys: string[][]; total: number }>;
  parentClosure: Array<{ table: string; rows: number }>;
  validation: Array<{ table: string; scratchCount: number; liveCount: number; checksum: string; match: boolean }>;
  orphans: Array<{ table: string; constraint: string; rows: number }>;
  actions: TenantResult['actions'];
  durations: TenantResult['durations'];
  /** Restored in a group: rows, conflicts, validation and durations above are the group's, shared by its tenants. */
  group?: { workflowId: string; tenants: number };
  /** Time its steps waited for a busy live (adaptive throttling). */
  throttledMs?: number;
  /**
   * An incident window's revert (activities/window.ts), per table: rows the window deleted, changed and added, rows set
   * back to T0 (`reverted`), and the conflicts left as they are (listed by key in window.json).
   */
  window?: {
    deleted: Record<string, number>;
    changed: Record<string, number>;
    added: Record<string, number>;
    reverted: Record<string, number>;
    conflicts: Record<string, number>;
  };
}

export interface RestoreReport {
  restoreId: string;
  status: RestoreStatus;
  startedAt: string;
  finishedAt: string;
  durationMs: number;
  live: string;
  tenantRoot: string;
  conflict: string;
  source: {
    backup?: string;
    scratch?: string;
    sha256?: string;
    bytes?: number;
    verifiedBy?: string;
    reused?: boolean;
    scratchMs?: number;
    /** A point-in-time scratch: the target, where recovery stopped, the last transaction replayed, the host. */
    pointInTime?: PointInTimeScratch;
  };
  /** An incident window's revert: its two moments, its row counts, and where its conflicts are listed by key. */
  window?: {
    from: RecoveryTarget;
    to: RecoveryTarget;
    deleted: number;
    changed: number;
    added: number;
    conflicts: number;
    object: string;
  };
  plan?: { digest: string; location: string; tables: number };
  totals: {
    tenants: number;
    restored: number;
    failed: number;
    cancelled: number;
    notStarted: number;
    rows: Record<string, number>;
    skipped: Record<string, number>;
    conflicts: Record<string, number>;
    /** Shared parents inserted for the restored rows, per table (each unit's once). */
    parentClosure: Record<string, number>;
  };
  timing: { copyMsTotal: number; tenantMsTotal: number; tenantMsMedian: number; tenantMsMax: number };
  error?: string;
  tenants: ReportTenant[];
}

export interface WriteReportInput {
  restoreId: string;
  artifacts: ArtifactsRef;
  status: RestoreStatus;
  startedAt: number;
  finishedAt: number;
  live: string;
  tenantRoot: string;
  conflict: string;
  backup?: string;
  scratch?: ScratchInfo;
  plan?: PlanRef;
  tenantList?: ObjectRef;
  error?: string;
  /** An incident window's revert: its window.json (activities/window.ts). */
  window?: ObjectRef;
}
