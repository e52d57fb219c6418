/** What Temporal and the report say about a restore once it ran: the parent's history, its progress, its report. */
import { Client, Connection } from '@temporalio/client';
import type { RestoreReport } from '../../activities/report';
import { createS3Client, getJson } from '../../activities/s3';
import { benchEnv, sleep } from './pg';
import type { StartRun } from './start-run';

export async function temporal(): Promise<{ client: Client; close: () => Promise<void> }> {
  const env = benchEnv();
  const connection = await Connection.connect({ address: env.TEMPORAL_ADDRESS });
  return { client: new Client({ connection, namespace: env.TEMPORAL_NAMESPACE }), close: () => connection.close() };
}

/** The parent's progress query (counts by phase). */
export async function restoreProgress(restoreId: string): Promise<StartRun['progressAtTimeout']> {
  const { client, close } = await temporal();
  try {
    const p = await client.workflow
      .getHandle(`restore/${restoreId}`)
      .query<{ counts: Record<string, number>; total: number; runs: number; phase: string }>('progress');
    return {
      restored: p.counts.restored ?? 0,
      failed: p.counts.failed ?? 0,
      total: p.total,
      runs: p.runs,
      phase: p.phase,
    };
  } finally {
    await close();
  }
}

/** A restore the bench gave up on: terminate the parent and its still-running children. */
export async function terminateRestore(restoreId: string): Promise<void> {
  const { client, close } = await temporal();
  try {
    for await (const wf of client.workflow.list({
      query: `RestoreId = '${restoreId}' AND ExecutionStatus = 'Running'`,
    })) {
      await client.workflow
        .getHandle(wf.workflowId, wf.runId)
        .terminate('benchmark timed out')
        .catch(() => undefined);
    }
    await client.workflow
      .getHandle(`restore/${restoreId}`)
      .terminate('benchmark timed out')
      .catch(() => undefined);
  } finally {
    await close();
  }
}

interface Timestamp {
  seconds?: { toString(): string } | number | null;
  nanos?: number | null;
}
const toMs = (t: Timestamp | null | undefined) =>
  t ? Number(t.seconds?.toString() ?? 0) * 1000 + (t.nanos ?? 0) / 1e6 : 0;

export interface ActivitySpan {
  name: string;
  scheduledAt: number;
  closedAt: number;
  ms: number;
  attempts: number;
  status: string;
}

export interface WorkflowProfile {
  workflowId: string;
  runs: number;
  startedAt: number;
  closedAt: number;
  /** Activities of the parent, in order (scratch, plan, tenant-list pages, report, cleanup). */
  activities: ActivitySpan[];
  firstChildAt?: number;
  childrenStarted: number;
  historyEventsPerRun: number[];
}

/**
 * Runs of `restore/<id>` (continue-as-new gives one per run), and the parent's activity spans from their histories.
 * `workflowId` names another workflow of the product (`discover/<id>`).
 */
export async function workflowProfile(
  restoreId: string,
  workflowId = `restore/${restoreId}`,
): Promise<WorkflowProfile> {
  const { client, close } = await temporal();
  try {
    // Visibility is eventually consistent: read until two listings agree.
    let runs: Array<{ runId: string; startTime: Date; closeTime?: Date }> = [];
    for (let i = 0; i < 10; i++) {
      const listed: typeof runs = [];
      for await (const wf of client.workflow.list({ query: `WorkflowId = '${workflowId}'` }))
        listed.push({ runId: wf.runId, startTime: wf.startTime, closeTime: wf.closeTime });
      if (listed.length === runs.length && listed.every((r) => r.closeTime)) break;
      runs = listed;
      await sleep(500);
    }
    runs.sort((a, b) => a.startTime.getTime() - b.startTime.getTime());
    const activities: ActivitySpan[] = [];
    let firstChildAt: number | undefined;
    let childrenStarted = 0;
    const historyEventsPerRun: number[] = [];
    for (const r of runs) {
      const history = await client.workflow.getHandle(workflowId, r.runId).fetchHistory();
      const events = history.events ?? [];
      historyEventsPerRun.push(events.length);
      const scheduled = new Map<string, { name: string; at: number }>();
      const attempts = new Map<string, number>();
      for (const e of events) {
        const at = toMs(e.eventTime as Timestamp);
        const id = String(e.eventId);
        if (e.activityTaskScheduledEventAttributes)
          scheduled.set(id, { name: e.activityTaskScheduledEventAttributes.activityType?.name ?? '?', at });
        if (e.activityTaskStartedEventAttributes)
          attempts.set(
            String(e.activityTaskStartedEventAttributes.scheduledEventId),
            e.activityTaskStartedEventAttributes.attempt ?? 1,
          );
        const closed =
          e.activityTaskCompletedEventAttributes ??
          e.activityTaskFailedEventAttributes ??
          e.activityTaskTimedOutEventAttributes ??
          e.activityTaskCanceledEventAttributes;
        if (closed) {
          const key = String(closed.scheduledEventId);
          const s = scheduled.get(key);
          if (s) {
            const status = e.activityTaskCompletedEventAttributes
              ? 'completed'
              : e.activityTaskFailedEventAttributes
                ? 'failed'
                : e.activityTaskTimedOutEventAttributes
                  ? 'timed out'
                  : 'cancelled';
            activities.push({
              name: s.name,
              scheduledAt: s.at,
              closedAt: at,
              ms: at - s.at,
              attempts: attempts.get(key) ?? 1,
              status,
            });
          }
        }
        if (e.startChildWorkflowExecutionInitiatedEventAttributes) {
          childrenStarted += 1;
          firstChildAt ??= at;
        }
      }
    }
    return {
      workflowId,
      runs: runs.length,
      startedAt: runs[0]?.startTime.getTime() ?? 0,
      closedAt: runs[runs.length - 1]?.closeTime?.getTime() ?? 0,
      activities,
      firstChildAt,
      childrenStarted,
      historyEventsPerRun,
    };
  } finally {
    await close();
  }
}

/** The product's own report (`<artifacts><restoreId>/report.json`). */
export async function readReport(
  artifactsUrl: string,
  restoreId: string,
  reportUrl?: string,
): Promise<RestoreReport | undefined> {
  const url = reportUrl ?? `${artifactsUrl}${restoreId}/report.json`;
  const match = /^s3:\/\/([^/]+)\/(.+)$/.exec(url);
  if (!match) return undefined;
  const s3 = createS3Client();
  try {
    return await getJson<RestoreReport>(s3, { bucket: match[1], key: match[2] });
  } catch {
    return undefined;
  } finally {
    s3.destroy();
  }
}
