/**
 * Runs one property case against the real stack and checks it with an exact oracle:
 *   generated schema and rows → pg_dump -Fc into S3 with its signed manifest → the incident (and the writer) →
 *   `discover` → `start --wait` through the CLI and a worker process (SIGKILLed at random moments in some cases, and
 *   PostgreSQL restarted in the chaos mode) → every table of live compared row by row with what it must hold.
 * It returns the problems found (empty when the case passes), so that fast-check can shrink a failing case.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { S3Client } from '@aws-sdk/client-s3';
import { getJson } from '../../activities/s3';
import { restartPostgres } from '../../scripts/stack';
import { takeBackup } from '../../scripts/workload/backup';
import { auditEvents, installDeleteAudit, roleUrl } from '../helpers/audit';
import { logDir, runCli, type CliResult, type WorkerProcess } from '../helpers/product';
import { createDatabase, dropDatabase, temporalClient, uniqueName, withClient } from '../helpers/stack';
import {
  countsByTenant,
  expectedAfter,
  keyExpression,
  snapshotDiff,
  type Prepared,
  type Snapshot,
  type WriterChange,
} from './case';
import { chunkRows, dataSql } from './data';
import { acceptedRefusals, q, refusalWords, restoreConfig, schemaSql } from './schema';
import { canonicalSettings, PropertyWriter } from './writer';

export interface CaseEnvironment {
  worker: WorkerProcess;
  taskQueue: string;
  /** The least-privilege restore role (scripts/grants.sql), with its password in `productEnv`'s PGPASSFILE. */
  restoreRole: string;
  restorePassword: string;
  applyGrants: (database: string, schema: string) => Promise<void>;
  productEnv: NodeJS.ProcessEnv;
  s3: S3Client;
  bucket: string;
  say: (message: string) => void;
}

export interface CaseResult {
  name: string;
  problems: string[];
  /** What the case did, for the run's summary. */
  facts: { restored: number; refused?: string; kills: number; restarted?: boolean; writerDuring: number; ms: number };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function snapshot(url: string, p: Prepared): Promise<Snapshot> {
  return withClient(url, async (client) => {
    await client.query(canonicalSettings);
    const out: Snapshot = new Map();
    for (const t of p.schema.tables) {
      const { rows } = await client.query<{ k: string; r: string }>(
        `SELECT ${keyExpression(p.schema, t.name)} AS k, t::text AS r FROM ${q(p.schema.schema)}.${q(t.name)} t`,
      );
      out.set(t.name, new Map(rows.map((r) => [r.k, r.r])));
    }
    return out;
  });
}

/** Rows whose FK (declared, or logical from the config) references nothing: per constraint, with a count. */
export async function orphans(url: string, p: Prepared): Promise<string[]> {
  const s = q(p.schema.schema);
  const out: string[] = [];
  await withClient(url, async (client) => {
    for (const t of p.schema.tables)
      for (const f of t.foreignKeys) {
        const { rows } = await client.query<{ n: string }>(
          `SELECT count(*) AS n FROM ${s}.${q(t.name)} c WHERE ${f.columns.map((col) => `c.${q(col)} IS NOT NULL`).join(' AND ')}
           AND NOT EXISTS (SELECT 1 FROM ${s}.${q(f.to)} r WHERE ${f.columns.map((col, i) => `r.${q(f.refColumns[i]!)} = c.${q(col)}`).join(' AND ')})`,
        );
        if (Number(rows[0]!.n) > 0) out.push(`${t.name}.${f.name}: ${rows[0]!.n} orphan rows`);
      }
  });
  return out;
}

/** The case's files: its schema, data, incident and config as SQL/JSON, the case itself, and how to replay it. */
export function saveCase(dir: string, p: Prepared): void {
  writeFileSync(join(dir, 'case.json'), `${JSON.stringify(p.testCase, null, 2)}\n`);
  writeFileSync(join(dir, 'schema.sql'), schemaSql(p.schema));
  writeFileSync(join(dir, 'data.sql'), dataSql(p.schema, p.data));
  writeFileSync(join(dir, 'incident.sql'), p.incidentSql);
  writeFileSync(join(dir, 'config.json'), `${JSON.stringify(restoreConfig(p.schema, chunkRows), null, 2)}\n`);
  writeFileSync(
    join(dir, 'tenants.json'),
    `${JSON.stringify({ victims: p.victims, partial: p.partial, bystanders: p.bystanders, restoreList: p.restoreList }, null, 2)}\n`,
  );
}

export async function runCase(p: Prepared, env: CaseEnvironment): Promise<CaseResult> {
  const started = Date.now();
  const name = uniqueName('prop');
  // PROPERTY_TRACE=1: a line per step, to see where a slow case spends its time.
  const trace = (step: string) =>
    process.env.PROPERTY_TRACE === '1' && env.say(`${name} +${((Date.now() - started) / 1000).toFixed(1)} s: ${step}`);
  trace('start');
  const dir = logDir(`property/${name}`);
  saveCase(dir, p);
  const problems: string[] = [];
  const c = p.testCase;
  const adminUrl = await createDatabase(name);
  const liveRef = roleUrl(env.restoreRole, name);
  let writer: PropertyWriter | undefined;
  let clean = false;
  let refusedAs: string | undefined;
  let kills = 0;
  let restarted = false;
  try {
    // --- the database as it was at the backup ---------------------------------------------------------------------
    await withClient(adminUrl, async (client) => {
      await client.query(schemaSql(p.schema));
      await client.query(dataSql(p.schema, p.data));
    });
    trace('loaded');
    const generatorOrphans = await orphans(adminUrl, p);
    if (generatorOrphans.length)
      throw new Error(`generator bug: the generated data has orphans: ${generatorOrphans.join('; ')}`);
    const backupRows = await snapshot(adminUrl, p);
    trace('backup');
    const backup = await takeBackup({
      url: adminUrl,
      s3: env.s3,
      bucket: env.bucket,
      key: `property/${name}/backup.dump`,
      retentionDays: 1,
    });
    const configFile = join(dir, 'config.json');
    const tenantsFile = join(dir, 'restore-list.txt');
    writeFileSync(tenantsFile, `${p.restoreList.join('\n')}\n`);

    trace('backed up');
    // --- the incident, the writer's own traffic, the grants --------------------------------------------------------
    await installDeleteAudit(adminUrl, [p.schema.schema]);
    await withClient(adminUrl, async (client) => {
      await client.query(`SET application_name = 'property-incident'`);
      await client.query(p.incidentSql);
    });
    writer = new PropertyWriter(adminUrl, p, c.writer.seed);
    await writer.steps(c.writer.before);
    await env.applyGrants(name, p.schema.schema);
    const before = await snapshot(adminUrl, p);

    trace('incident and writer done');
    // --- discover: exactly the purged tenants are absent, exactly the damaged ones partial --------------------------
    const discoverId = `${name.replace(/_/g, '-')}-d`;
    const source = ['--backup', backup.url, '--live', liveRef, '--tenant-root', p.schema.root, '--config', configFile];
    const discover = await runCli(
      ['discover', ...source, '--id', discoverId, '--task-queue', env.taskQueue, '--json'],
      env.productEnv,
    );
    // Discover compares what it can; on a schema the restore refuses, it may refuse too, with the same words.
    const refusals = acceptedRefusals(p.schema);
    if (discover.code === 0) await checkDiscover(p, env, discover, backupRows, before, problems);
    else if (!refusals.some((r) => refusalWords[r].test(discover.stdout + discover.stderr)))
      problems.push(`discover exited ${discover.code}: ${tail(discover)}`);

    trace('discover done');
    // --- the restore, with the writer and the faults of the case --------------------------------------------------
    const restoreId = `${name.replace(/_/g, '-')}-r`;
    const changesBefore = writer.changes.length;
    if (c.writer.during) writer.start();
    const restore = runCli(
      [
        'start',
        ...source,
        '--tenants-file',
        tenantsFile,
        '--group-size',
        String(c.run.groupSize),
        '--concurrency',
        String(c.run.concurrency),
        '--conflict',
        c.run.conflict,
        ...(c.allowPartial && p.partial.length ? ['--allow-partial'] : []),
        '--id',
        restoreId,
        '--task-queue',
        env.taskQueue,
        '--wait',
        '--json',
      ],
      env.productEnv,
    );
    let ended = false;
    void restore.finally(() => (ended = true));
    for (const delay of c.run.kills) {
      await sleep(delay);
      if (ended) break;
      kills += 1;
      await env.worker.kill('SIGKILL');
      await env.worker.start();
    }
    if (c.run.restartPostgres && !ended) {
      // After the restore has started (the CLI itself refuses to start while live is unreachable, exit 3), at a
      // moment of the case's own.
      await restoreStarted(`restore/${restoreId}`, () => ended);
      await sleep(c.valueSeed % 3000);
      restarted = true;
      await writer.stop();
      await writer.close();
      await restartPostgres(() => undefined);
      if (c.writer.during) writer.start();
    }
    const result = await restore;
    await writer.stop();
    await writer.close();
    const during: WriterChange[] = writer.changes.slice(changesBefore);

    trace('restore ended');
    // --- the oracle ------------------------------------------------------------------------------------------------
    const refused = Boolean(p.schema.refusal);
    if (refused) {
      refusedAs = p.schema.refusal;
      const said = result.stdout + result.stderr;
      if (result.code !== 2 || !refusals.some((r) => refusalWords[r].test(said)))
        problems.push(
          `the restore should be refused with ${refusals.join(' or ')} (exit 2); it exited ${result.code}: ${tail(result)}`,
        );
    } else {
      const tenants = (result.json as { tenants?: Array<{ tenantId: string; status: string }> } | undefined)?.tenants;
      if (result.code !== 0) problems.push(`start --wait exited ${result.code}: ${tail(result)}`);
      const notRestored = (tenants ?? [])
        .filter((t) => t.status !== 'restored')
        .map((t) => `${t.tenantId}: ${t.status}`);
      if (notRestored.length) problems.push(`tenants not restored: ${notRestored.join(', ')}`);
      if (tenants && tenants.length !== p.restoreList.length)
        problems.push(`start --json lists ${tenants.length} tenants, the list had ${p.restoreList.length}`);
    }
    const after = await snapshot(adminUrl, p);
    const expected = expectedAfter(p, backupRows, before, during, refused);
    const diff = snapshotDiff(expected, after);
    if (diff.length) problems.push(`live differs from what it must hold:\n  ${diff.join('\n  ')}`);
    for (const o of await orphans(adminUrl, p)) problems.push(`orphan in live: ${o}`);
    const destructive = (await auditEvents(adminUrl)).filter(
      (e) => e.current_user === env.restoreRole || e.app.startsWith('tenant-restore'),
    );
    if (destructive.length) problems.push(`the restore deleted or truncated: ${JSON.stringify(destructive)}`);
    if (!refused && result.code === 0) await checkReport(p, env, restoreId, after, before, problems);

    trace('checked');
    clean = problems.length === 0;
    if (!clean) writeFileSync(join(dir, 'problems.txt'), `${problems.join('\n')}\n`);
    return {
      name,
      problems,
      facts: {
        restored: refused ? 0 : p.restoreList.length,
        refused: refusedAs,
        kills,
        restarted,
        writerDuring: during.length,
        ms: Date.now() - started,
      },
    };
  } finally {
    await writer?.stop().catch(() => undefined);
    await writer?.close();
    if (clean) await dropDatabase(name);
    else env.say(`case ${name}: kept its database and files for inspection (${dir})`);
  }
}

/** Waits until the workflow exists in Temporal (or the CLI has already ended). */
async function restoreStarted(workflowId: string, ended: () => boolean): Promise<void> {
  const { client, close } = await temporalClient();
  try {
    while (!ended()) {
      const found = await client.workflow
        .getHandle(workflowId)
        .describe()
        .then(
          () => true,
          () => false,
        );
      if (found) return;
      await sleep(200);
    }
  } finally {
    await close();
  }
}

function tail(r: CliResult): string {
  return `${r.stderr}\n${r.stdout}`.trim().split('\n').slice(-12).join('\n');
}

interface DiscoverTenant {
  tenantId: string;
  class: string;
}

async function checkDiscover(
  p: Prepared,
  env: CaseEnvironment,
  discover: CliResult,
  backup: Snapshot,
  before: Snapshot,
  problems: string[],
): Promise<void> {
  const summary = discover.json as { artifacts?: { json?: string } } | undefined;
  const location = summary?.artifacts?.json;
  if (!location) {
    problems.push(`discover --json gave no discover.json location: ${discover.stdout.slice(0, 500)}`);
    return;
  }
  const url = new URL(location);
  const result = await getJson<{ tenants: DiscoverTenant[] }>(env.s3, {
    bucket: url.hostname,
    key: url.pathname.slice(1),
  });
  const classOf = new Map(result.tenants.map((t) => [String(t.tenantId), t.class]));
  const excluded = new Set(p.schema.tables.filter((t) => t.excluded).map((t) => t.name));
  for (const tenant of p.data.tenantKeys) {
    const rootThere = before.get('tenants')!.has(tenant);
    // Rows of the backup (owned, not excluded) whose key live no longer has.
    const missing = p.data.rows.some(
      (r) =>
        r.tenant === tenant &&
        !excluded.has(r.table) &&
        backup.get(r.table)!.has(r.key) &&
        !before.get(r.table)!.has(r.key),
    );
    const expected = !rootThere ? 'absent' : missing ? 'partial' : undefined;
    const got = classOf.get(tenant);
    if (expected && got !== expected)
      problems.push(`discover: tenant ${tenant} is ${got ?? 'not listed'}, expected ${expected}`);
    if (!expected && (got === 'absent' || got === 'partial'))
      problems.push(`discover: tenant ${tenant} is ${got}, but none of its rows is missing`);
  }
}

interface ReportTenantLike {
  tenantId: string;
  status: string;
  rows: Record<string, number>;
  validation: Array<{ table: string; liveCount: number; match: boolean }>;
  group?: { workflowId: string; tenants: number };
}

/** The report's evidence per tenant (a group's: summed over its tenants) against a direct count in live. */
async function checkReport(
  p: Prepared,
  env: CaseEnvironment,
  restoreId: string,
  after: Snapshot,
  before: Snapshot,
  problems: string[],
): Promise<void> {
  const report = await getJson<{ tenants: ReportTenantLike[] }>(env.s3, {
    bucket: env.bucket,
    key: `restores/${restoreId}/report.json`,
  });
  const live = countsByTenant(p, after, p.restoreList);
  const beforeCounts = countsByTenant(p, before, p.restoreList);
  const byGroup = new Map<string, string[]>();
  for (const t of report.tenants) {
    const group = t.group?.workflowId ?? `tenant/${t.tenantId}`;
    byGroup.set(group, [...(byGroup.get(group) ?? []), String(t.tenantId)]);
  }
  const tableName = (key: string) => key.slice(key.lastIndexOf('.') + 1).replace(/^"|"$/g, '');
  for (const t of report.tenants) {
    const members = byGroup.get(t.group?.workflowId ?? `tenant/${t.tenantId}`)!;
    const sum = (counts: Map<string, Record<string, number>>, table: string) =>
      members.reduce((n, m) => n + (counts.get(m)?.[table] ?? 0), 0);
    for (const v of t.validation) {
      const table = tableName(v.table);
      const direct = sum(live, table);
      if (v.liveCount !== direct)
        problems.push(
          `report: tenant ${t.tenantId} ${v.table} liveCount ${v.liveCount}, a direct count finds ${direct}`,
        );
      if (!v.match) problems.push(`report: tenant ${t.tenantId} ${v.table} validation did not match`);
    }
    for (const [key, rows] of Object.entries(t.rows)) {
      const table = tableName(key);
      const added = sum(live, table) - sum(beforeCounts, table);
      if (rows !== added)
        problems.push(`report: tenant ${t.tenantId} ${key} says ${rows} rows written, live gained ${added}`);
    }
  }
  const missingTenants = p.restoreList.filter((t) => !report.tenants.some((r) => String(r.tenantId) === t));
  if (missingTenants.length) problems.push(`report: no entry for ${missingTenants.join(', ')}`);
}
