/**
 * A stateless worker: polls one task queue, holds database pools and an S3 client, and resolves every secret from
 * its own environment. Run N of them on N hosts; concurrency is bounded by what live can take.
 */
import {
  NativeConnection,
  Runtime,
  Worker,
  makeTelemetryFilterString,
  type LogLevel,
  type LogMetadata,
} from '@temporalio/worker';
import { existsSync } from 'node:fs';
import { extname, join } from 'node:path';
import pino from 'pino';
import { createActivities } from '../activities';
import { hostIdFrom, hostTaskQueue } from '../activities/point-in-time';
import { Pools } from '../activities/db';
import { createS3Client } from '../activities/s3';
import { SettingError, temporalSettings, TemporalUnreachableError } from './temporal-connection';

export const defaultTaskQueue = process.env.TENANT_RESTORE_TASK_QUEUE ?? 'tenant-restore';

export interface RunWorkerOptions {
  taskQueue?: string;
  maxConcurrentActivities?: number;
}

let runtimeInstalled = false;

/**
 * Where the Prometheus endpoint listens, from TENANT_RESTORE_METRICS_ADDRESS: unset, nowhere; a port alone (`9464` or
 * `:9464`), on 127.0.0.1 only; `<ip>:<port>` (`[<ipv6>]:<port>`), exactly there. The endpoint has no authentication
 * and names hosts, the namespace and how much is restored when: an address other than loopback is the operator's
 * explicit choice, never a default. Anything else is refused (exit 2) rather than left to the SDK, which would stop
 * the worker with a parse error.
 */
export function metricsBindAddress(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const value = env.TENANT_RESTORE_METRICS_ADDRESS?.trim();
  if (!value) return undefined;
  const portOnly = /^:?(\d{1,5})$/.exec(value);
  const withHost = /^(\d{1,3}(?:\.\d{1,3}){3}|\[[0-9A-Fa-f:.]+\]):(\d{1,5})$/.exec(value);
  const port = Number(portOnly?.[1] ?? withHost?.[2]);
  const ipv4Ok = !withHost || withHost[1].startsWith('[') || withHost[1].split('.').every((n) => Number(n) <= 255);
  if ((!portOnly && !withHost) || !ipv4Ok || !(port >= 1 && port <= 65535))
    throw new SettingError(
      `TENANT_RESTORE_METRICS_ADDRESS=${value} is not a port or an <ip>:<port>: give a port (9464: served on 127.0.0.1 only), or an IP address and a port (10.0.0.5:9464, [::1]:9464). The endpoint has no authentication: prefer 127.0.0.1 and a scrape through the node's agent or a TLS proxy.`,
    );
  return portOnly ? `127.0.0.1:${port}` : value;
}

/**
 * Routes the SDK's own logs to pino, once per process; with `metricsAddress` (metricsBindAddress: 127.0.0.1 unless an
 * address is given) the SDK's metrics and the worker's own (activities/metrics.ts) are served for Prometheus at
 * http://<address>/metrics.
 */
export function installRuntimeLogger(logger: pino.Logger, metricsAddress?: string): void {
  if (runtimeInstalled) return;
  runtimeInstalled = true;
  Runtime.install({
    logger: {
      log: (level: LogLevel, message: string, meta?: LogMetadata) =>
        logger[level.toLowerCase() as 'info']({ ...meta }, message),
      trace: (message: string, meta?: LogMetadata) => logger.trace({ ...meta }, message),
      debug: (message: string, meta?: LogMetadata) => logger.debug({ ...meta }, message),
      info: (message: string, meta?: LogMetadata) => logger.info({ ...meta }, message),
      warn: (message: string, meta?: LogMetadata) => logger.warn({ ...meta }, message),
      error: (message: string, meta?: LogMetadata) => logger.error({ ...meta }, message),
    },
    telemetryOptions: {
      logging: { filter: makeTelemetryFilterString({ core: 'WARN' }), forward: {} },
      ...(metricsAddress ? { metrics: { prometheus: { bindAddress: metricsAddress } } } : {}),
    },
  });
}

/** Keys whose values are secrets wherever they appear in a log line (one or two levels down). */
const secretKeys = [
  'password',
  'secret',
  'token',
  'apiKey',
  'authorization',
  'cookie',
  'accessKeyId',
  'secretAccessKey',
];

/** pino redaction: secret keys by name, and passwords inside URLs in any string value. */
export const logRedaction: Pick<pino.LoggerOptions, 'redact' | 'formatters'> = {
  redact: { paths: secretKeys.flatMap((k) => [k, `*.${k}`, `*.*.${k}`]), censor: '[redacted]' },
  formatters: {
    log: (object) => scrubUrls(object) as Record<string, unknown>,
  },
};

/** `scheme://user:password@host` → `scheme://user:[redacted]@host`, in every string of a log object. */
function scrubUrls(value: unknown, depth = 0): unknown {
  if (typeof value === 'string')
    return value.replace(/(\b[a-z][a-z0-9+.-]*:\/\/[^/\s:@]*:)[^@\s/]+@/gi, '$1[redacted]@');
  if (depth > 3 || value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) return value.map((v) => scrubUrls(v, depth + 1));
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, scrubUrls(v, depth + 1)]));
}

const logLevels = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/** LOG_LEVEL, checked: a typo would otherwise stop the worker with pino's own message. */
export function logLevelFrom(env: NodeJS.ProcessEnv = process.env): string {
  const level = env.LOG_LEVEL ?? 'info';
  if (!logLevels.includes(level))
    throw new SettingError(`LOG_LEVEL=${level} is not a log level: use one of ${logLevels.join(', ')} (default info).`);
  return level;
}

/**
 * Where the worker's workflow code comes from. Run from dist/ (npm run build: the shipped product), the bundle that the
 * build made, dist/workflow-bundle.js: nothing is bundled at start. Run from the TypeScript source (tsx, tests, a dev
 * checkout without dist), the workflows folder, which the SDK bundles when the worker starts.
 */
export function workflowSource(
  moduleFile: string = __filename,
): { workflowBundle: { codePath: string } } | { workflowsPath: string } {
  const fromDist = extname(moduleFile) === '.js';
  const codePath = join(moduleFile, '..', '..', 'workflow-bundle.js');
  if (fromDist && existsSync(codePath)) return { workflowBundle: { codePath } };
  return { workflowsPath: require.resolve(join(moduleFile, '..', '..', 'workflows')) };
}

export async function runWorker(options: RunWorkerOptions = {}): Promise<void> {
  const logger = pino({ level: logLevelFrom(), base: { component: 'worker' }, ...logRedaction });
  const metricsAddress = metricsBindAddress();
  installRuntimeLogger(logger, metricsAddress);
  // A database reference with a password in a workflow input (a workflow not started by the CLI) is refused.
  const pools = new Pools(process.env, { refuseInlinePasswords: true });
  const s3 = createS3Client();
  const temporal = temporalSettings();
  const connection = await NativeConnection.connect(temporal.connection).catch((error: Error) => {
    throw new TemporalUnreachableError(error.message);
  });
  const taskQueue = options.taskQueue ?? defaultTaskQueue;
  const workflows = workflowSource();
  if ('workflowBundle' in workflows)
    logger.info({ workflowBundle: workflows.workflowBundle.codePath }, 'workflows from the prebuilt bundle');
  else if (extname(__filename) === '.js')
    logger.warn(
      { workflowsPath: workflows.workflowsPath },
      'workflows bundled at start: dist has no workflow-bundle.js (npm run build makes it)',
    );
  else logger.info({ workflowsPath: workflows.workflowsPath }, 'workflows bundled at start from the source');
  // Besides the shared queue, each worker polls its host's own: the activities that read a point-in-time scratch
  // server (a private PostgreSQL on this host, activities/point-in-time/) are sent there. TENANT_RESTORE_HOST_ID
  // names the host (default: its hostname); workers of one host share the queue and the server.
  const scratchHost = { id: hostIdFrom(), taskQueue: hostTaskQueue(taskQueue, hostIdFrom()) };
  const activities = createActivities({ pools, s3, logger, scratchHost });
  const hostWorker = await Worker.create({
    connection,
    namespace: temporal.namespace,
    taskQueue: scratchHost.taskQueue,
    activities,
    maxConcurrentActivityTaskExecutions: options.maxConcurrentActivities ?? 20,
    maxHeartbeatThrottleInterval: '1 second',
    shutdownGraceTime: '10 seconds',
  });
  const worker = await Worker.create({
    connection,
    namespace: temporal.namespace,
    taskQueue,
    ...workflows,
    activities,
    maxConcurrentActivityTaskExecutions: options.maxConcurrentActivities ?? 20,
    // A chunked copy heartbeats its checkpoint after every chunk, but the SDK sends heartbeats to the server at most
    // every 80% of the heartbeat timeout (16 s for the copy) unless capped here. A retry after a crash resumes from
    // the last checkpoint the server has, so the cap bounds how much finished work a killed worker costs (~1 s).
    maxHeartbeatThrottleInterval: '1 second',
    shutdownGraceTime: '10 seconds',
  });
  logger.info(
    {
      taskQueue,
      hostTaskQueue: scratchHost.taskQueue,
      address: temporal.connection.address,
      namespace: temporal.namespace,
      ...(metricsAddress ? { metrics: `http://${metricsAddress}/metrics` } : {}),
    },
    'worker started',
  );
  try {
    // Either one stopping (a shutdown signal reaches both) ends the worker.
    await Promise.all([worker.run(), hostWorker.run()]);
  } finally {
    await pools.closeAll();
    s3.destroy();
    await connection.close();
    logger.info('worker stopped');
  }
}
