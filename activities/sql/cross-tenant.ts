/**
 * The cross-tenant check (DESIGN.md I1): a staged row whose key, in any unique key or unique index of the table, is
 * held in live by a row that another tenant owns (alone, or together with ours, as a Pagila rental of one store's
 * customer served by another store's staff) and whose content differs from the backup's. Restoring it would change
 * another tenant's row, under every policy. A row identical to the backup's needs no write (a rerun), so it is no
 * conflict. Preflight runs it over hashed staging (keys and an md5 of each backup row), the copy over the staged rows,
 * inside its transaction, before it writes anything of the table.
 */
import type { PoolClient } from '../db';
import { CrossTenantConflictError } from '../errors';
import { qualify, type Plan, type PlanTable, type PlanUniqueIndex } from '../plan';
import { otherOwnerPredicate, type RenderContext } from '../plan/ownership';
import type { TenantId } from '../restore-types';
import { columnList, keyMatch, rowText, writtenNames, type Sql } from './index';

/** How the staged rows carry their content: whole (`rows`), or as the md5 of the row's text in `tr_row` (`hashed`). */
export type StagedContent = 'rows' | 'hashed';

/** Staged rows whose `key` (a unique key's columns) another tenant holds in live with other content. */
export function crossTenantKeyCount(
  plan: Plan,
  ctx: RenderContext,
  table: PlanTable,
  staging: string,
  key: string[],
  content: StagedContent,
): Sql {
  const names = writtenNames(table);
  const differs =
    content === 'hashed'
      ? `md5(${rowText(names, 't')}) <> s.tr_row`
      : `${rowText(names, 't')} IS DISTINCT FROM ${rowText(names, 's')}`;
  return {
    text: `SELECT count(*) AS n FROM ${staging} s JOIN ${qualify(plan, table.key)} t ON ${keyMatch(key, 's', 't')}
       WHERE ${differs} AND ${otherOwnerPredicate(table.key, 't', ctx)}`,
  };
}

/**
 * The same rule for a partial or expression unique index (`lower(email) WHERE deleted_at IS NULL`), with the index's
 * own expressions and predicate evaluated on both sides. Their text comes from live's catalog with unqualified column
 * names; each side evaluates it where its table is the only one in scope: the staged rows in a CTE over the staging
 * table (whose columns carry live's names), the live rows inside an EXISTS over the target alone, where the expressions
 * match the index and the predicate lets the planner use the partial index. Without it, `ON CONFLICT DO NOTHING` (skip)
 * would silently drop such a row, and overwrite would meet a raw unique violation. Needs whole staged rows.
 */
export function crossTenantIndexCount(
  plan: Plan,
  ctx: RenderContext,
  table: PlanTable,
  staging: string,
  index: PlanUniqueIndex,
): Sql {
  const names = writtenNames(table);
  const where = index.predicate === null ? '' : ` WHERE (${index.predicate})`;
  const eq = index.nullsNotDistinct ? 'IS NOT DISTINCT FROM' : '=';
  return {
    text: `WITH sk AS (SELECT ${columnList(names)}, ${index.keys.map((k, i) => `(${k}) AS tr_key_${i}`).join(', ')} FROM ${staging}${where})
       SELECT count(*) AS n FROM sk WHERE EXISTS (
         SELECT 1 FROM ${qualify(plan, table.key)} t WHERE ${index.keys.map((k, i) => `(${k}) ${eq} sk.tr_key_${i}`).join(' AND ')}${index.predicate === null ? '' : ` AND (${index.predicate})`}
           AND ${rowText(names, 't')} IS DISTINCT FROM ${rowText(names, 'sk')} AND ${otherOwnerPredicate(table.key, 't', ctx)})`,
  };
}

/**
 * The one refusal of a key held by another tenant. "Nothing was written" is true in preflight and in a one-transaction
 * copy; a chunked copy rewrites that sentence to say what earlier chunks committed (copy.ts, explainCommitted).
 */
export function crossTenantConflict(
  table: string,
  n: number,
  tenantIds: TenantId[],
  key: { columns: string[] } | { index: string; description: string },
): CrossTenantConflictError {
  const where = 'columns' in key ? `a key (${key.columns.join(', ')})` : `a key in ${key.description}`;
  return new CrossTenantConflictError(
    `${n} row(s) of ${table} that tenant(s) ${tenantIds.join(', ')} would restore have ${where} that another tenant holds in live. ` +
      `No policy overwrites another tenant's row: the other tenant's rows are untouched. Nothing was written for these tenants. ` +
      `Find the rows with that key in live, decide which tenant owns them, then restore these tenants again.`,
    { table, ...('columns' in key ? { key: key.columns } : { index: key.index }), rows: n, tenantIds },
  );
}

/** Runs the check for every unique key (and, over whole staged rows, every partial/expression unique index) of `table`. */
export async function assertNoCrossTenantKeys(
  live: PoolClient,
  plan: Plan,
  ctx: RenderContext,
  table: PlanTable,
  staging: string,
  tenantIds: TenantId[],
  content: StagedContent,
): Promise<void> {
  for (const key of table.uniqueKeys) {
    const { rows } = await live.query<{ n: string }>(crossTenantKeyCount(plan, ctx, table, staging, key, content));
    const n = Number(rows[0]!.n);
    if (n > 0) throw crossTenantConflict(table.key, n, tenantIds, { columns: key });
  }
  if (content === 'hashed') return;
  for (const index of table.uniqueIndexes ?? []) {
    const { rows } = await live.query<{ n: string }>(crossTenantIndexCount(plan, ctx, table, staging, index));
    const n = Number(rows[0]!.n);
    if (n > 0) {
      const description = `unique index ${index.name} (${index.keys.join(', ')})${index.predicate === null ? '' : ` WHERE ${index.predicate}`}`;
      throw crossTenantConflict(table.key, n, tenantIds, { index: index.name, description });
    }
  }
}
