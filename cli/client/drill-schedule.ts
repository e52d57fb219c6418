/**
 * Drill schedules: the cron checked as Temporal reads it, the schedule `drill/<id>` created, listed, described, paused,
 * unpaused or deleted.
 */
import { ScheduleOverlapPolicy, type Client } from '@temporalio/client';
import type { RestoreDrillInput } from '../../workflows/restore-drill';
import { UsageError } from './input';
import { checkDrillId } from './drill';

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
