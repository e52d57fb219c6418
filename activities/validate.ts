/**
 * validateTenant: the evidence that a tenant is back (I3). Per owned table, the row count and an order-independent
 * checksum of the tenant's rows, computed in SQL on scratch and on live: the sum of a 64-bit hash of each row's text
 * (`hashtextextended(ROW(...)::text, 0)`, summed as numeric so it cannot overflow), with both sessions in the same
 * text settings (UTC, ISO dates, full float digits) so that the same row gives the same text on both servers. Then
 * every FK of the tenant's rows in live is scanned for orphans.
 *
 * What "match" means depends on the policy:
 * - overwrite and fail: live holds exactly the backup's rows, so count and full-row checksum must be equal;
 * - skip: rows that already existed in live were kept (live wins), so their content may legitimately differ; the
 *   count and a checksum over the primary keys must be equal (every backup row is there, nothing else is), and the
 *   full-row checksums are reported but not required to match.
 * Shared tables are not validated per tenant: they are written only by the parent closure, and the orphan scan
 * proves that every parent a restored row needs is there.
 */
import { escapeIdentifier as q, type Pool, type PoolClient } from './db';
import { assertPlan, fkTarget, qualify, renderContext, type Plan, type PlanTable } from './plan';
import { ownedPredicate, type RenderContext } from './plan/ownership';
import { rowText, writtenNames } from './plan/sql';
import type { YieldToLive } from './copy';
import { beginCanonical } from './preflight';
import type { ConflictPolicy, TableValidation, TenantId, ValidationResult } from './restore-types';
import { missingRows } from './tenant-state';

export interface ValidateInput {
  scratch: Pool;
  live: Pool;
  plan: Plan;
  tenantId: TenantId;
  /** A group of tenants validated together: counts and checksums over the group's rows. Default: [tenantId]. */
  tenantIds?: TenantId[];
  conflict: ConflictPolicy;
  yieldToLive?: YieldToLive;
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
}

async function checksum(client: PoolClient, plan: Plan, ctx: RenderContext, table: PlanTable): Promise<Sums> {
  const { rows } = await client.query<{ n: string; rows: string; keys: string }>(
    `SELECT count(*) AS n,
            coalesce(sum(hashtextextended(${rowText(writtenNames(table), 't')}, 0)::numeric), 0)::text AS rows,
            coalesce(sum(hashtextextended(${rowText(table.primaryKey, 't')}, 0)::numeric), 0)::text AS keys
     FROM ${qualify(plan, table.key)} t WHERE ${ownedPredicate(table.key, 't', ctx)}`,
  );
  return { n: Number(rows[0]!.n), rows: rows[0]!.rows, keys: rows[0]!.keys };
}

/**
 * FK orphans among the tenant's rows in live (MATCH SIMPLE: a reference with a NULL column is not checked), every FK of
 * live included, those to tables the restore does not write too.
 */
export async function scanOrphans(client: PoolClient, plan: Plan, ctx: RenderContext): Promise<ValidationResult['orphans']> {
  const orphans: ValidationResult['orphans'] = [];
  for (const table of plan.tables) {
    if (table.role === 'shared') continue;
    for (const fk of table.foreignKeys) {
      const { rows } = await client.query<{ n: string }>(
        `SELECT count(*) AS n FROM ${qualify(plan, table.key)} t WHERE ${ownedPredicate(table.key, 't', ctx)}
           AND ${fk.columns.map((c) => `t.${q(c)} IS NOT NULL`).join(' AND ')}
           AND NOT EXISTS (SELECT 1 FROM ${fkTarget(plan, fk)} p WHERE ${fk.columns.map((c, k) => `p.${q(fk.referencedColumns[k]!)} = t.${q(c)}`).join(' AND ')})`,
      );
      const n = Number(rows[0]!.n);
      if (n > 0) orphans.push({ table: table.key, constraint: fk.constraint, rows: n });
    }
  }
  return orphans;
}

export async function validateTenant(input: ValidateInput): Promise<ValidationResult> {
  const { plan, tenantId, conflict } = input;
  assertPlan(plan);
  if (input.partial) return validatePartial(input);
  const tenantIds = input.tenantIds ?? [tenantId];
  const ctx = renderContext(plan, tenantIds);
  return withSessions(input, tenantIds, 'ISOLATION LEVEL REPEATABLE READ READ ONLY', async (scratch, live) => {
    const tables: TableValidation[] = [];
    let throttledMs = 0;
    for (const table of plan.tables) {
      if (table.role === 'shared') continue;
      throttledMs += (await input.yieldToLive?.(live)) ?? 0;
      const [s, l] = await Promise.all([checksum(scratch, plan, ctx, table), checksum(live, plan, ctx, table)]);
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
    const orphans = await scanOrphans(live, plan, ctx);
    return { tenantId, ok: tables.every((t) => t.match) && orphans.length === 0, tables, orphans, throttledMs };
  });
}

/** Every backup row of each tenant is in live by primary key (tenant-state.ts), and the orphan scan finds nothing. */
async function validatePartial(input: ValidateInput): Promise<ValidationResult> {
  const { plan, tenantId } = input;
  const tenantIds = input.tenantIds ?? [tenantId];
  // Not READ ONLY: the backup's keys go into a temporary table of this session (no live table is written).
  return withSessions(input, tenantIds, 'ISOLATION LEVEL REPEATABLE READ', async (scratch, live) => {
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
    const orphans = await scanOrphans(live, plan, renderContext(plan, tenantIds));
    return { tenantId, ok: tables.every((t) => t.match) && orphans.length === 0, tables, orphans };
  });
}

/** Scratch (read only) and live sessions in the canonical text settings, both always rolled back and released. */
async function withSessions<T>(input: ValidateInput, tenantIds: TenantId[], liveMode: string, fn: (scratch: PoolClient, live: PoolClient) => Promise<T>): Promise<T> {
  const scratch = await beginCanonical(input.scratch, 'ISOLATION LEVEL REPEATABLE READ READ ONLY', tenantIds);
  let live: PoolClient | undefined;
  try {
    live = await beginCanonical(input.live, liveMode, tenantIds);
    return await fn(scratch, live);
  } finally {
    await scratch.query('ROLLBACK').catch(() => undefined);
    scratch.release();
    if (live) {
      await live.query('ROLLBACK').catch(() => undefined);
      live.release();
    }
  }
}
