/**
 * The incident window's SQL that the copy runs (activities/window.ts computes the delta; copy/staged.ts sets changed
 * rows back): kept apart so that the copy does not import the window's activity.
 */
import { escapeIdentifier as q, escapeLiteral } from '../db';
import type { PlanTable } from '../plan';
import type { TenantId } from '../restore-types';
import { comparedColumns, rowHash } from './discover';

/** The schema the window's bookkeeping lives in, on the T0 scratch (which the restore owns and drops with it). */
export const windowSchema = 'tenant_restore_window';

/** The changed rows of `table` for the unit's tenants, as (k, t1) for copy/staged.ts revertChanged, from the T0 scratch. */
export function changedRowsOf(table: PlanTable, tenantIds: TenantId[]): string {
  const list = tenantIds.map((id) => escapeLiteral(id)).join(', ');
  return `COPY (SELECT k, t1 FROM ${windowSchema}.delta WHERE table_key = ${escapeLiteral(table.key)} AND t1 IS NOT NULL AND tenant IN (${list})) TO STDOUT`;
}

/**
 * Live's rows of `table` set back to their T0 version (the staged rows, `staged`) where live's row still hashes to its
 * T1 version (`changed`: k, t1): a row a user changed or deleted since is not touched. Returns the statement.
 */
export function revertChangedSql(table: PlanTable, target: string, staged: string, changed: string): string {
  const columns = table.columns.map((c) => c.name);
  return `UPDATE ${target} t SET (${columns.map((c) => q(c)).join(', ')}) = ROW(${columns.map((c) => `s.${q(c)}`).join(', ')})
      FROM ${staged} s JOIN ${changed} w ON w.k = ${rowHash(table, table.primaryKey, 's')}
     WHERE ${table.primaryKey.map((c) => `t.${q(c)} = s.${q(c)}`).join(' AND ')}
       AND ${rowHash(table, comparedColumns(table), 't')} = w.t1`;
}
