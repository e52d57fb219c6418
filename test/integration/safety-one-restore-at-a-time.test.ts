/**
 * Issue 23, item 4 (finding N2): one restore of a tenant at a time, on every attempt (I7). Live is a clone of source A
 * with tenants 5 and 6 hard-deleted; source B is source A with other values in tenant 5's rows (another backup, another
 * --at). Every restore runs with --conflict overwrite, the policy that would revert the first restore's rows.
 *
 * - Two restores of tenant 5, one from A and one from B, at once: both pass preflight (the tenant is absent), both wait
 *   for the tenant's lock, which a session of the test holds (as a long copy would) past lock_timeout, so that both
 *   are waiting before either copies. The first in the queue restores tenant 5; the second, granted the lock after the
 *   first's COMMIT, finds it back in live and is refused with TenantPresentError naming the first's restore id. Live
 *   holds source A's rows of tenant 5.
 * - N2's reproduction: a session holds tenant 6's lock past lock_timeout (the copy used to fail there and retry
 *   without the re-check), re-inserts tenant 6 by hand with other values, and releases. The restore is refused with
 *   TenantPresentError, naming the session that held the lock, and live keeps the hand-made rows.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createActivities } from '../../activities';
import { Pools, sessionTimeouts } from '../../activities/db';
import { createS3Client } from '../../activities/s3';
import { generate, smallTenant, tenantRows, withClient } from '../fixtures/orchestration/fixture';
import { runCli, type CliResult } from '../helpers/product';
import { startWorker, uniqueName, useFreshDatabases, useStackEnv } from '../helpers/stack';

const env = useStackEnv();
const { fresh } = useFreshDatabases();

type StartJson = { status: string; tenants: Array<{ tenantId: string; status: string; error?: string }> };

/** The key of a tenant's advisory lock (activities/sql/lock.ts), as pg_locks shows it (classid, objid). */
const tenantKey = (id: number) =>
  `hashtextextended('tenant-restore:tenant:app.tenants:' || (${Number(id)}::bigint)::text, 0)`;

/** Sessions waiting for tenant `id`'s lock, with their application_name and how long they have waited (server clock). */
async function lockWaiters(
  url: string,
  id: number,
): Promise<Array<{ pid: number; application_name: string; waited_ms: number }>> {
  return withClient(url, async (c) => {
    const { rows } = await c.query<{ pid: number; application_name: string; waited_ms: number }>(
      `WITH k AS (SELECT ${tenantKey(id)} AS key)
       SELECT l.pid, a.application_name, (extract(epoch FROM clock_timestamp() - a.query_start) * 1000)::float8 AS waited_ms
         FROM k, pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
        WHERE l.locktype = 'advisory' AND NOT l.granted AND l.objsubid = 1
          AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
          AND l.classid = ((k.key >> 32) & 4294967295)::oid AND l.objid = (k.key & 4294967295)::oid
        ORDER BY a.query_start`,
    );
    return rows;
  });
}

/** Polls until `done` holds (no time bound: the test's timeout is the net). */
async function until<T>(probe: () => Promise<T>, done: (value: T) => boolean): Promise<T> {
  for (;;) {
    const value = await probe();
    if (done(value)) return value;
    await new Promise((r) => setTimeout(r, 100));
  }
}

function tenantOutcome(result: CliResult, id: number) {
  const out = JSON.parse(result.stdout) as StartJson;
  return out.tenants.find((t) => t.tenantId === String(id));
}

describe('one restore of a tenant at a time, on every attempt', () => {
  const pools = new Pools();
  const s3 = createS3Client();
  const taskQueue = uniqueName('tq_one_at_a_time');
  const run = uniqueName('one').replace(/_/g, '-');
  let sourceA: { name: string; url: string };
  let sourceB: { name: string; url: string };
  let live: { name: string; url: string };
  let worker: Awaited<ReturnType<typeof startWorker>>;

  const start = (id: string, scratch: string, tenant: number) =>
    runCli([
      'start',
      '--scratch',
      scratch,
      '--live',
      live.url,
      '--tenant-root',
      'app.tenants',
      '--tenants',
      String(tenant),
      '--conflict',
      'overwrite',
      '--id',
      id,
      '--wait',
      '--json',
      '--task-queue',
      taskQueue,
      '--artifacts',
      `s3://${env.STACK_S3_BUCKET}/test-restores/`,
    ]);

  /** A session of the test that holds tenant `id`'s lock, as another restore (or an operator's psql) would. */
  async function holdLock(id: number): Promise<pg.Client> {
    const gate = new pg.Client({ connectionString: live.url, application_name: 'psql' });
    await gate.connect();
    await gate.query(`SELECT pg_advisory_lock(${tenantKey(id)})`);
    return gate;
  }

  beforeAll(async () => {
    sourceA = await fresh('one_src_a');
    await generate(sourceA.url, [{ first: 1, count: 8, shape: smallTenant }]);
    sourceB = await fresh('one_src_b', sourceA.name);
    await withClient(sourceB.url, async (c) => {
      await c.query(`UPDATE app.tenants SET name = 'rowdata tenant 5 of source B' WHERE id = 5`);
      await c.query(
        `UPDATE app.users SET email = replace(email, '@example.test', '@source-b.test') WHERE tenant_id = 5`,
      );
    });
    live = await fresh('one_live', sourceA.name);
    await withClient(live.url, (c) => c.query('DELETE FROM app.tenants WHERE id = ANY($1::bigint[])', [[5, 6]]));
    // The two sources differ in tenant 5, so that "live equals source A" can fail.
    expect(await tenantRows(sourceB.url, [5])).not.toEqual(await tenantRows(sourceA.url, [5]));
    worker = await startWorker({ taskQueue, activities: createActivities({ pools, s3 }) });
  });

  afterAll(async () => {
    await worker?.stop();
    await pools.closeAll();
    s3.destroy();
  });

  it('two restores of one tenant from two sources at once: the second is refused with the first one’s id, live holds the first source', async () => {
    const first = `${run}-a`;
    const second = `${run}-b`;
    const gate = await holdLock(5);
    let released = false;
    try {
      const fromA = start(first, sourceA.url, 5);
      const firstSeen = await until(
        () => lockWaiters(live.url, 5),
        (w) => w.length >= 1,
      );
      const since = Date.now() - firstSeen[0]!.waited_ms;
      const fromB = start(second, sourceB.url, 5);
      // Both restores passed preflight (tenant 5 absent) and wait for the tenant, the first one first in the queue.
      await until(
        () => lockWaiters(live.url, 5),
        (w) => w.length >= 2,
      );
      // And past lock_timeout (plus a margin), as behind a copy of a large tenant: the release before used to fail the
      // wait there and retry it without looking whether the tenant came back.
      await until(
        () => Promise.resolve(Date.now() - since),
        (waited) => waited > sessionTimeouts().lockTimeoutMs + 2_000,
      );
      await gate.query('SELECT pg_advisory_unlock_all()');
      released = true;
      const [a, b] = await Promise.all([fromA, fromB]);

      expect(a.code, a.stderr).toBe(0);
      expect(tenantOutcome(a, 5)?.status).toBe('restored');
      expect(b.code, b.stderr).toBe(1);
      const refused = tenantOutcome(b, 5);
      expect(refused?.status).toBe('failed');
      expect(refused?.error).toMatch(/TenantPresentError: Tenant\(s\) 5 came back into live/);
      expect(refused?.error).toContain(`restore ${first} restored tenant 5`);
      expect(refused?.error).toMatch(/Nothing of them was written by this restore/);

      // Live holds source A's rows of tenant 5, not B's.
      expect(await tenantRows(live.url, [5])).toEqual(await tenantRows(sourceA.url, [5]));
    } finally {
      if (!released) await gate.query('SELECT pg_advisory_unlock_all()').catch(() => undefined);
      await gate.end();
    }
  });

  it('N2: a lock held past lock_timeout while the tenant is re-inserted by hand: refused, live untouched', async () => {
    const id = `${run}-n2`;
    const { lockTimeoutMs } = sessionTimeouts();
    expect(lockTimeoutMs).toBeGreaterThan(0);
    const gate = await holdLock(6);
    let released = false;
    try {
      const restoring = start(id, sourceA.url, 6);
      // Held past lock_timeout (plus a margin): the release before used to fail its wait there and retry without
      // looking whether the tenant came back. Measured from the first wait seen, whatever attempt waits now.
      const firstSeen = await until(
        () => lockWaiters(live.url, 6),
        (w) => w.length >= 1,
      );
      const since = Date.now() - firstSeen[0]!.waited_ms;
      await until(
        () => lockWaiters(live.url, 6),
        (w) => w.length >= 1 && Date.now() - since > lockTimeoutMs + 2_000,
      );
      // Another restore's work, done by hand while the lock is held: tenant 6 back with other values.
      await gate.query(
        `INSERT INTO app.tenants (id, name, plan_id) VALUES (6, 'rowdata tenant 6 restored by hand', 1)`,
      );
      await gate.query(`INSERT INTO app.users (tenant_id, email) VALUES (6, 'rowdata-by-hand-t6@example.test')`);
      const byHand = await tenantRows(live.url, [6]);
      await gate.query('SELECT pg_advisory_unlock_all()');
      released = true;
      const result = await restoring;

      expect(result.code, result.stderr).toBe(1);
      const refused = tenantOutcome(result, 6);
      expect(refused?.status).toBe('failed');
      expect(refused?.error).toMatch(/TenantPresentError: Tenant\(s\) 6 came back into live/);
      expect(refused?.error).toMatch(
        /lock was held by a session that is not a restore \(pid \d+, application_name 'psql'\)/,
      );
      expect(await tenantRows(live.url, [6])).toEqual(byHand);
      expect(byHand['app.tenants']!.count).toBe(1);
    } finally {
      if (!released) await gate.query('SELECT pg_advisory_unlock_all()').catch(() => undefined);
      await gate.end();
    }
  });
});
