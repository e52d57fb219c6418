import { join } from 'node:path';
import { summarize, Writer } from '../../workload/writer';
import { count, seconds } from '../format';
import { createDatabase, dbUrl, dropDatabase, say, sleep } from '../pg';
import { scratchDatabaseName } from '../../../activities/scratch';
import { WorkerProcess } from '../worker-process';
import { defaultConcurrency } from '../../../workflows/definitions';
import type { ProductRun } from '../results';
import { runTag, logsDir, type BenchContext } from '../context';
import { productRun, strip } from '../product-run';

/** Product, live protection and overhead: one worker child on its own task queue, the main restore under the workload writer, then empty tenants. */
export async function productSections({ options, results, dataset, cleanup, problems }: BenchContext): Promise<void> {
  const notAvailable = (what: string): ProductRun => ({
    status: 'not-available',
    reason: `${what}: the product is not complete: ${results.productReadiness.gaps.join('; ')}`,
  });
  const productWanted = !options.skip.product || !options.skip.overhead;
  if (!results.productReadiness.ready) {
    if (!options.skip.product) results.product = notAvailable('product restore');
    if (!options.skip.live) results.live = { status: 'not-available', reason: 'needs the product restore' };
    if (!options.skip.overhead)
      results.overhead = { ...notAvailable('overhead'), concurrency: options.concurrency ?? defaultConcurrency };
  } else if (productWanted) {
    const live = `bench_prod_live_${runTag}`;
    await dropDatabase(live);
    await createDatabase(live, dataset.postDeletion);
    cleanup.push(live);
    const taskQueue = `bench-${runTag}`;
    const worker = new WorkerProcess(taskQueue, join(logsDir, 'worker.log'));
    try {
      say(`starting a worker child process on task queue ${taskQueue}`);
      await worker.start();
      const timeoutMinutes = options.timeoutMinutes;

      if (options.skip.product) results.product = { status: 'skipped' };
      else {
        let writer: Writer | undefined;
        let writerStart = 0;
        if (!options.skip.live) {
          writer = new Writer({
            url: dbUrl(live),
            excludeTenants: dataset.victims,
            connections: options.writerConnections,
            seed: options.seed,
          });
          await writer.start();
          writerStart = Date.now();
          say(
            `writer: ${options.writerConnections} sessions on other tenants; ${options.baselineSeconds} s of baseline before the restore`,
          );
          await sleep(options.baselineSeconds * 1000);
        }
        const main = await productRun('main', {
          taskQueue,
          source: { backup: dataset.backupUrl },
          live: dbUrl(live),
          tenants: dataset.victims,
          concurrency: options.concurrency,
          groupSize: options.groupSize,
          timeoutMinutes,
          verify: { database: live, expectedRows: dataset.victimRowsTotal },
        });
        if (writer) {
          const stats = await writer.stop();
          const { latency: _l, ...writerRest } = stats;
          if (main.run) {
            // The first second of the writer warms its sessions and caches: left out of the baseline.
            const before = summarize(writer.samples, writerStart + 1000, main.run.startedAt);
            const during = summarize(writer.samples, main.run.startedAt, main.run.finishedAt);
            const reportStart = main.workflow?.activities.find((a) => a.name === 'writeRestoreReport')?.scheduledAt;
            const window =
              main.workflow?.firstChildAt && reportStart
                ? summarize(writer.samples, main.workflow.firstChildAt, reportStart)
                : undefined;
            results.live = {
              status: 'ok',
              reason:
                main.status === 'ok' ? undefined : `measured while the product restore ran; it ended ${main.status}`,
              before,
              during,
              duringTenantWindow: window,
              p99Ratio: before.p99 ? during.p99 / before.p99 : undefined,
              writer: writerRest,
            };
          } else results.live = { status: 'failed', reason: 'the product run did not start' };
        }
        // A run that did not reach its cleanup leaves its scratch behind.
        cleanup.push(scratchDatabaseName(main.restoreId!));
        results.product = strip(main);
        if (main.status !== 'ok') problems.push(`product: ${main.reason}`);
        else say(`product: ${seconds(main.wallMs)} for ${count(main.rowsVerifiedInLive)} rows`);
      }

      if (options.skip.overhead)
        results.overhead = { status: 'skipped', concurrency: options.concurrency ?? defaultConcurrency };
      else {
        const tenants = dataset.empties.slice(0, options.empty);
        const r = await productRun('overhead', {
          taskQueue,
          source: { scratch: dbUrl(dataset.source) },
          live: dbUrl(live),
          tenants,
          concurrency: options.concurrency,
          groupSize: options.groupSize,
          timeoutMinutes: options.overheadTimeoutMinutes,
        });
        const window = r.profile?.tenantWindowMs;
        results.overhead = {
          ...strip(r),
          concurrency: options.concurrency ?? defaultConcurrency,
          // Not finished: elapsed / tenants restored so far, an upper bound of the same figure.
          perTenantMs:
            window !== undefined
              ? window / tenants.length
              : r.status === 'timed-out' && r.tenants?.restored
                ? r.wallMs! / r.tenants.restored
                : undefined,
          perTenantWallMs: r.wallMs !== undefined ? r.wallMs / tenants.length : undefined,
          medianTenantMs: r.profile?.phases.total?.medianMs,
        };
        if (r.status !== 'ok') problems.push(`overhead: ${r.reason}`);
      }
    } catch (error) {
      problems.push(`product harness: ${(error as Error).message}`);
      results.product ??= { status: 'failed', reason: (error as Error).message };
    } finally {
      await worker.stop();
    }
  } else {
    results.product = { status: 'skipped' };
  }
}
