/**
 * The advisory lock of one tenant on live, and what a restore leaves for the next one to read. Two restores of the same
 * tenant (two restore ids, or an operator's rerun beside a running restore) would otherwise interleave their merges;
 * the second waits for the first, with heartbeats, for as long as the first holds the tenant, and then checks again
 * whether the tenant is still absent (copy.ts lockTenants).
 *
 * Who holds or held a tenant needs no table in live: the lock's session carries the restore id in its
 * application_name (pg_stat_activity, while it waits or holds), and the copy's first COMMIT sends the restore id on
 * the tenant's notification channel (NOTIFY is transactional: it is delivered exactly when the rows are committed, and
 * never when they are rolled back). A restore that waits for a tenant listens on its channel first, so that when the
 * lock is granted and the tenant is found back in live, it can name the restore that brought it back.
 */
import { escapeLiteral } from '../db';
import type { Plan } from '../plan';
import type { TenantId } from '../restore-types';
import type { Sql } from './index';

/** The 64-bit key of a tenant: the tenant root and the id cast to the root key's own type (`A0EE...` = `a0ee...`). */
function tenantKey(plan: Pick<Plan, 'tenantRoot' | 'rootKey'>, id: string): string {
  return `hashtextextended(${escapeLiteral(`tenant-restore:tenant:${plan.tenantRoot}:`)} || (${id}::${plan.rootKey.type})::text, 0)`;
}

/**
 * Session-level (held across the chunks' transactions, released when the lock's session ends). Waits as long as the
 * session's lock_timeout lets it (the copy's lock session sets none: copy.ts).
 */
export function tenantLock(plan: Pick<Plan, 'tenantRoot' | 'rootKey'>, tenantId: TenantId): Sql {
  return { text: `SELECT pg_advisory_lock(${tenantKey(plan, '$1')})`, values: [tenantId] };
}

/** The same lock, without waiting: `locked` is false when another session holds it. */
export function tryTenantLock(plan: Pick<Plan, 'tenantRoot' | 'rootKey'>, tenantId: TenantId): Sql {
  return { text: `SELECT pg_try_advisory_lock(${tenantKey(plan, '$1')}) AS locked`, values: [tenantId] };
}

/**
 * The session that holds a tenant's lock, if any: its pid and application_name (a restore's lock session is named
 * `tenant-restore-lock <restoreId>`). An advisory lock on a bigint key shows in pg_locks as classid (high 32 bits),
 * objid (low 32 bits) and objsubid 1.
 */
export function tenantLockHolder(plan: Pick<Plan, 'tenantRoot' | 'rootKey'>, tenantId: TenantId): Sql {
  return {
    text: `WITH k AS (SELECT ${tenantKey(plan, '$1')} AS key)
     SELECT l.pid, coalesce(a.application_name, '') AS application_name
       FROM k, pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
      WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
        AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
        AND l.classid = ((k.key >> 32) & 4294967295)::oid AND l.objid = (k.key & 4294967295)::oid
      LIMIT 1`,
    values: [tenantId],
  };
}

/** Each tenant's notification channel (`tenant_restore_<key>`), named after the same key as its lock. */
export function tenantChannels(plan: Pick<Plan, 'tenantRoot' | 'rootKey'>, tenantIds: TenantId[]): Sql {
  return {
    text: `SELECT t.id, 'tenant_restore_' || ${tenantKey(plan, 't.id')}::text AS channel FROM unnest($1::text[]) AS t(id)`,
    values: [tenantIds],
  };
}

/**
 * Inside the copy's transaction, before its COMMIT: "restore `restoreId` wrote these tenants", delivered to the
 * sessions listening on their channels only if the transaction commits.
 */
export function announceRestore(
  plan: Pick<Plan, 'tenantRoot' | 'rootKey'>,
  tenantIds: TenantId[],
  restoreId: string,
): Sql {
  return {
    text: `SELECT count(pg_notify('tenant_restore_' || ${tenantKey(plan, 't.id')}::text, $2)) FROM unnest($1::text[]) AS t(id)`,
    values: [tenantIds, restoreId],
  };
}

/** The application_name of a restore's lock session (PostgreSQL keeps its first 63 bytes). */
export function lockSessionName(restoreId?: string): string {
  return restoreId ? `tenant-restore-lock ${restoreId}` : 'tenant-restore-lock';
}

/** The restore id in a lock session's application_name, if it is one. */
export function restoreOfLockSession(applicationName: string): string | undefined {
  const match = /^tenant-restore-lock (.+)$/.exec(applicationName);
  return match?.[1];
}
