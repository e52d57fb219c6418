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
import pino from 'pino';
import { createActivities } from '../activities';
import { Pools } from '../activities/db';
import { createS3Client } from '../activities/s3';
import { SettingError, temporalConnectionOptions, TemporalUnreachableError } from './temporal-connection';

export const defaultTaskQueue = process.env.TENANT_RESTORE_TASK_QUEUE ?? 'tenant-restore';

export interface RunWorkerOptions {
  taskQueue?: string;
  maxConcurrentActivities?: number;
}

let runtimeInstalled = false;

/** Routes the SDK's own logs to pino, once per process. */
export function installRuntimeLogger(logger: pino.Logger): void {
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
    telemetryOptions: { logging: { filter: makeTelemetryFilterString({ core: 'WARN' }), forward: {} } },
  });
}

const logLevels = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/** LOG_LEVEL, checked: a typo would otherwise stop the worker with pino's own message. */
export function logLevelFrom(env: NodeJS.ProcessEnv = process.env): string {
  const level = env.LOG_LEVEL ?? 'info';
  if (!logLevels.includes(level))
    throw new SettingError(`LOG_LEVEL=${level} is not a log level: use one of ${logLevels.join(', ')} (default info).`);
  return level;
}

export async function runWorker(options: RunWorkerOptions = {}): Promise<void> {
  const logger = pino({ level: logLevelFrom(), base: { component: 'worker' } });
  installRuntimeLogger(logger);
  // A database reference with a password in a workflow input (a workflow not started by the CLI) is refused.
  const pools = new Pools(process.env, { refuseInlinePasswords: true });
  const s3 = createS3Client();
  const connection = await NativeConnection.connect(temporalConnectionOptions()).catch((error: Error) => {
    throw new TemporalUnreachableError(error.message);
  });
  const taskQueue = options.taskQueue ?? defaultTaskQueue;
  const worker = await Worker.create({
    connection,
    namespace: process.env.TEMPORAL_NAMESPACE ?? 'default',
    taskQueue,
    workflowsPath: require.resolve('../workflows'),
    activities: createActivities({ pools, s3, logger }),
    maxConcurrentActivityTaskExecutions: options.maxConcurrentActivities ?? 20,
    // A chunked copy heartbeats its checkpoint after every chunk, but the SDK sends heartbeats to the server at most
    // every 80% of the heartbeat timeout (16 s for the copy) unless capped here. A retry after a crash resumes from
    // the last checkpoint the server has, so the cap bounds how much finished work a killed worker costs (~1 s).
    maxHeartbeatThrottleInterval: '1 second',
    shutdownGraceTime: '10 seconds',
  });
  logger.info({ taskQueue, address: process.env.TEMPORAL_ADDRESS ?? '127.0.0.1:7233' }, 'worker started');
  try {
    await worker.run();
  } finally {
    await pools.closeAll();
    s3.destroy();
    await connection.close();
    logger.info('worker stopped');
  }
}
