/**
 * Issue 11, items 3 and 4 (and 7, first bullet), against the real stack through the real CLI (and issue 25 step 3,
 * unlogged scratch, through the activity: the last describe):
 * - a scratch belongs to one restore: ids that sanitize alike get their own scratches, one restore's drop never touches
 *   the other's, and a database whose marker does not name the restore is never dropped (the restore is refused);
 * - a restore id is used once: `start` refuses an id that already ran (with the report command) or is running (with the
 *   status command), before anything runs;
 * - the backup is data, never code: a plain SQL file is refused (UnsupportedBackupFormat) and never run; a backup with
 *   no checksum is refused (BackupUnverified) unless the operator passes --allow-unverified-backup, drills included;
 * - `start` says loudly when scratch would be created on live's server, and the least-privilege live role (no
 *   CREATEDB) is stopped there at once with what to do, before anything is written.
 */
import { ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import type { Client } from '@temporalio/client';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createActivities } from '../../activities';
import { Pools } from '../../activities/db';
import type { RestoreReport } from '../../activities/report';
import { createS3Client, getJson } from '../../activities/s3';
import {
  createScratchActivities,
  parseScratchMarker,
  scratchDatabaseName,
  type PrepareScratchInput,
} from '../../activities/scratch';
import { assertScratchAlive, sentinelName, sentinelSchema } from '../../activities/scratch-alive';
import { ScratchResetError } from '../../activities/errors';
import type { ScratchInfo } from '../../activities/restore-types';
import { MockActivityEnvironment } from '@temporalio/testing';
import { drillInputFromFlags, runDrill } from '../../cli/client/drill';
import { bulkWorkflowId } from '../../workflows/definitions';
import {
  adminQuery,
  dropDatabase,
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
  tenantRows,
  uploadBackup,
} from '../fixtures/orchestration/fixture';
import { failedActivities } from '../helpers/history';
import { productEnv, runCli, type CliResult } from '../helpers/product';
import { signedManifest } from '../../scripts/workload/backup';
import { applyGrants, dropRoles, newPassword, roleUrlWithPassword } from '../helpers/audit';

const env = useStackEnv();
const { fresh } = useFreshDatabases();

describe('safety: scratch ownership, restore ids, backup formats', () => {
  const pools = new Pools();
  const s3 = createS3Client();
  const taskQueue = uniqueName('tq_safety_scratch');
  const victims = range(1, 3);
  const leftovers: string[] = [];
  let source: { name: string; url: string };
  let backup: string;
  let worker: Awaited<ReturnType<typeof startWorker>>;
  let client: Client;
  let closeClient: () => Promise<void>;

  beforeAll(async () => {
    source = await fresh('safe_scr_src');
    await generate(source.url, [{ first: 1, count: 6, shape: smallTenant }]);
    ({ backup } = await uploadBackup(source.url, env.STACK_S3_BUCKET, `test/${uniqueName('safe')}/backup.dump`));
    worker = await startWorker({ taskQueue, activities: createActivities({ pools, s3 }) });
    ({ client, close: closeClient } = await temporalClient());
  });

  afterAll(async () => {
    for (const name of leftovers) await dropDatabase(name);
    await closeClient?.();
    await worker?.stop();
    await pools.closeAll();
    s3.destroy();
  });

  const newId = (prefix: string) => uniqueName(prefix).replace(/_/g, '-');
  const report = (restoreId: string) =>
    getJson<RestoreReport>(s3, { bucket: env.STACK_S3_BUCKET, key: `test-safety/${restoreId}/report.json` });
  const start = (
    restoreId: string,
    live: string,
    extra: string[] = [],
    from = ['--backup', backup],
    queue = taskQueue,
  ): Promise<CliResult> =>
    runCli([
      'start',
      ...from,
      // This file is about scratch on live's server (ownership, markers, live's role without CREATEDB): it puts scratch
      // there on purpose, which takes every risk flag (issue 23, item 8; the default is the stack's scratch cluster).
      ...(from[0] === '--backup' ? onLiveServer : []),
      '--live',
      live,
      '--tenant-root',
      'app.tenants',
      '--tenants',
      victims.join(','),
      '--id',
      restoreId,
      '--task-queue',
      queue,
      '--artifacts',
      `s3://${env.STACK_S3_BUCKET}/test-safety/`,
      ...extra,
    ]);
  const onLiveServer = [
    '--scratch-server',
    serverUrl('postgres'),
    '--unsafe-scratch-on-live-server',
    '--unsafe-scratch-as-live-role',
    '--unsafe-scratch-as-superuser',
  ];
  const database = async (name: string) => {
    const { rows } = await adminQuery(
      `SELECT shobj_description(oid, 'pg_database') AS comment FROM pg_database WHERE datname = $1`,
      [name],
    );
    return rows.length ? { comment: rows[0].comment as string | null } : undefined;
  };
  const victimLive = async () => {
    const live = await fresh('safe_scr_live', source.name);
    await deleteTenants(live.url, victims);
    return live;
  };
  /** The types of the activity failures in a restore's history (the workflow's own failure wraps them). */
  const activityFailureTypes = async (restoreId: string): Promise<string[]> =>
    (await failedActivities(client, [bulkWorkflowId(restoreId)])).flatMap((f) => (f.type ? [f.type] : []));
  const uploadRaw = async (key: string, body: Buffer | string, manifest: boolean) => {
    await s3.send(new PutObjectCommand({ Bucket: env.STACK_S3_BUCKET, Key: key, Body: body }));
    if (manifest) {
      const bytes = Buffer.from(body);
      await s3.send(
        new PutObjectCommand({
          Bucket: env.STACK_S3_BUCKET,
          Key: `${key}.manifest.json`,
          // Signed by the stack's backup job key: what the checks below stop is the content, not the signature.
          Body: JSON.stringify(
            signedManifest(key, { sha256: createHash('sha256').update(bytes).digest('hex'), size: bytes.length }),
          ),
        }),
      );
    }
    return `s3://${env.STACK_S3_BUCKET}/${key}`;
  };

  it("gives two restore ids that used to collide their own scratches, and one restore's drop never touches the other's", async () => {
    const suffix = uniqueName('c').replace(/_/g, '');
    // Before: both were scratch_collide_<suffix>; the second restore reused the first one's scratch and dropped it.
    const first = `Collide-${suffix}`;
    const second = `collide.${suffix}`;
    expect(scratchDatabaseName(first)).not.toBe(scratchDatabaseName(second));
    leftovers.push(scratchDatabaseName(first), scratchDatabaseName(second));

    const liveA = await victimLive();
    const a = await start(first, liveA.url, ['--keep-scratch', '--wait', '--json']);
    expect(a.code, a.stdout + a.stderr).toBe(0);
    const markerA = parseScratchMarker((await database(scratchDatabaseName(first)))?.comment);
    expect(markerA).toMatchObject({ restoreId: first, state: 'loaded', backup });
    expect(markerA?.sha256).toMatch(/^[0-9a-f]{64}$/);

    const liveB = await victimLive();
    const b = await start(second, liveB.url, ['--wait', '--json']);
    expect(b.code, b.stdout + b.stderr).toBe(0);
    expect((await report(second)).source.reused).toBe(false); // loaded its own, did not take the other's
    expect(await tenantRows(liveB.url, victims)).toEqual(await tenantRows(source.url, victims));
    // The second restore dropped its own scratch at the end, and only that: the first one's is there, marker unchanged.
    expect(await database(scratchDatabaseName(second))).toBeUndefined();
    expect(parseScratchMarker((await database(scratchDatabaseName(first)))?.comment)).toEqual(markerA);
  });

  it("never drops a database whose marker does not name the restore: another restore's scratch, or a database that is not ours", async () => {
    for (const [label, comment] of [
      [
        "another restore's scratch",
        JSON.stringify({ tool: 'tenant-restore', restoreId: 'someone-else', state: 'loading', backup }),
      ],
      ['a database without a marker', null],
    ] as const) {
      const restoreId = newId('foreign');
      const name = scratchDatabaseName(restoreId);
      leftovers.push(name);
      await adminQuery(`CREATE DATABASE ${pg.escapeIdentifier(name)}`);
      await withClient(serverUrl(name), (c) =>
        c.query(`CREATE TABLE keep_me (id int); INSERT INTO keep_me VALUES (42)`),
      );
      await adminQuery(
        `COMMENT ON DATABASE ${pg.escapeIdentifier(name)} IS ${comment === null ? 'NULL' : pg.escapeLiteral(comment)}`,
      );

      const live = await victimLive();
      const run = await start(restoreId, live.url, ['--wait', '--json']);
      expect(run.code, `${label}: ${run.stdout}${run.stderr}`).toBe(2); // failed before any tenant started
      const out = JSON.parse(run.stdout) as { status: string; error?: string };
      expect(out.status).toBe('failed');
      expect(out.error).toMatch(new RegExp(`Database ${name} .*already exists.*it was not touched.*DROP DATABASE`));
      if (comment) expect(out.error).toMatch(/the scratch of restore 'someone-else'/);
      expect(await activityFailureTypes(restoreId)).toContain('ScratchNotOwned');
      // Still there, with its table and its comment.
      expect((await withClient(serverUrl(name), (c) => c.query('SELECT id FROM keep_me'))).rows).toEqual([{ id: 42 }]);
      expect((await database(name))?.comment ?? null).toBe(comment);
      expect((await tenantRows(live.url, victims))['app.tenants'].count).toBe(0);
    }
  });

  it('start refuses a restore id that already ran (report command) or is running (status command), before anything runs', async () => {
    const live = await victimLive();
    const done = newId('once');
    const first = await start(done, live.url, ['--wait', '--json'], ['--scratch', serverUrl(source.name)]);
    expect(first.code, first.stdout + first.stderr).toBe(0);
    const handle = client.workflow.getHandle(bulkWorkflowId(done));
    const runBefore = (await handle.describe()).runId;
    const listArtifacts = async (id: string) =>
      (
        await s3.send(new ListObjectsV2Command({ Bucket: env.STACK_S3_BUCKET, Prefix: `test-safety/${id}/` }))
      ).Contents?.map((o) => `${o.Key}@${o.LastModified?.toISOString()}`).sort();
    const artifactsBefore = await listArtifacts(done);

    const again = await start(done, live.url, ['--wait', '--json'], ['--scratch', serverUrl(source.name)]);
    expect(again.code, again.stdout + again.stderr).toBe(2);
    expect(again.stderr).toMatch(
      new RegExp(`restore ${done} already ran \\(completed\\).*tenant-restore report ${done}`),
    );
    // Nothing ran: the same single run, the same artifacts.
    expect((await handle.describe()).runId).toBe(runBefore);
    expect(await listArtifacts(done)).toEqual(artifactsBefore);

    // A restore that is still running (its task queue has no worker, so it waits forever) is pointed to `status`.
    const idle = uniqueName('tq_nobody');
    const running = newId('running');
    const started = await start(running, live.url, ['--json'], ['--scratch', serverUrl(source.name)], idle);
    expect(started.code, started.stdout + started.stderr).toBe(0);
    try {
      const twice = await start(running, live.url, ['--json'], ['--scratch', serverUrl(source.name)], idle);
      expect(twice.code, twice.stdout + twice.stderr).toBe(2);
      expect(twice.stderr).toMatch(
        new RegExp(`restore ${running} is already running.*tenant-restore status ${running}`),
      );
    } finally {
      await client.workflow.getHandle(bulkWorkflowId(running)).terminate('test over');
    }
    // Terminated is finished too: refused with the report command.
    const after = await start(running, live.url, ['--json'], ['--scratch', serverUrl(source.name)], idle);
    expect(after.code).toBe(2);
    expect(after.stderr).toMatch(
      new RegExp(`restore ${running} already ran \\(terminated\\).*tenant-restore report ${running}`),
    );
  });

  it("refuses a plain SQL backup (UnsupportedBackupFormat) and never runs it; start warns that scratch is on live's server", async () => {
    const marker = uniqueName('pwned');
    const sql = `-- a "backup" that is really a script\nCREATE TABLE public.${marker} (id int);\nINSERT INTO public.${marker} VALUES (1);\n`;
    // With a manifest that matches it: the checksum is not what stops it, its format is.
    const sqlBackup = await uploadRaw(`test/${uniqueName('safe')}/plain.sql`, sql, true);
    const live = await victimLive();
    const restoreId = newId('plainsql');
    leftovers.push(scratchDatabaseName(restoreId));
    const run = await start(restoreId, live.url, ['--wait', '--json'], ['--backup', sqlBackup]);
    expect(run.code, run.stdout + run.stderr).toBe(2);
    const out = JSON.parse(run.stdout) as { status: string; error?: string; warnings?: string[] };
    expect(out.error).toMatch(
      /plain\.sql is text \(a plain SQL dump.*not a pg_dump custom-format archive: it was not loaded, and nothing in it was run/,
    );
    expect(await activityFailureTypes(restoreId)).toContain('UnsupportedBackupFormat');
    // No --scratch-server: scratch would have gone to live's server, said in the JSON and loudly on stderr.
    expect(out.warnings?.join('\n')).toMatch(/scratch database will be created on LIVE's server.*--scratch-server/);
    expect(run.stderr).toMatch(/\*\*\* WARNING: the scratch database will be created on LIVE's server/);

    // The marker table exists in no database of the server, and no scratch was even created.
    expect(await database(scratchDatabaseName(restoreId))).toBeUndefined();
    const { rows } = await adminQuery('SELECT datname FROM pg_database WHERE datallowconn');
    let looked = 0;
    for (const { datname } of rows as Array<{ datname: string }>) {
      const found = await withClient(serverUrl(datname), (c) =>
        c.query(`SELECT to_regclass($1) AS t`, [`public.${marker}`]),
      ).then(
        (r) => r.rows[0].t as string | null,
        (error: { code?: string }) => {
          if (error.code === '3D000' || error.code === '57P01') return null; // dropped meanwhile by another test
          throw error;
        },
      );
      expect(found, datname).toBeNull();
      looked++;
    }
    expect(looked).toBeGreaterThan(1);
  });

  it('refuses a backup with no checksum (BackupUnverified) unless --allow-unverified-backup, and reports how it was verified', async () => {
    const archive = execFileSync('pg_dump', ['-Fc', '-d', source.url], { env: process.env, maxBuffer: 1 << 30 });
    const bare = await uploadRaw(`test/${uniqueName('safe')}/no-manifest.dump`, archive, false);
    const live = await victimLive();
    const refusedId = newId('unverified');
    const refused = await start(refusedId, live.url, ['--wait', '--json'], ['--backup', bare]);
    expect(refused.code, refused.stdout + refused.stderr).toBe(2);
    expect((JSON.parse(refused.stdout) as { error?: string }).error).toMatch(
      /no-manifest\.dump cannot be verified.*--allow-unverified-backup/,
    );
    expect(await activityFailureTypes(refusedId)).toContain('BackupUnverified');
    expect(await database(scratchDatabaseName(refusedId))).toBeUndefined();
    expect((await tenantRows(live.url, victims))['app.tenants'].count).toBe(0);

    const allowedId = newId('allowed');
    leftovers.push(scratchDatabaseName(allowedId));
    const allowed = await start(
      allowedId,
      live.url,
      ['--wait', '--json', '--allow-unverified-backup'],
      ['--backup', bare],
    );
    expect(allowed.code, allowed.stdout + allowed.stderr).toBe(0);
    const r = await report(allowedId);
    expect(r.source.verifiedBy).toBe('size-only');
    expect(r.source.sha256).toBe(createHash('sha256').update(archive).digest('hex'));
    expect(await tenantRows(live.url, victims)).toEqual(await tenantRows(source.url, victims));
  });

  it('with the least-privilege live role (no CREATEDB) and no --scratch-server: warned, then stopped before anything is written', async () => {
    const live = await victimLive();
    const role = uniqueName('safe_live_role');
    const password = newPassword();
    expect((await applyGrants(live.name, role, password)).code).toBe(0);
    // An alias resolved by the worker from its environment: the password never reaches the CLI or the workflow.
    const alias = `safelive${Date.now().toString(36)}`;
    process.env[`TENANT_RESTORE_DB_${alias.toUpperCase()}`] = roleUrlWithPassword(role, password, live.name);
    try {
      const restoreId = newId('nocreatedb');
      // Scratch on live's server as live's role, accepted: no scratch server configured, both flags.
      const run = await runCli(
        [
          'start',
          '--backup',
          backup,
          '--live',
          alias,
          '--tenant-root',
          'app.tenants',
          '--tenants',
          victims.join(','),
          '--id',
          restoreId,
          '--task-queue',
          taskQueue,
          '--artifacts',
          `s3://${env.STACK_S3_BUCKET}/test-safety/`,
          '--unsafe-scratch-on-live-server',
          '--unsafe-scratch-as-live-role',
          '--wait',
          '--json',
        ],
        productEnv({ TENANT_RESTORE_SCRATCH_SERVER: '' }),
      );
      expect(run.code, run.stdout + run.stderr).toBe(2);
      const out = JSON.parse(run.stdout) as { error?: string; warnings?: string[] };
      expect(out.warnings?.join('\n')).toMatch(/LIVE's server \(no --scratch-server was given\)/);
      expect(out.error).toMatch(/may not create databases.*--scratch-server postgres:\/\/<scratch role>/);
      expect(await activityFailureTypes(restoreId)).toContain('ScratchServerNotAllowed');
      expect(out.error).not.toContain(password);
      expect(await database(scratchDatabaseName(restoreId))).toBeUndefined();
      expect((await tenantRows(live.url, victims))['app.tenants'].count).toBe(0);
    } finally {
      delete process.env[`TENANT_RESTORE_DB_${alias.toUpperCase()}`];
      await dropDatabase(live.name);
      await dropRoles([role]);
    }
  });

  it('a drill refuses an unverified backup too, unless it was made with --allow-unverified-backup', async () => {
    const prefix = `test/${uniqueName('safedrill')}/`;
    const archive = execFileSync('pg_dump', ['-Fc', '-d', source.url], { env: process.env, maxBuffer: 1 << 30 });
    await uploadRaw(`${prefix}only.dump`, archive, false);
    const flags = {
      'backup-prefix': `s3://${env.STACK_S3_BUCKET}/${prefix}`,
      live: source.url,
      'tenant-root': 'app.tenants',
      sample: '2',
    };

    const refused = await runDrill(client, drillInputFromFlags({ ...flags, id: newId('dr') }, true), {
      taskQueue,
      wait: true,
    });
    expect(refused.failed).toBe(true);
    expect(refused.record?.error).toMatch(/cannot be verified.*--allow-unverified-backup/);
    expect(refused.record?.restored).toBe(0);

    const input = drillInputFromFlags({ ...flags, id: newId('dr'), 'allow-unverified-backup': true }, true);
    expect(input.allowUnverifiedBackup).toBe(true);
    const allowed = await runDrill(client, input, { taskQueue, wait: true });
    expect(allowed.error).toBeUndefined();
    expect(allowed.record?.status).toBe('passed');
    expect(allowed.record?.restored).toBe(2);
  });
});

/**
 * Issue 25 step 3: scratch is loaded UNLOGGED, and an emptied scratch is never read as the backup. Through the activity
 * itself, on the stack's scratch server as its unprivileged role: partitions are made unlogged, what an FK of a
 * partitioned table references stays logged (PostgreSQL refuses that FK otherwise), a publication does not stop the
 * load; the sentinel is set last; a step that reads a reset scratch gets ScratchResetError; a reset or emptied scratch
 * is loaded again by the next prepareScratch, never reused.
 */
describe('safety: unlogged scratch and its sentinel', () => {
  const pools = new Pools();
  const s3 = createS3Client();
  const scratch = createScratchActivities({ pools, s3 });
  const prepare = (input: PrepareScratchInput): Promise<ScratchInfo> =>
    new MockActivityEnvironment().run(scratch.prepareScratch, input);
  const scratchServer = env.TENANT_RESTORE_SCRATCH_SERVER;
  let source: { name: string; url: string };

  afterAll(async () => {
    await pools.closeAll();
    s3.destroy();
  });

  /** A query in one database of the scratch cluster, as its superuser. */
  const inScratch = (database: string, sql: string) => {
    const url = new URL(env.STACK_PG_SCRATCH_URL);
    url.pathname = `/${database}`;
    return withClient(url.toString(), (c) => c.query(sql));
  };
  /** assertScratchAlive as a step calls it: first thing in its snapshot session, as the role that reads scratch. */
  const alive = async (ref: string): Promise<string> => {
    const client = await pools.get(ref).connect();
    try {
      await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
      await assertScratchAlive(client);
      return 'alive';
    } catch (error) {
      if (error instanceof ScratchResetError) return error.name;
      throw error;
    } finally {
      await client.query('ROLLBACK');
      client.release();
    }
  };

  beforeAll(async () => {
    source = await fresh('safe_scr_unlogged');
    await withClient(source.url, (c) =>
      c.query(`
        CREATE SCHEMA app;
        CREATE TABLE app.plans (id int PRIMARY KEY, name text NOT NULL);
        CREATE TABLE app.tenants (id bigint PRIMARY KEY, plan_id int NOT NULL REFERENCES app.plans (id));
        CREATE TABLE app.users (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
                                tenant_id bigint NOT NULL REFERENCES app.tenants (id));
        CREATE TABLE app.events (id bigint NOT NULL, tenant_id bigint NOT NULL REFERENCES app.tenants (id), body text,
                                 PRIMARY KEY (tenant_id, id)) PARTITION BY HASH (tenant_id);
        CREATE TABLE app.events_0 PARTITION OF app.events FOR VALUES WITH (MODULUS 2, REMAINDER 0);
        CREATE TABLE app.events_1 PARTITION OF app.events FOR VALUES WITH (MODULUS 2, REMAINDER 1);
        CREATE TABLE app.comments (id bigserial PRIMARY KEY, tenant_id bigint NOT NULL, event_id bigint NOT NULL,
                                   author_id bigint REFERENCES app.users (id),
                                   FOREIGN KEY (tenant_id, event_id) REFERENCES app.events (tenant_id, id));
        CREATE PUBLICATION ${source.name}_pub FOR TABLE app.users;
        INSERT INTO app.plans VALUES (1, 'free'), (2, 'pro');
        INSERT INTO app.tenants SELECT g, 1 + g % 2 FROM generate_series(1, 4) g;
        INSERT INTO app.users (tenant_id) SELECT 1 + g % 4 FROM generate_series(1, 20) g;
        INSERT INTO app.events SELECT g, 1 + g % 4, repeat('x', 50) FROM generate_series(1, 400) g;
        INSERT INTO app.comments (tenant_id, event_id, author_id)
          SELECT 1 + g % 4, g, 1 + g % 20 FROM generate_series(1, 400) g;
        ANALYZE;`),
    );
  });

  it('loads partitions unlogged, keeps logged what a partitioned FK references, and is rebuilt once reset or emptied', async () => {
    const restoreId = uniqueName('unlogged').replace(/_/g, '-');
    const { backup } = await uploadBackup(source.url, env.STACK_S3_BUCKET, `test/${restoreId}/backup.dump`);
    const input: PrepareScratchInput = { kind: 'restore', restoreId, backup, server: scratchServer, live: source.url };
    const name = scratchDatabaseName(restoreId);
    const first = await prepare(input);
    expect(first.reused).toBe(false);
    try {
      const { rows: persistence } = await inScratch(
        name,
        `SELECT c.relname AS name, c.relkind AS kind, c.relpersistence AS p FROM pg_class c
         JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'app' AND c.relkind IN ('r', 'p') ORDER BY 1`,
      );
      expect(Object.fromEntries(persistence.map((r) => [r.name, `${r.kind}${r.p}`]))).toEqual({
        comments: 'ru',
        users: 'ru',
        events_0: 'ru',
        events_1: 'ru',
        // Partitioned: no storage, and PostgreSQL 15 cannot make it unlogged. Its FK references tenants, so tenants
        // stays permanent, and with it plans, which tenants references.
        events: 'pp',
        tenants: 'rp',
        plans: 'rp',
      });
      // Every FK is there (NOT VALID where PostgreSQL allows it), the publication is not.
      const fks = `SELECT count(*)::int AS n FROM pg_constraint WHERE contype = 'f'`;
      expect((await inScratch(name, fks)).rows).toEqual((await withClient(source.url, (c) => c.query(fks))).rows);
      expect((await inScratch(name, 'SELECT count(*)::int AS n FROM pg_publication')).rows).toEqual([{ n: 0 }]);
      const marker = parseScratchMarker(
        (
          await scratchAdminQuery(
            `SELECT shobj_description(oid, 'pg_database') AS comment FROM pg_database WHERE datname = $1`,
            [name],
          )
        ).rows[0]?.comment as string,
      );
      expect(marker).toMatchObject({ state: 'loaded', unlogged: true });
      expect(marker?.rows).toMatchObject({ 'app.tenants': 4, 'app.users': 20, 'app.comments': 400, 'app.plans': 2 });
      expect((marker?.rows?.['app.events_0'] ?? 0) + (marker?.rows?.['app.events_1'] ?? 0)).toBe(400);
      expect(marker?.rows).not.toHaveProperty('app.events');

      // Alive, and reused while it is; a database without a sentinel (a --scratch <url>) is never taken for reset.
      expect(await alive(first.ref)).toBe('alive');
      expect(await alive(source.url)).toBe('alive');
      expect((await prepare(input)).reused).toBe(true);

      // Crash recovery resets the sentinel with the tables (RESTART leaves it as crash recovery does: never called).
      await inScratch(name, `ALTER SEQUENCE ${sentinelSchema}.${sentinelName} RESTART`);
      expect(await alive(first.ref)).toBe('ScratchResetError');
      const rebuilt = await prepare(input);
      expect(rebuilt.reused).toBe(false);
      expect(await alive(rebuilt.ref)).toBe('alive');
      expect((await inScratch(name, 'SELECT count(*)::int AS n FROM app.comments')).rows).toEqual([{ n: 400 }]);

      // A table that held rows and holds none (TRUNCATE stands in for crash recovery): loaded again too.
      await inScratch(name, 'TRUNCATE app.comments');
      expect((await prepare(input)).reused).toBe(false);
      expect((await inScratch(name, 'SELECT count(*)::int AS n FROM app.comments')).rows).toEqual([{ n: 400 }]);
      expect((await prepare(input)).reused).toBe(true);
    } finally {
      expect(
        (await scratch.dropScratch({ kind: 'restore', restoreId, scratch: { ...first, owned: true } })).dropped,
      ).toBe(true);
    }
  });
});
