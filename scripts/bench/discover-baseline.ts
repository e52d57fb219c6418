/**
 * Discover's baseline: one count(*) GROUP BY tenant per owned table, on both sides, two tables at a time, with the
 * product's session settings (see discover.ts for how it is set beside discover).
 */
import { escapeIdentifier as q, Pools } from '../../activities/db';
import { buildPlan, type Plan, type PlanTable } from '../../activities/plan';
import { attributionPaths, pathJoins } from '../../activities/sql/discover';

export type BaselineMode = 'first-path' | 'all-paths';

/** Tables compared at once: discover's activitiesAtOnce (workflows/discover.ts). */
const lanes = 2;

/**
 * The baseline's one statement for a table: rows per tenant. `first-path`: the baseline, one read of the table
 * along the path discover attributes its rows through. `all-paths`: the same work as discover's (a table with several paths to the root,
 * such as comments by issue and by author, is read once per path, and a row found by two counts once per tenant).
 */
export function baselineSql(plan: Plan, table: PlanTable, mode: BaselineMode = 'first-path'): string {
  const all = table.key === plan.tenantRoot ? [[]] : table.paths;
  // The paths discover reads (attributionPaths: the shortest all-NOT-NULL one when there is one), or every path.
  const paths = mode === 'first-path' ? (table.key === plan.tenantRoot ? all : attributionPaths(plan, table)) : all;
  const selects = paths.map((path) => pathJoins(plan, table, path));
  if (selects.length === 1) {
    const { from, tenant } = selects[0]!;
    return `SELECT ${tenant}::text AS tenant, count(*) AS n FROM ${from} WHERE ${tenant} IS NOT NULL GROUP BY 1`;
  }
  const key = table.primaryKey.map((c, i) => `t.${q(c)} AS k${i}`).join(', ');
  const union = selects
    .map(({ from, tenant }) => `SELECT ${tenant}::text AS tenant, ${key} FROM ${from} WHERE ${tenant} IS NOT NULL`)
    .join(' UNION ');
  return `SELECT tenant, count(*) AS n FROM (${union}) u GROUP BY 1`;
}

/** The plan discover builds, built here the same way (both catalogs), and its owned tables. */
async function ownedTablesOf(
  pools: Pools,
  scratch: string,
  live: string,
): Promise<{ plan: Plan; tables: PlanTable[] }> {
  const plan = await buildPlan({ scratch: pools.get(scratch), live: pools.get(live), tenantRoot: 'app.tenants' });
  return { plan, tables: plan.tables.filter((t) => t.role !== 'shared') };
}

/** One run of the baseline: every owned table, both sides; milliseconds and rows read. */
export async function baseline(
  pools: Pools,
  scratch: string,
  live: string,
  mode: BaselineMode = 'first-path',
): Promise<{ ms: number; rows: number; tables: number; paths: number }> {
  const { plan, tables } = await ownedTablesOf(pools, scratch, live);
  const count = async (ref: string, sql: string) => {
    const client = await pools.get(ref, { max: lanes }).connect();
    try {
      await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
      await client.query('SET LOCAL max_parallel_workers_per_gather = 0; SET LOCAL jit = off');
      const { rows } = await client.query<{ tenant: string; n: string }>(sql);
      await client.query('ROLLBACK');
      return rows.reduce((a, r) => a + Number(r.n), 0);
    } finally {
      client.release();
    }
  };
  let next = 0;
  let rows = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: lanes }, async () => {
      while (next < tables.length) {
        const sql = baselineSql(plan, tables[next++]!, mode);
        const [a, b] = await Promise.all([count(scratch, sql), count(live, sql)]);
        rows += a + b;
      }
    }),
  );
  return {
    ms: performance.now() - t0,
    rows,
    tables: tables.length,
    paths: tables.reduce((a, t) => a + Math.max(1, t.paths.length), 0),
  };
}

/** `tenant-restore discover ... --json`, timed. */
