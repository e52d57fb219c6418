/**
 * Issue 11, item 3: two restores touching the same tenant at once cannot interleave. Another session (a second
 * restore of tenant 15) holds the tenant's advisory lock on live; a copy of tenant 15 waits for it, writing nothing
 * meanwhile, past any lock_timeout, and goes on once the lock is released. Issue 23, item 4: a retry accepts a tenant
 * it finds present only when live equals scratch, and a copy that waited for another restore names it when refused. A copy of another tenant (16) is not held back by it. Under the
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

/** Sessions waiting on an advisory lock, with their application_name and how long they have waited (server clock). */
async function advisoryWaiters(url: string): Promise<Array<{ application_name: string; waited_ms: number }>> {
  return query<{ application_name: string; waited_ms: number }>(
    url,
    `SELECT application_name, (extract(epoch FROM clock_timestamp() - query_start) * 1000)::float8 AS waited_ms
       FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND wait_event = 'advisory'`,
  );
}

/** Polls until `done` holds (no time bound: the test's timeout is the net). */
async function until<T>(probe: () => Promise<T>, done: (value: T) => boolean): Promise<T> {
  for (;;) {
    const value = await probe();
    if (done(value)) return value;
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

  it('a lock_timeout does not cut the wait: the copy waits past it, and goes on once the lock is released', async () => {
    const other = new pg.Client({ connectionString: liveUrl, application_name: 'psql' });
    await other.connect();
    const impatient = new pg.Pool({ connectionString: liveUrl, options: '-c lock_timeout=200' });
    try {
      await other.query(tenantLock(plan, '15'));
      let settled = false;
      const copying = copyTenant({
        scratch: pools.get(scratchUrl),
        live: impatient,
        plan,
        tenantIds: ['15'],
        conflict: 'skip',
      }).finally(() => (settled = true));
      // The copy's lock session waits far longer than its lock_timeout (server clock), and the copy is still on.
      await until(
        () => advisoryWaiters(liveUrl),
        (w) => w.some((x) => x.waited_ms > 1_000),
      );
      expect(settled).toBe(false);
      await other.query('SELECT pg_advisory_unlock_all()');
      const result = await copying;
      expect(result.tenantIds).toEqual(['15']);
    } finally {
      await other.end();
      await impatient.end();
    }
  });

  it('a wait longer than statement_timeout fails with a retryable lock timeout that names who holds the tenant', async () => {
    const other = new pg.Client({ connectionString: liveUrl, application_name: 'psql' });
    await other.connect();
    const impatient = new pg.Pool({ connectionString: liveUrl, options: '-c statement_timeout=300' });
    try {
      await other.query(tenantLock(plan, '15'));
      const pid = (await other.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
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
      expect(error?.message).toContain(
        `Tenant 15 is being restored by a session that is not a restore (pid ${pid}, application_name 'psql')`,
      );
      expect(error?.message).toMatch(/TENANT_RESTORE_STATEMENT_TIMEOUT/);
    } finally {
      await other.end();
      await impatient.end();
    }
  });

  it('a retry whose earlier attempts reported no commit accepts a present tenant only when live equals scratch', async () => {
    // Tenant 15 is in live with the backup's rows (restored above): an earlier attempt may have committed them.
    const retry = {
      scratch: pools.get(scratchUrl),
      live: pools.get(liveUrl),
      plan,
      tenantIds: ['15'],
      conflict: 'overwrite' as const,
      expectAbsent: ['15'],
      presentMayBeOwn: true,
    };
    expect(await fingerprints(liveUrl, tenantTables, tenantFilter([15]))).toEqual(
      await fingerprints(scratchUrl, tenantTables, tenantFilter([15])),
    );
    // Accepted: the copy runs (its rows are already there, identical, so it writes nothing new) and live stays equal.
    const accepted = await copyTenant(retry);
    expect(accepted.tenantIds).toEqual(['15']);
    expect(await fingerprints(liveUrl, tenantTables, tenantFilter([15]))).toEqual(
      await fingerprints(scratchUrl, tenantTables, tenantFilter([15])),
    );
    // A user (or another restore) changed it since: not this restore's rows any more, refused, nothing written.
    await query(liveUrl, `UPDATE app.tenants SET name = name || ' (changed in live)' WHERE id = 15`);
    const before = await fingerprints(liveUrl, tenantTables, tenantFilter([15]));
    const error = await copyTenant(retry).then(
      () => null,
      (e: Error) => e,
    );
    expect(error?.name).toBe('TenantPresentError');
    expect(error?.message).toMatch(
      /Tenant\(s\) 15 came back into live.*an earlier attempt of this copy reported no commit, and live does not hold exactly its backup rows/,
    );
    expect(await fingerprints(liveUrl, tenantTables, tenantFilter([15]))).toEqual(before);
  });

  it('a copy that waited for another restore of its tenant is refused with that restore’s id, writing nothing', async () => {
    await query(liveUrl, deleteTenantsSql([18]));
    const gate = new pg.Client({ connectionString: liveUrl, application_name: 'psql' });
    await gate.connect();
    try {
      await gate.query(tenantLock(plan, '18'));
      const copy = (restoreId: string) =>
        copyTenant({
          scratch: pools.get(scratchUrl),
          live: pools.get(liveUrl),
          plan,
          tenantIds: ['18'],
          conflict: 'overwrite',
          expectAbsent: ['18'],
          restoreId,
        });
      const first = copy('r-first');
      await until(
        () => advisoryWaiters(liveUrl),
        (w) => w.some((x) => x.application_name === 'tenant-restore-lock r-first'),
      );
      const second = copy('r-second').then(
        () => null,
        (e: Error) => e,
      );
      await until(
        () => advisoryWaiters(liveUrl),
        (w) => w.some((x) => x.application_name === 'tenant-restore-lock r-second'),
      );
      await gate.query('SELECT pg_advisory_unlock_all()');
      expect((await first).rows['app.tenants']).toBe(1);
      const refused = await second;
      expect(refused?.name).toBe('TenantPresentError');
      expect(refused?.message).toContain('restore r-first restored tenant 18 while this one waited for its lock');
      expect(await fingerprints(liveUrl, tenantTables, tenantFilter([18]))).toEqual(
        await fingerprints(scratchUrl, tenantTables, tenantFilter([18])),
      );
    } finally {
      await gate.end();
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
