/**
 * The property suite's long mode (`npm run test:property`): as many cases as asked, new seeds unless given, a summary
 * of what the run tried at the end (written to test/artifacts/property/last-run.json). See scripts/property.cjs.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { branchesNotExercised } from './coverage';
import { artifactsDir, runProperty } from './run';

const lanes = Number(process.env.PROPERTY_LANES ?? 2);
const runs = Number(process.env.PROPERTY_RUNS ?? 100);
const seed = Number(process.env.PROPERTY_SEED ?? Date.now() % 2 ** 31);
const replay = process.env.PROPERTY_REPLAY;
const path = process.env.PROPERTY_PATH;
const restarts = process.env.PROPERTY_RESTARTS === '1';
const timeLimitMs = process.env.PROPERTY_MINUTES ? Number(process.env.PROPERTY_MINUTES) * 60_000 : undefined;

it(replay ? `replays ${replay}` : `${lanes} lanes × ${runs} random cases from seed ${seed}`, async () => {
  const started = Date.now();
  const summaries = await Promise.all(
    replay || path
      ? [runProperty({ name: 'replay', runs, seed, replay, path, restarts, timeLimitMs })]
      : Array.from({ length: lanes }, (_, lane) =>
          runProperty({ name: `long${lane}`, runs, seed: seed + lane, restarts, timeLimitMs }),
        ),
  );
  const cases = summaries.flatMap((s) => s.cases);
  mkdirSync(artifactsDir, { recursive: true });
  writeFileSync(
    join(artifactsDir, 'last-run.json'),
    `${JSON.stringify(
      {
        seeds: summaries.map((s) => s.seed),
        cases: cases.length,
        failed: cases.filter((c) => c.problems.length).length,
        refused: cases.filter((c) => c.facts.refused).length,
        kills: cases.reduce((n, c) => n + c.facts.kills, 0),
        restarts: cases.filter((c) => c.facts.restarted).length,
        writerDuringChanges: cases.reduce((n, c) => n + c.facts.writerDuring, 0),
        minutes: Math.round((Date.now() - started) / 600) / 100,
        notExercised: branchesNotExercised(summaries.flatMap((s) => s.drawn)),
        failures: summaries.filter((s) => s.failure).map((s) => s.failure!.message),
      },
      null,
      2,
    )}\n`,
  );
  for (const s of summaries) if (s.failure) expect.fail(s.failure.message);
});
