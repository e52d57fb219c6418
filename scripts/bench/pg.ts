/**
 * Database plumbing for the benchmark: the stack's server as a URL without password (PGPASSFILE holds it, as in
 * production), databases created and dropped by name, libpq tools run as child processes, and a timer.
 */
import { spawn } from 'node:child_process';
import { connect, escapeIdentifier, escapeLiteral } from '../../activities/db';
import { readStackEnv, type StackEnv } from '../stack';

/** Loads `.stack/env` into process.env (PGPASSFILE, AWS_*, TEMPORAL_*) once, and returns it. */
let loaded: StackEnv | undefined;
export function benchEnv(): StackEnv {
  if (!loaded) {
    loaded = readStackEnv();
    Object.assign(process.env, loaded);
  }
  return loaded;
}

/** A database on the stack's server, by URL without password. */
export function dbUrl(database: string): string {
  const url = new URL(benchEnv().STACK_PG_URL);
  url.password = '';
  url.pathname = `/${database}`;
  return url.toString().replace(':@', '@');
}

export async function query<T extends Record<string, unknown> = Record<string, unknown>>(
  database: string,
  sql: string,
  values?: unknown[],
): Promise<T[]> {
  const client = await connect(dbUrl(database), 'tenant-restore-bench');
  try {
    return (await client.query<T>(sql, values)).rows;
  } finally {
    await client.end();
  }
}

export async function databaseExists(name: string): Promise<boolean> {
  const rows = await query('postgres', 'SELECT 1 FROM pg_database WHERE datname = $1', [name]);
  return rows.length > 0;
}

export async function createDatabase(name: string, template?: string): Promise<string> {
  await query(
    'postgres',
    `CREATE DATABASE ${escapeIdentifier(name)}${template ? ` TEMPLATE ${escapeIdentifier(template)}` : ''}`,
  );
  return dbUrl(name);
}

export async function dropDatabase(name: string): Promise<void> {
  await query('postgres', `DROP DATABASE IF EXISTS ${escapeIdentifier(name)} WITH (FORCE)`);
}

export async function databaseComment(name: string): Promise<string | undefined> {
  const rows = await query<{ c: string | null }>(
    'postgres',
    "SELECT shobj_description(oid, 'pg_database') AS c FROM pg_database WHERE datname = $1",
    [name],
  );
  return rows[0]?.c ?? undefined;
}

export async function setDatabaseComment(name: string, comment: string): Promise<void> {
  await query('postgres', `COMMENT ON DATABASE ${escapeIdentifier(name)} IS ${escapeLiteral(comment)}`);
}

export async function databaseBytes(name: string): Promise<number> {
  const rows = await query<{ n: string }>('postgres', 'SELECT pg_database_size($1)::text AS n', [name]);
  return Number(rows[0].n);
}

export async function serverVersion(): Promise<string> {
  const rows = await query<{ v: string }>('postgres', "SELECT current_setting('server_version') AS v");
  return rows[0].v;
}

/** Runs a command (or a shell pipeline with `shell: true`), failing with its stderr tail. */
export function run(
  command: string,
  args: string[],
  options: { shell?: boolean; env?: NodeJS.ProcessEnv } = {},
): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      shell: options.shell ?? false,
      env: options.env ?? process.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (err = (err + c.toString()).slice(-4000)));
    child.on('error', reject);
    child.on('close', (code) =>
      code === 0
        ? resolve(out)
        : reject(new Error(`${command} ${options.shell ? '' : args.join(' ')} failed (exit ${code}): ${err.trim()}`)),
    );
  });
}

export async function timed<T>(fn: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const t0 = performance.now();
  const value = await fn();
  return { value, ms: performance.now() - t0 };
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Progress on stderr, so that stdout keeps only the table (and --json keeps only the JSON). */
export function say(message: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
}
