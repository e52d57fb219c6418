/**
 * The incident, not the product: a decommission script run with the wrong flags and the wrong id list.
 *
 * It works in two phases, like many real offboarding jobs:
 *   1. suspend: switch the tenants' billing off and disable their app installations (in the demo this happens before
 *      the nightly backup, so the backup holds them suspended and the restore has to switch them back on);
 *   2. purge: hard-delete every row of the tenants, children first (the schema has no ON DELETE CASCADE), in one
 *      transaction.
 */
import { connect, escapeLiteral } from '../../activities/db';
import { ownedTables } from './model';

export interface IncidentResult {
  tenants: number;
  /** Rows deleted per table. */
  deleted: Record<string, number>;
  totalDeleted: number;
  durationMs: number;
}

/**
 * The "wrong ids": a deterministic pick of `count` tenants for a seed. The two largest tenants are always among them,
 * because an incident that only hits small tenants would make the restore look easier than it is.
 */
export function pickVictims(tenantIds: string[], count: number, seed = 42, largest: string[] = []): string[] {
  if (count > tenantIds.length) throw new Error(`cannot pick ${count} victims among ${tenantIds.length} tenants`);
  const score = (id: string) => {
    let h = (seed * 2654435761) >>> 0;
    for (const ch of id) h = Math.imul(h ^ ch.charCodeAt(0), 16777619) >>> 0;
    return h;
  };
  const picked = new Set(largest.slice(0, Math.min(2, count)));
  for (const id of [...tenantIds].sort((a, b) => score(a) - score(b) || a.localeCompare(b))) {
    if (picked.size >= count) break;
    picked.add(id);
  }
  return [...picked].sort((a, b) => Number(a) - Number(b));
}

function checkIds(ids: string[]): string {
  for (const id of ids) if (!/^\d+$/.test(id)) throw new Error(`tenant id '${id}' is not an integer`);
  return ids.join(',');
}

/** Phase 1: billing off, apps disabled. Returns the rows changed. */
export async function suspendTenants(
  url: string,
  tenantIds: string[],
): Promise<{ billingAccounts: number; appInstallations: number }> {
  checkIds(tenantIds);
  const client = await connect(url, 'workload-incident');
  try {
    const billing = await client.query(
      'UPDATE app.billing_accounts SET active = false WHERE tenant_id = ANY($1::bigint[]) AND active',
      [tenantIds],
    );
    const apps = await client.query(
      'UPDATE app.app_installations SET enabled = false WHERE tenant_id = ANY($1::bigint[]) AND enabled',
      [tenantIds],
    );
    return { billingAccounts: billing.rowCount ?? 0, appInstallations: apps.rowCount ?? 0 };
  } finally {
    await client.end();
  }
}

/** Phase 2: hard-deletes every row of the tenants, leaves first, in one transaction. */
export async function purgeTenants(
  url: string,
  tenantIds: string[],
  onTable?: (table: string, rows: number) => void,
): Promise<IncidentResult> {
  const started = Date.now();
  const ids = `${escapeLiteral(`{${checkIds(tenantIds)}}`)}::bigint[]`;
  const client = await connect(url, 'workload-incident');
  const deleted: Record<string, number> = {};
  try {
    await client.query('BEGIN');
    for (const t of [...ownedTables].reverse()) {
      // ctid names exactly the rows the ownership join found, whatever the table's key looks like.
      const result = await client.query(
        `DELETE FROM ${t.table} WHERE ctid = ANY (ARRAY(SELECT x.ctid FROM ${t.from} WHERE ${t.tenant} = ANY (${ids})))`,
      );
      deleted[t.table] = result.rowCount ?? 0;
      onTable?.(t.table, deleted[t.table]);
    }
    await client.query('COMMIT');
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  } finally {
    await client.end();
  }
  return {
    tenants: tenantIds.length,
    deleted,
    totalDeleted: Object.values(deleted).reduce((a, b) => a + b, 0),
    durationMs: Date.now() - started,
  };
}
