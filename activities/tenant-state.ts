/**
 * What live holds of each tenant of a list, against the backup: absent, partial or present (see TenantLiveState).
 *
 * A wrong tenant list is the incident's own shape, so the restore must not trust the list either: a tenant whose root
 * row is still in live was not deleted (or only partly), and restoring it would bring back rows its users deleted
 * since the backup (skip) or revert their newer values (overwrite). The classification is set-based where it is cheap:
 * one statement finds the roots still in live for the whole unit. Only for those tenants (on the day of an incident,
 * the mistakes in the list, so few) are the backup's primary keys streamed into a temporary table of this session on
 * live (COPY, no row through Node) and anti-joined with each table: the rows of the backup that live lacks.
 *
 * Both sessions must be inside a transaction: the temporary tables are ON COMMIT DROP, and live's must not be READ ONLY
 * (a temporary table is still a CREATE). Nothing is written to any live table.
 */
import { pipeline } from 'node:stream/promises';
import { copyFrom, copyTo, escapeIdentifier as q, type PoolClient } from './db';
import { qualify, renderContext, type Plan } from './plan';
import { ownedPredicate } from './plan/ownership';
import { columnList, keyMatch } from './plan/sql';
import type { TenantClassification, TenantId, TenantLiveState } from './restore-types';

/** The tenants of `tenantIds` whose root row is in live (ids as given). */
export async function rootsInLive(live: Pick<PoolClient, 'query'>, plan: Plan, tenantIds: TenantId[]): Promise<Set<TenantId>> {
  const root = plan.tables.find((t) => t.role === 'root')!;
  const { rows } = await live.query<{ id: string }>(
    // Compared in the key's own type, so that equal ids written differently (a UUID in capitals) are the same tenant.
    `SELECT wanted.id FROM unnest($1::text[]) AS wanted(id)
     WHERE EXISTS (SELECT 1 FROM ${qualify(plan, root.key)} r WHERE r.${q(plan.rootKey.column)} = wanted.id::${plan.rootKey.type})`,
    [tenantIds],
  );
  return new Set(rows.map((r) => r.id));
}

/**
 * Rows of one tenant in the backup whose primary key live lacks, per owned table; and the backup's row count per
 * table. `tag` keeps the temporary tables of several calls in one transaction apart.
 */
export async function missingRows(scratch: PoolClient, live: PoolClient, plan: Plan, tenantId: TenantId, tag: string): Promise<{ missing: Record<string, number>; inBackup: Record<string, number> }> {
  const ctx = renderContext(plan, [tenantId]);
  const missing: Record<string, number> = {};
  const inBackup: Record<string, number> = {};
  for (const [i, table] of plan.tables.entries()) {
    if (table.role === 'shared') continue;
    const target = qualify(plan, table.key);
    const keys = `tr_keys_${tag}_${i}`;
    await live.query(`CREATE TEMP TABLE ${keys} ON COMMIT DROP AS SELECT ${columnList(table.primaryKey)} FROM ${target} WITH NO DATA`);
    const source = scratch.query(copyTo(`COPY (SELECT ${columnList(table.primaryKey, 't')} FROM ${target} t WHERE ${ownedPredicate(table.key, 't', ctx)}) TO STDOUT`));
    const sink = live.query(copyFrom(`COPY ${keys} (${columnList(table.primaryKey)}) FROM STDIN`));
    await pipeline(source, sink);
    inBackup[table.key] = sink.rowCount;
    if (sink.rowCount === 0) continue;
    await live.query(`ANALYZE ${keys}`);
    const { rows } = await live.query<{ n: string }>(
      `SELECT count(*) AS n FROM ${keys} s WHERE NOT EXISTS (SELECT 1 FROM ${target} t WHERE ${keyMatch(table.primaryKey, 's', 't')})`,
    );
    const n = Number(rows[0]!.n);
    if (n > 0) missing[table.key] = n;
  }
  return { missing, inBackup };
}

/** Each tenant's state in live. Tenants whose root is gone cost nothing beyond the one root lookup. */
export async function classifyTenants(scratch: PoolClient, live: PoolClient, plan: Plan, tenantIds: TenantId[]): Promise<Record<TenantId, TenantClassification>> {
  const roots = await rootsInLive(live, plan, tenantIds);
  const out: Record<TenantId, TenantClassification> = {};
  for (const [k, id] of tenantIds.entries()) {
    if (!roots.has(id)) {
      out[id] = { state: 'absent' };
      continue;
    }
    const { missing } = await missingRows(scratch, live, plan, id, `c${k}`);
    out[id] = { state: Object.keys(missing).length ? 'partial' : 'present', missing };
  }
  return out;
}

/** The state of a unit: present if any tenant is, else partial if any is, else absent. */
export function unitState(tenants: Record<TenantId, TenantClassification>): TenantLiveState {
  const states = Object.values(tenants).map((t) => t.state);
  return states.includes('present') ? 'present' : states.includes('partial') ? 'partial' : 'absent';
}
