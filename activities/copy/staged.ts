/**
 * The staged path: each table's rows go from scratch into a temporary staging table on live (COPY piped into COPY),
 * then one set-based statement merges staging into the target with `INSERT ... ON CONFLICT` under the conflict policy,
 * after the cross-tenant guard. It handles every case: a partial tenant, rows already in live (a retry over a committed
 * attempt, a key another tenant holds), cycles inserted NULL and filled, and shared tables' parent closure.
 */
import { pipeline } from 'node:stream/promises';
import { copyFrom, copyTo, type PoolClient } from '../db';
import { qualify, type Plan, type PlanTable } from '../plan';
import type { RenderContext } from '../plan/ownership';
import type { ConflictPolicy, TenantId } from '../restore-types';
import { recordedKeysLimit } from '../restore-types';
import { assertNoCrossTenantKeys } from '../sql/cross-tenant';
import {
  conflictCount,
  conflictPolicyRefusal,
  createWrittenKeys,
  fillWrittenRows,
  insertStaged,
  insertTracked,
  writtenKeys,
} from '../sql/merge';
import { danglingReference, scanOrphans } from '../sql/orphans';
import { advanceSequences } from '../sql/sequences';
import { analyzeStaging, stageRows, stagingName } from '../sql/stage';
import {
  addOutcome,
  checkAbort,
  emptyTotals,
  tooLarge,
  TooLargeForOneTransaction,
  type CopyTotals,
  type TableOutcome,
} from './common';
import type { CopyTenantInput } from './index';
import { liveTransaction } from './transaction';
import { changedRowsOf, revertChangedSql } from '../sql/window';

/**
 * Streams the tenant's rows of `table` from scratch into a fresh staging table on live. Returns the staged row count.
 * `analyze`: a chunk's staging is analyzed at once (its statements join it to the target); in one transaction it is
 * analyzed only when a statement will join it (checks, fill, FK check against the target): see `Staging`.
 */
export function stage(
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
export class Staging {
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
export async function merge(
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
export async function finishStaged(
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
export interface StagedTable {
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
export async function assertNoOrphans(
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

/**
 * An incident window's changed rows of `table` set back to their T0 version (staged as `staged`, kept by policy skip
 * since live holds their key), where live's row still hashes to its T1 version; any other is a conflict, left as it is.
 */
async function revertChanged(
  scratch: PoolClient,
  live: PoolClient,
  plan: Plan,
  table: PlanTable,
  staged: string,
  tenantIds: TenantId[],
): Promise<number> {
  await live.query(`CREATE TEMP TABLE IF NOT EXISTS ${windowChanged} (k bigint, t1 bigint) ON COMMIT DROP`);
  await live.query(`TRUNCATE ${windowChanged}`);
  await pipeline(
    scratch.query(copyTo(changedRowsOf(table, tenantIds))),
    live.query(copyFrom(`COPY ${windowChanged} (k, t1) FROM STDIN`)),
  );
  const { rowCount } = await live.query(revertChangedSql(table, qualify(plan, table.key), staged, windowChanged));
  return rowCount ?? 0;
}

/** Reverted rows were counted as kept (live held their key with other content): they are neither kept nor conflicts. */
function countReverted(totals: CopyTotals, table: PlanTable, reverted: number): void {
  if (!reverted) return;
  totals.skipped[table.key] = (totals.skipped[table.key] ?? 0) - reverted;
  totals.conflicts[table.key] = (totals.conflicts[table.key] ?? 0) - reverted;
  (totals.reverted ??= {})[table.key] = reverted;
}

const windowChanged = 'tr_window_changed';

/** Every table of the tenants in one live transaction, staged, all or nothing. */
export async function copyStaged(
  input: CopyTenantInput,
  scratch: PoolClient,
  ctx: RenderContext,
  chunkRows?: number,
): Promise<CopyTotals | typeof tooLarge> {
  const { plan, tenantIds, conflict, signal } = input;
  const totals = emptyTotals(plan);
  // A retry over rows an earlier attempt committed (known, or accepted as its own under the lock): those rows, found
  // identical, are this copy's restored rows. Not for a partial tenant, whose identical rows were there before it: its
  // earlier attempt's inserts are counted from what that attempt recorded before its COMMIT.
  const overOwnRows = Boolean(input.earlierAttemptCommitted || input.presentMayBeOwn) && !input.recordKeys;
  try {
    // A partial tenant's inserts are recorded before the COMMIT: a retry after it finds them identical to the backup,
    // like the rows its users kept, and counts them from that record (restore-activities.ts copyTenantRows).
    return await liveTransaction(input, copyTables, input.recordKeys ? (written) => written : undefined);
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
      if (input.window && table.role !== 'shared' && outcome.kept > 0)
        countReverted(totals, table, await revertChanged(scratch, live, plan, table, name, tenantIds));
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
