/**
 * npm run bench [-- --quick] [flags]: the product measured against the ideal COPY pipeline, side by side in one run.
 *
 *   1. product vs ideal  restore V of N tenants from a pg_dump -Fc archive in MinIO: `tenant-restore start --wait`
 *                        (worker and CLI as child processes) against pg_restore -j2 + one COPY pipe per table;
 *                        the ratio, rows/s, where the product's time goes, the orchestration overhead per tenant
 *                        (measured on empty tenants: a root row only)
 *   2. live protection   the workload writer's p50/p99 before and during the product's restore
 *   3. memory            the worker's peak RSS while it restores one tenant of 1M and one of 5M rows
 *   4. scale             one bulk restore of 10,000 empty tenants: wall time and continue-as-new runs
 *   7. discover          `tenant-restore discover` against one count(*) GROUP BY tenant per owned table and side, on
 *                        the main, wide and scale datasets (bench/discover.ts): the ratio, and the worker's peak RSS
 *   8. point in time     the same victims restored with `start --backup pgbackrest:<stanza>/<db> --at <moment>` from
 *                        the stack's WAL archive (bench/point-in-time.ts): scratch by recovery against scratch by
 *                        pg_restore of the dump, the end-to-end ratio against the same ideal, the recovery point
 *   9. window            the incident window's delta (narrowToWindow: T1 against T0, live for the touched tenants, T0
 *                        narrowed) against one count(*) GROUP BY tenant pass over T0's owned tables (bench/window.ts);
 *                        T0 and T1 are ordinary databases standing in for the recovered scratches: recovery time is
 *                        not included (section 8 measures it)
 *
 * Prints a table (Markdown) on stdout, progress on stderr, and writes bench-results/<timestamp>.json and
 * bench-results/latest.json. A piece of the product that is missing or fails is reported as such, never as a number.
 * Data is cached between runs by parameters (databases bench_src_*, bench_post_*, bench_big_*); --fresh-data rebuilds.
 * Exit code: 0 when every section ran (targets missed or not), 1 when a section could not run, 2 on bad flags.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { join } from 'node:path';
import { mainDataset } from './bench/dataset';
import { seconds } from './bench/format';
import { benchEnv, dropDatabase, query, say, serverVersion } from './bench/pg';
import { productReadiness, resultsDir } from './bench/product';
import { parseOptions, usage, type Options } from './bench/options';
import type { BenchResults } from './bench/results';
import { logsDir, retrying, runTag, type BenchContext } from './bench/context';
import { idealSection } from './bench/sections/ideal';
import { productSections } from './bench/sections/product';
import { pointInTimeSections } from './bench/sections/point-in-time';
import { wideAndScaleSections } from './bench/sections/wide-and-scale';
import { discoverSection } from './bench/sections/discover';
import { windowSection } from './bench/sections/window';
import { unitsSection } from './bench/sections/units';
import { memorySection } from './bench/sections/memory';
import { figuresAndTargets } from './bench/targets';
import { render } from './bench/render';

export { render };

/** Each section in the order it runs; a section records its own result and problems, and skips itself by its flag. */
const sections: Array<(ctx: BenchContext) => Promise<void>> = [
  idealSection,
  productSections,
  pointInTimeSections,
  wideAndScaleSections,
  discoverSection,
  windowSection,
  unitsSection,
  memorySection,
];

async function main(): Promise<number> {
  let options: Options;
  try {
    options = parseOptions(process.argv.slice(2));
  } catch (error) {
    process.stderr.write(`bench: ${(error as Error).message}\nusage: ${usage}\n`);
    return 2;
  }
  const started = Date.now();
  mkdirSync(logsDir, { recursive: true });
  benchEnv();
  try {
    await query('postgres', 'SELECT 1');
  } catch (error) {
    process.stderr.write(
      `bench: PostgreSQL of the dev stack is not reachable (${(error as Error).message}). Run: npm run stack -- up\n`,
    );
    return 1;
  }
  const results: BenchResults = {
    benchmark: 'tenant-restore',
    version: 1,
    command: `npm run bench --${process.argv
      .slice(2)
      .map((a) => ` ${a}`)
      .join('')}`,
    startedAt: new Date(started).toISOString(),
    options,
    machine: {
      cpus: cpus().length,
      memoryGb: Math.round(totalmem() / 2 ** 30),
      loadAverageAtStart: loadavg().map((l) => Number(l.toFixed(2))),
      postgres: await serverVersion(),
      node: process.version,
    },
    productReadiness: await productReadiness(),
  };
  if (!results.productReadiness.ready) say(`the product is not complete: ${results.productReadiness.gaps.join('; ')}`);
  const cleanup: string[] = [];
  const problems: string[] = [];

  try {
    // --- data ---------------------------------------------------------------------------------------------------
    const dataset = await retrying('dataset', () =>
      mainDataset({
        tenants: options.tenants,
        rows: options.rows,
        victims: options.victims,
        seed: options.seed,
        fresh: options.freshData,
        empties: options.skip.overhead ? 0 : options.empty,
      }),
    );
    const { victims: _v, empties: _e, ...datasetSummary } = dataset;
    results.dataset = { ...datasetSummary, victimCount: dataset.victims.length, emptyCount: dataset.empties.length };

    const ctx: BenchContext = { options, results, dataset, cleanup, problems };
    for (const section of sections) await section(ctx);
  } catch (error) {
    problems.push((error as Error).message);
    say(`bench failed: ${(error as Error).stack ?? (error as Error).message}`);
  } finally {
    if (!options.keep) for (const name of cleanup) await dropDatabase(name).catch(() => undefined);
  }

  figuresAndTargets(results, options);
  results.finishedAt = new Date().toISOString();
  results.durationMs = Date.now() - started;

  mkdirSync(resultsDir, { recursive: true });
  const file = options.out ?? join(resultsDir, `${runTag}.json`);
  const text = `${JSON.stringify(results, null, 2)}\n`;
  writeFileSync(file, text);
  writeFileSync(join(resultsDir, 'latest.json'), text);
  const rendered = render(results);
  process.stdout.write(options.json ? text : `${rendered}\n`);
  writeFileSync(join(logsDir, 'table.md'), `${rendered}\n`);
  say(`results: ${file} (and bench-results/latest.json); logs: ${logsDir}; ${seconds(results.durationMs)} in all`);
  if (problems.length) say(`problems:\n  - ${problems.join('\n  - ')}`);
  return problems.length ? 1 : 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error: Error) => {
    process.stderr.write(`bench: ${error.stack ?? error.message}\n`);
    process.exitCode = 1;
  },
);
