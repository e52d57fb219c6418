import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { rowsOfTenants } from './dataset';
import { percentile } from './format';
import type { WorkloadTable } from '../workload/model';
import { benchEnv, say } from './pg';
import { DbSampler } from './db-sampler';
import { runStart, type StartRun } from './start-run';
import { readReport, workflowProfile, type WorkflowProfile } from './workflow-profile';
import type { PhaseStats, ProductRun } from './results';
import { runTag, logsDir, configFile } from './context';

export function phaseStats(values: number[]): PhaseStats {
  return {
    tenants: values.length,
    sumMs: values.reduce((a, b) => a + b, 0),
    medianMs: percentile(values, 50),
    p95Ms: percentile(values, 95),
    maxMs: values.length ? Math.max(...values) : undefined,
  };
}

/** Runs `start --wait --json` and gathers what the product recorded about it. */
export async function productRun(
  label: string,
  args: {
    taskQueue: string;
    source: { backup: string } | { scratch: string };
    /** --at: a point-in-time restore from a pgbackrest: backup. */
    at?: string;
    live: string;
    tenants: string[];
    concurrency?: number;
    groupSize?: number;
    childrenPerRun?: number;
    timeoutMinutes: number;
    verify?: { database: string; expectedRows: number; tables?: WorkloadTable[] };
    /** The restore config file; null for none (default: the workload's, chunkRows and the re-enable actions). */
    config?: string | null;
  },
): Promise<ProductRun & { run?: StartRun; workflow?: WorkflowProfile }> {
  const restoreId = `bench-${runTag.replace('_', '-')}-${label}`;
  const tenantsFile = join(logsDir, `${label}.tenants`);
  writeFileSync(tenantsFile, `${args.tenants.join('\n')}\n`);
  const artifacts = `s3://${benchEnv().STACK_S3_BUCKET}/bench/runs/${runTag}/`;
  say(`product (${label}): tenant-restore start --wait --json, ${args.tenants.length} tenants`);
  const sampler = new DbSampler();
  await sampler.start();
  let dbStatements: Awaited<ReturnType<DbSampler['stop']>> | undefined;
  const run = await runStart({
    restoreId,
    taskQueue: args.taskQueue,
    source: args.source,
    at: args.at,
    live: args.live,
    tenantsFile,
    artifacts,
    config: args.config === null ? undefined : (args.config ?? configFile),
    concurrency: args.concurrency,
    groupSize: args.groupSize,
    childrenPerRun: args.childrenPerRun,
    timeoutMs: args.timeoutMinutes * 60_000,
    logFile: join(logsDir, `${label}.start.log`),
  }).finally(async () => {
    dbStatements = await sampler.stop();
  });
  const out = run.output;
  const base: ProductRun & { run: StartRun } = {
    status: 'ok',
    restoreId,
    wallMs: run.ms,
    exitCode: run.exitCode,
    run,
    stderrTail: run.stderrTail || undefined,
  };
  const result: ProductRun & { run: StartRun; workflow?: WorkflowProfile } = { ...base };
  if (run.timedOut) {
    const p = run.progressAtTimeout;
    result.status = 'timed-out';
    if (p) result.tenants = { total: p.total, restored: p.restored, failed: p.failed };
    result.reason = `not finished within ${args.timeoutMinutes} min${p ? ` (${p.restored}/${p.total} tenants restored, ${p.failed} failed, phase ${p.phase}, run ${p.runs})` : ''}; the bench terminated it`;
  } else if (!out) {
    result.status = 'failed';
    result.reason = `start printed no JSON (exit ${run.exitCode}): ${run.stderrTail.split('\n').slice(-3).join(' / ')}`;
  } else {
    const restored = out.tenants.filter((t) => t.status === 'restored').length;
    const failedTenants = out.tenants.filter((t) => t.status !== 'restored');
    const rowsReported = out.tenants.reduce((a, t) => a + Object.values(t.rows ?? {}).reduce((x, y) => x + y, 0), 0);
    Object.assign(result, {
      restoreStatus: out.status,
      tenants: {
        total: out.total ?? args.tenants.length,
        restored: out.restored ?? restored,
        failed: out.failed ?? failedTenants.length,
      },
      failures: failedTenants.slice(0, 10).map((t) => ({ tenantId: t.tenantId, error: t.error })),
      rowsReported,
      rowsPerSecond: rowsReported / (run.ms / 1000),
    });
    if (out.status !== 'succeeded') {
      result.status = 'failed';
      result.reason = `restore ${out.status}: ${out.restored ?? restored}/${out.total ?? args.tenants.length} restored${out.error ? `; ${out.error}` : ''}${failedTenants[0]?.error ? `; first failure: tenant ${failedTenants[0].tenantId}: ${failedTenants[0].error}` : ''}`;
    }
    if (args.verify) {
      const rows = await rowsOfTenants(args.verify.database, args.tenants, args.verify.tables);
      result.rowsVerifiedInLive = Object.values(rows).reduce((a, b) => a + b, 0);
      if (result.status === 'ok' && result.rowsVerifiedInLive !== args.verify.expectedRows) {
        result.status = 'failed';
        result.reason = `live holds ${result.rowsVerifiedInLive} rows of the restored tenants, the backup ${args.verify.expectedRows}`;
      }
    }
  }
  try {
    const workflow = await workflowProfile(restoreId);
    const report = run.timedOut ? undefined : await readReport(artifacts, restoreId, out?.report?.json);
    result.scratchMs = report?.source.scratchMs;
    result.pointInTime = report?.source.pointInTime;
    const activities: NonNullable<ProductRun['profile']>['activities'] = {};
    for (const a of workflow.activities) {
      const s = (activities[a.name] ??= { count: 0, sumMs: 0, maxMs: 0, wallMs: 0, failedAttempts: 0 });
      s.count += 1;
      s.sumMs += a.ms;
      s.maxMs = Math.max(s.maxMs, a.ms);
      s.failedAttempts += a.attempts - 1;
    }
    for (const name of Object.keys(activities)) {
      const spans = workflow.activities.filter((a) => a.name === name);
      activities[name].wallMs =
        Math.max(...spans.map((a) => a.closedAt)) - Math.min(...spans.map((a) => a.scheduledAt));
    }
    const reportStart = workflow.activities.find((a) => a.name === 'writeRestoreReport')?.scheduledAt;
    const phases: Record<string, PhaseStats> = {};
    // A group's tenants share one set of durations: count each child once.
    const seen = new Set<string>();
    const children = (report?.tenants ?? []).filter(
      (t) => !t.group || (!seen.has(t.group.workflowId) && seen.add(t.group.workflowId)),
    );
    for (const phase of ['preflight', 'copy', 'validate', 'reenable', 'total'] as const) {
      const values = children.map((t) => t.durations?.[phase]).filter((v): v is number => typeof v === 'number');
      if (values.length) phases[phase] = phaseStats(values);
    }
    result.profile = {
      runs: workflow.runs,
      cliToWorkflowMs: workflow.startedAt ? workflow.startedAt - run.startedAt : undefined,
      activities,
      tenantWindowMs: workflow.firstChildAt && reportStart ? reportStart - workflow.firstChildAt : undefined,
      throttle: {
        on: (process.env.TENANT_RESTORE_THROTTLE ?? 'on') !== 'off',
        waitedMs: children.reduce((a, t) => a + (t.throttledMs ?? 0), 0),
      },
      afterLastTenantMs: reportStart ? run.finishedAt - reportStart : undefined,
      phases,
      reportDurationMs: report?.durationMs,
      historyEventsPerRun: workflow.historyEventsPerRun,
      dbStatements,
    };
    result.workflow = workflow;
  } catch (error) {
    result.profile = undefined;
    say(`  could not read the profile of ${restoreId}: ${(error as Error).message}`);
  }
  return result;
}

export function strip<T extends { run?: unknown; workflow?: unknown }>(r: T): Omit<T, 'run' | 'workflow'> {
  const { run: _run, workflow: _workflow, ...rest } = r;
  return rest;
}
