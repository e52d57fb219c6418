/**
 * The product as an operator runs it: a worker child process (`bin/tenant-restore worker --task-queue <q>`) and a
 * `bin/tenant-restore start ... --wait --json` child process, timed from spawn to exit. Afterwards the bench reads
 * what the product itself recorded: the report in S3 (per-tenant phase durations) and the parent workflow's history
 * (scratch, plan, report and cleanup activities; the number of continue-as-new runs).
 *
 * Nothing here invents a figure: when a piece of the product is missing, `productReadiness` says which, and the
 * caller reports it instead of a number. The pieces: worker-process.ts (the worker child), start-run.ts (`start
 * --wait --json`), workflow-profile.ts (the history and the report); this file, what is there and where results go.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { projectRoot } from '../stack';
import { run } from './pg';

export const bin = join(projectRoot, 'bin', 'tenant-restore');

export interface ProductReadiness {
  ready: boolean;
  gaps: string[];
}

/** Which pieces of the product are there: the engine files, their registration in the worker, and the CLI commands. */
export async function productReadiness(): Promise<ProductReadiness> {
  const gaps: string[] = [];
  for (const file of [
    'activities/plan/index.ts',
    'activities/preflight.ts',
    'activities/copy/index.ts',
    'activities/validate.ts',
    'workflows/bulk-restore.ts',
    'workflows/restore-unit.ts',
  ]) {
    if (!existsSync(join(projectRoot, file)))
      gaps.push(`${file} is missing (restore engine or orchestration not landed)`);
  }
  const index = existsSync(join(projectRoot, 'activities/index.ts'))
    ? readFileSync(join(projectRoot, 'activities/index.ts'), 'utf8')
    : '';
  if (!/^\s*\.\.\.createRestoreActivities\(/m.test(index))
    gaps.push(
      'activities/index.ts does not register createRestoreActivities (the engine activities are not wired into the worker)',
    );
  let help = '';
  try {
    help = await run(bin, ['--help']);
  } catch (error) {
    help = (error as Error).message;
  }
  for (const command of ['worker', 'start']) {
    if (!new RegExp(`^\\s+${command}\\s`, 'm').test(help))
      gaps.push(`'tenant-restore ${command}' is not a CLI command yet`);
  }
  return { ready: gaps.length === 0, gaps };
}

export const resultsDir = resolve(projectRoot, 'bench-results');
