/**
 * The property run: fast-check draws cases (./case.ts), runs each against the stack (./run-case.ts), shrinks a failure
 * to its smallest case, saves that case's files under test/artifacts/property/ (git-ignored), and says how to replay it.
 * Used by the bounded run of `npm test` (test/property/*.test.ts), the long run (`npm run test:property`) and the
 * chaos run (PostgreSQL restarts).
 */
import fc from 'fast-check';
import { appendFileSync, cpSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createS3Client } from '../../activities/s3';
import { applyGrants, dropRoles, newPassword, privatePgpass } from '../helpers/audit';
import { productEnv, projectRoot, WorkerProcess } from '../helpers/product';
import { uniqueName, useStackEnv } from '../helpers/stack';
import { caseArbitrary, prepare, type Case, type Prepared } from './case';
import { runCase, saveCase, type CaseEnvironment, type CaseResult } from './run-case';

export const artifactsDir = join(projectRoot, 'test', 'artifacts', 'property');
export const progressLog = join(artifactsDir, 'progress.log');

export interface PropertyRunOptions {
  name: string;
  runs: number;
  seed: number;
  /** Allow PostgreSQL restarts (the chaos mode: nothing else may use the stack). */
  restarts?: boolean;
  /** Replay one saved case (its case.json) instead of drawing. */
  replay?: string;
  /** fast-check's path of a counterexample, to replay one case of a seed. */
  path?: string;
  /**
   * Stop drawing and shrinking after this long (the case under way finishes): a failure then reports the smallest
   * failing case found so far instead of dying with the test's timeout, seed and case unsaid.
   */
  timeLimitMs?: number;
}

export interface PropertyRunSummary {
  seed: number;
  cases: CaseResult[];
  /** The cases drawn, for the coverage check of the generators' branches. */
  drawn: Case[];
  failure?: { message: string; shrunk: Case; directory: string; replay: string };
}

async function environment(name: string): Promise<{ env: CaseEnvironment; close: () => Promise<void> }> {
  mkdirSync(artifactsDir, { recursive: true });
  const stack = useStackEnv();
  const run = uniqueName(name);
  const restoreRole = `${run}_restore`;
  const restorePassword = newPassword();
  const pgpass = privatePgpass(run, [{ role: restoreRole, password: restorePassword }]);
  const env = productEnv({ PGPASSFILE: pgpass });
  const taskQueue = `property-${run}`;
  const worker = new WorkerProcess({ taskQueue, env, name: `property-${run}` });
  await worker.start();
  const s3 = createS3Client();
  const say = (m: string) => {
    process.stderr.write(`[property ${name}] ${m}\n`);
    // vitest shows a test's stderr only at its end: a long run's progress is also in this file, line by line.
    appendFileSync(progressLog, `${new Date().toISOString()} [${name}] ${m}\n`);
  };
  return {
    env: {
      worker,
      taskQueue,
      restoreRole,
      restorePassword,
      applyGrants: async (database, schema) => {
        // Two lanes granting to their roles at once can meet on a shared catalog row (the database-wide grants):
        // PostgreSQL answers `tuple concurrently updated`, or, for the first GRANT SET ON PARAMETER of a fresh stack,
        // a duplicate key of pg_parameter_acl (both lanes create its row). A race of the harness, not of the product.
        const race = /tuple concurrently updated|pg_parameter_acl_parname_index/;
        for (let attempt = 1; ; attempt++) {
          const granted = await applyGrants(database, restoreRole, restorePassword, schema);
          if (granted.code === 0) return;
          if (attempt < 4 && race.test(granted.output)) continue;
          throw new Error(`grants.sql failed on ${database}: ${granted.output}`);
        }
      },
      productEnv: env,
      s3,
      bucket: stack.STACK_S3_BUCKET,
      say,
    },
    close: async () => {
      await worker.stop();
      s3.destroy();
      // Kept only while a failed case's database still holds its grants (dropRoles then leaves it).
      await dropRoles([restoreRole]);
    },
  };
}

export async function runProperty(o: PropertyRunOptions): Promise<PropertyRunSummary> {
  const { env, close } = await environment(o.name);
  const cases: CaseResult[] = [];
  const drawn: Case[] = [];
  let lastFailure: { prepared: Prepared; result: CaseResult } | undefined;
  try {
    const check = async (testCase: Case): Promise<boolean> => {
      const prepared = prepare(testCase);
      // An exception is a failure of the case like any other (and is shrunk like one).
      const result = await runCase(prepared, env).catch((error: Error): CaseResult => ({
        name: 'exception',
        problems: [`the case threw: ${error.stack ?? error.message}`],
        facts: { restored: 0, kills: 0, writerDuring: 0, ms: 0 },
      }));
      cases.push(result);
      drawn.push(testCase);
      env.say(
        `case ${cases.length}: ${result.problems.length ? 'FAILED' : 'ok'} in ${(result.facts.ms / 1000).toFixed(1)} s ` +
          `(${prepared.schema.tables.length} tables, ${prepared.data.rows.length} rows, ${prepared.restoreList.length} to restore` +
          `${result.facts.refused ? `, refused as ${result.facts.refused}` : ''}${result.facts.kills ? `, ${result.facts.kills} kills` : ''}${result.facts.restarted ? ', PostgreSQL restarted' : ''})`,
      );
      if (result.problems.length) {
        lastFailure = { prepared, result };
        env.say(result.problems.join('\n'));
      }
      return result.problems.length === 0;
    };
    if (o.replay) {
      const testCase = JSON.parse(readFileSync(o.replay, 'utf8')) as Case;
      await check(testCase);
    } else {
      const details = await fc.check(fc.asyncProperty(caseArbitrary({ restarts: o.restarts }), check), {
        numRuns: o.runs,
        seed: o.seed,
        path: o.path,
        // Each case is a whole restore: no time limit per case, and shrinking stops after this many attempts.
        maxSkipsPerRun: 0,
        // PROPERTY_NO_SHRINK=1: stop at the first failing case (to show quickly that a bug is caught).
        endOnFailure: process.env.PROPERTY_NO_SHRINK === '1',
        plugins: o.timeLimitMs ? [fc.interruptAfterTimeLimit(o.timeLimitMs)] : [],
      });
      // Shrinking only moves to smaller failing cases, so the last failure seen is the smallest, also when the time
      // limit cut the shrinking short.
      if (lastFailure) {
        const shrunk = lastFailure.prepared.testCase;
        const directory = join(artifactsDir, `seed-${o.seed}`);
        mkdirSync(directory, { recursive: true });
        const prepared = prepare(shrunk);
        saveCase(directory, prepared);
        writeFileSync(join(directory, 'problems.txt'), `${lastFailure.result.problems.join('\n')}\n`);
        const replay = `npm run test:property -- --replay ${join('test', 'artifacts', 'property', `seed-${o.seed}`, 'case.json')}`;
        return {
          seed: o.seed,
          cases,
          drawn,
          failure: {
            message:
              `property failed after ${details.numRuns} cases and ${details.numShrinks} shrinks${details.interrupted ? ' (shrinking cut short by the time limit)' : ''}; seed ${o.seed}, path ${details.counterexamplePath ?? 'unknown'}\n` +
              `shrunk case (schema.sql, data.sql, incident.sql, config.json, case.json) in ${directory}\n` +
              `replay it: ${replay}\n` +
              `or the whole run: npm run test:property -- --seed ${o.seed} --path ${details.counterexamplePath}\n` +
              `problems of the shrunk case:\n${lastFailure.result.problems.join('\n')}`,
            shrunk,
            directory,
            replay,
          },
        };
      }
    }
    if (o.replay && lastFailure) {
      const directory = join(artifactsDir, `replay-${Date.now()}`);
      mkdirSync(directory, { recursive: true });
      cpSync(o.replay, join(directory, 'case.json'));
      return {
        seed: o.seed,
        cases,
        drawn,
        failure: {
          message: `the replayed case fails:\n${lastFailure.result.problems.join('\n')}`,
          shrunk: lastFailure.prepared.testCase,
          directory,
          replay: `npm run test:property -- --replay ${o.replay}`,
        },
      };
    }
    return { seed: o.seed, cases, drawn };
  } finally {
    await close();
  }
}
