/**
 * Where a bulk restore and its tenants are: the phases, the state a restore carries across continue-as-new, what a
 * unit tells its parent, the progress query's answer and the restore's result. Small: counts, ids, bounded lists.
 */
import type {
  ArtifactsRef,
  ObjectRef,
  PlanRef,
  RestoreStatus,
  ScratchInfo,
  TenantId,
  TenantStatus,
} from '../activities/restore-types';

/** Where a tenant is. `awaiting-approval` holds a window slot no more: it waits for approval, not for live's capacity. */
export type TenantPhase =
  'preflight' | 'copy' | 'validate' | 'awaiting-approval' | 'reenable' | 'restored' | 'failed' | 'cancelled';

export type BulkPhase =
  | 'preparing-scratch'
  | 'planning'
  | 'restoring'
  | 'paused'
  | 'cancelling'
  | 'reporting'
  | 'cleanup'
  | 'completed'
  | 'partial'
  | 'cancelled'
  | 'failed';

export interface FailedTenant {
  tenantId: TenantId;
  reason: string;
}

/** State a bulk restore carries across continue-as-new. Small: counts, the running set, a bounded failure list. */
export interface BulkRestoreState {
  startedAt: number;
  scratch?: ScratchInfo;
  plan?: PlanRef;
  /** An incident window's delta (activities/window.ts): the tenants it touched, those with conflicts, where it is. */
  window?: { touched: TenantId[]; conflicted: TenantId[]; object: ObjectRef };
  tenantList?: ObjectRef & { count: number };
  /** Index in the tenant list of the next tenant to start. */
  nextIndex: number;
  running: Record<TenantId, TenantPhase>;
  restored: number;
  failed: number;
  cancelledTenants: number;
  /** The first failures with reasons (the full list is in the report). */
  failures: FailedTenant[];
  concurrency: number;
  paused: boolean;
  cancelRequested: boolean;
  approvedAll: boolean;
  approvedTenants: TenantId[];
  runs: number;
  childrenStarted: number;
  /**
   * The unit (child workflow id) of each running tenant: approved and cancelled through it. A tenant missing here (runs
   * recorded before every unit of one was listed) is approved and cancelled by its own id.
   */
  groupOf?: Record<TenantId, string>;
  /** Rows the finished units copied and their tenants: the rows per tenant that size the next units (unitRows). */
  rowsSeen?: { rows: number; tenants: number };
}

/** The small outcome a child signals to its parent. */
export interface TenantOutcome {
  tenantId: TenantId;
  status: TenantStatus;
  reason?: string;
  rows?: number;
}

export interface RestoreProgress {
  restoreId: string;
  phase: BulkPhase;
  paused: boolean;
  cancelRequested: boolean;
  concurrency: number;
  total: number;
  started: number;
  counts: Record<TenantPhase | 'pending', number>;
  failures: FailedTenant[];
  approvedAll: boolean;
  scratch?: string;
  planDigest?: string;
  runs: number;
  artifacts: ArtifactsRef;
}

export interface BulkRestoreResult {
  restoreId: string;
  status: RestoreStatus;
  total: number;
  restored: number;
  failed: number;
  cancelled: number;
  failures: FailedTenant[];
  report?: { json: string; markdown: string };
  scratch?: { ref: string; dropped: boolean };
  durationMs: number;
  error?: string;
}
