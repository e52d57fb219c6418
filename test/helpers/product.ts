/**
 * The product as operators run it: `bin/tenant-restore` as real child processes (CLI commands, and a worker that can
 * be SIGKILLed and replaced), with the stack's environment. Every byte a worker prints is kept (and written under
 * .stack/reliability/<name>/), so that a secrets scan can read the logs.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdirSync, type WriteStream } from 'node:fs';
import { join } from 'node:path';
import { projectRoot, stackDir } from '../../scripts/stack';
import { uniqueName, useStackEnv } from './stack';

export { projectRoot };
export const bin = join(projectRoot, 'bin', 'tenant-restore');

/** The environment of the product's processes: the stack's (Temporal, S3, PGPASSFILE), with `extra` on top. */
export function productEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    ...useStackEnv(),
    LOG_LEVEL: process.env.CHAOS_LOG_LEVEL ?? 'info',
    ...extra,
  };
  // The test runner's own variables have nothing to do with the product.
  for (const key of Object.keys(env)) if (key.startsWith('VITEST') || key === 'NODE_OPTIONS') delete env[key];
  return env;
}

/** Where the processes of one test run keep their logs. */
export function logDir(name: string): string {
  const dir = join(stackDir, 'reliability', name);
  mkdirSync(dir, { recursive: true });
  return dir;
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
  json?: unknown;
}

/** Runs `tenant-restore <args>` to its end. `json` is stdout parsed, when it is JSON. */
export function runCli(args: string[], env: NodeJS.ProcessEnv = productEnv()): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [bin, ...args], { env, cwd: projectRoot, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      let json: unknown;
      try {
        json = stdout.trim() ? JSON.parse(stdout) : undefined;
      } catch {
        json = undefined;
      }
      resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr, json });
    });
  });
}

export interface WorkerProcessOptions {
  taskQueue: string;
  env?: NodeJS.ProcessEnv;
  /** Names the log folder (logDir). */
  name?: string;
  args?: string[];
}

/**
 * A `tenant-restore worker` child process. `start()` resolves once it polls ("worker started" in its log);
 * `kill()` is a SIGKILL: no shutdown, no cleanup, in-flight activities simply vanish.
 */
export class WorkerProcess {
  private child?: ChildProcess;
  private exited?: Promise<void>;
  /** Everything every incarnation printed, in order. */
  readonly output: string[] = [];
  incarnation = 0;
  private file?: WriteStream;
  private readonly options: Required<Omit<WorkerProcessOptions, 'args'>> & { args: string[] };

  constructor(options: WorkerProcessOptions) {
    this.options = { env: productEnv(), name: uniqueName(`worker_${options.taskQueue}`), args: [], ...options };
  }

  async start(): Promise<void> {
    if (this.child) throw new Error('worker already running');
    this.incarnation += 1;
    this.file = createWriteStream(join(logDir(this.options.name), `worker-${this.incarnation}.log`));
    const child = spawn(
      process.execPath,
      [bin, 'worker', '--task-queue', this.options.taskQueue, ...this.options.args],
      {
        env: this.options.env,
        cwd: projectRoot,
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    this.child = child;
    let seen = '';
    const ready = new Promise<void>((resolve, reject) => {
      const onData = (c: Buffer) => {
        const text = c.toString();
        this.output.push(text);
        this.file?.write(text);
        seen = (seen + text).slice(-20_000);
        if (/worker started/.test(seen)) resolve();
      };
      child.stdout!.on('data', onData);
      child.stderr!.on('data', onData);
      child.once('exit', (code, signal) =>
        reject(new Error(`worker exited before it was ready (code ${code}, signal ${signal}):\n${seen.slice(-3000)}`)),
      );
    });
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
    await ready;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get running(): boolean {
    return Boolean(this.child && this.child.exitCode === null && this.child.signalCode === null);
  }

  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const child = this.child;
    if (!child) return;
    if (this.running) child.kill(signal);
    await this.exited;
    this.child = undefined;
    this.file?.end();
  }

  /** A graceful stop (SIGTERM) at the end of a test. */
  async stop(): Promise<void> {
    await this.kill('SIGTERM');
  }

  log(): string {
    return this.output.join('');
  }
}

/** A worker process, started: resolves once it polls. */
export async function startWorkerProcess(options: WorkerProcessOptions): Promise<WorkerProcess> {
  const worker = new WorkerProcess(options);
  await worker.start();
  return worker;
}
