import { join } from 'node:path';
import type { MainDataset } from './dataset';
import { say, sleep } from './pg';
import { isRetryableDbError } from '../../activities/db';
import { resultsDir } from './product';
import { projectRoot } from '../stack';
import type { Options } from './options';
import type { BenchResults } from './results';

export const runTag = new Date().toISOString().replace(/[-:]/g, '').replace('T', '_').slice(0, 15).toLowerCase();
export const logsDir = join(resultsDir, 'logs', runTag);
export const configFile = join(projectRoot, 'scripts', 'workload', 'restore-config.json');

/**
 * Builds data again when the server went away under it (other engineers' tests restart the shared PostgreSQL):
 * the builders start from scratch each time, so a retry is safe.
 */
export async function retrying<T>(what: string, fn: () => Promise<T>, attempts = 3): Promise<T> {
  for (let i = 1; ; i++) {
    try {
      return await fn();
    } catch (error) {
      if (i >= attempts || !isRetryableDbError(error)) throw error;
      say(`${what}: ${(error as Error).message}; retrying in 5 s (attempt ${i + 1} of ${attempts})`);
      await sleep(5000);
    }
  }
}

/** What every section reads and adds to: the options, the results so far, the main dataset, and two lists to fill. */
export interface BenchContext {
  options: Options;
  results: BenchResults;
  dataset: MainDataset;
  /** Databases dropped at the end unless --keep. */
  cleanup: string[];
  /** One line per section that could not run or fell short; the exit code is 1 when any. */
  problems: string[];
}
