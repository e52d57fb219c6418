/**
 * Presence: what each database holds of the tenants of a list. In the backup, each tenant's root row must be there
 * (else TenantNotInBackupError). In live, each tenant is absent, partial or present (see TenantLiveState).
 *
 * A wrong tenant list is the incident's own shape, so the restore must not trust the list either: a tenant whose root
 * row is still in live was not deleted (or only partly), and restoring it would bring back rows its users deleted
 * since the backup (skip) or revert their newer values (overwrite). The classification is set-based where it is cheap:
 * one statement finds the roots still in live for the whole unit. Only for those tenants (on the day of an incident,
 * the mistakes in the list, so few) are the backup's primary keys staged on live (stage.ts) and anti-joined with each
 * table: the rows of the backup that live lacks.
 *
 * Both sessions must be inside a transaction: staging tables are emptied at COMMIT, and live's must not be READ ONLY
 * (a temporary table is still a CREATE). Nothing is written to any live table.
 */
import { escapeIdentifier as q, type PoolClient } from '../db';
import { isPgError, TenantNotInBackupError } from '../errors';
import { qualify, renderContext, type Plan, type PlanTable } from '../plan';
import { ownedPredicate, type RenderContext } from '../plan/ownership';
import type { TenantClassification, TenantId, TenantLiveState } from '../restore-types';
import { keyMatch, type Sql } from './index';
import { stageRows, stagingName } from './stage';

function rootTable(plan: Plan): PlanTable {
  return plan.tables.find((t) => t.role === 'root')!;
}

/**
 * The tenants of the list without a root row in the backup, as text: a tenant is there when a root's key, as text, is
 * the id. `typed` finds the candidate root in the key's own type, as rootsInLive does, so that the root's index
 * answers, then keeps the text test: the answer is the same (`007` is not tenant 7, a `varchar(3)` cast's truncation
 * finds nothing), but an id that does not cast to the type (`abc` for a bigint key) fails the statement (see
 * missingFromBackup). `text` alone never fails, and reads the whole root table. The alias must not be a plausible
 * column name: inside the subquery an unqualified `id` would mean r.id.
 */
export function tenantsMissingFromBackup(plan: Plan, tenantIds: TenantId[], compare: 'typed' | 'text' = 'typed'): Sql {
  const key = `r.${q(plan.rootKey.column)}`;
  const text = `${key}::text = wanted.tenant_id`;
  const match = compare === 'typed' ? `${key} = wanted.tenant_id::${plan.rootKey.type} AND ${text}` : text;
  return {
    text: `SELECT array_agg(wanted.tenant_id ORDER BY wanted.tenant_id) AS missing FROM unnest($1::text[]) AS wanted(tenant_id)
     WHERE NOT EXISTS (SELECT 1 FROM ${qualify(plan, rootTable(plan).key)} r WHERE ${match})`,
    values: [tenantIds],
  };
}

const integerRanges: Record<string, [bigint, bigint]> = {
  smallint: [-(2n ** 15n), 2n ** 15n - 1n],
  integer: [-(2n ** 31n), 2n ** 31n - 1n],
  bigint: [-(2n ** 63n), 2n ** 63n - 1n],
};

/**
 * True when every id surely casts to the key's type: plain decimal integers in the type's range, canonical uuids, any
 * text. Conservative: false says only that an id might not cast (a domain's CHECK, ' 7', an unknown type).
 */
export function idsCastSurely(type: string, tenantIds: TenantId[]): boolean {
  const range = integerRanges[type];
  if (range)
    return tenantIds.every((id) => /^-?[0-9]{1,40}$/.test(id) && BigInt(id) >= range[0] && BigInt(id) <= range[1]);
  if (type === 'uuid')
    return tenantIds.every((id) => /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(id));
  return type === 'text' || /^character varying(\(\d+\))?$/.test(type);
}

/** An id that does not cast to the key's type: a data exception (22P02 invalid text, 22003 out of range, ...), or a domain's CHECK (23514). */
function isCastFailure(error: unknown): boolean {
  return isPgError(error) && (error.code.startsWith('22') || error.code === '23514');
}

/** Savepoint of the typed lookup: its failure must not abort the caller's transaction and its snapshot. */
const lookupSavepoint = 'tr_root_lookup';

/**
 * The tenants of the list without a root row in the backup, compared in the key's type. When some id might not cast,
 * the typed statement runs under a savepoint and, should a cast fail, the text form answers instead (in the same
 * transaction and snapshot): an id that is not even of the key's type has no root row, as before.
 */
export async function missingFromBackup(
  scratch: Pick<PoolClient, 'query'>,
  plan: Plan,
  tenantIds: TenantId[],
): Promise<TenantId[]> {
  const lookup = async (compare: 'typed' | 'text') =>
    (await scratch.query<{ missing: string[] | null }>(tenantsMissingFromBackup(plan, tenantIds, compare))).rows[0]
      ?.missing ?? [];
  if (idsCastSurely(plan.rootKey.type, tenantIds)) return lookup('typed');
  await scratch.query(`SAVEPOINT ${lookupSavepoint}`);
  let missing: TenantId[];
  try {
    missing = await lookup('typed');
  } catch (error) {
    if (!isCastFailure(error)) throw error;
    await scratch.query(`ROLLBACK TO SAVEPOINT ${lookupSavepoint}`);
    await scratch.query(`RELEASE SAVEPOINT ${lookupSavepoint}`);
    return lookup('text');
  }
  await scratch.query(`RELEASE SAVEPOINT ${lookupSavepoint}`);
  return missing;
}

/** The tenants of the list whose root row is in live (ids as given), compared in the key's own type, so that equal ids written differently (a UUID in capitals) are the same tenant. */
export function rootsInLive(plan: Plan, tenantIds: TenantId[]): Sql {
  return {
    text: `SELECT wanted.id FROM unnest($1::text[]) AS wanted(id)
     WHERE EXISTS (SELECT 1 FROM ${qualify(plan, rootTable(plan).key)} r WHERE r.${q(plan.rootKey.column)} = wanted.id::${plan.rootKey.type})`,
    values: [tenantIds],
  };
}

/** Staged primary keys (`keys`, a staging table of the backup's keys) that live's table lacks. */
export function missingKeyCount(plan: Plan, table: PlanTable, keys: string): Sql {
  return {
    text: `SELECT count(*) AS n FROM ${keys} s WHERE NOT EXISTS (SELECT 1 FROM ${qualify(plan, table.key)} t WHERE ${keyMatch(table.primaryKey, 's', 't')})`,
  };
}

/** Rows of the tenants in `table`: on scratch, to decide between one transaction and chunks. */
export function ownedRowCount(plan: Plan, ctx: RenderContext, table: PlanTable): Sql {
  return {
    text: `SELECT count(*) AS n FROM ${qualify(plan, table.key)} t WHERE ${ownedPredicate(table.key, 't', ctx)}`,
  };
}

export async function assertTenantsInBackup(
  scratch: Pick<PoolClient, 'query'>,
  plan: Plan,
  tenantIds: TenantId[],
): Promise<void> {
  const missing = await missingFromBackup(scratch, plan, tenantIds);
  if (missing.length) {
    throw new TenantNotInBackupError(
      `Tenant(s) ${missing.join(', ')} have no row in ${plan.tenantRoot} of the backup: check the tenant ids and that the backup was taken before the deletion.`,
      { tenantIds: missing },
    );
  }
}

export async function liveRoots(
  live: Pick<PoolClient, 'query'>,
  plan: Plan,
  tenantIds: TenantId[],
): Promise<Set<TenantId>> {
  const { rows } = await live.query<{ id: string }>(rootsInLive(plan, tenantIds));
  return new Set(rows.map((r) => r.id));
}

/**
 * Rows of one tenant in the backup whose primary key live lacks, per owned table; and the backup's row count per
 * table. `tag` keeps the staging tables of several calls in one transaction apart.
 */
export async function missingRows(
  scratch: PoolClient,
  live: PoolClient,
  plan: Plan,
  tenantId: TenantId,
  tag: string,
): Promise<{ missing: Record<string, number>; inBackup: Record<string, number> }> {
  const ctx = renderContext(plan, [tenantId]);
  const missing: Record<string, number> = {};
  const inBackup: Record<string, number> = {};
  for (const [i, table] of plan.tables.entries()) {
    if (table.role === 'shared') continue;
    const shape = { kind: 'keys' as const, columns: table.primaryKey };
    const keys = stagingName(`tr_keys_${tag}_${i}`, table, shape);
    const staged = await stageRows(scratch, live, plan, ctx, table, keys, shape, { analyze: 'when-rows' });
    inBackup[table.key] = staged;
    if (staged === 0) continue;
    const { rows } = await live.query<{ n: string }>(missingKeyCount(plan, table, keys));
    const n = Number(rows[0]!.n);
    if (n > 0) missing[table.key] = n;
  }
  return { missing, inBackup };
}

/** Each tenant's state in live. Tenants whose root is gone cost nothing beyond the one root lookup. */
export async function classifyTenants(
  scratch: PoolClient,
  live: PoolClient,
  plan: Plan,
  tenantIds: TenantId[],
): Promise<Record<TenantId, TenantClassification>> {
  const roots = await liveRoots(live, plan, tenantIds);
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

/** The key of the table that scratch's statistics (reltuples) say is largest among `tables`. */
export function largestTable(plan: Plan, tables: PlanTable[]): Sql {
  return {
    text: `SELECT u.key FROM unnest($1::text[], $2::text[]) AS u(key, rel)
     ORDER BY (SELECT c.reltuples FROM pg_class c WHERE c.oid = to_regclass(u.rel)) DESC NULLS LAST LIMIT 1`,
    values: [tables.map((t) => t.key), tables.map((t) => qualify(plan, t.key))],
  };
}

/** Rows of the tenants in `table` on scratch, counted up to `limit` (a bounded probe of a tenant's size). */
export function ownedRowsAtMost(plan: Plan, ctx: RenderContext, table: PlanTable, limit: number): Sql {
  return {
    text: `SELECT count(*) AS n FROM (SELECT 1 FROM ${qualify(plan, table.key)} t WHERE ${ownedPredicate(table.key, 't', ctx)} LIMIT ${Math.floor(limit)}) x`,
  };
}
