/**
 * The only module that imports `pg`. Databases are named in workflow inputs by alias or by a URL without a
 * password (invariant I5); this module turns such a reference into a connection inside the worker, whose own
 * environment holds the secrets (PGPASSFILE, PGPASSWORD, or TENANT_RESTORE_DB_<ALIAS> URLs).
 */
import pg from 'pg';
import { from as copyFrom, to as copyTo } from 'pg-copy-streams';
import { isPgError, isTransientSqlState } from './errors';
import { hasPassword } from './input-contract';

export type Pool = pg.Pool;
export type PoolClient = pg.PoolClient;
export type Client = pg.Client;
export { copyFrom, copyTo };
export const escapeIdentifier = (name: string): string => pg.escapeIdentifier(name);
export const escapeLiteral = (value: string): string => pg.escapeLiteral(value);

/** A database reference as it may appear in workflow history: an alias like `live`, or a URL without a password. */
export type DatabaseRef = string;

/** Thrown when a reference cannot be turned into a connection; the message says what to set. */
export class DatabaseRefError extends Error {
  override name = 'DatabaseRefError';
}

const aliasPattern = /^[A-Za-z][A-Za-z0-9_]*$/;

/** Resolves an alias through `TENANT_RESTORE_DB_<ALIAS>`; a URL is returned as it is. */
export function resolveConnectionString(ref: DatabaseRef, env: NodeJS.ProcessEnv = process.env): string {
  if (/^postgres(ql)?:\/\//.test(ref)) return ref;
  if (aliasPattern.test(ref)) {
    const url = env[`TENANT_RESTORE_DB_${ref.toUpperCase()}`];
    if (!url)
      throw new DatabaseRefError(
        `Unknown database alias '${ref}': set TENANT_RESTORE_DB_${ref.toUpperCase()}=postgres://user@host:port/db in the worker's environment.`,
      );
    return url;
  }
  // `alias/database`: another database on an aliased server (a scratch database next to live, for instance).
  const onAlias = /^([A-Za-z][A-Za-z0-9_]*)\/([A-Za-z0-9_]+)$/.exec(ref);
  if (onAlias) return withDatabase(resolveConnectionString(onAlias[1], env), onAlias[2]);
  // Not echoed when it carries a password (a keyword/value string `host=... password=...`, say).
  if (hasPassword(ref)) throw new DatabaseRefError(passwordRefusal('A database reference'));
  throw new DatabaseRefError(`'${ref}' is neither a postgres:// URL nor a database alias (letters, digits, _).`);
}

/** What to say when a reference carries a password: where the password belongs instead. */
export function passwordRefusal(what: string, flag?: string): string {
  return `${what} carries a password, which would be stored in workflow history and logs. Remove it from the reference and give it to the workers instead: a PGPASSFILE entry (host:port:database:user:password), or an alias (TENANT_RESTORE_DB_<ALIAS>=postgres://user:password@host:port/db in the workers' environment, then ${flag ? `--${flag} ` : ''}<alias>).`;
}

/** Removes the password from a postgres URL, so that it can travel through Temporal and logs. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (!parsed.password) return url;
    parsed.password = '';
    return parsed.toString().replace(/:@/, '@');
  } catch {
    return url;
  }
}

// Shared with workflow code, which checks its inputs with it before any activity runs.
export { hasPassword };

/** Returns the same URL with another database name (used for scratch and drill databases on a server). */
export function withDatabase(url: string, database: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${encodeURIComponent(database)}`;
  return parsed.toString();
}

export function databaseName(url: string): string {
  return decodeURIComponent(new URL(url).pathname.replace(/^\//, ''));
}

export interface PoolOptions {
  max?: number;
  applicationName?: string;
}

/**
 * `lock_timeout` and `statement_timeout` of every session the product opens, in milliseconds, from the workers' (or
 * the CLI's) environment: TENANT_RESTORE_LOCK_TIMEOUT (default 5s: a restore never queues behind, or in front of, a
 * migration's lock for long; the lock timeout is retried with backoff) and TENANT_RESTORE_STATEMENT_TIMEOUT (default
 * 1h: one COPY of a huge tenant is one statement). A number is milliseconds; `ms`, `s`, `min` and `h` are accepted;
 * 0 turns the limit off.
 */
export function sessionTimeouts(env: NodeJS.ProcessEnv = process.env): {
  lockTimeoutMs: number;
  statementTimeoutMs: number;
} {
  return {
    lockTimeoutMs: durationMs('TENANT_RESTORE_LOCK_TIMEOUT', env.TENANT_RESTORE_LOCK_TIMEOUT, 5_000),
    statementTimeoutMs: durationMs('TENANT_RESTORE_STATEMENT_TIMEOUT', env.TENANT_RESTORE_STATEMENT_TIMEOUT, 3_600_000),
  };
}

function durationMs(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined || value.trim() === '') return fallback;
  const match = /^\s*(\d+)\s*(ms|s|min|h)?\s*$/.exec(value);
  if (!match)
    throw new DatabaseRefError(
      `${name}='${value}' is not a duration: give milliseconds or a number with ms, s, min or h (5s, 1h); 0 turns it off.`,
    );
  const unit = { ms: 1, s: 1_000, min: 60_000, h: 3_600_000 }[(match[2] ?? 'ms') as 'ms'];
  return Number(match[1]) * unit;
}

/**
 * The text settings of every session of the product (issue 23, item 6). Rows travel between scratch and live as text
 * (COPY), and preflight, validate and discover compare hashes of row text: the same row must have the same text on both
 * servers, whatever each database's defaults say (`ALTER DATABASE ... SET DateStyle = 'SQL, DMY'` on a scratch would
 * flip day and month of every date on its way into live). UTF8 is also the only encoding node-postgres decodes.
 * sql/session.ts repeats them with SET LOCAL in every transaction it opens (a URL's own `?options=` replaces these).
 */
export const canonicalTextSettings: Readonly<Record<string, string>> = {
  client_encoding: 'UTF8',
  DateStyle: 'ISO, YMD',
  IntervalStyle: 'postgres',
  TimeZone: 'UTC',
  extra_float_digits: '3',
  bytea_output: 'hex',
};

/**
 * The canonical settings as the `options` startup parameter (`-c name=value`, a space in a value escaped), after the
 * environment's PGOPTIONS, if any: a startup parameter outranks ALTER DATABASE and ALTER ROLE settings, and a later
 * `-c` wins over an earlier one.
 */
function canonicalTextConfig(env: NodeJS.ProcessEnv): { options: string } {
  const ours = Object.entries(canonicalTextSettings).map(
    ([name, value]) => `-c ${name}=${value.replace(/\\/g, '\\\\').replace(/ /g, '\\ ')}`,
  );
  return { options: [env.PGOPTIONS, ...ours].filter(Boolean).join(' ') };
}

/** node-postgres sends these as startup parameters, so they hold for the whole session (0: not sent, server default). */
function timeoutConfig(env: NodeJS.ProcessEnv): { lock_timeout?: number; statement_timeout?: number } {
  const { lockTimeoutMs, statementTimeoutMs } = sessionTimeouts(env);
  return {
    ...(lockTimeoutMs > 0 ? { lock_timeout: lockTimeoutMs } : {}),
    ...(statementTimeoutMs > 0 ? { statement_timeout: statementTimeoutMs } : {}),
  };
}

/** One pool per (reference, options) in a process; activities share them. */
export class Pools {
  private readonly pools = new Map<string, pg.Pool>();
  /**
   * `refuseInlinePasswords`: the worker sets it, so that a reference from a workflow input that carries a password
   * (a workflow started by something else than the CLI) is refused, not used. Aliases resolved from the worker's own
   * environment may hold passwords.
   */
  constructor(
    private readonly env: NodeJS.ProcessEnv = process.env,
    private readonly options: { refuseInlinePasswords?: boolean } = {},
  ) {}

  get(ref: DatabaseRef, options: PoolOptions = {}): pg.Pool {
    const key = `${ref}|${options.max ?? ''}|${options.applicationName ?? ''}`;
    let pool = this.pools.get(key);
    if (!pool) {
      if (this.options.refuseInlinePasswords && hasPassword(ref))
        throw new DatabaseRefError(passwordRefusal('A database reference of the workflow input'));
      pool = new pg.Pool({
        connectionString: resolveConnectionString(ref, this.env),
        max: options.max ?? 10,
        application_name: options.applicationName ?? 'tenant-restore',
        idleTimeoutMillis: 30_000,
        ...timeoutConfig(this.env),
        ...canonicalTextConfig(this.env),
      });
      // A pooled idle client that loses its server (Postgres restart) emits 'error'; without a listener
      // that would crash the worker. The next checkout simply gets a new connection.
      pool.on('error', () => undefined);
      // A client that is checked out but between queries (holding a transaction or an advisory lock while another
      // connection works) has no pool listener: its 'error' on a server restart would crash the worker. Its next query
      // fails instead, as a retryable connection error.
      pool.on('connect', (client) => client.on('error', () => undefined));
      this.pools.set(key, pool);
    }
    return pool;
  }

  /** Closes and forgets the pools of one reference (before DROP DATABASE, for instance). */
  async close(ref: DatabaseRef): Promise<void> {
    for (const [key, pool] of [...this.pools]) {
      if (key.startsWith(`${ref}|`)) {
        this.pools.delete(key);
        await pool.end().catch(() => undefined);
      }
    }
  }

  async closeAll(): Promise<void> {
    const pools = [...this.pools.values()];
    this.pools.clear();
    await Promise.all(pools.map((p) => p.end().catch(() => undefined)));
  }
}

/** A single client, for callers that need a dedicated session (COPY, long transactions). */
export async function connect(
  ref: DatabaseRef,
  applicationName = 'tenant-restore',
  env: NodeJS.ProcessEnv = process.env,
): Promise<pg.Client> {
  const client = new pg.Client({
    connectionString: resolveConnectionString(ref, env),
    application_name: applicationName,
    ...timeoutConfig(env),
    ...canonicalTextConfig(env),
  });
  client.on('error', () => undefined);
  await client.connect();
  return client;
}

/**
 * A session of its own to the database of `pool`, outside the pool: for a lock held while the same operation also
 * takes connections from the pool (a bounded pool whose every client waits for a second one would deadlock).
 */
export async function dedicatedSession(pool: pg.Pool, applicationName: string): Promise<pg.Client> {
  const client = new pg.Client({ ...pool.options, application_name: applicationName });
  client.on('error', () => undefined);
  await client.connect();
  return client;
}

/** Runs `fn` in one transaction on one checked-out client; commits on success, rolls back on error, always releases. */
export async function inTransaction<T>(pool: pg.Pool, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  let broken = false;
  try {
    await client.query('BEGIN');
    const result = await fn(client);
    await client.query('COMMIT');
    return result;
  } catch (error) {
    try {
      await client.query('ROLLBACK');
    } catch {
      broken = true;
    }
    throw error;
  } finally {
    client.release(broken);
  }
}

/**
 * Errors that are meant to be retried: the transient SQLSTATEs of activities/errors/ (serialization failure,
 * deadlock, lock timeout, cannot-connect-now, admin shutdown, connection failures), and lost connections.
 */
const retryableNodeCodes = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT']);

export function isRetryableDbError(error: unknown): boolean {
  const e = error as { code?: string; message?: string };
  if (isPgError(error) && isTransientSqlState(error.code)) return true;
  if (e?.code && (retryableNodeCodes.has(e.code) || (/^[0-9A-Z]{5}$/.test(e.code) && isTransientSqlState(e.code))))
    return true;
  return /Connection terminated|connection ended|Client has encountered a connection error/i.test(e?.message ?? '');
}

/**
 * A libpq tool's target (pg_dump, pg_restore, psql): the resolved URL without its password, which goes into the child's
 * environment instead, never onto its command line (where `ps` shows it).
 */
export function libpqTarget(ref: DatabaseRef): { url: string; env: NodeJS.ProcessEnv } {
  const resolved = new URL(resolveConnectionString(ref));
  const env = { ...process.env };
  if (resolved.password) env.PGPASSWORD = decodeURIComponent(resolved.password);
  resolved.password = '';
  return { url: resolved.toString(), env };
}

/**
 * Drops a database that only this product's own sessions should use (a scratch, a drill database). A plain DROP first:
 * PostgreSQL then asks an autovacuum worker busy in it to stop and waits for it, which `WITH (FORCE)` would not (it
 * refuses, 42501, to terminate a process of another role, and an autovacuum worker counts as one). Only when sessions
 * still use it (55006: a connection left by a killed step) does it force them out.
 */
export async function dropOwnedDatabase(pool: Pick<pg.Pool, 'query'>, name: string): Promise<void> {
  try {
    await pool.query(`DROP DATABASE IF EXISTS ${escapeIdentifier(name)}`);
  } catch (error) {
    if ((error as { code?: string }).code !== '55006') throw error;
    await pool.query(`DROP DATABASE IF EXISTS ${escapeIdentifier(name)} WITH (FORCE)`);
  }
}
