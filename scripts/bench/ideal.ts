/**
 * The ideal pipeline: only the data movement, nothing else. Download the archive, `pg_restore -j2` it into a fresh
 * database, then one `COPY (SELECT ...) TO STDOUT | COPY ... FROM STDIN` per table for the victims into a live that
 * is in the post-deletion state, with FK triggers off (`session_replication_role = replica`), no staging, no merge,
 * no validation, no sequence work. Its time is the floor the product is compared with.
 */
import { createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { connect, copyFrom, copyTo, escapeLiteral } from '../../activities/db';
import { createS3Client, getStream, parseS3Url } from '../../activities/s3';
import { ownedTables, type WorkloadTable } from '../workload/model';
import type { MainDataset } from './dataset';
import { createDatabase, dbUrl, dropDatabase, run, say } from './pg';

export interface IdealResult {
  scratch: string;
  live: string;
  downloadMs: number;
  pgRestoreMs: number;
  copyMs: number;
  totalMs: number;
  rows: Record<string, number>;
  rowsTotal: number;
  rowsPerSecond: number;
  copyMsPerTable: Record<string, number>;
}

/**
 * The ideal's data movement alone: one `COPY (SELECT ...) TO STDOUT | COPY ... FROM STDIN` per table for the tenants,
 * FK triggers off. Rows per table and milliseconds per table.
 */
export async function copyTenants(
  from: string,
  into: string,
  tenantIds: string[],
  tables: WorkloadTable[] = ownedTables,
): Promise<{ rows: Record<string, number>; copyMsPerTable: Record<string, number>; ms: number }> {
  const started = performance.now();
  const ids = `${escapeLiteral(`{${tenantIds.join(',')}}`)}::bigint[]`;
  const source = await connect(dbUrl(from), 'bench-ideal');
  const target = await connect(dbUrl(into), 'bench-ideal');
  const rows: Record<string, number> = {};
  const copyMsPerTable: Record<string, number> = {};
  try {
    // FK triggers off for this session only: the ideal trusts the backup and checks nothing.
    await target.query('SET session_replication_role = replica');
    for (const t of tables) {
      const t0 = performance.now();
      const out = source.query(copyTo(`COPY (SELECT x.* FROM ${t.from} WHERE ${t.tenant} = ANY (${ids})) TO STDOUT`));
      const sink = target.query(copyFrom(`COPY ${t.table} FROM STDIN`));
      await pipeline(out, sink);
      rows[t.table] = Number(sink.rowCount);
      copyMsPerTable[t.table] = performance.now() - t0;
    }
  } finally {
    await source.end();
    await target.end();
  }
  return { rows, copyMsPerTable, ms: performance.now() - started };
}

export type IdealDataset = Pick<MainDataset, 'postDeletion' | 'backupUrl' | 'victims' | 'victimRowsTotal'>;

/**
 * Runs the ideal pipeline over `tables` (the main dataset's by default); the restored database is kept (the caller
 * uses it as a ready scratch, then drops it). `label` names its databases (one ideal per dataset in a run).
 */
export async function runIdeal(
  dataset: IdealDataset,
  runTag: string,
  jobs = 2,
  tables: WorkloadTable[] = ownedTables,
  label = 'ideal',
): Promise<IdealResult> {
  const scratch = `bench_${label}_scratch_${runTag}`;
  const live = `bench_${label}_live_${runTag}`;
  await dropDatabase(scratch);
  await dropDatabase(live);
  await createDatabase(live, dataset.postDeletion);
  const dir = await mkdtemp(join(tmpdir(), 'bench-ideal-'));
  const file = join(dir, 'backup.dump');
  const s3 = createS3Client();
  const started = performance.now();
  try {
    say(`${label}: downloading the archive`);
    const { body } = await getStream(s3, parseS3Url(dataset.backupUrl));
    await pipeline(body, createWriteStream(file));
    const downloadMs = performance.now() - started;

    say(`${label}: pg_restore -j${jobs} into ${scratch}`);
    const t1 = performance.now();
    await createDatabase(scratch);
    await run('pg_restore', [
      '--no-owner',
      '--no-privileges',
      '--exit-on-error',
      '-j',
      String(jobs),
      '-d',
      dbUrl(scratch),
      file,
    ]);
    const pgRestoreMs = performance.now() - t1;

    say(`${label}: COPY ${dataset.victims.length} tenants, table by table`);
    const t2 = performance.now();
    const { rows, copyMsPerTable } = await copyTenants(scratch, live, dataset.victims, tables);
    const copyMs = performance.now() - t2;
    const totalMs = performance.now() - started;
    const rowsTotal = Object.values(rows).reduce((a, b) => a + b, 0);
    if (rowsTotal !== dataset.victimRowsTotal)
      throw new Error(`the ideal copied ${rowsTotal} rows, the victims hold ${dataset.victimRowsTotal}`);
    return {
      scratch,
      live,
      downloadMs,
      pgRestoreMs,
      copyMs,
      totalMs,
      rows,
      rowsTotal,
      rowsPerSecond: rowsTotal / (totalMs / 1000),
      copyMsPerTable,
    };
  } finally {
    s3.destroy();
    await rm(dir, { recursive: true, force: true });
  }
}
