/**
 * Issue 23, item 8: a backup is code for its scratch role. A well-formed pg_dump custom archive runs its own SQL while
 * pg_restore loads it (here: a CHECK constraint that calls a function of the archive, which does ALTER ROLE
 * CURRENT_USER, the way it could set default_transaction_read_only or a password), and its manifest sits in the bucket
 * its writer can write. Against the real stack, through the real CLI and a worker process:
 * - by default the backup loads on the stack's separate scratch cluster as an unprivileged role: the archive's code
 *   runs there, and live's role and live are untouched;
 * - loading on live's server or as live's role is refused by the CLI (exit 2) and by the worker (a workflow started
 *   with @temporalio/client, through an alias only the worker resolves), unless each risk is accepted by its flag,
 *   and then the archive's code does reach live's role; a scratch role that reaches the host (a superuser) is refused;
 * - a manifest that is not signed, signed with another key, or signed for another archive is refused; a drill follows
 *   the same rule; a signed one is accepted (verifiedBy: signature).
 */
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { WorkflowFailedError } from '@temporalio/client';
import { execFileSync } from 'node:child_process';
import { createHash, generateKeyPairSync } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backupPublicKeys, judgeManifest, signManifest } from '../../activities/backup-trust';
import { createS3Client, getJson } from '../../activities/s3';
import { scratchDatabaseName } from '../../activities/scratch';
import { addPgpassEntry, ports } from '../../scripts/stack';
import { signedManifest } from '../../scripts/workload/backup';
import type { BulkRestoreInput } from '../../workflows/definitions';
import { dropRoles, newPassword } from '../helpers/audit';
import { logDir, productEnv, runCli, WorkerProcess } from '../helpers/product';
import {
  adminQuery,
  scratchAdminQuery,
  serverUrl,
  temporalClient,
  uniqueName,
  useFreshDatabases,
  useStackEnv,
  withClient,
} from '../helpers/stack';

const env = useStackEnv();
const { fresh } = useFreshDatabases();
const run = uniqueName('sbic');
const liveRole = `${run}_live`;
const scratchRole = `${run}_scratch`;
const passwords = { live: newPassword(), scratch: newPassword() };
const taskQueue = `tq_${run}`;
const bucket = env.STACK_S3_BUCKET;
const prefix = `test/${run}/`;

/**
 * The archive's payload: a CHECK on app.notes calls app.note_ok, which changes the settings of whoever loads the
 * archive (only in a scratch database: the source, where the rows were written by the stack's superuser, is spared).
 * The same statement could set default_transaction_read_only, or the role's password.
 */
const sourceSchema = `
CREATE SCHEMA app;
CREATE TABLE app.tenants (id bigint PRIMARY KEY, name text NOT NULL);
CREATE FUNCTION app.note_ok(body text) RETURNS boolean LANGUAGE plpgsql AS $fn$
BEGIN
  IF current_database() LIKE 'scratch%' THEN
    EXECUTE format('ALTER ROLE %I SET work_mem = %L', current_user, '1111kB');
  END IF;
  RETURN body IS NOT NULL;
END $fn$;
CREATE TABLE app.notes (
  id bigint PRIMARY KEY,
  tenant_id bigint NOT NULL REFERENCES app.tenants (id),
  body text CHECK (app.note_ok(body))
);
INSERT INTO app.tenants SELECT t, 'tenant ' || t FROM generate_series(1, 4) t;
INSERT INTO app.notes SELECT n, (n - 1) / 3 + 1, 'note ' || n FROM generate_series(1, 12) n;`;

/** Live's own schema: the same tables, without the archive's function (the backup's writer added it). */
const liveSchema = `
CREATE SCHEMA app;
CREATE TABLE app.tenants (id bigint PRIMARY KEY, name text NOT NULL);
CREATE TABLE app.notes (id bigint PRIMARY KEY, tenant_id bigint NOT NULL REFERENCES app.tenants (id), body text);
INSERT INTO app.tenants SELECT t, 'tenant ' || t FROM generate_series(3, 4) t;
INSERT INTO app.notes SELECT n, (n - 1) / 3 + 1, 'note ' || n FROM generate_series(7, 12) n;`;

/** The per-role settings (ALTER ROLE ... SET) of `role` on a cluster, sorted. */
async function roleSettings(query: typeof adminQuery, role: string): Promise<string[]> {
  const { rows } = await query(
    `SELECT coalesce(array_agg(c ORDER BY c), '{}') AS settings FROM pg_db_role_setting s
       JOIN pg_roles r ON r.oid = s.setrole, unnest(s.setconfig) c WHERE r.rolname = $1`,
    [role],
  );
  return rows[0].settings as string[];
}

async function notesOf(url: string, tenant: number): Promise<unknown[]> {
  return withClient(
    url,
    async (c) => (await c.query('SELECT * FROM app.notes WHERE tenant_id = $1 ORDER BY id', [tenant])).rows,
  );
}

async function databaseExists(query: typeof adminQuery, name: string): Promise<boolean> {
  return (await query('SELECT 1 FROM pg_database WHERE datname = $1', [name])).rows.length === 1;
}

describe('a backup is code for its scratch role (issue 23, item 8)', () => {
  let source: { name: string; url: string };
  let live: { name: string; url: string };
  let liveRef: string;
  let archive: Buffer;
  let productEnvironment: NodeJS.ProcessEnv;
  let worker: WorkerProcess;
  const s3 = createS3Client();

  const put = (key: string, body: Buffer | string) =>
    s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
  /** The archive at `<prefix><name>.dump`, with a manifest that `manifest` makes for its key (none: no manifest). */
  const upload = async (name: string, manifest?: (key: string) => object): Promise<string> => {
    const key = `${prefix}${name}.dump`;
    await put(key, archive);
    if (manifest) await put(`${key}.manifest.json`, JSON.stringify(manifest(key)));
    return `s3://${bucket}/${key}`;
  };
  const claims = () => ({
    sha256: createHash('sha256').update(archive).digest('hex'),
    size: archive.length,
    createdAt: new Date().toISOString(),
  });
  const start = (id: string, backup: string, extra: string[] = [], environment = productEnvironment) =>
    runCli(
      [
        'start',
        '--backup',
        backup,
        '--live',
        liveRef,
        '--tenant-root',
        'app.tenants',
        '--task-queue',
        taskQueue,
        '--id',
        id,
        '--wait',
        '--json',
        ...extra,
      ],
      environment,
    );

  beforeAll(async () => {
    // Live's role owns live (it may write it) and may create databases: what today's default, scratch on live's
    // server as live's role, needed. The scratch role is this test's own, on the stack's scratch cluster.
    await adminQuery(
      `CREATE ROLE ${pg.escapeIdentifier(liveRole)} LOGIN CREATEDB PASSWORD ${pg.escapeLiteral(passwords.live)}`,
    );
    await scratchAdminQuery(
      `CREATE ROLE ${pg.escapeIdentifier(scratchRole)} LOGIN CREATEDB PASSWORD ${pg.escapeLiteral(passwords.scratch)}`,
    );
    const pgpass = join(logDir(run), 'pgpass');
    writeFileSync(pgpass, '', { mode: 0o600 });
    const field = (v: string) => v.replace(/\\/g, '\\\\').replace(/:/g, '\\:');
    for (const line of readFileSync(env.PGPASSFILE, 'utf8').split('\n').filter(Boolean)) addPgpassEntry(pgpass, line);
    addPgpassEntry(pgpass, `127.0.0.1:${ports.postgres}:*:${field(liveRole)}:${field(passwords.live)}`);
    addPgpassEntry(pgpass, `127.0.0.1:${ports.pgScratch}:*:${field(scratchRole)}:${field(passwords.scratch)}`);

    source = await fresh('sbic_src');
    await withClient(source.url, (c) => c.query(sourceSchema));
    live = await fresh('sbic_live');
    await adminQuery(`ALTER DATABASE ${pg.escapeIdentifier(live.name)} OWNER TO ${pg.escapeIdentifier(liveRole)}`);
    const liveAsOwner = `postgres://${encodeURIComponent(liveRole)}:${encodeURIComponent(passwords.live)}@127.0.0.1:${ports.postgres}/${live.name}`;
    await withClient(liveAsOwner, (c) => c.query(liveSchema));
    liveRef = `postgres://${liveRole}@127.0.0.1:${ports.postgres}/${live.name}`;
    archive = execFileSync('pg_dump', ['-Fc', '-d', serverUrl(source.name)], { maxBuffer: 1 << 28 });

    productEnvironment = productEnv({
      PGPASSFILE: pgpass,
      // The default scratch server (TENANT_RESTORE_SCRATCH_SERVER=scratch, from the stack) as this test's role.
      TENANT_RESTORE_DB_SCRATCH: `postgres://${scratchRole}@127.0.0.1:${ports.pgScratch}/postgres`,
      // Live's server under another name, which only a worker resolves in the worker test below.
      TENANT_RESTORE_DB_SAMEASLIVE: `postgres://${liveRole}@127.0.0.1:${ports.postgres}/postgres`,
    });
    worker = new WorkerProcess({ taskQueue, env: productEnvironment, name: run });
    await worker.start();
  });

  afterAll(async () => {
    await worker?.stop();
    s3.destroy();
    for (const id of ['default', 'flags']) {
      const name = scratchDatabaseName(`${run}-${id}`.replace(/_/g, '-'));
      await adminQuery(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(name)} WITH (FORCE)`).catch(() => undefined);
      await scratchAdminQuery(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(name)} WITH (FORCE)`).catch(
        () => undefined,
      );
    }
    await scratchAdminQuery(`DROP ROLE IF EXISTS ${pg.escapeIdentifier(scratchRole)}`).catch(() => undefined);
  });

  const idOf = (what: string) => `${run}-${what}`.replace(/_/g, '-');

  it("by default loads the backup on the separate scratch server as its unprivileged role: the archive's code runs there, live's role and live stay untouched", async () => {
    const backup = await upload('signed', (key) => signedManifest(key, claims()));
    const id = idOf('default');
    const result = await start(id, backup, ['--tenants', '1']);
    expect(result.code, result.stdout + result.stderr).toBe(0);
    // The archive's function ran, on the scratch cluster, as the scratch role...
    expect(await roleSettings(scratchAdminQuery, scratchRole)).toEqual(['work_mem=1111kB']);
    // ...and nothing of live: its role has no setting, no scratch was made on its server, tenant 1 is back.
    expect(await roleSettings(adminQuery, liveRole)).toEqual([]);
    expect(await databaseExists(adminQuery, scratchDatabaseName(id))).toBe(false);
    expect(await notesOf(live.url, 1)).toEqual(await notesOf(source.url, 1));
    expect(await notesOf(live.url, 3)).toEqual(await notesOf(source.url, 3));
    const report = await getJson<{ source: { verifiedBy?: string } }>(s3, {
      bucket,
      key: `restores/${id}/report.json`,
    });
    expect(report.source.verifiedBy).toBe('signature');
  });

  it("refuses on the command line a scratch on live's server or as live's role, or none at all (exit 2, nothing started)", async () => {
    const backup = await upload('signed-2', (key) => signedManifest(key, claims()));
    const onLive = await start(idOf('cli-live'), backup, [
      '--tenants',
      '2',
      '--scratch-server',
      `postgres://${liveRole}@127.0.0.1:${ports.postgres}/postgres`,
    ]);
    expect(onLive.code, onLive.stdout + onLive.stderr).toBe(2);
    expect(onLive.stderr).toMatch(
      /refused: the backup would be loaded on live's server \(--scratch-server .* and --live are both localhost:\d+\) and as live's role '.*_live' \(the same user in both references\)\..*--unsafe-scratch-on-live-server --unsafe-scratch-as-live-role\. Nothing was started\./,
    );
    const none = await start(idOf('cli-none'), backup, ['--tenants', '2'], {
      ...productEnvironment,
      TENANT_RESTORE_SCRATCH_SERVER: '',
    });
    expect(none.code, none.stdout + none.stderr).toBe(2);
    expect(none.stderr).toMatch(/no --scratch-server was given, and TENANT_RESTORE_SCRATCH_SERVER is not set/);
    const { client, close } = await temporalClient();
    try {
      for (const id of [idOf('cli-live'), idOf('cli-none')])
        await expect(client.workflow.getHandle(`restore/${id}`).describe()).rejects.toThrow(/not found/i);
    } finally {
      await close();
    }
    expect(await roleSettings(adminQuery, liveRole)).toEqual([]);
  });

  it("refuses in the worker a workflow started without the CLI whose scratch server is live's under another name (non-retryable, nothing created)", async () => {
    const backup = await upload('signed-3', (key) => signedManifest(key, claims()));
    const id = idOf('worker-live');
    const input: BulkRestoreInput = {
      restoreId: id,
      source: { kind: 'backup', backup, scratchServer: 'sameaslive' },
      live: liveRef,
      tenantRoot: 'app.tenants',
      tenants: ['2'],
      conflict: 'skip',
      concurrency: 1,
      groupSize: 1,
      artifacts: { bucket, prefix: `restores/${id}/` },
    };
    const { client, close } = await temporalClient();
    let failure: unknown;
    try {
      await client.workflow.execute('bulkRestore', { workflowId: `restore/${id}`, taskQueue, args: [input] });
    } catch (error) {
      failure = error;
    } finally {
      await close();
    }
    expect(failure).toBeInstanceOf(WorkflowFailedError);
    const chain: string[] = [];
    for (
      let e = failure as { message?: string; type?: string; cause?: unknown } | undefined;
      e;
      e = e.cause as typeof e
    )
      chain.push(`${e.type ?? ''}: ${e.message ?? ''}`);
    const text = chain.join('\n');
    expect(text).toMatch(
      /failed: Scratch would be loaded on live's own PostgreSQL server: the scratch server sameaslive and live .* reach the same running server \(started [^)]*\), so the archive's code would run next to production\. Scratch would be loaded as live's role '.*_live'/,
    );
    expect(text).toMatch(
      /accept these risks, start again with --unsafe-scratch-on-live-server --unsafe-scratch-as-live-role\.$/,
    );
    expect(await databaseExists(adminQuery, scratchDatabaseName(id))).toBe(false);
    expect(await roleSettings(adminQuery, liveRole)).toEqual([]);
    expect(await notesOf(live.url, 2)).toEqual([]);
  });

  it("with both risk flags loads on live's server as live's role, and then the archive's code does reach live's role", async () => {
    const backup = await upload('signed-4', (key) => signedManifest(key, claims()));
    const result = await start(idOf('flags'), backup, [
      '--tenants',
      '2',
      '--scratch-server',
      `postgres://${liveRole}@127.0.0.1:${ports.postgres}/postgres`,
      '--unsafe-scratch-on-live-server',
      '--unsafe-scratch-as-live-role',
    ]);
    try {
      expect(result.code, result.stdout + result.stderr).toBe(0);
      expect(result.stderr).toMatch(/scratch database will be created on LIVE's server/);
      expect(await roleSettings(adminQuery, liveRole)).toEqual(['work_mem=1111kB']);
    } finally {
      await adminQuery(`ALTER ROLE ${pg.escapeIdentifier(liveRole)} RESET ALL`);
    }
  });

  it('refuses in the worker a scratch role that reaches the host (a superuser on the scratch cluster)', async () => {
    const backup = await upload('signed-5', (key) => signedManifest(key, claims()));
    const id = idOf('superuser');
    const before = await roleSettings(scratchAdminQuery, 'postgres');
    const result = await start(id, backup, [
      '--tenants',
      '4',
      '--scratch-server',
      `postgres://postgres@127.0.0.1:${ports.pgScratch}/postgres`,
    ]);
    expect(result.code, result.stdout + result.stderr).toBe(2);
    expect(result.stdout + result.stderr).toMatch(
      /The scratch role 'postgres' on .* is a superuser.*COPY \.\.\. TO PROGRAM.*--unsafe-scratch-as-superuser/,
    );
    expect(await databaseExists(scratchAdminQuery, scratchDatabaseName(id))).toBe(false);
    expect(await roleSettings(scratchAdminQuery, 'postgres')).toEqual(before);
  });

  it('refuses a manifest that is not signed, signed with another key, or signed for another archive; a drill follows the same rule', async () => {
    const attacker = generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    const cases: Array<[string, string, RegExp]> = [
      [
        'unsigned',
        await upload('unsigned', () => claims()),
        /BackupUnverified|cannot be verified: its manifest is not signed, and anyone who can write the bucket can write a manifest.*--allow-unverified-backup/,
      ],
      [
        'forged',
        await upload('forged', (key) => signManifest(key, claims(), attacker)),
        /cannot be verified: its manifest's signature does not verify with the workers' public key/,
      ],
      [
        'moved',
        // The genuine signed manifest of another archive, next to this one (same bytes, same sha256).
        await upload('moved', () => signedManifest(`${prefix}signed.dump`, claims())),
        /cannot be verified: its manifest's signature does not verify/,
      ],
    ];
    for (const [name, backup, message] of cases) {
      const id = idOf(name);
      const result = await start(id, backup, ['--tenants', '4']);
      expect(result.code, `${name}: ${result.stdout}${result.stderr}`).toBe(2);
      expect(result.stdout + result.stderr, name).toMatch(message);
      expect(await databaseExists(scratchAdminQuery, scratchDatabaseName(id)), name).toBe(false);
    }
    expect(await roleSettings(scratchAdminQuery, scratchRole)).toEqual(['work_mem=1111kB']); // from the first test only
    expect(await notesOf(live.url, 4)).toEqual(await notesOf(source.url, 4)); // tenant 4 was never deleted

    // The checks themselves: only the stack's key, over this key, vouches.
    const keys = backupPublicKeys({ TENANT_RESTORE_BACKUP_PUBLIC_KEY: env.TENANT_RESTORE_BACKUP_PUBLIC_KEY });
    const key = `${prefix}signed.dump`;
    expect(judgeManifest(key, signedManifest(key, claims()), keys).verified).toBe(true);
    expect(judgeManifest(key, { ...signedManifest(key, claims()), size: archive.length + 1 }, keys).verified).toBe(
      false,
    );
    expect(judgeManifest(key, signedManifest(key, claims()), []).verified).toBe(false);

    // A drill loads the newest archive under its prefix: an unsigned one fails the drill, nothing loaded.
    const drillPrefix = `${prefix}drill/`;
    await put(`${drillPrefix}nightly.dump`, archive);
    await put(`${drillPrefix}nightly.dump.manifest.json`, JSON.stringify(claims()));
    const drill = await runCli(
      [
        'drill',
        'run',
        '--backup-prefix',
        `s3://${bucket}/${drillPrefix}`,
        '--live',
        liveRef,
        '--tenant-root',
        'app.tenants',
        '--sample',
        '1',
        '--task-queue',
        taskQueue,
        '--id',
        idOf('drill'),
      ],
      productEnvironment,
    );
    expect(drill.code, drill.stdout + drill.stderr).toBe(1);
    expect(drill.stdout + drill.stderr).toMatch(/cannot be verified: its manifest is not signed/);
    // And a drill on live's server is refused before it starts.
    const drillOnLive = await runCli(
      [
        'drill',
        'run',
        '--backup-prefix',
        `s3://${bucket}/${drillPrefix}`,
        '--live',
        liveRef,
        '--tenant-root',
        'app.tenants',
        '--sample',
        '1',
        '--server',
        `postgres://${liveRole}@127.0.0.1:${ports.postgres}/postgres`,
        '--task-queue',
        taskQueue,
      ],
      productEnvironment,
    );
    expect(drillOnLive.code, drillOnLive.stdout + drillOnLive.stderr).toBe(2);
    expect(drillOnLive.stderr).toMatch(/on live's server .*--unsafe-scratch-on-live-server/);
    expect(await roleSettings(adminQuery, liveRole)).toEqual([]);
  });

  afterAll(async () => {
    // Live's database and tables go back to the stack's superuser (the file's databases are dropped, or kept for a
    // look, after this), so that the role can go.
    await adminQuery(`ALTER DATABASE ${pg.escapeIdentifier(live.name)} OWNER TO postgres`).catch(() => undefined);
    await withClient(live.url, (c) => c.query(`REASSIGN OWNED BY ${pg.escapeIdentifier(liveRole)} TO postgres`)).catch(
      () => undefined,
    );
    await dropRoles([liveRole]);
  });
});
