/**
 * Issue 26, "Done when" (first two bullets): the incident window, through the real CLI, real worker processes, the
 * stack's own PostgreSQL cluster and its pgBackRest WAL archive in MinIO (as point-in-time.test.ts).
 *
 * One dataset for the whole file. Live has 12 tenants; a base backup; then the day goes on:
 * - before the incident, users delete their own rows (comments of tenants 2 and 3, an issue of tenant 3 with its
 *   comments) and one closes an account (tenant 11, deleted whole);
 * - T0 = pg_current_wal_lsn(), then the incident in one transaction: tenants 1, 4, 5 deleted (cascade), comments of
 *   tenant 6 deleted, and a wrong UPDATE of every issue of tenants 7 and 8 (title 'oops'); T1 = pg_current_wal_lsn()
 *   right after its COMMIT (no other transaction of this database in flight at either capture);
 * - after the incident, users go on: rows of tenants 2 and 6 the incident did not touch are deleted, one of tenant 7's
 *   'oops' issues is renamed by its user, one of tenant 8's is deleted (both: conflicts);
 * - a writer inserts and renames rows of bystander tenants 9 and 10 all along (paused only around T0..T1), keeping
 *   its own model of every row it committed; tenant 12 is never touched.
 * The oracle (test/helpers/window.ts) keeps every row of every tenant as text at T0, at T1 and before the revert, and
 * computes the three-way result from the issue's words. Then:
 * - `discover --from T0 --to T1` lists exactly the incident's tenants (absent 1, 4, 5; partial 6; changed 7, 8) and
 *   none of the users' own deletions;
 * - `start --from T0 --to T1` without --conflicts report restores 1, 4, 5, 6 and refuses 7 and 8 (WindowConflict) with
 *   nothing of them written; again with --conflicts report for 7 and 8: restored except the two conflicting rows.
 *   Live then equals the oracle on every row of every tenant, no user deletion came back, the bystanders hold exactly
 *   what the writer committed, no FK is dangling, and the report lists the two conflicts;
 * - two kill tests, each with an incident of its own (tenants present whatever the tests before did, deleted whole in
 *   a second window): a worker SIGKILLed the moment its delta (narrowToWindow) starts, and a worker SIGKILLed while
 *   its copy waits for a tenant's lock (held by the test, as a concurrent restore would); another worker on another
 *   host finishes each: the tenants are back exactly as at that window's T0, nothing else moved.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DiscoveredTenant, DiscoverSummary } from '../../activities/discover';
import { scratchPaths, type ScratchKind } from '../../activities/point-in-time';
import { createS3Client, getJson, parseS3Url } from '../../activities/s3';
import { archiveWalNow, clockMicrosSql, pgbackrest } from '../../scripts/stack';
import { generate, range, smallTenant, tenantRows, withClient } from '../fixtures/orchestration/fixture';
import { productEnv, runCli, startWorkerProcess, type CliResult, type WorkerProcess } from '../helpers/product';
import { uniqueName, useFreshDatabases, useStackEnv } from '../helpers/stack';
import {
  Writer,
  lines,
  lsnValue,
  orphans,
  rowId,
  snapshot,
  threeWay,
  windowDelta,
  type Snapshot,
} from '../helpers/window';

const env = useStackEnv();
const { fresh } = useFreshDatabases();
const stanza = env.STACK_PGBACKREST_STANZA;
const scratchDir = join(env.PGPASSFILE, '..', 'window-scratch');
const artifacts = `s3://${env.STACK_S3_BUCKET}/test-window/`;
const s3 = createS3Client();

const all = range(1, 12);
const victims = [1, 4, 5];
const partialVictim = 6;
const updated = [7, 8];
const incidentTenants = [...victims, partialVictim, ...updated];
const bystanders = [9, 10];
const closedAccount = 11;
const untouched = 12;
/** Every tenant but the writer's: their rows move only when the test or the product moves them. */
const still = all.filter((t) => !bystanders.includes(t));

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const newId = (prefix: string) => uniqueName(prefix).replace(/_/g, '-');

/** The newest commit is archived: a switch to a new WAL segment, then a wait until the archiver has pushed it. */
async function archiveNow(url: string): Promise<void> {
  await withClient(url, (c) => archiveWalNow(async (sql) => (await c.query(sql)).rows));
}

/**
 * The WAL insert position: where the next record will start, whichever database writes it. Recovery to an LSN stops
 * after the first record that starts at or after it, so this is the exact moment. pg_current_wal_lsn() is the write
 * position instead, which on a busy cluster (other test files write to it) can be a page boundary in the middle of a
 * record (seen: T1 0/19002000, recovery stopping after 0/19002048): set WINDOW_LSN=write to use it.
 */
async function currentLsn(c: pg.Client): Promise<string> {
  const fn = process.env.WINDOW_LSN === 'write' ? 'pg_current_wal_lsn' : 'pg_current_wal_insert_lsn';
  return (await c.query<{ lsn: string }>(`SELECT ${fn}()::text AS lsn`)).rows[0]!.lsn;
}

/** A base backup of the stack's cluster; another test file may hold the stanza's lock for a while: wait for it. */
async function baseBackup(): Promise<void> {
  const deadline = Date.now() + 300_000;
  for (;;) {
    const backup = pgbackrest([`--stanza=${stanza}`, 'backup', '--type=incr']);
    if (backup.status === 0) return;
    if (!/lock/i.test(backup.output) || Date.now() > deadline)
      throw new Error(`pgbackrest backup failed (is the stack's pgBackRest set up?): ${backup.output}`);
    await sleep(3000);
  }
}

/** Keys of a tenant's rows of one table, oldest first. */
function keysOf(s: Snapshot, tenant: number, table: string, where: (row: string) => boolean = () => true): string[] {
  return [...s.values()]
    .filter((r) => r.tenant === String(tenant) && r.table === table && where(r.row))
    .map((r) => r.key)
    .sort((a, b) => Number(a) - Number(b));
}

/** The issue id a comment row (`(id,issue_id,author_id,body)`) hangs under. */
const issueOf = (commentRow: string) => commentRow.slice(1).split(',')[1]!;

const nonZero = (counts: Record<string, number> | undefined) =>
  Object.fromEntries(Object.entries(counts ?? {}).filter(([, n]) => n > 0));

const sortIds = (ids: Array<string | number>) => ids.map(String).sort((a, b) => Number(a) - Number(b));

/** A server a killed worker left running on its host. */
function stopLeftover(dataDir: string): void {
  if (!existsSync(join(dataDir, 'postmaster.pid'))) return;
  spawnSync(
    'runuser',
    ['-u', 'postgres', '--', '/usr/lib/postgresql/15/bin/pg_ctl', '-D', dataDir, 'stop', '-m', 'immediate'],
    { stdio: 'ignore' },
  );
}

/** Waits until `found()` holds; the message says what never happened, with the worker's last lines. */
async function waitUntil(what: string, found: () => boolean | Promise<boolean>, log: () => string): Promise<void> {
  // Generous: after a SIGKILL the product waits for the activity's heartbeat timeout, then for the lost host's queue.
  const deadline = Date.now() + 900_000;
  while (!(await found())) {
    if (Date.now() > deadline) throw new Error(`${what} never happened:\n${log().slice(-4000)}`);
    await sleep(20);
  }
}

/** An activity of that type started on this worker (the SDK's debug line, LOG_LEVEL=debug). */
const activityStarted = (worker: WorkerProcess, type: string) =>
  worker
    .log()
    .split('\n')
    .some((l) => l.includes(`"activityType":"${type}"`) && l.includes('"msg":"Activity started"'));

interface WaitJson {
  restoreId: string;
  status: string;
  tenants: Array<{ tenantId: string; status: string; error?: string }>;
}

interface WindowReport {
  tenants: Array<{
    tenantId: string;
    status: string;
    window?: {
      deleted?: Record<string, number>;
      changed?: Record<string, number>;
      reverted?: Record<string, number>;
      added?: Record<string, number>;
      conflicts?: Record<string, number>;
    };
  }>;
}

interface WindowJson {
  conflicts: Array<{ tenantId: string; table: string; reason: string }>;
}

/** A window.json's conflicts by tenant, table and reason (not the rest of its shape), sorted. */
const listed = (json: WindowJson) =>
  json.conflicts
    .map((c) => ({ tenantId: String(c.tenantId), table: c.table, reason: c.reason }))
    .sort((a, b) => Number(a.tenantId) - Number(b.tenantId) || a.table.localeCompare(b.table));

describe('incident window: the delta between T0 and T1, reverted three ways against live now', () => {
  const workers: WorkerProcess[] = [];
  const leftovers: Array<{ id: string; host: string }> = [];
  const taskQueue = uniqueName('tq_window');
  const hostA = uniqueName('host-w');
  let worker: WorkerProcess;
  let writer: Writer;
  let live: { name: string; url: string };
  let t0 = '';
  let t1 = '';
  /** Before the day's deletions (when's --since), and the incident's transaction id (32 bits, as the WAL has it). */
  let since = '';
  let incidentXid = '';
  /** Every row of every tenant: just before the incident (T0), just after it (T1), and before the revert. */
  let atT0: Snapshot;
  let atT1: Snapshot;
  let beforeRevert: Snapshot;
  /** Rows users deleted on their own, before T0 and after T1 (ids as in Snapshot). */
  const deletedBeforeT0: string[] = [];
  const deletedAfterT1: string[] = [];
  let renamedAfterT1 = '';
  let deletedIssueAfterT1 = '';
  const renamedTitle = 'rowdata renamed by its user after the incident';

  const source = `pgbackrest:${stanza}/`;
  const windowArgs = (from: string, to: string) => [
    '--backup',
    `${source}${live.name}`,
    '--from',
    from,
    '--to',
    to,
    '--live',
    live.url,
    '--tenant-root',
    'app.tenants',
  ];
  const start = (from: string, to: string, tenants: number[], id: string, tq: string, extra: string[] = []) =>
    runCli([
      'start',
      ...windowArgs(from, to),
      '--tenants',
      tenants.join(','),
      '--id',
      id,
      '--task-queue',
      tq,
      '--artifacts',
      artifacts,
      ...extra,
    ]);
  const windowJson = (id: string) =>
    getJson<WindowJson>(s3, { bucket: env.STACK_S3_BUCKET, key: `test-window/${id}/window.json` });
  const report = async (id: string): Promise<WindowReport> => {
    // Its exit code is the restore's outcome (1 when a tenant failed): the JSON is what is read here.
    const r = await runCli(['report', id, '--json']);
    expect(r.json, `exit ${r.code}: ${r.stderr}`).toBeDefined();
    return r.json as WindowReport;
  };
  const why = (run: CliResult, w: WorkerProcess = worker) =>
    `exit ${run.code}\nstdout: ${run.stdout.slice(-3000)}\nstderr: ${run.stderr.slice(-3000)}\nworker: ${w.log().slice(-4000)}`;

  beforeAll(async () => {
    live = await fresh('window_live');
    await generate(live.url, [{ first: 1, count: 12, shape: smallTenant }]);
    await baseBackup();
    // pgBackRest records a backup's end to the second; the window's moments must come after it.
    await sleep(1500);
    // The moment `when` reads from (--since): after the base backup, before the day's deletions.
    since = await withClient(live.url, async (c) => (await c.query<{ t: string }>(clockMicrosSql)).rows[0]!.t);
    writer = new Writer(live.url, bystanders);
    await writer.start();

    // The day before the incident: users delete their own rows, one closes an account.
    await withClient(live.url, async (c) => {
      const day = await snapshot(live.url, all);
      const deleteRows = async (table: string, keys: string[]) => {
        const r = await c.query(`DELETE FROM ${table} WHERE id = ANY($1::bigint[])`, [keys]);
        expect(r.rowCount).toBe(keys.length);
        deletedBeforeT0.push(...keys.map((k) => rowId(table, k)));
      };
      await deleteRows('app.comments', keysOf(day, 2, 'app.comments').slice(0, 2));
      await deleteRows('app.comments', keysOf(day, 3, 'app.comments').slice(0, 1));
      // An issue of tenant 3 with its comments (the cascade takes them: books first).
      const issue = keysOf(day, 3, 'app.issues').at(-1)!;
      await deleteRows(
        'app.comments',
        keysOf(day, 3, 'app.comments', (row) => issueOf(row) === issue),
      );
      await deleteRows('app.issues', [issue]);
      for (const r of day.values()) if (r.tenant === String(closedAccount)) deletedBeforeT0.push(rowId(r.table, r.key));
      await c.query('DELETE FROM app.tenants WHERE id = $1', [closedAccount]);
    });
    await writer.waitForCommits(3);

    // T0, the incident in one transaction, T1: no writer transaction in flight at either moment.
    await writer.pause();
    atT0 = await snapshot(live.url, all);
    const sixComments = keysOf(atT0, partialVictim, 'app.comments');
    const sixIssues = keysOf(atT0, partialVictim, 'app.issues');
    // Both comments of tenant 6's first issue and one of its second: the incident's partial damage.
    const incidentComments = sixComments.filter(
      (k) => issueOf(atT0.get(rowId('app.comments', k))!.row) === sixIssues[0],
    );
    incidentComments.push(sixComments.find((k) => issueOf(atT0.get(rowId('app.comments', k))!.row) === sixIssues[1])!);
    await withClient(live.url, async (c) => {
      t0 = await currentLsn(c);
      await c.query('BEGIN');
      incidentXid = (await c.query<{ x: string }>('SELECT (txid_current() % 4294967296)::text AS x')).rows[0]!.x;
      await c.query('DELETE FROM app.tenants WHERE id = ANY($1::bigint[])', [victims]);
      await c.query('DELETE FROM app.comments WHERE id = ANY($1::bigint[])', [incidentComments]);
      await c.query(
        `UPDATE app.issues SET title = 'oops' WHERE project_id IN (SELECT id FROM app.projects WHERE tenant_id = ANY($1::bigint[]))`,
        [updated],
      );
      await c.query('COMMIT');
      t1 = await currentLsn(c);
    });
    atT1 = await snapshot(live.url, all);
    writer.resume();

    // After the incident, users go on.
    await withClient(live.url, async (c) => {
      const deleteRows = async (table: string, keys: string[]) => {
        const r = await c.query(`DELETE FROM ${table} WHERE id = ANY($1::bigint[])`, [keys]);
        expect(r.rowCount).toBe(keys.length);
        deletedAfterT1.push(...keys.map((k) => rowId(table, k)));
      };
      await deleteRows('app.comments', keysOf(atT1, 2, 'app.comments').slice(-1));
      await deleteRows('app.app_installations', keysOf(atT1, 2, 'app.app_installations').slice(0, 1));
      // Tenant 6: a comment of an issue the incident left alone, and an app installation.
      await deleteRows(
        'app.comments',
        keysOf(atT1, partialVictim, 'app.comments', (row) => issueOf(row) === sixIssues.at(-1)).slice(0, 1),
      );
      await deleteRows('app.app_installations', keysOf(atT1, partialVictim, 'app.app_installations').slice(-1));
      // Tenant 7: one 'oops' issue renamed by its user (a conflict: changed since the window).
      renamedAfterT1 = keysOf(atT1, 7, 'app.issues')[1]!;
      await c.query('UPDATE app.issues SET title = $2 WHERE id = $1', [renamedAfterT1, renamedTitle]);
      // Tenant 8: one 'oops' issue deleted by its user, with its comments (a conflict: deleted since the window).
      deletedIssueAfterT1 = keysOf(atT1, 8, 'app.issues')[2]!;
      await deleteRows(
        'app.comments',
        keysOf(atT1, 8, 'app.comments', (row) => issueOf(row) === deletedIssueAfterT1),
      );
      await deleteRows('app.issues', [deletedIssueAfterT1]);
    });
    await writer.waitForCommits(3);
    // T1 and commits after it are archived: recovery to T1 needs the WAL past it.
    await archiveNow(live.url);
    beforeRevert = await snapshot(live.url, still);

    worker = await startWorkerProcess({
      taskQueue,
      env: productEnv({ TENANT_RESTORE_HOST_ID: hostA, TENANT_RESTORE_SCRATCH_DIR: scratchDir }),
    });
    workers.push(worker);
  }, 600_000);

  afterAll(async () => {
    await writer?.stop();
    for (const w of workers) await w.stop();
    for (const { id, host } of leftovers)
      for (const kind of ['restore', 'window-end', 'discover'] as ScratchKind[])
        stopLeftover(scratchPaths(id, host, { TENANT_RESTORE_SCRATCH_DIR: scratchDir }, kind).dataDir);
    s3.destroy();
  });

  it('the scenario is what the books say: the incident touched exactly tenants 1, 4-8, users the others', () => {
    expect(lsnValue(t1)).toBeGreaterThan(lsnValue(t0));
    expect(writer.errors).toEqual([]);
    const delta = windowDelta(atT0, atT1);
    // The window deleted the victims whole, three comments of tenant 6, and changed every issue of tenants 7 and 8.
    expect(sortIds(Object.keys(delta.deleted))).toEqual(sortIds([...victims, partialVictim]));
    expect(sortIds(Object.keys(delta.changed))).toEqual(sortIds(updated));
    expect(delta.added).toEqual({});
    for (const t of victims) expect(delta.deleted[t]!['app.tenants']).toBe(1);
    expect(delta.deleted[partialVictim]).toEqual({ 'app.comments': 3 });
    for (const t of updated) expect(delta.changed[t]).toEqual({ 'app.issues': 6 });
    // The users' own deletions: before T0 not in T0 (so never in the delta), after T1 in T1 and gone since.
    expect(deletedBeforeT0.length).toBeGreaterThan(5);
    for (const id of deletedBeforeT0) expect(atT0.has(id), id).toBe(false);
    expect(deletedAfterT1.length).toBeGreaterThan(5);
    for (const id of deletedAfterT1) {
      expect(atT1.has(id), id).toBe(true);
      expect(beforeRevert.has(id), id).toBe(false);
    }
    // The oracle: exactly two conflicts, the rows changed (7) and deleted (8) since the window.
    const { conflicts } = threeWay(atT0, atT1, beforeRevert, incidentTenants);
    expect(conflicts.map(({ tenantId, table, reason }) => ({ tenantId, table, reason }))).toEqual([
      { tenantId: '7', table: 'app.issues', reason: 'changed since the window' },
      { tenantId: '8', table: 'app.issues', reason: 'deleted since the window' },
    ]);
    // The writer's model is live's rows of its tenants, and it wrote through the whole scenario.
    expect(writer.commits).toBeGreaterThan(5);
  });

  it('discover --from T0 --to T1 lists exactly the incident: absent 1, 4, 5; partial 6; changed 7, 8', async () => {
    const id = newId('window-disc');
    leftovers.push({ id, host: hostA });
    const run = await runCli([
      'discover',
      ...windowArgs(t0, t1),
      '--id',
      id,
      '--artifacts',
      artifacts,
      '--task-queue',
      taskQueue,
      '--json',
    ]);
    expect(run.code, why(run)).toBe(0);
    const summary = run.json as DiscoverSummary & { window?: { from: string; to: string } };
    expect(summary.window).toBeDefined();
    expect(summary.counts).toMatchObject({ absent: victims.length, partial: 1, changed: updated.length });
    const { tenants } = await getJson<{ summary: DiscoverSummary; tenants: DiscoveredTenant[] }>(
      s3,
      parseS3Url(summary.artifacts.json),
    );
    const ofClass = (cls: string) => sortIds(tenants.filter((t) => t.class === cls).map((t) => t.tenantId));
    expect(ofClass('absent')).toEqual(sortIds(victims));
    expect(ofClass('partial')).toEqual(sortIds([partialVictim]));
    expect(ofClass('changed')).toEqual(sortIds(updated));
    // Nothing else differs between T0 and T1: the users' own deletions (2, 3), the closed account (11), the writer's
    // tenants (paused through the window) and tenant 12 are in no class but intact.
    expect(sortIds(tenants.filter((t) => t.class !== 'intact').map((t) => t.tenantId))).toEqual(
      sortIds(incidentTenants),
    );
    // Per table, what the window did (the books: T0 against T1).
    const delta = windowDelta(atT0, atT1);
    for (const t of [...victims, partialVictim]) {
      const found = tenants.find((x) => x.tenantId === String(t))!;
      expect(nonZero(found.missing), `tenant ${t}`).toEqual(delta.deleted[t]);
    }
    for (const t of updated) {
      const found = tenants.find((x) => x.tenantId === String(t))!;
      expect(nonZero(found.changed), `tenant ${t}`).toEqual(delta.changed[t]);
      expect(nonZero(found.missing), `tenant ${t}`).toEqual({});
    }
    // Discover only reads: live is as it was.
    expect(lines(await snapshot(live.url, still))).toEqual(lines(beforeRevert));
  }, 600_000);

  it('when finds the window from the ids of the tenants that are gone: the deleting transaction, T0 and T1 inside the bounds around it', async () => {
    const run = await runCli([
      'when',
      '--backup',
      `${source}${live.name}`,
      '--live',
      live.url,
      '--tenant-root',
      'app.tenants',
      '--tenants',
      [...victims, partialVictim].join(','),
      '--since',
      since,
      '--task-queue',
      taskQueue,
      '--json',
    ]);
    expect(run.code, why(run)).toBe(0);
    const found = run.json as {
      tenants: Array<{ tenantId: string; deletedBy?: number | string; notDeleted?: boolean }>;
      first?: { xid: number | string };
      last?: { xid: number | string };
      window?: { from: string; to: string };
    };
    for (const v of victims)
      expect(String(found.tenants.find((t) => String(t.tenantId) === String(v))?.deletedBy), `tenant ${v}`).toBe(
        incidentXid,
      );
    // Tenant 6 lost rows, not its root: not deleted.
    expect(found.tenants.find((t) => String(t.tenantId) === String(partialVictim))?.notDeleted).toBe(true);
    expect(String(found.first?.xid)).toBe(incidentXid);
    expect(String(found.last?.xid)).toBe(incidentXid);
    // T0 is the incident's first record (at or after the insert position read before its BEGIN), T1 its commit record
    // (before the insert position read after its COMMIT).
    expect(lsnValue(found.window!.from)).toBeGreaterThanOrEqual(lsnValue(t0));
    expect(lsnValue(found.window!.to)).toBeLessThan(lsnValue(t1));
    expect(lsnValue(found.window!.from)).toBeLessThan(lsnValue(found.window!.to));
  }, 600_000);

  it('start --from T0 --to T1: conflicted tenants refused untouched; with --conflicts report restored but their conflicts; live equals the three-way oracle', async () => {
    const oracle = threeWay(atT0, atT1, beforeRevert, incidentTenants);

    // 1. Without --conflicts report: 7 and 8 have conflicts, refused before anything of them is written.
    const first = newId('window-a');
    leftovers.push({ id: first, host: hostA });
    const before78 = lines(await snapshot(live.url, updated));
    const run = await start(t0, t1, incidentTenants, first, taskQueue, ['--wait', '--json']);
    expect(run.code, why(run)).toBe(1);
    const out = run.json as WaitJson;
    const status = (t: number) => out.tenants.find((x) => x.tenantId === String(t));
    for (const t of [...victims, partialVictim]) expect(status(t)?.status, `tenant ${t}: ${why(run)}`).toBe('restored');
    for (const t of updated) {
      expect(status(t)?.status, `tenant ${t}`).toBe('failed');
      expect(status(t)?.error, `tenant ${t}`).toMatch(/WindowConflict/);
    }
    expect(lines(await snapshot(live.url, updated))).toEqual(before78);
    // Those restored equal the oracle already (their rows only: 7 and 8 are not reverted yet).
    const afterFirst = await snapshot(live.url, still);
    const partOracle = threeWay(atT0, atT1, beforeRevert, [...victims, partialVictim]).expected;
    expect(lines(afterFirst)).toEqual(lines(partOracle));
    // window.json lists the conflicts: the oracle's, by tenant, table and reason.
    const expectedConflicts = oracle.conflicts.map(({ tenantId, table, reason }) => ({ tenantId, table, reason }));
    expect(listed(await windowJson(first))).toEqual(expectedConflicts);
    const firstReport = await report(first);
    const deleted = windowDelta(atT0, atT1).deleted;
    for (const t of [...victims, partialVictim]) {
      const rt = firstReport.tenants.find((x) => x.tenantId === String(t));
      expect(rt?.window, `tenant ${t} in report ${first}`).toBeDefined();
      expect(nonZero(rt!.window!.deleted), `tenant ${t}`).toEqual(deleted[t]);
      expect(nonZero(rt!.window!.conflicts), `tenant ${t}`).toEqual({});
    }

    // 2. 7 and 8 again, with --conflicts report: everything but the two conflicting rows goes back.
    const second = newId('window-b');
    leftovers.push({ id: second, host: hostA });
    const run2 = await start(t0, t1, updated, second, taskQueue, ['--conflicts', 'report', '--wait', '--json']);
    expect(run2.code, why(run2)).toBe(0);
    const out2 = run2.json as WaitJson;
    for (const t of updated)
      expect(out2.tenants.find((x) => x.tenantId === String(t))?.status, `tenant ${t}: ${why(run2)}`).toBe('restored');
    expect(listed(await windowJson(second))).toEqual(expectedConflicts);
    const secondReport = await report(second);
    for (const t of updated) {
      const rt = secondReport.tenants.find((x) => x.tenantId === String(t));
      expect(rt?.window, `tenant ${t} in report ${second}`).toBeDefined();
      expect(nonZero(rt!.window!.changed), `tenant ${t}`).toEqual({ 'app.issues': 6 });
      expect(nonZero(rt!.window!.reverted), `tenant ${t}`).toEqual(oracle.reverted[t]);
      expect(nonZero(rt!.window!.conflicts), `tenant ${t}`).toEqual({ 'app.issues': 1 });
    }

    // 3. The oracle, row by row, for every tenant but the writer's.
    const after = await snapshot(live.url, still);
    expect(lines(after)).toEqual(lines(oracle.expected));
    // Spelled out: every row the incident deleted is back with its T0 values...
    for (const [id, r0] of atT0) if (!atT1.has(id)) expect(after.get(id)?.row, id).toBe(r0.row);
    // ... every row it changed that nobody touched since is back to T0; the renamed one keeps its user's title; the one
    // deleted since stays deleted.
    for (const [id, r0] of atT0) {
      const r1 = atT1.get(id);
      if (!r1 || r1.row === r0.row) continue;
      if (id === rowId('app.issues', renamedAfterT1)) expect(after.get(id)?.row, id).toContain(renamedTitle);
      else if (id === rowId('app.issues', deletedIssueAfterT1)) expect(after.has(id), id).toBe(false);
      else expect(after.get(id)?.row, id).toBe(r0.row);
    }
    // No user deletion came back, from before T0 or after T1; the closed account stays closed; 12 is untouched.
    for (const id of [...deletedBeforeT0, ...deletedAfterT1]) expect(after.has(id), id).toBe(false);
    expect(lines(after, [closedAccount])).toEqual([]);
    expect(lines(after, [untouched])).toEqual(lines(atT0, [untouched]));
    // The bystanders hold exactly what the writer committed (compared while it is paused).
    await writer.pause();
    try {
      expect(lines(await snapshot(live.url, bystanders))).toEqual(lines(writer.model));
    } finally {
      writer.resume();
    }
    expect(writer.errors).toEqual([]);
    expect(
      Object.values(await orphans(live.url)).every((n) => n === 0),
      JSON.stringify(await orphans(live.url)),
    ).toBe(true);
  }, 600_000);

  /**
   * A second incident in a window of its own (so that a kill test does not depend on the tests before it): `tenants`,
   * present in live, deleted whole. Returns the window and their rows at its T0, and the other tenants' rows.
   */
  async function anotherIncident(tenants: number[]) {
    await writer.pause();
    const others = still.filter((t) => !tenants.includes(t));
    const othersBefore = await snapshot(live.url, others);
    const countsAtT0 = await tenantRows(live.url, tenants);
    const rowsAtT0 = await snapshot(live.url, tenants);
    expect(countsAtT0['app.tenants']!.count).toBe(tenants.length);
    let from = '';
    let to = '';
    await withClient(live.url, async (c) => {
      from = await currentLsn(c);
      await c.query('DELETE FROM app.tenants WHERE id = ANY($1::bigint[])', [tenants]);
      to = await currentLsn(c);
    });
    writer.resume();
    await writer.waitForCommits(2);
    await archiveNow(live.url);
    return { from, to, others, othersBefore, countsAtT0, rowsAtT0 };
  }

  /** A worker of the kill tests: its own host, LOG_LEVEL=debug for the SDK's "Activity started" lines. */
  async function killTestWorker(tq: string, host: string): Promise<WorkerProcess> {
    const w = await startWorkerProcess({
      taskQueue: tq,
      env: productEnv({ TENANT_RESTORE_HOST_ID: host, TENANT_RESTORE_SCRATCH_DIR: scratchDir, LOG_LEVEL: 'debug' }),
    });
    workers.push(w);
    return w;
  }

  /** The same result as without the kill: the tenants exactly as at their window's T0, nothing else moved. */
  async function expectSameResult(
    tenants: number[],
    incident: Awaited<ReturnType<typeof anotherIncident>>,
  ): Promise<void> {
    expect(await tenantRows(live.url, tenants)).toEqual(incident.countsAtT0);
    expect(lines(await snapshot(live.url, tenants))).toEqual(lines(incident.rowsAtT0));
    expect(lines(await snapshot(live.url, incident.others))).toEqual(lines(incident.othersBefore));
    await writer.pause();
    try {
      expect(lines(await snapshot(live.url, bystanders))).toEqual(lines(writer.model));
    } finally {
      writer.resume();
    }
    expect(writer.errors).toEqual([]);
    const dangling = await orphans(live.url);
    expect(
      Object.values(dangling).every((n) => n === 0),
      JSON.stringify(dangling),
    ).toBe(true);
  }

  // A worker process dies (a crash, a redeploy) and a new one starts on the same host: the two scratch servers it had
  // recovered outlive it (detached), and the restore goes on from its activities' retries. The loss of the whole host
  // after the units started is not recovered from (README, the incident window's limits; point-in-time.test.ts covers
  // a host lost during the recovery).
  it('a worker SIGKILLed during the delta: a new worker on the host finishes, with the same result', async () => {
    const tenants = [2, 3, untouched];
    const tq = uniqueName('tq_window_kill_delta');
    const host = uniqueName('host-d');
    const hosts = [host, host];
    const id = newId('window-kill-delta');
    leftovers.push({ id, host });
    const incident = await anotherIncident(tenants);

    const first = await killTestWorker(tq, hosts[0]!);
    const started = await start(incident.from, incident.to, tenants, id, tq);
    expect(started.code, why(started, first)).toBe(0);
    // Killed the moment its narrowToWindow activity starts.
    await waitUntil(
      'the delta (narrowToWindow) on the first worker',
      () => activityStarted(first, 'narrowToWindow'),
      () => first.log(),
    );
    await first.kill('SIGKILL');
    // On this small dataset the delta takes about a second: say where the kill landed (the result must be the same).
    const done = first
      .log()
      .split('\n')
      .some((l) => l.includes('"activityType":"narrowToWindow"') && l.includes('"msg":"Activity completed"'));
    process.stderr.write(`[window.test] first worker killed ${done ? 'after' : 'during'} the delta\n`);

    const second = await killTestWorker(tq, hosts[1]!);
    const waited = await runCli(['status', id, '--watch']);
    expect(waited.code, why(waited, second)).toBe(0);
    await expectSameResult(tenants, incident);
  }, 1_200_000);

  it('a worker SIGKILLed during the revert (its copy waiting for a tenant): a new worker on the host finishes, with the same result', async () => {
    const tenants = [...updated];
    const tq = uniqueName('tq_window_kill_copy');
    const host = uniqueName('host-c');
    const hosts = [host, host];
    const id = newId('window-kill-copy');
    leftovers.push({ id, host });
    const incident = await anotherIncident(tenants);

    // The copy waits for the first tenant's lock (activities/sql/lock.ts), held here as a concurrent restore would.
    const holder = new pg.Client({ connectionString: live.url });
    await holder.connect();
    let first: WorkerProcess;
    try {
      await holder.query(
        `SELECT pg_advisory_lock(hashtextextended('tenant-restore:tenant:app.tenants:' || ($1::bigint)::text, 0))`,
        [tenants[0]],
      );
      first = await killTestWorker(tq, hosts[0]!);
      const started = await start(incident.from, incident.to, tenants, id, tq);
      expect(started.code, why(started, first)).toBe(0);
      await waitUntil(
        `a copy waiting for tenant ${tenants[0]} on the first worker`,
        async () =>
          activityStarted(first, 'copyTenantRows') &&
          (
            await holder.query<{ n: number }>(
              `SELECT count(*)::int AS n FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                WHERE l.locktype = 'advisory' AND NOT l.granted AND a.datname = current_database()`,
            )
          ).rows[0]!.n > 0,
        () => first.log(),
      );
      await first.kill('SIGKILL');
    } finally {
      await holder.end();
    }

    const second = await killTestWorker(tq, hosts[1]!);
    const waited = await runCli(['status', id, '--watch']);
    expect(waited.code, why(waited, second)).toBe(0);
    await expectSameResult(tenants, incident);
  }, 1_200_000);
});
