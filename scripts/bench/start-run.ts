/** `tenant-restore start ... --wait --json` as a child process, timed from spawn to exit. */
import { spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { bin } from './product';
import { restoreProgress, terminateRestore } from './workflow-profile';

export interface StartOutput {
  restoreId: string;
  status: string;
  total?: number;
  restored?: number;
  failed?: number;
  cancelled?: number;
  tenants: Array<{ tenantId: string; status: string; rows?: Record<string, number>; error?: string }>;
  report?: { json: string; markdown: string };
  error?: string;
}

export interface StartRun {
  restoreId: string;
  exitCode: number | null;
  ms: number;
  startedAt: number;
  finishedAt: number;
  timedOut: boolean;
  /** When timed out: how far the restore got (the progress query), before it was terminated. */
  progressAtTimeout?: { restored: number; failed: number; total: number; runs: number; phase: string };
  output?: StartOutput;
  stderrTail: string;
}

export interface StartArgs {
  restoreId: string;
  taskQueue: string;
  /** --backup s3://... (or pgbackrest:<stanza>/<database>) or --scratch <url> */
  source: { backup: string } | { scratch: string };
  /** --at: the moment a pgbackrest: backup is recovered to (point in time). */
  at?: string;
  live: string;
  tenantsFile: string;
  artifacts: string;
  config?: string;
  concurrency?: number;
  groupSize?: number;
  childrenPerRun?: number;
  keepScratch?: boolean;
  timeoutMs: number;
  logFile: string;
}

/**
 * `tenant-restore <argv>` as a child process, timed from spawn to exit: its stderr (and then its stdout) go to
 * `logFile`; SIGTERM after `timeoutMs`. stderr comes back as its last 4,000 characters.
 */
export async function runCliTimed(
  argv: string[],
  options: { env: NodeJS.ProcessEnv; logFile: string; timeoutMs: number },
): Promise<{
  exitCode: number | null;
  ms: number;
  startedAt: number;
  finishedAt: number;
  timedOut: boolean;
  stdout: string;
  stderr: string;
}> {
  const log = createWriteStream(options.logFile, { flags: 'a' });
  log.write(`$ tenant-restore ${argv.join(' ')}\n`);
  const startedAt = Date.now();
  const t0 = performance.now();
  const child = spawn(bin, argv, { env: options.env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr.on('data', (c: Buffer) => {
    log.write(c);
    stderr = (stderr + c.toString()).slice(-4000);
  });
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill('SIGTERM');
  }, options.timeoutMs);
  const exitCode = await new Promise<number | null>((r) => child.on('close', (code) => r(code)));
  clearTimeout(timer);
  const ms = performance.now() - t0;
  const finishedAt = Date.now();
  log.write(stdout);
  await new Promise<void>((r) => log.end(() => r()));
  return { exitCode, ms, startedAt, finishedAt, timedOut, stdout, stderr };
}

export async function runStart(args: StartArgs): Promise<StartRun> {
  const argv = [
    'start',
    ...('backup' in args.source ? ['--backup', args.source.backup] : ['--scratch', args.source.scratch]),
    ...(args.at ? ['--at', args.at] : []),
    '--live',
    args.live,
    '--tenant-root',
    'app.tenants',
    '--tenants-file',
    args.tenantsFile,
    '--id',
    args.restoreId,
    '--artifacts',
    args.artifacts,
    '--task-queue',
    args.taskQueue,
    ...(args.config ? ['--config', args.config] : []),
    ...(args.concurrency ? ['--concurrency', String(args.concurrency)] : []),
    ...(args.groupSize ? ['--group-size', String(args.groupSize)] : []),
    ...(args.childrenPerRun ? ['--children-per-run', String(args.childrenPerRun)] : []),
    ...(args.keepScratch ? ['--keep-scratch'] : []),
    '--wait',
    '--json',
  ];
  const { exitCode, ms, startedAt, finishedAt, timedOut, stdout, stderr } = await runCliTimed(argv, {
    env: { ...process.env, TENANT_RESTORE_TASK_QUEUE: args.taskQueue },
    logFile: args.logFile,
    timeoutMs: args.timeoutMs,
  });
  let output: StartOutput | undefined;
  try {
    output = JSON.parse(stdout) as StartOutput;
  } catch {
    output = undefined;
  }
  let progressAtTimeout: StartRun['progressAtTimeout'];
  if (timedOut) {
    progressAtTimeout = await restoreProgress(args.restoreId).catch(() => undefined);
    await terminateRestore(args.restoreId).catch(() => undefined);
  }
  return {
    restoreId: args.restoreId,
    exitCode,
    ms,
    startedAt,
    finishedAt,
    timedOut,
    progressAtTimeout,
    output,
    stderrTail: stderr
      .split('\n')
      .filter((l) => l.trim())
      .slice(-8)
      .join('\n'),
  };
}
