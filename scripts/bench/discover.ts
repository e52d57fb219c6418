/**
 * Discover against its baseline, side by side in one run (issue 15: ratio <= 1.5).
 *
 * - discover: `tenant-restore discover --scratch <source> --live <copy of the post-deletion live> --json` as a child
 *   process, on a worker child process of its own (its RSS sampled), timed from spawn to exit. From its workflow's
 *   history: the time of its table comparisons (discoverTables, first scheduled to last closed), of the plan and of
 *   the summary.
 * - baseline: one `SELECT <tenant>, count(*) ... GROUP BY <tenant>` per owned table of the same plan, on each side,
 *   tables reached through a path joined along the same path as discover's SQL (activities/sql/discover.ts), a row
 *   reached by several paths counted once per tenant (UNION, as discover does). Two tables at a time, each table's two
 *   sides at once: discover runs two activities at a time, each reading both sides of its table. Same session settings
 *   as the product's (no parallel workers, no JIT). Run once before discover (which warms the caches for both) and
 *   once after; the faster run is the baseline.
 *
 * Scratch is a database already restored from the backup (--scratch): loading the archive is the restore's step, timed
 * in section 1; discover with --backup adds that time.
 */
import { join } from 'node:path';
import { Pools } from '../../activities/db';
import type { DiscoverSummary } from '../../activities/discover';
import { benchEnv, createDatabase, dbUrl, dropDatabase, run, say, sleep } from './pg';
import { bin } from './product';
import { runCliTimed } from './start-run';
import { WorkerProcess } from './worker-process';
import { workflowProfile } from './workflow-profile';
import { baseline } from './discover-baseline';

export interface DiscoverBenchRun {
  dataset: string;
  status: 'ok' | 'failed' | 'timed-out' | 'not-available';
  reason?: string;
  tenantsInBackup?: number;
  tables?: number;
  /** Rows read: every owned table, both sides (from the baseline's counts). */
  rowsRead?: number;
  discoverId?: string;
  /** `tenant-restore discover` spawn to exit. */
  wallMs?: number;
  /** discoverTables activities, first scheduled to last closed. */
  compareMs?: number;
  planMs?: number;
  summarizeMs?: number;
  /** The baseline: one count(*) GROUP BY tenant per table and side, along its shortest path. */
  baselineMs?: number;
  baselineRunsMs?: number[];
  /** The same counts along every ownership path of each table, as discover reads them (UNION). */
  baselineAllPathsMs?: number;
  /** Ownership paths over the owned tables: discover reads each table once per path and side. */
  paths?: number;
  /** wallMs / baselineMs: the ratio. */
  ratio?: number;
  /** compareMs / baselineMs: the table reads alone. */
  compareRatio?: number;
  /** wallMs / baselineAllPathsMs. */
  ratioAllPaths?: number;
  counts?: DiscoverSummary['counts'];
  /** The tenants the dataset deleted from live: discover must call exactly these absent. */
  expectedAbsent?: number;
  warnings?: string[];
  idleRssKb?: number;
  peakRssKb?: number;
}

/** Whether `tenant-restore discover` is a command of this build. */
export async function discoverAvailable(): Promise<boolean> {
  try {
    return /^\s+discover\s/m.test(await run(bin, ['--help']));
  } catch {
    return false;
  }
}

async function runDiscoverCli(args: {
  discoverId: string;
  taskQueue: string;
  scratch: string;
  live: string;
  artifacts: string;
  timeoutMs: number;
  logFile: string;
}): Promise<{
  ms: number;
  startedAt: number;
  finishedAt: number;
  code: number | null;
  timedOut: boolean;
  summary?: DiscoverSummary;
  stderrTail: string;
}> {
  const argv = [
    'discover',
    '--scratch',
    args.scratch,
    '--live',
    args.live,
    '--tenant-root',
    'app.tenants',
    '--id',
    args.discoverId,
    '--task-queue',
    args.taskQueue,
    '--artifacts',
    args.artifacts,
    '--json',
  ];
  const {
    exitCode: code,
    ms,
    startedAt,
    finishedAt,
    timedOut,
    stdout,
    stderr,
  } = await runCliTimed(argv, {
    env: process.env,
    logFile: args.logFile,
    timeoutMs: args.timeoutMs,
  });
  let summary: DiscoverSummary | undefined;
  try {
    summary = JSON.parse(stdout) as DiscoverSummary;
  } catch {
    summary = undefined;
  }
  return {
    ms,
    startedAt,
    finishedAt,
    code,
    timedOut,
    summary,
    stderrTail: stderr.trim().split('\n').slice(-6).join(' / '),
  };
}

/**
 * Discover and its baseline on one dataset: `scratch` (the backup, restored) against a copy of `liveTemplate` made for
 * this run and dropped after it.
 */
export async function discoverSideBySide(args: {
  dataset: string;
  scratch: string;
  liveTemplate: string;
  expectedAbsent?: number;
  runTag: string;
  logsDir: string;
  timeoutMinutes: number;
  keep: boolean;
}): Promise<DiscoverBenchRun> {
  const { dataset } = args;
  const result: DiscoverBenchRun = { dataset, status: 'ok', expectedAbsent: args.expectedAbsent };
  const live = `bench_disc_live_${dataset}_${args.runTag}`;
  const scratchUrl = dbUrl(args.scratch);
  const liveUrl = dbUrl(live);
  const pools = new Pools();
  const worker = new WorkerProcess(
    `bench-${args.runTag}-discover-${dataset}`,
    join(args.logsDir, `worker-discover-${dataset}.log`),
  );
  try {
    await dropDatabase(live);
    await createDatabase(live, args.liveTemplate);
    say(`discover (${dataset}): baseline, one count(*) GROUP BY tenant per owned table and side`);
    const first = await baseline(pools, scratchUrl, liveUrl);
    await worker.start();
    result.idleRssKb = worker.idleRssKb;
    const discoverId = `bench-${args.runTag.replace('_', '-')}-discover-${dataset}`;
    result.discoverId = discoverId;
    say(`discover (${dataset}): tenant-restore discover --json`);
    const r = await runDiscoverCli({
      discoverId,
      taskQueue: worker.taskQueue,
      scratch: scratchUrl,
      live: liveUrl,
      artifacts: `s3://${benchEnv().STACK_S3_BUCKET}/bench/runs/${args.runTag}/`,
      timeoutMs: args.timeoutMinutes * 60_000,
      logFile: join(args.logsDir, `discover-${dataset}.log`),
    });
    result.peakRssKb = worker.peakRssKb(r.startedAt, r.finishedAt + 1);
    result.wallMs = r.ms;
    const second = await baseline(pools, scratchUrl, liveUrl);
    result.baselineRunsMs = [first.ms, second.ms];
    result.baselineMs = Math.min(first.ms, second.ms);
    result.rowsRead = second.rows;
    result.tables = second.tables;
    result.paths = second.paths;
    result.baselineAllPathsMs = (await baseline(pools, scratchUrl, liveUrl, 'all-paths')).ms;
    if (r.timedOut) {
      Object.assign(result, { status: 'timed-out', reason: `not finished within ${args.timeoutMinutes} min` });
      return result;
    }
    if (r.code !== 0 || !r.summary) {
      Object.assign(result, { status: 'failed', reason: `discover exited ${r.code}: ${r.stderrTail}` });
      return result;
    }
    const s = r.summary;
    Object.assign(result, {
      tenantsInBackup: s.tenantsInBackup,
      counts: s.counts,
      warnings: s.warnings.length ? s.warnings : undefined,
      ratio: r.ms / result.baselineMs,
      ratioAllPaths: r.ms / result.baselineAllPathsMs,
    });
    try {
      const profile = await workflowProfile(discoverId, `discover/${discoverId}`);
      const spans = (name: string) => profile.activities.filter((a) => a.name === name);
      const wall = (name: string) => {
        const s2 = spans(name);
        return s2.length
          ? Math.max(...s2.map((a) => a.closedAt)) - Math.min(...s2.map((a) => a.scheduledAt))
          : undefined;
      };
      result.compareMs = wall('discoverTables');
      result.planMs = wall('buildRestorePlan');
      result.summarizeMs = wall('summarizeDiscovery');
      if (result.compareMs !== undefined) result.compareRatio = result.compareMs / result.baselineMs;
    } catch (error) {
      say(`  could not read the history of discover/${discoverId}: ${(error as Error).message}`);
    }
    if (s.tables !== result.tables) {
      result.status = 'failed';
      result.reason = `discover compared ${s.tables} tables, the baseline counted ${result.tables}`;
    } else if (args.expectedAbsent !== undefined && s.counts.absent !== args.expectedAbsent) {
      result.status = 'failed';
      result.reason = `discover found ${s.counts.absent} tenants absent, the dataset deleted ${args.expectedAbsent}`;
    } else if (s.counts.partial + s.counts.changed + s.counts.grown + s.counts.new > 0) {
      result.status = 'failed';
      result.reason = `discover found differences the dataset did not make: ${JSON.stringify(s.counts)}`;
    }
    return result;
  } catch (error) {
    return { ...result, status: 'failed', reason: (error as Error).message };
  } finally {
    await worker.stop();
    await pools.closeAll();
    // The worker's pools held sessions on live; they are gone with it.
    await sleep(100);
    if (!args.keep) await dropDatabase(live).catch(() => undefined);
  }
}
