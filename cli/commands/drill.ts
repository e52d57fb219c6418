/** `tenant-restore drill schedule|run|list`: restore drills (the functions live in cli/client/drill.ts). */
import type { DrillRecord } from '../../activities/drill';
import { UsageError } from '../client/errors';
import { exitCodes, parseFlags, print, type Command, type Flags } from './common';

// The clients load when the command runs, not with this module: main.ts loads it for `drill --help`, which then stays
// clear of the Temporal client, the AWS SDK and pg.
/* eslint-disable @typescript-eslint/no-require-imports */
const s3Objects = () => require('../../activities/s3') as typeof import('../../activities/s3');
const connection = () => require('../client/connection') as typeof import('../client/connection');
const drills = () => require('../client/drill') as typeof import('../client/drill');
const inputChecks = () => require('../client/input') as typeof import('../client/input');
/* eslint-enable @typescript-eslint/no-require-imports */

const usage = `tenant-restore drill schedule --backup-prefix s3://<bucket>/<prefix> --live <url|alias> --tenant-root <schema.table>
                           --sample K --cron "<cron>" [--id <schedule id>] [--server <url|alias>] [--concurrency N]
                           [--config <file>] [--task-queue <name>] [--allow-unverified-backup] [--json]
                           [--unsafe-scratch-on-live-server] [--unsafe-scratch-as-live-role] [--unsafe-scratch-as-superuser]
       tenant-restore drill run      (same flags as schedule, without --cron) [--id <drill id>] [--no-wait] [--json]
       tenant-restore drill update   (same flags as schedule; the schedule --id must exist)
       tenant-restore drill list     --bucket <bucket> | --backup-prefix s3://<bucket>/... [--limit N] [--json]
       tenant-restore drill schedules [--json]
       tenant-restore drill pause|unpause|delete --id <schedule id> [--note "why"] [--json]

  schedule  creates a Temporal Schedule 'drill/<id>' that runs a drill on the cron expression, or updates it in place:
            the new definition is checked first, and one that is refused leaves the existing schedule as it was
  run       runs one drill now and waits for it; exit code 1 when the drill fails
  update    the same as schedule, refused when the schedule does not exist (a typo in --id creates nothing)
  list      shows past drills from s3://<bucket>/drills/*.json, newest first
  schedules the drill schedules: cron, paused or not, next and recent runs
  pause, unpause, delete   the schedule drill/<id> (pause keeps it, with a note saying why; delete removes it)

A drill picks K tenants of the newest backup under --backup-prefix, creates drill_<id> with live's schema
(pg_dump --schema-only: live is only read), restores the tenants into it with bulkRestore (re-enable actions are
never run), checks them, records the figures in S3, drops its databases, and fails its workflow if any check fails.
A backup whose manifest is not signed by the backup job's key (checked with the workers' TENANT_RESTORE_BACKUP_PUBLIC_KEY)
fails the drill (BackupUnverified, BackupSignatureInvalid) unless the drill was made with --allow-unverified-backup.
The backup and the drill database are loaded on --server (default: TENANT_RESTORE_SCRATCH_SERVER), a server of its own
with an unprivileged role: live's server, live's role, or a role that reaches the host (superuser, CREATEROLE,
pg_*_server_*) is refused, exit 2 (the worker refuses it too), unless accepted with --unsafe-scratch-on-live-server,
--unsafe-scratch-as-live-role or --unsafe-scratch-as-superuser: a backup is code for the role that loads it.`;

const flagSpec = {
  'backup-prefix': { type: 'string' },
  live: { type: 'string' },
  'tenant-root': { type: 'string' },
  sample: { type: 'string' },
  cron: { type: 'string' },
  id: { type: 'string' },
  server: { type: 'string' },
  concurrency: { type: 'string' },
  config: { type: 'string', file: true },
  'task-queue': { type: 'string' },
  bucket: { type: 'string' },
  limit: { type: 'string' },
  'no-wait': { type: 'boolean' },
  json: { type: 'boolean' },
  'allow-unverified-backup': { type: 'boolean' },
  'unsafe-scratch-on-live-server': { type: 'boolean' },
  'unsafe-scratch-as-live-role': { type: 'boolean' },
  'unsafe-scratch-as-superuser': { type: 'boolean' },
  note: { type: 'string' },
} as const satisfies Flags;

export function formatDrill(r: DrillRecord): string {
  return (
    `${r.drillId}  ${r.status.toUpperCase().padEnd(6)}  ${r.startedAt}  tenants ${r.restored}/${r.tenants.length}  rows ${r.rows}  ` +
    `time to restore ${(r.timeToRestoreMs / 1000).toFixed(1)} s${r.timeToScratchMs !== undefined ? ` (scratch ${(r.timeToScratchMs / 1000).toFixed(1)} s)` : ''}  ${r.rowsPerSecond} rows/s  backup ${r.backup ?? '-'}${r.error ? `\n    error: ${r.error}` : ''}`
  );
}

export const drillCommand: Command = {
  name: 'drill',
  summary: 'restore drills: schedule, run now, list past drills with their figures',
  usage,
  flags: flagSpec,
  subcommands: ['schedule', 'run', 'update', 'list', 'schedules', 'pause', 'unpause', 'delete'],
  async run(argv) {
    const { values, positionals } = parseFlags(argv, flagSpec, usage);
    const { connectTemporal } = connection();
    const {
      checkCron,
      checkDrillId,
      controlDrillSchedule,
      describeDrillSchedule,
      drillInputFromFlags,
      listDrillSchedules,
      listDrills,
      runDrill,
      scheduleDrill,
    } = drills();
    const { parseIntegerFlag, taskQueueFrom } = inputChecks();
    const [sub] = positionals;
    const json = values.json === true;
    if (sub === 'list') {
      const bucket = values.bucket ?? /^s3:\/\/([^/]+)/.exec(String(values['backup-prefix'] ?? ''))?.[1];
      if (!bucket) throw new UsageError(`drill list needs --bucket or --backup-prefix.\n\nusage: ${usage}`);
      const s3 = s3Objects().createS3Client();
      try {
        const records = await listDrills(s3, bucket, values.limit ? parseIntegerFlag('--limit', values.limit, 1) : 20);
        print(json, records, () =>
          records.length ? records.map(formatDrill).join('\n') : `no drills recorded in s3://${bucket}/drills/`,
        );
        return exitCodes.ok;
      } finally {
        s3.destroy();
      }
    }
    if (sub === 'schedules' || sub === 'pause' || sub === 'unpause' || sub === 'delete') {
      const { client, close } = await connectTemporal();
      try {
        if (sub === 'schedules') {
          const schedules = await listDrillSchedules(client);
          print(json, schedules, () =>
            schedules.length
              ? schedules
                  .map(
                    (d) =>
                      `${d.scheduleId}  ${d.paused ? 'PAUSED' : 'active'}  cron "${d.cron.join('; ')}"  next ${d.nextRuns[0] ?? '-'}${d.note ? `  (${d.note})` : ''}`,
                  )
                  .join('\n')
              : 'no drill schedules.',
          );
          return exitCodes.ok;
        }
        if (!values.id) throw new UsageError(`drill ${sub} needs --id <schedule id>.\n\nusage: ${usage}`);
        const done = await controlDrillSchedule(client, values.id, sub, values.note);
        print(json, done, () => `${done.scheduleId}: ${sub === 'delete' ? 'deleted' : `${sub}d`}`);
        return exitCodes.ok;
      } finally {
        await close();
      }
    }
    if (sub !== 'schedule' && sub !== 'update' && sub !== 'run')
      throw new UsageError(
        `expected schedule, update, run, list, schedules, pause, unpause or delete.\n\nusage: ${usage}`,
      );
    const input = drillInputFromFlags(values, sub === 'run');
    const taskQueue = taskQueueFrom(values['task-queue']);
    if (sub === 'schedule' || sub === 'update') {
      if (!values.cron)
        throw new UsageError('--cron "<minute hour day month weekday>" is required, e.g. --cron "0 3 * * 1".');
      const id = checkDrillId(values.id ?? 'weekly');
      checkCron(values.cron);
      const { client, close } = await connectTemporal();
      try {
        // update: the schedule must exist (describe refuses an unknown id before anything is sent).
        if (sub === 'update') await describeDrillSchedule(client, id);
        const created = await scheduleDrill(client, input, { id, cron: values.cron, taskQueue });
        print(
          json,
          created,
          () =>
            `schedule ${created.scheduleId} ${created.updated ? 'updated' : 'created'}: cron "${created.cron}", task queue ${created.taskQueue}\nnext runs: ${created.nextRuns.join(', ')}`,
        );
        return exitCodes.ok;
      } finally {
        await close();
      }
    }
    const { client, close } = await connectTemporal();
    try {
      const outcome = await runDrill(client, input, { taskQueue, wait: values['no-wait'] !== true });
      print(json, outcome, () =>
        outcome.record
          ? formatDrill(outcome.record)
          : outcome.failed
            ? `drill ${outcome.workflowId} FAILED: ${outcome.error}`
            : `started ${outcome.workflowId}`,
      );
      return outcome.failed ? exitCodes.partial : exitCodes.ok;
    } finally {
      await close();
    }
  },
};
