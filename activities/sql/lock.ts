/**
 * The advisory lock of one tenant on live. Two restores of the same tenant (two restore ids, or an operator's rerun
 * beside a running restore) would otherwise interleave their merges; the second waits for the first, up to the
 * session's lock_timeout, and its activity retries with backoff.
 */
import { escapeLiteral } from '../db';
import type { Plan } from '../plan';
import type { TenantId } from '../restore-types';
import type { Sql } from './index';

/**
 * Session-level (held across the chunks' transactions, released when the lock's session ends). Keyed on the tenant
 * root and the id cast to the root key's own type, so that `A0EE...` and `a0ee...` are one tenant.
 */
export function tenantLock(plan: Pick<Plan, 'tenantRoot' | 'rootKey'>, tenantId: TenantId): Sql {
  return {
    text: `SELECT pg_advisory_lock(hashtextextended(${escapeLiteral(`tenant-restore:tenant:${plan.tenantRoot}:`)} || ($1::${plan.rootKey.type})::text, 0))`,
    values: [tenantId],
  };
}
