/**
 * Issue 24, the faults the bounded run cannot inject: property cases whose restore also meets a PostgreSQL restart
 * (with worker kills and a writer, as drawn), in the chaos run, where nothing else uses the stack. The same generators
 * and the same exact oracle as test/property/restore.test.ts.
 */
import { expect, it } from 'vitest';
import { runProperty } from '../property/run';

const runs = Number(process.env.PROPERTY_CHAOS_RUNS ?? 6);
const seed = Number(process.env.PROPERTY_SEED ?? 24_2099);

it(`${runs} random cases with PostgreSQL restarts: the restore converges to the exact expected live`, async () => {
  const summary = await runProperty({ name: 'restarts', runs, seed, restarts: true });
  if (summary.failure) expect.fail(summary.failure.message);
  expect(summary.cases).toHaveLength(runs);
  // The restarts really happened (the arbitrary draws them in about half the cases).
  expect(summary.drawn.filter((c) => c.run.restartPostgres).length).toBeGreaterThan(0);
});
