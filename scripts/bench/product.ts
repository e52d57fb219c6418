/**
 * The product as an operator runs it: a worker child process (`bin/tenant-restore worker --task-queue <q>`) and a
 * `bin/tenant-restore start ... --wait --json` child process, timed from spawn to exit. Afterwards the bench reads
 * what the product itself recorded: the report in S3 (per-tenant phase durations) and the parent workflow's history
 * (scratch, plan, report and cleanup activities; the number of continue-as-new runs).
 *
 * Nothing here invents a figure: when a piece of the product is missing, `productReadiness` says which, and the
 * caller reports it instead of a number.
 */
import { Client, Connection } from '@temporalio/client';
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync, readFileSync, type WriteStream } from 'node:fs';
import { join, resolve } from 'node:path';
import type { RestoreReport } from '../../activities/report';
import { createS3Client, getJson } from '../../activities/s3';
import { projectRoot } from '../stack';
import { benchEnv, run, sleep } from './pg';

export const bin = join(projectRoot, 'bin', 'tenant-restore');

export interface ProductReadiness {
  ready: boolean;
  gaps: string[];
}

/** Which pieces of the product are there: the engine files, their registration in the worker, and the CLI commands. */
export async function productReadiness(): Promise<ProductReadiness> {
  const gaps: string[] = [];
  for (const file of [
    'activities/plan/index.ts',
    'activities/preflight.ts',
    'activities/copy/index.ts',
    'activities/validate.ts',
    'workflows/bulk-restore.ts',
    'workflows/restore-unit.ts',
  ]) {
    if (!existsSync(join(projectRoot, file)))
      gaps.push(`${file} is missing (restore engine or orchestration not landed)`);
  }
  const index = existsSync(join(projectRoot, 'activities/index.ts'))
    ? readFileSync(join(projectRoot, 'activities/index.ts'), 'utf8')
    : '';
  if (!/^\s*\.\.\.createRestoreActivities\(/m.test(index))
    gaps.push(
      'activities/index.ts does not register createRestoreActivities (the engine activities are not wired into the worker)',
    );
  let help = '';
  try {
    help = await run(bin, ['--help']);
  } catch (error) {
    help = (error as Error).message;
  }
  for (const command of ['worker', 'start']) {
    if (!new RegExp(`^\\s+${command}\\s`, 'm').test(help))
      gaps.push(`'tenant-restore ${command}' is not a CLI command yet`);
  }
  return { ready: gaps.length === 0, gaps };
}

// ---------------------------------------------------------------------------------------------------------------
// worker child process

export interface RssSample {
  at: number;
  rssKb: number;
}

function readStatusKb(pid: number, field: 'VmRSS' | 'VmHWM'): number | undefined {
  try {
    const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** A `tenant-restore worker` child process on its own task queue, with its RSS sampled every 100 ms. */
export class WorkerProcess {
  private child?: ChildProcess;
  private log?: WriteStream;
  private timer?: NodeJS.Timeout;
  private exited?: Promise<number | null>;
  readonly samples: RssSample[] = [];
  idleRssKb = 0;

  constructor(
    readonly taskQueue: string,
    readonly logFile: string,
  ) {}

  get pid(): number | undefined {
    return this.child?.pid;
  }

  async start(timeoutMs = 120_000): Promise<void> {
    this.log = createWriteStream(this.logFile, { flags: 'a' });
    const child = spawn(bin, ['worker', '--task-queue', this.taskQueue], {
      env: { ...process.env, TENANT_RESTORE_TASK_QUEUE: this.taskQueue, LOG_LEVEL: process.env.LOG_LEVEL ?? 'info' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    this.exited = new Promise((r) => child.on('close', (code) => r(code)));
    let ready = false;
    let exitedEarly = false;
    child.stdout!.on('data', (chunk: Buffer) => {
      this.log?.write(chunk);
      if (!ready && chunk.toString().includes('worker started')) ready = true;
    });
    child.stderr!.on('data', (chunk: Buffer) => this.log?.write(chunk));
    void this.exited.then(() => (exitedEarly = true));
    const deadline = Date.now() + timeoutMs;
    while (!ready) {
      if (exitedEarly) throw new Error(`the worker exited before it was ready; see ${this.logFile}`);
      if (Date.now() > deadline)
        throw new Error(`the worker was not ready within ${timeoutMs / 1000} s; see ${this.logFile}`);
      await sleep(100);
    }
    // Settle: the workflow bundle is built, the pollers are up. What it holds now is the idle baseline.
    await sleep(500);
    this.idleRssKb = readStatusKb(child.pid!, 'VmRSS') ?? 0;
    this.timer = setInterval(() => {
      const rssKb = readStatusKb(child.pid!, 'VmRSS');
      if (rssKb !== undefined) this.samples.push({ at: Date.now(), rssKb });
    }, 100);
  }

  /** Peak sampled RSS in [from, to). */
  peakRssKb(from = 0, to = Number.POSITIVE_INFINITY): number {
    return this.samples.filter((s) => s.at >= from && s.at < to).reduce((m, s) => Math.max(m, s.rssKb), 0);
  }

  /** VmHWM: the peak since the process started (includes building the workflow bundle at startup). */
  hwmKb(): number | undefined {
    return this.child?.pid ? readStatusKb(this.child.pid, 'VmHWM') : undefined;
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    const child = this.child;
    if (child && child.exitCode === null && child.pid) {
      child.kill('SIGTERM');
      const done = await Promise.race([this.exited!.then(() => true), sleep(20_000).then(() => false)]);
      if (!done) {
        child.kill('SIGKILL');
        await this.exited;
      }
    }
    await new Promise<void>((r) => (this.log ? this.log.end(() => r()) : r()));
  }
}

// ---------------------------------------------------------------------------------------------------------------
// start --wait --json

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

// ---------------------------------------------------------------------------------------------------------------
// what Temporal and the report say

export async function temporal(): Promise<{ client: Client; close: () => Promise<void> }> {
  const env = benchEnv();
  const connection = await Connection.connect({ address: env.TEMPORAL_ADDRESS });
  return { client: new Client({ connection, namespace: env.TEMPORAL_NAMESPACE }), close: () => connection.close() };
}

/** The parent's progress query (counts by phase). */
export async function restoreProgress(restoreId: string): Promise<StartRun['progressAtTimeout']> {
  const { client, close } = await temporal();
  try {
    const p = await client.workflow
      .getHandle(`restore/${restoreId}`)
      .query<{ counts: Record<string, number>; total: number; runs: number; phase: string }>('progress');
    return {
      restored: p.counts.restored ?? 0,
      failed: p.counts.failed ?? 0,
      total: p.total,
      runs: p.runs,
      phase: p.phase,
    };
  } finally {
    await close();
  }
}

/** A restore the bench gave up on: terminate the parent and its still-running children. */
export async function terminateRestore(restoreId: string): Promise<void> {
  const { client, close } = await temporal();
  try {
    for await (const wf of client.workflow.list({
      query: `RestoreId = '${restoreId}' AND ExecutionStatus = 'Running'`,
    })) {
      await client.workflow
        .getHandle(wf.workflowId, wf.runId)
        .terminate('benchmark timed out')
        .catch(() => undefined);
    }
    await client.workflow
      .getHandle(`restore/${restoreId}`)
      .terminate('benchmark timed out')
      .catch(() => undefined);
  } finally {
    await close();
  }
}

interface Timestamp {
  seconds?: { toString(): string } | number | null;
  nanos?: number | null;
}
const toMs = (t: Timestamp | null | undefined) =>
  t ? Number(t.seconds?.toString() ?? 0) * 1000 + (t.nanos ?? 0) / 1e6 : 0;

export interface ActivitySpan {
  name: string;
  scheduledAt: number;
  closedAt: number;
  ms: number;
  attempts: number;
  status: string;
}

export interface WorkflowProfile {
  workflowId: string;
  runs: number;
  startedAt: number;
  closedAt: number;
  /** Activities of the parent, in order (scratch, plan, tenant-list pages, report, cleanup). */
  activities: ActivitySpan[];
  firstChildAt?: number;
  childrenStarted: number;
  historyEventsPerRun: number[];
}

/**
 * Runs of `restore/<id>` (continue-as-new gives one per run), and the parent's activity spans from their histories.
 * `workflowId` names another workflow of the product (`discover/<id>`).
 */
export async function workflowProfile(
  restoreId: string,
  workflowId = `restore/${restoreId}`,
): Promise<WorkflowProfile> {
  const { client, close } = await temporal();
  try {
    // Visibility is eventually consistent: read until two listings agree.
    let runs: Array<{ runId: string; startTime: Date; closeTime?: Date }> = [];
    for (let i = 0; i < 10; i++) {
      const listed: typeof runs = [];
      for await (const wf of client.workflow.list({ query: `WorkflowId = '${workflowId}'` }))
        listed.push({ runId: wf.runId, startTime: wf.startTime, closeTime: wf.closeTime });
      if (listed.length === runs.length && listed.every((r) => r.closeTime)) break;
      runs = listed;
      await sleep(500);
    }
    runs.sort((a, b) => a.startTime.getTime() - b.startTime.getTime());
    const activities: ActivitySpan[] = [];
    let firstChildAt: number | undefined;
    let childrenStarted = 0;
    const historyEventsPerRun: number[] = [];
    for (const r of runs) {
      const history = await client.workflow.getHandle(workflowId, r.runId).fetchHistory();
      const events = history.events ?? [];
      historyEventsPerRun.push(events.length);
      const scheduled = new Map<string, { name: string; at: number }>();
      const attempts = new Map<string, number>();
      for (const e of events) {
        const at = toMs(e.eventTime as Timestamp);
        const id = String(e.eventId);
        if (e.activityTaskScheduledEventAttributes)
          scheduled.set(id, { name: e.activityTaskScheduledEventAttributes.activityType?.name ?? '?', at });
        if (e.activityTaskStartedEventAttributes)
          attempts.set(
            String(e.activityTaskStartedEventAttributes.scheduledEventId),
            e.activityTaskStartedEventAttributes.attempt ?? 1,
          );
        const closed =
          e.activityTaskCompletedEventAttributes ??
          e.activityTaskFailedEventAttributes ??
          e.activityTaskTimedOutEventAttributes ??
          e.activityTaskCanceledEventAttributes;
        if (closed) {
          const key = String(closed.scheduledEventId);
          const s = scheduled.get(key);
          if (s) {
            const status = e.activityTaskCompletedEventAttributes
              ? 'completed'
              : e.activityTaskFailedEventAttributes
                ? 'failed'
                : e.activityTaskTimedOutEventAttributes
                  ? 'timed out'
                  : 'cancelled';
            activities.push({
              name: s.name,
              scheduledAt: s.at,
              closedAt: at,
              ms: at - s.at,
              attempts: attempts.get(key) ?? 1,
              status,
            });
          }
        }
        if (e.startChildWorkflowExecutionInitiatedEventAttributes) {
          childrenStarted += 1;
          firstChildAt ??= at;
        }
      }
    }
    return {
      workflowId,
      runs: runs.length,
      startedAt: runs[0]?.startTime.getTime() ?? 0,
      closedAt: runs[runs.length - 1]?.closeTime?.getTime() ?? 0,
      activities,
      firstChildAt,
      childrenStarted,
      historyEventsPerRun,
    };
  } finally {
    await close();
  }
}

/** The product's own report (`<artifacts><restoreId>/report.json`). */
export async function readReport(
  artifactsUrl: string,
  restoreId: string,
  reportUrl?: string,
): Promise<RestoreReport | undefined> {
  const url = reportUrl ?? `${artifactsUrl}${restoreId}/report.json`;
  const match = /^s3:\/\/([^/]+)\/(.+)$/.exec(url);
  if (!match) return undefined;
  const s3 = createS3Client();
  try {
    return await getJson<RestoreReport>(s3, { bucket: match[1], key: match[2] });
  } catch {
    return undefined;
  } finally {
    s3.destroy();
  }
}

export const resultsDir = resolve(projectRoot, 'bench-results');
