/**
 * Workflow histories for the tests: the executions of a restore, a history's events and its failed activities, its
 * text with every payload decoded (what a reader of the history could see, for the I5 scans: no password, no row
 * value), and the binary protobuf files the replay test reads.
 */
import type { Client } from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

type History = temporal.api.history.v1.IHistory;

/** Every execution (each run of each workflow) of a restore, found through the RestoreId search attribute. */
export async function restoreExecutions(
  client: Client,
  restoreId: string,
): Promise<Array<{ workflowId: string; runId: string; type: string }>> {
  const out: Array<{ workflowId: string; runId: string; type: string }> = [];
  for await (const e of client.workflow.list({ query: `RestoreId = "${restoreId}"` }))
    out.push({ workflowId: e.workflowId, runId: e.runId, type: e.type });
  return out;
}

/** Flattens any decoded protobuf message (a workflow history) to text; byte fields (payload data) are decoded as UTF-8. */
function flattenToText(value: unknown, out: string[] = []): string[] {
  if (value === null || value === undefined) return out;
  if (value instanceof Uint8Array) {
    out.push(Buffer.from(value).toString('utf8'));
    // Payloads are JSON; a base64 form would hide a string from a plain search, so add that too.
    out.push(Buffer.from(value).toString('base64'));
    return out;
  }
  if (typeof value === 'string') out.push(value);
  else if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint')
    out.push(String(value));
  else if (Array.isArray(value)) for (const v of value) flattenToText(v, out);
  else if (typeof value === 'object') {
    const long = value as { low?: number; high?: number; toString?: () => string };
    if (typeof long.low === 'number' && typeof long.high === 'number') out.push(String(long.toString?.()));
    else for (const v of Object.values(value as Record<string, unknown>)) flattenToText(v, out);
  }
  return out;
}

/** A history as text, every payload decoded (and in base64 too), so that a scan sees what a reader of it could see. */
export function historyText(history: History): string {
  return flattenToText(history).join('\n');
}

/**
 * Events of a history as { type, signal?, update?, childId? } in order, for assertions on what the parent did when.
 * `update` is the name of an accepted Workflow Update (a rejected one leaves no event).
 */
export function historyEvents(
  history: History,
): Array<{ type: string; signal?: string; update?: string; childId?: string }> {
  return ((history.events ?? []) as Array<Record<string, unknown>>).map((e) => {
    const type = Object.keys(e).find((k) => k.endsWith('EventAttributes') && e[k]) ?? 'unknown';
    const attrs = e[type] as Record<string, unknown>;
    return {
      type: type.replace(/EventAttributes$/, ''),
      signal: (attrs?.signalName as string | undefined) ?? undefined,
      update: (attrs?.acceptedRequest as { input?: { name?: string } } | undefined)?.input?.name ?? undefined,
      childId:
        (attrs?.workflowId as string | undefined) ??
        (attrs?.workflowExecution as { workflowId?: string } | undefined)?.workflowId,
    };
  });
}

export interface FailedActivity {
  workflowId: string;
  activity: string;
  attempt: number;
  type?: string;
  nonRetryable?: boolean;
  message: string;
}

/** Every failed activity attempt recorded in the histories (the last attempt of each: Temporal records only that one). */
export async function failedActivities(client: Client, workflowIds: string[]): Promise<FailedActivity[]> {
  const out: FailedActivity[] = [];
  for (const workflowId of workflowIds) {
    const history = await client.workflow.getHandle(workflowId).fetchHistory();
    const byId = new Map((history.events ?? []).map((e) => [String(e.eventId), e]));
    for (const event of history.events ?? []) {
      const failed = event.activityTaskFailedEventAttributes;
      if (!failed) continue;
      const scheduled = byId.get(String(failed.scheduledEventId))?.activityTaskScheduledEventAttributes;
      const started = byId.get(String(failed.startedEventId))?.activityTaskStartedEventAttributes;
      out.push({
        workflowId,
        activity: scheduled?.activityType?.name ?? '?',
        attempt: started?.attempt ?? -1,
        type: failed.failure?.applicationFailureInfo?.type ?? undefined,
        nonRetryable: failed.failure?.applicationFailureInfo?.nonRetryable ?? undefined,
        message: failed.failure?.message ?? '',
      });
    }
  }
  return out;
}

/** The full text of the histories of the given workflow ids (every run, after continue-as-new too). */
export async function historiesText(client: Client, workflowIds: string[]): Promise<Map<string, string>> {
  const texts = new Map<string, string>();
  for (const workflowId of workflowIds) {
    const runs: string[] = [];
    for await (const execution of client.workflow.list({ query: `WorkflowId = ${JSON.stringify(workflowId)}` }))
      runs.push(execution.runId);
    if (runs.length === 0) runs.push('');
    const parts: string[] = [];
    for (const runId of runs)
      parts.push(historyText(await client.workflow.getHandle(workflowId, runId || undefined).fetchHistory()));
    texts.set(workflowId, parts.join('\n'));
  }
  return texts;
}

/**
 * The workflow ids of a restore, found in the histories themselves (not in visibility, which lags): the parent
 * `restore/<restoreId>` and every child it started, over every run, and their children (a failed group is split into
 * tenant children), whatever the children's outcome. A failed restore's histories hold its failures' messages and
 * stack traces, which the I5 scan must read too.
 */
export async function restoreWorkflowIds(client: Client, restoreId: string): Promise<string[]> {
  const ids = [`restore/${restoreId}`];
  for (let i = 0; i < ids.length; i++) {
    const runs: string[] = [];
    for await (const execution of client.workflow.list({ query: `WorkflowId = ${JSON.stringify(ids[i])}` }))
      runs.push(execution.runId);
    if (runs.length === 0) runs.push('');
    for (const runId of runs) {
      const history = await client.workflow.getHandle(ids[i]!, runId || undefined).fetchHistory();
      for (const event of history.events ?? []) {
        const child = event.startChildWorkflowExecutionInitiatedEventAttributes?.workflowId;
        if (child && !ids.includes(child)) ids.push(child);
      }
    }
  }
  return ids;
}

/** The text of every history of a restore (restoreWorkflowIds), keyed `history <workflowId>`. */
export async function restoreHistoriesText(client: Client, restoreId: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const [id, text] of await historiesText(client, await restoreWorkflowIds(client, restoreId)))
    out.set(`history ${id}`, text);
  return out;
}

/** Where the replay test's histories live; the orchestration tests write there with SAVE_REPLAY_HISTORIES=1. */
export const replayHistoriesDir = join(__dirname, '..', 'replay', 'histories');

/**
 * Saves a history as binary protobuf (`<name>.binpb`). Binary, because the JSON converters of this install
 * (historyToJSON/historyFromJSON) fail on its duplicated protobufjs copies ("type must be a Type").
 */
export async function saveHistory(
  client: Client,
  workflowId: string,
  runId: string,
  name: string,
  dir = replayHistoriesDir,
): Promise<string> {
  const history = await client.workflow.getHandle(workflowId, runId).fetchHistory();
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${name}.binpb`);
  const { History } = temporal.api.history.v1;
  writeFileSync(file, History.encode(History.fromObject(history)).finish());
  return file;
}

/** A history saved by saveHistory. */
export function readSavedHistory(file: string): temporal.api.history.v1.History {
  return temporal.api.history.v1.History.decode(readFileSync(file));
}
