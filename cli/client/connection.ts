/**
 * Reaching the services a command needs (Temporal, S3, PostgreSQL), and turning "cannot reach it" into
 * ServiceUnavailableError: exit code 3, with nothing started.
 */
import { Client, Connection } from '@temporalio/client';
import { createConnection } from 'node:net';
import {
  temporalConnectionOptions,
  temporalConnectTimeoutMs,
  temporalNamespace,
  SettingError,
  TemporalUnreachableError,
} from '../../workers/temporal-connection';
import { isPostgresUrl } from './input';

import { missingAwsCredentials, ServiceUnavailableError } from './errors';

export { missingAwsCredentials, ServiceUnavailableError };

/** A Temporal client, or TemporalUnreachableError (exit 3) within temporalConnectTimeoutMs. */
export async function connectTemporal(): Promise<{ client: Client; close: () => Promise<void> }> {
  const options = temporalConnectionOptions();
  let connection: Connection;
  try {
    connection = await Connection.connect({ ...options, connectTimeout: temporalConnectTimeoutMs });
  } catch (error) {
    throw new TemporalUnreachableError(
      /deadline/i.test((error as Error).message)
        ? `no answer within ${temporalConnectTimeoutMs / 1000} s`
        : (error as Error).message,
    );
  }
  return { client: new Client({ connection, namespace: temporalNamespace() }), close: () => connection.close() };
}

/** Runs `use` with a Temporal client (exit 3 when Temporal cannot be reached), then closes the connection. */
export async function withTemporal<T>(use: (client: Client) => Promise<T>): Promise<T> {
  const { client, close } = await connectTemporal();
  try {
    return await use(client);
  } finally {
    await close();
  }
}

/**
 * How many workers poll `taskQueue` for workflow tasks (as the server saw in the last minute or so). Zero means a
 * restore on that queue waits: nothing runs it, and a query to it hangs until its timeout.
 */
export async function workflowPollers(client: Client, taskQueue: string): Promise<number> {
  const response = await client.workflowService.describeTaskQueue({
    namespace: temporalNamespace(),
    // TASK_QUEUE_KIND_NORMAL and TASK_QUEUE_TYPE_WORKFLOW (temporal.api.enums.v1), by value.
    taskQueue: { name: taskQueue, kind: 1 },
    taskQueueType: 1,
  });
  return response.pollers?.length ?? 0;
}

/** The warning printed when no worker polls the restore's task queue. */
export function noWorkerWarning(taskQueue: string): string {
  return (
    `no worker is polling task queue '${taskQueue}' (namespace ${temporalNamespace()}): the restore waits until one does. ` +
    `Start one: tenant-restore worker --task-queue ${taskQueue} (with the same TEMPORAL_ADDRESS and TEMPORAL_NAMESPACE).`
  );
}

export function webUiLink(restoreId: string, env: NodeJS.ProcessEnv = process.env): string {
  const base = env.TEMPORAL_UI_URL ?? 'http://127.0.0.1:8233';
  const namespace = env.TEMPORAL_NAMESPACE ?? 'default';
  return `${base}/namespaces/${namespace}/workflows?query=${encodeURIComponent(`RestoreId="${restoreId}"`)}`;
}

export function isNotFound(error: unknown): boolean {
  const e = error as { name?: string; $metadata?: { httpStatusCode?: number } };
  return e.name === 'NotFound' || e.name === 'NoSuchKey' || e.$metadata?.httpStatusCode === 404;
}

/**
 * An S3 error with no HTTP status never reached S3: exit 3; no credentials at all is a setting (exit 2). Any other is
 * rethrown as it is.
 */
export function s3Unavailable(error: unknown): never {
  const e = error as { name?: string; code?: string; $metadata?: { httpStatusCode?: number }; message: string };
  if (e.name === 'CredentialsProviderError') throw new SettingError(missingAwsCredentials(e.message));
  if (!e.$metadata?.httpStatusCode) throw new ServiceUnavailableError(`S3 is not reachable: ${e.message}`);
  throw error;
}

/**
 * A database server that does not even accept a TCP connection would only make the workers retry for many minutes
 * (a retry is right for a restart, not for a wrong host or port): refuse before starting. Needs no credentials.
 * Aliases are resolved by the workers only, so they are not checked here.
 */
export async function checkReachable(flag: string, ref: string, timeoutMs = 5000): Promise<void> {
  if (!isPostgresUrl(ref)) return;
  const url = new URL(ref);
  const host = decodeURIComponent(url.hostname);
  if (!host || host.startsWith('/')) return;
  const port = Number(url.port || 5432);
  const problem = await new Promise<string | undefined>((resolve) => {
    const socket = createConnection({ host, port });
    const done = (result: string | undefined) => {
      socket.destroy();
      resolve(result);
    };
    socket.setTimeout(timeoutMs, () => done(`no answer within ${timeoutMs / 1000} s`));
    socket.once('connect', () => done(undefined));
    socket.once('error', (error: NodeJS.ErrnoException) => done(error.code ?? error.message));
  });
  if (problem)
    throw new ServiceUnavailableError(
      `--${flag}: PostgreSQL at ${host}:${port} is not reachable (${problem}). Nothing was started.`,
    );
}
