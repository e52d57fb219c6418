/**
 * The chaos scenario of the reliability tests: a bulk restore through the product's processes (./product.ts) with
 * faults injected along the way, a concurrent writer on the other tenants, the restore as the least-privilege role
 * with a pgpass file of the test, and every invariant checked. Every byte a worker or command prints is kept, so
 * that the secrets scan can read the logs.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { expect } from 'vitest';
import { scratchDatabaseName } from '../../activities/scratch';
import { createS3Client } from '../../activities/s3';
import { restartPostgres, restartTemporal } from '../../scripts/stack';
import { takeBackup } from '../../scripts/workload/backup';
import {
  compareSnapshots,
  diffChecksums,
  ensureVerifyDatabase,
  reenableColumns,
  snapshotRows,
  tenantChecksums,
} from '../../scripts/workload/checksums';
import { generateWorkload } from '../../scripts/workload/generate';
import { pickVictims, purgeTenants, suspendTenants } from '../../scripts/workload/incident';
import { Writer, type WriterLogEntry } from '../../scripts/workload/writer';
import {
  applyGrants,
  auditEvents,
  createScratchRole,
  createWriterRole,
  dropRoles,
  installDeleteAudit,
  newPassword,
  privatePgpass,
  roleUrl,
  roleUrlWithPassword,
  s3Texts,
  scanForNeedles,
  type Needle,
} from './audit';
import { historiesText } from './history';
import { logDir, productEnv, projectRoot, runCli, WorkerProcess } from './product';
import { RestorePhaseKey, TenantsFailedKey, TenantsRestoredKey } from '../../workflows/definitions';
import { createDatabase, dropDatabase, temporalClient, uniqueName, useStackEnv } from './stack';
import { prng } from '../../scripts/workload/prng';

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Retries `fn` while a service is restarting; gives up after `attempts`. */
export async function retrying<T>(fn: () => Promise<T>, attempts = 120, pauseMs = 1000): Promise<T> {
  let last: unknown;
  for (let i = 0; i < attempts; i++) {
    try {
      return await fn();
    } catch (error) {
      last = error;
      await sleep(pauseMs);
    }
  }
  throw last;
}

// ---------------------------------------------------------------------------------------------------------------
// The chaos scenario: a bulk restore through the CLI and worker processes, with faults injected along the way, a
// concurrent writer on the other tenants, the restore as the least-privilege role, and every invariant checked.

export interface ChaosOptions {
  name: string;
  /** Tenants in live, and how many of them are deleted and restored. */
  tenants: number;
  victims: number;
  rowsTarget: number;
  /** Worker SIGKILLs (one during scratch/planning, the rest at random points of the restore). */
  kills: number;
  restartPostgres: boolean;
  restartTemporal: boolean;
  concurrency: number;
  /** Tenants per child workflow (`--group-size`). */
  groupSize: number;
  /** Tenants with more rows than this in a table are copied in chunks (exercises checkpoint resume). */
  chunkRows: number;
  seed: number;
  say?: (message: string) => void;
}

export interface FaultRecord {
  kind: 'kill-worker' | 'restart-postgres' | 'restart-temporal' | 'worker-died';
  at: number;
  done: number;
  phase?: string;
}

export interface ChaosOutcome {
  restoreId: string;
  faults: FaultRecord[];
  workerIncarnations: number;
  durationMs: number;
  restoreMs: number;
  victims: string[];
  groupSize: number;
  rowsRestored: number;
  status: { code: number; json: unknown };
  report: { code: number; json: unknown };
  checks: {
    victimDiffs: number;
    suspendedLeft: number;
    untouched: {
      rowsCompared: number;
      rowsWrittenByWriter: number;
      rowsUnchanged: number;
      violations: number;
      examples: unknown[];
    };
    writerTransactions: number;
    writerErrors: string[];
    auditByRestore: unknown[];
    auditByWriter: number;
    auditByIncident: number;
    secretFindings: Array<{ source: string; needle: string; context: string }>;
    needles: number;
    scanned: { histories: number; logs: number; s3Objects: number; bytes: number };
    markersInLive: number;
  };
}

export async function runChaosScenario(o: ChaosOptions): Promise<ChaosOutcome> {
  const say = o.say ?? ((m: string) => process.stderr.write(`[chaos ${o.name}] ${m}\n`));
  const started = Date.now();
  const env = useStackEnv();
  const random = prng(o.seed);
  const run = uniqueName(o.name);
  const roles = { restore: `${run}_restore`, scratch: `${run}_scratch`, writer: `${run}_writer` };
  const passwords = { restore: newPassword(), scratch: newPassword(), writer: newPassword() };
  const liveName = uniqueName(`${o.name}_live`);
  const liveAdminUrl = await createDatabase(liveName);
  const s3 = createS3Client();
  const dir = logDir(run);
  const faults: FaultRecord[] = [];
  let worker: WorkerProcess | undefined;
  let writer: Writer | undefined;
  const writerLog: WriterLogEntry[] = [];
  const writerErrors: string[] = [];
  let writerTransactions = 0;
  const cliOutputs = new Map<string, string>();
  let temporal: Awaited<ReturnType<typeof temporalClient>> | undefined;

  const startWriter = async () => {
    writer = new Writer({
      url: roleUrlWithPassword(roles.writer, passwords.writer, liveName),
      excludeTenants: victims,
      connections: 2,
      pauseMs: 20,
      seed: o.seed + writerLog.length,
    });
    await writer.start();
  };
  const stopWriter = async () => {
    if (!writer) return;
    const stats = await writer.stop();
    // Each writer numbers its own log from 0: renumber after what is already kept, so the order per row holds.
    const offset = writerLog.length ? Math.max(...writerLog.map((e) => e.seq)) + 1 : 0;
    for (const e of writer.log) writerLog.push({ ...e, seq: e.seq + offset });
    writerTransactions += stats.transactions;
    writerErrors.push(...stats.lastErrors);
    writer = undefined;
  };

  let victims: string[] = [];
  try {
    // --- the workload, the backup, the incident ------------------------------------------------------------------
    say(`generating ${o.tenants} tenants (~${o.rowsTarget} rows) in ${liveName}`);
    const generated = await generateWorkload(liveAdminUrl, {
      tenants: o.tenants,
      rowsTarget: o.rowsTarget,
      seed: o.seed,
    });
    victims = pickVictims(
      generated.tenantIds,
      o.victims,
      o.seed,
      generated.largestTenants.map((t) => t.tenantId),
    );
    const marker = `rowval-${randomBytes(6).toString('hex')}`;
    const admin = new pg.Client({ connectionString: liveAdminUrl });
    await admin.connect();
    let keyHashes: string[];
    try {
      // Distinctive row values of the victims: if any of them shows up in a history, a log or a report, rows leaked.
      await admin.query(`UPDATE app.tenants SET name = name || ' ' || $2 || '-' || id WHERE id = ANY($1::bigint[])`, [
        victims,
        marker,
      ]);
      await admin.query(
        `UPDATE app.issues i SET title = $2 || '-issue-' || i.id FROM app.projects p WHERE p.id = i.project_id AND p.tenant_id = ANY($1::bigint[]) AND i.id % 7 = 0`,
        [victims, marker],
      );
      keyHashes = (
        await admin.query<{ h: string }>(
          'SELECT key_hash AS h FROM app.api_keys WHERE tenant_id = ANY($1::bigint[]) ORDER BY id LIMIT 20',
          [victims],
        )
      ).rows.map((r) => r.h);
    } finally {
      await admin.end();
    }
    await suspendTenants(liveAdminUrl, victims);
    const expected = await tenantChecksums(liveAdminUrl, victims, { ignoreColumns: reenableColumns });
    const backupKey = `reliability/${run}/backup.dump`;
    const backup = await takeBackup({
      url: liveAdminUrl,
      s3,
      bucket: env.STACK_S3_BUCKET,
      key: backupKey,
      retentionDays: 1,
    });
    say(`backup ${backup.url}: ${backup.manifest.sizeBytes} bytes; ${victims.length} victims`);

    // --- roles, audit, writer, incident ---------------------------------------------------------------------------
    await createWriterRole(liveName, roles.writer, passwords.writer);
    const audited = await installDeleteAudit(liveAdminUrl);
    say(`DELETE/TRUNCATE audit on ${audited} tables`);
    await startWriter();
    await purgeTenants(liveAdminUrl, victims);
    const granted = await applyGrants(liveName, roles.restore, passwords.restore);
    if (granted.code !== 0) throw new Error(`grants.sql failed: ${granted.output}`);
    await createScratchRole(roles.scratch, passwords.scratch, [liveName]);
    const verifyUrl = await ensureVerifyDatabase(liveAdminUrl);
    await snapshotRows(liveAdminUrl, verifyUrl, 'before', victims);

    const pgpass = privatePgpass(run, [
      { role: roles.restore, password: passwords.restore },
      { role: roles.scratch, password: passwords.scratch },
    ]);
    const productEnvironment = productEnv({ PGPASSFILE: pgpass });
    const taskQueue = `chaos-${run}`;
    worker = new WorkerProcess({ taskQueue, env: productEnvironment, name: run });
    await worker.start();

    // --- start the restore through the CLI ------------------------------------------------------------------------
    const tenantsFile = join(dir, 'tenants.txt');
    writeFileSync(tenantsFile, `# chaos run ${run}\n${victims.join('\n')}\n`);
    const configFile = join(dir, 'config.json');
    const baseConfig = JSON.parse(
      readFileSync(join(projectRoot, 'scripts', 'workload', 'restore-config.json'), 'utf8'),
    ) as Record<string, unknown>;
    writeFileSync(configFile, JSON.stringify({ ...baseConfig, chunkRows: o.chunkRows }, null, 2));
    const restoreId = run.replace(/_/g, '-');
    const startArgs = [
      'start',
      '--backup',
      backup.url,
      // Scratch on the stack's scratch cluster (TENANT_RESTORE_SCRATCH_SERVER): never on live's server (issue 23).
      '--live',
      roleUrl(roles.restore, liveName),
      '--tenant-root',
      'app.tenants',
      '--tenants-file',
      tenantsFile,
      '--config',
      configFile,
      '--concurrency',
      String(o.concurrency),
      '--group-size',
      String(o.groupSize),
      '--task-queue',
      taskQueue,
      '--id',
      restoreId,
      '--json',
    ];
    const startResult = await runCli(startArgs, productEnvironment);
    cliOutputs.set('start', startResult.stdout + startResult.stderr);
    if (startResult.code !== 0)
      throw new Error(`tenant-restore start exited ${startResult.code}: ${startResult.stderr}`);
    const restoreStarted = Date.now();
    say(`restore ${restoreId} started`);

    // --- faults ----------------------------------------------------------------------------------------------------
    temporal = await temporalClient();
    const handle = () => temporal!.client.workflow.getHandle(`restore/${restoreId}`);
    const observe = async (): Promise<{ running: boolean; done: number; phase: string }> => {
      const d = await handle().describe();
      const attrs = d.typedSearchAttributes;
      const done = Number(attrs.get(TenantsRestoredKey) ?? 0) + Number(attrs.get(TenantsFailedKey) ?? 0);
      return { running: d.status.name === 'RUNNING', done, phase: String(attrs.get(RestorePhaseKey) ?? '') };
    };
    type Planned = { kind: FaultRecord['kind']; threshold: number };
    const planned: Planned[] = [];
    // One kill while scratch is being prepared or the plan built; the others at random points of the restore.
    const lateKinds: Array<FaultRecord['kind']> = [
      ...Array<FaultRecord['kind']>(Math.max(0, o.kills - 1)).fill('kill-worker'),
    ];
    if (o.restartPostgres) lateKinds.push('restart-postgres');
    if (o.restartTemporal) lateKinds.push('restart-temporal');
    const thresholds = lateKinds.map(() => Math.floor(victims.length * (0.03 + random() * 0.82))).sort((a, b) => a - b);
    for (let i = lateKinds.length - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1));
      [lateKinds[i], lateKinds[j]] = [lateKinds[j]!, lateKinds[i]!];
    }
    lateKinds.forEach((kind, i) => planned.push({ kind, threshold: thresholds[i]! }));
    const earlyKill = o.kills > 0;
    say(
      `faults planned: ${earlyKill ? 'kill during scratch/plan, ' : ''}${planned.map((p) => `${p.kind}@${p.threshold}`).join(', ')}`,
    );

    const inject = async (kind: FaultRecord['kind'], state: { done: number; phase: string }) => {
      faults.push({ kind, at: Date.now() - restoreStarted, done: state.done, phase: state.phase });
      say(`fault ${faults.length}: ${kind} (done ${state.done}/${victims.length}, phase ${state.phase})`);
      if (kind === 'kill-worker') {
        await worker!.kill('SIGKILL');
        await worker!.start();
      } else if (kind === 'restart-postgres') {
        // The writer pauses while its database is down: a write whose COMMIT reply is lost could not be logged exactly.
        await stopWriter();
        await restartPostgres(() => undefined);
        await startWriter();
      } else if (kind === 'restart-temporal') {
        await restartTemporal(() => undefined);
      }
    };

    if (earlyKill) {
      await sleep(500 + random() * 2500);
      await inject('kill-worker', await retrying(observe));
    }
    let state = await retrying(observe);
    while (state.running) {
      if (!worker.running) {
        // Not a planned fault: the worker died on its own (a supervisor would restart it). Counted and restarted.
        faults.push({ kind: 'worker-died', at: Date.now() - restoreStarted, done: state.done });
        say(`worker exited by itself; restarting it.\n${worker.log().slice(-2000)}`);
        await worker.kill();
        await worker.start();
      }
      const next = planned[0];
      if (next && state.done >= next.threshold) {
        planned.shift();
        await sleep(random() * 2000);
        await inject(next.kind, await retrying(observe));
      } else {
        await sleep(500);
      }
      state = await retrying(observe);
    }
    const restoreMs = Date.now() - restoreStarted;
    say(`restore ended after ${Math.round(restoreMs / 1000)} s; ${planned.length} planned faults not reached`);
    for (const p of planned) faults.push({ kind: p.kind, at: -1, done: -1, phase: 'not reached' });

    const status = await runCli(['status', restoreId, '--json'], productEnvironment);
    const report = await runCli(['report', restoreId, '--json'], productEnvironment);
    cliOutputs.set('status', status.stdout + status.stderr);
    cliOutputs.set('report', report.stdout + report.stderr);
    await stopWriter();
    await worker.stop();

    // --- checks ----------------------------------------------------------------------------------------------------
    const actual = await tenantChecksums(liveAdminUrl, victims, { ignoreColumns: reenableColumns });
    const victimDiffs = diffChecksums(expected, actual);
    let rowsRestored = 0;
    for (const tables of Object.values(actual)) for (const t of Object.values(tables)) rowsRestored += t.rows;
    const check = new pg.Client({ connectionString: liveAdminUrl });
    await check.connect();
    let suspendedLeft = 0;
    let markersInLive = 0;
    try {
      suspendedLeft = Number(
        (
          await check.query<{ n: string }>(
            `SELECT (SELECT count(*) FROM app.billing_accounts WHERE tenant_id = ANY($1::bigint[]) AND NOT active)
        + (SELECT count(*) FROM app.app_installations WHERE tenant_id = ANY($1::bigint[]) AND NOT enabled) AS n`,
            [victims],
          )
        ).rows[0]!.n,
      );
      markersInLive = Number(
        (
          await check.query<{ n: string }>(
            `SELECT (SELECT count(*) FROM app.tenants WHERE name LIKE '%' || $1 || '%') + (SELECT count(*) FROM app.issues WHERE title LIKE $1 || '%') AS n`,
            [marker],
          )
        ).rows[0]!.n,
      );
    } finally {
      await check.end();
    }
    await snapshotRows(liveAdminUrl, verifyUrl, 'after', victims);
    const untouched = await compareSnapshots(verifyUrl, 'before', 'after', writerLog);
    const events = await auditEvents(liveAdminUrl);
    const auditByRestore = events.filter(
      (e) =>
        e.current_user === roles.restore ||
        e.session_user === roles.restore ||
        e.current_user === roles.scratch ||
        e.app.startsWith('tenant-restore'),
    );

    // I5: histories of the parent (every run) and of every child, the worker logs, the CLI output, the artifacts in S3.
    // Every child of the restore (groups of tenants by default, or one per tenant), found by its RestoreId attribute.
    const children = new Set<string>();
    for await (const e of temporal.client.workflow.list({ query: `RestoreId = "${restoreId}"` }))
      children.add(e.workflowId);
    children.delete(`restore/${restoreId}`);
    if (children.size === 0)
      throw new Error(`no child workflow of restore ${restoreId} is visible: the I5 scan would have nothing to read`);
    const workflowIds = [`restore/${restoreId}`, ...[...children].sort()];
    const texts = new Map<string, string>();
    for (const [id, text] of await retrying(() => historiesText(temporal!.client, workflowIds), 10))
      texts.set(`history ${id}`, text);
    const histories = texts.size;
    texts.set('worker logs', worker.log());
    for (const [name, text] of cliOutputs) texts.set(`cli ${name}`, text);
    const artifacts = await s3Texts(s3, env.STACK_S3_BUCKET, `restores/${restoreId}/`);
    for (const [key, text] of artifacts) texts.set(`s3 ${key}`, text);
    const superuserPassword = decodeURIComponent(new URL(env.STACK_PG_URL).password);
    const needles: Needle[] = [
      { label: 'restore role password', value: passwords.restore },
      { label: 'scratch role password', value: passwords.scratch },
      { label: 'writer role password', value: passwords.writer },
      { label: 'postgres superuser password', value: superuserPassword },
      { label: 'S3 secret key', value: env.AWS_SECRET_ACCESS_KEY },
      { label: 'seeded row value', value: marker },
      ...keyHashes.map((h, i) => ({ label: `api key hash ${i}`, value: h })),
    ];
    const secretFindings = scanForNeedles(texts, needles);
    writeFileSync(join(dir, 'faults.json'), JSON.stringify(faults, null, 2));

    const outcome: ChaosOutcome = {
      restoreId,
      faults,
      workerIncarnations: worker.incarnation,
      durationMs: Date.now() - started,
      restoreMs,
      victims,
      groupSize: o.groupSize,
      rowsRestored,
      status: { code: status.code, json: status.json },
      report: { code: report.code, json: report.json },
      checks: {
        victimDiffs: victimDiffs.length,
        suspendedLeft,
        untouched,
        writerTransactions,
        writerErrors,
        auditByRestore,
        auditByWriter: events.filter((e) => e.current_user === roles.writer).length,
        auditByIncident: events.filter((e) => e.app === 'workload-incident').length,
        secretFindings: secretFindings.slice(0, 20),
        needles: needles.length,
        scanned: {
          histories,
          logs: 1 + cliOutputs.size,
          s3Objects: artifacts.size,
          bytes: [...texts.values()].reduce((n, t) => n + t.length, 0),
        },
        markersInLive,
      },
    };
    if (victimDiffs.length) say(`victim diffs: ${JSON.stringify(victimDiffs.slice(0, 5))}`);
    // Kept for inspection only when a check fails (the caller asserts); a clean run drops its databases.
    const clean =
      victimDiffs.length === 0 &&
      untouched.violations === 0 &&
      auditByRestore.length === 0 &&
      secretFindings.length === 0;
    if (clean) {
      await dropDatabase(`${liveName}_verify`);
      await dropDatabase(liveName);
      await dropDatabase(scratchDatabaseName(restoreId));
      await dropRoles([roles.restore, roles.scratch, roles.writer]);
    } else {
      say(`kept ${liveName} and ${liveName}_verify for inspection; logs in ${dir}`);
    }
    return outcome;
  } finally {
    await stopWriter().catch(() => undefined);
    await worker?.stop().catch(() => undefined);
    await temporal?.close().catch(() => undefined);
    s3.destroy();
  }
}

/** The invariants every chaos outcome must satisfy (shared by the chaos run and its small sibling in `npm test`). */
export function expectInvariants(outcome: ChaosOutcome): void {
  const c = outcome.checks;
  // I3/I4: every restored tenant equals the backup (count and checksum per table: no duplicate, no missing row) ...
  expect(c.victimDiffs).toBe(0);
  expect(outcome.rowsRestored).toBeGreaterThan(outcome.victims.length * 10);
  // ... and the re-enable actions ran for every one of them (billing on, apps enabled).
  expect(c.suspendedLeft).toBe(0);
  // I1: every other tenant is exactly as the writer's own log says, although the writer ran the whole time.
  expect(c.writerTransactions).toBeGreaterThan(50);
  expect(c.untouched.rowsWrittenByWriter).toBeGreaterThan(0);
  expect(c.untouched.violations, JSON.stringify(c.untouched.examples)).toBe(0);
  // I2: the audit saw the writer's and the incident's deletes, and none from the restore.
  expect(c.auditByWriter).toBeGreaterThan(0);
  expect(c.auditByIncident).toBeGreaterThan(0);
  expect(c.auditByRestore).toEqual([]);
  // I5: no password and no row value in the histories, the worker logs, the CLI output or the S3 artifacts; the
  // seeded row values are really in live (the needles are real data, so the scan could have found them).
  expect(c.markersInLive).toBeGreaterThan(outcome.victims.length);
  expect(c.scanned.histories).toBe(Math.ceil(outcome.victims.length / outcome.groupSize) + 1);
  expect(c.scanned.s3Objects).toBeGreaterThan(0);
  expect(c.secretFindings).toEqual([]);
}
