/**
 * Issue 11, item 3: two restores touching the same tenant at once cannot interleave. Another session (a second
 * restore of tenant 15) holds the tenant's advisory lock on live; a copy of tenant 15 waits for it, writing nothing
 * meanwhile, and goes on once the lock is released. A copy of another tenant (16) is not held back by it. Under the
 * lock, a tenant that came back into live since preflight is refused; the lock's session is outside the pool. And the
 * engine's side of item 1: preflight classifies before the policy, and a partial tenant is copied in one transaction.
 */
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { copyTenant } from '../../activities/copy';
import { preflightTenant } from '../../activities/preflight';
import { Pools } from '../../activities/db';
import { buildPlan, type Plan } from '../../activities/plan';
import { tenantLock } from '../../activities/sql/lock';
import { fingerprints, psqlFile, query } from '../helpers/engine';
import { deleteTenantsSql, tenantFilter, tenantTables } from '../helpers/issue-tracker';
import { useFreshDatabases, useStackEnv } from '../helpers/stack';

useStackEnv();
const { fresh } = useFreshDatabases();

/** Polls pg_stat_activity until a session of the copy waits on an advisory lock (no time bound: the test's timeout is the net). */
async function waitForAdvisoryWaiter(url: string): Promise<void> {
  for (;;) {
    const rows = await query<{ n: number }>(
      url,
      `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND wait_event = 'advisory'`,
    );
    if (rows[0]!.n > 0) return;
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('per-tenant lock on live', () => {
  const pools = new Pools();
  let scratchUrl: string;
  let liveUrl: string;
  let plan: Plan;

  beforeAll(async () => {
    const source = await fresh('lock_src');
    psqlFile(source.url, join(__dirname, '..', 'fixtures', 'issue-tracker.sql'));
    scratchUrl = (await fresh('lock_scratch', source.name)).url;
    liveUrl = (await fresh('lock_live', source.name)).url;
    await query(liveUrl, deleteTenantsSql([15, 16]));
    plan = await buildPlan({ scratch: pools.get(scratchUrl), live: pools.get(liveUrl), tenantRoot: 'app.tenants' });
  });
  afterAll(() => pools.closeAll());

  it('a copy of a tenant whose lock another session holds waits, writes nothing, then completes', async () => {
    const other = new pg.Client({ connectionString: liveUrl });
    await other.connect();
    try {
      await other.query(tenantLock(plan, '15'));
      const copying = copyTenant({
        scratch: pools.get(scratchUrl),
        live: pools.get(liveUrl),
        plan,
        tenantIds: ['15'],
        conflict: 'fail',
      });
      await waitForAdvisoryWaiter(liveUrl);
      // Another tenant is not held back by tenant 15's lock.
      await copyTenant({
        scratch: pools.get(scratchUrl),
        live: pools.get(liveUrl),
        plan,
        tenantIds: ['16'],
        conflict: 'fail',
      });
      expect((await fingerprints(liveUrl, ['app.tenants'], tenantFilter([15])))['app.tenants']).toBe('0:-');
      await other.query('SELECT pg_advisory_unlock_all()');
      const result = await copying;
      expect(result.rows['app.tenants']).toBe(1);
      expect(await fingerprints(liveUrl, tenantTables, tenantFilter([15, 16]))).toEqual(
        await fingerprints(scratchUrl, tenantTables, tenantFilter([15, 16])),
      );
    } finally {
      await other.end();
    }
  });

  it('with a lock_timeout, the waiting copy fails with a retryable lock timeout that says who holds the tenant', async () => {
    const other = new pg.Client({ connectionString: liveUrl });
    await other.connect();
    const impatient = new pg.Pool({ connectionString: liveUrl, options: '-c lock_timeout=200' });
    try {
      await other.query(tenantLock(plan, '15'));
      const error = await copyTenant({
        scratch: pools.get(scratchUrl),
        live: impatient,
        plan,
        tenantIds: ['15'],
        conflict: 'skip',
      }).then(
        () => null,
        (e: Error & { code?: string }) => e,
      );
      expect(error?.code).toBe('55P03');
      expect(error?.message).toMatch(/Tenant 15 is being restored by another session/);
    } finally {
      await other.end();
      await impatient.end();
    }
  });

  it('refuses, under the lock, a tenant that came back into live since preflight (another restore finished it), writing nothing', async () => {
    // 15 and 16 are in live now (restored above): a copy whose preflight had found 15 absent must not restore it again.
    const before = await fingerprints(liveUrl, tenantTables, tenantFilter([15]));
    const error = await copyTenant({
      scratch: pools.get(scratchUrl),
      live: pools.get(liveUrl),
      plan,
      tenantIds: ['15'],
      conflict: 'overwrite',
      expectAbsent: ['15'],
    }).then(
      () => null,
      (e: Error) => e,
    );
    expect(error?.name).toBe('TenantPresentError');
    expect(error?.message).toMatch(
      /Tenant\(s\) 15 came back into live between this restore's preflight and its copy.*Nothing of them was written/,
    );
    expect(await fingerprints(liveUrl, tenantTables, tenantFilter([15]))).toEqual(before);
  });

  it('takes the lock outside the pool: a copy on a live pool of one connection does not wait for itself', async () => {
    await query(liveUrl, deleteTenantsSql([17]));
    const one = new pg.Pool({ connectionString: liveUrl, max: 1 });
    try {
      const result = await copyTenant({
        scratch: pools.get(scratchUrl),
        live: one,
        plan,
        tenantIds: ['17'],
        conflict: 'fail',
      });
      expect(result.rows['app.tenants']).toBe(1);
    } finally {
      await one.end();
    }
  });

  it('classifies before the policy: a present tenant under --conflict fail is reported present, not as a policy conflict', async () => {
    const result = await preflightTenant({
      scratch: pools.get(scratchUrl),
      live: pools.get(liveUrl),
      plan,
      tenantId: '15',
      conflict: 'fail',
    });
    expect(result.tenants?.['15']?.state).toBe('present');
    expect(result.liveState).toBe('present');
  });

  it('copies a partial tenant in one transaction, whatever chunkRows says, and records the keys it inserted', async () => {
    const removed = await query<{ id: string }>(
      liveUrl,
      `DELETE FROM app.attachments WHERE comment_id IN (SELECT c.id FROM app.comments c JOIN app.issues i ON i.id = c.issue_id JOIN app.projects p ON p.id = i.project_id WHERE p.tenant_id = 16) RETURNING id::text`,
    );
    expect(removed.length).toBeGreaterThan(0);
    const result = await copyTenant({
      scratch: pools.get(scratchUrl),
      live: pools.get(liveUrl),
      plan,
      tenantIds: ['16'],
      conflict: 'skip',
      chunkRows: 1,
      recordKeys: true,
    });
    expect(result.chunked).toBe(false);
    expect(result.restoredKeys?.['app.attachments']?.total).toBe(removed.length);
    expect(result.restoredKeys?.['app.attachments']?.keys.map((k) => k[0]).sort()).toEqual(
      removed.map((r) => r.id).sort(),
    );
    expect(Object.keys(result.restoredKeys ?? {})).toEqual(['app.attachments']);
  });
});
