/**
 * validateTenant: the evidence that a tenant is back (I3). Per owned table, the row count and an order-independent
 * checksum of the tenant's rows, computed in SQL on scratch and on live: the sum of a 64-bit hash of each row's text
 * (`hashtextextended(ROW(...)::text, 0)`, summed by sum(bigint) into a numeric, so it cannot overflow), with both
 * sessions in the same text settings (UTC, ISO dates, full float digits) so that the same row gives the same text on
 * both servers. Then
 * every FK of the tenant's rows in live is checked for orphans, in the same pass as live's checksum.
 *
 * What "match" means depends on the policy:
 * - overwrite and fail: live holds exactly the backup's rows, so count and full-row checksum must be equal;
 * - skip: the count and a checksum over the primary keys must be equal (every backup row is there, nothing else is),
 *   and so must the values of every row this restore wrote. Rows that already existed in live with other content were
 *   kept (live wins), and the copy counted them (`kept`, its CopyResult.skipped); every other row was written by this
 *   restore (all rows of an absent tenant, usually) and must be the backup's. So the full-row checksum must be equal,
 *   or, when the copy kept rows of the table, the backup's rows are compared with live's one by one (keys and an md5 of
 *   each row, staged from scratch into a temporary table of this session) and no more of them may differ than the copy
 *   kept. A value the copy changed on its way (a date read in another DateStyle, a character in another encoding, a
 *   trigger of live that rewrote it) is a failed validation, not a restored tenant.
 * - a partial tenant (skip, always): every backup key is in live again, and no more backup rows differ from live's than
 *   the copy kept (the rows its users changed since the backup): the rows it inserted hold the backup's values.
 * Retyped columns (drift) are left out of the value comparison under skip: their text differs between the backup's type
 * and live's while the value is the same.
 * Shared tables are not validated per tenant: they are written only by the parent closure, and the orphan scan
 * proves that every parent a restored row needs is there.
 */
import type { PoolClient } from './db';
import { assertPlan, renderContext, type Plan, type PlanTable } from './plan';
import type { RenderContext } from './plan/ownership';
import type { TableValidation, TenantId, ValidationResult } from './restore-types';
import type { PoolClient as Client } from './db';
import { backupRowsInLive, tablesChecksum, valueColumns } from './sql/checksum';
import { scanOrphans, type Orphans } from './sql/orphans';
import { withComparedSessions, type ComparedStepInput } from './sql/session';
import { stageRows, stagingName } from './sql/stage';

export interface ValidateInput extends ComparedStepInput {
  /**
   * A partial tenant (restored with allowPartial): live also holds rows made since the backup, so counts and checksums
   * cannot be equal. What must hold is that every row of the backup is in live again (by primary key), and no FK dangles.
   */
  partial?: boolean;
  /**
   * Rows the copy kept under policy skip, per table (its CopyResult.skipped): live held their keys with other content.
   * Every other row of the tenant in live was written by this restore and must hold the backup's values. Not given:
   * nothing was kept.
   */
  kept?: Record<string, number>;
  /**
   * The copy proved before its COMMIT that every reference of the rows it wrote finds its parent (the direct paths:
   * references to rows of its own transaction by their keys, every other one probed and locked in live; copy/direct.ts),
   * and PostgreSQL's FK triggers keep it so since (a delete of a parent fires them whatever this restore's session did).
   * The orphan scan is then left out: it would probe every FK of every row again, the largest part of live's side.
   * Not given: the scan runs (the staged paths, a partial tenant, rows kept under skip).
   */
  referencesProven?: boolean;
}

interface Sums {
  n: number;
  rows: string;
  keys: string;
  /** The checksum over the columns whose type is the same in backup and live (`rows` when there is no retyped one). */
  vals: string;
  /** Live only: the FKs of the table with rows whose reference finds no parent. */
  orphans: Orphans[];
}

/** Tables per checksum statement: one round trip and one throttle probe for many small tables. */
const tablesPerStatement = 16;

/** The checksums of `tables`, in their order, in one statement. */
async function checksums(
  client: PoolClient,
  plan: Plan,
  ctx: RenderContext,
  tables: PlanTable[],
  withOrphans = false,
): Promise<Sums[]> {
  const { rows } = await client.query<{
    i: number;
    n: string;
    rows: string;
    keys: string;
    vals?: string;
    orphans?: string[];
  }>(tablesChecksum(plan, ctx, tables, withOrphans));
  const sums: Sums[] = [];
  for (const r of rows) {
    const table = tables[r.i]!;
    const orphans = (r.orphans ?? [])
      .map((n, k) => ({ table: table.key, constraint: table.foreignKeys[k]!.constraint, rows: Number(n) }))
      .filter((o) => o.rows > 0);
    sums[r.i] = { n: Number(r.n), rows: r.rows, keys: r.keys, vals: r.vals ?? r.rows, orphans };
  }
  return sums;
}

/** Every FK of the tenants' owned rows in live: the orphans found, per FK (shared tables are the parent closure). */
function ownedOrphans(live: PoolClient, plan: Plan, tenantIds: TenantId[]): Promise<ValidationResult['orphans']> {
  const ctx = renderContext(plan, tenantIds);
  return scanOrphans(
    live,
    plan,
    plan.tables.filter((t) => t.role !== 'shared'),
    () => ({ owned: ctx }),
  );
}

/**
 * The backup's rows of `table` (the tenants of `ctx`) against live's, row by row: how many backup keys live lacks, and
 * how many it holds with other values. The keys and an md5 of each backup row go into a temporary table of the live
 * session (the session rolls back: no live table is written).
 */
async function compareRows(
  scratch: Client,
  live: Client,
  plan: Plan,
  ctx: RenderContext,
  table: PlanTable,
  i: number,
): Promise<{ inBackup: number; missing: number; differing: number }> {
  const shape = { kind: 'hashed' as const, columns: table.primaryKey, hashColumns: valueColumns(table) };
  const staging = stagingName(`tr_values_${i}`, table, shape);
  const inBackup = await stageRows(scratch, live, plan, ctx, table, staging, shape, { analyze: 'when-rows' });
  if (inBackup === 0) return { inBackup, missing: 0, differing: 0 };
  const { rows } = await live.query<{ missing: string; differing: string }>(backupRowsInLive(plan, table, staging));
  return { inBackup, missing: Number(rows[0]!.missing), differing: Number(rows[0]!.differing) };
}

/** What a table's live checksum says when values differ under skip: how many rows, and how many the copy kept. */
function valuesNote(differing: number, kept: number): string {
  return ` (${differing} row(s) with other values than the backup's, ${kept} kept by the copy)`;
}

export async function validateTenant(input: ValidateInput): Promise<ValidationResult> {
  const { plan, tenantId, conflict } = input;
  assertPlan(plan);
  if (input.partial) return validatePartial(input);
  const tenantIds = input.tenantIds ?? [tenantId];
  const ctx = renderContext(plan, tenantIds);
  const kept = input.kept ?? {};
  // Under skip a table whose values differ is compared row by row, in a temporary table: not READ ONLY then.
  const mode = conflict === 'skip' ? 'snapshot-temp' : 'snapshot';
  return withComparedSessions(input, tenantIds, mode, async (scratch, live) => {
    const tables: TableValidation[] = [];
    const orphans: Orphans[] = [];
    let throttledMs = 0;
    const owned = plan.tables.filter((t) => t.role !== 'shared');
    for (let start = 0; start < owned.length; start += tablesPerStatement) {
      const batch = owned.slice(start, start + tablesPerStatement);
      throttledMs += (await input.yieldToLive?.(live)) ?? 0;
      const [inScratch, inLive] = await Promise.all([
        checksums(scratch, plan, ctx, batch),
        checksums(live, plan, ctx, batch, !input.referencesProven),
      ]);
      for (const [k, table] of batch.entries()) {
        const s = inScratch[k]!;
        const l = inLive[k]!;
        orphans.push(...l.orphans);
        if (conflict !== 'skip') {
          const match = s.n === l.n && s.rows === l.rows;
          tables.push(tableResult(table, s, l, s.rows, l.rows, match));
          continue;
        }
        let match = s.n === l.n && s.keys === l.keys;
        let note = '';
        if (s.vals !== l.vals) {
          // Rows differ: no more of them than the copy kept (live's own rows), none that the restore wrote.
          const { differing } = await compareRows(scratch, live, plan, ctx, table, start + k);
          const allowed = kept[table.key] ?? 0;
          match &&= differing <= allowed;
          note = valuesNote(differing, allowed);
        }
        tables.push(
          tableResult(table, s, l, `keys:${s.keys} rows:${s.rows}`, `keys:${l.keys} rows:${l.rows}${note}`, match),
        );
      }
    }
    return {
      tenantId,
      ok: tables.every((t) => t.match) && orphans.length === 0,
      tables,
      orphans,
      orphansCheckedBy: input.referencesProven ? 'copy' : 'validation',
      throttledMs,
    };
  });
}

function tableResult(
  table: PlanTable,
  s: Sums,
  l: Sums,
  scratchChecksum: string,
  liveChecksum: string,
  match: boolean,
): TableValidation {
  return { table: table.key, scratchCount: s.n, liveCount: l.n, scratchChecksum, liveChecksum, match };
}

/**
 * Every backup row of the tenants is in live by primary key, no more of them hold other values than the copy kept (rows
 * their users changed since the backup), and the orphan scan finds nothing.
 */
async function validatePartial(input: ValidateInput): Promise<ValidationResult> {
  const { plan, tenantId } = input;
  const tenantIds = input.tenantIds ?? [tenantId];
  const ctx = renderContext(plan, tenantIds);
  const kept = input.kept ?? {};
  // Not READ ONLY: the backup's keys go into a temporary table of this session (no live table is written).
  return withComparedSessions(input, tenantIds, 'snapshot-temp', async (scratch, live) => {
    const tables: TableValidation[] = [];
    for (const [i, table] of plan.tables.entries()) {
      if (table.role === 'shared') continue;
      const { inBackup, missing, differing } = await compareRows(scratch, live, plan, ctx, table, i);
      const allowed = kept[table.key] ?? 0;
      tables.push({
        table: table.key,
        scratchCount: inBackup,
        liveCount: inBackup - missing,
        scratchChecksum: `backup keys: ${inBackup}`,
        liveChecksum: `backup keys in live: ${inBackup - missing}${differing ? valuesNote(differing, allowed) : ''}`,
        match: missing === 0 && differing <= allowed,
      });
    }
    const orphans = await ownedOrphans(live, plan, tenantIds);
    return { tenantId, ok: tables.every((t) => t.match) && orphans.length === 0, tables, orphans };
  });
}
