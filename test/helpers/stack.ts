/**
 * What every integration test needs from the real stack: its environment, a fresh database per test file
 * (kept when a test fails, so the failure can be read), a task queue of its own, and a worker on it.
 */
import { Client, Connection } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime, Worker, type WorkerOptions } from '@temporalio/worker';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import pg from 'pg';
import { afterAll, afterEach, inject } from 'vitest';
import { readStackEnv, type StackEnv } from '../../scripts/stack';

/** Loads `.stack/env` into process.env (PGPASSFILE, AWS_*, TEMPORAL_*) and returns it. */
export function useStackEnv(): StackEnv {
  const env = readStackEnv();
  Object.assign(process.env, env);
  return env;
}

export function uniqueName(prefix: string): string {
  return `${prefix}_${Date.now().toString(36)}_${randomBytes(3).toString('hex')}`
    .toLowerCase()
    .replace(/[^a-z0-9_]/g, '_');
}

/** The stack's superuser URL without its password: the password comes from PGPASSFILE, as it would in production. */
export function serverUrl(database = 'postgres'): string {
  const url = new URL(useStackEnv().STACK_PG_URL);
  url.password = '';
  url.pathname = `/${database}`;
  return url.toString().replace(':@', '@');
}

/** Runs `fn` on a fresh connection to `url`, and always closes it. */
export async function withClient<T>(url: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

export async function adminQuery(sql: string, values?: unknown[]): Promise<pg.QueryResult> {
  return withClient(useStackEnv().STACK_PG_URL, (client) => client.query(sql, values));
}

/**
 * A query as the superuser of the stack's scratch cluster (where restores load backups, as the unprivileged
 * `tenant_restore_scratch`): for tests that look at the scratch databases a restore made or left.
 */
export async function scratchAdminQuery(sql: string, values?: unknown[]): Promise<pg.QueryResult> {
  return withClient(useStackEnv().STACK_PG_SCRATCH_URL, (client) => client.query(sql, values));
}

export async function createDatabase(name: string, template?: string): Promise<string> {
  // CREATE DATABASE ... TEMPLATE fails while anyone is connected to the template, and a worker's pool keeps idle
  // connections to a database it restored into; they are closed here (the pool reconnects when it needs to).
  if (template)
    await adminQuery(
      'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()',
      [template],
    );
  await adminQuery(
    `CREATE DATABASE ${pg.escapeIdentifier(name)}${template ? ` TEMPLATE ${pg.escapeIdentifier(template)}` : ''}`,
  );
  return serverUrl(name);
}

export async function dropDatabase(name: string): Promise<void> {
  await adminQuery(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(name)} WITH (FORCE)`);
}

/**
 * Registers hooks that track failures in this file; databases made with `fresh()` are dropped at the end only when
 * every test passed. Call once at the top of a test file.
 */
export function useFreshDatabases(): {
  fresh: (prefix: string, template?: string) => Promise<{ name: string; url: string }>;
} {
  const made: string[] = [];
  let failed = false;
  afterEach((context) => {
    if (context.task.result?.state === 'fail') failed = true;
  });
  afterAll(async () => {
    if (failed) {
      if (made.length) process.stderr.write(`[test] kept databases for inspection: ${made.join(', ')}\n`);
      return;
    }
    for (const name of made) await dropDatabase(name);
  });
  return {
    fresh: async (prefix, template) => {
      const name = uniqueName(prefix);
      made.push(name);
      return { name, url: await createDatabase(name, template) };
    },
  };
}

export async function temporalClient(): Promise<{ client: Client; close: () => Promise<void> }> {
  const env = useStackEnv();
  const connection = await Connection.connect({ address: env.TEMPORAL_ADDRESS });
  return { client: new Client({ connection, namespace: env.TEMPORAL_NAMESPACE }), close: () => connection.close() };
}

/** Starts a worker on its own task queue using the workflow bundle made once by the global setup. */
let runtimeInstalled = false;

export async function startWorker(
  options: Omit<WorkerOptions, 'connection' | 'workflowBundle' | 'workflowsPath'>,
): Promise<{ worker: Worker; running: Promise<void>; stop: () => Promise<void> }> {
  const env = useStackEnv();
  if (!runtimeInstalled) {
    // Only warnings from the SDK: its INFO lines would drown the test output.
    Runtime.install({ logger: new DefaultLogger((process.env.TEST_SDK_LOG_LEVEL as 'WARN' | undefined) ?? 'WARN') });
    runtimeInstalled = true;
  }
  const connection = await NativeConnection.connect({ address: env.TEMPORAL_ADDRESS });
  const worker = await Worker.create({
    ...options,
    connection,
    namespace: env.TEMPORAL_NAMESPACE,
    workflowBundle: { code: readFileSync(inject('workflowBundlePath'), 'utf8') },
  });
  const running = worker.run();
  return {
    worker,
    running,
    stop: async () => {
      if (worker.getState() === 'RUNNING') worker.shutdown();
      await running;
      await connection.close();
    },
  };
}
