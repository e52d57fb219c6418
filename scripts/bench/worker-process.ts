/** A `tenant-restore worker` child process for the bench: its log, its RSS sampled from /proc. */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, readFileSync, type WriteStream } from 'node:fs';
import { sleep } from './pg';
import { bin } from './product';

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
