/**
 * Helpers for the engine's integration tests: load SQL with psql, dump and restore with pg_dump/pg_restore, take
 * per-table fingerprints, and record any DELETE or TRUNCATE on live with triggers that fire even when the restore
 * suspends user triggers (ENABLE ALWAYS), so that invariant I2 is observed, not assumed.
 */
import { execFileSync } from 'node:child_process';
import pg from 'pg';
import { withClient } from './stack';

export function psqlFile(url: string, file: string): void {
  execFileSync('psql', ['-q', '-X', '-v', 'ON_ERROR_STOP=1', '-d', url, '-f', file], { env: process.env, stdio: ['ignore', 'ignore', 'pipe'] });
}

/** pg_dump -Fc of `from`, pg_restore into `to` (the backup a restore works from). */
export function dumpAndRestore(from: string, to: string): void {
  const archive = execFileSync('pg_dump', ['-Fc', '-d', from], { env: process.env, maxBuffer: 1 << 30 });
  execFileSync('pg_restore', ['--no-owner', '--exit-on-error', '-d', to], { input: archive, env: process.env, maxBuffer: 1 << 30 });
}

export { withClient };

export async function query<T extends pg.QueryResultRow = pg.QueryResultRow>(url: string, sql: string, values?: unknown[]): Promise<T[]> {
  return withClient(url, async (c) => (await c.query<T>(sql, values)).rows);
}

/** Every ordinary table (partitions included, so a row in the wrong partition shows), except the audit table. */
export async function userTables(url: string): Promise<string[]> {
  const rows = await query<{ t: string }>(url, `
    SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS t FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'audit') AND n.nspname NOT LIKE 'pg\\_%'
    ORDER BY 1`);
  return rows.map((r) => r.t);
}

/**
 * Byte-for-byte fingerprint of a table: row count and md5 of all row texts in a canonical order, in fixed text settings.
 * `where` (SQL over alias t) restricts it to some rows.
 */
export async function fingerprints(url: string, tables: string[], where: (table: string) => string | null = () => 'true'): Promise<Record<string, string>> {
  return withClient(url, async (c) => {
    await c.query(`SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET extra_float_digits = 3`);
    const out: Record<string, string> = {};
    for (const t of tables) {
      const w = where(t);
      if (w === null) continue;
      const { rows } = await c.query<{ n: string; h: string | null }>(`SELECT count(*) AS n, md5(string_agg(t::text, E'\\n' ORDER BY t::text)) AS h FROM ${t} t WHERE ${w}`);
      out[t] = `${rows[0]!.n}:${rows[0]!.h ?? '-'}`;
    }
    return out;
  });
}

/** Installs statement-level ALWAYS triggers on every table that log DELETE and TRUNCATE into audit.destructive. */
export async function installDestructiveAudit(url: string): Promise<void> {
  const tables = await userTables(url);
  await withClient(url, async (c) => {
    await c.query(`CREATE SCHEMA IF NOT EXISTS audit;
      CREATE TABLE IF NOT EXISTS audit.destructive (id bigserial PRIMARY KEY, tbl text NOT NULL, op text NOT NULL, app text);
      CREATE OR REPLACE FUNCTION audit.log_destructive() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN INSERT INTO audit.destructive (tbl, op, app) VALUES (TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME, TG_OP, current_setting('application_name')); RETURN NULL; END $$;`);
    for (const t of tables) {
      await c.query(`CREATE TRIGGER zz_audit_delete AFTER DELETE OR TRUNCATE ON ${t} FOR EACH STATEMENT EXECUTE FUNCTION audit.log_destructive()`);
      // ALWAYS: fires even under session_replication_role = replica, which the restore uses.
      await c.query(`ALTER TABLE ${t} ENABLE ALWAYS TRIGGER zz_audit_delete`);
    }
  });
}

export async function destructiveStatements(url: string, app = 'tenant-restore'): Promise<Array<{ tbl: string; op: string }>> {
  return query<{ tbl: string; op: string }>(url, 'SELECT tbl, op FROM audit.destructive WHERE app = $1 ORDER BY id', [app]);
}

export async function clearAudit(url: string): Promise<void> {
  await query(url, 'TRUNCATE audit.destructive');
}
