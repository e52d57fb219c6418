/**
 * Evidence for the integration and reliability tests, gathered independently of the product:
 *
 * - Least privilege: runs scripts/grants.sql exactly as an operator would (psql, -v variables), makes the separate
 *   scratch role, and writes a private pgpass file so that no URL handed to the product carries a password.
 * - I2: a trigger-based audit on live. Every table of the given schemas gets statement-level AFTER DELETE and AFTER
 *   TRUNCATE triggers, ENABLED ALWAYS so that they fire even under `session_replication_role = replica` (which the
 *   engine sets in its tenant transactions and which silences ordinary triggers). They record who issued the
 *   statement (current_user, session_user, application_name). Statement-level triggers fire even when no row
 *   matches, so an attempt that deletes nothing is recorded too. Temporary staging tables are not covered: they
 *   live in pg_temp schemas, not in the audited ones.
 * - I5: the text of logs and S3 objects (histories: ./history.ts), and a scanner that looks for passwords and seeded
 *   row values in it.
 */
import { ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { getText } from '../../activities/s3';
import { addPgpassEntry, ports, projectRoot, stackDir } from '../../scripts/stack';
import { adminQuery, serverUrl, useStackEnv } from './stack';

export const grantsSql = join(projectRoot, 'scripts', 'grants.sql');

/** A password with characters that need quoting in SQL and URLs, but none that pgpass would need escaped. */
export function newPassword(): string {
  return `pw-${randomBytes(12).toString('base64url')}'"$x`;
}

/** Escapes a pgpass field (`:` and `\`). */
function pgpassField(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/:/g, '\\:');
}

/** A URL for `role` on the stack's server, without a password (the password is in a pgpass file). */
export function roleUrl(role: string, database: string): string {
  return `postgres://${encodeURIComponent(role)}@127.0.0.1:${ports.postgres}/${encodeURIComponent(database)}`;
}

/** A URL with the password inside: only for the test's own sessions (the writer), never for the product. */
export function roleUrlWithPassword(role: string, password: string, database: string): string {
  return `postgres://${encodeURIComponent(role)}:${encodeURIComponent(password)}@127.0.0.1:${ports.postgres}/${encodeURIComponent(database)}`;
}

/**
 * A pgpass file of this test only (the stack's own file is shared by every engineer's tests): the stack superuser's
 * line, plus one line per role given. Returns its path.
 */
export function privatePgpass(name: string, roles: Array<{ role: string; password: string }>): string {
  const dir = join(stackDir, 'reliability');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${name}.pgpass`);
  const stack = useStackEnv().PGPASSFILE;
  writeFileSync(file, existsSync(stack) ? readFileSync(stack, 'utf8') : '', { mode: 0o600 });
  for (const { role, password } of roles)
    addPgpassEntry(file, `127.0.0.1:${ports.postgres}:*:${pgpassField(role)}:${pgpassField(password)}`);
  return file;
}

export interface PsqlResult {
  code: number;
  output: string;
}

/**
 * Runs scripts/grants.sql on `database` as the stack superuser, the way the file's header documents it; `extra` are
 * more psql arguments (`-v fk_checks=postgres`).
 */
export function applyGrants(
  database: string,
  role: string,
  password: string,
  schemas = 'app',
  extra: string[] = [],
): Promise<PsqlResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      'psql',
      [
        '-X',
        '-q',
        '-d',
        serverUrl(database),
        '-v',
        `restore_role=${role}`,
        '-v',
        `restore_password=${password}`,
        '-v',
        `schemas=${schemas}`,
        ...extra,
        '-f',
        grantsSql,
      ],
      { env: { ...process.env, PGPASSFILE: useStackEnv().PGPASSFILE }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let output = '';
    child.stdout.on('data', (c: Buffer) => (output += c.toString()));
    child.stderr.on('data', (c: Buffer) => (output += c.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? 1, output }));
  });
}

/**
 * The scratch role: CREATEDB on the scratch server (here the stack's server), and nothing on live. Live's database
 * stops granting CONNECT to PUBLIC, so only the roles that grants.sql (or the test) names may connect to it.
 */
export async function createScratchRole(role: string, password: string, liveDatabases: string[]): Promise<void> {
  await adminQuery(`DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = ${pg.escapeLiteral(role)}) THEN
      EXECUTE format('CREATE ROLE %I LOGIN CREATEDB NOSUPERUSER NOCREATEROLE PASSWORD %L', ${pg.escapeLiteral(role)}, ${pg.escapeLiteral(password)});
    END IF; END $$`);
  for (const db of liveDatabases)
    await adminQuery(`REVOKE CONNECT, TEMPORARY ON DATABASE ${pg.escapeIdentifier(db)} FROM PUBLIC`);
}

/** The concurrent writer's role: an ordinary application role that may delete (the restore role may not). */
export async function createWriterRole(database: string, role: string, password: string): Promise<void> {
  const r = pg.escapeIdentifier(role);
  await adminQuery(`DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = ${pg.escapeLiteral(role)}) THEN
      EXECUTE format('CREATE ROLE %I LOGIN PASSWORD %L', ${pg.escapeLiteral(role)}, ${pg.escapeLiteral(password)});
    END IF; END $$`);
  await adminQuery(`GRANT CONNECT ON DATABASE ${pg.escapeIdentifier(database)} TO ${r}`);
  const client = new pg.Client({ connectionString: useStackEnv().STACK_PG_URL.replace(/\/[^/]*$/, `/${database}`) });
  await client.connect();
  try {
    await client.query(`GRANT USAGE ON SCHEMA app TO ${r}; GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA app TO ${r};
      GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA app TO ${r}`);
  } finally {
    await client.end();
  }
}

/** Drops roles made by a test (their grants first). Databases that still reference them must be dropped before. */
export async function dropRoles(roles: string[]): Promise<void> {
  for (const role of roles) {
    await adminQuery(`DO $$ BEGIN
      IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = ${pg.escapeLiteral(role)}) THEN
        EXECUTE format('DROP OWNED BY %I', ${pg.escapeLiteral(role)});
        EXECUTE format('DROP ROLE %I', ${pg.escapeLiteral(role)});
      END IF; END $$`).catch(() => undefined);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// I2: DELETE / TRUNCATE audit on live

export interface AuditEvent {
  op: string;
  tbl: string;
  current_user: string;
  session_user: string;
  app: string;
  replication_role: string;
}

/** The schema the audit keeps its events in (never audited itself, and left out of userTables). */
export const auditSchema = 'tr_audit';

/**
 * Installs the audit on every table (and partitioned table) of `schemas` in the database at `url` (a superuser URL),
 * or of every schema of the database with 'all'. Returns how many tables it audits.
 */
export async function installDeleteAudit(url: string, schemas: string[] | 'all' = ['app']): Promise<number> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(`
      CREATE SCHEMA IF NOT EXISTS tr_audit;
      CREATE TABLE IF NOT EXISTS tr_audit.events (
        id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp(), op text NOT NULL, tbl text NOT NULL,
        "current_user" text NOT NULL, "session_user" text NOT NULL, app text NOT NULL, replication_role text NOT NULL);
      -- Not SECURITY DEFINER: inside a definer function current_user would be the owner, not who issued the DELETE.
      -- Anyone may append an event (and only append: no SELECT, UPDATE or DELETE for PUBLIC).
      GRANT USAGE ON SCHEMA tr_audit TO PUBLIC;
      GRANT INSERT ON tr_audit.events TO PUBLIC;
      GRANT USAGE ON SEQUENCE tr_audit.events_id_seq TO PUBLIC;
      CREATE OR REPLACE FUNCTION tr_audit.record() RETURNS trigger LANGUAGE plpgsql SET search_path = pg_catalog AS $$
      BEGIN
        INSERT INTO tr_audit.events (op, tbl, "current_user", "session_user", app, replication_role)
        VALUES (TG_OP, quote_ident(TG_TABLE_SCHEMA) || '.' || quote_ident(TG_TABLE_NAME), current_user, session_user,
                current_setting('application_name'), current_setting('session_replication_role'));
        RETURN NULL;
      END $$;`);
    const { rows } = await client.query<{ tbl: string }>(
      `SELECT format('%I.%I', n.nspname, c.relname) AS tbl FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE c.relkind IN ('r', 'p') AND CASE WHEN $1::text[] IS NULL
         THEN n.nspname NOT IN ('pg_catalog', 'information_schema', $2) AND n.nspname NOT LIKE 'pg\\_%'
         ELSE n.nspname = ANY($1::text[]) END
       ORDER BY 1`,
      [schemas === 'all' ? null : schemas, auditSchema],
    );
    for (const { tbl } of rows) {
      await client.query(`
        DROP TRIGGER IF EXISTS tr_audit_delete ON ${tbl};
        DROP TRIGGER IF EXISTS tr_audit_truncate ON ${tbl};
        CREATE TRIGGER tr_audit_delete AFTER DELETE ON ${tbl} FOR EACH STATEMENT EXECUTE FUNCTION tr_audit.record();
        CREATE TRIGGER tr_audit_truncate AFTER TRUNCATE ON ${tbl} FOR EACH STATEMENT EXECUTE FUNCTION tr_audit.record();
        ALTER TABLE ${tbl} ENABLE ALWAYS TRIGGER tr_audit_delete;
        ALTER TABLE ${tbl} ENABLE ALWAYS TRIGGER tr_audit_truncate;`);
    }
    return rows.length;
  } finally {
    await client.end();
  }
}

export async function auditEvents(url: string): Promise<AuditEvent[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (
      await client.query<AuditEvent>(
        'SELECT op, tbl, "current_user", "session_user", app, replication_role FROM tr_audit.events ORDER BY id',
      )
    ).rows;
  } finally {
    await client.end();
  }
}

/** The DELETE and TRUNCATE statements the audit saw from sessions of application `app` (the product's by default). */
export async function destructiveStatements(
  url: string,
  app = 'tenant-restore',
): Promise<Array<{ tbl: string; op: string }>> {
  return (await auditEvents(url)).filter((e) => e.app === app).map((e) => ({ tbl: e.tbl, op: e.op }));
}

// ---------------------------------------------------------------------------------------------------------------
// I5: what the product wrote down, as text (histories: ./history.ts)

/** Every object under `prefix`, as text. */
export async function s3Texts(s3: S3Client, bucket: string, prefix: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  let token: string | undefined;
  do {
    const page = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }));
    for (const o of page.Contents ?? []) out.set(o.Key!, await getText(s3, { bucket, key: o.Key! }));
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  return out;
}

export interface Needle {
  label: string;
  value: string;
}
export interface Finding {
  source: string;
  needle: string;
  context: string;
}

/** Every occurrence of every needle in every text, with a little context (the needle itself masked). */
export function scanForNeedles(texts: Map<string, string>, needles: Needle[]): Finding[] {
  const findings: Finding[] = [];
  for (const [source, text] of texts) {
    for (const needle of needles) {
      if (!needle.value) continue;
      let at = text.indexOf(needle.value);
      while (at >= 0 && findings.length < 1000) {
        findings.push({
          source,
          needle: needle.label,
          context: `${text.slice(Math.max(0, at - 60), at)}<${needle.label}>${text.slice(at + needle.value.length, at + needle.value.length + 60)}`,
        });
        at = text.indexOf(needle.value, at + 1);
      }
    }
  }
  return findings;
}
