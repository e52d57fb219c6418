import { join } from 'node:path';
import { bigTenantDataset } from '../dataset';
import { count, mb, seconds } from '../format';
import { copyTenants } from '../ideal';
import { createDatabase, dbUrl, dropDatabase, say } from '../pg';
import { WorkerProcess } from '../worker-process';
import type { BenchResults } from '../results';
import { runTag, logsDir, retrying, type BenchContext } from '../context';
import { productRun } from '../product-run';

/** 3. Memory: the worker's peak RSS while it restores one big tenant per --big-rows size, and the ideal's COPY rate of it. */
export async function memorySection({ options, results, cleanup, problems }: BenchContext): Promise<void> {
  if (options.skip.memory) results.memory = [];
  else if (!results.productReadiness.ready)
    results.memory = options.bigRows.map((rows) => ({
      rows,
      status: 'not-available' as const,
      reason: 'the product is not complete',
    }));
  else {
    results.memory = [];
    for (const rows of options.bigRows) {
      const entry: NonNullable<BenchResults['memory']>[number] = { rows, status: 'ok' };
      results.memory.push(entry);
      const worker = new WorkerProcess(`bench-${runTag}-mem-${rows}`, join(logsDir, `worker-mem-${rows}.log`));
      try {
        const big = await retrying('big-tenant dataset', () => bigTenantDataset(rows, options.seed, options.freshData));
        entry.rows = big.rows;
        const live = `bench_big_live_${runTag}_${rows}`;
        await dropDatabase(live);
        await createDatabase(live, big.liveTemplate);
        cleanup.push(live);
        await worker.start();
        entry.idleRssKb = worker.idleRssKb;
        const r = await productRun(`memory-${rows}`, {
          taskQueue: worker.taskQueue,
          source: { scratch: dbUrl(big.source) },
          live: dbUrl(live),
          tenants: [big.tenantId],
          timeoutMinutes: options.memoryTimeoutMinutes,
          verify: { database: live, expectedRows: big.rows },
        });
        entry.peakRssKb = r.run ? worker.peakRssKb(r.run.startedAt, r.run.finishedAt + 1) : undefined;
        if (r.status === 'ok' && r.wallMs && r.rowsVerifiedInLive) {
          entry.productRowsPerSecond = r.rowsVerifiedInLive / (r.wallMs / 1000);
          // The ideal's COPY of the same tenant from the same scratch (the product ran with --scratch: no pg_restore).
          const idealLive = `bench_big_ideal_${runTag}_${rows}`;
          await dropDatabase(idealLive);
          await createDatabase(idealLive, big.liveTemplate);
          try {
            const c = await copyTenants(big.source, idealLive, [big.tenantId]);
            entry.idealRowsPerSecond = Object.values(c.rows).reduce((a, b) => a + b, 0) / (c.ms / 1000);
          } finally {
            await dropDatabase(idealLive).catch(() => undefined);
          }
        }
        entry.hwmKb = worker.hwmKb();
        entry.wallMs = r.wallMs;
        entry.rowsRestored = r.rowsVerifiedInLive;
        if (r.status !== 'ok') {
          entry.status = r.status;
          entry.reason = `${r.reason}${entry.peakRssKb ? `; peak RSS until then ${Math.round(entry.peakRssKb / 1024)} MB` : ''}`;
          problems.push(`memory ${rows}: ${r.reason}`);
        }
        say(
          `memory ${count(big.rows)} rows: peak RSS ${mb(entry.peakRssKb)} (idle ${mb(entry.idleRssKb)}), ${seconds(r.wallMs)}`,
        );
      } catch (error) {
        entry.status = 'failed';
        entry.reason = (error as Error).message;
        problems.push(`memory ${rows}: ${entry.reason}`);
      } finally {
        await worker.stop();
      }
    }
  }
}
