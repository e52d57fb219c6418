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
