/**
 * The messages, queries and search attribute keys of the restore workflows, and the plain-JSON shapes that travel
 * through Temporal. Nothing here carries row data or a password (invariant I5): databases are aliases or URLs
 * without a password, the plan travels as an S3 location plus its digest, tenant lists longer than a page live in S3.
 */
import { defineSearchAttributeKey } from '@temporalio/common';
import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import type {
  ArtifactsRef,
  ConflictPolicy,
  ObjectRef,
  PlanRef,
  RecoveryTarget,
  ReenableAction,
  RestoreConfig,
  RestoreStatus,
  ScratchInfo,
  TenantId,
  TenantStatus,
} from '../activities/restore-types';
import type { ScratchRisk } from '../activities/scratch-server';

// The engine's shapes, re-exported for the workflows and the command line: they are defined where they are recorded.
export { canonicalUuid, normalizeTenantId, reenableActionTimeoutSeconds } from '../activities/restore-types';
export type {
  ActionOutcome,
  ArtifactsRef,
  ObjectRef,
  PlanRef,
  RecoveryTarget,
  RestoreStatus,
  ScratchInfo,
  TenantResult,
  TenantStatus,
} from '../activities/restore-types';

// ---------------------------------------------------------------------------------------------------------------
// search attributes (registered by scripts/stack.ts; `temporal operator search-attribute create` in production)

export const RestoreIdKey = defineSearchAttributeKey('RestoreId', 'KEYWORD');
export const RestorePhaseKey = defineSearchAttributeKey('RestorePhase', 'KEYWORD');
export const RestoreKindKey = defineSearchAttributeKey('RestoreKind', 'KEYWORD');
export const TenantIdKey = defineSearchAttributeKey('TenantId', 'KEYWORD');
export const TenantsTotalKey = defineSearchAttributeKey('TenantsTotal', 'INT');
export const TenantsRestoredKey = defineSearchAttributeKey('TenantsRestored', 'INT');
export const TenantsFailedKey = defineSearchAttributeKey('TenantsFailed', 'INT');

/**
 * Workflow ids read as paths: the parent is `restore/<id>`; a restore unit of one tenant `restore/<id>/tenant/<tenantId>`,
 * of several `restore/<id>/group/<n>`, named by the position of its first tenant in the tenant list.
 */
export const bulkWorkflowId = (restoreId: string): string => `restore/${restoreId}`;
/** A discover is `discover/<id>`: its own namespace of ids, so that a discover and a restore may share an id's text. */
export const discoverWorkflowId = (discoverId: string): string => `discover/${discoverId}`;
export const tenantWorkflowId = (restoreId: string, tenantId: TenantId): string =>
  `restore/${restoreId}/tenant/${tenantId}`;
export const groupWorkflowId = (restoreId: string, firstIndex: number): string =>
  `restore/${restoreId}/group/${firstIndex}`;
export const unitWorkflowId = (restoreId: string, tenantIds: TenantId[], firstIndex: number): string =>
  tenantIds.length === 1 ? tenantWorkflowId(restoreId, tenantIds[0]!) : groupWorkflowId(restoreId, firstIndex);

/**
 * Tenants per restore unit when the operator does not choose (`start --group-size`, a drill's `groupSize`). Small
 * tenants share a unit's fixed costs (a Temporal round trip and a dozen statements per step); a unit that fails a
 * data step is split into units of one, so a larger unit costs little when one tenant is bad.
 */
export const defaultGroupSize = 20;
/**
 * Rows per restore unit when the operator does not choose the unit's size (`start --unit-rows`; `--group-size` fixes
 * it in tenants instead). The first units take `defaultGroupSize` tenants; each later one as many tenants as this many
 * rows hold at the rows per tenant the finished units restored, up to a page of the list (500). Thousands of small
 * tenants then go in a few units, and a unit of big tenants stays about this size: two or three seconds of live's work
 * (the bench's main dataset: 1.22x the ideal with 100,000, 1.18x with 200,000, one run each).
 */
export const defaultUnitRows = 200_000;
/**
 * Units restored at once when the operator does not choose (`start --concurrency`, a drill's `concurrency`): the bench
 * measured 4 raising the writer's p99 far more than it shortened the restore (README, Performance).
 */
export const defaultConcurrency = 2;
/** The concurrency an operator may set: at least one unit, and a bound that no live database would survive anyway. */
export const concurrencyRange = { min: 1, max: 1000 } as const;

// ---------------------------------------------------------------------------------------------------------------
// shapes

export type RestoreSource =
  | { kind: 'backup'; backup: string; scratchServer?: string }
  | { kind: 'scratch'; scratch: string }
  /** A pgBackRest stanza recovered to `target` on a worker's host (activities/point-in-time.ts). */
  | {
      kind: 'point-in-time';
      stanza: string;
      target: RecoveryTarget;
      /** With `until`, the incident window: `target` is T0 (just before it), `until` T1 (just after it). */
      until?: RecoveryTarget;
      database?: string;
    };

export interface BulkRestoreInput {
  restoreId: string;
  source: RestoreSource;
  /** Alias or URL without password. */
  live: string;
  tenantRoot: string;
  /** A short list inline; a long one as an S3 object holding a JSON array of ids (see `tenantsObject`). */
  tenants?: TenantId[];
  tenantsObject?: ObjectRef;
  conflict: ConflictPolicy;
  concurrency: number;
  config?: RestoreConfig;
  keepScratch?: boolean;
  /**
   * Restore `partial` tenants (root row still in live, some rows of the backup missing) by inserting only their missing
   * rows. Without it they are refused, like `present` ones (TenantPresentError).
   */
  allowPartial?: boolean;
  artifacts: ArtifactsRef;
  /** Upper bound of children started by one run before it continues-as-new (history stays far below its limits). */
  maxChildrenPerRun?: number;
  /**
   * Tenants per restore unit (consecutive tenants of the list; one copy transaction each). The command line always
   * sets it (default `defaultGroupSize`); absent only in restores started before units had several tenants: 1.
   */
  groupSize?: number;
  /**
   * Units sized by rows (`defaultUnitRows`): after the first units (`groupSize` tenants), each unit takes as many tenants
   * as this many rows hold at the rows per tenant restored so far (state.rowsSeen). Absent: every unit takes
   * `groupSize` tenants (the operator gave --group-size, or a restore started before units were sized by rows).
   */
  unitRows?: number;
  /**
   * A window's conflicts (`--conflicts`): `refuse` (default) stops a tenant that has any before anything of it is
   * written; `report` restores it except its conflicting rows, listed in the report.
   */
  windowConflicts?: 'refuse' | 'report';
  /**
   * The operator's `--allow-unverified-backup`: load a backup that has neither a manifest sha256 nor a sha256 in its
   * object metadata (refused otherwise, BackupUnverified). Absent in restores started before the check existed.
   */
  allowUnverifiedBackup?: boolean;
  /**
   * The risks of loading the backup the operator accepted by their flags (`--unsafe-scratch-on-live-server`,
   * `--unsafe-scratch-as-live-role`, `--unsafe-scratch-as-superuser`). Without them, the worker refuses to load the
   * backup on live's server, as live's role, or as a role that reaches the host (activities/scratch-server.ts).
   */
  unsafeScratch?: ScratchRisk[];
}

/** What `tenant-restore discover` starts: the source and live of a restore, no tenant list (it finds it). */
export interface DiscoverInput {
  discoverId: string;
  source: RestoreSource;
  live: string;
  tenantRoot: string;
  config?: RestoreConfig;
  artifacts: ArtifactsRef;
  keepScratch?: boolean;
  allowUnverifiedBackup?: boolean;
  unsafeScratch?: ScratchRisk[];
}

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
  /** The unit (child workflow id) of each running tenant: approved and cancelled through it. */
  groupOf?: Record<TenantId, string>;
  /** Rows the finished units copied and their tenants: the rows per tenant that size the next units (unitRows). */
  rowsSeen?: { rows: number; tenants: number };
}

/** A restore unit: N ≥ 1 tenants restored together (workflows/restore-unit.ts). */
export interface RestoreUnitInput {
  restoreId: string;
  tenantIds: TenantId[];
  scratch: string;
  live: string;
  plan: PlanRef;
  conflict: ConflictPolicy;
  chunkRows?: number;
  actions: ReenableAction[];
  artifacts: ArtifactsRef;
  /** Restore partial tenants (root row in live, some rows missing) by inserting only their missing rows. */
  allowPartial?: boolean;
  /** Scratch is a point-in-time server on one host: the unit reads it through that host's task queue. */
  scratchTaskQueue?: string;
  /** Tenants whose held actions are already approved when the unit starts. */
  approvedTenants: TenantId[];
  /** An incident window's revert: the unit's tenants the window touched, those with conflicts, and the policy. */
  window?: { touched: TenantId[]; conflicted: TenantId[]; refuseConflicts: boolean };
}

/** How a part of a restore unit is restored after its preflight (workflows/admission.ts). */
export interface UnitOptions {
  /** Tenants this restore's own copy wrote (evidence: a completed copy, or one that failed after a commit). */
  admitted?: TenantId[];
  /** A partial tenant alone: missing rows only (policy skip), validated by the backup's keys. */
  partial?: boolean;
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

// ---------------------------------------------------------------------------------------------------------------
// messages

export const pauseSignal = defineSignal('pause');
export const resumeSignal = defineSignal('resume');
/** Stops starting tenants, cancels the running ones (each rolls back or keeps only idempotent chunks), then reports. */
export const cancelSignal = defineSignal('cancel');
export const setConcurrencySignal = defineSignal<[number]>('setConcurrency');
/** Approve the held re-enable actions: of the listed tenants, or of every tenant when the list is absent. */
export const approveSignal = defineSignal<[{ tenantIds?: TenantId[] }]>('approve');
export const progressQuery = defineQuery<RestoreProgress>('progress');

/**
 * The same controls as Workflow Updates: the workflow checks each against its state (a validator that rejects writes
 * nothing to history) and answers with what it accepted, so the CLI prints the restore's state instead of "sent".
 * The signals above stay: the CLI sends cancel as a signal (it must land even when the workflow is busy), and the
 * other controls as signals when no worker polls the restore's task queue (cli/client/restore.ts).
 */
export interface ControlAck {
  restoreId: string;
  paused: boolean;
  concurrency: number;
  cancelRequested: boolean;
  /** False when the restore was already in the state asked for (pause of a paused restore, say). */
  changed: boolean;
  /** Tenants started so far, and those running now (in a unit that has not ended). */
  started: number;
  running: number;
}
export interface ApproveAck {
  restoreId: string;
  approved: TenantId[] | 'all';
  /** Of the approved tenants, those waiting at the gate now: their held actions run at once. */
  releasedNow: number;
  /** Of them, those in a unit that has not reached the gate: they will pass it without waiting. */
  runningBeforeGate: number;
}
export const pauseUpdate = defineUpdate<ControlAck>('pauseRestore');
export const resumeUpdate = defineUpdate<ControlAck>('resumeRestore');
export const setConcurrencyUpdate = defineUpdate<ControlAck, [number]>('setRestoreConcurrency');
export const approveUpdate = defineUpdate<ApproveAck, [{ tenantIds?: TenantId[] }]>('approveTenants');

/** Unit → parent, by workflow id, so that it reaches the parent's current run after continue-as-new. */
export const unitPhaseSignal = defineSignal<[{ tenantIds: TenantId[]; phase: TenantPhase }]>('groupPhase');
export const unitDoneSignal =
  defineSignal<[{ outcomes: TenantOutcome[]; copied?: { rows: number; tenants: number } }]>('groupDone');
/** Parent → unit: the held actions of these tenants are approved. */
export const approveUnitTenantsSignal = defineSignal<[{ tenantIds: TenantId[] }]>('approveGroupTenants');
/**
 * Parent → a tenant's unit by its own id, for a running tenant with no unit in groupOf (workflows/approvals.ts): the
 * runs recorded before every unit of one was listed there sent it, and their histories replay.
 */
export const approveTenantSignal = defineSignal('approveTenant');
