/** The baseline's passes: one count(*) GROUP BY per owned table, in one session with the product's settings. */
import type pg from 'pg';
import type { Plan, PlanTable } from '../../activities/plan';
import { tableTriples } from '../../activities/sql/discover';
import { closeSession, openSession, sessionSetup } from '../../activities/sql/session';
import { ownedTables as workloadOwned } from '../workload/model';

/** One pass, table after table, in one session with the product's settings; milliseconds per table and rows. */
export async function pass(
  pool: pg.Pool,
  statements: Array<{ table: string; sql: string }>,
): Promise<{ ms: number; perTable: Record<string, number>; rows: Record<string, number> }> {
  const session = await openSession(pool, sessionSetup({ mode: 'snapshot', canonicalText: true, tenantIds: [] }));
  const perTable: Record<string, number> = {};
  const rows: Record<string, number> = {};
  const started = performance.now();
  try {
    for (const { table, sql } of statements) {
      const t = performance.now();
      const r = await session.query<{ n: string }>(sql);
      perTable[table] = performance.now() - t;
      rows[table] = r.rows.reduce((a, x) => a + Number(x.n), 0);
    }
  } finally {
    await closeSession(session);
  }
  return { ms: performance.now() - started, perTable, rows };
}

export const triplesCount = (plan: Plan, t: PlanTable) =>
  `SELECT tenant, count(*) AS n FROM (${tableTriples(plan, t)}) x GROUP BY tenant`;

/** The workload's tables that hold their tenant in a column of their own: a plain count(*) GROUP BY on each. */
export const plainTables = workloadOwned.filter((t) => !t.from.includes('JOIN'));
export const plainSql = plainTables.map((t) => ({
  table: t.table,
  sql: `SELECT ${t.tenant} AS tenant, count(*) AS n FROM ${t.from} GROUP BY 1`,
}));
