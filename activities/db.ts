/**
 * The only module that imports `pg`. Databases are named in workflow inputs by alias or by a URL without a
 * password (invariant I5); this module turns such a reference into a connection inside the worker, whose own
 * environment holds the secrets (PGPASSFILE, PGPASSWORD, or TENANT_RESTORE_DB_<ALIAS> URLs).
 */
import pg from 'pg';
import { from as copyFrom, to as copyTo } from 'pg-copy-streams';

export type Pool = pg.Pool;
export type PoolClient = pg.PoolClient;
export type Client = pg.Client;
export type QueryConfig = { text: string; values?: unknown[] };
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
    if (!url) throw new DatabaseRefError(`Unknown database alias '${ref}': set TENANT_RESTORE_DB_${ref.toUpperCase()}=postgres://user@host:port/db in the worker's environment.`);
    return url;
  }
  // `alias/database`: another database on an aliased server (a scratch database next to live, for instance).
  const onAlias = /^([A-Za-z][A-Za-z0-9_]*)\/([A-Za-z0-9_]+)$/.exec(ref);
  if (onAlias) return withDatabase(resolveConnectionString(onAlias[1], env), onAlias[2]);
  throw new DatabaseRefError(`'${ref}' is neither a postgres:// URL nor a database alias (letters, digits, _).`);
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

/** True when a reference carries a password, which must never be put into a workflow input. */
export function hasPassword(ref: DatabaseRef): boolean {
  try {
    return /^postgres(ql)?:\/\//.test(ref) && new URL(ref).password !== '';
  } catch {
    return false;
  }
}

/** Returns the same URL with another database name (used for scratch and drill databases on a server). */
export function withDatabase(url: string, database: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${encodeURIComponent(database)}`;
  return parsed.toString();
}

export function databaseName(url: string): string {
  return decodeURIComponent(new URL(url).pathname.replace(/^\//, ''));
}

export interface PoolOptions { max?: number; applicationName?: string }

/** One pool per (reference, options) in a process; activities share them. */
export class Pools {
  private readonly pools = new Map<string, pg.Pool>();
  constructor(private readonly env: NodeJS.ProcessEnv = process.env) {}

  get(ref: DatabaseRef, options: PoolOptions = {}): pg.Pool {
    const key = `${ref}|${options.max ?? ''}|${options.applicationName ?? ''}`;
    let pool = this.pools.get(key);
    if (!pool) {
      pool = new pg.Pool({
        connectionString: resolveConnectionString(ref, this.env),
        max: options.max ?? 10,
        application_name: options.applicationName ?? 'tenant-restore',
        idleTimeoutMillis: 30_000,
      });
      // A pooled idle client that loses its server (Postgres restart) emits 'error'; without a listener
      // that would crash the worker. The next checkout simply gets a new connection.
      pool.on('error', () => undefined);
      // A client that is checked out but between queries (holding a transaction or an advisory lock while another
      // connection works) has no pool listener: its 'error' on a server restart crashed the worker. Its next query
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
export async function connect(ref: DatabaseRef, applicationName = 'tenant-restore', env: NodeJS.ProcessEnv = process.env): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: resolveConnectionString(ref, env), application_name: applicationName });
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
 * SQLSTATEs that are meant to be retried: serialization failure, deadlock, cannot-connect-now (a restarting server),
 * admin shutdown, and connection failures. Everything else is surfaced.
 */
const retryableSqlStates = new Set(['40001', '40P01', '57P01', '57P02', '57P03', '08000', '08001', '08003', '08004', '08006']);
const retryableNodeCodes = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT']);

export function isRetryableDbError(error: unknown): boolean {
  const e = error as { code?: string; message?: string };
  if (e?.code && (retryableSqlStates.has(e.code) || retryableNodeCodes.has(e.code))) return true;
  return /Connection terminated|connection ended|Client has encountered a connection error/i.test(e?.message ?? '');
}
