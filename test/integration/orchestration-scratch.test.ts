/**
 * Scratch from S3 end to end: an archive whose manifest does not match is refused (nothing written to live, no
 * half-loaded scratch left); a scratch this restore already loaded is reused, and converges (I4); its own scratch
 * marked 'loading' is rebuilt; `--scratch <url>` uses a database already restored and never drops it.
 * Issue 25 step 3: scratch is loaded UNLOGGED (relpersistence 'u'), and a scratch marked 'loaded' that crash recovery
 * emptied since (TRUNCATE of a table, or its sentinel reset, stand in for it here) is loaded again, never reused.
 */
import { HeadObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import type { Client } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createActivities } from '../../activities';
import { Pools } from '../../activities/db';
import type { RestoreReport } from '../../activities/report';
import { createS3Client, getJson } from '../../activities/s3';
import { scratchDatabaseName } from '../../activities/scratch';
import { sentinelName, sentinelSchema } from '../../activities/scratch-alive';
import {
  adminQuery,
  scratchAdminQuery,
  serverUrl,
  startWorker,
  temporalClient,
  uniqueName,
  useFreshDatabases,
  useStackEnv,
  withClient,
} from '../helpers/stack';
import {
  deleteTenants,
  generate,
  range,
  smallTenant,
  tables,
  tenantRows,
  uploadBackup,
} from '../fixtures/orchestration/fixture';
import { runCli } from '../helpers/product';
import { scratchRole } from '../../scripts/stack';
import { signedManifest } from '../../scripts/workload/backup';

const env = useStackEnv();
const { fresh } = useFreshDatabases();

describe('scratch from S3', () => {
  const pools = new Pools();
  const s3 = createS3Client();
  const taskQueue = uniqueName('tq_orch_scratch');
  const victims = range(1, 5);
  let source: { name: string; url: string };
  let backup: string;
  let worker: Awaited<ReturnType<typeof startWorker>>;
  let client: Client;
  let closeClient: () => Promise<void>;

  beforeAll(async () => {
    source = await fresh('orch_scr_src');
    await generate(source.url, [{ first: 1, count: 10, shape: smallTenant }]);
    ({ backup } = await uploadBackup(source.url, env.STACK_S3_BUCKET, `test/${uniqueName('scr')}/backup.dump`));
    worker = await startWorker({ taskQueue, activities: createActivities({ pools, s3 }) });
    ({ client, close: closeClient } = await temporalClient());
  });

  afterAll(async () => {
    await closeClient?.();
    await worker?.stop();
    await pools.closeAll();
    s3.destroy();
  });

  const scratchExists = async (restoreId: string) =>
    (await scratchAdminQuery('SELECT 1 FROM pg_database WHERE datname = $1', [scratchDatabaseName(restoreId)])).rows
      .length === 1;
  const report = (restoreId: string) =>
    getJson<RestoreReport>(s3, { bucket: env.STACK_S3_BUCKET, key: `test-restores/${restoreId}/report.json` });
  /** A query in one database of the scratch cluster, as its superuser. */
  const inScratch = (database: string, sql: string) => {
    const url = new URL(env.STACK_PG_SCRATCH_URL);
    url.pathname = `/${database}`;
    return withClient(url.toString(), (c) => c.query(sql));
  };
  const start = (restoreId: string, live: string, extra: string[] = [], source = ['--backup', backup]) =>
    runCli([
      'start',
      ...source,
      '--live',
      live,
      '--tenant-root',
      'app.tenants',
      '--tenants',
      victims.join(','),
      '--id',
      restoreId,
      '--task-queue',
      taskQueue,
      '--artifacts',
      `s3://${env.STACK_S3_BUCKET}/test-restores/`,
      '--wait',
      '--json',
      ...extra,
    ]);

  it('refuses an archive that does not match its manifest, writes nothing to live and leaves no scratch', async () => {
    const key = `test/${uniqueName('scr')}/tampered.dump`;
    const { backup: good } = await uploadBackup(source.url, env.STACK_S3_BUCKET, key);
    await s3.send(
      new PutObjectCommand({
        Bucket: env.STACK_S3_BUCKET,
        Key: `${key}.manifest.json`,
        // Signed by the backup job (the stack's key): the archive changed after it was signed.
        Body: JSON.stringify(
          signedManifest(key, {
            sha256: '0'.repeat(64),
            size: (await s3.send(new HeadObjectCommand({ Bucket: env.STACK_S3_BUCKET, Key: key }))).ContentLength!,
          }),
        ),
      }),
    );
    const live = await fresh('orch_scr_live', source.name);
    await deleteTenants(live.url, victims);
    const restoreId = uniqueName('tampered').replace(/_/g, '-');
    const run = await start(restoreId, live.url, [], ['--backup', good]);
    expect(run.code).toBe(2); // failed before any tenant started: nothing was written
    const out = JSON.parse(run.stdout) as { status: string; error?: string };
    expect(out.status).toBe('failed');
    expect(out.error).toMatch(/sha256/);
    expect((await tenantRows(live.url, victims))['app.tenants'].count).toBe(0);
    expect(await scratchExists(restoreId)).toBe(false);
    expect((await report(restoreId)).error).toMatch(/BackupChecksumMismatch|sha256/);
  });

  it('reuses a scratch this restore already loaded (a retry after the load), unlogged; rebuilds its own half-loaded one, and one emptied since it was loaded; all converge', async () => {
    const live = await fresh('orch_scr_live', source.name);
    await deleteTenants(live.url, victims);
    const restoreId = uniqueName('rerun').replace(/_/g, '-');

    const first = await start(restoreId, live.url, ['--keep-scratch']);
    expect(first.code, first.stderr).toBe(0);
    expect((await report(restoreId)).source.reused).toBe(false);
    expect(await scratchExists(restoreId)).toBe(true);
    const afterFirst = await tenantRows(live.url, victims);
    expect(afterFirst).toEqual(await tenantRows(source.url, victims));
    const {
      rows: [{ comment }],
    } = await scratchAdminQuery(
      `SELECT shobj_description(oid, 'pg_database') AS comment FROM pg_database WHERE datname = $1`,
      [scratchDatabaseName(restoreId)],
    );
    const marker = JSON.parse(comment as string) as Record<string, unknown>;
    expect(marker).toMatchObject({ tool: 'tenant-restore', restoreId, state: 'loaded', backup, unlogged: true });
    // Loaded UNLOGGED: every table, its indexes and its sequences (no WAL for the load); the marker counts each table's
    // rows, and the sentinel, set last, is set.
    const { rows: persistence } = await inScratch(
      scratchDatabaseName(restoreId),
      `SELECT c.relkind, c.relpersistence, count(*)::int AS n FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE n.nspname IN ('app', '${sentinelSchema}') GROUP BY 1, 2 ORDER BY 1, 2`,
    );
    expect(persistence.filter((r) => r.relkind === 'r').map((r) => r.relpersistence)).toEqual(['u']);
    expect(persistence.filter((r) => ['i', 'S'].includes(r.relkind as string)).map((r) => r.relpersistence)).toEqual([
      'u',
      'u',
    ]);
    const rows = marker.rows as Record<string, number>;
    expect(Object.keys(rows).sort()).toEqual([...tables, 'app.plans'].sort());
    expect(rows['app.tenants']).toBe(10);
    const { rows: sentinel } = await inScratch(
      scratchDatabaseName(restoreId),
      `SELECT last_value FROM pg_sequences WHERE schemaname = '${sentinelSchema}' AND sequencename = '${sentinelName}'`,
    );
    expect(sentinel).toEqual([{ last_value: '1' }]);

    // A restore id is used once, so a "rerun" is what an activity retry sees: this restore's scratch, already there.
    // Made here as a copy of the kept one, marked as the next restore's, as its own earlier attempt would have left it.
    const copyAs = async (id: string, state: 'loaded' | 'loading') => {
      await scratchAdminQuery(
        'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()',
        [scratchDatabaseName(restoreId)],
      );
      // Owned by the scratch role, as its own earlier attempt would have left it (it drops and marks its scratch).
      await scratchAdminQuery(
        `CREATE DATABASE ${scratchDatabaseName(id)} TEMPLATE ${scratchDatabaseName(restoreId)} OWNER ${scratchRole}`,
      );
      await scratchAdminQuery(
        `COMMENT ON DATABASE ${scratchDatabaseName(id)} IS '${JSON.stringify({ ...marker, restoreId: id, state })}'`,
      );
    };
    const loadedId = uniqueName('reuse').replace(/_/g, '-');
    await copyAs(loadedId, 'loaded');
    // Into a live of its own: in the first one these tenants are present again, which a restore refuses.
    const live2 = await fresh('orch_scr_live', source.name);
    await deleteTenants(live2.url, victims);
    const second = await start(loadedId, live2.url);
    expect(second.code, second.stderr).toBe(0);
    const secondReport = await report(loadedId);
    expect(secondReport.source.reused).toBe(true);
    expect(secondReport.totals.restored).toBe(5);
    expect(await tenantRows(live2.url, victims)).toEqual(afterFirst);
    expect(await scratchExists(loadedId)).toBe(false); // its own: dropped at the end

    // A load of this restore that never finished is marked 'loading': it is dropped and loaded again (then dropped).
    const loadingId = uniqueName('rebuild').replace(/_/g, '-');
    await copyAs(loadingId, 'loading');
    const live3 = await fresh('orch_scr_live', source.name);
    await deleteTenants(live3.url, victims);
    const third = await start(loadingId, live3.url);
    expect(third.code, third.stderr).toBe(0);
    expect((await report(loadingId)).source.reused).toBe(false);
    expect(await scratchExists(loadingId)).toBe(false);
    expect(await tenantRows(live3.url, victims)).toEqual(afterFirst);

    // Marked 'loaded', but emptied since: crash recovery empties unlogged tables and resets the sentinel with them.
    // Each half alone is enough to load it again: a table that held rows and has none (TRUNCATE stands in for the
    // reset), or the sentinel reset (ALTER SEQUENCE ... RESTART leaves it as crash recovery does: never called).
    for (const [prefix, emptying] of [
      ['emptied', 'TRUNCATE app.comments'],
      ['reset', `ALTER SEQUENCE ${sentinelSchema}.${sentinelName} RESTART`],
    ] as const) {
      const id = uniqueName(prefix).replace(/_/g, '-');
      await copyAs(id, 'loaded');
      await inScratch(scratchDatabaseName(id), emptying);
      const liveN = await fresh('orch_scr_live', source.name);
      await deleteTenants(liveN.url, victims);
      const run = await start(id, liveN.url);
      expect(run.code, run.stderr).toBe(0);
      expect((await report(id)).source.reused, prefix).toBe(false);
      expect(await tenantRows(liveN.url, victims)).toEqual(afterFirst);
      expect(await scratchExists(id)).toBe(false);
    }
    await scratchAdminQuery(`DROP DATABASE ${scratchDatabaseName(restoreId)} WITH (FORCE)`);
  });

  it('uses --scratch <url> as it is and never drops it', async () => {
    const live = await fresh('orch_scr_live', source.name);
    await deleteTenants(live.url, victims);
    const restoreId = uniqueName('given').replace(/_/g, '-');
    const run = await start(restoreId, live.url, [], ['--scratch', serverUrl(source.name)]);
    expect(run.code, run.stderr).toBe(0);
    expect(JSON.parse(run.stdout).status).toBe('succeeded');
    expect(await tenantRows(live.url, victims)).toEqual(await tenantRows(source.url, victims));
    expect((await adminQuery('SELECT 1 FROM pg_database WHERE datname = $1', [source.name])).rows).toHaveLength(1);
    const r = await report(restoreId);
    expect(r.source.scratch).toBe(serverUrl(source.name));
    expect(
      await client.workflow
        .getHandle(`restore/${restoreId}`)
        .describe()
        .then((d) => d.status.name),
    ).toBe('COMPLETED');
  });
});
