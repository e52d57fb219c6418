/**
 * The benchmark's data, built with the workload scripts (generator, backup, incident) and cached between runs by
 * parameters: a database whose COMMENT records what it holds is reused unless --fresh-data is given.
 *
 * Main dataset:
 *   bench_src_<tag>   the workload (N tenants, ~R rows) plus E *empty* tenants (a root row only, ids 900001...),
 *                     which measure the orchestration's per-tenant overhead and the 10,000-tenant scale run;
 *                     victims suspended (billing off, apps disabled) before the backup, as in the incident
 *   s3://.../backup.dump   `pg_dump -Fc` of it, with its manifest (scripts/workload/backup.ts)
 *   bench_post_<tag>  live after the incident: the victims purged, the empty tenants deleted. Every live database
 *                     of a run is `CREATE DATABASE ... TEMPLATE` of it, so product and ideal start from the same state.
 *
 * Big-tenant datasets (memory): bench_big_<rows> holds ONE tenant of <rows> rows (it also serves as the scratch:
 * it is what a restore of its backup would give), bench_bigl_<rows> is its live: same schema and shared tables, no
 * tenant rows.
 */
import { escapeLiteral } from '../../activities/db';
import { createS3Client, head } from '../../activities/s3';
import { takeBackup } from '../workload/backup';
import { generateWorkload } from '../workload/generate';
import { pickVictims, purgeTenants, suspendTenants } from '../workload/incident';
import { ownedTables, sharedTables, type WorkloadTable } from '../workload/model';
import {
  benchEnv,
  createDatabase,
  databaseBytes,
  databaseComment,
  databaseExists,
  dbUrl,
  dropDatabase,
  query,
  run,
  say,
  setDatabaseComment,
} from './pg';

const markerVersion = 'tenant-restore-bench/1';
export const firstEmptyTenantId = 900001;

export interface MainDatasetOptions {
  tenants: number;
  rows: number;
  victims: number;
  /** Empty tenants (root row only) added to the backup and absent from live. */
  empties: number;
  seed: number;
  fresh: boolean;
}

export interface MainDataset {
  source: string;
  postDeletion: string;
  backupUrl: string;
  backupBytes: number;
  backupSha256: string;
  tenants: number;
  totalRows: number;
  rowsPerTable: Record<string, number>;
  victims: string[];
  /** Rows of the victims, per table: what both the product and the ideal must move. */
  victimRows: Record<string, number>;
  victimRowsTotal: number;
  empties: string[];
  databaseBytes: number;
  reused: boolean;
  buildMs?: { generate: number; backup: number; postDeletion: number };
}

interface MainMarker {
  version: string;
  options: Omit<MainDatasetOptions, 'fresh'>;
  backupUrl: string;
  backupBytes: number;
  backupSha256: string;
  totalRows: number;
  rowsPerTable: Record<string, number>;
  victims: string[];
  victimRows: Record<string, number>;
}

function idArray(ids: string[]): string {
  for (const id of ids) if (!/^\d+$/.test(id)) throw new Error(`tenant id '${id}' is not an integer`);
  return `${escapeLiteral(`{${ids.join(',')}}`)}::bigint[]`;
}

export function emptyTenantIds(count: number): string[] {
  return Array.from({ length: count }, (_, i) => String(firstEmptyTenantId + i));
}

/** Rows per owned table for the given tenants (the workload's own ownership joins, not the product's). */
export async function rowsOfTenants(
  database: string,
  tenantIds: string[],
  tables: WorkloadTable[] = ownedTables,
): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const t of tables) {
    const [r] = await query<{ n: string }>(
      database,
      `SELECT count(*)::text AS n FROM ${t.from} WHERE ${t.tenant} = ANY (${idArray(tenantIds)})`,
    );
    out[t.table] = Number(r.n);
  }
  return out;
}

const sum = (r: Record<string, number>) => Object.values(r).reduce((a, b) => a + b, 0);

export async function mainDataset(options: MainDatasetOptions): Promise<MainDataset> {
  const env = benchEnv();
  const { tenants, rows, victims: victimCount, empties, seed } = options;
  const tag = `${tenants}t_${rows}r_${victimCount}v_${empties}e_s${seed}`;
  const source = `bench_src_${tag}`;
  const postDeletion = `bench_post_${tag}`;
  const key = `bench/${tag}/backup.dump`;
  const s3 = createS3Client();
  try {
    if (!options.fresh && (await databaseExists(source)) && (await databaseExists(postDeletion))) {
      const comment = await databaseComment(source);
      const marker = comment?.startsWith(markerVersion)
        ? (JSON.parse(comment.slice(markerVersion.length + 1)) as MainMarker)
        : undefined;
      const object = marker ? await head(s3, { bucket: env.STACK_S3_BUCKET, key }).catch(() => undefined) : undefined;
      if (marker && object?.size === marker.backupBytes) {
        say(`reusing dataset ${source} (${marker.totalRows.toLocaleString()} rows; --fresh-data rebuilds it)`);
        return {
          source,
          postDeletion,
          backupUrl: marker.backupUrl,
          backupBytes: marker.backupBytes,
          backupSha256: marker.backupSha256,
          tenants,
          totalRows: marker.totalRows,
          rowsPerTable: marker.rowsPerTable,
          victims: marker.victims,
          victimRows: marker.victimRows,
          victimRowsTotal: sum(marker.victimRows),
          empties: emptyTenantIds(empties),
          databaseBytes: await databaseBytes(source),
          reused: true,
        };
      }
    }
    say(
      `building dataset ${source}: ${tenants} tenants, ~${rows.toLocaleString()} rows, ${victimCount} victims, ${empties} empty tenants`,
    );
    await dropDatabase(postDeletion);
    await dropDatabase(source);
    await createDatabase(source);
    const t0 = Date.now();
    const generated = await generateWorkload(dbUrl(source), {
      tenants,
      rowsTarget: rows,
      seed,
      onProgress: (m) => say(`  generate: ${m}`),
    });
    const emptyIds = emptyTenantIds(empties);
    if (empties > 0) {
      await query(
        source,
        `INSERT INTO app.tenants (id, slug, name, plan_id, country_code)
        SELECT ${firstEmptyTenantId - 1} + g, 'empty-' || (${firstEmptyTenantId - 1} + g), 'Empty tenant ' || g, 1, 'US'
        FROM generate_series(1, $1::int) g`,
        [empties],
      );
    }
    const victims = pickVictims(
      generated.tenantIds,
      victimCount,
      seed,
      generated.largestTenants.map((t) => t.tenantId),
    );
    // As in the incident: the decommission script suspended them before the nightly backup, so the restore has to
    // switch billing and apps back on.
    await suspendTenants(dbUrl(source), victims);
    const victimRows = await rowsOfTenants(source, victims);
    const rowsPerTable = { ...generated.rows, 'app.tenants': generated.rows['app.tenants'] + empties };
    const generateMs = Date.now() - t0;

    say(`  pg_dump -Fc into s3://${env.STACK_S3_BUCKET}/${key}`);
    const t1 = Date.now();
    const backup = await takeBackup({ url: dbUrl(source), s3, bucket: env.STACK_S3_BUCKET, key });
    const backupMs = Date.now() - t1;

    say('  post-deletion live: purging the victims and the empty tenants');
    const t2 = Date.now();
    await createDatabase(postDeletion, source);
    await purgeTenants(dbUrl(postDeletion), victims);
    await query(postDeletion, `DELETE FROM app.tenants WHERE id >= ${firstEmptyTenantId}`);
    await query(postDeletion, 'VACUUM ANALYZE');
    const postMs = Date.now() - t2;

    const marker: MainMarker = {
      version: markerVersion,
      options: { tenants, rows, victims: victimCount, empties, seed },
      backupUrl: backup.url,
      backupBytes: backup.manifest.sizeBytes,
      backupSha256: backup.manifest.sha256,
      totalRows: sum(rowsPerTable),
      rowsPerTable,
      victims,
      victimRows,
    };
    await setDatabaseComment(source, `${markerVersion} ${JSON.stringify(marker)}`);
    say(
      `  dataset ready: ${marker.totalRows.toLocaleString()} rows, victims hold ${sum(victimRows).toLocaleString()} rows, backup ${(backup.manifest.sizeBytes / 1e6).toFixed(0)} MB`,
    );
    return {
      source,
      postDeletion,
      backupUrl: backup.url,
      backupBytes: backup.manifest.sizeBytes,
      backupSha256: backup.manifest.sha256,
      tenants,
      totalRows: marker.totalRows,
      rowsPerTable,
      victims,
      victimRows,
      victimRowsTotal: sum(victimRows),
      empties: emptyIds,
      databaseBytes: await databaseBytes(source),
      reused: false,
      buildMs: { generate: generateMs, backup: backupMs, postDeletion: postMs },
    };
  } finally {
    s3.destroy();
  }
}

export interface BigDataset {
  /** Holds the tenant; also the scratch of the memory runs. */
  source: string;
  /** Template of live: schema and shared tables, no tenant rows. */
  liveTemplate: string;
  tenantId: string;
  rows: number;
  rowsPerTable: Record<string, number>;
  reused: boolean;
}

/** One tenant of about `rows` rows, for the memory runs. */
export async function bigTenantDataset(rows: number, seed: number, fresh: boolean): Promise<BigDataset> {
  const source = `bench_big_${rows}`;
  const liveTemplate = `bench_bigl_${rows}`;
  const tenantId = '100001';
  if (!fresh && (await databaseExists(source)) && (await databaseExists(liveTemplate))) {
    const comment = await databaseComment(liveTemplate);
    if (comment?.startsWith(markerVersion)) {
      const marker = JSON.parse(comment.slice(markerVersion.length + 1)) as { rowsPerTable: Record<string, number> };
      say(`reusing big-tenant dataset ${source}`);
      return {
        source,
        liveTemplate,
        tenantId,
        rows: sum(marker.rowsPerTable),
        rowsPerTable: marker.rowsPerTable,
        reused: true,
      };
    }
  }
  say(`building big-tenant dataset ${source}: one tenant of ~${rows.toLocaleString()} rows`);
  await dropDatabase(liveTemplate);
  await dropDatabase(source);
  await createDatabase(source);
  const generated = await generateWorkload(dbUrl(source), {
    tenants: 1,
    rowsTarget: rows,
    seed,
    onProgress: (m) => say(`  generate: ${m}`),
  });
  await createDatabase(liveTemplate);
  // Live: the same schema and the shared reference rows, without any tenant row.
  const excluded = ownedTables.map((t) => `--exclude-table-data=${t.table}`).join(' ');
  await run(
    `pg_dump --no-owner --no-privileges ${excluded} -d '${dbUrl(source)}' | psql -q -X -v ON_ERROR_STOP=1 -d '${dbUrl(liveTemplate)}'`,
    [],
    { shell: true },
  );
  const shared = await query<{ n: string }>(
    liveTemplate,
    `SELECT (${sharedTables.map((t) => `(SELECT count(*) FROM ${t})`).join(' + ')})::text AS n`,
  );
  if (Number(shared[0].n) === 0) throw new Error(`${liveTemplate} has no shared rows: the schema copy failed`);
  const rowsPerTable = Object.fromEntries(ownedTables.map((t) => [t.table, generated.rows[t.table]]));
  await setDatabaseComment(liveTemplate, `${markerVersion} ${JSON.stringify({ rowsPerTable })}`);
  return { source, liveTemplate, tenantId, rows: sum(rowsPerTable), rowsPerTable, reused: false };
}
