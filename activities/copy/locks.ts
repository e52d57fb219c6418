/**
 * The tenants' advisory locks, held on a session of their own for the whole copy, and the re-check under them that the
 * tenants preflight found absent are absent still.
 */
import { dedicatedSession, escapeIdentifier, type Client, type Pool } from '../db';
import { TenantPresentError } from '../errors';
import type { TenantId } from '../restore-types';
import {
  lockSessionName,
  restoreOfLockSession,
  tenantChannels,
  tenantLock,
  tenantLockHolder,
  tryTenantLock,
} from '../sql/lock';
import { liveRoots } from '../sql/presence';
import { validateTenant } from '../validate';
import { checkAbort } from './common';
import type { CopyTenantInput } from './index';

/**
 * Takes every tenant's lock on a session of its own (outside the pool, which the copy itself draws from), held for the
 * whole copy (all chunks), in one order (no deadlock). The wait has no lock_timeout: a second restore of a tenant waits
 * for the first (the activity heartbeats meanwhile), as long as the session's statement_timeout at most, and then
 * retries. While it waits it listens on the tenant's channel, so that it learns which restore committed the tenant.
 *
 * Then, whatever the attempt, `expectAbsent`: tenants that preflight found absent and that nothing of this restore has
 * written yet must still be absent now that no other restore can be writing them. One that came back (another restore
 * finished it while this one waited, or someone re-created it) is refused, nothing of it written, naming the restore
 * that wrote it when this one heard it. `presentMayBeOwn` (a retry whose earlier attempts reported no commit: one may
 * have committed and died before saying so) accepts a present tenant only when no other restore announced it and
 * live's rows equal scratch's, row for row (the validation checksums).
 */
export async function lockTenants(input: CopyTenantInput, expectAbsent: TenantId[]): Promise<Client> {
  const { plan, tenantIds, signal } = input;
  const client = await dedicatedSession(input.live, lockSessionName(input.restoreId));
  const restoredBy = new Map<TenantId, string>();
  const heldBy = new Map<TenantId, { pid: number; applicationName: string }>();
  try {
    // Only this session: every other statement of the restore keeps the workers' lock_timeout.
    await client.query('SET lock_timeout = 0');
    if (expectAbsent.length) {
      const { rows } = await client.query<{ id: string; channel: string }>(tenantChannels(plan, expectAbsent));
      const tenantOf = new Map(rows.map((r) => [r.channel, r.id]));
      client.on('notification', (n) => {
        const id = tenantOf.get(n.channel);
        if (id !== undefined && n.payload && n.payload !== input.restoreId) restoredBy.set(id, n.payload);
      });
      await client.query(rows.map((r) => `LISTEN ${escapeIdentifier(r.channel)}`).join('; '));
    }
    for (const id of [...tenantIds].sort()) {
      checkAbort(signal);
      const { rows } = await client.query<{ locked: boolean }>(tryTenantLock(plan, id));
      if (rows[0]?.locked) continue;
      const holder = (await client.query<{ pid: number; application_name: string }>(tenantLockHolder(plan, id)))
        .rows[0];
      if (holder) heldBy.set(id, { pid: holder.pid, applicationName: holder.application_name });
      await input.onLockWait?.(id, holder ? describeHolder(holder.pid, holder.application_name) : 'another session');
      await waitForLock(input.live, client, tenantLock(plan, id), id, heldBy.get(id), signal);
    }
    // Notifications sent by commits before the lock was granted are delivered by now (before the answer to the lock
    // statement); one more round trip on this session makes sure of it.
    const back = expectAbsent.length ? [...(await liveRoots(client, plan, expectAbsent))] : [];
    const refused: TenantId[] = [];
    for (const id of back) {
      if (input.presentMayBeOwn && !restoredBy.has(id) && (await rowsEqualScratch(input, id))) continue;
      refused.push(id);
    }
    if (refused.length) {
      const who = refused.map((id) => {
        const by = restoredBy.get(id);
        if (by) return `restore ${by} restored tenant ${id} while this one waited for its lock`;
        const holder = heldBy.get(id);
        if (holder)
          return `tenant ${id}'s lock was held by ${describeHolder(holder.pid, holder.applicationName)} while this one waited`;
        return `another restore of tenant ${id} finished, or the application re-created it`;
      });
      throw new TenantPresentError(
        `Tenant(s) ${refused.join(', ')} came back into live between this restore's preflight and its copy (${who.join('; ')}). ` +
          `Nothing of them was written by this restore${input.presentMayBeOwn ? ' (an earlier attempt of this copy reported no commit, and live does not hold exactly its backup rows)' : ''}. ` +
          `Check the other restore's report before doing anything else.`,
        { tenantIds: refused, restoredBy: Object.fromEntries(refused.map((id) => [id, restoredBy.get(id) ?? null])) },
      );
    }
    return client;
  } catch (error) {
    await client.end().catch(() => undefined);
    throw error;
  }
}

/** A lock session as operators find it in pg_stat_activity: a restore's id, else its pid and application_name. */
function describeHolder(pid: number, applicationName: string): string {
  const restore = restoreOfLockSession(applicationName);
  return restore
    ? `restore ${restore} (pid ${pid})`
    : `a session that is not a restore (pid ${pid}, application_name '${applicationName}')`;
}

/**
 * Blocks in `pg_advisory_lock` on the lock session. A cancelled copy cancels the wait from a session of the pool (the
 * lock session is busy in it). The session's statement_timeout ends a wait that lasts too long: that is retried.
 */
async function waitForLock(
  pool: Pool,
  client: Client,
  lock: { text: string; values?: unknown[] },
  id: TenantId,
  holder: { pid: number; applicationName: string } | undefined,
  signal?: AbortSignal,
): Promise<void> {
  const pid = (client as unknown as { processID?: number }).processID;
  const cancel = () => {
    if (pid) void pool.query('SELECT pg_cancel_backend($1)', [pid]).catch(() => undefined);
  };
  signal?.addEventListener('abort', cancel, { once: true });
  try {
    checkAbort(signal);
    await client.query(lock);
  } catch (error) {
    checkAbort(signal);
    if ((error as { code?: string }).code === '57014') {
      throw Object.assign(
        new Error(
          `Tenant ${id} is being restored by ${holder ? describeHolder(holder.pid, holder.applicationName) : 'another session'}: this copy waited for its advisory lock as long as TENANT_RESTORE_STATEMENT_TIMEOUT allows, and retries. If no other restore of it should be running, look for that session in pg_stat_activity on live.`,
        ),
        { code: '55P03' },
      );
    }
    throw error;
  } finally {
    signal?.removeEventListener('abort', cancel);
  }
}

/** Live's rows of the tenant equal scratch's, table by table: count and full-row checksum (validate.ts, as overwrite). */
async function rowsEqualScratch(input: CopyTenantInput, id: TenantId): Promise<boolean> {
  const check = await validateTenant({
    scratch: input.scratch,
    live: input.live,
    plan: input.plan,
    tenantId: id,
    tenantIds: [id],
    conflict: 'overwrite',
  });
  return check.ok;
}
