/**
 * copyTenant: moves one tenant (or a small batch) from scratch into live, table by table in plan order.
 *
 * Per table: `COPY (SELECT ... WHERE <ownership>) TO STDOUT` on scratch is piped (stream.pipeline, no row ever held
 * in Node) into `COPY <temp staging> FROM STDIN` on live; then one set-based statement merges staging into the
 * target with `INSERT ... ON CONFLICT` under the policy. Shared tables only receive the parent closure: rows that
 * restored rows reference and that live lacks (`ON CONFLICT DO NOTHING`, live always wins).
 *
 * Safety (DESIGN.md I1-I3):
 * - Never DELETE or TRUNCATE on live (I2); staging tables are temporary and dropped at COMMIT.
 * - Before merging a table, every unique key of the staged rows is looked up in live; a key held by a row of another
 *   tenant stops the copy with CrossTenantConflictError, inside the transaction, so nothing is committed (I1). The
 *   overwrite merge repeats the ownership test in its `DO UPDATE ... WHERE`, so a row that changed hands between the
 *   check and the merge is still never overwritten.
 * - Triggers: other tenants keep writing, so no trigger is ever disabled for a table. Instead, when the role may,
 *   `SET LOCAL session_replication_role = replica` turns off user triggers (Pagila's last_updated, which would
 *   rewrite last_update on an overwrite) and FK triggers for this transaction's session only. Because FK triggers
 *   are then off, the engine checks every FK of the written rows itself before COMMIT (the orphan scan), taking
 *   FOR KEY SHARE locks on the parents exactly as PostgreSQL's own FK check would, so a concurrent delete of a
 *   parent cannot slip in before COMMIT. A dangling reference aborts with DanglingReferenceError.
 * - Sequences move forward past restored ids, never backwards.
 *
 * One transaction per tenant by default. When a table holds more than `chunkRows` rows of the tenant, the copy
 * goes in chunks of `chunkRows` rows by primary-key keyset, one transaction each; after each chunk the cursor is
 * reported through `onCheckpoint` and a later call may resume from it. Chunks are idempotent: a row already in live
 * with the same content is neither a conflict nor written again. No chunk ever commits a row whose FK points at
 * nothing: FK columns that reference rows of a later chunk are written NULL and set by a fill pass (copyChunked).
 */
import { dedicatedSession, escapeIdentifier, type Client, type Pool, type PoolClient } from './db';
import { classifyDbError, InvalidCheckpointError, isPgError, RestoreError, TenantPresentError } from './errors';
import type { YieldToLive } from './live-pressure';
import { assertPlan, chunkUnits, renderContext, type ChunkUnit, type Plan, type PlanTable } from './plan';
import type { RenderContext } from './plan/ownership';
import {
  recordedKeysLimit,
  type ConflictPolicy,
  type CopyCheckpoint,
  type CopyResult,
  type TenantId,
} from './restore-types';
import { assertNoCrossTenantKeys } from './sql/cross-tenant';
import {
  announceRestore,
  lockSessionName,
  restoreOfLockSession,
  tenantChannels,
  tenantLock,
  tenantLockHolder,
  tryTenantLock,
} from './sql/lock';
import {
  conflictCount,
  conflictPolicyRefusal,
  createWrittenKeys,
  fillChunkRows,
  fillWrittenRows,
  insertStaged,
  insertTracked,
  writtenKeys,
} from './sql/merge';
import { danglingReference, scanOrphans } from './sql/orphans';
import { assertTenantsInBackup, liveRoots, ownedRowCount } from './sql/presence';
import { advanceSequences } from './sql/sequences';
import { assertSameEncoding, closeSession, openSession, sessionSetup } from './sql/session';
import { analyzeStaging, keysetCursorAt, lastStagedKey, setKeysetCursor, stageRows, stagingName } from './sql/stage';
import { validateTenant } from './validate';

export interface CopyTenantInput {
  scratch: Pool;
  live: Pool;
  plan: Plan;
  tenantIds: TenantId[];
  conflict: ConflictPolicy;
  /** Above this many rows of the tenant in one table, copy in chunks (one transaction each). */
  chunkRows?: number;
  resumeFrom?: CopyCheckpoint;
  onCheckpoint?: (checkpoint: CopyCheckpoint) => void | Promise<void>;
  signal?: AbortSignal;
  /** Called on the live session before each table: waits while live is busy (adaptive throttling); returns ms waited. */
  yieldToLive?: YieldToLive;
  /** Report the primary keys of the rows inserted (a partial tenant's report lists exactly which rows came back). */
  recordKeys?: boolean;
  /** Tenants preflight found absent and nothing of this restore wrote yet: checked again under the tenant lock. */
  expectAbsent?: TenantId[];
  /**
   * A retry whose earlier attempts reported no commit (one may have committed and died before its heartbeat): a tenant
   * of `expectAbsent` found present is accepted only when live's rows equal scratch's and no other restore announced it.
   */
  presentMayBeOwn?: boolean;
  /**
   * An earlier attempt of this copy committed (its heartbeat, or its transaction id in S3, says so): this attempt copies
   * again over its own rows, and the rows it finds identical to the backup's count as restored, not as nothing.
   */
  earlierAttemptCommitted?: boolean;
  /** Names the lock session (`tenant-restore-lock <restoreId>`) and is announced on the tenants' channels at COMMIT. */
  restoreId?: string;
  /** Called when a tenant's lock is held by another session, before waiting for it (`holder` as operators find it). */
  onLockWait?: (tenantId: TenantId, holder: string) => void | Promise<void>;
  /** Called right after each COMMIT on live: from then on, rows of this copy are in live. */
  onCommitted?: () => void | Promise<void>;
  /**
   * Called inside each transaction on live right before its COMMIT, with the transaction's id: recorded where a retry
   * can read it (S3), it proves after a crash whether this copy committed (pg_xact_status), which a heartbeat sent after
   * the COMMIT cannot (it may die with the worker, or wait in the SDK's throttle).
   */
  beforeCommit?: (transactionId: string) => void | Promise<void>;
}

class Aborted extends Error {
  override name = 'AbortError';
}

function checkAbort(signal?: AbortSignal): void {
  if (signal?.aborted) throw signal.reason instanceof Error ? signal.reason : new Aborted('copy cancelled');
}

interface TableOutcome {
  staged: number;
  written: number;
  /** Staged keys already in live with other content, and kept (skip). */
  kept: number;
  /** Staged keys already in live with other content (whatever the policy did with them). */
  conflicts: number;
}

/**
 * Streams the tenant's rows of `table` from scratch into a fresh staging table on live. Returns the staged row count.
 * `analyze`: a chunk's staging is analyzed at once (its statements join it to the target); in one transaction it is
 * analyzed only when a statement will join it (checks, fill, FK check against the target): see `Staging`.
 */
function stage(
  scratch: PoolClient,
  live: PoolClient,
  plan: Plan,
  ctx: RenderContext,
  table: PlanTable,
  stagingName: string,
  opts: {
    chunk?: { limit: number; afterKey: boolean };
    cap?: number;
    signal?: AbortSignal;
    analyze: 'always' | 'later';
  },
): Promise<number> {
  return stageRows(scratch, live, plan, ctx, table, stagingName, { kind: 'rows' }, opts);
}

/**
 * A temp table has no statistics until analyzed, and a join of an unanalyzed staging table to the target is planned as
 * a hash join over the whole target (sql/stage.ts). The fast path joins staging to nothing (the insert reads it, the
 * FK check probes parents by index), so its ANALYZE (7-42 ms per table of a unit) is taken only before a join. Tracked
 * per transaction: staging tables are emptied at COMMIT, and a later transaction stages other rows.
 */
class Staging {
  private readonly analyzed = new Set<string>();
  constructor(private readonly live: PoolClient) {}
  markAnalyzed(name: string): void {
    this.analyzed.add(name);
  }
  async analyze(name: string): Promise<void> {
    if (this.analyzed.has(name)) return;
    await this.live.query(analyzeStaging(name));
    this.analyzed.add(name);
  }
}

/**
 * Merges staging into the target. Owned tables: cross-tenant check on every unique key (sql/cross-tenant.ts), then the
 * policy. Shared tables: insert the missing parents only. `trackWritten`: the keys inserted go into that table.
 */
async function merge(
  live: PoolClient,
  staging: Staging,
  plan: Plan,
  ctx: RenderContext,
  table: PlanTable,
  stagingName: string,
  staged: number,
  policy: ConflictPolicy,
  tenantIds: TenantId[],
  trackWritten: string | null,
): Promise<TableOutcome> {
  if (staged === 0) return { staged, written: 0, kept: 0, conflicts: 0 };
  const insert = insertStaged(plan, ctx, table, stagingName, policy);
  if (table.role === 'shared') {
    const { rowCount } = await live.query(insert);
    return { staged, written: rowCount ?? 0, kept: 0, conflicts: 0 };
  }
  // Under skip and fail the insert is `ON CONFLICT DO NOTHING` on every unique key and index: a staged row that meets
  // any key already in live is left out, and one it inserts is this tenant's, identical to the backup's. So when it
  // inserts every staged row, live held none of their keys: no other tenant's (I1 holds) and no conflict. Checks
  // first only where that proof fails: overwrite (its insert updates rows), and user triggers that fire on the insert
  // (FK checks by PostgreSQL) and may change the rows it inserts. When the insert left rows out, the checks run after
  // it, still inside the transaction: a refusal rolls the insert back with everything else, nothing committed.
  const checkAfterInsert =
    policy !== 'overwrite' && (plan.fkEnforcement === 'replica' || table.userTriggers.length === 0);
  const countConflicts = async () =>
    Number((await live.query<{ n: string }>(conflictCount(plan, table, stagingName, 'rows'))).rows[0]!.n);
  const check = async () => {
    await staging.analyze(stagingName);
    // Stop before anything of the table commits when another tenant holds one of its keys.
    await assertNoCrossTenantKeys(live, plan, ctx, table, stagingName, tenantIds, 'rows');
    const conflicts = await countConflicts();
    if (policy === 'fail' && conflicts > 0) throw conflictPolicyRefusal(table.key, conflicts, tenantIds);
    return conflicts;
  };
  let conflicts = checkAfterInsert ? 0 : await check();
  let written: number;
  if (trackWritten) {
    await live.query(createWrittenKeys(plan, table, trackWritten));
    written = (await live.query(insertTracked(insert, table, trackWritten))).rowCount ?? 0;
  } else {
    written = (await live.query(insert)).rowCount ?? 0;
  }
  if (checkAfterInsert && written < staged) conflicts = await check();
  return { staged, written, kept: policy === 'skip' ? conflicts : 0, conflicts };
}

/**
 * What every staged transaction does after its merges, before COMMIT: the cycle columns inserted as NULL are set, the
 * sequences move past the restored ids, and (FK triggers suspended) every FK of the written rows is checked.
 */
async function finishStaged(
  live: PoolClient,
  staging: Staging,
  plan: Plan,
  staged: StagedTable[],
  tenantIds: TenantId[],
  signal?: AbortSignal,
): Promise<void> {
  for (const s of staged) {
    if (!s.written) continue;
    await staging.analyze(s.name);
    await live.query(fillWrittenRows(plan, s.table, s.name, s.written));
  }
  for (const s of staged) for (const statement of advanceSequences(s.table, s.name)) await live.query(statement);
  if (plan.fkEnforcement === 'replica') {
    for (const s of staged) {
      checkAbort(signal);
      // Rows left out: the check joins the target (and the merge's checks have usually analyzed staging already).
      if (!s.allWritten) await staging.analyze(s.name);
      await assertNoOrphans(live, plan, s.table, s.name, tenantIds, s.allWritten);
    }
  }
  checkAbort(signal);
}

/**
 * A table merged in this transaction. `written`: the table of the keys it inserted, for the fill of columns inserted
 * NULL. `allWritten`: every staged row was inserted (or overwritten), so live's rows of the staged keys are the staged
 * rows (once the fill has run; FK triggers suspended, so no user trigger changed them).
 */
interface StagedTable {
  table: PlanTable;
  name: string;
  written: string | null;
  allWritten: boolean;
}

/** The primary keys of the rows a merge inserted (tracked in `writtenName`), as text, at most recordedKeysLimit. */
async function recordedKeys(
  live: PoolClient,
  table: PlanTable,
  writtenName: string,
  total: number,
): Promise<{ keys: string[][]; total: number }> {
  const { rows } = await live.query<{ key: string[] }>(writtenKeys(table, writtenName, recordedKeysLimit));
  return { keys: rows.map((r) => r.key), total };
}

/** FK triggers are suspended (replica): every FK of the staged keys' live rows is checked, and their parents locked. */
async function assertNoOrphans(
  live: PoolClient,
  plan: Plan,
  table: PlanTable,
  stagingName: string,
  tenantIds: TenantId[],
  asStaged = false,
): Promise<void> {
  const orphans = await scanOrphans(live, plan, [table], () => ({ staged: stagingName, asStaged }));
  if (orphans.length) throw danglingReference(table.key, orphans, tenantIds);
}

/** Rows of the tenant per table in scratch, to decide between one transaction and chunks. */
async function countRows(scratch: PoolClient, plan: Plan, ctx: RenderContext): Promise<number[]> {
  const counts: number[] = [];
  for (const t of plan.tables) {
    const { rows } = await scratch.query<{ n: string }>(ownedRowCount(plan, ctx, t));
    counts.push(Number(rows[0]!.n));
  }
  return counts;
}

/**
 * Takes every tenant's lock on a session of its own (outside the pool, which the copy itself draws from), held for the
 * whole copy (all chunks), in one order (no deadlock). The wait has no lock_timeout: a second restore of a tenant waits
 * for the first (the activity heartbeats meanwhile), as long as the session's statement_timeout at most, and then
 * retries. While it waits it listens on the tenant's channel, so that it learns which restore committed the tenant.
 *
 * Then, whatever the attempt, `expectAbsent`: tenants that preflight found absent and that nothing of this restore has
 * written yet must still be absent now that no other restore can be writing them. One that came back (another restore
 * finished it while this one waited, or someone re-created it) is refused, nothing of it written, naming the restore
 * that wrote it when this one heard it. `presentMayBeOwn` (a retry whose earlier attempts reported no commit: one may
 * have committed and died before saying so) accepts a present tenant only when no other restore announced it and
 * live's rows equal scratch's, row for row (the validation checksums).
 */
async function lockTenants(input: CopyTenantInput, expectAbsent: TenantId[]): Promise<Client> {
  const { plan, tenantIds, signal } = input;
  const client = await dedicatedSession(input.live, lockSessionName(input.restoreId));
  const restoredBy = new Map<TenantId, string>();
  const heldBy = new Map<TenantId, { pid: number; applicationName: string }>();
  try {
    // Only this session: every other statement of the restore keeps the workers' lock_timeout.
    await client.query('SET lock_timeout = 0');
    if (expectAbsent.length) {
      const { rows } = await client.query<{ id: string; channel: string }>(tenantChannels(plan, expectAbsent));
      const tenantOf = new Map(rows.map((r) => [r.channel, r.id]));
      client.on('notification', (n) => {
        const id = tenantOf.get(n.channel);
        if (id !== undefined && n.payload && n.payload !== input.restoreId) restoredBy.set(id, n.payload);
      });
      await client.query(rows.map((r) => `LISTEN ${escapeIdentifier(r.channel)}`).join('; '));
    }
    for (const id of [...tenantIds].sort()) {
      checkAbort(signal);
      const { rows } = await client.query<{ locked: boolean }>(tryTenantLock(plan, id));
      if (rows[0]?.locked) continue;
      const holder = (await client.query<{ pid: number; application_name: string }>(tenantLockHolder(plan, id)))
        .rows[0];
      if (holder) heldBy.set(id, { pid: holder.pid, applicationName: holder.application_name });
      await input.onLockWait?.(id, holder ? describeHolder(holder.pid, holder.application_name) : 'another session');
      await waitForLock(input.live, client, tenantLock(plan, id), id, heldBy.get(id), signal);
    }
    // Notifications sent by commits before the lock was granted are delivered by now (before the answer to the lock
    // statement); one more round trip on this session makes sure of it.
    const back = expectAbsent.length ? [...(await liveRoots(client, plan, expectAbsent))] : [];
    const refused: TenantId[] = [];
    for (const id of back) {
      if (input.presentMayBeOwn && !restoredBy.has(id) && (await rowsEqualScratch(input, id))) continue;
      refused.push(id);
    }
    if (refused.length) {
      const who = refused.map((id) => {
        const by = restoredBy.get(id);
        if (by) return `restore ${by} restored tenant ${id} while this one waited for its lock`;
        const holder = heldBy.get(id);
        if (holder)
          return `tenant ${id}'s lock was held by ${describeHolder(holder.pid, holder.applicationName)} while this one waited`;
        return `another restore of tenant ${id} finished, or the application re-created it`;
      });
      throw new TenantPresentError(
        `Tenant(s) ${refused.join(', ')} came back into live between this restore's preflight and its copy (${who.join('; ')}). ` +
          `Nothing of them was written by this restore${input.presentMayBeOwn ? ' (an earlier attempt of this copy reported no commit, and live does not hold exactly its backup rows)' : ''}. ` +
          `Check the other restore's report before doing anything else.`,
        { tenantIds: refused, restoredBy: Object.fromEntries(refused.map((id) => [id, restoredBy.get(id) ?? null])) },
      );
    }
    return client;
  } catch (error) {
    await client.end().catch(() => undefined);
    throw error;
  }
}

/** A lock session as operators find it in pg_stat_activity: a restore's id, else its pid and application_name. */
function describeHolder(pid: number, applicationName: string): string {
  const restore = restoreOfLockSession(applicationName);
  return restore
    ? `restore ${restore} (pid ${pid})`
    : `a session that is not a restore (pid ${pid}, application_name '${applicationName}')`;
}

/**
 * Blocks in `pg_advisory_lock` on the lock session. A cancelled copy cancels the wait from a session of the pool (the
 * lock session is busy in it). The session's statement_timeout ends a wait that lasts too long: that is retried.
 */
async function waitForLock(
  pool: Pool,
  client: Client,
  lock: { text: string; values?: unknown[] },
  id: TenantId,
  holder: { pid: number; applicationName: string } | undefined,
  signal?: AbortSignal,
): Promise<void> {
  const pid = (client as unknown as { processID?: number }).processID;
  const cancel = () => {
    if (pid) void pool.query('SELECT pg_cancel_backend($1)', [pid]).catch(() => undefined);
  };
  signal?.addEventListener('abort', cancel, { once: true });
  try {
    checkAbort(signal);
    await client.query(lock);
  } catch (error) {
    checkAbort(signal);
    if ((error as { code?: string }).code === '57014') {
      throw Object.assign(
        new Error(
          `Tenant ${id} is being restored by ${holder ? describeHolder(holder.pid, holder.applicationName) : 'another session'}: this copy waited for its advisory lock as long as TENANT_RESTORE_STATEMENT_TIMEOUT allows, and retries. If no other restore of it should be running, look for that session in pg_stat_activity on live.`,
        ),
        { code: '55P03' },
      );
    }
    throw error;
  } finally {
    signal?.removeEventListener('abort', cancel);
  }
}

/** Live's rows of the tenant equal scratch's, table by table: count and full-row checksum (validate.ts, as overwrite). */
async function rowsEqualScratch(input: CopyTenantInput, id: TenantId): Promise<boolean> {
  const check = await validateTenant({
    scratch: input.scratch,
    live: input.live,
    plan: input.plan,
    tenantId: id,
    tenantIds: [id],
    conflict: 'overwrite',
  });
  return check.ok;
}

export async function copyTenant(input: CopyTenantInput): Promise<CopyResult> {
  const started = Date.now();
  const { plan, tenantIds, signal } = input;
  assertPlan(plan);
  checkAbort(signal);
  const ctx = renderContext(plan, tenantIds);
  // Every table is read from one snapshot of scratch. Both sides of the COPY in the canonical text settings (ISO dates,
  // UTF8, UTC, full float digits): scratch's text of a row must read back in live as the same values.
  const scratch = await openSession(input.scratch, sessionSetup({ mode: 'snapshot', canonicalText: true, tenantIds }));
  let scratchBroken = false;
  let lock: Client | undefined;
  try {
    // The plan checked it; checked again here, before anything is written, for a copy given another live or scratch.
    await assertSameEncoding(scratch, input.live);
    await assertTenantsInBackup(scratch, plan, tenantIds);
    // A checkpoint is evidence of an earlier commit of this copy: those tenants are this restore's own.
    lock = await lockTenants(input, input.resumeFrom ? [] : (input.expectAbsent ?? []));
    // A partial tenant goes in one transaction: its keys are recorded from that transaction's inserts, and the chunked
    // path's second pass (deferred FK columns) must never touch a row its users kept.
    const chunkRows = input.recordKeys ? undefined : input.chunkRows;
    let throttledMs = 0;
    const yieldToLive: YieldToLive = async (live, signal) => {
      const waited = (await input.yieldToLive?.(live, signal)) ?? 0;
      throttledMs += waited;
      return waited;
    };
    const copy = { ...input, yieldToLive };
    let result: CopyTotals;
    let chunked = Boolean(input.resumeFrom);
    if (input.resumeFrom) {
      // The chunk size of the attempt that wrote the checkpoint, when the input does not carry it: the largest table.
      const size = chunkRows ?? Math.max(...(await countRows(scratch, plan, ctx)), 1);
      result = await copyChunked(copy, scratch, ctx, size);
    } else {
      // One transaction unless a table holds more than chunkRows rows of the tenants. Nothing is counted first: the
      // transaction stages at most chunkRows + 1 rows per table, and one that finds more is rolled back (nothing of it
      // committed) and the copy goes in chunks.
      const whole = await copyOneTransaction(copy, scratch, ctx, chunkRows);
      chunked = whole === tooLarge;
      result = whole === tooLarge ? await copyChunked(copy, scratch, ctx, chunkRows!) : whole;
    }
    return { ...result, tenantIds, chunked, durationMs: Date.now() - started, throttledMs };
  } catch (error) {
    scratchBroken = true;
    throw error;
  } finally {
    await closeSession(scratch, scratchBroken);
    // Ending the session releases its advisory locks.
    await lock?.end().catch(() => undefined);
  }
}

type CopyTotals = Pick<CopyResult, 'rows' | 'skipped' | 'parentClosure' | 'restoredKeys'> & {
  conflicts: Record<string, number>;
};

function emptyTotals(plan: Plan, from?: CopyCheckpoint): CopyTotals {
  const rows: Record<string, number> = {};
  const skipped: Record<string, number> = {};
  const conflicts: Record<string, number> = {};
  for (const t of plan.tables)
    if (t.role !== 'shared') {
      rows[t.key] = from?.rows[t.key] ?? 0;
      skipped[t.key] = 0;
      conflicts[t.key] = 0;
    }
  const parentClosure = plan.tables
    .filter((t) => t.role === 'shared' && (from?.rows[t.key] ?? 0) > 0)
    .map((t) => ({ table: t.key, rows: from!.rows[t.key]! }));
  return { rows, skipped, conflicts, parentClosure };
}

/**
 * `countIdentical`: in a chunked copy, a staged row already in live with the backup's content was written by an earlier
 * attempt of the same chunk (committed, but its checkpoint was lost with the worker), so it counts as restored; the
 * totals then cover the tenant exactly once however often a chunk was replayed.
 */
function addOutcome(totals: CopyTotals, table: PlanTable, outcome: TableOutcome, countIdentical = false): void {
  if (table.role === 'shared') {
    if (outcome.written === 0) return;
    const entry = totals.parentClosure.find((p) => p.table === table.key);
    if (entry) entry.rows += outcome.written;
    else totals.parentClosure.push({ table: table.key, rows: outcome.written });
    return;
  }
  const identical = countIdentical ? outcome.staged - outcome.written - outcome.kept : 0;
  totals.rows[table.key] = (totals.rows[table.key] ?? 0) + outcome.written + identical;
  totals.skipped[table.key] = (totals.skipped[table.key] ?? 0) + outcome.kept;
  totals.conflicts[table.key] = (totals.conflicts[table.key] ?? 0) + outcome.conflicts;
}

/** What copyOneTransaction returns when a table holds more than chunkRows rows of the tenants (rolled back). */
const tooLarge = Symbol('more than chunkRows');

class TooLargeForOneTransaction extends Error {}

/** The default: every table of the tenant in one live transaction, all or nothing. */
async function copyOneTransaction(
  input: CopyTenantInput,
  scratch: PoolClient,
  ctx: RenderContext,
  chunkRows?: number,
): Promise<CopyTotals | typeof tooLarge> {
  const { plan, tenantIds, conflict, signal } = input;
  const totals = emptyTotals(plan);
  // A retry over rows an earlier attempt committed (known, or accepted as its own under the lock): those rows, found
  // identical, are this copy's restored rows. Not for a partial tenant, whose identical rows were there before it.
  const overOwnRows = Boolean(input.earlierAttemptCommitted || input.presentMayBeOwn) && !input.recordKeys;
  try {
    return await liveTransaction(input, copyTables);
  } catch (error) {
    if (error instanceof TooLargeForOneTransaction) return tooLarge;
    throw error;
  }
  async function copyTables(live: PoolClient, staging: Staging): Promise<CopyTotals> {
    const staged: StagedTable[] = [];
    for (const [i, table] of plan.tables.entries()) {
      checkAbort(signal);
      await input.yieldToLive?.(live, signal);
      const name = stagingName(`tr_stage_${i}`, table, { kind: 'rows' });
      const recordKeys = input.recordKeys && table.role !== 'shared';
      const written = table.nullThenUpdate.length || recordKeys ? `tr_written_${i}` : null;
      const n = await stage(scratch, live, plan, ctx, table, name, {
        signal,
        cap: chunkRows === undefined ? undefined : chunkRows + 1,
        analyze: 'later',
      });
      if (chunkRows !== undefined && n > chunkRows) throw new TooLargeForOneTransaction();
      const outcome = await merge(live, staging, plan, ctx, table, name, n, conflict, tenantIds, written);
      addOutcome(totals, table, outcome, overOwnRows);
      if (recordKeys && outcome.written > 0)
        (totals.restoredKeys ??= {})[table.key] = await recordedKeys(live, table, written!, outcome.written);
      // No row staged, no written-keys table (merge creates it only for rows): nothing of this table to fill.
      staged.push({
        table,
        name,
        written: table.nullThenUpdate.length && n > 0 ? written : null,
        allWritten: outcome.written === n,
      });
    }
    await finishStaged(live, staging, plan, staged, tenantIds, signal);
    return totals;
  }
}

/** Copies whose restore id was committed on their tenants' channels (liveTransaction). */
const announced = new WeakSet<CopyTenantInput>();

/**
 * One transaction on live for the tenants (beginLive), committed when `work` returns, rolled back when it throws. A
 * COPY interrupted mid-stream can leave the connection in an unknown protocol state: after an abort it is not reused.
 */
async function liveTransaction<T>(
  input: CopyTenantInput,
  work: (live: PoolClient, staging: Staging) => Promise<T>,
): Promise<T> {
  const { plan, tenantIds } = input;
  const live = await openSession(
    input.live,
    sessionSetup({
      mode: 'write',
      canonicalText: true,
      replicaRole: plan.fkEnforcement === 'replica',
      deferConstraints: true,
      tenantIds,
    }),
  );
  let broken = false;
  try {
    const result = await work(live, new Staging(live));
    checkAbort(input.signal);
    // Once per copy: the restore id on the tenants' channels, delivered to a waiting restore only if this commits.
    const announce = input.restoreId !== undefined && !announced.has(input);
    if (announce) await live.query(announceRestore(plan, tenantIds, input.restoreId!));
    if (input.beforeCommit) {
      const { rows } = await live.query<{ id: string }>('SELECT pg_current_xact_id()::text AS id');
      await input.beforeCommit(rows[0]!.id);
    }
    await live.query('COMMIT');
    if (announce) announced.add(input);
    await input.onCommitted?.();
    return result;
  } catch (error) {
    await live.query('ROLLBACK').catch(() => (broken = true));
    if (input.signal?.aborted) broken = true;
    throw error;
  } finally {
    live.release(broken);
  }
}

/**
 * Large tenants: chunks of `chunkRows` rows of one table, by primary-key keyset, each its own transaction, through the
 * units of chunkUnits() (plan/index.ts). Every committed chunk satisfies every FK of live: FK columns that
 * reference rows a later chunk brings (a self-reference, a cycle) go in NULL, and the unit's fill pass sets them once
 * every row of the unit is in; a cycle whose forward FK is NOT NULL goes in one transaction. Each transaction is checked
 * before its COMMIT, by the orphan scan (replica) or by PostgreSQL's own FK triggers. A failure says exactly what was
 * committed before it (chunks and rows per table, FK columns still NULL), never "nothing was written" unless true.
 */
async function copyChunked(
  input: CopyTenantInput,
  scratch: PoolClient,
  ctx: RenderContext,
  chunkRows: number,
): Promise<CopyTotals> {
  const { plan, resumeFrom } = input;
  if (
    resumeFrom &&
    (resumeFrom.tableIndex < 0 ||
      resumeFrom.tableIndex > plan.tables.length ||
      (resumeFrom.position !== undefined && !(Number.isInteger(resumeFrom.position) && resumeFrom.position >= 0)))
  ) {
    throw new InvalidCheckpointError(
      `The checkpoint (table ${resumeFrom.tableIndex}, position ${resumeFrom.position ?? 0}) does not fit this plan: start the copy over without a checkpoint.`,
    );
  }
  const run: ChunkRun = {
    input,
    scratch,
    ctx,
    chunkRows,
    totals: emptyTotals(plan, resumeFrom),
    progress: { ...(resumeFrom?.rows ?? {}) },
    committed: new Map(),
    pendingNull: [],
  };
  const start = resumeFrom?.tableIndex ?? 0;
  try {
    for (const unit of chunkUnits(plan)) {
      if (unit.end <= start) continue;
      if (unit.mode === 'one-transaction') await copyUnitInOneTransaction(run, unit, start);
      else await copyUnitInChunks(run, unit, start);
    }
  } catch (error) {
    throw explainCommitted(error, run);
  }
  return run.totals;
}

interface ChunkRun {
  input: CopyTenantInput;
  scratch: PoolClient;
  ctx: RenderContext;
  chunkRows: number;
  totals: CopyTotals;
  progress: Record<string, number>;
  /** What this call committed, per table, for the message of a later failure. */
  committed: Map<string, { chunks: number; rows: number }>;
  /** `table(columns)` committed NULL whose fill pass has not run yet. */
  pendingNull: string[];
}

function recordCommitted(run: ChunkRun, table: PlanTable, outcome: TableOutcome): void {
  addOutcome(run.totals, table, outcome, true);
  run.progress[table.key] =
    table.role === 'shared' ? (run.progress[table.key] ?? 0) + outcome.written : run.totals.rows[table.key]!;
  if (outcome.staged === 0) return;
  const c = run.committed.get(table.key) ?? { chunks: 0, rows: 0 };
  run.committed.set(table.key, { chunks: c.chunks + 1, rows: c.rows + outcome.written });
}

/**
 * One transaction on live for the chunk of `table` after `lastKey`: staged from scratch, `work` applied, every FK of
 * the chunk's rows checked, committed. Returns what `work` returned, the staged count and the chunk's last key.
 */
async function chunkTransaction<T>(
  run: ChunkRun,
  table: PlanTable,
  lastKey: string[] | undefined,
  work: (live: PoolClient, staging: Staging, name: string, staged: number) => Promise<T>,
): Promise<{ result: T; staged: number; lastKey: string[] | undefined }> {
  const { plan, tenantIds, signal } = run.input;
  checkAbort(signal);
  if (lastKey) await run.scratch.query(setKeysetCursor(lastKey));
  return liveTransaction(run.input, async (live, staging) => {
    await run.input.yieldToLive?.(live, signal);
    const name = stagingName('tr_stage_chunk', table, { kind: 'rows' });
    const staged = await stage(run.scratch, live, plan, run.ctx, table, name, {
      chunk: { limit: run.chunkRows, afterKey: Boolean(lastKey) },
      signal,
      analyze: 'always',
    });
    staging.markAnalyzed(name);
    const result = await work(live, staging, name, staged);
    if (plan.fkEnforcement === 'replica') await assertNoOrphans(live, plan, table, name, tenantIds);
    let next = lastKey;
    if (staged > 0) {
      const { rows } = await live.query<{ key: string[] }>(lastStagedKey(table, name));
      next = rows[0]!.key;
    }
    return { result, staged, lastKey: next };
  });
}

/** Where a resumed copy of `table` goes on: the key of its `position`-th row on scratch (the checkpoint's count). */
async function keysetCursor(run: ChunkRun, table: PlanTable, position: number): Promise<string[]> {
  const { rows } = await run.scratch.query<{ key: string[] }>(keysetCursorAt(run.input.plan, run.ctx, table, position));
  if (!rows[0])
    throw new InvalidCheckpointError(
      `The checkpoint says ${position} rows of ${table.key} were copied, but scratch holds fewer of these tenants: it is not the scratch the copy started from. Start the copy over without a checkpoint.`,
    );
  return rows[0].key;
}

/** A unit in chunks: each table's chunks with the unit's forward/self FK columns NULL, then the fill pass. */
async function copyUnitInChunks(run: ChunkRun, unit: ChunkUnit, start: number): Promise<void> {
  const { plan, tenantIds, conflict, resumeFrom, onCheckpoint } = run.input;
  const fills = Object.keys(unit.deferred).length > 0;
  for (let i = Math.max(unit.start, start); i < unit.end; i++) {
    const table = plan.tables[i]!;
    const nulls = unit.deferred[table.key] ?? [];
    // Rows of this table committed so far, in keyset order: the checkpoint carries this count, never a key.
    let position = i === resumeFrom?.tableIndex ? (resumeFrom.position ?? 0) : 0;
    let lastKey = position > 0 ? await keysetCursor(run, table, position) : undefined;
    for (;;) {
      const chunk = await chunkTransaction(run, table, lastKey, async (live, staging, name, staged) => {
        const outcome = await merge(
          live,
          staging,
          plan,
          run.ctx,
          { ...table, nullThenUpdate: nulls },
          name,
          staged,
          conflict,
          tenantIds,
          null,
        );
        for (const statement of advanceSequences(table, name)) await live.query(statement);
        return outcome;
      });
      lastKey = chunk.lastKey;
      position += chunk.staged;
      recordCommitted(run, table, chunk.result);
      const pending = `${table.key}(${nulls.join(', ')})`;
      if (nulls.length && chunk.staged > 0 && !run.pendingNull.includes(pending)) run.pendingNull.push(pending);
      const done = chunk.staged < run.chunkRows;
      // The unit is done when its fill pass is: until then, a resumed copy must come back into the unit.
      const unitDone = done && !(fills && i === unit.end - 1);
      await onCheckpoint?.(
        unitDone
          ? { tableIndex: i + 1, rows: { ...run.progress } }
          : { tableIndex: i, position, rows: { ...run.progress } },
      );
      if (done) break;
    }
  }
  if (!fills) return;
  // Fill pass: every row of the unit is in live now, so the parents of the NULL columns are there (or the chunk's
  // check says which are not, and that chunk is not committed). Idempotent, so a resumed copy simply runs it again.
  for (let i = unit.start; i < unit.end; i++) {
    const table = plan.tables[i]!;
    const columns = unit.deferred[table.key];
    if (!columns?.length) continue;
    let lastKey: string[] | undefined;
    for (;;) {
      const chunk = await chunkTransaction(
        run,
        table,
        lastKey,
        async (live, _staging, name) => void (await live.query(fillChunkRows(plan, run.ctx, table, columns, name))),
      );
      lastKey = chunk.lastKey;
      if (chunk.staged < run.chunkRows) break;
    }
    run.pendingNull = run.pendingNull.filter((p) => !p.startsWith(`${table.key}(`));
  }
  await onCheckpoint?.({ tableIndex: unit.end, rows: { ...run.progress } });
}

/** A unit whose forward FK is NOT NULL: all its tables' rows of the tenant in one transaction, as an unchunked copy. */
async function copyUnitInOneTransaction(run: ChunkRun, unit: ChunkUnit, start: number): Promise<void> {
  const { plan, tenantIds, conflict, signal, onCheckpoint } = run.input;
  // A checkpoint of an older version may point inside the unit: the unit is redone whole (idempotent), so the rows the
  // checkpoint counted for its first tables are counted again below, not twice.
  for (let i = unit.start; i < Math.min(start, unit.end); i++)
    if (plan.tables[i]!.role !== 'shared') run.totals.rows[plan.tables[i]!.key] = 0;
  const outcomes: Array<[PlanTable, TableOutcome]> = [];
  await liveTransaction(run.input, async (live, staging) => {
    const staged: StagedTable[] = [];
    for (let i = unit.start; i < unit.end; i++) {
      const table = plan.tables[i]!;
      checkAbort(signal);
      await run.input.yieldToLive?.(live, signal);
      const name = stagingName(`tr_stage_${i}`, table, { kind: 'rows' });
      const written = table.nullThenUpdate.length ? `tr_written_${i}` : null;
      const n = await stage(run.scratch, live, plan, run.ctx, table, name, { signal, analyze: 'later' });
      const outcome = await merge(live, staging, plan, run.ctx, table, name, n, conflict, tenantIds, written);
      outcomes.push([table, outcome]);
      staged.push({ table, name, written: n > 0 ? written : null, allWritten: outcome.written === n });
    }
    await finishStaged(live, staging, plan, staged, tenantIds, signal);
  });
  for (const [table, outcome] of outcomes) recordCommitted(run, table, outcome);
  await onCheckpoint?.({ tableIndex: unit.end, rows: { ...run.progress } });
}

/**
 * A chunked copy that fails has usually committed chunks before: the named error's "Nothing was written" would be
 * false. Its message is rewritten to say exactly what this attempt committed, and that no FK of it dangles.
 */
function explainCommitted(caught: unknown, run: ChunkRun): unknown {
  // A database error that will fail again is named here already (as the activity boundary would), so that its message
  // too can say what was committed; a transient one is retried as it is, and resumes from the checkpoint.
  const error = isPgError(caught) ? (classifyDbError(caught) ?? caught) : caught;
  if (!(error instanceof RestoreError)) return error;
  const earlier = Object.values(run.input.resumeFrom?.rows ?? {}).some((n) => n > 0);
  const chunks = [...run.committed.entries()];
  if (!chunks.length && !earlier) return error;
  const total = chunks.reduce((n, [, c]) => n + c.chunks, 0);
  const what = chunks.length
    ? `${total} chunk(s) were committed before this failure (${chunks.map(([t, c]) => `${t}: ${c.chunks} chunk(s), ${c.rows} row(s) written`).join('; ')})`
    : 'this attempt committed nothing';
  const note =
    `The failing chunk was rolled back, but ${what}${earlier ? ', after what earlier attempts committed up to the checkpoint this one resumed from' : ''}. ` +
    `Every FK of the committed rows holds${run.pendingNull.length ? `; FK column(s) ${run.pendingNull.join(', ')} of committed rows are still NULL, and nothing sets them now (set them from the backup by hand, or a new restore with --allow-partial inserts the missing rows but does not update these)` : ''}. ` +
    // The failure is final for this restore; a restore id is used once, and the committed root row makes the tenant
    // 'partial' for the next restore, which refuses it unless the operator says --allow-partial.
    `Fix the cause, then restore the tenant again with a new restore and --allow-partial (its committed rows make it partial in live): ` +
    `the rows already committed are kept and only the missing ones are inserted.`;
  const claim = /Nothing was (written|committed)[^.]*\./;
  error.message = claim.test(error.message) ? error.message.replace(claim, note) : `${error.message} ${note}`;
  (error.details as Record<string, unknown>).committed = Object.fromEntries(chunks);
  return error;
}
