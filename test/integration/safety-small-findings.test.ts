/**
 * Issue 23, item 7 ("smaller ones from the same review"), against the real stack:
 * - N5: a discover with the id of a restore (its scratch kept) gets a scratch of its own: the restore's scratch, loaded
 *   from another backup, is neither rebuilt nor dropped by the discover, which drops only its own.
 * - N12: a chunked copy's checkpoints (its heartbeat details, which land in history) carry counts, never key values:
 *   a table keyed by a natural text key is copied in chunks, stopped half-way through it, and resumed from the count.
 * - Exclusion constraints: a table the restore writes with an EXCLUDE constraint in live is refused at plan time,
 *   naming table and constraint (discover, which writes nothing, still plans).
 * - N10: a worker given only a port serves its metrics on 127.0.0.1 alone, and a metrics address that is not an
 *   address stops it with exit 2 and what to give.
 * Drill databases (N14) are in drill.test.ts; the pure parts of all of these in test/unit/safety-small-findings.test.ts.
 */
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createActivities } from '../../activities';
import { copyTenant } from '../../activities/copy';
import { Pools } from '../../activities/db';
import { ExclusionConstraintError, nonRetryableErrorTypes } from '../../activities/errors';
import { buildPlan } from '../../activities/plan';
import type { CopyCheckpoint } from '../../activities/restore-types';
import { createS3Client } from '../../activities/s3';
import { parseScratchMarker, scratchDatabaseName } from '../../activities/scratch';
import { buildDiscoverRequest } from '../../cli/client/discover';
import { buildStartRequest } from '../../cli/client/start';
import { bulkWorkflowId, discoverWorkflowId } from '../../workflows/definitions';
import { generate, smallTenant, uploadBackup } from '../fixtures/orchestration/fixture';
import { fingerprints, psqlFile, query } from '../helpers/engine';
import { deleteTenantsSql, tenantFilter, tenantTables } from '../helpers/issue-tracker';
import { productEnv, runCli, startWorkerProcess } from '../helpers/product';
import {
  scratchAdminQuery,
  startWorker,
  temporalClient,
  uniqueName,
  useFreshDatabases,
  useStackEnv,
} from '../helpers/stack';

const env = useStackEnv();
const { fresh } = useFreshDatabases();
const pools = new Pools();
afterAll(() => pools.closeAll());

describe('a chunked copy heartbeats counts, never key values (N12)', () => {
  let scratchUrl: string;
  let liveUrl: string;
  const handles = 'app.user_handles';

  beforeAll(async () => {
    const source = await fresh('n12_src');
    psqlFile(source.url, join(__dirname, '..', 'fixtures', 'issue-tracker.sql'));
    // A natural text key: each value is row data (an e-mail address), which must never reach a heartbeat.
    await query(
      source.url,
      `CREATE TABLE ${handles} (handle text PRIMARY KEY, tenant_id bigint NOT NULL REFERENCES app.tenants(id));
       INSERT INTO ${handles} SELECT format('handle-%s@tenant15.example.com', lpad(n::text, 3, '0')), 15 FROM generate_series(1, 90) n;
       INSERT INTO ${handles} SELECT format('handle-%s@tenant16.example.com', lpad(n::text, 3, '0')), 16 FROM generate_series(1, 5) n;`,
    );
    scratchUrl = (await fresh('n12_scratch', source.name)).url;
    liveUrl = (await fresh('n12_live', source.name)).url;
    await query(liveUrl, `DELETE FROM ${handles} WHERE tenant_id = 15; ${deleteTenantsSql([15])}`);
  });

  it('stops inside the text-keyed table, resumes from the row count, and ends equal to the backup', async () => {
    const plan = await buildPlan({
      scratch: pools.get(scratchUrl),
      live: pools.get(liveUrl),
      tenantRoot: 'app.tenants',
    });
    const index = plan.tables.findIndex((t) => t.key === handles);
    expect(index).toBeGreaterThanOrEqual(0);
    const checkpoints: CopyCheckpoint[] = [];
    const controller = new AbortController();
    const stopped = await copyTenant({
      scratch: pools.get(scratchUrl),
      live: pools.get(liveUrl),
      plan,
      tenantIds: ['15'],
      conflict: 'fail',
      chunkRows: 25,
      signal: controller.signal,
      onCheckpoint: (c) => {
        checkpoints.push(c);
        // Two chunks of the 90 handles are in: stop there, as a worker dying would.
        if (c.tableIndex === index && c.position === 50) controller.abort(new Error('worker killed'));
      },
    }).then(
      () => null,
      (e: Error) => e,
    );
    expect(stopped?.message).toBe('worker killed');
    const last = checkpoints[checkpoints.length - 1]!;
    expect(last).toEqual({ tableIndex: index, position: 50, rows: expect.any(Object) });

    // What a heartbeat carries: the table's index, a row count, counts per table. No key, no e-mail address.
    for (const c of checkpoints) {
      expect(Object.keys(c).sort()).toEqual(
        c.position === undefined ? ['rows', 'tableIndex'] : ['position', 'rows', 'tableIndex'],
      );
      for (const n of Object.values(c.rows)) expect(typeof n).toBe('number');
    }
    expect(JSON.stringify(checkpoints)).not.toMatch(/example\.com|handle-/);
    expect(
      (await query<{ n: string }>(liveUrl, `SELECT count(*) AS n FROM ${handles} WHERE tenant_id = 15`))[0]!.n,
    ).toBe('50');

    // Resumed from the count: the cursor is found on scratch, the rest goes in, nothing twice.
    const resumed = await copyTenant({
      scratch: pools.get(scratchUrl),
      live: pools.get(liveUrl),
      plan,
      tenantIds: ['15'],
      conflict: 'fail',
      chunkRows: 25,
      resumeFrom: last,
    });
    expect(resumed.rows[handles]).toBe(90);
    const filter = tenantFilter([15]);
    const withHandles = (t: string) => (t === handles ? 't.tenant_id = 15' : filter(t));
    expect(await fingerprints(liveUrl, [...tenantTables, handles], withHandles)).toEqual(
      await fingerprints(scratchUrl, [...tenantTables, handles], withHandles),
    );
  });

  it('refuses a count that scratch does not hold, without writing', async () => {
    const plan = await buildPlan({
      scratch: pools.get(scratchUrl),
      live: pools.get(liveUrl),
      tenantRoot: 'app.tenants',
    });
    const index = plan.tables.findIndex((t) => t.key === handles);
    const error = await copyTenant({
      scratch: pools.get(scratchUrl),
      live: pools.get(liveUrl),
      plan,
      tenantIds: ['16'],
      conflict: 'skip',
      chunkRows: 25,
      resumeFrom: { tableIndex: index, position: 500, rows: {} },
    }).then(
      () => undefined,
      (e: Error) => e,
    );
    expect(error?.name).toBe('InvalidCheckpointError');
    expect(error?.message).toMatch(/says 500 rows of app\.user_handles were copied, but scratch holds fewer/);
  });
});

describe('exclusion constraints are refused at plan time (issue 23 item 7)', () => {
  it('names the table and the constraint, and is not retried; discover (which writes nothing) still plans', async () => {
    const source = await fresh('excl_src');
    psqlFile(source.url, join(__dirname, '..', 'fixtures', 'issue-tracker.sql'));
    const scratchUrl = (await fresh('excl_scratch', source.name)).url;
    const liveUrl = (await fresh('excl_live', source.name)).url;
    // A project's milestones may not overlap: a key another tenant's row cannot hold, but the restore checks no such key.
    const milestones = `CREATE TABLE app.milestones (id bigint PRIMARY KEY, project_id bigint NOT NULL REFERENCES app.projects(id),
        during tsrange NOT NULL)`;
    await query(scratchUrl, milestones);
    await query(
      liveUrl,
      `${milestones}; ALTER TABLE app.milestones ADD CONSTRAINT milestones_no_overlap EXCLUDE USING gist (during WITH &&)`,
    );
    const error = await buildPlan({
      scratch: pools.get(scratchUrl),
      live: pools.get(liveUrl),
      tenantRoot: 'app.tenants',
    }).then(
      () => undefined,
      (e: Error) => e,
    );
    expect(error).toBeInstanceOf(ExclusionConstraintError);
    expect(nonRetryableErrorTypes).toContain(error!.name);
    expect(error!.message).toContain(
      'The restore must write app.milestones (constraint milestones_no_overlap: EXCLUDE USING gist (during WITH &&))',
    );
    expect(error!.message).toContain('excludeTables');
    // Excluded, the table is not written, and the plan is made.
    const plan = await buildPlan({
      scratch: pools.get(scratchUrl),
      live: pools.get(liveUrl),
      tenantRoot: 'app.tenants',
      config: { excludeTables: ['app.milestones'] },
    });
    expect(plan.tables.map((t) => t.key)).not.toContain('app.milestones');
    const discoverPlan = await buildPlan({
      scratch: pools.get(scratchUrl),
      live: pools.get(liveUrl),
      tenantRoot: 'app.tenants',
      tolerateDrift: true,
    });
    expect(discoverPlan.tables.map((t) => t.key)).toContain('app.milestones');
  });
});

describe('a discover and a restore with one id do not share a scratch (N5)', () => {
  const s3 = createS3Client();
  const taskQueue = uniqueName('tq_n5');
  let worker: Awaited<ReturnType<typeof startWorker>>;
  let temporal: Awaited<ReturnType<typeof temporalClient>>;
  const leftovers: string[] = [];

  beforeAll(async () => {
    worker = await startWorker({ taskQueue, activities: createActivities({ pools, s3 }) });
    temporal = await temporalClient();
  });
  afterAll(async () => {
    for (const name of leftovers) await scratchAdminQuery(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
    await temporal?.close();
    await worker?.stop();
    s3.destroy();
  });

  const marker = async (name: string) => {
    const { rows } = await scratchAdminQuery(
      `SELECT shobj_description(oid, 'pg_database') AS comment FROM pg_database WHERE datname = $1`,
      [name],
    );
    return rows.length ? ((rows[0] as { comment: string | null }).comment ?? null) : undefined;
  };

  it("a discover with the restore's id leaves the restore's kept scratch as it was, and drops only its own", async () => {
    const id = uniqueName('n5').replace(/_/g, '-');
    const a = await fresh('n5_a');
    await generate(a.url, [{ first: 1, count: 3, shape: smallTenant }]);
    const b = await fresh('n5_b');
    await generate(b.url, [{ first: 1, count: 5, shape: smallTenant }]);
    const backupA = (await uploadBackup(a.url, env.STACK_S3_BUCKET, `test-n5/${id}/a.dump`)).backup;
    const backupB = (await uploadBackup(b.url, env.STACK_S3_BUCKET, `test-n5/${id}/b.dump`)).backup;
    const live = await fresh('n5_live', a.name);
    await query(live.url, 'DELETE FROM app.tenants WHERE id = 2');

    // The restore, from backup A, keeps its scratch (as a paused or running restore has it).
    const restore = buildStartRequest({
      backup: backupA,
      live: live.url,
      'tenant-root': 'app.tenants',
      tenants: '2',
      id,
      artifacts: `s3://${env.STACK_S3_BUCKET}/test-n5/${id}/restore/`,
      'task-queue': taskQueue,
      'keep-scratch': true,
    });
    const restored = (await temporal.client.workflow.execute('bulkRestore', {
      taskQueue,
      workflowId: bulkWorkflowId(id),
      args: [restore.input],
    })) as { status: string };
    expect(restored.status).toBe('succeeded');
    const restoreScratch = scratchDatabaseName(id, 'restore');
    leftovers.push(restoreScratch);
    const before = await marker(restoreScratch);
    expect(parseScratchMarker(before)).toMatchObject({
      kind: 'restore',
      restoreId: id,
      state: 'loaded',
      backup: backupA,
    });

    // The discover of the same id, from backup B, elsewhere: it must get a scratch of its own.
    const discover = buildDiscoverRequest({
      backup: backupB,
      live: live.url,
      'tenant-root': 'app.tenants',
      id,
      artifacts: `s3://${env.STACK_S3_BUCKET}/test-n5/${id}/elsewhere/`,
      'task-queue': taskQueue,
    });
    const discoverScratch = scratchDatabaseName(id, 'discover');
    leftovers.push(discoverScratch);
    expect(discoverScratch).not.toBe(restoreScratch);
    const found = (await temporal.client.workflow.execute('discover', {
      taskQueue,
      workflowId: discoverWorkflowId(id),
      args: [discover.input],
    })) as { tenantsInBackup: number; scratch: { ref: string; dropped: boolean } };
    // It read backup B (5 tenants), on its own scratch, and dropped that one.
    expect(found.tenantsInBackup).toBe(5);
    expect(found.scratch.dropped).toBe(true);
    expect(found.scratch.ref).toContain(discoverScratch);
    expect(await marker(discoverScratch)).toBeUndefined();
    // The restore's scratch: still there, the same marker (backup A, loaded at the same moment), its rows from A.
    expect(await marker(restoreScratch)).toBe(before);
    const { rows } = await scratchAdminQuery(`SELECT 1 FROM pg_database WHERE datname = $1`, [restoreScratch]);
    expect(rows).toHaveLength(1);
  });
});

describe('the metrics endpoint binds 127.0.0.1 unless an address is given (N10)', () => {
  const freePort = () =>
    new Promise<number>((resolve, reject) => {
      const server = createServer();
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => {
        const { port } = server.address() as { port: number };
        server.close(() => resolve(port));
      });
    });
  /** Local addresses listening on `port`, from the kernel's own table (IPv4 and IPv6), as `hex-address`. */
  const listeners = (port: number): string[] =>
    ['/proc/net/tcp', '/proc/net/tcp6'].flatMap((file) =>
      readFileSync(file, 'utf8')
        .split('\n')
        .slice(1)
        .map((line) => line.trim().split(/\s+/))
        .filter((f) => f.length > 3 && f[3] === '0A' && Number.parseInt(f[1]!.split(':')[1]!, 16) === port)
        .map((f) => f[1]!.split(':')[0]!),
    );

  it('a port alone serves /metrics on loopback only', async () => {
    const port = await freePort();
    const worker = await startWorkerProcess({
      taskQueue: uniqueName('tq_n10'),
      env: productEnv({ TENANT_RESTORE_METRICS_ADDRESS: String(port) }),
    });
    try {
      const response = await fetch(`http://127.0.0.1:${port}/metrics`);
      expect(response.status).toBe(200);
      expect(await response.text()).toMatch(/^temporal_\w+/m);
      // 127.0.0.1 in /proc/net/tcp's little-endian hex, and nothing else (no 0.0.0.0, no ::).
      expect(listeners(port)).toEqual(['0100007F']);
      expect(worker.log()).toContain(`http://127.0.0.1:${port}/metrics`);
    } finally {
      await worker.stop();
    }
  });

  it('an address that is not a port or <ip>:<port> stops the worker with exit 2 and what to give', async () => {
    const run = await runCli(
      ['worker', '--task-queue', uniqueName('tq_n10')],
      productEnv({ TENANT_RESTORE_METRICS_ADDRESS: 'localhost:9464' }),
    );
    expect(run.code, run.stdout + run.stderr).toBe(2);
    expect(run.stderr).toContain(
      'TENANT_RESTORE_METRICS_ADDRESS=localhost:9464 is not a port or an <ip>:<port>: give a port (9464: served on 127.0.0.1 only)',
    );
  });
});
