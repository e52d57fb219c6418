/**
 * `tenant-restore drill schedule|run|list`: restore drills (workflows/restore-drill.ts). A drill restores K tenants of
 * the latest backup into a disposable database with live's schema, never into live, validates them, and records the
 * time to restore and the rows per second in `drills/<id>.json`.
 */
import { ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { ScheduleOverlapPolicy, WorkflowFailedError, type Client } from '@temporalio/client';
import { loadConfig } from '../../activities/config';
import type { DrillRecord } from '../../activities/drill';
import { hasPassword, passwordRefusal } from '../../activities/db';
import { createS3Client, getJson } from '../../activities/s3';
import type { RestoreDrillInput } from '../../workflows/restore-drill';
import { connectTemporal, exitCodes, parseFlags, print, UsageError, type Command } from './common';

const usage = `tenant-restore drill schedule --backup-prefix s3://<bucket>/<prefix> --live <url|alias> --tenant-root <schema.table>
                           --sample K --cron "<cron>" [--id <schedule id>] [--server <url|alias>] [--concurrency N]
                           [--config <file>] [--task-queue <name>] [--allow-unverified-backup] [--json]
       tenant-restore drill run      (same flags as schedule, without --cron) [--id <drill id>] [--no-wait] [--json]
       tenant-restore drill list     --bucket <bucket> | --backup-prefix s3://<bucket>/... [--limit N] [--json]

  schedule  creates (or replaces) a Temporal Schedule 'drill/<id>' that runs a drill on the cron expression
  run       runs one drill now and waits for it; exit code 1 when the drill fails
  list      shows past drills from s3://<bucket>/drills/*.json, newest first

A drill picks K tenants of the newest backup under --backup-prefix, creates drill_<id> with live's schema
(pg_dump --schema-only: live is only read), restores the tenants into it with bulkRestore (re-enable actions are
never run), checks them, records the figures in S3, drops its databases, and fails its workflow if any check fails.
A backup with no sha256 to check (no <key>.manifest.json, no sha256 in its metadata) fails the drill (BackupUnverified)
unless the drill was made with --allow-unverified-backup.`;

const flagSpec = {
  'backup-prefix': { type: 'string' },
  live: { type: 'string' },
  'tenant-root': { type: 'string' },
  sample: { type: 'string' },
  cron: { type: 'string' },
  id: { type: 'string' },
  server: { type: 'string' },
  concurrency: { type: 'string' },
  config: { type: 'string' },
  'task-queue': { type: 'string' },
  bucket: { type: 'string' },
  limit: { type: 'string' },
  'no-wait': { type: 'boolean' },
  json: { type: 'boolean' },
  'allow-unverified-backup': { type: 'boolean' },
} as const;

type Flags = Partial<Record<keyof typeof flagSpec, string | boolean>>;

const idPattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,40}$/;

function checkRef(flag: string, ref: string): string {
  if (hasPassword(ref)) throw new UsageError(passwordRefusal(`--${flag}`, flag));
  if (/^[A-Za-z][A-Za-z0-9_]*(\/[A-Za-z0-9_]+)?$/.test(ref)) return ref;
  if (!/^postgres(ql)?:\/\//.test(ref)) throw new UsageError(`--${flag} '${ref}' is neither a postgres:// URL nor an alias.`);
  return ref;
}

/** Builds and checks the drill input from flags (exit code 2 on bad input, before anything starts). */
export function drillInputFromFlags(values: Flags, withId = false): RestoreDrillInput {
  const prefix = String(values['backup-prefix'] ?? '');
  if (!/^s3:\/\/[^/]+/.test(prefix)) throw new UsageError(`--backup-prefix s3://<bucket>/<prefix> is required.\n\nusage: ${usage}`);
  if (!values.live) throw new UsageError('--live is required: the drill database gets its schema (read-only).');
  const root = String(values['tenant-root'] ?? '');
  if (!/^[A-Za-z_][A-Za-z0-9_$]*\.[A-Za-z_][A-Za-z0-9_$]*$/.test(root)) throw new UsageError('--tenant-root schema.table is required.');
  const sample = Number(values.sample ?? '');
  if (!Number.isInteger(sample) || sample < 1 || sample > 10_000) throw new UsageError('--sample must be an integer in 1..10000.');
  const input: RestoreDrillInput = { backupPrefix: prefix, live: checkRef('live', String(values.live)), tenantRoot: root, sample };
  if (values.server) input.server = checkRef('server', String(values.server));
  if (values.concurrency !== undefined) {
    const n = Number(values.concurrency);
    if (!Number.isInteger(n) || n < 1 || n > 1000) throw new UsageError('--concurrency must be an integer in 1..1000.');
    input.concurrency = n;
  }
  if (values.config) {
    try {
      // The same validation as a restore's config (the worker checks it again when it builds the plan).
      input.config = loadConfig(String(values.config));
    } catch (error) {
      throw new UsageError(`--config: ${(error as Error).message}`);
    }
  }
  if (values.bucket) input.bucket = String(values.bucket);
  if (values['allow-unverified-backup'] === true) input.allowUnverifiedBackup = true;
  if (withId && values.id) {
    if (!idPattern.test(String(values.id))) throw new UsageError('--id: letters, digits, . _ -, at most 41 characters.');
    input.drillId = String(values.id);
  }
  return input;
}

const taskQueueOf = (values: Flags) => String(values['task-queue'] ?? process.env.TENANT_RESTORE_TASK_QUEUE ?? 'tenant-restore');

/** Creates (or replaces) the schedule `drill/<id>`. */
export async function scheduleDrill(client: Client, input: RestoreDrillInput, options: { id: string; cron: string; taskQueue: string }) {
  const scheduleId = `drill/${options.id}`;
  const existing = client.schedule.getHandle(scheduleId);
  try {
    await existing.describe();
    await existing.delete();
  } catch (error) {
    if ((error as Error).name !== 'ScheduleNotFoundError') throw error;
  }
  await client.schedule.create({
    scheduleId,
    spec: { cronExpressions: [options.cron] },
    action: { type: 'startWorkflow', workflowType: 'restoreDrill', workflowId: `drill/${options.id}/run`, taskQueue: options.taskQueue, args: [input] },
    // A drill that is still running when the next one is due: skip the next one, do not pile up.
    policies: { overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: '1 hour' },
  });
  const description = await client.schedule.getHandle(scheduleId).describe();
  return { scheduleId, cron: options.cron, taskQueue: options.taskQueue, nextRuns: description.info.nextActionTimes.slice(0, 3).map((d) => d.toISOString()), input };
}

/** Runs one drill now. With wait, returns its record; a failed drill comes back as { failed: true, record? }. */
export async function runDrill(client: Client, input: RestoreDrillInput, options: { taskQueue: string; wait: boolean }): Promise<{ workflowId: string; record?: DrillRecord; failed: boolean; error?: string }> {
  const drillId = input.drillId ?? `${new Date().toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15)}-manual`;
  const workflowId = `drill/${drillId}`;
  const handle = await client.workflow.start('restoreDrill', { taskQueue: options.taskQueue, workflowId, args: [{ ...input, drillId }] });
  if (!options.wait) return { workflowId, failed: false };
  try {
    return { workflowId, record: (await handle.result()) as DrillRecord, failed: false };
  } catch (error) {
    if (!(error instanceof WorkflowFailedError)) throw error;
    const cause = error.cause as { message?: string; details?: unknown[] } | undefined;
    return { workflowId, failed: true, record: cause?.details?.[0] as DrillRecord | undefined, error: cause?.message ?? error.message };
  }
}

/** Past drills from `s3://<bucket>/drills/<id>.json`, newest first. */
export async function listDrills(s3: S3Client, bucket: string, limit = 20): Promise<DrillRecord[]> {
  const keys: Array<{ key: string; at: number }> = [];
  let token: string | undefined;
  do {
    const page = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: 'drills/', Delimiter: '/', ContinuationToken: token }));
    for (const o of page.Contents ?? []) if (o.Key?.endsWith('.json')) keys.push({ key: o.Key, at: o.LastModified?.getTime() ?? 0 });
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  keys.sort((a, b) => b.at - a.at || b.key.localeCompare(a.key));
  return Promise.all(keys.slice(0, limit).map((k) => getJson<DrillRecord>(s3, { bucket, key: k.key })));
}

export function formatDrill(r: DrillRecord): string {
  return `${r.drillId}  ${r.status.toUpperCase().padEnd(6)}  ${r.startedAt}  tenants ${r.restored}/${r.tenants.length}  rows ${r.rows}  ` +
    `time to restore ${(r.timeToRestoreMs / 1000).toFixed(1)} s  ${r.rowsPerSecond} rows/s  backup ${r.backup ?? '-'}${r.error ? `\n    error: ${r.error}` : ''}`;
}

export const drillCommand: Command = {
  name: 'drill',
  summary: 'restore drills: schedule, run now, list past drills with their figures',
  usage,
  async run(argv) {
    const { values, positionals } = parseFlags(argv, flagSpec, usage);
    const [sub] = positionals;
    const json = values.json === true;
    if (sub === 'list') {
      const bucket = values.bucket ?? /^s3:\/\/([^/]+)/.exec(String(values['backup-prefix'] ?? ''))?.[1];
      if (!bucket) throw new UsageError(`drill list needs --bucket or --backup-prefix.\n\nusage: ${usage}`);
      const s3 = createS3Client();
      try {
        const records = await listDrills(s3, bucket, values.limit ? Number(values.limit) : 20);
        print(json, records, () => (records.length ? records.map(formatDrill).join('\n') : `no drills recorded in s3://${bucket}/drills/`));
        return exitCodes.ok;
      } finally {
        s3.destroy();
      }
    }
    if (sub !== 'schedule' && sub !== 'run') throw new UsageError(`expected schedule, run or list.\n\nusage: ${usage}`);
    const input = drillInputFromFlags(values, sub === 'run');
    if (sub === 'schedule') {
      if (!values.cron) throw new UsageError('--cron "<minute hour day month weekday>" is required, e.g. --cron "0 3 * * 1".');
      const id = String(values.id ?? 'weekly');
      if (!idPattern.test(id)) throw new UsageError('--id: letters, digits, . _ -, at most 41 characters.');
      const { client, close } = await connectTemporal();
      try {
        const created = await scheduleDrill(client, input, { id, cron: String(values.cron), taskQueue: taskQueueOf(values) });
        print(json, created, () => `schedule ${created.scheduleId} created: cron "${created.cron}", task queue ${created.taskQueue}\nnext runs: ${created.nextRuns.join(', ')}`);
        return exitCodes.ok;
      } finally {
        await close();
      }
    }
    const { client, close } = await connectTemporal();
    try {
      const outcome = await runDrill(client, input, { taskQueue: taskQueueOf(values), wait: values['no-wait'] !== true });
      print(json, outcome, () => outcome.record ? formatDrill(outcome.record) : outcome.failed ? `drill ${outcome.workflowId} FAILED: ${outcome.error}` : `started ${outcome.workflowId}`);
      return outcome.failed ? exitCodes.partial : exitCodes.ok;
    } finally {
      await close();
    }
  },
};
