/**
 * Adaptive throttling: before each heavy statement on live, a restore session asks live how busy it is and, when live
 * is slow, waits a little. Other tenants keep writing while a restore runs; on a small server the restore's own
 * statements (a group's checksums, merges, FK checks) take the CPU that their short transactions need, and their
 * tail latency grows. The restore gives way instead.
 *
 * The measure is the round trip of `SELECT 1` on the restore's own connection: it does no work, so its time is the
 * time live takes to schedule a backend, which is what a short transaction of another tenant waits for as well. The
 * baseline is the fastest round trip this worker has seen on that server. When a probe is slower than `factor` times
 * the baseline (and slower than `floorMs`), the session sleeps `pauseMs` and probes again, for at most `maxWaitMs` per
 * call, so a restore on a server that is simply always busy still makes progress.
 */
import { Transform } from 'node:stream';
import type { PoolClient } from './db';

export interface PressureOptions {
  /** A probe slower than factor × the best seen means live is busy. */
  factor: number;
  /** Below this a probe is never "slow" (sub-millisecond jitter is not load). */
  floorMs: number;
  pauseMs: number;
  /** Most time one call may wait before it goes on anyway. */
  maxWaitMs: number;
}

/** What a step calls on its live session before each heavy statement: waits while live is busy; returns ms waited. */
export type YieldToLive = (live: Pick<PoolClient, 'query'>, signal?: AbortSignal) => Promise<number>;

export const defaultPressureOptions: PressureOptions = { factor: 4, floorMs: 2, pauseMs: 100, maxWaitMs: 5_000 };

export interface PressureStats {
  probes: number;
  waits: number;
  waitedMs: number;
}

/** The decision, separate from I/O: go on, or wait, given a probe's time and the best seen. */
export function shouldWait(probeMs: number, bestMs: number, waitedMs: number, o: PressureOptions): boolean {
  if (waitedMs >= o.maxWaitMs) return false;
  return probeMs > Math.max(o.floorMs, bestMs * o.factor);
}

/** One per worker and live server: the best probe time is a property of the server, learnt across sessions. */
export class LivePressure {
  private best = Number.POSITIVE_INFINITY;
  readonly stats: PressureStats = { probes: 0, waits: 0, waitedMs: 0 };

  constructor(
    private readonly options: PressureOptions = defaultPressureOptions,
    private readonly sleep: (ms: number) => Promise<void> = (ms) => new Promise((r) => setTimeout(r, ms)),
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Probes on `client` (inside its transaction: `SELECT 1` takes no lock) and waits while live is busy. */
  async yieldToLive(client: Pick<PoolClient, 'query'>, signal?: AbortSignal): Promise<number> {
    let waited = 0;
    for (;;) {
      const t0 = this.now();
      await client.query('SELECT 1');
      const ms = this.now() - t0;
      this.stats.probes += 1;
      this.best = Math.min(this.best, ms);
      if (signal?.aborted || !shouldWait(ms, this.best, waited, this.options)) return waited;
      this.stats.waits += 1;
      await this.sleep(this.options.pauseMs);
      waited += this.options.pauseMs;
      this.stats.waitedMs += this.options.pauseMs;
    }
  }
}

/**
 * Pacing inside the COPY pipes (issue 25 step 9). `LivePressure` can act only between statements, and probes on the
 * restore's own session at the moment that session is idle; a running COPY it cannot see or slow. The governor
 * measures live from the side, on a connection of its own, `SELECT 1` every `intervalMs` while a copy or a validation
 * of this worker runs, and keeps the p90 of the last `windowMs`. Its baseline is the lowest such p90 seen (first
 * taken before this worker's first step loads live, then whenever live is quieter). Every `controlMs` it adjusts the
 * rate of the bytes the copy pipes may move (AIMD): above `budget` × the baseline the rate halves, under `relax` × it
 * grows by a tenth. Every row the restore moves passes through a pipe, so the scratch backend and the live backend
 * both wait, inside the statement. Off unless the worker's environment sets TENANT_RESTORE_LIVE_LATENCY_BUDGET.
 */
export interface GovernorOptions {
  /** p90 of live's `SELECT 1` above budget × baseline: the rate halves. */
  budget: number;
  /** Under relax × baseline: the rate grows by a tenth. */
  relax: number;
  /** Below this a p90 is never "slow" (sub-millisecond jitter is not load). */
  floorMs: number;
  windowMs: number;
  intervalMs: number;
  controlMs: number;
  /** The rate never goes under this (bytes/s): a restore on a server that is always busy still makes progress. */
  minRate: number;
  calibrationMs: number;
}

export const defaultGovernorOptions: GovernorOptions = {
  budget: 1.8,
  relax: 1.3,
  floorMs: 0.5,
  windowMs: 2_000,
  intervalMs: 50,
  controlMs: 250,
  minRate: 512 * 1024,
  calibrationMs: 1_000,
};

/** The p90 of a series (ms). */
export function p90(values: number[]): number {
  if (!values.length) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * 0.9))]!;
}

/**
 * The controller's decision, separate from I/O: the next rate (bytes/s; Infinity: unpaced) from the current one, the
 * window's p90 and the baseline, and the rate the pipes actually moved in the last interval.
 */
export function nextRate(rate: number, windowP90: number, baseline: number, moved: number, o: GovernorOptions): number {
  if (!Number.isFinite(baseline) || baseline <= 0) return rate;
  if (windowP90 > Math.max(o.floorMs, baseline * o.budget)) {
    const from = Number.isFinite(rate) ? Math.min(rate, Math.max(moved, o.minRate)) : Math.max(moved, o.minRate);
    return Math.max(o.minRate, from / 2);
  }
  if (windowP90 < baseline * o.relax && Number.isFinite(rate)) return rate * 1.1;
  return rate;
}

/** Per worker and live server: the sampler, the controller and the token bucket of the copy pipes. */
export class LiveGovernor {
  private samples: Array<{ at: number; ms: number }> = [];
  private baseline = Number.POSITIVE_INFINITY;
  private rate = Number.POSITIVE_INFINITY;
  private users = 0;
  private running?: Promise<void>;
  private calibrated?: Promise<void>;
  private tokens = 0;
  private refilledAt = 0;
  private movedSince = 0;
  private controlledAt = 0;
  readonly stats = { pacedMs: 0, cuts: 0, minRate: Number.POSITIVE_INFINITY };

  constructor(
    private readonly connect: () => Promise<{ query(sql: string): Promise<unknown>; end(): Promise<void> }>,
    private readonly options: GovernorOptions = defaultGovernorOptions,
    private readonly now: () => number = () => performance.now(),
    private readonly sleep: (ms: number) => Promise<void> = (ms) => new Promise((r) => setTimeout(r, ms)),
  ) {}

  /** A step begins: sampling runs while any step does; the first step waits for the calibration. */
  async acquire(): Promise<() => void> {
    this.users += 1;
    this.running ??= this.sampleWhileUsed().finally(() => (this.running = undefined));
    this.calibrated ??= this.sleep(this.options.calibrationMs).then(() => {
      this.baseline = Math.min(this.baseline, p90(this.samples.map((s) => s.ms)));
    });
    await this.calibrated;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.users -= 1;
    };
  }

  private async sampleWhileUsed(): Promise<void> {
    let client: Awaited<ReturnType<typeof this.connect>> | undefined;
    try {
      client = await this.connect();
      while (this.users > 0) {
        const t0 = this.now();
        await client.query('SELECT 1');
        const at = this.now();
        this.samples.push({ at, ms: at - t0 });
        while (this.samples.length && this.samples[0]!.at < at - this.options.windowMs) this.samples.shift();
        if (at - this.controlledAt >= this.options.controlMs) this.control(at);
        await this.sleep(this.options.intervalMs);
      }
    } catch {
      // No sample, no pacing: the between-statement throttle (LivePressure) still works.
      this.rate = Number.POSITIVE_INFINITY;
    } finally {
      await client?.end().catch(() => undefined);
    }
  }

  private control(at: number): void {
    const window = p90(this.samples.map((s) => s.ms));
    const seconds = (at - this.controlledAt) / 1000;
    const moved = this.controlledAt && seconds > 0 ? this.movedSince / seconds : 0;
    this.controlledAt = at;
    this.movedSince = 0;
    // Once the window spans its length, a quieter window lowers the baseline.
    if (this.samples.length && this.samples[0]!.at <= at - this.options.windowMs * 0.9)
      this.baseline = Math.min(this.baseline, window);
    const next = nextRate(this.rate, window, this.baseline, moved, this.options);
    if (next < this.rate) this.stats.cuts += 1;
    this.rate = next;
    this.stats.minRate = Math.min(this.stats.minRate, next);
  }

  /** Waits until `bytes` may pass at the current rate (token bucket, at most a second of burst). */
  async pace(bytes: number): Promise<void> {
    this.movedSince += bytes;
    if (!Number.isFinite(this.rate)) return;
    const now = this.now();
    this.tokens = Math.min(this.rate, this.tokens + ((now - this.refilledAt) / 1000) * this.rate);
    this.refilledAt = now;
    this.tokens -= bytes;
    if (this.tokens >= 0) return;
    const wait = (-this.tokens / this.rate) * 1000;
    this.stats.pacedMs += wait;
    await this.sleep(wait);
  }

  /** A Transform for a COPY pipe: every chunk waits for its bytes. */
  pipe(): Transform {
    return new Transform({
      transform: (chunk: Buffer, _encoding, done) => {
        this.pace(chunk.length).then(
          () => done(null, chunk),
          (error: Error) => done(error),
        );
      },
    });
  }
}

/** What a copy is given to pace its pipes: a Transform for each pipe, and the wait for bytes written by hand. */
export interface Pacer {
  pipe(): Transform;
  pace(bytes: number): Promise<void>;
}

/**
 * The worker's latency budget: TENANT_RESTORE_LIVE_LATENCY_BUDGET, a factor of at least 1.1 (e.g. 1.8), or `off`, the
 * default. Off by default: on the bench's 2-core machine a budget of 1.8 held the writer's p99 at 1.9x but made the
 * restore 8x slower than the ideal (README, Performance); an operator chooses that trade. A value that is neither
 * stops the worker at start with what to write.
 */
export function latencyBudgetFromEnv(env: NodeJS.ProcessEnv = process.env): number | undefined {
  const raw = env.TENANT_RESTORE_LIVE_LATENCY_BUDGET;
  if (raw === undefined || raw === '' || raw === 'off') return undefined;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < 1.1)
    throw new Error(
      `TENANT_RESTORE_LIVE_LATENCY_BUDGET='${raw}': give a factor of at least 1.1 (how much slower live's round trip may get while a restore copies, e.g. 1.8), or 'off' (the default).`,
    );
  return n;
}
