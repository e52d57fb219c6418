/**
 * The orphan scan: references of the tenants' rows in live, per FK, that find no parent (MATCH SIMPLE: a reference
 * with a NULL column is not checked). Every FK declared in live is checked, those to tables outside the plan (excluded,
 * or only in live) too: while the copy's FK triggers are off nothing else would check them, and validation must prove
 * that no restored row points at nothing.
 */
import { escapeIdentifier as q, type PoolClient } from '../db';
import { DanglingReferenceError } from '../errors';
import { fkTarget, qualify, type Plan, type PlanForeignKey, type PlanTable } from '../plan';
import { ownedPredicate, type RenderContext } from '../plan/ownership';
import type { TenantId } from '../restore-types';
import { keyMatch, writtenNames, type Sql } from './index';

/**
 * Which rows are scanned. `staged`: inside the copy's transaction, the live rows of the keys in a staging table; the
 * parents they reference are locked FOR KEY SHARE, as PostgreSQL's own FK check would, so that a concurrent delete of
 * a parent cannot slip in before COMMIT. `asStaged`: the transaction inserted every staged row and nothing has changed
 * them since (no user trigger fired), so the references are read from the staging table itself, without joining the
 * target. `owned`: every row of the tenants in live (validation, read only: no locks).
 */
export type OrphanScope = { staged: string; asStaged?: boolean } | { owned: RenderContext };

/** How many references of `fk` among the scanned rows of `table` have no parent. */
export function orphanCount(plan: Plan, table: PlanTable, fk: PlanForeignKey, scope: OrphanScope): Sql {
  const target = qualify(plan, table.key);
  const parent = fkTarget(plan, fk);
  const notNull = fk.columns.map((c) => `t.${q(c)} IS NOT NULL`).join(' AND ');
  if ('owned' in scope) {
    return {
      text: `SELECT count(*) AS n FROM ${target} t WHERE ${ownedPredicate(table.key, 't', scope.owned)} AND ${danglingFk(plan, fk, 't')}`,
    };
  }
  const refs = fk.columns.map((c, i) => `t.${q(c)} AS r${i}`).join(', ');
  const match = fk.referencedColumns.map((c, i) => `p.${q(c)} = r.r${i}`).join(' AND ');
  // A generated column is not staged: its references are read from the target.
  const fromStaging = scope.asStaged && fk.columns.every((c) => writtenNames(table).includes(c));
  // `locked` is driven from r, one index probe per distinct reference (LATERAL: a plain join let the planner hash the
  // whole parent table instead, 431k rows of issues for 6k references, 110 ms of 137); the references that found a
  // parent are the distinct keys locked, so the orphans are |r| minus those. (Written as an anti-join of the two CTEs,
  // the planner, estimating one row for r, chose a nested loop: 19M comparisons, 1.4-2.4 s for one group's issue_labels.)
  return {
    text: `WITH r AS (SELECT DISTINCT ${refs} FROM ${fromStaging ? `${scope.staged} t` : `${target} t JOIN ${scope.staged} s ON ${keyMatch(table.primaryKey, 't', 's')}`} WHERE ${notNull}),
            locked AS (SELECT l.* FROM r CROSS JOIN LATERAL (SELECT ${fk.referencedColumns.map((c, i) => `p.${q(c)} AS k${i}`).join(', ')} FROM ${parent} p WHERE ${match} FOR KEY SHARE OF p) l)
       SELECT (SELECT count(*) FROM r) - (SELECT count(*) FROM (SELECT DISTINCT ${fk.referencedColumns.map((_, i) => `k${i}`).join(', ')} FROM locked) l) AS n`,
  };
}

/**
 * How many of the given references of `fk` (distinct tuples, one array per FK column, in the child column's text
 * form) find no parent in live; the parents found are locked FOR KEY SHARE, as PostgreSQL's own FK check would, so
 * that a concurrent delete of one waits for this transaction. The direct copy passes here the references that are not
 * rows of its own transaction (copy/direct.ts); each is cast to the referencing column's type and probed through the
 * parent's key index (LATERAL, one probe per reference).
 */
export function externalOrphanCount(plan: Plan, table: PlanTable, fk: PlanForeignKey, values: string[][]): Sql {
  const types = new Map(table.columns.map((c) => [c.name, c.type]));
  const r = fk.columns.map((_, i) => `r${i}`);
  const match = fk.referencedColumns.map((c, i) => `p.${q(c)} = r.r${i}`).join(' AND ');
  // The callers pass distinct tuples, each finding at most one parent (the referenced columns are a key): the orphans
  // are the tuples minus the parents locked, no DISTINCT on either side. Arrays typed as the referencing columns, so
  // PostgreSQL parses each value once, as the parameter.
  return {
    text: `WITH r AS (SELECT * FROM unnest(${values.map((_, i) => `$${i + 1}::${types.get(fk.columns[i]!)}[]`).join(', ')}) AS u(${r.join(', ')})),
            locked AS (SELECT 1 FROM r CROSS JOIN LATERAL (SELECT 1 FROM ${fkTarget(plan, fk)} p WHERE ${match} FOR KEY SHARE OF p) l)
       SELECT (SELECT count(*) FROM r) - (SELECT count(*) FROM locked) AS n`,
    values,
  };
}

/** True for a row (as `alias`) whose reference by `fk` is set and finds no parent in live. */
export function danglingFk(plan: Plan, fk: PlanForeignKey, alias: string): string {
  const notNull = fk.columns.map((c) => `${alias}.${q(c)} IS NOT NULL`).join(' AND ');
  const match = fk.columns.map((c, k) => `p.${q(fk.referencedColumns[k]!)} = ${alias}.${q(c)}`).join(' AND ');
  return `(${notNull} AND NOT EXISTS (SELECT 1 FROM ${fkTarget(plan, fk)} p WHERE ${match}))`;
}

export interface Orphans {
  table: string;
  constraint: string;
  rows: number;
}

/** Runs orphanCount for every FK of the given tables; the FKs with orphans, and how many. */
export async function scanOrphans(
  client: Pick<PoolClient, 'query'>,
  plan: Plan,
  tables: PlanTable[],
  scope: (table: PlanTable) => OrphanScope,
): Promise<Orphans[]> {
  const found: Orphans[] = [];
  for (const table of tables) {
    for (const fk of table.foreignKeys) {
      const { rows } = await client.query<{ n: string }>(orphanCount(plan, table, fk, scope(table)));
      const n = Number(rows[0]!.n);
      if (n > 0) found.push({ table: table.key, constraint: fk.constraint, rows: n });
    }
  }
  return found;
}

/** The one refusal of restored rows that reference nothing. */
export function danglingReference(
  table: string,
  orphans: Array<{ constraint: string; rows: number }>,
  tenantIds: TenantId[],
): DanglingReferenceError {
  return new DanglingReferenceError(
    `Restored rows of ${table} for tenant(s) ${tenantIds.join(', ')} reference parents that exist neither in live nor in the backup's share of these tenants ` +
      `(${orphans.map((o) => `${o.constraint}: ${o.rows}`).join(', ')}). Nothing was committed. Usually the parents belong to another deleted tenant: restore it in the same batch. ` +
      `If the plan's warnings list the constraint as referencing a table the restore does not write, put the missing parent rows back in live first.`,
    { table, orphans: orphans.map(({ constraint, rows }) => ({ constraint, rows })), tenantIds },
  );
}
