/**
 * One transaction on live for the tenants of a copy, whatever its path: committed when the work returns, rolled back
 * when it throws, the restore id announced on the tenants' channels at the first COMMIT.
 */
import type { PoolClient } from '../db';
import { announceRestore } from '../sql/lock';
import { openSession, sessionSetup } from '../sql/session';
import { checkAbort, type CopyTotals } from './common';
import type { CopyTenantInput } from './index';
import { Staging } from './staged';

/** Copies whose restore id was committed on their tenants' channels (liveTransaction). */
const announced = new WeakSet<CopyTenantInput>();

/**
 * One transaction on live for the tenants (beginLive), committed when `work` returns, rolled back when it throws. A
 * COPY interrupted mid-stream can leave the connection in an unknown protocol state: after an abort it is not reused.
 * `written`: what the transaction wrote, handed to `beforeCommit` with its id (a partial tenant's copy records it).
 */
export async function liveTransaction<T>(
  input: CopyTenantInput,
  work: (live: PoolClient, staging: Staging) => Promise<T>,
  written?: (result: T) => CopyTotals,
): Promise<T> {
  const { plan, tenantIds } = input;
  const live = await openSession(
    input.live,
    sessionSetup({
      mode: 'write',
      canonicalText: true,
      replicaRole: plan.fkEnforcement === 'replica',
      deferConstraints: true,
      tenantIds,
    }),
  );
  let broken = false;
  try {
    const result = await work(live, new Staging(live));
    checkAbort(input.signal);
    // Once per copy: the restore id on the tenants' channels, delivered to a waiting restore only if this commits.
    const announce = input.restoreId !== undefined && !announced.has(input);
    if (announce) await live.query(announceRestore(plan, tenantIds, input.restoreId!));
    if (input.beforeCommit) {
      const { rows } = await live.query<{ id: string }>('SELECT pg_current_xact_id()::text AS id');
      await input.beforeCommit(rows[0]!.id, written?.(result));
    }
    await live.query('COMMIT');
    if (announce) announced.add(input);
    await input.onCommitted?.();
    return result;
  } catch (error) {
    await live.query('ROLLBACK').catch(() => (broken = true));
    if (input.signal?.aborted) broken = true;
    throw error;
  } finally {
    live.release(broken);
  }
}
