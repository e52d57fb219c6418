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
 * - skip: rows that already existed in live were kept (live wins), so their content may legitimately differ; the
 *   count and a checksum over the primary keys must be equal (every backup row is there, nothing else is), and the
 *   full-row checksums are reported but not required to match.
 * Shared tables are not validated per tenant: they are written only by the parent closure, and the orphan scan
 * proves that every parent a restored row needs is there.
 */
import type { PoolClient } from './db';
import { assertPlan, renderContext, type Plan, type PlanTable } from './plan';
import type { RenderContext } from './plan/ownership';
import type { TableValidation, TenantId, ValidationResult } from './restore-types';
import { tablesChecksum } from './sql/checksum';
import { scanOrphans, type Orphans } from './sql/orphans';
import { missingRows } from './sql/presence';
import { withComparedSessions, type ComparedStepInput } from './sql/session';

export interface ValidateInput extends ComparedStepInput {
  /**
   * A partial tenant (restored with allowPartial): live also holds rows made since the backup, so counts and checksums
   * cannot be equal. What must hold is that every row of the backup is in live again (by primary key), and no FK dangles.
   */
  partial?: boolean;
}

interface Sums {
  n: number;
  rows: string;
  keys: string;
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
  const { rows } = await client.query<{ i: number; n: string; rows: string; keys: string; orphans?: string[] }>(
    tablesChecksum(plan, ctx, tables, withOrphans),
  );
  const sums: Sums[] = [];
  for (const r of rows) {
    const table = tables[r.i]!;
    const orphans = (r.orphans ?? [])
      .map((n, k) => ({ table: table.key, constraint: table.foreignKeys[k]!.constraint, rows: Number(n) }))
      .filter((o) => o.rows > 0);
    sums[r.i] = { n: Number(r.n), rows: r.rows, keys: r.keys, orphans };
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

export async function validateTenant(input: ValidateInput): Promise<ValidationResult> {
  const { plan, tenantId, conflict } = input;
  assertPlan(plan);
  if (input.partial) return validatePartial(input);
  const tenantIds = input.tenantIds ?? [tenantId];
  const ctx = renderContext(plan, tenantIds);
  return withComparedSessions(input, tenantIds, 'snapshot', async (scratch, live) => {
    const tables: TableValidation[] = [];
    const orphans: Orphans[] = [];
    let throttledMs = 0;
    const owned = plan.tables.filter((t) => t.role !== 'shared');
    for (let start = 0; start < owned.length; start += tablesPerStatement) {
      const batch = owned.slice(start, start + tablesPerStatement);
      throttledMs += (await input.yieldToLive?.(live)) ?? 0;
      const [inScratch, inLive] = await Promise.all([
        checksums(scratch, plan, ctx, batch),
        checksums(live, plan, ctx, batch, true),
      ]);
      for (const [k, table] of batch.entries()) {
        const s = inScratch[k]!;
        const l = inLive[k]!;
        orphans.push(...l.orphans);
        const match = s.n === l.n && (conflict === 'skip' ? s.keys === l.keys : s.rows === l.rows);
        tables.push({
          table: table.key,
          scratchCount: s.n,
          liveCount: l.n,
          scratchChecksum: conflict === 'skip' ? `keys:${s.keys} rows:${s.rows}` : s.rows,
          liveChecksum: conflict === 'skip' ? `keys:${l.keys} rows:${l.rows}` : l.rows,
          match,
        });
      }
    }
    return { tenantId, ok: tables.every((t) => t.match) && orphans.length === 0, tables, orphans, throttledMs };
  });
}

/** Every backup row of each tenant is in live by primary key (sql/presence.ts), and the orphan scan finds nothing. */
async function validatePartial(input: ValidateInput): Promise<ValidationResult> {
  const { plan, tenantId } = input;
  const tenantIds = input.tenantIds ?? [tenantId];
  // Not READ ONLY: the backup's keys go into a temporary table of this session (no live table is written).
  return withComparedSessions(input, tenantIds, 'snapshot-temp', async (scratch, live) => {
    const totals = new Map<string, { inBackup: number; missing: number }>();
    for (const [k, id] of tenantIds.entries()) {
      const { missing, inBackup } = await missingRows(scratch, live, plan, id, `v${k}`);
      for (const [table, n] of Object.entries(inBackup)) {
        const t = totals.get(table) ?? { inBackup: 0, missing: 0 };
        totals.set(table, { inBackup: t.inBackup + n, missing: t.missing + (missing[table] ?? 0) });
      }
    }
    const tables: TableValidation[] = [...totals].map(([table, t]) => ({
      table,
      scratchCount: t.inBackup,
      liveCount: t.inBackup - t.missing,
      scratchChecksum: `backup keys: ${t.inBackup}`,
      liveChecksum: `backup keys in live: ${t.inBackup - t.missing}`,
      match: t.missing === 0,
    }));
    const orphans = await ownedOrphans(live, plan, tenantIds);
    return { tenantId, ok: tables.every((t) => t.match) && orphans.length === 0, tables, orphans };
  });
}
