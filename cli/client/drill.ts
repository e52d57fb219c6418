/**
 * Restore drills (workflows/restore-drill.ts), as plain functions behind `tenant-restore drill`. A drill restores K
 * tenants of the latest backup into a disposable database with live's schema, never into live, validates them, and
 * records the time to restore and the rows per second in `drills/<id>.json`.
 */
import { ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { ScheduleOverlapPolicy, WorkflowFailedError, type Client } from '@temporalio/client';
import type { DrillRecord } from '../../activities/drill';
import { getJson } from '../../activities/s3';
import { concurrencyRange } from '../../workflows/definitions';
import type { RestoreDrillInput } from '../../workflows/restore-drill';
import { drillIdPattern, drillInput } from '../../activities/input-contract';
import {
  checkDatabaseRef,
  checkStartInput,
  checkTenantRoot,
  loadConfigFlag,
  parseIntegerFlag,
  UsageError,
} from './input';
import { scratchServerFromFlags, unsafeScratchFromFlags } from './scratch-placement';

/** The flags of `drill schedule|run`, as node:util parseArgs returns them. */
export interface DrillFlags {
  'backup-prefix'?: string;
  live?: string;
  'tenant-root'?: string;
  sample?: string;
  server?: string;
  concurrency?: string;
  config?: string;
  bucket?: string;
  id?: string;
  'task-queue'?: string;
  'allow-unverified-backup'?: boolean;
  'unsafe-scratch-on-live-server'?: boolean;
  'unsafe-scratch-as-live-role'?: boolean;
  'unsafe-scratch-as-superuser'?: boolean;
}

/** A drill or schedule id: it names the drill's database (drill_<id>) and its workflow or schedule (drill/<id>). */
export function checkDrillId(id: string): string {
  if (!drillIdPattern.test(id)) throw new UsageError('--id: letters, digits, . _ -, at most 57 characters.');
  return id;
}

/** Builds and checks the drill input from flags (exit code 2 on bad input, before anything starts). */
export function drillInputFromFlags(
  values: DrillFlags,
  withId = false,
  env: NodeJS.ProcessEnv = process.env,
): RestoreDrillInput {
  const prefix = values['backup-prefix'] ?? '';
  if (!/^s3:\/\/[^/]+/.test(prefix)) throw new UsageError('--backup-prefix s3://<bucket>/<prefix> is required.');
  if (!values.live) throw new UsageError('--live is required: the drill database gets its schema (read-only).');
  if (!values['tenant-root']) throw new UsageError('--tenant-root schema.table is required.');
  const tenantRoot = checkTenantRoot(values['tenant-root']);
  const sample = parseIntegerFlag('--sample', values.sample ?? '', 1, 10_000);
  const input: RestoreDrillInput = {
    backupPrefix: prefix,
    live: checkDatabaseRef('live', values.live),
    tenantRoot,
    sample,
  };
  // The backup is loaded on --server (default TENANT_RESTORE_SCRATCH_SERVER): never live's server nor live's role
  // unless accepted by flag, like a restore's scratch (activities/scratch-server.ts); the drill database goes there too.
  const unsafeScratch = unsafeScratchFromFlags(values);
  const server = scratchServerFromFlags('server', values.server, input.live, unsafeScratch, env);
  if (server) input.server = server;
  if (unsafeScratch.length) input.unsafeScratch = unsafeScratch;
  if (values.concurrency !== undefined)
    input.concurrency = parseIntegerFlag(
      '--concurrency',
      values.concurrency,
      concurrencyRange.min,
      concurrencyRange.max,
    );
  // The same validation as a restore's config (the worker checks it again when it builds the plan).
  if (values.config) input.config = loadConfigFlag(values.config);
  if (values.bucket) input.bucket = values.bucket;
  if (values['allow-unverified-backup'] === true) input.allowUnverifiedBackup = true;
  if (withId && values.id) input.drillId = checkDrillId(values.id);
  return checkStartInput('restoreDrill', drillInput, input);
}

const cronMacros = /^@(yearly|annually|monthly|weekly|daily|midnight|hourly)$/;
const cronFields: Array<{ name: string; min: number; max: number }> = [
  { name: 'minute', min: 0, max: 59 },
  { name: 'hour', min: 0, max: 23 },
  { name: 'day of month', min: 1, max: 31 },
  { name: 'month', min: 1, max: 12 },
  { name: 'day of week', min: 0, max: 7 },
];
const cronNames = /^(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec|sun|mon|tue|wed|thu|fri|sat)$/i;

/**
 * A cron expression, checked before anything is sent: five fields (minute hour day-of-month month day-of-week) of
 * `*`, numbers, names, ranges, lists and steps, or a macro such as @daily. Temporal checks it again.
 */
export function checkCron(cron: string): string {
  const text = cron.trim();
  if (cronMacros.test(text) || /^@every \d+[smhd]$/.test(text)) return text;
  const fields = text.split(/\s+/);
  const example = 'e.g. --cron "0 3 * * 1" (03:00 every Monday, UTC)';
  if (fields.length !== 5)
    throw new UsageError(
      `--cron "${cron}": expected 5 fields (minute hour day-of-month month day-of-week), ${example}.`,
    );
  for (const [i, field] of fields.entries()) {
    const { name, min, max } = cronFields[i]!;
    for (const part of field.split(',')) {
      const [range, step, extra] = part.split('/');
      const value = (v: string) => (/^\d+$/.test(v) ? Number(v) : cronNames.test(v) ? min : NaN);
      const bounds = range === '*' || range === '?' ? [min, max] : range!.split('-').map(value);
      const ok =
        extra === undefined &&
        (step === undefined || /^[1-9]\d*$/.test(step)) &&
        bounds.length >= 1 &&
        bounds.length <= 2 &&
        bounds.every((b) => Number.isInteger(b) && b >= min && b <= max);
      if (!ok)
        throw new UsageError(
          `--cron "${cron}": the ${name} field '${field}' is not valid (${min}-${max}), ${example}.`,
        );
    }
  }
  return text;
}

/**
 * Creates the schedule `drill/<id>`, or updates it when it exists. Never deletes it: a new definition that Temporal
 * refuses leaves the old one in place (the weekly drill keeps running), and says why.
 */
export async function scheduleDrill(
  client: Client,
  input: RestoreDrillInput,
  options: { id: string; cron: string; taskQueue: string },
) {
  const scheduleId = `drill/${options.id}`;
  const cron = checkCron(options.cron);
  const action = {
    type: 'startWorkflow' as const,
    workflowType: 'restoreDrill',
    workflowId: `drill/${options.id}/run`,
    taskQueue: options.taskQueue,
    args: [input],
  };
  const handle = client.schedule.getHandle(scheduleId);
  let exists = true;
  try {
    await handle.describe();
  } catch (error) {
    if ((error as Error).name !== 'ScheduleNotFoundError') throw error;
    exists = false;
  }
  try {
    if (exists) await handle.update((previous) => ({ ...previous, spec: { cronExpressions: [cron] }, action }));
    else
      await client.schedule.create({
        scheduleId,
        spec: { cronExpressions: [cron] },
        action,
        // A drill that is still running when the next one is due: skip the next one, do not pile up.
        policies: { overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: '1 hour' },
      });
  } catch (error) {
    const e = error as { code?: number; message: string };
    // gRPC INVALID_ARGUMENT: Temporal refused the definition (a cron it cannot parse, say).
    if (e.code === 3)
      throw new UsageError(
        `Temporal refused schedule ${scheduleId}: ${e.message}.${exists ? ' The existing schedule was left as it was.' : ''}`,
      );
    throw error;
  }
  const description = await handle.describe();
  return {
    scheduleId,
    cron,
    taskQueue: options.taskQueue,
    updated: exists,
    nextRuns: description.info.nextActionTimes.slice(0, 3).map((d) => d.toISOString()),
    input,
  };
}

type CalendarRange = { start: number | string; end?: number | string; step?: number };
const calendarFields: Array<[string, number | string, number | string]> = [
  ['minute', 0, 59],
  ['hour', 0, 23],
  ['dayOfMonth', 1, 31],
  ['month', 'JANUARY', 'DECEMBER'],
  ['dayOfWeek', 'SUNDAY', 'SATURDAY'],
];

/** A schedule's calendar as Temporal describes it (the cron is not kept), e.g. "minute 0, hour 3, dayOfWeek MONDAY". */
function calendarText(calendar: Record<string, CalendarRange[]>): string {
  const parts: string[] = [];
  for (const [field, min, max] of calendarFields) {
    const ranges = calendar[field] ?? [];
    const every =
      ranges.length === 1 && ranges[0]!.start === min && ranges[0]!.end === max && (ranges[0]!.step ?? 1) === 1;
    if (!ranges.length || every) continue;
    const text = ranges
      .map(
        (r) =>
          `${r.start}${r.end !== undefined && r.end !== r.start ? `-${r.end}` : ''}${(r.step ?? 1) > 1 ? `/${r.step}` : ''}`,
      )
      .join(',');
    parts.push(`${field} ${text}`);
  }
  return parts.join(', ') || 'every minute';
}

export interface DrillSchedule {
  scheduleId: string;
  /** When it runs, from Temporal's calendar (Temporal does not keep the cron text). */
  cron: string[];
  paused: boolean;
  note?: string;
  nextRuns: string[];
  recentRuns: Array<{ startedAt: string; workflowId: string }>;
}

/** The drill schedules (`drill/<id>`): their crons, whether paused, next and recent runs. */
export async function listDrillSchedules(client: Client): Promise<DrillSchedule[]> {
  const out: DrillSchedule[] = [];
  for await (const summary of client.schedule.list()) {
    if (!summary.scheduleId.startsWith('drill/')) continue;
    // The list is eventually consistent: a schedule deleted a moment ago may still be listed, and is skipped.
    const schedule = await describeDrillSchedule(client, summary.scheduleId.slice('drill/'.length)).catch((error) => {
      if (error instanceof UsageError) return undefined;
      throw error;
    });
    if (schedule) out.push(schedule);
  }
  return out.sort((a, b) => a.scheduleId.localeCompare(b.scheduleId));
}

export async function describeDrillSchedule(client: Client, id: string): Promise<DrillSchedule> {
  const scheduleId = `drill/${checkDrillId(id)}`;
  try {
    const d = await client.schedule.getHandle(scheduleId).describe();
    return {
      scheduleId,
      cron: (d.spec.calendars ?? []).map((c) => calendarText(c as unknown as Record<string, CalendarRange[]>)),
      paused: d.state.paused,
      ...(d.state.note ? { note: d.state.note } : {}),
      nextRuns: d.info.nextActionTimes.slice(0, 3).map((t) => t.toISOString()),
      recentRuns: d.info.recentActions.slice(-3).map((a) => ({
        startedAt: a.takenAt.toISOString(),
        workflowId: a.action.type === 'startWorkflow' ? a.action.workflow.workflowId : '',
      })),
    };
  } catch (error) {
    if ((error as Error).name === 'ScheduleNotFoundError')
      throw new UsageError(`no drill schedule '${id}' (${scheduleId}): tenant-restore drill schedules lists them.`);
    throw error;
  }
}

/** Pauses, unpauses or deletes the schedule `drill/<id>` (which must exist); returns what it is now. */
export async function controlDrillSchedule(
  client: Client,
  id: string,
  action: 'pause' | 'unpause' | 'delete',
  note?: string,
): Promise<{ scheduleId: string; action: string; schedule?: DrillSchedule }> {
  const before = await describeDrillSchedule(client, id);
  const handle = client.schedule.getHandle(before.scheduleId);
  if (action === 'delete') {
    await handle.delete();
    return { scheduleId: before.scheduleId, action };
  }
  if (action === 'pause') await handle.pause(note ?? 'paused with tenant-restore drill pause');
  else await handle.unpause(note ?? 'unpaused with tenant-restore drill unpause');
  return { scheduleId: before.scheduleId, action, schedule: await describeDrillSchedule(client, id) };
}

/** Runs one drill now. With wait, returns its record; a failed drill comes back as { failed: true, record? }. */
export async function runDrill(
  client: Client,
  input: RestoreDrillInput,
  options: { taskQueue: string; wait: boolean },
): Promise<{ workflowId: string; record?: DrillRecord; failed: boolean; error?: string }> {
  const drillId =
    input.drillId ?? `${new Date().toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15)}-manual`;
  const workflowId = `drill/${drillId}`;
  const handle = await client.workflow.start('restoreDrill', {
    taskQueue: options.taskQueue,
    workflowId,
    args: [{ ...input, drillId }],
  });
  if (!options.wait) return { workflowId, failed: false };
  try {
    return { workflowId, record: (await handle.result()) as DrillRecord, failed: false };
  } catch (error) {
    if (!(error instanceof WorkflowFailedError)) throw error;
    const cause = error.cause as { message?: string; details?: unknown[] } | undefined;
    return {
      workflowId,
      failed: true,
      record: cause?.details?.[0] as DrillRecord | undefined,
      error: cause?.message ?? error.message,
    };
  }
}

/** Past drills from `s3://<bucket>/drills/<id>.json`, newest first. */
export async function listDrills(s3: S3Client, bucket: string, limit = 20): Promise<DrillRecord[]> {
  const keys: Array<{ key: string; at: number }> = [];
  let token: string | undefined;
  do {
    const page = await s3.send(
      new ListObjectsV2Command({ Bucket: bucket, Prefix: 'drills/', Delimiter: '/', ContinuationToken: token }),
    );
    for (const o of page.Contents ?? [])
      if (o.Key?.endsWith('.json')) keys.push({ key: o.Key, at: o.LastModified?.getTime() ?? 0 });
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  keys.sort((a, b) => b.at - a.at || b.key.localeCompare(a.key));
  return Promise.all(keys.slice(0, limit).map((k) => getJson<DrillRecord>(s3, { bucket, key: k.key })));
}
