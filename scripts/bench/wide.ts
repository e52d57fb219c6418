/**
 * The wide-schema dataset: many small tenant-owned tables, as real SaaS schemas have (hundreds of tables, a few rows of
 * each per tenant). Where the main dataset measures rows, this one measures the fixed cost per table and per unit.
 *
 * Schema `app` (so the product's `--tenant-root app.tenants` and the ideal's COPY apply unchanged):
 * - app.tenants (id, name, created_at);
 * - app.w001 ... app.wNNN. Three in four are owned directly (`tenant_id` REFERENCES app.tenants, indexed); every third of
 *   those also points at the previous direct table's row of the same tenant (`ref_id`, an indexed FK: a second
 *   ownership path). Every fourth is a child of the table before it (`parent_id`, no tenant column): its rows reach the
 *   tenant through the parent, as line items through invoices.
 * Each direct table has `rowsPerTable` rows per tenant, each child one row per parent row.
 *
 * Cached like the main dataset: a database whose COMMENT records the parameters is reused.
 */
import { createS3Client, head } from '../../activities/s3';
import { takeBackup } from '../workload/backup';
import type { WorkloadTable } from '../workload/model';
import {
  benchEnv,
  createDatabase,
  databaseComment,
  databaseExists,
  dbUrl,
  dropDatabase,
  query,
  say,
  setDatabaseComment,
} from './pg';

const markerVersion = 'tenant-restore-bench-wide/1';

export interface WideOptions {
  tables: number;
  tenants: number;
  victims: number;
  rowsPerTable: number;
  fresh: boolean;
}

export interface WideDataset {
  source: string;
  postDeletion: string;
  backupUrl: string;
  backupBytes: number;
  /** Tenant-owned tables, parents first, in the ideal's terms (alias x). */
  tables: WorkloadTable[];
  tenants: number;
  totalRows: number;
  victims: string[];
  victimRowsTotal: number;
  reused: boolean;
}

interface WideMarker {
  options: Omit<WideOptions, 'fresh'>;
  backupUrl: string;
  backupBytes: number;
  totalRows: number;
  victimRowsTotal: number;
}

const name = (i: number) => `app.w${String(i).padStart(3, '0')}`;
const isChild = (i: number) => i % 4 === 0;
/** A direct table (not the first) whose every third has a second path, through the previous direct table. */
const refersBack = (i: number) => !isChild(i) && i > 1 && i % 3 === 0;
const previousDirect = (i: number) => (isChild(i - 1) ? i - 2 : i - 1);

/** The tables in the ideal's terms: FROM with alias x, and the owning tenant of row x. */
export function wideTables(count: number): WorkloadTable[] {
  const tables: WorkloadTable[] = [{ table: 'app.tenants', from: 'app.tenants x', tenant: 'x.id', key: 'x.id::text' }];
  for (let i = 1; i <= count; i++) {
    tables.push(
      isChild(i)
        ? {
            table: name(i),
            from: `${name(i)} x JOIN ${name(i - 1)} p ON p.id = x.parent_id`,
            tenant: 'p.tenant_id',
            key: 'x.id::text',
          }
        : { table: name(i), from: `${name(i)} x`, tenant: 'x.tenant_id', key: 'x.id::text' },
    );
  }
  return tables;
}

function schemaSql(count: number): string {
  const parts = [
    'CREATE SCHEMA IF NOT EXISTS app',
    'CREATE TABLE app.tenants (id bigint PRIMARY KEY, name text NOT NULL, created_at timestamptz NOT NULL)',
  ];
  for (let i = 1; i <= count; i++) {
    const t = name(i);
    const short = t.slice(4);
    if (isChild(i)) {
      parts.push(
        `CREATE TABLE ${t} (id bigint PRIMARY KEY, parent_id bigint NOT NULL REFERENCES ${name(i - 1)}, body text, amount numeric(12,2), created_at timestamptz NOT NULL)`,
        `CREATE INDEX ${short}_parent_idx ON ${t} (parent_id)`,
      );
    } else {
      parts.push(
        `CREATE TABLE ${t} (id bigint PRIMARY KEY, tenant_id bigint NOT NULL REFERENCES app.tenants, ref_id bigint${refersBack(i) ? ` REFERENCES ${name(previousDirect(i))}` : ''}, name text NOT NULL, qty int NOT NULL, flags jsonb, created_at timestamptz NOT NULL)`,
        `CREATE INDEX ${short}_tenant_idx ON ${t} (tenant_id)`,
        ...(refersBack(i) ? [`CREATE INDEX ${short}_ref_idx ON ${t} (ref_id)`] : []),
      );
    }
  }
  return parts.map((p) => `${p};`).join('\n');
}

function dataSql(count: number, tenants: number, rowsPerTable: number): string[] {
  const at = (id: string) => `timestamptz '2026-01-01 00:00:00+00' + (${id} % 100000) * interval '1 minute'`;
  const statements = [
    `INSERT INTO app.tenants SELECT g, 'tenant ' || g, ${at('g')} FROM generate_series(1, ${tenants}) g`,
  ];
  for (let i = 1; i <= count; i++) {
    if (isChild(i)) {
      statements.push(
        `INSERT INTO ${name(i)} SELECT p.id, p.id, md5(p.id::text || '${i}'), (p.id % 100000) / 100.0, ${at('p.id')} FROM ${name(i - 1)} p`,
      );
    } else {
      // Ids: tenant * 1000 + j, so that ref_id can name the previous table's row j of the same tenant.
      const ref = refersBack(i) ? 't.id * 1000 + j' : 'NULL';
      statements.push(
        `INSERT INTO ${name(i)} SELECT t.id * 1000 + j, t.id, ${ref}, 'row ' || j || ' of ' || t.id, (t.id * j) % 97,
           CASE WHEN j % 2 = 0 THEN jsonb_build_object('k', j, 'table', ${i}) END, ${at('t.id * 1000 + j')}
         FROM app.tenants t, generate_series(1, ${rowsPerTable}) j`,
      );
    }
  }
  return statements;
}

export async function wideDataset(options: WideOptions): Promise<WideDataset> {
  const env = benchEnv();
  const { tables: count, tenants, victims: victimCount, rowsPerTable } = options;
  const tag = `${count}x_${tenants}t_${rowsPerTable}r_${victimCount}v`;
  const source = `bench_wide_src_${tag}`;
  const postDeletion = `bench_wide_post_${tag}`;
  const key = `bench/wide_${tag}/backup.dump`;
  const tables = wideTables(count);
  // Every k-th tenant, spread over the id range.
  const step = Math.max(1, Math.floor(tenants / victimCount));
  const victims = Array.from({ length: victimCount }, (_, k) => String(1 + k * step));
  const s3 = createS3Client();
  try {
    if (!options.fresh && (await databaseExists(source)) && (await databaseExists(postDeletion))) {
      const comment = await databaseComment(source);
      const marker = comment?.startsWith(markerVersion)
        ? (JSON.parse(comment.slice(markerVersion.length + 1)) as WideMarker)
        : undefined;
      const object = marker ? await head(s3, { bucket: env.STACK_S3_BUCKET, key }).catch(() => undefined) : undefined;
      if (marker && object?.size === marker.backupBytes) {
        say(`reusing wide dataset ${source} (${marker.totalRows.toLocaleString()} rows)`);
        return { source, postDeletion, tables, tenants, victims, reused: true, ...marker };
      }
    }
    say(`building wide dataset ${source}: ${count} tables, ${tenants} tenants, ${rowsPerTable} rows per table each`);
    await dropDatabase(postDeletion);
    await dropDatabase(source);
    await createDatabase(source);
    await query(source, schemaSql(count));
    for (const statement of dataSql(count, tenants, rowsPerTable)) await query(source, statement);
    await query(source, 'VACUUM ANALYZE');
    const ids = `ARRAY[${victims.join(',')}]::bigint[]`;
    let totalRows = 0;
    let victimRowsTotal = 0;
    for (const t of tables) {
      const [r] = await query<{ all: string; victims: string }>(
        source,
        `SELECT count(*)::text AS all, (count(*) FILTER (WHERE ${t.tenant} = ANY(${ids})))::text AS victims FROM ${t.from}`,
      );
      totalRows += Number(r!.all);
      victimRowsTotal += Number(r!.victims);
    }
    say(`  pg_dump -Fc into s3://${env.STACK_S3_BUCKET}/${key}`);
    const backup = await takeBackup({ url: dbUrl(source), s3, bucket: env.STACK_S3_BUCKET, key });
    say('  post-deletion live: purging the victims, children first');
    await createDatabase(postDeletion, source);
    const purge = [...tables]
      .reverse()
      .map((t) =>
        t.table === 'app.tenants'
          ? `DELETE FROM app.tenants WHERE id = ANY(${ids})`
          : isChildTable(t)
            ? `DELETE FROM ${t.table} x USING ${t.from.split(' JOIN ')[1]!.split(' ON ')[0]} WHERE p.id = x.parent_id AND p.tenant_id = ANY(${ids})`
            : `DELETE FROM ${t.table} x WHERE x.tenant_id = ANY(${ids})`,
      );
    await query(postDeletion, `BEGIN; ${purge.join(';\n')}; COMMIT`);
    await query(postDeletion, 'VACUUM ANALYZE');
    const marker: WideMarker = {
      options: { tables: count, tenants, victims: victimCount, rowsPerTable },
      backupUrl: backup.url,
      backupBytes: backup.manifest.sizeBytes,
      totalRows,
      victimRowsTotal,
    };
    await setDatabaseComment(source, `${markerVersion} ${JSON.stringify(marker)}`);
    return { source, postDeletion, tables, tenants, victims, reused: false, ...marker };
  } finally {
    s3.destroy();
  }
}

function isChildTable(t: WorkloadTable): boolean {
  return t.from.includes(' JOIN ');
}
