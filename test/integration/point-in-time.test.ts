/**
 * Point in time (issue 16): `start --backup pgbackrest:<stanza>/<db> --at <moment>` recovers the stack's own cluster
 * from its pgBackRest WAL archive (in the stack's TLS MinIO) to the moment before the deletion, on a worker's host,
 * and restores the victims from it: with the rows they were written after the last base backup, which a restore from
 * that backup alone would lose. Everything is real: pgBackRest, PostgreSQL's recovery, worker processes of the CLI.
 *
 * Also: the refusals (a moment before the oldest backup, after the end of the archive), and a worker SIGKILLed in the
 * middle of the recovery: the restore recovers scratch again on another host and completes.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BulkRestoreResult } from '../../workflows/definitions';
import { archiveWalNow, clockMicrosSql, pgbackrest } from '../../scripts/stack';
import { parseRecoveryTarget, scratchPaths } from '../../activities/point-in-time';
import { deleteTenants, generate, range, smallTenant, tenantRows, withClient } from '../fixtures/orchestration/fixture';
import { productEnv, runCli, startWorkerProcess, type WorkerProcess } from '../helpers/product';
import { uniqueName, useFreshDatabases, useStackEnv } from '../helpers/stack';

const env = useStackEnv();
const { fresh } = useFreshDatabases();
const stanza = env.STACK_PGBACKREST_STANZA;
const scratchDir = join(env.PGPASSFILE, '..', 'pitr-scratch');
const tablespace = uniqueName('pitr_ts');
const tablespaceDir = join(env.PGPASSFILE, '..', 'tablespaces', tablespace);
const subscription = uniqueName('pitr_sub');
const artifacts = `s3://${env.STACK_S3_BUCKET}/test-pitr/`;

/** The newest commit is archived: a switch to a new WAL segment, then wait until the archiver has pushed it. */
async function archiveNow(url: string): Promise<void> {
  await withClient(url, (c) => archiveWalNow(async (sql) => (await c.query(sql)).rows));
}

/** The database's clock, to the microsecond: the moment the operator would read from the incident's log. */
async function now(url: string): Promise<string> {
  return withClient(url, async (c) => (await c.query<{ t: string }>(clockMicrosSql)).rows[0].t);
}

/** A few rows for each victim, written after the base backup: what only the WAL archive holds. */
async function writeAfterBackup(url: string, victims: number[]): Promise<number> {
  return withClient(url, async (c) => {
    const r = await c.query(
      `INSERT INTO app.issues (project_id, title)
       SELECT p.id, 'written after the backup ' || g FROM app.projects p, generate_series(1, 3) g
       WHERE p.tenant_id = ANY($1::bigint[])`,
      [victims],
    );
    return r.rowCount ?? 0;
  });
}

function startArgs(db: string, liveUrl: string, at: string, tenants: number[], id: string, taskQueue: string) {
  return [
    'start',
    '--backup',
    `pgbackrest:${stanza}/${db}`,
    '--at',
    at,
    '--live',
    liveUrl,
    '--tenant-root',
    'app.tenants',
    '--tenants',
    tenants.join(','),
    '--id',
    id,
    '--task-queue',
    taskQueue,
    '--artifacts',
    artifacts,
  ];
}

describe('point-in-time restore from the WAL archive', () => {
  const workers: WorkerProcess[] = [];
  const victims = range(1, 4);
  let live: { name: string; url: string };
  let at: string;
  let beforeDeletion: Awaited<ReturnType<typeof tenantRows>>;
  let writtenAfterBackup = 0;

  beforeAll(async () => {
    live = await fresh('pitr_live');
    await generate(live.url, [{ first: 1, count: 10, shape: smallTenant }]);
    // Production's own setup that a recovered copy must not act on (hardening, item 3): the victims' comments in a
    // tablespace at a path of the source host, and an enabled logical replication subscription in live's database.
    mkdirSync(tablespaceDir, { recursive: true });
    spawnSync('chown', ['postgres', tablespaceDir]);
    await withClient(live.url, async (c) => {
      await c.query(`CREATE TABLESPACE ${tablespace} LOCATION '${tablespaceDir}'`);
      await c.query(`ALTER TABLE app.comments SET TABLESPACE ${tablespace}`);
      // connect = false: no slot is made on a publisher; enabled, its apply worker would start wherever it runs.
      await c.query(
        `CREATE SUBSCRIPTION ${subscription} CONNECTION 'host=/nonexistent dbname=none' PUBLICATION p WITH (connect = false)`,
      );
      await c.query(`ALTER SUBSCRIPTION ${subscription} ENABLE`);
    });
    // Another database of the cluster, written after the backup: the recovery restores only live's files, so the WAL
    // of this one replays onto zeroed pages (with the stack's full_page_writes=off, no page image comes with it).
    const other = await fresh('pitr_other');
    await withClient(other.url, (c) =>
      c.query(
        'CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 20000) g',
      ),
    );
    // The base backup (incremental on the stack's), then the victims' writes that only the WAL archive holds.
    const backup = pgbackrest([`--stanza=${stanza}`, 'backup', '--type=incr']);
    if (backup.status !== 0) throw new Error(`pgbackrest backup failed: ${backup.output}`);
    // pgBackRest records a backup's end to the second, and picks for a moment the newest backup ended before it.
    await new Promise((r) => setTimeout(r, 1500));
    await withClient(other.url, async (c) => {
      await c.query(`UPDATE t SET v = v || 'x' WHERE id % 7 = 0`);
      await c.query('VACUUM t');
    });
    writtenAfterBackup = await writeAfterBackup(live.url, victims);
    beforeDeletion = await tenantRows(live.url, victims);
    await new Promise((r) => setTimeout(r, 200));
    at = await now(live.url);
    await new Promise((r) => setTimeout(r, 200));
    await deleteTenants(live.url, victims);
    // A commit after the moment, archived: recovery stops at the first commit after its target.
    await withClient(live.url, (c) => c.query(`UPDATE app.tenants SET name = name || '.' WHERE id = 10`));
    await archiveNow(live.url);
  }, 300_000);

  afterAll(async () => {
    for (const w of workers) await w.stop();
    // A database with a subscription cannot be dropped; the tablespace must be empty to be dropped.
    await withClient(live.url, async (c) => {
      await c.query(`ALTER SUBSCRIPTION ${subscription} DISABLE`);
      await c.query(`ALTER SUBSCRIPTION ${subscription} SET (slot_name = NONE)`);
      await c.query(`DROP SUBSCRIPTION ${subscription}`);
      await c.query('ALTER TABLE app.comments SET TABLESPACE pg_default');
    }).catch(() => undefined);
    await withClient(live.url.replace(/\/[^/?]+(\?|$)/, '/postgres$1'), (c) =>
      c.query(`DROP TABLESPACE IF EXISTS ${tablespace}`),
    ).catch(() => undefined);
  });

  it('recovers an inert copy: no subscription worker, tablespaces under the scratch directory and removed with it', async () => {
    const taskQueue = uniqueName('tq_pitr_inert');
    const hostId = uniqueName('host-i');
    const worker = await startWorkerProcess({
      taskQueue,
      env: productEnv({ TENANT_RESTORE_HOST_ID: hostId, TENANT_RESTORE_SCRATCH_DIR: scratchDir }),
    });
    workers.push(worker);
    const before = readdirSync(tablespaceDir, { recursive: true, encoding: 'utf8' }).sort();
    const id = uniqueName('pitr-inert').replace(/_/g, '-');
    // Tenant 9 is not a victim: its absence is not needed for what this test reads (the recovered copy itself).
    const run = await runCli([
      ...startArgs(live.name, live.url, at, [9], id, taskQueue),
      '--keep-scratch',
      '--wait',
      '--json',
    ]);
    // Tenant 9 is present in live, so it is refused (exit 1); the scratch was recovered, checked and kept all the same.
    expect(run.stdout, `${run.stderr}\n${worker.log().slice(-3000)}`).toContain('TenantPresentError');
    const paths = scratchPaths(id, hostId, { TENANT_RESTORE_SCRATCH_DIR: scratchDir });
    const scratchUrl = `postgresql://postgres@localhost:5432/${live.name}?host=${encodeURIComponent(paths.socketDir)}`;
    try {
      await withClient(scratchUrl, async (c) => {
        // The subscription came along, enabled, and nothing runs it.
        const subs = await c.query<{ subenabled: boolean }>(
          `SELECT subenabled FROM pg_subscription WHERE subname = $1`,
          [subscription],
        );
        expect(subs.rows).toEqual([{ subenabled: true }]);
        const workersRunning = await c.query<{ n: string }>(
          `SELECT count(*)::text AS n FROM pg_stat_activity WHERE backend_type LIKE 'logical replication%'`,
        );
        expect(workersRunning.rows[0]!.n).toBe('0');
        expect(
          (await c.query<{ v: string }>("SELECT current_setting('max_logical_replication_workers') AS v")).rows[0]!.v,
        ).toBe('0');
        // The tablespace was recovered under the scratch directory, not at the production path.
        const location = await c.query<{ path: string }>(
          `SELECT pg_tablespace_location(oid) AS path FROM pg_tablespace WHERE spcname = $1`,
          [tablespace],
        );
        expect(location.rows[0]!.path.startsWith(`${paths.tablespaces}/`)).toBe(true);
        // The victims' comments are readable there (the copy reads them like any other table).
        const comments = await c.query<{ n: string }>('SELECT count(*)::text AS n FROM app.comments');
        expect(Number(comments.rows[0]!.n)).toBeGreaterThan(0);
        // The server holds none of the worker's secrets: only pgBackRest's own variables and PATH/locale.
        const environ = await c.query<{ e: string }>(
          `SELECT encode(pg_read_binary_file('/proc/self/environ'), 'hex') AS e`,
        );
        const names = Buffer.from(environ.rows[0]!.e, 'hex')
          .toString()
          .split('\0')
          .filter(Boolean)
          .map((kv) => kv.split('=')[0]);
        expect(
          names.filter(
            (n) =>
              !/^(PATH|LANG|LC_ALL|PGBACKREST_.*|PG_GRANDPARENT_PID|PGDATA|PGSYSCONFDIR|PGLOCALEDIR|PGPORT|PG_OOM_ADJUST_FILE|PG_OOM_ADJUST_VALUE)$/.test(
                n,
              ),
          ),
        ).toEqual([]);
      });
    } finally {
      stopLeftover(paths.dataDir);
    }
    // Nothing was written at the production path.
    expect(readdirSync(tablespaceDir, { recursive: true, encoding: 'utf8' }).sort()).toEqual(before);
    rmSync(paths.root, { recursive: true, force: true });
    rmSync(paths.socketDir, { recursive: true, force: true });
  }, 600_000);

  it('refuses a moment outside the archive with the range it can recover, before anything starts', async () => {
    const taskQueue = uniqueName('tq_pitr_refuse');
    const early = await runCli(
      startArgs(
        live.name,
        live.url,
        '2001-01-01T00:00:00Z',
        victims,
        uniqueName('pitr-early').replace(/_/g, '-'),
        taskQueue,
      ),
    );
    expect(early.code, early.stderr).toBe(2);
    expect(early.stderr).toMatch(/before the oldest backup ended; stanza '.*' can recover from \d{4}-/);
    const future = await runCli(
      startArgs(
        live.name,
        live.url,
        '2999-01-01T00:00:00Z',
        victims,
        uniqueName('pitr-late').replace(/_/g, '-'),
        taskQueue,
      ),
    );
    expect(future.code).toBe(2);
    expect(future.stderr).toMatch(/in the future/);
    const noAt = await runCli([
      'start',
      '--backup',
      `pgbackrest:${stanza}`,
      '--live',
      live.url,
      '--tenant-root',
      'app.tenants',
      '--tenants',
      '1',
      '--artifacts',
      artifacts,
    ]);
    expect(noAt.code).toBe(2);
    expect(noAt.stderr).toMatch(/give --at/);
  });

  it('brings the victims back as they were at the moment, rows written after the base backup included; scratch is removed', async () => {
    const taskQueue = uniqueName('tq_pitr');
    const hostId = uniqueName('host-a');
    const worker = await startWorkerProcess({
      taskQueue,
      env: productEnv({ TENANT_RESTORE_HOST_ID: hostId, TENANT_RESTORE_SCRATCH_DIR: scratchDir }),
    });
    workers.push(worker);
    const id = uniqueName('pitr').replace(/_/g, '-');
    const run = await runCli([...startArgs(live.name, live.url, at, victims, id, taskQueue), '--wait', '--json']);
    expect(run.code, `${run.stderr}\n${worker.log().slice(-3000)}`).toBe(0);
    const target = parseRecoveryTarget(at)!;
    expect(target.type).toBe('time');
    const targetTime = (target as { time: string }).time;
    expect(run.stderr).toContain(`recovering stanza ${stanza} to ${targetTime}`);
    const result = run.json as BulkRestoreResult;
    expect(result).toMatchObject({ status: 'succeeded', restored: victims.length, failed: 0 });

    // Exactly as they were at the moment: every table's count and checksum, the rows written after the backup too.
    expect(writtenAfterBackup).toBe(victims.length * smallTenant.projects * 3);
    expect(await tenantRows(live.url, victims)).toEqual(beforeDeletion);

    // The report says where recovery stopped and what it replayed last, on which host.
    const report = await runCli(['report', id, '--json']);
    const source = (report.json as { source: { pointInTime?: Record<string, unknown> } }).source;
    expect(source.pointInTime).toMatchObject({ stanza, host: hostId, target: { type: 'time', time: targetTime } });
    expect(Date.parse(source.pointInTime!.lastTransaction as string)).toBeLessThanOrEqual(Date.parse(at));
    expect(source.pointInTime!.gapMs as number).toBeGreaterThanOrEqual(0);
    expect(source.pointInTime!.stopped).toMatch(/^before commit of transaction \d+/);

    // The scratch server was stopped and its directory removed, on its host.
    const paths = scratchPaths(id, hostId, { TENANT_RESTORE_SCRATCH_DIR: scratchDir });
    expect(existsSync(paths.root)).toBe(false);
    expect(existsSync(paths.socketDir)).toBe(false);
  }, 600_000);

  it('a worker killed during the recovery: scratch is recovered again on another host, and the restore completes', async () => {
    // The victims are back from the test above: delete them again (a second incident, same moment to go back to).
    await deleteTenants(live.url, victims);
    await withClient(live.url, (c) => c.query(`UPDATE app.tenants SET name = name || '.' WHERE id = 10`));
    await archiveNow(live.url);
    const taskQueue = uniqueName('tq_pitr_kill');
    const hostA = uniqueName('host-a');
    const hostB = uniqueName('host-b');
    const first = await startWorkerProcess({
      taskQueue,
      env: productEnv({ TENANT_RESTORE_HOST_ID: hostA, TENANT_RESTORE_SCRATCH_DIR: scratchDir }),
    });
    workers.push(first);
    const id = uniqueName('pitr-kill').replace(/_/g, '-');
    const started = await runCli(startArgs(live.name, live.url, at, victims, id, taskQueue));
    expect(started.code, started.stderr).toBe(0);

    // Kill the worker once its host holds the restore's data directory: pgbackrest restore or the recovery is running.
    const onA = scratchPaths(id, hostA, { TENANT_RESTORE_SCRATCH_DIR: scratchDir });
    const deadline = Date.now() + 180_000;
    while (!existsSync(onA.dataDir) || readdirSync(onA.dataDir).length === 0) {
      if (Date.now() > deadline) throw new Error(`host A never began the recovery:\n${first.log().slice(-3000)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    await first.kill('SIGKILL');
    const second = await startWorkerProcess({
      taskQueue,
      env: productEnv({ TENANT_RESTORE_HOST_ID: hostB, TENANT_RESTORE_SCRATCH_DIR: scratchDir }),
    });
    workers.push(second);

    const waited = await runCli(['status', id, '--watch']);
    expect(waited.code, `${waited.stderr}\n${second.log().slice(-3000)}`).toBe(0);
    expect(await tenantRows(live.url, victims)).toEqual(beforeDeletion);
    const report = await runCli(['report', id, '--json']);
    const source = (report.json as { source: { pointInTime?: { host: string } } }).source;
    expect(source.pointInTime?.host).toBe(hostB);
    // Host A's leftovers (its recovery went on without its worker) are the operator's to remove: stop them here.
    stopLeftover(onA.dataDir);
  }, 600_000);
});

/** A server a killed worker left running on its host. */
function stopLeftover(dataDir: string): void {
  if (!existsSync(join(dataDir, 'postmaster.pid'))) return;
  spawnSync(
    'runuser',
    ['-u', 'postgres', '--', '/usr/lib/postgresql/15/bin/pg_ctl', '-D', dataDir, 'stop', '-m', 'immediate'],
    {
      stdio: 'ignore',
    },
  );
}
