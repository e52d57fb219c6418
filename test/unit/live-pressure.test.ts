/**
 * The adaptive throttle's decisions (pure logic: the probe is a fake client whose round trips are scripted).
 */
import { describe, expect, it } from 'vitest';
import { LivePressure, shouldWait, type PressureOptions } from '../../activities/live-pressure';

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
