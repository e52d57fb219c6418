/**
 * The inputs of the restore workflows (bulkRestore, discover, restoreUnit), as they travel through Temporal: ids,
 * aliases or URLs without a password, S3 locations and digests (invariant I5). activities/input-contract/ checks them.
 */
import type {
  ArtifactsRef,
  ConflictPolicy,
  ObjectRef,
  PlanRef,
  RecoveryTarget,
  ReenableAction,
  RestoreConfig,
  TenantId,
} from '../activities/restore-types';
import type { ScratchRisk } from '../activities/scratch-server';

export type RestoreSource =
  | { kind: 'backup'; backup: string; scratchServer?: string }
  | { kind: 'scratch'; scratch: string }
  /** A pgBackRest stanza recovered to `target` on a worker's host (activities/point-in-time/). */
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
