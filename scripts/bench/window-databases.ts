/**
 * The window section's databases: T0 (the main dataset's backup, cached on the scratch server), T1 (a copy of T0 after
 * the staged incident) and live (the post-deletion database with the same UPDATE and INSERT). See window.ts.
 */
import { createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import type pg from 'pg';
import { connect, escapeIdentifier, escapeLiteral } from '../../activities/db';
import { createS3Client, getStream, parseS3Url } from '../../activities/s3';
import { purgeTenants } from '../workload/incident';
import type { MainDataset } from './dataset';
import type { WindowBenchResult } from './window';
import { benchEnv, databaseComment, dbUrl, dropDatabase, query, run, say, setDatabaseComment } from './pg';

const markerVersion = 'tenant-restore-bench-window/1';

/** A database on the stack's scratch server (the T0/T1 scratches' host), by URL without password (PGPASSFILE). */
export function scratchDbUrl(database: string): string {
  const url = new URL(benchEnv().STACK_PG_SCRATCH_URL);
  url.password = '';
  url.pathname = `/${database}`;
  return url.toString().replace(':@', '@');
}

async function onScratch<T extends pg.QueryResultRow>(database: string, sql: string): Promise<T[]> {
  const client = await connect(scratchDbUrl(database), 'tenant-restore-bench');
  try {
    return (await client.query<T>(sql)).rows;
  } finally {
    await client.end();
  }
}

export const drop = (db: string) =>
  onScratch('postgres', `DROP DATABASE IF EXISTS ${escapeIdentifier(db)} WITH (FORCE)`);
/** FILE_COPY: a checkpoint and the files, not every block through the WAL. */
export const copyOf = (db: string, template: string) =>
  onScratch(
    'postgres',
    `CREATE DATABASE ${escapeIdentifier(db)} TEMPLATE ${escapeIdentifier(template)} STRATEGY FILE_COPY`,
  );
const commentOf = async (db: string) =>
  (
    await onScratch<{ c: string | null }>(
      'postgres',
      `SELECT shobj_description(oid, 'pg_database') AS c FROM pg_database WHERE datname = ${escapeLiteral(db)}`,
    )
  )[0]?.c ?? undefined;

/**
 * The incident's writes besides the purge, the same on T1 and on live (deterministic; touch triggers off, so both
 * get the same rows): a wrong UPDATE on every tenant whose id ends in 3, and one label added to each.
 */
const incidentSql = `SET session_replication_role = replica;
  UPDATE app.issues i SET status = 'closed', title = i.title || ' (closed by the incident)'
    FROM app.projects p WHERE p.id = i.project_id AND p.tenant_id % 10 = 3 AND i.status <> 'closed';
  UPDATE app.users SET role = 'member' WHERE tenant_id % 10 = 3 AND role <> 'member';
  INSERT INTO app.labels (id, tenant_id, name, color)
    SELECT 1000000000 + t.id, t.id, 'added in the window', '#000000' FROM app.tenants t WHERE t.id % 10 = 3;
  RESET session_replication_role`;

async function applyIncident(client: pg.Client): Promise<{ updated: Record<string, number>; added: number }> {
  await client.query('BEGIN');
  const results = (await client.query(incidentSql)) as unknown as pg.QueryResult[];
  await client.query('COMMIT');
  return {
    updated: { 'app.issues': results[1]!.rowCount ?? 0, 'app.users': results[2]!.rowCount ?? 0 },
    added: results[3]!.rowCount ?? 0,
  };
}

async function withClient<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = await connect(url, 'tenant-restore-bench');
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/** T0, T1 (scratch server) and live (main server), built once per dataset and reused while their marker matches. */
export async function windowDatabases(dataset: MainDataset, fresh: boolean) {
  const tag = dataset.source.replace(/^bench_src_/, '');
  const t0 = `bench_win_t0_${tag}`;
  const t1 = `bench_win_t1_${tag}`;
  const live = `bench_win_live_${tag}`;
  const marker = `${markerVersion} ${dataset.backupSha256}`;
  const buildMs = { t0: 0, t1: 0, live: 0 };
  const ok = async (db: string, server: 'scratch' | 'main') =>
    !fresh && (server === 'scratch' ? await commentOf(db) : await databaseComment(db))?.startsWith(marker);
  let incident: NonNullable<WindowBenchResult['incident']> | undefined;

  if (!(await ok(t0, 'scratch'))) {
    say(`window: T0 = the dataset's backup, pg_restore -j2 into the scratch server (${t0})`);
    const started = performance.now();
    await drop(t1);
    await drop(t0);
    await onScratch('postgres', `CREATE DATABASE ${escapeIdentifier(t0)}`);
    const dir = await mkdtemp(join(tmpdir(), 'bench-window-'));
    const s3 = createS3Client();
    try {
      const file = join(dir, 'backup.dump');
      await pipeline((await getStream(s3, parseS3Url(dataset.backupUrl))).body, createWriteStream(file));
      await run('pg_restore', [
        '--no-owner',
        '--no-privileges',
        '--exit-on-error',
        '-j',
        '2',
        '-d',
        scratchDbUrl(t0),
        file,
      ]);
      await onScratch(t0, 'VACUUM ANALYZE');
    } finally {
      s3.destroy();
      await rm(dir, { recursive: true, force: true });
    }
    await onScratch('postgres', `COMMENT ON DATABASE ${escapeIdentifier(t0)} IS ${escapeLiteral(marker)}`);
    buildMs.t0 = performance.now() - started;
  }
  if (!(await ok(t1, 'scratch'))) {
    say(`window: T1 = T0 after the incident (${dataset.victims.length} tenants purged, a wrong UPDATE, rows added)`);
    const started = performance.now();
    await drop(t1);
    await copyOf(t1, t0);
    const purged = await purgeTenants(scratchDbUrl(t1), dataset.victims);
    const r = await withClient(scratchDbUrl(t1), applyIncident);
    await onScratch(t1, 'VACUUM ANALYZE');
    incident = {
      deletedTenants: purged.tenants,
      deletedRows: purged.totalDeleted,
      updatedRows: r.updated,
      addedRows: r.added,
    };
    await onScratch(
      'postgres',
      `COMMENT ON DATABASE ${escapeIdentifier(t1)} IS ${escapeLiteral(`${marker} ${JSON.stringify(incident)}`)}`,
    );
    buildMs.t1 = performance.now() - started;
  } else {
    const c = (await commentOf(t1))!;
    incident = JSON.parse(c.slice(marker.length + 1)) as typeof incident;
  }
  if (!(await ok(live, 'main'))) {
    say(`window: live = the post-deletion database with the incident's UPDATE and INSERT (${live})`);
    const started = performance.now();
    await dropDatabase(live);
    await query(
      'postgres',
      `CREATE DATABASE ${escapeIdentifier(live)} TEMPLATE ${escapeIdentifier(dataset.postDeletion)} STRATEGY FILE_COPY`,
    );
    await withClient(dbUrl(live), applyIncident);
    await query(live, 'VACUUM ANALYZE');
    await setDatabaseComment(live, marker);
    buildMs.live = performance.now() - started;
  }
  return { t0, t1, live, incident, buildMs, reused: !buildMs.t0 && !buildMs.t1 && !buildMs.live };
}
