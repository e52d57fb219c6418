/**
 * `npm run demo`: the whole story on one machine, in a few minutes.
 *
 *   1. bring up the dev stack (Temporal, PostgreSQL, MinIO)
 *   2. create a multi-tenant live database (several hundred tenants, more than a million rows)
 *   3. the offboarding job, run with the wrong id list, suspends the victims (billing off, apps disabled)
 *   4. the nightly backup: pg_dump -Fc into MinIO, immutable, with a manifest
 *   5. the other tenants keep writing (a concurrent writer)
 *   6. the offboarding job's purge phase hard-deletes the victims
 *   7. a worker and a bulkRestore bring them back; progress and the Web UI link are shown
 *   8. the report: tenants restored, rows, time, validation, billing and apps re-enabled
 *   9. independent checks: every victim equals the backup; no row of another tenant changed except by its own writer
 *  10. point in time: the rows the victims wrote after the nightly dump, brought back from the WAL archive
 * (act one prints these as steps 1-11.)
 *
 * Act two, the incident window (issue 26; skipped with --skip-window), on a fresh database of 30 small tenants in the
 * same archived cluster, printed as steps 12-17:
 *  12. a base backup; through the day users delete their own rows (a comment, a label, an app) and one closes their
 *      account
 *  13. the purge runs with a wrong id list (5 tenants hard-deleted) together with a wrong UPDATE of 2 living tenants'
 *      issues, in one transaction; after it users go on deleting their own rows
 *  14. `tenant-restore when` finds the window T0..T1 from the purged tenants' ids (or, in a build without `when`, the
 *      WAL positions captured around the purge)
 *  15. `discover --from T0 --to T1` lists exactly the purged tenants (absent) and the wrongly updated ones (changed):
 *      none of the users' own deletions, not the closed account
 *  16. `start --from T0 --to T1`: the three-way revert against live now
 *  17. checks: the purged tenants equal T0, the wrongly updated issues are back to T0, every user deletion before T0
 *      and after T1 is still deleted, the closed account is still closed, every other tenant is untouched
 *
 *   npm run demo -- [--tenants 600] [--victims 200] [--rows 1200000] [--concurrency 2] [--seed 42] [--keep] [--skip-window]
 *
 * Exit code 0 when every check holds, 1 otherwise.
 */
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { Client, Connection } from '@temporalio/client';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { connect, databaseName, escapeIdentifier, resolveConnectionString, withDatabase } from '../activities/db';
import type { RestoreConfig } from '../activities/restore-types';
import type { DiscoveredTenant, DiscoverSummary } from '../activities/discover';
import { createS3Client, getJson, getText, parseS3Url } from '../activities/s3';
import type { RestoreReport } from '../activities/report';
import {
  bulkWorkflowId,
  defaultGroupSize,
  discoverWorkflowId,
  type DiscoverInput,
  progressQuery,
  type BulkRestoreInput,
  type BulkRestoreResult,
  type RestoreProgress,
} from '../workflows/definitions';
import { archiveWalNow, clockMicrosSql, pgbackrest, projectRoot, stackDir, stackUp } from './stack';
import {
  compareSnapshots,
  diffChecksums,
  ensureVerifyDatabase,
  reenableColumns,
  snapshotRows,
  tenantChecksums,
  type TenantChecksums,
} from './workload/checksums';
import { generateWorkload } from './workload/generate';
import { pickVictims, purgeTenants, suspendTenants } from './workload/incident';
import { takeBackup } from './workload/backup';
import {
  deletionsBack,
  purgeAndWrongUpdate,
  usersDeleteOwnRows,
  windowWithin,
  type UserDeletion,
} from './workload/window-day';
import { Writer } from './workload/writer';

const usage = `usage: npm run demo -- [--tenants N] [--victims N] [--rows N] [--concurrency N] [--group-size N] [--seed N] [--writer-connections N] [--keep] [--skip-window]

  --tenants             tenants in the live database (default 600)
  --victims             tenants the incident hard-deletes (default 200)
  --rows                approximate rows in the live database (default 1200000)
  --concurrency         child workflows (groups of tenants) restored at the same time (default 2, the product's)
  --group-size          tenants per child workflow (default 20, the product's; 1: one child per tenant)
  --seed                data and victim choice (default 42)
  --writer-connections  sessions of the writer that keeps changing the other tenants (default 2)
  --database            name of the live database (default demo_live; dropped and recreated)
  --keep                keep the worker's log and the databases for inspection (they are kept anyway on failure)
  --stop-before-restore stop after the incident (for trying the workload alone)
  --skip-window         skip act two, the incident window (steps 12-17: a fresh database '<database>_window' of 30
                        tenants, users deleting their own rows around a purge, 'when', 'discover --from T0 --to T1' and
                        the three-way revert 'start --from T0 --to T1', checked); it adds a minute or two`;

/** Steps of act one; act two (the incident window) adds windowSteps. */
const actOneSteps = 11;
const windowSteps = 6;
let steps = actOneSteps + windowSteps;
let stepNo = 0;
const t0 = Date.now();
const elapsed = () => `${((Date.now() - t0) / 1000).toFixed(1).padStart(6)} s`;
function step(title: string): void {
  stepNo += 1;
  process.stdout.write(`\n[${stepNo}/${steps}] ${title}\n`);
}
function say(message: string): void {
  process.stdout.write(`${elapsed()}  ${message}\n`);
}
const fmt = (n: number) => n.toLocaleString('en-US');
const secs = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

function parseFlags() {
  const { values } = parseArgs({
    options: {
      tenants: { type: 'string', default: '600' },
      victims: { type: 'string', default: '200' },
      rows: { type: 'string', default: '1200000' },
      concurrency: { type: 'string', default: '2' },
      'group-size': { type: 'string', default: String(defaultGroupSize) },
      seed: { type: 'string', default: '42' },
      'writer-connections': { type: 'string', default: '2' },
      database: { type: 'string', default: 'demo_live' },
      keep: { type: 'boolean', default: false },
      'stop-before-restore': { type: 'boolean', default: false },
      'skip-window': { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  });
  const int = (name: keyof typeof values, min: number) => {
    const n = Number(values[name]);
    if (!Number.isInteger(n) || n < min) throw new Error(`--${name} must be an integer >= ${min}\n\n${usage}`);
    return n;
  };
  const database = String(values.database);
  if (!/^[a-z_][a-z0-9_]*$/.test(database)) throw new Error(`--database must be a lowercase identifier\n\n${usage}`);
  const options = {
    tenants: int('tenants', 2),
    victims: int('victims', 1),
    rows: int('rows', 1000),
    concurrency: int('concurrency', 1),
    groupSize: int('group-size', 1),
    seed: int('seed', 0),
    writerConnections: int('writer-connections', 0),
    database,
    keep: values.keep === true,
    stopBeforeRestore: values['stop-before-restore'] === true,
    skipWindow: values['skip-window'] === true,
    help: values.help === true,
  };
  if (options.victims >= options.tenants) throw new Error(`--victims must be smaller than --tenants\n\n${usage}`);
  return options;
}

/** Spawns `tenant-restore worker` on the demo's own task queue; its log goes to .stack/demo-worker.log. */
function startWorkerProcess(
  taskQueue: string,
  logName = 'demo-worker.log',
  extraEnv: NodeJS.ProcessEnv = {},
): { child: ChildProcess; logFile: string } {
  mkdirSync(stackDir, { recursive: true });
  const logFile = join(stackDir, logName);
  const log = openSync(logFile, 'w');
  const child = spawn(
    process.execPath,
    [join(projectRoot, 'bin', 'tenant-restore'), 'worker', '--task-queue', taskQueue],
    {
      stdio: ['ignore', log, log],
      env: { ...process.env, LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn', ...extraEnv },
    },
  );
  return { child, logFile };
}

async function stopWorkerProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
  await exited;
  clearTimeout(timer);
}

function progressLine(p: RestoreProgress): string {
  const c = p.counts;
  const active = c.preflight + c.copy + c.validate + c.reenable;
  const done = c.restored + c.failed + c.cancelled;
  const width = 30;
  const filled = p.total ? Math.round((done / p.total) * width) : 0;
  return (
    `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${p.phase.padEnd(17)} ${done}/${p.total} done ` +
    `(restored ${c.restored}, failed ${c.failed}) · running ${active} (preflight ${c.preflight}, copy ${c.copy}, validate ${c.validate}, re-enable ${c.reenable})` +
    `${c['awaiting-approval'] ? ` · awaiting approval ${c['awaiting-approval']}` : ''} · pending ${c.pending}`
  );
}

async function main(): Promise<number> {
  const options = parseFlags();
  if (options.help) {
    process.stdout.write(`${usage}\n`);
    return 0;
  }
  if (options.skipWindow) steps = actOneSteps;
  process.stdout.write(
    `tenant-restore demo: ${options.victims} of ${options.tenants} tenants hard-deleted by mistake, restored from an S3 backup\n` +
      'while the other tenants keep writing. Sizes: ' +
      `--tenants ${options.tenants} --victims ${options.victims} --rows ${options.rows} --concurrency ${options.concurrency} --group-size ${options.groupSize} --seed ${options.seed}\n`,
  );

  // 1 ---------------------------------------------------------------------------------------------------------------
  step(
    'Bringing up the dev stack: Temporal dev server, PostgreSQL, MinIO (idempotent; a first run builds Go binaries)',
  );
  const env = await stackUp((m) => say(m));
  Object.assign(process.env, env);
  const serverUrl = new URL(env.STACK_PG_URL);
  serverUrl.password = '';
  // URLs handed to workflows carry no password: the worker reads it from PGPASSFILE (invariant I5).
  const adminUrl = serverUrl.toString().replace(':@', '@');
  const liveUrl = withDatabase(adminUrl, options.database);
  say(
    `Temporal ${env.TEMPORAL_ADDRESS} · Web UI ${env.TEMPORAL_UI_URL} · PostgreSQL ${serverUrl.host} · MinIO ${env.AWS_ENDPOINT_URL_S3}`,
  );

  // 2 ---------------------------------------------------------------------------------------------------------------
  step(
    `Creating the live database '${options.database}': ${options.tenants} tenants, ~${fmt(options.rows)} rows (schema scripts/workload/schema.sql)`,
  );
  const admin = await connect(adminUrl, 'demo');
  try {
    for (const name of [options.database, `${options.database}_verify`]) {
      await admin.query(`DROP DATABASE IF EXISTS ${escapeIdentifier(name)} WITH (FORCE)`);
    }
    await admin.query(`CREATE DATABASE ${escapeIdentifier(options.database)}`);
  } finally {
    await admin.end();
  }
  const generated = await generateWorkload(liveUrl, {
    tenants: options.tenants,
    rowsTarget: options.rows,
    seed: options.seed,
    onProgress: (m) => say(`  ${m}`),
  });
  say(
    `generated ${fmt(generated.totalRows)} rows in ${secs(generated.durationMs)} (${fmt(Math.round(generated.totalRows / (generated.durationMs / 1000)))} rows/s):`,
  );
  for (const [table, n] of Object.entries(generated.rows)) say(`  ${table.padEnd(22)} ${fmt(n).padStart(10)}`);
  say(
    `largest tenants (issues): ${generated.largestTenants.map((t) => `${t.tenantId} (${fmt(t.issues)})`).join(', ')}`,
  );

  // 3 ---------------------------------------------------------------------------------------------------------------
  const victims = pickVictims(
    generated.tenantIds,
    options.victims,
    options.seed,
    generated.largestTenants.map((t) => t.tenantId),
  );
  step(
    `The offboarding job runs with the wrong id list: it suspends ${victims.length} active tenants (billing off, apps disabled)`,
  );
  const suspended = await suspendTenants(liveUrl, victims);
  say(
    `suspended ${fmt(suspended.billingAccounts)} billing accounts and ${fmt(suspended.appInstallations)} app installations; victims include the two largest tenants`,
  );
  say(`victims: ${victims.slice(0, 12).join(', ')}${victims.length > 12 ? `, ... (${victims.length})` : ''}`);

  // 4 ---------------------------------------------------------------------------------------------------------------
  const backupKey = `backups/${options.database}/${new Date().toISOString().replace(/[:.]/g, '-')}.dump`;
  step(
    `The nightly backup: pg_dump -Fc streamed into MinIO (s3://${env.STACK_S3_BUCKET}/${backupKey}) with a manifest`,
  );
  const s3 = createS3Client();
  const backup = await takeBackup({
    url: liveUrl,
    s3,
    bucket: env.STACK_S3_BUCKET,
    key: backupKey,
    retentionDays: 1,
    onProgress: (b) => say(`  uploaded ${fmt(Math.round(b / 1048576))} MB`),
  });
  const m = backup.manifest;
  say(
    `backup ${backup.url}: ${fmt(Math.round(m.sizeBytes / 1048576))} MB in ${secs(m.durationMs)}, sha256 ${m.sha256.slice(0, 16)}..., ` +
      (m.immutability.mode === 'object-lock'
        ? `object lock ${m.immutability.lockMode} until ${m.immutability.retainUntil}`
        : 'bucket versioning'),
  );
  say(`manifest ${backup.manifestUrl}`);
  // The victims as the backup holds them (nothing writes them between backup and purge), to check the restore later.
  const victimsInBackup = await tenantChecksums(liveUrl, victims, { ignoreColumns: reenableColumns });
  const victimRows = Object.values(victimsInBackup).reduce(
    (s, tables) => s + Object.values(tables).reduce((a, t) => a + t.rows, 0),
    0,
  );
  say(`recorded per-tenant, per-table checksums of the ${victims.length} victims: ${fmt(victimRows)} rows`);
  // The cluster's pgBackRest base backup, taken with the dump; the stack's archive_command keeps archiving every WAL
  // segment after it (scripts/stack.ts), so the archive holds every commit up to the incident.
  const stanza = env.STACK_PGBACKREST_STANZA;
  const baseStarted = Date.now();
  const base = pgbackrest([`--stanza=${stanza}`, 'backup', '--type=incr']);
  if (base.status !== 0) throw new Error(`pgbackrest backup failed:\n${base.output}`);
  say(
    `and the cluster's pgBackRest base backup (stanza ${stanza}, incremental) in ${secs(Date.now() - baseStarted)}; from here on its WAL archive holds every commit`,
  );
  // pgBackRest records when a backup ended to the second: the writes below come after that second.
  await new Promise((r) => setTimeout(r, 1500));

  // 5 ---------------------------------------------------------------------------------------------------------------
  step(
    `The other ${fmt(options.tenants - victims.length)} tenants keep working: a writer with ${options.writerConnections} sessions inserts, updates and deletes their rows`,
  );
  const writer = new Writer({
    url: liveUrl,
    excludeTenants: victims,
    connections: options.writerConnections,
    pauseMs: 10,
    seed: options.seed,
  });
  if (options.writerConnections > 0) await writer.start();
  // The victims are at work too, until the moment they are deleted: what a restore from the nightly dump loses.
  const victimWriter = new Writer({
    url: liveUrl,
    excludeTenants: [],
    onlyTenants: victims,
    insertsOnly: true,
    connections: 1,
    pauseMs: 40,
    seed: options.seed + 1,
  });
  await victimWriter.start();
  const victimWritesFrom = Date.now();
  await new Promise((r) => setTimeout(r, 2000));
  say(`writer running: ${fmt(writer.log.length)} row changes so far, p50 ${writer.stats().latency.p50.toFixed(1)} ms`);

  // 6 ---------------------------------------------------------------------------------------------------------------
  const victimWrites = (await victimWriter.stop(), victimWriter.log.filter((e) => e.op === 'insert'));
  const victimsBeforeDeletion = await tenantChecksums(liveUrl, victims, { ignoreColumns: reenableColumns });
  const incidentAt = await databaseNow(liveUrl);
  const victimWindowMs = Date.now() - victimWritesFrom;
  say(
    `the victims wrote ${fmt(victimWrites.length)} rows in the ${secs(victimWindowMs)} after the nightly backup; the last commit before the purge is before ${incidentAt}`,
  );
  step(`The purge phase hard-deletes the ${victims.length} suspended tenants, children first, in one transaction`);
  const purge = await purgeTenants(liveUrl, victims);
  say(
    `deleted ${fmt(purge.totalDeleted)} rows in ${secs(purge.durationMs)}: ${Object.entries(purge.deleted)
      .map(([t, n]) => `${t.replace('app.', '')} ${fmt(n)}`)
      .join(', ')}`,
  );
  const verifyUrl = await ensureVerifyDatabase(liveUrl);
  const before = await snapshotRows(liveUrl, verifyUrl, 'before', victims);
  say(
    `snapshot of every other tenant's rows taken into '${options.database}_verify' (${fmt(before.rows)} row digests, ${secs(before.durationMs)}); the writer keeps going`,
  );

  if (options.stopBeforeRestore) {
    const stats = await writer.stop();
    say(
      `stopped before the restore, as asked. Writer: ${stats.transactions} transactions, ${stats.errors} errors, p50 ${stats.latency.p50.toFixed(1)} ms, p99 ${stats.latency.p99.toFixed(1)} ms`,
    );
    s3.destroy();
    return 0;
  }

  // 7 ---------------------------------------------------------------------------------------------------------------
  const restoreId = `demo-${Date.now().toString(36)}`;
  const taskQueue = `tenant-restore-demo-${restoreId}`;
  const worker = startWorkerProcess(taskQueue);
  const connection = await Connection.connect({ address: env.TEMPORAL_ADDRESS });
  const client = new Client({ connection, namespace: env.TEMPORAL_NAMESPACE });
  let ok = true;
  let discovered: DiscoverSummary | undefined;
  try {
    step(
      "Who was hit? discover compares every tenant of the backup with live, table by table; the purge script's own id list is not trusted",
    );
    say(`started worker pid ${worker.child.pid} on task queue ${taskQueue} (log: .stack/demo-worker.log)`);
    const discoverId = `${restoreId}-discover`;
    const discoverStarted = Date.now();
    discovered = (await client.workflow.execute('discover', {
      taskQueue,
      workflowId: discoverWorkflowId(discoverId),
      args: [
        {
          discoverId,
          // The stack's scratch cluster: a backup is never loaded on live's server (issue 23, item 8).
          source: { kind: 'backup', backup: backup.url, scratchServer: env.TENANT_RESTORE_SCRATCH_SERVER },
          live: liveUrl,
          tenantRoot: 'app.tenants',
          artifacts: { bucket: env.STACK_S3_BUCKET, prefix: `restores/${discoverId}/` },
          // The restore below starts from the scratch discover loaded, instead of loading the backup again.
          keepScratch: true,
        } satisfies DiscoverInput,
      ],
    })) as DiscoverSummary;
    const c = discovered.counts;
    say(
      `discover in ${secs(Date.now() - discoverStarted)} (backup loaded into scratch, ${discovered.tables} tables compared): ` +
        `${c.absent} absent, ${c.partial} partial, ${c.changed} changed, ${c.grown} grown, ${c.intact} intact, ${c.new} new`,
    );
    for (const w of discovered.warnings) say(`WARNING: ${w}`);
    const list = await getText(s3, parseS3Url(discovered.artifacts.list));
    const found = list
      .split('\n')
      .filter((l) => l.trim() && !l.startsWith('#'))
      .map((l) => l.trim());
    const same = found.length === victims.length && [...victims].map(String).sort().join() === [...found].sort().join();
    say(
      `the absent tenants discover found ${same ? 'are exactly' : 'DIFFER FROM'} the ${victims.length} the purge deleted; the demo restores those`,
    );
    say(
      `the ${c.partial} partial and ${c.changed} changed tenants are the writer's work since the backup (it deletes labels and attachments, ` +
        `updates issues): a tenant's own deletions look like damage to a comparison, so partial tenants are restored only with --allow-partial, when you know why`,
    );
    if (!same) ok = false;

    step(
      `Restoring what discover found: one bulkRestore (restore id ${restoreId}, groups of ${options.groupSize} tenants, concurrency ${options.concurrency}) from discover's scratch`,
    );
    const config = JSON.parse(
      readFileSync(join(__dirname, 'workload', 'restore-config.json'), 'utf8'),
    ) as RestoreConfig;
    const input: BulkRestoreInput = {
      restoreId,
      source: discovered.scratch
        ? { kind: 'scratch', scratch: discovered.scratch.ref }
        : { kind: 'backup', backup: backup.url, scratchServer: env.TENANT_RESTORE_SCRATCH_SERVER },
      live: liveUrl,
      tenantRoot: 'app.tenants',
      tenants: found,
      conflict: 'skip',
      concurrency: options.concurrency,
      groupSize: options.groupSize,
      config,
      artifacts: { bucket: env.STACK_S3_BUCKET, prefix: `restores/${restoreId}/` },
    };
    const started = Date.now();
    const handle = await client.workflow.start('bulkRestore', {
      taskQueue,
      workflowId: bulkWorkflowId(restoreId),
      args: [input],
    });
    const ui = `${env.TEMPORAL_UI_URL}/namespaces/${env.TEMPORAL_NAMESPACE}`;
    say(`started workflow ${bulkWorkflowId(restoreId)}`);
    say(`Web UI: ${ui}/workflows/${encodeURIComponent(bulkWorkflowId(restoreId))}`);
    say(
      `        all of this restore's workflows: ${ui}/workflows?query=${encodeURIComponent(`RestoreId="${restoreId}"`)}`,
    );
    const resultPromise = handle.result() as Promise<BulkRestoreResult>;
    let finished = false;
    resultPromise.then(
      () => (finished = true),
      () => (finished = true),
    );
    let lastLine = '';
    while (!finished) {
      await Promise.race([resultPromise.catch(() => undefined), new Promise((r) => setTimeout(r, 3000))]);
      if (finished) break;
      try {
        const line = progressLine(await handle.query(progressQuery));
        if (line !== lastLine) say(line);
        lastLine = line;
      } catch {
        // The first query can come before the first workflow task: try again next tick.
      }
      if (worker.child.exitCode !== null)
        throw new Error(`the worker exited (code ${worker.child.exitCode}); see .stack/demo-worker.log`);
    }
    const result = await resultPromise;
    const wallMs = Date.now() - started;
    say(
      `bulkRestore ${result.status}: ${result.restored}/${result.total} restored, ${result.failed} failed, in ${secs(wallMs)}`,
    );

    // 8 -------------------------------------------------------------------------------------------------------------
    step('The report');
    let report: RestoreReport | undefined;
    if (result.report) {
      const [, bucket, key] = /^s3:\/\/([^/]+)\/(.+)$/.exec(result.report.json) ?? [];
      report = JSON.parse(
        await (await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }))).Body!.transformToString(),
      ) as RestoreReport;
    }
    if (!report) {
      ok = false;
      say('no report was written');
    } else {
      const rows = Object.values(report.totals.rows).reduce((a, b) => a + b, 0);
      const validated = report.tenants.filter(
        (t) => t.validation.length > 0 && t.validation.every((v) => v.match) && t.orphans.length === 0,
      ).length;
      const tables = report.tenants.reduce((s, t) => s + t.validation.length, 0);
      const actionsDone = (name: string) =>
        report!.tenants.filter((t) => t.actions.some((a) => a.name === name && a.status === 'done')).length;
      say(
        `tenants restored  ${report.totals.restored}/${report.totals.tenants} (failed ${report.totals.failed}, cancelled ${report.totals.cancelled})`,
      );
      say(
        `rows restored     ${fmt(rows)} in ${secs(report.durationMs)} (${fmt(Math.round(rows / (report.durationMs / 1000)))} rows/s end to end, scratch load ${secs(report.source.scratchMs ?? 0)})`,
      );
      for (const [table, n] of Object.entries(report.totals.rows)) say(`  ${table.padEnd(22)} ${fmt(n).padStart(10)}`);
      say(
        `validation        ${validated}/${report.totals.tenants} tenants: ${fmt(tables)} per-table counts and checksums equal scratch, no FK orphans`,
      );
      say(
        `${report.source.sha256 ? `backup checked    sha256 ${report.source.sha256.slice(0, 16)}... (verified by ${report.source.verifiedBy ?? '?'})` : "source            the scratch discover loaded (discover checked the backup's sha256)"}; plan ${report.plan?.digest.slice(0, 12) ?? '?'} (${report.plan?.tables ?? '?'} tables)`,
      );
      say(
        `billing re-enabled  ${actionsDone('reactivate-billing')}/${report.totals.tenants} tenants · apps re-enabled ${actionsDone('reenable-apps')}/${report.totals.tenants}`,
      );
      say(`tenant time       median ${secs(report.timing.tenantMsMedian)}, max ${secs(report.timing.tenantMsMax)}`);
      say(`full report       ${result.report!.markdown} (and ${result.report!.json})`);
      for (const f of report.tenants.filter((t) => t.status !== 'restored').slice(0, 10))
        say(`  ${f.tenantId}: ${f.status} ${f.error ?? ''}`);
      if (report.totals.restored !== victims.length || validated !== victims.length) ok = false;
    }
    if (result.status !== 'succeeded') ok = false;
  } finally {
    await connection.close();
    await stopWorkerProcess(worker.child);
    say('worker stopped');
    // The scratch discover kept for the restore: the restore did not create it, so it does not drop it.
    if (discovered?.scratch && !discovered.scratch.dropped) {
      // It lives on the scratch cluster (TENANT_RESTORE_SCRATCH_SERVER), named by an alias (`scratch/<database>`).
      const scratchName = databaseName(resolveConnectionString(discovered.scratch.ref, { ...process.env, ...env }));
      const admin = await connect(env.STACK_PG_SCRATCH_URL, 'demo');
      try {
        await admin.query(`DROP DATABASE IF EXISTS ${escapeIdentifier(scratchName)}`);
        say(`dropped discover's scratch ${scratchName}`);
      } finally {
        await admin.end();
      }
    }
  }

  // 9 ---------------------------------------------------------------------------------------------------------------
  step('Independent checks (scripts/workload/checksums.ts): the victims equal the backup, nobody else was touched');
  const stats = await writer.stop();
  say(
    `writer stopped: ${fmt(stats.transactions)} transactions (${Object.entries(stats.byOp)
      .map(([k, v]) => `${k} ${v}`)
      .join(', ')}), ` +
      `${stats.errors} errors, latency p50 ${stats.latency.p50.toFixed(1)} ms, p99 ${stats.latency.p99.toFixed(1)} ms`,
  );
  if (stats.errors > 0) say(`  writer errors: ${stats.lastErrors.join(' | ')}`);

  const victimsNow = await tenantChecksums(liveUrl, victims, { ignoreColumns: reenableColumns });
  const diffs = diffChecksums(victimsInBackup, victimsNow);
  const equalTenants = victims.filter((v) => !diffs.some((d) => d.tenantId === v)).length;
  say(
    `victims equal to the backup: ${equalTenants}/${victims.length} tenants, ${Object.keys(victimsInBackup[victims[0]]).length} tables each, ` +
      `${fmt(victimRows)} rows (count and checksum per tenant and table; the re-enabled flags and their updated_at left out)`,
  );
  for (const d of diffs.slice(0, 10))
    say(
      `  DIFFERENT ${d.tenantId} ${d.table}: expected ${d.expected.rows} rows/${d.expected.checksum}, found ${d.actual.rows}/${d.actual.checksum}`,
    );

  const flagsDb = await connect(liveUrl, 'demo');
  let billingOff = -1;
  let appsOff = -1;
  try {
    const r = await flagsDb.query<{ billing_off: string; apps_off: string }>(
      `
      SELECT (SELECT count(*) FROM app.billing_accounts WHERE tenant_id = ANY($1::bigint[]) AND NOT active) AS billing_off,
             (SELECT count(*) FROM app.app_installations WHERE tenant_id = ANY($1::bigint[]) AND NOT enabled) AS apps_off`,
      [victims],
    );
    billingOff = Number(r.rows[0].billing_off);
    appsOff = Number(r.rows[0].apps_off);
  } finally {
    await flagsDb.end();
  }
  say(`billing accounts of the victims still off: ${billingOff}; app installations still disabled: ${appsOff}`);

  const after = await snapshotRows(liveUrl, verifyUrl, 'after', victims);
  const untouched = await compareSnapshots(verifyUrl, 'before', 'after', writer.log);
  say(
    `other tenants: ${fmt(untouched.rowsCompared)} rows compared row by row (snapshot before the restore vs after, ${secs(after.durationMs)}):`,
  );
  say(
    `  ${fmt(untouched.rowsUnchanged)} unchanged, ${fmt(untouched.rowsWrittenByWriter)} changed by the writer and exactly as it left them, ${untouched.violations} changed by anyone else`,
  );
  for (const e of untouched.examples)
    say(
      `  VIOLATION ${e.table} ${e.key} (tenant ${e.tenantId ?? 'shared'}): before ${e.before ?? 'absent'}, after ${e.after ?? 'absent'}, writer ${e.writer === undefined ? 'never touched it' : (e.writer ?? 'deleted it')}`,
    );
  s3.destroy();

  // 10 --------------------------------------------------------------------------------------------------------------
  const pointInTime = await pointInTimeChapter({
    liveUrl,
    database: options.database,
    stanza,
    at: incidentAt,
    victims,
    victimWrites,
    victimWindowMs,
    victimsBeforeDeletion,
    bucket: env.STACK_S3_BUCKET,
    restoreId: `demo-${Date.now().toString(36)}-pitr`,
  });
  if (!pointInTime) ok = false;

  // 12-17 -----------------------------------------------------------------------------------------------------------
  const windowDatabase = `${options.database}_window`;
  const windowResult = options.skipWindow
    ? undefined
    : await windowAct({
        adminUrl,
        database: windowDatabase,
        stanza,
        bucket: env.STACK_S3_BUCKET,
        seed: options.seed,
        restoreId: `demo-${Date.now().toString(36)}-window`,
      });
  const windowOk = windowResult?.ok;
  if (windowOk === false) ok = false;

  if (diffs.length > 0 || billingOff !== 0 || appsOff !== 0 || untouched.violations !== 0 || stats.errors > 0)
    ok = false;
  process.stdout.write('\n');
  if (ok) {
    process.stdout.write(
      `DEMO PASSED in ${secs(Date.now() - t0)}: all ${victims.length} deleted tenants are back, equal to the backup and validated, billing and apps ` +
        `re-enabled, then with the rows they wrote after the backup, recovered from the WAL archive; the other ${options.tenants - victims.length} tenants' rows were not touched by the restore (only by their own writer).` +
        (windowOk
          ? ` Act two: the incident window (${windowResult?.foundBy === 'when' ? "found by 'when' from the purged tenants' ids" : 'captured around the purge'}), discover of it named exactly the purged and the wrongly updated tenants, and the three-way revert brought them back to T0 while every user's own deletion stayed deleted.`
          : '') +
        '\n',
    );
  } else {
    process.stdout.write(
      `DEMO FAILED: see the lines above. Databases '${options.database}' and '${options.database}_verify' are kept for inspection; worker log .stack/demo-worker.log` +
        (windowOk === false
          ? ` (act two: database '${windowDatabase}', worker log .stack/demo-worker-window.log)`
          : '') +
        '\n',
    );
  }
  if (ok && !options.keep) {
    const cleanup = await connect(adminUrl, 'demo');
    try {
      await cleanup.query(`DROP DATABASE IF EXISTS ${escapeIdentifier(`${options.database}_verify`)} WITH (FORCE)`);
    } finally {
      await cleanup.end();
    }
    say(
      `kept '${options.database}' (the restored live database) for a look: psql -h 127.0.0.1 -p ${serverUrl.port} -U postgres ${options.database}`,
    );
  }
  return ok ? 0 : 1;
}

/** The database's clock: the moment an operator reads off the incident's log. */
async function databaseNow(url: string): Promise<string> {
  const db = await connect(url, 'demo');
  try {
    return (await db.query<{ t: string }>(clockMicrosSql)).rows[0].t;
  } finally {
    await db.end();
  }
}

/** How many of the writer's inserted rows are in live exactly as written (md5 of the row, as the writer logged it). */
async function rowsAsWritten(
  url: string,
  writes: Array<{ table: string; key: string; digest: string | null }>,
): Promise<number> {
  const db = await connect(url, 'demo');
  try {
    await db.query("SET TimeZone = 'UTC'; SET DateStyle = 'ISO, MDY'");
    let found = 0;
    for (const table of new Set(writes.map((w) => w.table))) {
      const mine = writes.filter((w) => w.table === table);
      const { rows } = await db.query<{ key: string; digest: string }>(
        `SELECT x.id::text AS key, md5(x::text) AS digest FROM ${table} x WHERE x.id = ANY($1::bigint[])`,
        [mine.map((w) => w.key)],
      );
      const digests = new Map(rows.map((r) => [r.key, r.digest]));
      found += mine.filter((w) => digests.get(w.key) === w.digest).length;
    }
    return found;
  } finally {
    await db.end();
  }
}

/**
 * The point-in-time chapter: the rows the victims wrote after the nightly dump are not in it, so the restore above
 * could not bring them back. tenant-restore recovers the cluster from its WAL archive to the moment before the purge
 * and restores what those tenants are missing (--allow-partial: only missing rows go in). Returns whether every check
 * held.
 */
async function pointInTimeChapter(o: {
  liveUrl: string;
  database: string;
  stanza: string;
  at: string;
  victims: string[];
  victimWrites: Array<{ table: string; key: string; digest: string | null; tenantId: string }>;
  victimWindowMs: number;
  victimsBeforeDeletion: Awaited<ReturnType<typeof tenantChecksums>>;
  bucket: string;
  restoreId: string;
}): Promise<boolean> {
  step(
    `Point in time: the ${fmt(o.victimWrites.length)} rows the victims wrote after the nightly backup, brought back from the WAL archive`,
  );
  const total = o.victimWrites.length;
  // A worker for this restore, started now so that it polls by the time the restore starts.
  const taskQueue = `tenant-restore-demo-${o.restoreId}`;
  const worker = startWorkerProcess(taskQueue, 'demo-worker-pitr.log');
  const workerStarted = Date.now();
  const fromDump = await rowsAsWritten(o.liveUrl, o.victimWrites);
  say(
    `after the restore from the nightly dump, ${fromDump} of those ${total} rows are in live: the dump never had them`,
  );
  // The WAL segment holding the moment must be archived: a switch, then wait for the archiver.
  const db = await connect(o.liveUrl, 'demo');
  try {
    await archiveWalNow(async (sql) => (await db.query(sql)).rows);
  } finally {
    await db.end();
  }
  const shortOf = [...new Set(o.victimWrites.map((w) => w.tenantId))];
  const args = [
    'start',
    '--backup',
    `pgbackrest:${o.stanza}/${o.database}`,
    '--at',
    o.at,
    '--live',
    o.liveUrl,
    '--tenant-root',
    'app.tenants',
    '--tenants',
    shortOf.join(','),
    '--allow-partial',
    '--config',
    join(__dirname, 'workload', 'restore-config.json'),
    '--id',
    o.restoreId,
    '--task-queue',
    taskQueue,
    '--artifacts',
    `s3://${o.bucket}/restores/`,
    '--wait',
    '--json',
  ];
  say(
    `the ${shortOf.length} victims the dump left short (the others wrote nothing since): tenant-restore ${args
      .slice(0, 4)
      .join(' ')} ${o.at} --allow-partial ...`,
  );
  await new Promise((r) => setTimeout(r, Math.max(0, 4000 - (Date.now() - workerStarted))));
  const started = Date.now();
  let out = '';
  let err = '';
  try {
    const code = await new Promise<number>((resolve, reject) => {
      const child = spawn(process.execPath, [join(projectRoot, 'bin', 'tenant-restore'), ...args], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      child.stdout.on('data', (c: Buffer) => (out += c.toString()));
      child.stderr.on('data', (c: Buffer) => (err += c.toString()));
      child.on('error', reject);
      child.on('close', (c) => resolve(c ?? 1));
    });
    for (const line of err.split('\n').filter((l) => /^recovering stanza/.test(l))) say(line);
    if (code !== 0) {
      say(`the point-in-time restore exited ${code}: ${err.slice(-1500)}`);
      return false;
    }
  } finally {
    await stopWorkerProcess(worker.child);
  }
  const result = JSON.parse(out) as BulkRestoreResult;
  const s3 = createS3Client();
  let report: RestoreReport;
  try {
    const location = parseS3Url(result.report!.json);
    report = JSON.parse(await getText(s3, location)) as RestoreReport;
  } finally {
    s3.destroy();
  }
  const pit = report.source.pointInTime!;
  say(
    `bulkRestore ${result.status}: ${result.restored}/${result.total} restored in ${secs(Date.now() - started)}; scratch recovered on host ${pit.host} in ${secs(report.source.scratchMs ?? 0)} ` +
      `(${pit.walSegmentsRestored} WAL segments replayed): recovery stopped ${pit.stopped}; last transaction replayed at ${pit.lastTransaction}, ${pit.gapMs} ms before --at`,
  );
  const fromWal = await rowsAsWritten(o.liveUrl, o.victimWrites);
  say(
    `rows written in the ${o.victimWindowMs >= 120_000 ? `${(o.victimWindowMs / 60_000).toFixed(1)} minutes` : secs(o.victimWindowMs)} before the incident: recovered ${fromWal} of ${total} (dump: ${fromDump} of ${total})`,
  );
  const now = await tenantChecksums(o.liveUrl, o.victims, { ignoreColumns: reenableColumns });
  const differ = diffChecksums(o.victimsBeforeDeletion, now);
  const equal = o.victims.filter((v) => !differ.some((d) => d.tenantId === v)).length;
  say(
    `victims equal to the moment before the purge: ${equal}/${o.victims.length} tenants (count and checksum per table)`,
  );
  for (const d of differ.slice(0, 5))
    say(`  DIFFERENT ${d.tenantId} ${d.table}: expected ${d.expected.rows} rows, found ${d.actual.rows}`);
  return result.status === 'succeeded' && fromWal === total && fromDump === 0 && differ.length === 0 && total > 0;
}

/** `tenant-restore <args>` as an operator runs it: its exit code, stdout and stderr. */
async function tenantRestore(args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await new Promise<number>((resolve, reject) => {
    const child = spawn(process.execPath, [join(projectRoot, 'bin', 'tenant-restore'), ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    child.on('error', reject);
    child.on('close', (c) => resolve(c ?? 1));
  });
  return { code, out, err };
}

/** The last lines of a worker's log, for a failure's diagnosis. */
function logTail(file: string, lines = 25): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/** Tenants' checksums, only those of `ids`. */
function only(sums: TenantChecksums, ids: string[]): TenantChecksums {
  return Object.fromEntries(ids.map((id) => [id, sums[id]]));
}

const rowsOf = (tables: Record<string, { rows: number }> | undefined) =>
  Object.values(tables ?? {}).reduce((n, t) => n + t.rows, 0);
const sumOf = (counts: Record<string, number> | undefined) => Object.values(counts ?? {}).reduce((a, b) => a + b, 0);
const sameIds = (a: string[], b: string[]) => [...a].sort().join() === [...b].sort().join();

/** `when`'s answer, as far as the demo reads it: the window's two moments and the transactions it names. */
interface WhenAnswer {
  from: string;
  to: string;
  xids: string[];
}

/**
 * Act two, the incident window (issue 26): users delete their own rows all day and one closes an account; the purge
 * runs with a wrong id list and a wrong UPDATE along with it; `when` finds the window, `discover --from T0 --to T1`
 * names exactly what the incident did, and `start --from T0 --to T1` reverts it three ways against live now. Returns
 * whether every check held.
 */
async function windowAct(o: {
  adminUrl: string;
  database: string;
  stanza: string;
  bucket: string;
  seed: number;
  restoreId: string;
}): Promise<{ ok: boolean; foundBy: 'when' | 'captured' }> {
  const url = withDatabase(o.adminUrl, o.database);
  const source = `pgbackrest:${o.stanza}/${o.database}`;
  const config = join(__dirname, 'workload', 'restore-config.json');
  const artifacts = `s3://${o.bucket}/restores/`;
  step(
    `Act two, the incident window: a fresh database '${o.database}' of 30 tenants in the same archived cluster, a base backup, and a day of users deleting their own rows`,
  );
  const admin = await connect(o.adminUrl, 'demo');
  try {
    await admin.query(`DROP DATABASE IF EXISTS ${escapeIdentifier(o.database)} WITH (FORCE)`);
    await admin.query(`CREATE DATABASE ${escapeIdentifier(o.database)}`);
  } finally {
    await admin.end();
  }
  const generated = await generateWorkload(url, { tenants: 30, rowsTarget: 6000, seed: o.seed });
  const ids = generated.tenantIds;
  say(`generated ${fmt(generated.totalRows)} rows for tenants ${ids[0]}..${ids[ids.length - 1]}`);
  // Who is who (indexes into the 30): the purge's wrong id list, the wrong UPDATE's two tenants, the closed account,
  // and the users who delete their own rows before the incident (two of them in tenants the purge then deletes) and
  // after it (one in a tenant the wrong UPDATE hit).
  const purged = [1, 6, 11, 16, 21].map((i) => ids[i]);
  const updated = [3, 13].map((i) => ids[i]);
  const closed = ids[8];
  const earlyUsers = [purged[0], purged[2], updated[0], ids[4], ids[9]];
  const lateUsers = [updated[1], ids[4], ids[14], ids[27]];
  const others = ids.filter((id) => !purged.includes(id) && !updated.includes(id) && id !== closed);

  // The worker, started now so that it polls by the time discover starts; its point-in-time servers run on this
  // "host" (TENANT_RESTORE_HOST_ID), under .stack/demo-window-scratch.
  const taskQueue = `tenant-restore-demo-${o.restoreId}`;
  const scratchArea = join(stackDir, 'demo-window-scratch');
  // What an earlier failed run left there for a look (a failed recovery keeps its directory): removed, unless a
  // server still runs in it.
  if (
    existsSync(scratchArea) &&
    !readdirSync(scratchArea).some((d) => existsSync(join(scratchArea, d, 'data', 'postmaster.pid')))
  )
    rmSync(scratchArea, { recursive: true, force: true });
  const worker = startWorkerProcess(taskQueue, 'demo-worker-window.log', {
    TENANT_RESTORE_HOST_ID: 'demo-window',
    TENANT_RESTORE_SCRATCH_DIR: scratchArea,
  });
  const s3 = createS3Client();
  try {
    const baseStarted = Date.now();
    // Another user of the stack may hold the stanza's lock for a while (a test's backup): wait for it.
    for (const deadline = Date.now() + 300_000; ;) {
      const base = pgbackrest([`--stanza=${o.stanza}`, 'backup', '--type=incr']);
      if (base.status === 0) break;
      if (!/lock/i.test(base.output) || Date.now() > deadline)
        throw new Error(`pgbackrest backup failed:\n${base.output}`);
      await new Promise((r) => setTimeout(r, 3000));
    }
    say(`base backup (stanza ${o.stanza}, incremental) in ${secs(Date.now() - baseStarted)}`);
    // pgBackRest records a backup's end to the second: the day's commits come after that second.
    await new Promise((r) => setTimeout(r, 1500));
    // The morning: where 'when' starts reading the archive (its default, the oldest backup's end, reads much more).
    const morning = await databaseNow(url);

    const deletedBefore: UserDeletion[] = [];
    for (const t of earlyUsers) deletedBefore.push(...(await usersDeleteOwnRows(url, t)));
    const closedRows = rowsOf((await tenantChecksums(url, [closed]))[closed]);
    await purgeTenants(url, [closed]);
    const describe = (list: UserDeletion[]) =>
      [...new Set(list.map((d) => d.tenantId))]
        .map(
          (t) =>
            `${t} (${list
              .filter((d) => d.tenantId === t)
              .map((d) => d.table.replace('app.', ''))
              .join(', ')})`,
        )
        .join('; ');
    say(`users delete their own rows: ${deletedBefore.length} rows of ${describe(deletedBefore)}`);
    say(`tenant ${closed} closes its account: its ${closedRows} rows deleted`);
    // The moment before the incident, as the independent checks will want it: every tenant's rows, per table.
    const atT0 = await tenantChecksums(url, ids);

    // 13 ------------------------------------------------------------------------------------------------------------
    step(
      `The purge runs with a wrong id list: ${purged.length} tenants hard-deleted, and a wrong UPDATE closes every issue of ${updated.length} living tenants, in one transaction; then users go on`,
    );
    const incident = await purgeAndWrongUpdate(url, purged, updated);
    const atT1 = await tenantChecksums(url, ids);
    say(
      `purged ${purged.join(', ')}: ${fmt(incident.totalDeleted)} rows; the wrong UPDATE changed ${incident.updatedIssues} issues of ${updated.join(', ')} (transaction ${incident.xid})`,
    );
    say(
      `WAL insert position read just before its BEGIN ${incident.lsnBefore} and just after its COMMIT ${incident.lsnAfter} (what an operator rarely has)`,
    );
    const deletedAfter: UserDeletion[] = [];
    for (const t of lateUsers) deletedAfter.push(...(await usersDeleteOwnRows(url, t)));
    say(`after it, users delete ${deletedAfter.length} more of their own rows: ${describe(deletedAfter)}`);
    const db = await connect(url, 'demo');
    try {
      await archiveWalNow(async (sql) => (await db.query(sql)).rows);
    } finally {
      await db.end();
    }
    say('the WAL holding all of it is archived');
    const beforeRevert = await tenantChecksums(url, ids);

    // 14 ------------------------------------------------------------------------------------------------------------
    step(`When was it? 'tenant-restore when' finds the window from the ids of the tenants that are gone`);
    let from = incident.lsnBefore;
    let to = incident.lsnAfter;
    let whenOk = true;
    let foundBy: 'when' | 'captured' = 'captured';
    const help = await tenantRestore(['when', '--help']);
    if (help.code !== 0 && /unknown command/.test(help.err)) {
      say('(when is not available in this build: T0/T1 captured around the purge)');
    } else {
      const args = [
        'when',
        '--backup',
        source,
        '--live',
        url,
        '--tenant-root',
        'app.tenants',
        '--tenants',
        purged.join(','),
        '--since',
        morning,
        '--task-queue',
        taskQueue,
        '--json',
      ];
      say(`tenant-restore ${args.join(' ')}`);
      const started = Date.now();
      const w = await tenantRestore(args);
      const answer = w.code === 0 ? readWhen(w.out) : undefined;
      if (!answer) {
        whenOk = false;
        say(`when exited ${w.code}: ${(w.err || w.out).slice(-1500)}`);
        say(`worker log (.stack/demo-worker-window.log), last lines:\n${logTail(worker.logFile)}`);
        say('going on with T0/T1 captured around the purge');
      } else {
        const within = windowWithin(answer.from, answer.to, incident);
        // when names 32-bit xids; txid_current() carries the epoch above them.
        const names = answer.xids.includes(String(BigInt(incident.xid) % 4294967296n));
        say(
          `when in ${secs(Date.now() - started)}: T0 ${answer.from}, T1 ${answer.to}, transaction(s) ${answer.xids.join(', ') || '?'}`,
        );
        say(
          `${within ? 'inside' : 'NOT INSIDE'} the bounds captured around the purge (${incident.lsnBefore} .. ${incident.lsnAfter}, ${incident.timeBefore} .. ${incident.timeAfter}); ` +
            `${names ? 'names' : 'DOES NOT NAME'} the purge's transaction ${incident.xid}`,
        );
        if (within && names) {
          from = answer.from;
          to = answer.to;
          foundBy = 'when';
        } else whenOk = false;
      }
    }
    say(`the window: --from ${from} --to ${to}`);

    // 15 ------------------------------------------------------------------------------------------------------------
    step(`Who did the incident touch? discover compares the database at T0 with the database at T1 (not with live)`);
    const discoverId = `${o.restoreId}-discover`;
    // The window and where it is reverted: what discover and start share.
    const windowFlags = ['--backup', source, '--from', from, '--to', to, '--live', url, '--tenant-root', 'app.tenants'];
    const discoverArgs = [
      'discover',
      ...windowFlags,
      '--config',
      config,
      '--id',
      discoverId,
      '--task-queue',
      taskQueue,
      '--artifacts',
      artifacts,
      '--json',
    ];
    say(`tenant-restore discover --backup ${source} --from ${from} --to ${to} ... --json`);
    const discoverStarted = Date.now();
    const d = await tenantRestore(discoverArgs);
    if (d.code !== 0) {
      say(`discover exited ${d.code}: ${(d.err || d.out).slice(-1500)}`);
      say(`worker log (.stack/demo-worker-window.log), last lines:\n${logTail(worker.logFile)}`);
      return { ok: false, foundBy };
    }
    const summary = JSON.parse(d.out) as DiscoverSummary;
    const { tenants: classified } = await getJson<{ tenants: DiscoveredTenant[] }>(
      s3,
      parseS3Url(summary.artifacts.json),
    );
    const ofClass = (cls: string) =>
      classified
        .filter((t) => t.class === cls)
        .map((t) => String(t.tenantId))
        .sort();
    const c = summary.counts;
    say(
      `discover in ${secs(Date.now() - discoverStarted)} (two scratches recovered from the archive, T0 and T1): ` +
        `${c.absent} absent, ${c.partial} partial, ${c.changed} changed, ${c.grown} grown, ${c.intact} intact, ${c.new} new`,
    );
    for (const cls of ['absent', 'partial', 'changed', 'grown', 'new'])
      if (ofClass(cls).length) say(`  ${cls.padEnd(8)} ${ofClass(cls).join(', ')}`);
    for (const w of summary.warnings) say(`WARNING: ${w}`);
    const touched = classified.filter((t) => t.class !== 'intact').map((t) => String(t.tenantId));
    const usersOwn = [...new Set([...deletedBefore, ...deletedAfter].map((x) => x.tenantId))].filter(
      (t) => !purged.includes(t) && !updated.includes(t),
    );
    const exact =
      sameIds(ofClass('absent'), purged) &&
      sameIds(ofClass('changed'), updated) &&
      sameIds(touched, [...purged, ...updated]);
    say(
      `${exact ? 'exactly' : 'NOT EXACTLY'} the incident: absent = the ${purged.length} purged tenants, changed = the ${updated.length} the wrong UPDATE hit, nothing else; ` +
        `not listed: the users' own deletions (tenants ${usersOwn.join(', ')}), nor the closed account ${closed}` +
        `${touched.includes(closed) || usersOwn.some((t) => touched.includes(t)) ? ' (BUT SOME ARE)' : ''}`,
    );

    // 16 ------------------------------------------------------------------------------------------------------------
    step(
      `The three-way revert: start --from T0 --to T1 for the ${touched.length} tenants discover named, against live now`,
    );
    const restoreArgs = [
      'start',
      ...windowFlags,
      '--tenants',
      touched.join(','),
      '--config',
      config,
      '--id',
      o.restoreId,
      '--task-queue',
      taskQueue,
      '--artifacts',
      artifacts,
      '--wait',
      '--json',
    ];
    say(`tenant-restore start --backup ${source} --from ${from} --to ${to} --tenants ${touched.join(',')} ... --wait`);
    const restoreStarted = Date.now();
    const r = await tenantRestore(restoreArgs);
    let result: BulkRestoreResult | undefined;
    try {
      result = JSON.parse(r.out) as BulkRestoreResult;
    } catch {
      result = undefined;
    }
    if (!result) {
      say(`start exited ${r.code}: ${(r.err || r.out).slice(-1500)}`);
      say(`worker log (.stack/demo-worker-window.log), last lines:\n${logTail(worker.logFile)}`);
      return { ok: false, foundBy };
    }
    say(
      `bulkRestore ${result.status}: ${result.restored}/${result.total} restored, ${result.failed} failed, in ${secs(Date.now() - restoreStarted)} (exit ${r.code})`,
    );
    for (const f of result.failures ?? []) say(`  ${f.tenantId}: ${JSON.stringify(f).slice(0, 300)}`);
    let report: RestoreReport | undefined;
    if (result.report) report = await getJson<RestoreReport>(s3, parseS3Url(result.report.json));
    // No user touched a row the incident deleted or changed: this revert should have no conflict.
    let conflictsOfRestored = -1;
    if (report?.window) {
      const w = report.window;
      const listed = (
        await getJson<{ conflicts: Array<{ tenantId: string; table: string; key: string[]; reason: string }> }>(
          s3,
          parseS3Url(w.object),
        )
      ).conflicts;
      const mine = listed.filter((x) => touched.includes(String(x.tenantId)));
      const outside = listed.filter((x) => !touched.includes(String(x.tenantId)));
      conflictsOfRestored = mine.length;
      say(
        `the window deleted ${w.deleted} rows, changed ${w.changed}, added ${w.added}; conflicts of the tenants restored: ${mine.length}`,
      );
      for (const x of mine.slice(0, 5)) say(`  CONFLICT ${x.tenantId} ${x.table} ${x.key.join(',')}: ${x.reason}`);
      if (outside.length) {
        // Rows of tenants the window did not touch cannot conflict with its revert: say what they are.
        // deletionsBack: which of these rows live holds.
        const held = (
          await deletionsBack(
            url,
            outside.map((x) => ({ tenantId: String(x.tenantId), table: x.table, key: x.key.join(':') })),
          )
        ).length;
        say(
          `WARNING: window.json also lists ${outside.length} conflicts on ${new Set(outside.map((x) => x.tenantId)).size} tenants the window did not touch ` +
            `(${[...new Set(outside.map((x) => `${x.table} '${x.reason}'`))].join('; ')}); live holds ${held === outside.length ? 'every one of those rows' : `${held} of them`}: not conflicts of this revert`,
        );
      }
      for (const t of report.tenants) {
        const [deleted, changed, reverted, conflicts] = [
          t.window?.deleted,
          t.window?.changed,
          t.window?.reverted,
          t.window?.conflicts,
        ].map(sumOf);
        const what = [
          deleted ? `${deleted} deleted rows inserted back` : '',
          changed ? `${reverted} of ${changed} changed rows set back to T0` : '',
          conflicts ? `${conflicts} conflicts left as they are` : '',
        ].filter(Boolean);
        say(`  ${String(t.tenantId).padEnd(7)} ${t.status}: ${what.join(', ') || 'nothing to do'}`);
      }
      say(`full report ${result.report!.markdown}`);
    } else {
      say(`the report has no window section${result.report ? ` (${result.report.json})` : ': no report'}`);
    }
    if (r.code !== 0) say(`worker log (.stack/demo-worker-window.log), last lines:\n${logTail(worker.logFile)}`);

    // 17 ------------------------------------------------------------------------------------------------------------
    step(
      "Independent checks: back to T0 what the incident did, and nothing else: every user's own deletion stays deleted",
    );
    const now = await tenantChecksums(url, ids);
    const purgedDiffs = diffChecksums(only(atT0, purged), only(now, purged));
    say(
      `purged tenants equal to T0 (count and checksum per table): ${purged.filter((t) => !purgedDiffs.some((x) => x.tenantId === t)).length}/${purged.length}, ` +
        `${fmt(purged.reduce((n, t) => n + rowsOf(atT0[t]), 0))} rows`,
    );
    // The wrongly updated tenants: their issues as at T0, everything else as live held it before the revert.
    const expectedUpdated: TenantChecksums = Object.fromEntries(
      updated.map((t) => [t, { ...beforeRevert[t], 'app.issues': atT0[t]['app.issues'] }]),
    );
    const updatedDiffs = diffChecksums(expectedUpdated, only(now, updated));
    const issuesChanged = updated.every((t) => atT1[t]['app.issues'].checksum !== atT0[t]['app.issues'].checksum);
    say(
      `wrongly updated tenants: issues back to T0 ${updated.filter((t) => !updatedDiffs.some((x) => x.tenantId === t && x.table === 'app.issues')).length}/${updated.length} ` +
        `(${incident.updatedIssues} rows), their other tables as before the revert ${updated.filter((t) => !updatedDiffs.some((x) => x.tenantId === t && x.table !== 'app.issues')).length}/${updated.length}`,
    );
    const back = await deletionsBack(url, [...deletedBefore, ...deletedAfter]);
    const backBefore = back.filter((x) => deletedBefore.includes(x)).length;
    const backAfter = back.length - backBefore;
    say(
      `users' own deletions still deleted: before T0 ${deletedBefore.length - backBefore}/${deletedBefore.length} (${deletedBefore.filter((x) => purged.includes(x.tenantId)).length} of them in purged tenants), ` +
        `after T1 ${deletedAfter.length - backAfter}/${deletedAfter.length}`,
    );
    for (const x of back.slice(0, 10)) say(`  CAME BACK ${x.table} ${x.key} (tenant ${x.tenantId})`);
    const closedNow = rowsOf(now[closed]);
    say(`the closed account ${closed}: ${closedNow === 0 ? 'still closed, 0 rows' : `${closedNow} ROWS CAME BACK`}`);
    const otherDiffs = diffChecksums(only(beforeRevert, others), only(now, others));
    say(
      `other tenants untouched by the revert: ${others.length - new Set(otherDiffs.map((x) => x.tenantId)).size}/${others.length} equal to before it`,
    );
    for (const x of [...purgedDiffs, ...updatedDiffs, ...otherDiffs].slice(0, 10))
      say(
        `  DIFFERENT ${x.tenantId} ${x.table}: expected ${x.expected.rows} rows/${x.expected.checksum}, found ${x.actual.rows}/${x.actual.checksum}`,
      );
    const ok =
      whenOk &&
      conflictsOfRestored === 0 &&
      exact &&
      issuesChanged &&
      result.status === 'succeeded' &&
      r.code === 0 &&
      purgedDiffs.length === 0 &&
      updatedDiffs.length === 0 &&
      otherDiffs.length === 0 &&
      back.length === 0 &&
      closedNow === 0 &&
      deletedBefore.length > 0 &&
      deletedAfter.length > 0;
    say(`act two ${ok ? 'passed' : 'FAILED'}; database '${o.database}' kept for a look (dropped by the next run)`);
    return { ok, foundBy };
  } finally {
    s3.destroy();
    await stopWorkerProcess(worker.child);
  }
}

/**
 * `when --json`'s window (activities/when-contract.ts, WhenResult): T0 and T1 in the --at grammar, and the deleting
 * transactions (32-bit xids: txid_current() modulo 2^32). Undefined when it has no window.
 */
function readWhen(out: string): WhenAnswer | undefined {
  let json: {
    window?: { from?: string; to?: string };
    first?: { xid?: number };
    last?: { xid?: number };
    tenants?: Array<{ deletedBy?: number }>;
  };
  try {
    json = JSON.parse(out) as typeof json;
  } catch {
    return undefined;
  }
  if (!json.window?.from || !json.window.to) return undefined;
  const xids = [json.first?.xid, json.last?.xid, ...(json.tenants ?? []).map((t) => t.deletedBy)];
  return {
    from: json.window.from,
    to: json.window.to,
    xids: [...new Set(xids.filter((x) => x !== undefined).map(String))],
  };
}

main().then(
  (code) => process.exit(code),
  (error: Error) => {
    process.stderr.write(`\ndemo: ${error.message}\n`);
    process.exit(1);
  },
);
