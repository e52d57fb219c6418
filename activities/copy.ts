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
import { pipeline } from 'node:stream/promises';
import { copyFrom, copyTo, dedicatedSession, escapeIdentifier as q, escapeLiteral, type Client, type Pool, type PoolClient } from './db';
import { classifyDbError, ConflictPolicyError, CrossTenantConflictError, DanglingReferenceError, InvalidCheckpointError, isPgError, RestoreError, TenantNotInBackupError, TenantPresentError } from './errors';
import { assertPlan, chunkUnits, fkTarget, qualify, renderContext, type ChunkUnit, type Plan, type PlanTable } from './plan';
import { otherOwnerPredicate, ownedPredicate, setTenantIdsSql, type RenderContext } from './plan/ownership';
import { columnList, keyMatch, keysetAfter, rowText, writtenNames } from './plan/sql';
import { recordedKeysLimit, type ConflictPolicy, type CopyCheckpoint, type CopyResult, type TenantId } from './restore-types';
import { rootsInLive } from './tenant-state';

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
}

export type YieldToLive = (live: Pick<PoolClient, 'query'>, signal?: AbortSignal) => Promise<number>;

const keysetSetting = 'tenant_restore.after_key';

/**
 * A restore's statements run without parallel workers: on live's server (scratch usually shares it) the CPUs belong to
 * the tenants that keep writing, and a restore spreads its load over the window's concurrency instead.
 */
export const noParallelWorkersSql = 'SET LOCAL max_parallel_workers_per_gather = 0';

class Aborted extends Error {
  override name = 'AbortError';
}

function checkAbort(signal?: AbortSignal): void {
  if (signal?.aborted) throw signal.reason instanceof Error ? signal.reason : new Aborted('copy cancelled');
}

/** Opens a REPEATABLE READ READ ONLY transaction on scratch: every table is read from the same snapshot. */
async function openScratch(scratch: Pool, tenantIds: TenantId[]): Promise<PoolClient> {
  const client = await scratch.connect();
  try {
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    await client.query(noParallelWorkersSql);
    await client.query(setTenantIdsSql, [tenantIds]);
    return client;
  } catch (error) {
    client.release(true);
    throw error;
  }
}

/** Begins a live transaction for the tenant: triggers suspended for this session when the plan says so. */
async function beginLive(client: PoolClient, plan: Plan, tenantIds: TenantId[]): Promise<void> {
  await client.query('BEGIN');
  await client.query(noParallelWorkersSql);
  // Only this transaction: user triggers and FK triggers stay on for every other session (other tenants writing).
  if (plan.fkEnforcement === 'replica') await client.query('SET LOCAL session_replication_role = replica');
  // Deferrable constraints (cycle strategy 'defer') are checked at COMMIT.
  await client.query('SET CONSTRAINTS ALL DEFERRED');
  await client.query(setTenantIdsSql, [tenantIds]);
}

export async function assertTenantsInBackup(scratch: PoolClient, plan: Plan, tenantIds: TenantId[]): Promise<void> {
  const root = plan.tables.find((t) => t.role === 'root')!;
  const { rows } = await scratch.query<{ missing: string[] | null }>(
    // The alias must not be a plausible column name: inside the subquery an unqualified `id` means r.id.
    `SELECT array_agg(wanted.tenant_id ORDER BY wanted.tenant_id) AS missing FROM unnest($1::text[]) AS wanted(tenant_id)
     WHERE NOT EXISTS (SELECT 1 FROM ${qualify(plan, root.key)} r WHERE r.${q(plan.rootKey.column)}::text = wanted.tenant_id)`,
    [tenantIds],
  );
  const missing = rows[0]?.missing;
  if (missing?.length) {
    throw new TenantNotInBackupError(
      `Tenant(s) ${missing.join(', ')} have no row in ${plan.tenantRoot} of the backup: check the tenant ids and that the backup was taken before the deletion.`,
      { tenantIds: missing },
    );
  }
}

interface TableOutcome {
  staged: number;
  written: number;
  /** Staged keys already in live with other content, and kept (skip). */
  kept: number;
  /** Staged keys already in live with other content (whatever the policy did with them). */
  conflicts: number;
}

/** Streams the selected scratch rows into a fresh staging table on live. Returns the staged row count. */
async function stage(scratch: PoolClient, live: PoolClient, plan: Plan, ctx: RenderContext, table: PlanTable, stagingName: string, opts: { limit?: number; afterKey?: boolean; signal?: AbortSignal }): Promise<number> {
  const names = writtenNames(table);
  // Staging takes live's column types, so a retyped column (drift) is parsed by live's input function.
  await live.query(`CREATE TEMP TABLE ${stagingName} ON COMMIT DROP AS SELECT ${columnList(names)} FROM ${qualify(plan, table.key)} WITH NO DATA`);
  const where = [ownedPredicate(table.key, 't', ctx)];
  if (opts.afterKey) where.push(keysetAfter(table, 't', keysetSetting));
  const tail = opts.limit ? ` ORDER BY ${columnList(table.primaryKey, 't')} LIMIT ${Math.floor(opts.limit)}` : '';
  const source = scratch.query(copyTo(`COPY (SELECT ${columnList(names, 't')} FROM ${qualify(plan, table.key)} t WHERE ${where.join(' AND ')}${tail}) TO STDOUT`));
  const sink = live.query(copyFrom(`COPY ${stagingName} (${columnList(names)}) FROM STDIN`));
  await pipeline(source, sink, { signal: opts.signal });
  await analyzeStaging(live, stagingName);
  return sink.rowCount;
}

/**
 * A temp table has no statistics until analyzed, so PostgreSQL guesses its size and joins it to the target with a
 * hash join over the whole target table (measured: ~300 ms per table for a tenant of 900 rows against 1.4M live
 * rows). Analyzed, the join is a nested loop over the target's unique index. ANALYZE samples at most 30k rows, so
 * it stays cheap for very large tenants too.
 */
export async function analyzeStaging(live: PoolClient, stagingName: string): Promise<void> {
  await live.query(`ANALYZE ${stagingName}`);
}

/**
 * Merges staging into the target. Owned tables: cross-tenant check on every unique key, then the policy. Shared
 * tables: insert the missing parents only.
 */
async function merge(live: PoolClient, plan: Plan, ctx: RenderContext, table: PlanTable, stagingName: string, staged: number, policy: ConflictPolicy, tenantIds: TenantId[], trackWritten: string | null): Promise<TableOutcome> {
  const target = qualify(plan, table.key);
  const names = writtenNames(table);
  const overriding = table.overridingSystemValue ? ' OVERRIDING SYSTEM VALUE' : '';
  const selectList = names.map((c) => (table.nullThenUpdate.includes(c) ? 'NULL' : `s.${q(c)}`)).join(', ');
  if (staged === 0) return { staged, written: 0, kept: 0, conflicts: 0 };

  if (table.role === 'shared') {
    const { rowCount } = await live.query(`INSERT INTO ${target} (${columnList(names)})${overriding} SELECT ${selectList} FROM ${stagingName} s ON CONFLICT DO NOTHING`);
    return { staged, written: rowCount ?? 0, kept: 0, conflicts: 0 };
  }

  // A key held in live, in any unique key, by a row that another tenant owns (alone, or together with ours, as a
  // Pagila rental of one store's customer served by another store's staff) and whose content differs from the
  // backup's: restoring it would change another tenant's row. Stop before writing anything. A row identical to the
  // backup's needs no write (a rerun), so it is no conflict.
  for (const key of table.uniqueKeys) {
    const { rows } = await live.query<{ n: string }>(
      `SELECT count(*) AS n FROM ${stagingName} s JOIN ${target} t ON ${keyMatch(key, 's', 't')}
       WHERE ${rowText(names, 't')} IS DISTINCT FROM ${rowText(names, 's')} AND ${otherOwnerPredicate(table.key, 't', ctx)}`,
    );
    const n = Number(rows[0]!.n);
    if (n > 0) {
      throw new CrossTenantConflictError(
        `${n} row(s) of ${table.key} that tenant(s) ${tenantIds.join(', ')} would restore have a key (${key.join(', ')}) that another tenant holds in live. ` +
          `The other tenant's rows are untouched. Nothing was written for these tenants. Find the rows with that key in live, decide which tenant owns them, then run the restore for these tenants again.`,
        { table: table.key, key, rows: n, tenantIds },
      );
    }
  }
  await crossTenantIndexCheck(live, plan, ctx, table, stagingName, tenantIds);

  // Same-tenant keys already in live with other content: these are the policy's conflicts. An identical row is
  // already restored (a rerun or a resumed chunk) and is left as it is under every policy.
  const sameContent = rowText(names.filter((c) => !table.nullThenUpdate.includes(c)), 's');
  const liveContent = rowText(names.filter((c) => !table.nullThenUpdate.includes(c)), 't');
  const { rows: conflictRows } = await live.query<{ n: string }>(
    `SELECT count(*) AS n FROM ${stagingName} s WHERE EXISTS (SELECT 1 FROM ${target} t WHERE ${keyMatch(table.primaryKey, 's', 't')} AND ${liveContent} IS DISTINCT FROM ${sameContent})`,
  );
  const conflicts = Number(conflictRows[0]!.n);
  if (policy === 'fail' && conflicts > 0) {
    throw new ConflictPolicyError(
      `${conflicts} row(s) of ${table.key} of tenant(s) ${tenantIds.join(', ')} already exist in live with other content, and the conflict policy is 'fail'. ` +
        `Nothing was written. Rerun with --conflict skip (keep live's rows) or --conflict overwrite (take the backup's), or inspect the tenant first.`,
      { table: table.key, rows: conflicts, tenantIds },
    );
  }

  let insert: string;
  if (policy === 'overwrite') {
    const nonKey = names.filter((c) => !table.primaryKey.includes(c));
    const set = nonKey.length ? nonKey.map((c) => `${q(c)} = EXCLUDED.${q(c)}`).join(', ') : `${q(table.primaryKey[0]!)} = EXCLUDED.${q(table.primaryKey[0]!)}`;
    // The WHERE repeats the ownership test on the row being replaced: a row of another tenant is never overwritten,
    // even if it appeared after the check above.
    insert = `INSERT INTO ${target} AS t (${columnList(names)})${overriding} SELECT ${selectList} FROM ${stagingName} s
      ON CONFLICT (${columnList(table.primaryKey)}) DO UPDATE SET ${set}
      WHERE NOT ${otherOwnerPredicate(table.key, 't', ctx)} AND ${rowText(names, 't')} IS DISTINCT FROM ${rowText(names, 'EXCLUDED')}`;
  } else {
    insert = `INSERT INTO ${target} (${columnList(names)})${overriding} SELECT ${selectList} FROM ${stagingName} s ON CONFLICT DO NOTHING`;
  }
  let written: number;
  if (trackWritten) {
    await live.query(`CREATE TEMP TABLE ${trackWritten} ON COMMIT DROP AS SELECT ${columnList(table.primaryKey)} FROM ${target} WITH NO DATA`);
    const r = await live.query(`WITH w AS (${insert} RETURNING ${columnList(table.primaryKey)}) INSERT INTO ${trackWritten} SELECT * FROM w`);
    written = r.rowCount ?? 0;
  } else {
    written = (await live.query(insert)).rowCount ?? 0;
  }
  return { staged, written, kept: policy === 'skip' ? conflicts : 0, conflicts };
}

/**
 * The cross-tenant guard for partial and expression unique indexes (`lower(email) WHERE deleted_at IS NULL`): the same
 * rule as for plain keys, with the index's own expressions and predicate evaluated on both sides. Their text comes from
 * live's catalog with unqualified column names; each side evaluates it where its table is the only one in scope: the
 * staged rows in a CTE over the staging table (whose columns carry live's names), the live rows inside an EXISTS over
 * the target alone, where the expressions match the index and the predicate lets the planner use the partial index.
 * Without this, `ON CONFLICT DO NOTHING` (skip) silently dropped such a row, and overwrite met a raw unique violation.
 */
async function crossTenantIndexCheck(live: PoolClient, plan: Plan, ctx: RenderContext, table: PlanTable, stagingName: string, tenantIds: TenantId[]): Promise<void> {
  const target = qualify(plan, table.key);
  const names = writtenNames(table);
  for (const index of table.uniqueIndexes ?? []) {
    const where = index.predicate === null ? '' : ` WHERE (${index.predicate})`;
    const eq = index.nullsNotDistinct ? 'IS NOT DISTINCT FROM' : '=';
    const { rows } = await live.query<{ n: string }>(
      `WITH sk AS (SELECT ${columnList(names)}, ${index.keys.map((k, i) => `(${k}) AS tr_key_${i}`).join(', ')} FROM ${stagingName}${where})
       SELECT count(*) AS n FROM sk WHERE EXISTS (
         SELECT 1 FROM ${target} t WHERE ${index.keys.map((k, i) => `(${k}) ${eq} sk.tr_key_${i}`).join(' AND ')}${index.predicate === null ? '' : ` AND (${index.predicate})`}
           AND ${rowText(names, 't')} IS DISTINCT FROM ${rowText(names, 'sk')} AND ${otherOwnerPredicate(table.key, 't', ctx)})`,
    );
    const n = Number(rows[0]!.n);
    if (n > 0) {
      const key = `unique index ${index.name} (${index.keys.join(', ')})${index.predicate === null ? '' : ` WHERE ${index.predicate}`}`;
      throw new CrossTenantConflictError(
        `${n} row(s) of ${table.key} that tenant(s) ${tenantIds.join(', ')} would restore have a key in ${key} that another tenant holds in live. ` +
          `The other tenant's rows are untouched. Nothing was written for these tenants. Find the rows with that key in live, decide which tenant owns them, then run the restore for these tenants again.`,
        { table: table.key, index: index.name, rows: n, tenantIds },
      );
    }
  }
}

/**
 * What every staged transaction does after its merges, before COMMIT: the cycle columns inserted as NULL are set, the
 * sequences move past the restored ids, and (FK triggers suspended) every FK of the written rows is checked.
 */
async function finishStaged(live: PoolClient, plan: Plan, staged: Array<{ table: PlanTable; name: string; written: string | null }>, tenantIds: TenantId[], signal?: AbortSignal): Promise<void> {
  for (const s of staged) if (s.written) await applyDeferredColumns(live, plan, s.table, s.name, s.written);
  for (const s of staged) await advanceSequences(live, s.table, s.name);
  if (plan.fkEnforcement === 'replica') {
    for (const s of staged) {
      checkAbort(signal);
      const orphans = await orphanScan(live, plan, s.table, s.name, () => false);
      if (orphans.length) throw danglingError(s.table.key, orphans, tenantIds);
    }
  }
  checkAbort(signal);
}

/** The primary keys of the rows a merge inserted (tracked in `writtenName`), as text, at most recordedKeysLimit. */
async function writtenKeys(live: PoolClient, table: PlanTable, writtenName: string, total: number): Promise<{ keys: string[][]; total: number }> {
  const { rows } = await live.query<{ key: string[] }>(
    `SELECT ARRAY[${table.primaryKey.map((c) => `${q(c)}::text`).join(', ')}] AS key FROM ${writtenName} ORDER BY ${columnList(table.primaryKey)} LIMIT ${recordedKeysLimit}`,
  );
  return { keys: rows.map((r) => r.key), total };
}

/** Cycle strategy null-then-update: now that every table of the tenant is in, set the FK columns we inserted as NULL. */
async function applyDeferredColumns(live: PoolClient, plan: Plan, table: PlanTable, stagingName: string, writtenName: string): Promise<void> {
  const set = table.nullThenUpdate.map((c) => `${q(c)} = s.${q(c)}`).join(', ');
  await live.query(
    `UPDATE ${qualify(plan, table.key)} t SET ${set} FROM ${stagingName} s JOIN ${writtenName} w ON ${keyMatch(table.primaryKey, 's', 'w')}
     WHERE ${keyMatch(table.primaryKey, 't', 's')}`,
  );
}

/** Moves each sequence past the largest restored value, never backwards (a concurrent nextval may be ahead). */
async function advanceSequences(live: PoolClient, table: PlanTable, stagingName: string): Promise<void> {
  for (const { column, sequence } of table.sequences) {
    await live.query(
      `SELECT setval($1::regclass, x.m, true) FROM (SELECT max(${q(column)})::bigint AS m FROM ${stagingName}) x, ${sequence} seq
       WHERE x.m IS NOT NULL AND (x.m > seq.last_value OR (x.m = seq.last_value AND NOT seq.is_called))`,
      [sequence],
    );
  }
}

/**
 * FK check of the written rows (needed when FK triggers are suspended). For each FK of the table, the parents that
 * the staged keys' live rows reference are locked FOR KEY SHARE (what PostgreSQL's own check does), and references
 * without a parent are counted. Every FK declared in live is checked, those to tables outside the plan (excluded, or
 * only in live) too: nothing else would check them while FK triggers are off. `skip` leaves out FKs by target.
 */
async function orphanScan(live: PoolClient, plan: Plan, table: PlanTable, stagingName: string, skip: (to: string) => boolean): Promise<Array<{ constraint: string; rows: number }>> {
  const found: Array<{ constraint: string; rows: number }> = [];
  for (const fk of table.foreignKeys) {
    if (skip(fk.to)) continue;
    const parent = fkTarget(plan, fk);
    const refs = fk.columns.map((c, i) => `t.${q(c)} AS r${i}`).join(', ');
    const notNull = fk.columns.map((c) => `t.${q(c)} IS NOT NULL`).join(' AND ');
    const match = fk.referencedColumns.map((c, i) => `p.${q(c)} = r.r${i}`).join(' AND ');
    // `locked` is driven from r, one index probe per distinct reference; the references that found a parent are the
    // distinct keys locked, so the orphans are |r| minus those. (Written as an anti-join of the two CTEs,
    // the planner, estimating one row for r, chose a nested loop: 19M comparisons, 1.4-2.4 s for one group's
    // issue_labels.)
    const { rows } = await live.query<{ n: string }>(
      `WITH r AS (SELECT DISTINCT ${refs} FROM ${qualify(plan, table.key)} t JOIN ${stagingName} s ON ${keyMatch(table.primaryKey, 't', 's')} WHERE ${notNull}),
            locked AS (SELECT ${fk.referencedColumns.map((c, i) => `p.${q(c)} AS k${i}`).join(', ')} FROM r JOIN ${parent} p ON ${match} FOR KEY SHARE OF p)
       SELECT (SELECT count(*) FROM r) - (SELECT count(*) FROM (SELECT DISTINCT ${fk.referencedColumns.map((_, i) => `k${i}`).join(', ')} FROM locked) l) AS n`,
    );
    const n = Number(rows[0]!.n);
    if (n > 0) found.push({ constraint: fk.constraint, rows: n });
  }
  return found;
}

function danglingError(table: string, orphans: Array<{ constraint: string; rows: number }>, tenantIds: TenantId[]): DanglingReferenceError {
  return new DanglingReferenceError(
    `Restored rows of ${table} for tenant(s) ${tenantIds.join(', ')} reference parents that exist neither in live nor in the backup's share of these tenants ` +
      `(${orphans.map((o) => `${o.constraint}: ${o.rows}`).join(', ')}). Nothing was committed. Usually the parents belong to another deleted tenant: restore it in the same batch. ` +
      `If the plan's warnings list the constraint as referencing a table the restore does not write, put the missing parent rows back in live first.`,
    { table, orphans, tenantIds },
  );
}

/** Rows of the tenant per table in scratch, to decide between one transaction and chunks. */
async function countRows(scratch: PoolClient, plan: Plan, ctx: RenderContext): Promise<number[]> {
  const counts: number[] = [];
  for (const t of plan.tables) {
    const { rows } = await scratch.query<{ n: string }>(`SELECT count(*) AS n FROM ${qualify(plan, t.key)} t WHERE ${ownedPredicate(t.key, 't', ctx)}`);
    counts.push(Number(rows[0]!.n));
  }
  return counts;
}

/**
 * The advisory lock of one tenant on live, keyed on the tenant root and the id in its own type (so `A0EE...` and
 * `a0ee...` are one tenant). Two restores of the same tenant (two restore ids, or an operator's rerun beside a running
 * restore) would otherwise interleave their merges; the second waits for the first, up to the session's lock_timeout,
 * and its activity retries with backoff.
 */
export function tenantLockSql(plan: Pick<Plan, 'tenantRoot' | 'rootKey'>): string {
  return `SELECT pg_advisory_lock(hashtextextended(${escapeLiteral(`tenant-restore:tenant:${plan.tenantRoot}:`)} || ($1::${plan.rootKey.type})::text, 0))`;
}

/**
 * Takes every tenant's lock on a session of its own (outside the pool, which the copy itself draws from), held for the
 * whole copy (all chunks), in one order (no deadlock). Then `expectAbsent`: tenants that preflight found absent and
 * that nothing of this restore has written yet must still be absent now that no other restore can be writing them;
 * one that came back (another restore finished it while this one waited) is refused, nothing of it written.
 */
async function lockTenants(pool: Pool, plan: Plan, tenantIds: TenantId[], expectAbsent: TenantId[] = []): Promise<Client> {
  const client = await dedicatedSession(pool, 'tenant-restore-lock');
  try {
    for (const id of [...tenantIds].sort()) {
      try {
        await client.query(tenantLockSql(plan), [id]);
      } catch (error) {
        const e = error as { code?: string };
        if (e.code === '55P03') {
          throw Object.assign(new Error(`Tenant ${id} is being restored by another session right now (its advisory lock is held); this copy waits and retries. If no other restore of it should be running, look for sessions holding advisory locks in pg_locks on live.`), { code: '55P03' });
        }
        throw error;
      }
    }
    const back = expectAbsent.length ? [...(await rootsInLive(client, plan, expectAbsent))] : [];
    if (back.length) {
      throw new TenantPresentError(
        `Tenant(s) ${back.join(', ')} came back into live between this restore's preflight and its copy (another restore of them finished, ` +
          `or the application re-created them). Nothing of them was written by this restore. Check the other restore's report before doing anything else.`,
        { tenantIds: back },
      );
    }
    return client;
  } catch (error) {
    await client.end().catch(() => undefined);
    throw error;
  }
}

export async function copyTenant(input: CopyTenantInput): Promise<CopyResult> {
  const started = Date.now();
  const { plan, tenantIds, signal } = input;
  assertPlan(plan);
  checkAbort(signal);
  const ctx = renderContext(plan, tenantIds);
  const scratch = await openScratch(input.scratch, tenantIds);
  let scratchBroken = false;
  let lock: Client | undefined;
  try {
    await assertTenantsInBackup(scratch, plan, tenantIds);
    lock = await lockTenants(input.live, plan, tenantIds, input.resumeFrom ? [] : input.expectAbsent);
    // A partial tenant goes in one transaction: its keys are recorded from that transaction's inserts, and the chunked
    // path's second pass (deferred FK columns) must never touch a row its users kept.
    const chunkRows = input.recordKeys ? undefined : input.chunkRows;
    const counts = chunkRows || input.resumeFrom ? await countRows(scratch, plan, ctx) : null;
    const chunked = Boolean(input.resumeFrom) || (chunkRows !== undefined && counts!.some((n) => n > chunkRows));
    let throttledMs = 0;
    const yieldToLive: YieldToLive = async (live, signal) => {
      const waited = (await input.yieldToLive?.(live, signal)) ?? 0;
      throttledMs += waited;
      return waited;
    };
    const result = chunked
      ? await copyChunked({ ...input, yieldToLive }, scratch, ctx, chunkRows ?? Math.max(...counts!, 1))
      : await copyOneTransaction({ ...input, yieldToLive }, scratch, ctx);
    return { ...result, tenantIds, chunked, durationMs: Date.now() - started, throttledMs };
  } catch (error) {
    scratchBroken = true;
    throw error;
  } finally {
    await scratch.query('ROLLBACK').catch(() => (scratchBroken = true));
    scratch.release(scratchBroken);
    // Ending the session releases its advisory locks.
    await lock?.end().catch(() => undefined);
  }
}

type CopyTotals = Pick<CopyResult, 'rows' | 'skipped' | 'parentClosure' | 'restoredKeys'> & { conflicts: Record<string, number> };

function emptyTotals(plan: Plan, from?: CopyCheckpoint): CopyTotals {
  const rows: Record<string, number> = {};
  const skipped: Record<string, number> = {};
  const conflicts: Record<string, number> = {};
  for (const t of plan.tables) if (t.role !== 'shared') {
    rows[t.key] = from?.rows[t.key] ?? 0;
    skipped[t.key] = 0;
    conflicts[t.key] = 0;
  }
  const parentClosure = plan.tables.filter((t) => t.role === 'shared' && (from?.rows[t.key] ?? 0) > 0).map((t) => ({ table: t.key, rows: from!.rows[t.key]! }));
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

/** The default: every table of the tenant in one live transaction, all or nothing. */
async function copyOneTransaction(input: CopyTenantInput, scratch: PoolClient, ctx: RenderContext): Promise<CopyTotals> {
  const { plan, tenantIds, conflict, signal } = input;
  const totals = emptyTotals(plan);
  return liveTransaction(input, async (live) => {
    const staged: Array<{ table: PlanTable; name: string; written: string | null }> = [];
    for (const [i, table] of plan.tables.entries()) {
      checkAbort(signal);
      await input.yieldToLive?.(live, signal);
      const name = `tr_stage_${i}`;
      const recordKeys = input.recordKeys && table.role !== 'shared';
      const written = table.nullThenUpdate.length || recordKeys ? `tr_written_${i}` : null;
      const n = await stage(scratch, live, plan, ctx, table, name, { signal });
      const outcome = await merge(live, plan, ctx, table, name, n, conflict, tenantIds, written);
      addOutcome(totals, table, outcome);
      if (recordKeys && outcome.written > 0) (totals.restoredKeys ??= {})[table.key] = await writtenKeys(live, table, written!, outcome.written);
      staged.push({ table, name, written: table.nullThenUpdate.length ? written : null });
    }
    await finishStaged(live, plan, staged, tenantIds, signal);
    return totals;
  });
}

/**
 * One transaction on live for the tenants (beginLive), committed when `work` returns, rolled back when it throws. A
 * COPY interrupted mid-stream can leave the connection in an unknown protocol state: after an abort it is not reused.
 */
async function liveTransaction<T>(input: CopyTenantInput, work: (live: PoolClient) => Promise<T>): Promise<T> {
  const live = await input.live.connect();
  let broken = false;
  try {
    await beginLive(live, input.plan, input.tenantIds);
    const result = await work(live);
    checkAbort(input.signal);
    await live.query('COMMIT');
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
 * units of chunkUnits() (plan/index.ts). Every committed chunk satisfies every FK of live (issue 11): FK columns that
 * reference rows a later chunk brings (a self-reference, a cycle) go in NULL, and the unit's fill pass sets them once
 * every row of the unit is in; a cycle whose forward FK is NOT NULL goes in one transaction. Each transaction is checked
 * before its COMMIT, by the orphan scan (replica) or by PostgreSQL's own FK triggers. A failure says exactly what was
 * committed before it (chunks and rows per table, FK columns still NULL), never "nothing was written" unless true.
 */
async function copyChunked(input: CopyTenantInput, scratch: PoolClient, ctx: RenderContext, chunkRows: number): Promise<CopyTotals> {
  const { plan, resumeFrom } = input;
  if (resumeFrom && (resumeFrom.tableIndex < 0 || resumeFrom.tableIndex > plan.tables.length || (resumeFrom.lastKey && resumeFrom.lastKey.length !== plan.tables[resumeFrom.tableIndex]?.primaryKey.length))) {
    throw new InvalidCheckpointError(`The checkpoint (table ${resumeFrom.tableIndex}, key of ${resumeFrom.lastKey?.length ?? 0} values) does not fit this plan: start the copy over without a checkpoint.`);
  }
  const run: ChunkRun = { input, scratch, ctx, chunkRows, totals: emptyTotals(plan, resumeFrom), progress: { ...(resumeFrom?.rows ?? {}) }, committed: new Map(), pendingNull: [] };
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
  run.progress[table.key] = table.role === 'shared' ? (run.progress[table.key] ?? 0) + outcome.written : run.totals.rows[table.key]!;
  if (outcome.staged === 0) return;
  const c = run.committed.get(table.key) ?? { chunks: 0, rows: 0 };
  run.committed.set(table.key, { chunks: c.chunks + 1, rows: c.rows + outcome.written });
}

/**
 * One transaction on live for the chunk of `table` after `lastKey`: staged from scratch, `work` applied, every FK of
 * the chunk's rows checked, committed. Returns what `work` returned, the staged count and the chunk's last key.
 */
async function chunkTransaction<T>(run: ChunkRun, table: PlanTable, lastKey: string[] | undefined, work: (live: PoolClient, name: string, staged: number) => Promise<T>): Promise<{ result: T; staged: number; lastKey: string[] | undefined }> {
  const { plan, tenantIds, signal } = run.input;
  checkAbort(signal);
  if (lastKey) await run.scratch.query(`SELECT set_config('${keysetSetting}', $1::text[]::text, true)`, [lastKey]);
  return liveTransaction(run.input, async (live) => {
    await run.input.yieldToLive?.(live, signal);
    const name = 'tr_stage_chunk';
    const staged = await stage(run.scratch, live, plan, run.ctx, table, name, { limit: run.chunkRows, afterKey: Boolean(lastKey), signal });
    const result = await work(live, name, staged);
    if (plan.fkEnforcement === 'replica') {
      const orphans = await orphanScan(live, plan, table, name, () => false);
      if (orphans.length) throw danglingError(table.key, orphans, tenantIds);
    }
    let next = lastKey;
    if (staged > 0) {
      const { rows } = await live.query<{ key: string[] }>(`SELECT ARRAY[${table.primaryKey.map((c) => `${q(c)}::text`).join(', ')}] AS key FROM ${name} ORDER BY ${table.primaryKey.map((c) => `${q(c)} DESC`).join(', ')} LIMIT 1`);
      next = rows[0]!.key;
    }
    return { result, staged, lastKey: next };
  });
}

/** A unit in chunks: each table's chunks with the unit's forward/self FK columns NULL, then the fill pass. */
async function copyUnitInChunks(run: ChunkRun, unit: ChunkUnit, start: number): Promise<void> {
  const { plan, tenantIds, conflict, resumeFrom, onCheckpoint } = run.input;
  const fills = Object.keys(unit.deferred).length > 0;
  for (let i = Math.max(unit.start, start); i < unit.end; i++) {
    const table = plan.tables[i]!;
    const nulls = unit.deferred[table.key] ?? [];
    let lastKey = i === resumeFrom?.tableIndex ? resumeFrom.lastKey : undefined;
    for (;;) {
      const chunk = await chunkTransaction(run, table, lastKey, async (live, name, staged) => {
        const outcome = await merge(live, plan, run.ctx, { ...table, nullThenUpdate: nulls }, name, staged, conflict, tenantIds, null);
        await advanceSequences(live, table, name);
        return outcome;
      });
      lastKey = chunk.lastKey;
      recordCommitted(run, table, chunk.result);
      const pending = `${table.key}(${nulls.join(', ')})`;
      if (nulls.length && chunk.staged > 0 && !run.pendingNull.includes(pending)) run.pendingNull.push(pending);
      const done = chunk.staged < run.chunkRows;
      // The unit is done when its fill pass is: until then, a resumed copy must come back into the unit.
      const unitDone = done && !(fills && i === unit.end - 1);
      await onCheckpoint?.(unitDone ? { tableIndex: i + 1, rows: { ...run.progress } } : { tableIndex: i, lastKey, rows: { ...run.progress } });
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
      const chunk = await chunkTransaction(run, table, lastKey, (live, name) => fillDeferredColumns(live, plan, run.ctx, table, columns, name));
      lastKey = chunk.lastKey;
      if (chunk.staged < run.chunkRows) break;
    }
    run.pendingNull = run.pendingNull.filter((p) => !p.startsWith(`${table.key}(`));
  }
  await onCheckpoint?.({ tableIndex: unit.end, rows: { ...run.progress } });
}

/**
 * Sets the FK columns a chunk inserted NULL, from the backup, on the rows this copy wrote: live's columns all NULL, the
 * rest of the row equal to the backup's (a row that live kept under skip, with other content, is left alone), and no
 * other tenant owning it.
 */
async function fillDeferredColumns(live: PoolClient, plan: Plan, ctx: RenderContext, table: PlanTable, columns: string[], stagingName: string): Promise<void> {
  const rest = writtenNames(table).filter((c) => !columns.includes(c));
  await live.query(
    `UPDATE ${qualify(plan, table.key)} t SET ${columns.map((c) => `${q(c)} = s.${q(c)}`).join(', ')} FROM ${stagingName} s
     WHERE ${keyMatch(table.primaryKey, 't', 's')} AND ${columns.map((c) => `t.${q(c)} IS NULL`).join(' AND ')}
       AND NOT (${columns.map((c) => `s.${q(c)} IS NULL`).join(' AND ')})
       AND ${rowText(rest, 't')} = ${rowText(rest, 's')} AND NOT ${otherOwnerPredicate(table.key, 't', ctx)}`,
  );
}

/** A unit whose forward FK is NOT NULL: all its tables' rows of the tenant in one transaction, as an unchunked copy. */
async function copyUnitInOneTransaction(run: ChunkRun, unit: ChunkUnit, start: number): Promise<void> {
  const { plan, tenantIds, conflict, signal, onCheckpoint } = run.input;
  // A checkpoint of an older version may point inside the unit: the unit is redone whole (idempotent), so the rows the
  // checkpoint counted for its first tables are counted again below, not twice.
  for (let i = unit.start; i < Math.min(start, unit.end); i++) if (plan.tables[i]!.role !== 'shared') run.totals.rows[plan.tables[i]!.key] = 0;
  const outcomes: Array<[PlanTable, TableOutcome]> = [];
  await liveTransaction(run.input, async (live) => {
    const staged: Array<{ table: PlanTable; name: string; written: string | null }> = [];
    for (let i = unit.start; i < unit.end; i++) {
      const table = plan.tables[i]!;
      checkAbort(signal);
      await run.input.yieldToLive?.(live, signal);
      const name = `tr_stage_${i}`;
      const written = table.nullThenUpdate.length ? `tr_written_${i}` : null;
      const n = await stage(run.scratch, live, plan, run.ctx, table, name, { signal });
      outcomes.push([table, await merge(live, plan, run.ctx, table, name, n, conflict, tenantIds, written)]);
      staged.push({ table, name, written });
    }
    await finishStaged(live, plan, staged, tenantIds, signal);
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
