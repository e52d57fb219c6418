/**
 * The end of a restore (workflows/bulk-restore.ts report()): the report is written and the restore's own scratch is
 * dropped at once, under patched('report-and-drop-together'). Read from the workflow's history, not from timings:
 * both activities are scheduled before either completes. The run's history replays on today's code; the saved
 * histories of earlier runs (test/replay), which drop scratch after the report, replay through the old branch.
 *
 * Like test/unit/workflows.test.ts: the real workflows on the SDK's local test server (.tools/bin/temporal), with the
 * in-memory activities of test/unit/workflow-activities.ts and a scratch that the restore made (owned).
 */
import { ApplicationFailure } from '@temporalio/activity';
import type { temporal } from '@temporalio/proto';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { ScratchInfo } from '../../activities/restore-types';
import type { bulkRestore } from '../../workflows';
import { bulkWorkflowId, type BulkRestoreInput } from '../../workflows/definitions';
import { createMockActivities } from './workflow-activities';
import { createWorkflowTestEnvironment } from './workflow-env';

const taskQueue = 'workflow-report-unit';

const mocks = createMockActivities();
const drops: string[] = [];
/** Restores whose report fails (non-retryable), to see that the drop still ends before the workflow fails. */
const reportFails = new Set<string>();
const activities = {
  ...mocks.activities,
  async prepareScratch(): Promise<ScratchInfo> {
    return { ref: 'scratch_owned', owned: true, reused: false, durationMs: 0 };
  },
  async writeRestoreReport(input: Parameters<typeof mocks.activities.writeRestoreReport>[0]) {
    if (reportFails.has(input.restoreId))
      throw ApplicationFailure.nonRetryable('S3 refused the report', 'ReportFailed');
    return mocks.activities.writeRestoreReport(input);
  },
  async dropScratch(input: { restoreId: string }) {
    drops.push(input.restoreId);
    return { dropped: true };
  },
};

let env: TestWorkflowEnvironment;
let worker: Worker;
let running: Promise<void>;

beforeAll(async () => {
  env = await createWorkflowTestEnvironment();
  worker = await Worker.create({
    connection: env.nativeConnection,
    taskQueue,
    workflowBundle: { code: readFileSync(inject('workflowBundlePath'), 'utf8') },
    activities,
  });
  running = worker.run();
}, 180_000);

afterAll(async () => {
  mocks.releaseAll();
  if (worker?.getState() === 'RUNNING') worker.shutdown();
  await running;
  await env?.teardown();
});

function start(restoreId: string, options: Partial<BulkRestoreInput> = {}) {
  const input: BulkRestoreInput = {
    restoreId,
    source: { kind: 'backup', backup: 's3://unit/backups/app.dump' },
    live: 'live',
    tenantRoot: 'app.tenants',
    tenants: ['t1', 't2'],
    conflict: 'fail',
    concurrency: 2,
    artifacts: { bucket: 'unit', prefix: `restores/${restoreId}/` },
    ...options,
  };
  return env.client.workflow.start<typeof bulkRestore>('bulkRestore', {
    taskQueue,
    workflowId: bulkWorkflowId(restoreId),
    args: [input],
  });
}

type HistoryEvent = temporal.api.history.v1.IHistoryEvent;

/** Where, in the history, each of the two activities was scheduled and completed (or failed), and the patches. */
function endOfRun(events: HistoryEvent[]) {
  const scheduled = new Map<string, number>();
  const names = new Map<string, string>();
  for (const [i, e] of events.entries()) {
    const name = e.activityTaskScheduledEventAttributes?.activityType?.name;
    if (name) {
      scheduled.set(name, i);
      names.set(String(e.eventId), name);
    }
  }
  const ended = new Map<string, number>();
  for (const [i, e] of events.entries()) {
    const of = e.activityTaskCompletedEventAttributes ?? e.activityTaskFailedEventAttributes;
    if (of) ended.set(names.get(String(of.scheduledEventId))!, i);
  }
  // A patch marker's details carry its id in their payloads: read as text, whatever their encoding.
  const patches = events
    .filter((e) => e.markerRecordedEventAttributes?.markerName === 'core_patch')
    .map((e) =>
      Object.values(e.markerRecordedEventAttributes!.details ?? {})
        .flatMap((d) => d.payloads ?? [])
        .map((p) => Buffer.from(p.data ?? []).toString('utf8'))
        .join(' '),
    );
  return { scheduled, ended, patches };
}

describe('the report and the drop of scratch', () => {
  it('run at once: both scheduled before either ends; the run replays on this code', async () => {
    const restoreId = `report-drop-${Date.now().toString(36)}`;
    const handle = await start(restoreId);
    const result = await handle.result();
    expect(result).toMatchObject({
      status: 'succeeded',
      restored: 2,
      report: { json: `restores/${restoreId}/report.json` },
      scratch: { ref: 'scratch_owned', dropped: true },
    });
    expect(drops).toContain(restoreId);

    const history = await handle.fetchHistory();
    const { scheduled, ended, patches } = endOfRun(history.events ?? []);
    expect(patches.some((p) => p.includes('report-and-drop-together'))).toBe(true);
    const lastScheduled = Math.max(scheduled.get('writeRestoreReport')!, scheduled.get('dropScratch')!);
    const firstEnded = Math.min(ended.get('writeRestoreReport')!, ended.get('dropScratch')!);
    expect(lastScheduled).toBeLessThan(firstEnded);

    await Worker.runReplayHistory(
      { workflowBundle: { code: readFileSync(inject('workflowBundlePath'), 'utf8') } },
      history,
      handle.workflowId,
    );
  });

  it('a report that fails still lets the drop end first, and fails the restore', async () => {
    const restoreId = `report-fails-${Date.now().toString(36)}`;
    reportFails.add(restoreId);
    const handle = await start(restoreId);
    await expect(handle.result()).rejects.toThrow();
    expect(drops).toContain(restoreId);
    const { ended } = endOfRun((await handle.fetchHistory()).events ?? []);
    expect(ended.has('dropScratch')).toBe(true);
  });

  it('keeps scratch with --keep-scratch: no drop, no patch marker needed', async () => {
    const restoreId = `report-keep-${Date.now().toString(36)}`;
    const handle = await start(restoreId, { keepScratch: true });
    const result = await handle.result();
    expect(result.scratch).toEqual({ ref: 'scratch_owned', dropped: false });
    expect(drops).not.toContain(restoreId);
    const { scheduled, patches } = endOfRun((await handle.fetchHistory()).events ?? []);
    expect(scheduled.has('dropScratch')).toBe(false);
    expect(patches.some((p) => p.includes('report-and-drop-together'))).toBe(false);
  });
});
