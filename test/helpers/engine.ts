/**
 * Helpers for the engine's integration tests: load SQL with psql, dump and restore with pg_dump/pg_restore, and take
 * per-table fingerprints. (The DELETE/TRUNCATE audit of live, for I2, is in ./audit.ts.)
 */
import { execFileSync } from 'node:child_process';
import pg from 'pg';
import { auditSchema } from './audit';
import { withClient } from './stack';

export function psqlFile(url: string, file: string): void {
  execFileSync('psql', ['-q', '-X', '-v', 'ON_ERROR_STOP=1', '-d', url, '-f', file], {
    env: process.env,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
}

/** pg_dump -Fc of `from`, pg_restore into `to` (the backup a restore works from). */
export function dumpAndRestore(from: string, to: string): void {
  const archive = execFileSync('pg_dump', ['-Fc', '-d', from], { env: process.env, maxBuffer: 1 << 30 });
  execFileSync('pg_restore', ['--no-owner', '--exit-on-error', '-d', to], {
    input: archive,
    env: process.env,
    maxBuffer: 1 << 30,
  });
}

export { withClient };

export async function query<T extends pg.QueryResultRow = pg.QueryResultRow>(
  url: string,
  sql: string,
  values?: unknown[],
): Promise<T[]> {
  return withClient(url, async (c) => (await c.query<T>(sql, values)).rows);
}

/** Every ordinary table (partitions included, so a row in the wrong partition shows), except the audit's. */
export async function userTables(url: string): Promise<string[]> {
  const rows = await query<{ t: string }>(
    url,
    `
    SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS t FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema', $1) AND n.nspname NOT LIKE 'pg\\_%'
    ORDER BY 1`,
    [auditSchema],
  );
  return rows.map((r) => r.t);
}

/**
 * Byte-for-byte fingerprint of a table: row count and md5 of all row texts in a canonical order, in fixed text settings.
 * `where` (SQL over alias t) restricts it to some rows.
 */
export async function fingerprints(
  url: string,
  tables: string[],
  where: (table: string) => string | null = () => 'true',
): Promise<Record<string, string>> {
  return withClient(url, async (c) => {
    await c.query(`SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET extra_float_digits = 3`);
    const out: Record<string, string> = {};
    for (const t of tables) {
      const w = where(t);
      if (w === null) continue;
      const { rows } = await c.query<{ n: string; h: string | null }>(
        `SELECT count(*) AS n, md5(string_agg(t::text, E'\\n' ORDER BY t::text)) AS h FROM ${t} t WHERE ${w}`,
      );
      out[t] = `${rows[0]!.n}:${rows[0]!.h ?? '-'}`;
    }
    return out;
  });
}
