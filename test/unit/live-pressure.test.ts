/**
 * The adaptive throttle's decisions (pure logic: the probe is a fake client whose round trips are scripted).
 */
import { describe, expect, it } from 'vitest';
import {
  defaultGovernorOptions,
  latencyBudgetFromEnv,
  LiveGovernor,
  LivePressure,
  nextRate,
  p90,
  shouldWait,
  type PressureOptions,
} from '../../activities/live-pressure';

const options: PressureOptions = { factor: 4, floorMs: 2, pauseMs: 100, maxWaitMs: 500 };

/** A client whose n-th `SELECT 1` takes probes[n] ms on a fake clock; sleeping advances the clock too. */
function scripted(probes: number[]) {
  let clock = 0;
  let n = 0;
  const slept: number[] = [];
  const client = {
    query: async () => {
      clock += probes[Math.min(n, probes.length - 1)]!;
      n += 1;
      return { rows: [] };
    },
  };
  const pressure = new LivePressure(
    options,
    async (ms) => {
      slept.push(ms);
      clock += ms;
    },
    () => clock,
  );
  return { client: client as never, pressure, slept, calls: () => n };
}

describe('adaptive throttling on live latency', () => {
  it('waits only when a probe is both above the floor and factor × the best seen', () => {
    expect(shouldWait(1.5, 0.3, 0, options)).toBe(false); // under the floor: jitter, not load
    expect(shouldWait(1.1, 0.3, 0, options)).toBe(false);
    expect(shouldWait(3, 0.5, 0, options)).toBe(true); // 3 ms > max(2, 4 × 0.5)
    expect(shouldWait(3, 1, 0, options)).toBe(false); // 3 ms < 4 × 1
    expect(shouldWait(50, 0.5, 500, options)).toBe(false); // waited long enough: go on anyway
  });

  it('goes on at once when live answers as fast as it ever did', async () => {
    const s = scripted([0.4, 0.4]);
    expect(await s.pressure.yieldToLive(s.client)).toBe(0);
    expect(s.slept).toEqual([]);
    expect(s.pressure.stats).toEqual({ probes: 1, waits: 0, waitedMs: 0 });
  });

  it('backs off while live is slow and resumes when it recovers', async () => {
    const s = scripted([0.5, 8, 9, 0.6]);
    await s.pressure.yieldToLive(s.client); // learns the best: 0.5 ms
    expect(await s.pressure.yieldToLive(s.client)).toBe(200); // 8 ms, 9 ms: wait twice; 0.6 ms: go
    expect(s.slept).toEqual([100, 100]);
    expect(s.pressure.stats).toEqual({ probes: 4, waits: 2, waitedMs: 200 });
  });

  it('never waits longer than maxWaitMs per call, however busy live stays', async () => {
    const s = scripted([0.5, 20]);
    await s.pressure.yieldToLive(s.client);
    expect(await s.pressure.yieldToLive(s.client)).toBe(500);
    expect(s.slept).toEqual([100, 100, 100, 100, 100]);
  });

  it('stops waiting when the activity is cancelled', async () => {
    const s = scripted([0.5, 20]);
    await s.pressure.yieldToLive(s.client);
    const abort = new AbortController();
    abort.abort();
    expect(await s.pressure.yieldToLive(s.client, abort.signal)).toBe(0);
  });
});

describe('LiveGovernor (issue 25 step 9): pacing the copy pipes to a latency budget', () => {
  const o = { ...defaultGovernorOptions, budget: 1.8, relax: 1.3, minRate: 1000 };

  it('nextRate halves the rate above the budget, from what the pipes moved when unpaced', () => {
    expect(nextRate(Infinity, 5, 1, 80_000, o)).toBe(40_000);
    expect(nextRate(40_000, 5, 1, 80_000, o)).toBe(20_000);
    // Never under the floor rate: a busy server still sees progress.
    expect(nextRate(1500, 5, 1, 100, o)).toBe(1000);
  });

  it('nextRate grows a paced rate by a tenth under relax × baseline, and keeps it in between', () => {
    expect(nextRate(40_000, 1.2, 1, 40_000, o)).toBeCloseTo(44_000);
    expect(nextRate(40_000, 1.5, 1, 40_000, o)).toBe(40_000);
    expect(nextRate(Infinity, 1.0, 1, 40_000, o)).toBe(Infinity);
    // Sub-floor jitter is not load; no baseline yet: no decision.
    expect(nextRate(40_000, 0.4, 0.1, 40_000, o)).toBeCloseTo(40_000);
    expect(nextRate(40_000, 9, Infinity, 40_000, o)).toBe(40_000);
  });

  it('p90 of a window', () => {
    expect(p90([])).toBe(0);
    expect(p90([1, 2, 3, 4, 5, 6, 7, 8, 9, 10])).toBe(10);
    expect(p90([5, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1])).toBe(1);
  });

  it('pace waits bytes / rate, and an idle second refills at most a second of burst, in virtual time', async () => {
    let now = 0;
    const slept: number[] = [];
    const g = new LiveGovernor(
      async () => ({ query: async () => undefined, end: async () => undefined }),
      o,
      () => now,
      async (ms) => {
        slept.push(ms);
        now += ms;
      },
    );
    // Unpaced until the controller sets a rate.
    await g.pace(1_000_000);
    expect(slept).toEqual([]);
    (g as unknown as { rate: number }).rate = 1000;
    await g.pace(1000);
    expect(slept).toEqual([1000]);
    await g.pace(500);
    expect(slept).toEqual([1000, 500]);
    now += 5000;
    await g.pace(1000);
    expect(slept).toEqual([1000, 500]);
    await g.pace(250);
    expect(slept).toEqual([1000, 500, 250]);
    expect(g.stats.pacedMs).toBe(1750);
  });

  it('the budget comes from TENANT_RESTORE_LIVE_LATENCY_BUDGET: off by default, a factor, or a refusal that says what to write', () => {
    expect(latencyBudgetFromEnv({})).toBeUndefined();
    expect(latencyBudgetFromEnv({ TENANT_RESTORE_LIVE_LATENCY_BUDGET: '2.5' })).toBe(2.5);
    expect(latencyBudgetFromEnv({ TENANT_RESTORE_LIVE_LATENCY_BUDGET: 'off' })).toBeUndefined();
    expect(() => latencyBudgetFromEnv({ TENANT_RESTORE_LIVE_LATENCY_BUDGET: '1' })).toThrow(/at least 1.1/);
    expect(() => latencyBudgetFromEnv({ TENANT_RESTORE_LIVE_LATENCY_BUDGET: 'fast' })).toThrow(/'off'/);
  });
});
