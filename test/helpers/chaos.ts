/**
 * The product as operators run it, for the reliability tests: `bin/tenant-restore` as real child processes (a worker
 * that can be SIGKILLed and replaced, and the CLI commands), with the stack's environment and a pgpass file of the
 * test. Every byte a worker or command prints is kept, so that the secrets scan can read the logs.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdirSync, type WriteStream } from 'node:fs';
import { join } from 'node:path';
import { projectRoot, stackDir } from '../../scripts/stack';
import { useStackEnv } from './stack';

export const bin = join(projectRoot, 'bin', 'tenant-restore');

/** The environment of the product's processes: the stack's (Temporal, S3), with PGPASSFILE replaced when given. */
export function productEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, ...useStackEnv(), LOG_LEVEL: process.env.CHAOS_LOG_LEVEL ?? 'info', ...extra };
  // The test runner's own variables have nothing to do with the product.
  for (const key of Object.keys(env)) if (key.startsWith('VITEST') || key === 'NODE_OPTIONS') delete env[key];
  return env;
}

export function logDir(name: string): string {
  const dir = join(stackDir, 'reliability', name);
  mkdirSync(dir, { recursive: true });
  return dir;
}

export interface CliResult { code: number; stdout: string; stderr: string; json?: unknown }

/** Runs `tenant-restore <args>` to its end. `json` is stdout parsed, when it is JSON. */
export function runCli(args: string[], env: NodeJS.ProcessEnv): Promise<CliResult> {
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

  constructor(private readonly options: { taskQueue: string; env: NodeJS.ProcessEnv; name: string; args?: string[] }) {}

  async start(): Promise<void> {
    if (this.child) throw new Error('worker already running');
    this.incarnation += 1;
    this.file = createWriteStream(join(logDir(this.options.name), `worker-${this.incarnation}.log`));
    const child = spawn(process.execPath, [bin, 'worker', '--task-queue', this.options.taskQueue, ...(this.options.args ?? [])], {
      env: this.options.env, cwd: projectRoot, stdio: ['ignore', 'pipe', 'pipe'],
    });
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
      child.once('exit', (code, signal) => reject(new Error(`worker exited before it was ready (code ${code}, signal ${signal}):\n${seen.slice(-3000)}`)));
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

/** A seeded PRNG (mulberry32), so that a failing chaos run can be replayed with the same CHAOS_SEED. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Retries `fn` while a service is restarting; gives up after `attempts`. */
export async function retrying<T>(fn: () => Promise<T>, attempts = 120, pauseMs = 1000): Promise<T> {
  let last: unknown;
  for (let i = 0; i < attempts; i++) {
    try {
      return await fn();
    } catch (error) {
      last = error;
      await sleep(pauseMs);
    }
  }
  throw last;
}
