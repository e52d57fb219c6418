/**
 * Discover's SQL: every row of an owned table as (tenant, hash of its primary key, hash of its row), on each side, and
 * the comparison of the two sides per tenant. Set-based: one read of each table per side, the tenant of each row found
 * by joining its ownership path up to the root (GROUP BY tenant, never a query per tenant).
 *
 * Live is read in a READ ONLY transaction and its (tenant, key, row) triples are streamed into a temporary table of the
 * scratch session, where the two sides are joined: nothing is written to live, which may be a read replica.
 * Keys and rows are compared by 64-bit hashes of their text (hashtextextended): two different keys of one tenant and
 * table collide with a probability of about n²/2^65 (1e-9 for 200,000 rows), which would count a missing row as
 * changed. Row text is made canonical on both sessions (session.ts), so the same row hashes the same on both servers.
 */
import { escapeIdentifier as q } from '../db';
import { qualify, type Plan, type PlanTable } from '../plan';
import type { OwnershipPath } from '../plan/ownership';
import { rowText, type Sql } from './index';

/** The temporary table on scratch that holds live's triples of one table. */
export const liveTriples = 'tr_discover_live';

/** The FROM clause and tenant expression of one ownership path: joins up to the last table before the root. */
export function pathJoins(plan: Plan, table: PlanTable, path: OwnershipPath): { from: string; tenant: string } {
  const root = plan.tenantRoot;
  const rootKey = plan.rootKey.column;
  if (table.key === root) return { from: `${qualify(plan, table.key)} t`, tenant: `t.${q(rootKey)}` };
  const joins: string[] = [];
  let alias = 't';
  for (const [i, step] of path.entries()) {
    const last = i === path.length - 1;
    // The last step references the root's key itself: the tenant is the FK column, no join to the root (whose row
    // may be gone in live: its children still belong to it).
    if (last && step.to === root && step.referencedColumns.length === 1 && step.referencedColumns[0] === rootKey)
      return { from: [`${qualify(plan, table.key)} t`, ...joins].join(' '), tenant: `${alias}.${q(step.columns[0]!)}` };
    const next = `p${i}`;
    const on = step.referencedColumns.map((c, j) => `${next}.${q(c)} = ${alias}.${q(step.columns[j]!)}`).join(' AND ');
    joins.push(`JOIN ${qualify(plan, step.to)} ${next} ON ${on}`);
    alias = next;
  }
  return { from: [`${qualify(plan, table.key)} t`, ...joins].join(' '), tenant: `${alias}.${q(rootKey)}` };
}

/**
 * The paths a row's tenant is found through: the shortest path whose every FK is NOT NULL in live, when there is one:
 * it reaches a tenant for every row whose parents exist. Otherwise every path (UNION: a row reached by two paths to one
 * tenant counts once; to two tenants, for each), as a restore decides ownership. One path is what makes discover
 * cheap: the UNION over the 5 paths of the demo's 511k comments (3 joins deep) took 7.3 s, one NOT NULL path 0.1 s.
 * In a schema whose tenants do not share rows, every path leads to the same tenant.
 */
export function attributionPaths(plan: Plan, table: PlanTable): OwnershipPath[] {
  const notNull = new Set(
    plan.tables.flatMap((t) =>
      t.foreignKeys.filter((fk) => fk.nullable === false).map((fk) => `${t.key}|${fk.constraint}`),
    ),
  );
  const paths = table.paths ?? [];
  const first = paths.find(
    (path) => path.length > 0 && path.every((step) => notNull.has(`${step.from}|${step.constraint}`)),
  );
  return first ? [first] : paths;
}

/**
 * Types whose values hash_record_extended can hash (their extended hash functions are the ones hash partitioning
 * relies on, so they are stable across servers and releases). Anything else (json, point, xml, money, a custom type)
 * is hashed through its text.
 */
const hashableType =
  /^(smallint|integer|bigint|oid|boolean|text|character varying(\(\d+\))?|character(\(\d+\))?|"char"|name|uuid|bytea|jsonb|numeric(\(\d+(,\s*\d+)?\))?|real|double precision|date|time(\(\d\))? without time zone|timestamp(\(\d\))? (with|without) time zone|interval|inet|cidr|macaddr)(\[\])?$/;

/**
 * A 64-bit hash of `columns` of a row of `table` (as `t`). hash_record_extended hashes the values themselves: 2.3 times
 * faster than hashing their text (1.4M comments: 0.53 s against 1.23 s). Equal values hash equal (numeric 1.0 and
 * 1.00 too, where their texts differ). A table with a column of another type is hashed through its text.
 */
export function rowHash(table: PlanTable, columns: string[], alias = 't'): string {
  // A retyped column (drift) has a different type on each side: its value hashes differently, its text does not.
  const types = new Map(table.columns.map((c) => [c.name, c.backupType ? '' : c.type]));
  return columns.every((c) => hashableType.test(types.get(c) ?? ''))
    ? `hash_record_extended(ROW(${columns.map((c) => `${alias}.${q(c)}`).join(', ')}), 0)`
    : `hashtextextended(${rowText(columns, alias)}, 0)`;
}

/** The columns whose hash is a row's `r` in tableTriples: those of the same type on both sides. */
export function comparedColumns(table: PlanTable): string[] {
  return table.columns.filter((c) => !c.backupType).map((c) => c.name);
}

/**
 * Every row of `table` as (tenant text, k bigint, r bigint), its tenant found through attributionPaths. A row whose
 * path is broken (a missing parent) is counted under no tenant. The columns compared are the plan's written columns of
 * the same type on both sides, so a drifted table is still classified on what they share.
 */
export function tableTriples(plan: Plan, table: PlanTable, suspectsOnly = false): string {
  const paths = table.key === plan.tenantRoot ? [[]] : attributionPaths(plan, table);
  const key = rowHash(table, table.primaryKey);
  // A retyped column (drift) prints differently on each side (numeric(10,2) against numeric(12,4)): left out.
  const row = rowHash(table, comparedColumns(table));
  const selects = paths.map((path) => {
    const { from, tenant } = pathJoins(plan, table, path);
    const only = suspectsOnly ? ` AND ${tenant}::text = ANY (current_setting('${suspectsSetting}')::text[])` : '';
    return `SELECT ${tenant}::text AS tenant, ${key} AS k, ${row} AS r FROM ${from} WHERE ${tenant} IS NOT NULL${only}`;
  });
  return selects.join('\nUNION\n');
}

/**
 * Phase 1, per side: each tenant's rows of the table as a count and two sums of hashes (keys, rows). Equal on both
 * sides: the tenant's rows are the same (but with a probability of 2^-64). Only the tenants whose sums differ and that
 * have rows on both sides need phase 2; a tenant with rows on one side only is wholly missing or wholly added.
 */
export function tableSums(plan: Plan, table: PlanTable): string {
  return `SELECT tenant, count(*) AS n, sum(k) AS ks, sum(r) AS rs FROM (${tableTriples(plan, table)}) x GROUP BY tenant`;
}

/** The tenants whose rows phase 2 compares row by row, in a setting of both sessions (COPY takes no parameters). */
export const suspectsSetting = 'tenant_restore.discover_suspects';
export function setSuspects(tenants: string[]): Sql {
  return { text: `SELECT set_config('${suspectsSetting}', $1::text[]::text, true)`, values: [tenants] };
}

export const liveSums = 'tr_discover_live_sums';

export function createLiveSums(): Sql {
  return {
    text: `CREATE TEMP TABLE IF NOT EXISTS ${liveSums} (tenant text, n bigint, ks numeric, rs numeric) ON COMMIT DELETE ROWS`,
  };
}

export function copyLiveSums(plan: Plan, table: PlanTable): Sql {
  return { text: `COPY (${tableSums(plan, table)}) TO STDOUT` };
}

export function copyIntoLiveSums(): Sql {
  return { text: `COPY ${liveSums} (tenant, n, ks, rs) FROM STDIN` };
}

const rooted = (plan: Plan, tenant: string) =>
  `EXISTS (SELECT 1 FROM ${qualify(plan, plan.tenantRoot)} r WHERE r.${q(plan.rootKey.column)}::text = ${tenant})`;

/**
 * Phase 1's comparison: the tenants whose sums differ (rows on each side, whether their root row is in the backup),
 * and one more row (tenant NULL) with the table's totals: rows on each side, tenants with rows on each side.
 */
export function compareSums(plan: Plan, table: PlanTable): Sql {
  return {
    text: `WITH b AS (${tableSums(plan, table)}),
     per_tenant AS (
       SELECT coalesce(b.tenant, l.tenant) AS tenant, coalesce(b.n, 0) AS in_backup, coalesce(l.n, 0) AS in_live,
              (b.n IS DISTINCT FROM l.n OR b.ks IS DISTINCT FROM l.ks OR b.rs IS DISTINCT FROM l.rs) AS differs
         FROM b FULL JOIN ${liveSums} l ON l.tenant = b.tenant)
     SELECT tenant, in_backup, in_live, ${rooted(plan, 'per_tenant.tenant')} AS rooted FROM per_tenant WHERE differs
     UNION ALL
     SELECT NULL, coalesce(sum(in_backup), 0), coalesce(sum(in_live), 0), true FROM per_tenant
     UNION ALL
     SELECT NULL, count(*) FILTER (WHERE in_backup > 0), count(*) FILTER (WHERE in_live > 0), false FROM per_tenant`,
  };
}

export function createLiveTriples(): Sql {
  return {
    text: `CREATE TEMP TABLE IF NOT EXISTS ${liveTriples} (tenant text, k bigint, r bigint) ON COMMIT DELETE ROWS`,
  };
}

/** Phase 2, live's side, as COPY: the suspects' rows, streamed into `liveTriples` on scratch. */
export function copyLiveTriples(plan: Plan, table: PlanTable): Sql {
  return { text: `COPY (${tableTriples(plan, table, true)}) TO STDOUT` };
}

export function copyIntoLiveTriples(): Sql {
  return { text: `COPY ${liveTriples} (tenant, k, r) FROM STDIN` };
}

/**
 * Phase 2's comparison, for the suspects: per tenant, rows in the backup, rows in live, backup rows whose key live
 * lacks (`missing`), live rows whose key the backup lacks (`added`), rows of the same key with another content
 * (`changed`). Only tenants with a difference come back.
 */
export function compareTriples(plan: Plan, table: PlanTable): Sql {
  return {
    text: `WITH b AS (${tableTriples(plan, table, true)})
     SELECT coalesce(b.tenant, l.tenant) AS tenant,
            count(b.k) AS in_backup, count(l.k) AS in_live,
            count(*) FILTER (WHERE l.k IS NULL) AS missing,
            count(*) FILTER (WHERE b.k IS NULL) AS added,
            count(*) FILTER (WHERE b.r <> l.r) AS changed
       FROM b FULL JOIN ${liveTriples} l ON l.tenant = b.tenant AND l.k = b.k
      GROUP BY 1
     HAVING count(*) FILTER (WHERE l.k IS NULL OR b.k IS NULL OR b.r <> l.r) > 0`,
  };
}
