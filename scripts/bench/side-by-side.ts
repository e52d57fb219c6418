import { join } from 'node:path';
import { count, seconds } from './format';
import { runIdeal } from './ideal';
import { wideDataset } from './wide';
import { createDatabase, dbUrl, dropDatabase, say } from './pg';
import { scratchDatabaseName } from '../../activities/scratch';
import { WorkerProcess } from './worker-process';
import type { Options } from './options';
import type { ProductRun, BenchResults } from './results';
import { runTag, logsDir, retrying } from './context';
import { productRun, strip } from './product-run';

export type SideBySide = NonNullable<BenchResults['wide']>;

/**
 * A generated many-table dataset (bench/wide.ts): the ideal pipeline, then the product from the same archive into its
 * own copy of the post-deletion live, on a worker of its own; no writer. The ratio is product / ideal, as for the main
 * dataset.
 */
export async function sideBySide(
  label: string,
  datasetOptions: Parameters<typeof wideDataset>[0],
  options: Options,
  run: { concurrency?: number; childrenPerRun?: number; timeoutMinutes: number },
): Promise<SideBySide & { product?: ProductRun }> {
  const worker = new WorkerProcess(`bench-${runTag}-${label}`, join(logsDir, `worker-${label}.log`));
  let result: SideBySide = { status: 'ok' };
  try {
    const data = await retrying(`${label} dataset`, () => wideDataset(datasetOptions));
    result = {
      status: 'ok',
      tables: data.tables.length,
      tenants: data.tenants,
      victims: data.victims.length,
      victimRows: data.victimRowsTotal,
    };
    if (!options.skip.ideal) {
      const ideal = await runIdeal(data, runTag, 2, data.tables, `${label}ideal`);
      await dropDatabase(ideal.scratch);
      await dropDatabase(ideal.live);
      result.ideal = ideal;
      say(
        `${label} ideal: ${seconds(ideal.totalMs)} (COPY ${seconds(ideal.copyMs)} over ${data.tables.length} tables)`,
      );
    }
    const live = `bench_${label}_live_${runTag}`;
    await dropDatabase(live);
    await createDatabase(live, data.postDeletion);
    await worker.start();
    try {
      const r = await productRun(label, {
        taskQueue: worker.taskQueue,
        source: { backup: data.backupUrl },
        live: dbUrl(live),
        tenants: data.victims,
        concurrency: run.concurrency,
        groupSize: options.groupSize,
        childrenPerRun: run.childrenPerRun,
        timeoutMinutes: run.timeoutMinutes,
        verify: { database: live, expectedRows: data.victimRowsTotal, tables: data.tables },
        config: null,
      });
      if (!options.keep) await dropDatabase(scratchDatabaseName(r.restoreId!)).catch(() => undefined);
      result.product = strip(r);
      if (result.ideal && r.status === 'ok' && r.wallMs) result.ratio = r.wallMs / result.ideal.totalMs;
      if (r.status !== 'ok') Object.assign(result, { status: r.status, reason: r.reason });
      else say(`${label} product: ${seconds(r.wallMs)} for ${count(r.rowsVerifiedInLive)} rows`);
    } finally {
      if (!options.keep) await dropDatabase(live).catch(() => undefined);
    }
  } catch (error) {
    result = { ...result, status: 'failed', reason: (error as Error).message };
  } finally {
    await worker.stop();
  }
  return result;
}
