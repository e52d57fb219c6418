/**
 * Evidence for the demo and the tests, computed independently of the product.
 *
 * 1. `tenantChecksums`: per tenant and per table, a row count and an order-independent checksum (the sum of the
 *    first 64 bits of md5(row::text)). Taken for the victims right after the backup and again after the restore, it
 *    shows that each restored tenant equals the backup.
 *
 * 2. `snapshotRows` + `compareSnapshots`: proof that the restore did not touch any other tenant (invariant I1) even
 *    though a writer was changing those tenants all along. Each snapshot stores one digest per row of every
 *    non-victim tenant (and of the shared tables) in a separate verification database, never in live. The
 *    comparison then demands, for every row key:
 *      - not touched by the writer: the same digest before and after (or absent in both);
 *      - touched by the writer: the digest the writer itself read back at its last write (absent if it deleted it).
 *    A row that the restore inserted, changed or deleted in another tenant breaks one of the two rules. The
 *    `before` snapshot may be taken while the writer runs; `after` must be taken once the writer has stopped.
 */
import {
  connect,
  copyFrom,
  copyTo,
  databaseName,
  escapeIdentifier,
  escapeLiteral,
  withDatabase,
  type Client,
} from '../../activities/db';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import { ownedTables, sharedTables } from './model';
import type { WriterLogEntry } from './writer';

export interface TableChecksum {
  rows: number;
  checksum: string;
}
/** tenant id -> table -> checksum */
export type TenantChecksums = Record<string, Record<string, TableChecksum>>;

/** Columns that re-enable actions change after validation, left out of the tenant checksum when asked. */
export const reenableColumns: Record<string, string[]> = {
  'app.billing_accounts': ['active', 'updated_at'],
  'app.app_installations': ['enabled', 'updated_at'],
};

function idList(ids: string[]): string {
  for (const id of ids) if (!/^\d+$/.test(id)) throw new Error(`tenant id '${id}' is not an integer`);
  return `${escapeLiteral(`{${ids.join(',')}}`)}::bigint[]`;
}

async function session(url: string, name: string): Promise<Client> {
  const client = await connect(url, name);
  // md5(row::text) depends on how timestamps print: pin it.
  await client.query("SET TimeZone = 'UTC'; SET DateStyle = 'ISO, MDY'; SET extra_float_digits = 1");
  return client;
}

/** Per-tenant per-table count and checksum, for the given tenants. Tables with no row for a tenant are included as 0. */
export async function tenantChecksums(
  url: string,
  tenantIds: string[],
  options: { ignoreColumns?: Record<string, string[]> } = {},
): Promise<TenantChecksums> {
  const client = await session(url, 'workload-checksums');
  const out: TenantChecksums = {};
  for (const id of tenantIds)
    out[id] = Object.fromEntries(ownedTables.map((t) => [t.table, { rows: 0, checksum: '0' }]));
  try {
    for (const t of ownedTables) {
      const ignored = options.ignoreColumns?.[t.table] ?? [];
      const rowText = ignored.length
        ? `(to_jsonb(x) - ${escapeLiteral(`{${ignored.join(',')}}`)}::text[])::text`
        : 'x::text';
      const result = await client.query<{ tenant_id: string; rows: string; checksum: string }>(
        `SELECT (${t.tenant})::text AS tenant_id, count(*) AS rows,
                sum(('x' || substr(md5(${rowText}), 1, 16))::bit(64)::bigint::numeric)::text AS checksum
         FROM ${t.from} WHERE ${t.tenant} = ANY (${idList(tenantIds)}) GROUP BY 1`,
      );
      for (const r of result.rows) out[r.tenant_id][t.table] = { rows: Number(r.rows), checksum: r.checksum };
    }
  } finally {
    await client.end();
  }
  return out;
}

export interface ChecksumDiff {
  tenantId: string;
  table: string;
  expected: TableChecksum;
  actual: TableChecksum;
}

export function diffChecksums(expected: TenantChecksums, actual: TenantChecksums): ChecksumDiff[] {
  const diffs: ChecksumDiff[] = [];
  for (const [tenantId, tables] of Object.entries(expected)) {
    for (const [table, e] of Object.entries(tables)) {
      const a = actual[tenantId]?.[table] ?? { rows: 0, checksum: '0' };
      if (a.rows !== e.rows || a.checksum !== e.checksum) diffs.push({ tenantId, table, expected: e, actual: a });
    }
  }
  return diffs;
}

// ---------------------------------------------------------------------------------------------------------------
// row-level snapshots in a verification database

/** The verification database next to live (`<live>_verify`), created when missing. Returns its URL. */
export async function ensureVerifyDatabase(liveUrl: string): Promise<string> {
  const name = `${databaseName(liveUrl)}_verify`;
  const admin = await connect(withDatabase(liveUrl, 'postgres'), 'workload-checksums');
  try {
    const exists = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
    if (exists.rowCount === 0) await admin.query(`CREATE DATABASE ${escapeIdentifier(name)}`);
  } finally {
    await admin.end();
  }
  const url = withDatabase(liveUrl, name);
  const client = await connect(url, 'workload-checksums');
  try {
    await client.query(`
      CREATE TABLE IF NOT EXISTS row_digests (label text NOT NULL, tbl text NOT NULL, tenant_id bigint, key text NOT NULL, digest text NOT NULL,
        PRIMARY KEY (label, tbl, key));
      CREATE TABLE IF NOT EXISTS writer_last (label text NOT NULL, tbl text NOT NULL, key text NOT NULL, digest text,
        PRIMARY KEY (label, tbl, key));`);
  } finally {
    await client.end();
  }
  return url;
}

export interface SnapshotResult {
  label: string;
  rows: number;
  durationMs: number;
}

/**
 * Streams one digest per row of every tenant NOT in `excludeTenants`, plus the shared tables, from live into the
 * verification database under `label` (replacing an older snapshot of that label).
 */
export async function snapshotRows(
  liveUrl: string,
  verifyUrl: string,
  label: string,
  excludeTenants: string[],
): Promise<SnapshotResult> {
  const started = Date.now();
  const live = await session(liveUrl, 'workload-checksums');
  const verify = await connect(verifyUrl, 'workload-checksums');
  try {
    await verify.query('DELETE FROM row_digests WHERE label = $1', [label]);
    const selects = [
      ...ownedTables.map(
        (t) =>
          `SELECT ${escapeLiteral(t.table)}, (${t.tenant})::bigint, ${t.key}, md5(x::text) FROM ${t.from} WHERE NOT ((${t.tenant}) = ANY (${idList(excludeTenants)}))`,
      ),
      ...sharedTables.map(
        (table) => `SELECT ${escapeLiteral(table)}, NULL::bigint, md5(x::text), md5(x::text) FROM ${table} x`,
      ),
    ];
    // One REPEATABLE READ transaction on live: all tables from the same instant.
    await live.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    for (const select of selects) {
      const source = live.query(copyTo(`COPY (SELECT ${escapeLiteral(label)}, * FROM (${select}) s) TO STDOUT`));
      const sink = verify.query(copyFrom('COPY row_digests (label, tbl, tenant_id, key, digest) FROM STDIN'));
      await pipeline(source, sink);
    }
    await live.query('COMMIT');
    const count = await verify.query<{ n: string }>('SELECT count(*) AS n FROM row_digests WHERE label = $1', [label]);
    return { label, rows: Number(count.rows[0].n), durationMs: Date.now() - started };
  } finally {
    await live.end();
    await verify.end();
  }
}

export interface UntouchedReport {
  /** Row keys compared (union of both snapshots). */
  rowsCompared: number;
  /** Distinct rows the writer changed; their final state must be the writer's own last write. */
  rowsWrittenByWriter: number;
  /** Rows the writer did not touch, identical before and after. */
  rowsUnchanged: number;
  /** Rows that changed without the writer (or differ from its last write): must be 0. */
  violations: number;
  examples: Array<{
    table: string;
    key: string;
    tenantId: string | null;
    before: string | null;
    after: string | null;
    writer: string | null | undefined;
  }>;
}

/**
 * Compares two snapshots given the writer's log (see the module comment). `writerLog` must be complete: every
 * transaction the writer committed, in commit order per row.
 */
export async function compareSnapshots(
  verifyUrl: string,
  before: string,
  after: string,
  writerLog: WriterLogEntry[],
): Promise<UntouchedReport> {
  const verify = await connect(verifyUrl, 'workload-checksums');
  try {
    const last = new Map<string, WriterLogEntry>();
    for (const entry of [...writerLog].sort((a, b) => a.seq - b.seq)) last.set(`${entry.table}\t${entry.key}`, entry);
    await verify.query('DELETE FROM writer_last WHERE label = $1', [after]);
    const lines = [...last.values()].map((e) => `${after}\t${e.table}\t${e.key}\t${e.digest ?? '\\N'}\n`);
    await pipeline(
      Readable.from(lines),
      verify.query(copyFrom('COPY writer_last (label, tbl, key, digest) FROM STDIN')),
    );
    const result = await verify.query<{
      tbl: string;
      key: string;
      tenant_id: string | null;
      before: string | null;
      after: string | null;
      writer: string | null;
      written: boolean;
      violation: boolean;
    }>(
      `
      WITH b AS (SELECT * FROM row_digests WHERE label = $1), a AS (SELECT * FROM row_digests WHERE label = $2),
      joined AS (
        SELECT coalesce(b.tbl, a.tbl) AS tbl, coalesce(b.key, a.key) AS key, coalesce(a.tenant_id, b.tenant_id)::text AS tenant_id,
               b.digest AS before, a.digest AS after
        FROM b FULL JOIN a ON a.tbl = b.tbl AND a.key = b.key
      )
      SELECT j.*, w.digest AS writer, w.key IS NOT NULL AS written,
             CASE WHEN w.key IS NULL THEN j.before IS DISTINCT FROM j.after ELSE w.digest IS DISTINCT FROM j.after END AS violation
      FROM joined j LEFT JOIN writer_last w ON w.label = $2 AND w.tbl = j.tbl AND w.key = j.key
      WHERE w.key IS NOT NULL OR j.before IS DISTINCT FROM j.after`,
      [before, after],
    );
    const total = await verify.query<{ n: string }>(
      `
      SELECT count(*) AS n FROM (SELECT tbl, key FROM row_digests WHERE label = $1 UNION SELECT tbl, key FROM row_digests WHERE label = $2) u`,
      [before, after],
    );
    const rowsCompared = Number(total.rows[0].n);
    const violations = result.rows.filter((r) => r.violation);
    // Rows the writer touched but that are in neither snapshot (inserted and deleted again) are not "compared".
    const writtenCompared = result.rows.filter((r) => r.written && (r.before !== null || r.after !== null)).length;
    const changedNotWritten = result.rows.filter((r) => !r.written).length;
    return {
      rowsCompared,
      rowsWrittenByWriter: last.size,
      rowsUnchanged: rowsCompared - writtenCompared - changedNotWritten,
      violations: violations.length,
      examples: violations.slice(0, 10).map((r) => ({
        table: r.tbl,
        key: r.key,
        tenantId: r.tenant_id,
        before: r.before,
        after: r.after,
        writer: r.writer,
      })),
    };
  } finally {
    await verify.end();
  }
}
