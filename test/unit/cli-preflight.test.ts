/**
 * The checks `start` and `discover` make before they start a workflow (cli/client/source-reachable.ts): asked at once, reported
 * as if asked one after another (inOrder), so that the message is the same as before whichever check answers first.
 */
import { describe, expect, it } from 'vitest';
import { ServiceUnavailableError } from '../../cli/client/errors';
import { checkSourceReachable, inOrder } from '../../cli/client/source-reachable';

function deferred() {
  let resolve!: () => void;
  let reject!: (e: Error) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** One turn of the event loop: every promise job queued before it has run. */
const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

describe('inOrder', () => {
  it('reports the first failure in the given order, even when a later check fails first', async () => {
    const [a, b, c] = [deferred(), deferred(), deferred()];
    let outcome: unknown;
    const all = inOrder([a.promise, b.promise, c.promise]).then(
      () => (outcome = 'passed'),
      (e: Error) => (outcome = e.message),
    );
    c.reject(new Error('third'));
    b.reject(new Error('second'));
    await turn();
    // The first check has not answered: its error, if any, comes first.
    expect(outcome).toBeUndefined();
    a.resolve();
    await all;
    expect(outcome).toBe('second');
  });

  it('reports a failure as soon as the checks before it have passed, without waiting for the later ones', async () => {
    const [a, b, c] = [deferred(), deferred(), deferred()];
    const all = inOrder([a.promise, b.promise, c.promise]);
    a.resolve();
    b.reject(new Error('second'));
    await expect(all).rejects.toThrow('second');
    // c never answers: the error was reported anyway.
  });

  it('passes when every check passes, and only then', async () => {
    const [a, b] = [deferred(), deferred()];
    let passed = false;
    const all = inOrder([a.promise, b.promise]).then(() => (passed = true));
    b.resolve();
    await turn();
    expect(passed).toBe(false);
    a.resolve();
    await all;
    expect(passed).toBe(true);
  });

  it('leaves no unhandled rejection behind for the failures it does not report', async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      const all = inOrder([Promise.reject(new Error('first')), Promise.reject(new Error('second'))]);
      await expect(all).rejects.toThrow('first');
      await turn();
      await turn();
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });
});

describe('checkSourceReachable', () => {
  it('live and scratch both unreachable: live is reported, as before', async () => {
    // Port 1 on this host: refused at once, no wait.
    const error = await checkSourceReachable({
      live: 'postgres://restore@127.0.0.1:1/live',
      source: { kind: 'scratch', scratch: 'postgres://restore@127.0.0.1:1/scratch' },
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ServiceUnavailableError);
    expect((error as Error).message).toMatch(/^--live: PostgreSQL at 127\.0\.0\.1:1 is not reachable/);
  });

  it('live reachable, scratch not: scratch is reported', async () => {
    const { createServer } = await import('node:net');
    const server = createServer((socket) => socket.destroy());
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as { port: number };
    try {
      const error = await checkSourceReachable({
        live: `postgres://restore@127.0.0.1:${port}/live`,
        source: { kind: 'scratch', scratch: 'postgres://restore@127.0.0.1:1/scratch' },
      }).catch((e: unknown) => e);
      expect((error as Error).message).toMatch(/^--scratch: PostgreSQL at 127\.0\.0\.1:1 is not reachable/);
    } finally {
      server.close();
    }
  });
});
