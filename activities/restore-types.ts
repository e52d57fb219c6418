/**
 * Types that cross the line between the restore engine (plan, preflight, copy, validate: plain functions over pg
 * pools, callable without Temporal) and the orchestration (activities and workflows). Everything here is plain
 * JSON: it may travel through Temporal payloads, so it carries ids, counts and digests, never row data and never a
 * password.
 */

/** A tenant id as text. The engine casts it to the root key's type in SQL (`$1::<type>`). */
export type TenantId = string;

/** What to do when a row to restore already exists in live with the same key (and belongs to the same tenant). */
export type ConflictPolicy = 'skip' | 'overwrite' | 'fail';
export const conflictPolicies: readonly ConflictPolicy[] = ['skip', 'overwrite', 'fail'];

/** A foreign key the schema does not declare, given in the config file. */
export interface LogicalForeignKey {
  /** `schema.table` holding the referencing columns. */
  from: string;
  columns: string[];
  /** `schema.table` being referenced. */
  to: string;
  referencedColumns: string[];
}

export interface SqlAction {
  name: string;
  type: 'sql';
  /** Runs against live with `$1` = tenant id and `$2` = idempotency key (`restoreId/tenantId/action`). */
  sql: string;
  /** Held until an operator approves (see `approval`). */
  requiresApproval?: boolean;
}

export interface WebhookAction {
  name: string;
  type: 'webhook';
  url: string;
  method?: 'POST' | 'PUT';
  /** Header values may name an environment variable of the worker as `env:NAME`, so that no secret is in config. */
  headers?: Record<string, string>;
  /** A call that has not answered after this long is abandoned and retried (default 30). */
  timeoutSeconds?: number;
  requiresApproval?: boolean;
}

export type ReenableAction = SqlAction | WebhookAction;

/** The config file (`--config`, JSON). Every field is optional. */
export interface RestoreConfig {
  logicalForeignKeys?: LogicalForeignKey[];
  /** `schema.table` names never written by a restore (sessions, caches). */
  excludeTables?: string[];
  /** A tenant with more rows than this in one table is copied in idempotent chunks instead of one transaction. */
  chunkRows?: number;
  /** Post-restore actions: switch billing and apps back on. */
  actions?: ReenableAction[];
}

/** Per-table summary a caller may rely on. The engine's full Plan extends this with whatever it needs. */
export interface PlannedTableSummary {
  /** `schema.table`, as read from the catalog (display form; SQL always quotes the parts separately). */
  key: string;
  schema: string;
  name: string;
  /** root: the tenant root; owned: reachable from the root; shared: reference data, written only as parent closure. */
  role: 'root' | 'owned' | 'shared';
  /** Estimated rows for the tenants the plan was built for (undefined when no tenants were given). */
  estimatedRows?: number;
}

export interface PlanSummary {
  tenantRoot: string;
  /** Tables in restore order, parents first. */
  tables: PlannedTableSummary[];
  /** Stable digest of the plan's content, so that activities can check they work from the same plan. */
  digest: string;
}

/**
 * What live holds of one tenant, against the backup (DESIGN.md "tenant state in live"):
 * - absent: its root row is gone: a restore brings it back;
 * - partial: its root row is there, but rows of the backup are missing: restored only with `allowPartial`, and then
 *   only its missing rows;
 * - present: its root row is there and no row of the backup is missing: it was not deleted, so a restore is refused.
 */
export type TenantLiveState = 'absent' | 'partial' | 'present';

export interface TenantClassification {
  state: TenantLiveState;
  /** For a tenant whose root row is in live: rows of the backup whose primary key live lacks, per table key (only tables with some). */
  missing?: Record<string, number>;
}

export interface PreflightResult {
  tenantId: TenantId;
  /** The unit's state: present if any tenant is present, else partial if any is partial, else absent. */
  liveState: TenantLiveState;
  /** Each tenant's state (absent when missing from this record: results of earlier releases did not carry it). */
  tenants?: Record<TenantId, TenantClassification>;
  /** Rows of this tenant in the backup, per table key. */
  rowsInBackup: Record<string, number>;
  /** Keys of this tenant that already exist in live, per table key (resolved by the conflict policy). */
  conflicts: Record<string, number>;
  throttledMs?: number;
  /**
   * `full`: every key compared with live (rowsInBackup and conflicts filled). `state`: only whether the tenants are in
   * the backup and what live holds of them; the copy, which repeats the key checks inside its transaction, reports
   * the conflicts (used for groups, where the full check cost a quarter of the group's time).
   */
  checks?: 'full' | 'state';
}

/**
 * A resumable position in a chunked copy: the table being copied and how far. It carries counts only, never key values:
 * heartbeat details land in workflow history, and a natural key (an e-mail, a user name) is row data.
 */
export interface CopyCheckpoint {
  tableIndex: number;
  /**
   * Rows of that table, in primary-key order, already committed: the tenant's first `position` rows on scratch (which
   * never changes). A resumed copy finds its keyset cursor on scratch from it (copy.ts keysetCursorAt).
   */
  position?: number;
  /** Rows written so far per table key, so that a resumed copy reports complete counts. */
  rows: Record<string, number>;
}

export type CopyPath = 'direct' | 'staged' | 'chunked' | 'chunked-direct';

export interface CopyResult {
  tenantIds: TenantId[];
  /** Rows inserted or overwritten in live, per table key. */
  rows: Record<string, number>;
  /** Rows that already existed and were kept (policy skip), per table key. */
  skipped: Record<string, number>;
  /** Parent rows outside the tenant (shared or other tables) that were missing in live and were restored. */
  parentClosure: Array<{ table: string; rows: number }>;
  chunked: boolean;
  /**
   * How the rows went (copy/index.ts): `direct`, COPY straight into the targets; `staged`, through staging and the
   * policy's merge; `chunked-direct`, in chunks, each COPYed straight into the targets; `chunked`, in staged chunks
   * (or partly: a chunked direct copy that handed over). Absent in results of earlier releases.
   */
  path?: CopyPath;
  /** Why the direct path gave the unit to the staged path (a key already in live, a table refusing COPY). */
  directRefused?: string;
  durationMs: number;
  /** Staged keys already in live with other content, per table key: the policy's conflicts, as the copy met them. */
  conflicts?: Record<string, number>;
  /** Time spent waiting for a busy live (adaptive throttling), included in durationMs. */
  throttledMs?: number;
  /**
   * With `recordKeys` (partial tenants): the primary keys of the rows this copy inserted, per table key, as text values
   * in key column order; at most `recordedKeysLimit` per table, `total` counts them all. Keys only, never row data.
   */
  restoredKeys?: Record<string, { keys: string[][]; total: number }>;
  /** Where the activity stored `restoredKeys` in full (the result through Temporal then keeps only the counts). */
  restoredKeysObject?: { bucket: string; key: string };
  /**
   * An incident window's revert (activities/window.ts): rows the window changed that were set back to their T0 version,
   * per table key (live still held their T1 version). Not counted in `rows` nor in `skipped`.
   */
  reverted?: Record<string, number>;
}

/** Keys listed per table in a partial restore's report; the count beyond them is still exact. */
export const recordedKeysLimit = 1000;

export interface TableValidation {
  table: string;
  scratchCount: number;
  liveCount: number;
  scratchChecksum: string;
  liveChecksum: string;
  match: boolean;
}

export interface ValidationResult {
  tenantId: TenantId;
  ok: boolean;
  tables: TableValidation[];
  /** FK orphans found among the tenant's rows in live, per FK. Empty when ok. */
  orphans: Array<{ table: string; constraint: string; rows: number }>;
  /**
   * Who proved that no reference dangles: `validation`, its orphan scan of every FK of the tenant's rows in live; `copy`,
   * the direct copy before its COMMIT (validate.ts referencesProven). Absent in results of earlier releases (the scan).
   */
  orphansCheckedBy?: 'validation' | 'copy';
  throttledMs?: number;
}

// ---------------------------------------------------------------------------------------------------------------
// shapes the engine records and the workflows carry (they flow up from here, never down)

/**
 * startToCloseTimeout of one re-enable action (workflows/activity-options.ts), and the heartbeat timeout of a unit's
 * action, which heartbeats after each tenant's call. A webhook's `timeoutSeconds` must stay below it (activities/
 * config.ts): a call that outlives its activity would be cut off as an activity timeout, not reported as its own.
 */
export const reenableActionTimeoutSeconds = 120;

const uuidShape = /^([0-9a-f]{8})-?([0-9a-f]{4})-?([0-9a-f]{4})-?([0-9a-f]{4})-?([0-9a-f]{12})$/i;
/** The text PostgreSQL gives a uuid (`::text`): lowercase, hyphenated; undefined when `id` is not shaped like one. */
export function canonicalUuid(id: string): string | undefined {
  const m = uuidShape.exec(id);
  return m ? m.slice(1).join('-').toLowerCase() : undefined;
}
/**
 * A tenant id as the engine and workflow ids use it: with a uuid root key, `A0EEBC99-...` and `a0eebc99-...` are one
 * tenant, so ids are brought to PostgreSQL's own text form at input (the engine compares ids as text in places).
 */
export function normalizeTenantId(id: TenantId, rootKeyType: string | undefined): TenantId {
  return rootKeyType === 'uuid' ? (canonicalUuid(id) ?? id) : id;
}

/** An S3 object named by bucket and key (never a presigned URL: those carry credentials). */
export interface ObjectRef {
  bucket: string;
  key: string;
}

/** Where a restore keeps its artifacts: `<prefix>plan.json`, `<prefix>tenants.json`, `<prefix>tenants/<id>.json`, `<prefix>report.{json,md}`. */
export interface ArtifactsRef {
  bucket: string;
  prefix: string;
}

/** The plan is built once, stored in S3, and passed to children by location and digest (a plan per child input would bloat history). */
export interface PlanRef extends ObjectRef {
  digest: string;
  tables: number;
  /** The tenant root key's type (`uuid`, `bigint`, ...): uuid tenant ids are compared in their canonical lowercase form. */
  rootKeyType?: string;
}

/** The scratch database, however it was obtained. `ref` is an alias, `alias/database`, or a URL without password. */
export interface ScratchInfo {
  ref: string;
  /** The server it was created on (to drop it from); absent for `--scratch <url>`. */
  server?: string;
  /** true when this restore created it (and so may drop it); false for `--scratch <url>`. */
  owned: boolean;
  reused: boolean;
  backup?: string;
  bytes?: number;
  sha256?: string;
  /** How the archive was checked: against `<key>.manifest.json`, the object's metadata, or only its size. */
  /** `signature`: a manifest signed by the backup job's key; the others only with --allow-unverified-backup. */
  verifiedBy?: 'signature' | 'manifest' | 'metadata' | 'size-only';
  durationMs: number;
  /** Scratch recovered to a moment from a WAL archive (activities/point-in-time/): where, to when, and how well. */
  pointInTime?: PointInTimeScratch;
}

/** `--at`: a moment (ISO 8601) or a WAL position. */
export type RecoveryTarget = { type: 'time'; time: string } | { type: 'lsn'; lsn: string };

export interface PointInTimeScratch {
  stanza: string;
  target: RecoveryTarget;
  database: string;
  /** Where recovery stopped, from the server's log: `before commit of transaction 1234, time …`. */
  stopped?: string;
  /** The last transaction replayed: the recovery point achieved. */
  lastTransaction?: string;
  /** The target minus the last transaction replayed (a time target). */
  gapMs?: number;
  walSegmentsRestored: number;
  /** The host whose task queue every activity reading this scratch goes to. */
  host: string;
  taskQueue: string;
  dataDir: string;
}

export type { TenantStatus, ActionOutcome, TenantResult, RestoreStatus } from './restore-results';
