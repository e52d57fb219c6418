import { count, seconds } from '../format';
import { runIdeal } from '../ideal';
import { say } from '../pg';
import { runTag, type BenchContext } from '../context';

/** 1. The ideal COPY pipeline on the main dataset: pg_restore -j2, then one COPY pipe per table. */
export async function idealSection({ options, results, dataset, cleanup, problems }: BenchContext): Promise<void> {
  if (options.skip.ideal) results.ideal = { status: 'skipped' };
  else {
    try {
      const ideal = await runIdeal(dataset, runTag);
      cleanup.push(ideal.scratch, ideal.live);
      results.ideal = { status: 'ok', ...ideal };
      say(
        `ideal: ${seconds(ideal.totalMs)} (pg_restore ${seconds(ideal.pgRestoreMs)}, COPY ${seconds(ideal.copyMs)}), ${count(ideal.rowsTotal)} rows`,
      );
    } catch (error) {
      results.ideal = { status: 'failed', reason: (error as Error).message };
      problems.push(`ideal: ${(error as Error).message}`);
    }
  }
}
