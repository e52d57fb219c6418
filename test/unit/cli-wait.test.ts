/**
 * `start --wait` and `status --watch` (cli/client/progress.ts waitForRestore) on a fake client: no Temporal. The
 * poller's pause between progress queries ends when the result arrives, so the wait returns in the event-loop turn of
 * the result instead of sitting out the rest of a second. Time is vitest's fake clock, never advanced here: a wait
 * that needed the pause to run out would not return at all.
 */
import type { Client } from '@temporalio/client';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { waitForRestore, type WaitOutput } from '../../cli/client/progress';
import type { BulkRestoreResult, RestoreProgress } from '../../workflows/definitions';

/** One turn of the real event loop: every promise job queued before it has run. setImmediate is not faked. */
const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

function fakeClient() {
  let settle!: { resolve: (r: BulkRestoreResult) => void; reject: (e: Error) => void };
  const result = new Promise<BulkRestoreResult>((resolve, reject) => {
    settle = { resolve, reject };
  });
  const handle = {
    query: vi.fn(async () => ({ phase: 'restoring' }) as unknown as RestoreProgress),
    result: vi.fn(() => result),
    // The report lookup after the end (getReport) fails: the output then has no tenants, which is fine here.
    describe: vi.fn(async () => {
      throw new Error('no describe in this test');
    }),
  };
  const client = { workflow: { getHandle: vi.fn(() => handle) } } as unknown as Client;
  return { client, handle, settle };
}

const finished: BulkRestoreResult = {
  restoreId: 'r1',
  status: 'succeeded',
  total: 1,
  restored: 1,
  failed: 0,
  cancelled: 0,
  failures: [],
  durationMs: 5,
};

describe('waitForRestore', () => {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date'] });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  /** Starts a wait with a progress callback and lets it reach the poller's pause after its first query. */
  async function waiting(fake: ReturnType<typeof fakeClient>) {
    const onProgress = vi.fn();
    let output: WaitOutput | undefined;
    const wait = waitForRestore(fake.client, 'r1', onProgress).then((o) => {
      output = o;
      return o;
    });
    await turn();
    expect(onProgress).toHaveBeenCalledTimes(1);
    // The pause's timer is pending and the wait is not over.
    expect(vi.getTimerCount()).toBe(1);
    expect(output).toBeUndefined();
    return { wait, onProgress, output: () => output };
  }

  it('returns in the event-loop turn of the result: the pause is cut short and its timer cleared', async () => {
    const fake = fakeClient();
    const startedAt = Date.now();
    const { wait, onProgress, output } = await waiting(fake);
    fake.settle.resolve(finished);
    await turn();
    expect(output()).toMatchObject({ restoreId: 'r1', status: 'succeeded', total: 1, restored: 1 });
    expect(vi.getTimerCount()).toBe(0);
    // Fake time never moved: nothing waited for the pause to run out, and no second poll happened.
    expect(Date.now()).toBe(startedAt);
    expect(fake.handle.query).toHaveBeenCalledTimes(1);
    expect(onProgress).toHaveBeenCalledTimes(1);
    await wait;
  });

  it('returns as promptly when the restore fails', async () => {
    const fake = fakeClient();
    const { wait, output } = await waiting(fake);
    fake.settle.reject(Object.assign(new Error('workflow failed'), { cause: { message: 'Restore r1 failed: boom' } }));
    await turn();
    expect(output()).toMatchObject({ restoreId: 'r1', status: 'failed', error: 'Restore r1 failed: boom' });
    expect(vi.getTimerCount()).toBe(0);
    expect(fake.handle.query).toHaveBeenCalledTimes(1);
    await wait;
  });

  it('does not start a pause when the result arrives while a progress query is on its way', async () => {
    const fake = fakeClient();
    let answer!: (p: RestoreProgress) => void;
    fake.handle.query.mockImplementationOnce(() => new Promise<RestoreProgress>((resolve) => (answer = resolve)));
    let output: WaitOutput | undefined;
    const wait = waitForRestore(fake.client, 'r1', () => undefined).then((o) => (output = o));
    await turn();
    fake.settle.resolve(finished);
    await turn();
    // The wait lets the query in flight end (its progress line is drawn before the output), then returns at once.
    expect(output).toBeUndefined();
    answer({ phase: 'completed' } as unknown as RestoreProgress);
    await turn();
    expect(output).toMatchObject({ status: 'succeeded' });
    expect(vi.getTimerCount()).toBe(0);
    await wait;
  });

  it('still polls about once a second while the restore runs', async () => {
    const fake = fakeClient();
    const { wait, onProgress } = await waiting(fake);
    await vi.advanceTimersByTimeAsync(1000);
    expect(onProgress).toHaveBeenCalledTimes(2);
    await vi.advanceTimersByTimeAsync(1000);
    expect(onProgress).toHaveBeenCalledTimes(3);
    fake.settle.resolve(finished);
    await turn();
    expect(vi.getTimerCount()).toBe(0);
    expect((await wait).status).toBe('succeeded');
  });
});
