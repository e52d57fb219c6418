/**
 * The point-in-time incident, for real, on the stack's own cluster (its pgBackRest stanza archives every WAL segment
 * to the stack's TLS MinIO): a live database copied from the main dataset's source (every victim present), an
 * incremental base backup of the cluster, writes to the victims that only the WAL archive holds, the moment noted
 * with the server's clock, the victims deleted, one more commit after the moment, and the WAL switched and archived.
 * What comes back is what the point-in-time restore must bring the victims back to, and when the bench's own last
 * write before the moment committed (to set beside the recovery point the product reports).
 */
import { connect, escapeIdentifier, escapeLiteral } from '../../activities/db';
import { purgeTenants } from '../workload/incident';
import { archiveWalNow, clockMicrosSql, pgbackrest } from '../stack';
import { rowsOfTenants } from './dataset';
import { benchEnv, dbUrl, dropDatabase, query, say, sleep } from './pg';

export interface PointInTimeIncident {
  stanza: string;
  /** The live database: a copy of the dataset's source, in the backup, then written to and deleted from. */
  live: string;
  /** VACUUM ANALYZE of the bench's other databases and the wait for autovacuum to be idle, before the backup. */
  quiesceMs: number;
  /** The incremental base backup, timed (pgbackrest backup --type=incr, or full when the stanza has none). */
  backupMs: number;
  /** Rows inserted for the victims after the base backup (one issue per victim project). */
  writtenAfterBackup: number;
  /** The victims' rows per owned table at the moment: what the restore must bring back. */
  rowsAtTarget: Record<string, number>;
  rowsAtTargetTotal: number;
  /** The moment (--at), from the server's clock_timestamp(). */
  at: string;
  /**
   * The bench's last write before the moment: its commit lies between `before` (clock_timestamp() in the transaction,
   * just before COMMIT) and `after` (clock_timestamp() right after COMMIT returned, same session).
   */
  lastWrite: { before: string; after: string };
  /** Time from the deletion's commit until the WAL segment holding it was archived (pg_switch_wal, pg_stat_archiver). */
  archiveMs: number;
}

/** clock_timestamp() in UTC to the microsecond, as text (a JavaScript Date keeps milliseconds only). */
const ids = (tenants: string[]) => `${escapeLiteral(`{${tenants.join(',')}}`)}::bigint[]`;

async function clock(database: string): Promise<string> {
  const [r] = await query<{ t: Date }>(database, 'SELECT clock_timestamp() AS t');
  return r.t.toISOString();
}

/** The newest commit archived (the stack's archiveWalNow, on this bench database). */
export async function archiveNow(database: string, timeoutMs = 120_000): Promise<void> {
  await archiveWalNow((sql) => query(database, sql), timeoutMs);
}

/**
 * The bench's freshly loaded databases are what autovacuum would pick during the measured window: analyzed and vacuumed
 * here, before the base backup, and autovacuum awaited idle, so that the WAL the recovery replays is the incident's,
 * not autovacuum's. (The recovery itself copes with WAL of other databases since the backup: activities/point-in-time/
 * runs its server with ignore_invalid_pages for the zeroed files --db-include leaves; test/integration/point-in-time.test.ts
 * proves it. Before that setting, this step was what kept the bench's recovery from PANICking.)
 */
async function quiesce(exclude: string): Promise<void> {
  const dbs = await query<{ datname: string }>(
    'postgres',
    `SELECT datname FROM pg_database WHERE datallowconn AND datname LIKE 'bench\\_%' AND datname <> $1 ORDER BY 1`,
    [exclude],
  );
  // ANALYZE first: the VACUUM after it also clears what ANALYZE left dead in pg_statistic (else autovacuum would).
  for (const { datname } of dbs) {
    await query(datname, 'ANALYZE');
    await query(datname, 'VACUUM');
  }
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    const [r] = await query<{ n: string }>(
      'postgres',
      "SELECT count(*)::text AS n FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'",
    );
    if (r.n === '0') return;
    await sleep(500);
  }
  say('point in time: autovacuum still busy after 60 s; going on');
}

export async function pointInTimeIncident(opts: {
  source: string;
  live: string;
  victims: string[];
  /** Between the last write and the moment, and between the moment and the deletion. */
  pauseMs: number;
}): Promise<PointInTimeIncident> {
  const env = benchEnv();
  const stanza = env.STACK_PGBACKREST_STANZA;
  if (!stanza) throw new Error('.stack/env has no STACK_PGBACKREST_STANZA: the stack has no pgBackRest stanza');
  const { live, victims } = opts;
  await dropDatabase(live);
  // FILE_COPY: the copy is a checkpoint and the files, not every block through the WAL (WAL_LOG, the default).
  await query(
    'postgres',
    `CREATE DATABASE ${escapeIdentifier(live)} TEMPLATE ${escapeIdentifier(opts.source)} STRATEGY FILE_COPY`,
  );

  say('point in time: ANALYZE and VACUUM of the bench databases, autovacuum idle, before the base backup');
  const tq = performance.now();
  await quiesce(live);
  const quiesceMs = performance.now() - tq;
  say(`point in time: pgbackrest --stanza=${stanza} backup --type=incr (the base backup, ${live} in it)`);
  const t0 = performance.now();
  const backup = pgbackrest([`--stanza=${stanza}`, 'backup', '--type=incr']);
  const backupMs = performance.now() - t0;
  if (backup.status !== 0) throw new Error(`pgbackrest backup failed (exit ${backup.status}): ${backup.output.trim()}`);
  // pgBackRest records a backup's end to the second, and picks for a moment the newest backup ended before it.
  await sleep(1500);

  // Writes only the WAL archive holds: one issue per victim project, in one transaction whose commit is bracketed.
  const client = await connect(dbUrl(live), 'tenant-restore-bench');
  let writtenAfterBackup: number;
  let lastWrite: PointInTimeIncident['lastWrite'];
  try {
    await client.query('BEGIN');
    const inserted = await client.query(
      `INSERT INTO app.issues (project_id, reporter_id, title)
       SELECT DISTINCT ON (i.project_id) i.project_id, i.reporter_id, 'written after the base backup'
       FROM app.issues i JOIN app.projects p ON p.id = i.project_id
       WHERE p.tenant_id = ANY (${ids(victims)})
       ORDER BY i.project_id, i.id`,
    );
    await client.query(
      `UPDATE app.tenants SET name = name || ' (renamed after the backup)' WHERE id = ANY (${ids(victims)})`,
    );
    const before = (await client.query<{ t: string }>(clockMicrosSql)).rows[0].t;
    await client.query('COMMIT');
    const after = (await client.query<{ t: string }>(clockMicrosSql)).rows[0].t;
    writtenAfterBackup = inserted.rowCount ?? 0;
    lastWrite = { before, after };
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  } finally {
    await client.end();
  }
  await sleep(opts.pauseMs);
  const at = await clock(live);
  // Counted after the moment (nothing writes to the victims until their deletion): the count takes a while on the
  // main dataset, and would stretch the time between the last write and the moment.
  const rowsAtTarget = await rowsOfTenants(live, victims);
  await sleep(opts.pauseMs);

  say(`point in time: moment ${at}; deleting ${victims.length} victims, then archiving the WAL`);
  await purgeTenants(dbUrl(live), victims);
  // A commit after the moment, archived: recovery stops at the first commit after its target.
  await query(
    live,
    `UPDATE app.tenants SET name = name || '.' WHERE id = (SELECT min(id) FROM app.tenants WHERE id <> ALL (${ids(victims)}))`,
  );
  const t1 = performance.now();
  await archiveNow(live);
  const archiveMs = performance.now() - t1;
  return {
    stanza,
    live,
    quiesceMs,
    backupMs,
    writtenAfterBackup,
    rowsAtTarget,
    rowsAtTargetTotal: Object.values(rowsAtTarget).reduce((a, b) => a + b, 0),
    at,
    lastWrite,
    archiveMs,
  };
}

/** After the restore: the victims' writes made after the base backup, back in live (renamed tenants, new issues). */
export async function writesAfterBackupInLive(
  live: string,
  victims: string[],
): Promise<{ renamedTenants: number; issues: number }> {
  const [r] = await query<{ renamed: string; issues: string }>(
    live,
    `SELECT (SELECT count(*) FROM app.tenants WHERE id = ANY (${ids(victims)})
               AND name LIKE '%(renamed after the backup)')::text AS renamed,
            (SELECT count(*) FROM app.issues i JOIN app.projects p ON p.id = i.project_id
             WHERE p.tenant_id = ANY (${ids(victims)}) AND i.title = 'written after the base backup')::text AS issues`,
  );
  return { renamedTenants: Number(r.renamed), issues: Number(r.issues) };
}
