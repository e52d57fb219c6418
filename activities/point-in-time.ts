/**
 * Scratch by point-in-time recovery from a pgBackRest WAL archive (`start --backup pgbackrest:<stanza> --at <moment>`):
 * `pgbackrest restore --type=time|lsn` into a fresh data directory on the worker's host, a private PostgreSQL started
 * on it (unix socket only, in that directory: nothing outside the host can reach the copy of every tenant's data),
 * recovery awaited and verified from the server's own log (where it stopped, the last transaction it replayed), and
 * its URL handed to the plan and the copy like any other scratch.
 *
 * The server lives on one host, so every activity that reads it runs on that host's own task queue
 * (`<task queue>@<host id>`, polled by each worker besides the shared one). The prepare itself runs on the shared
 * queue: whichever worker takes it becomes the scratch host, and a retry after its death prepares on another.
 */
import { cancellationSignal, heartbeat } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { z } from 'zod';
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, existsSync, openSync } from 'node:fs';
import { chmod, lstat, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { dirname, join, resolve, sep } from 'node:path';
import { databaseName, resolveConnectionString, type DatabaseRef, type Pools } from './db';
import {
  checkInput,
  databaseName as databaseNameSchema,
  databaseRef,
  invalidInput,
  isoFromMicros,
  operationId,
  parseRecoveryTarget,
  recoveryTarget,
  scratchKind,
  stanzaName,
  toMicros,
} from './input-contract';
import type { RecoveryTarget, ScratchInfo } from './restore-types';
import { runTool } from './tools';
import type { ScratchKind } from './scratch';

export type { ScratchKind };

export type { RecoveryTarget };

// Parsed and rendered by the input contract, which workflow code shares: the worker re-checks what it is given.
export { isoFromMicros, parseRecoveryTarget, toMicros };

/** pgBackRest reads `YYYY-MM-DD HH:MM:SS[.mmm]+TZ`, not ISO 8601's T and Z. */
export function pgbackrestTime(iso: string): string {
  return `${iso.replace('T', ' ').replace(/Z$/, '')}+00`;
}

export function describeTarget(target: RecoveryTarget): string {
  return target.type === 'time' ? target.time : `LSN ${target.lsn}`;
}

/** `0/3A000060` → a number, for comparing positions (exact below 2^53: 8 PB of WAL). */
export function lsnValue(lsn: string): number {
  const [hi, lo] = lsn.split('/');
  return parseInt(hi, 16) * 2 ** 32 + parseInt(lo, 16);
}

/** What `pgbackrest info` says one stanza can restore: from the end of its oldest backup to the end of its archive. */
export interface ArchiveRange {
  stanza: string;
  /** The oldest moment a recovery can stop at: the end of the oldest backup (consistency is reached there). */
  from?: { time: string; lsn: string; backup: string };
  /** The last archived WAL segment; `lastCommit` is the newest commit found in it (pg_waldump), when read. */
  to?: { walSegment: string; lastCommit?: string };
  backups: number;
  status: string;
}

interface PgbackrestInfoJson {
  name: string;
  status?: { code: number; message: string };
  archive?: Array<{ min?: string | null; max?: string | null }>;
  backup?: Array<{ label: string; timestamp: { start: number; stop: number }; lsn?: { start: string; stop: string } }>;
}

/** The range of one stanza, from `pgbackrest info --output=json`. */
export function archiveRangeFromInfo(infoJson: string, stanza: string): ArchiveRange {
  const stanzas = JSON.parse(infoJson) as PgbackrestInfoJson[];
  const info = stanzas.find((s) => s.name === stanza);
  if (!info) return { stanza, backups: 0, status: 'missing stanza' };
  const backups = [...(info.backup ?? [])].sort((a, b) => a.timestamp.stop - b.timestamp.stop);
  const oldest = backups[0];
  const max = (info.archive ?? []).map((a) => a.max).filter((m): m is string => !!m);
  return {
    stanza,
    backups: backups.length,
    status: info.status?.message ?? 'unknown',
    ...(oldest
      ? {
          from: {
            time: new Date(oldest.timestamp.stop * 1000).toISOString(),
            lsn: oldest.lsn?.stop ?? '0/0',
            backup: oldest.label,
          },
        }
      : {}),
    ...(max.length ? { to: { walSegment: max.sort().at(-1)! } } : {}),
  };
}

/** Why the target cannot be recovered from this range, or undefined. The message gives the range there is. */
export function targetOutsideRange(range: ArchiveRange, target: RecoveryTarget): string | undefined {
  const available = `${range.from ? `from ${range.from.time} (end of backup ${range.from.backup}, LSN ${range.from.lsn})` : 'nothing'}${range.to ? ` to ${range.to.lastCommit ? `the last archived commit at ${range.to.lastCommit}` : `WAL segment ${range.to.walSegment}`}` : ''}`;
  if (range.backups === 0 || !range.from)
    return `stanza '${range.stanza}' has no backup to recover from (${range.status}). Take one: pgbackrest --stanza=${range.stanza} backup.`;
  if (target.type === 'time') {
    if (toMicros(target.time) < toMicros(range.from.time))
      return `${target.time} is before the oldest backup ended; stanza '${range.stanza}' can recover ${available}.`;
    if (range.to?.lastCommit && toMicros(target.time) >= toMicros(range.to.lastCommit))
      return `${target.time} is at or after the end of the WAL archive; stanza '${range.stanza}' can recover ${available}. Recovery stops at the first commit after the target, so one must be archived: wait for the source's archive_timeout, or run SELECT pg_switch_wal() on it, then retry; or choose an earlier --at.`;
  } else if (lsnValue(target.lsn) < lsnValue(range.from.lsn)) {
    return `LSN ${target.lsn} is before the oldest backup ended; stanza '${range.stanza}' can recover ${available}.`;
  }
  return undefined;
}

/** What the server's log says about the recovery it ran. */
export interface RecoveryOutcome {
  /** `before commit of transaction 1234, time …` or `after WAL location (LSN) "0/…"`. */
  stopped?: string;
  /** The commit time of the first transaction not replayed (a time target), for the check below. */
  stoppedBeforeTime?: string;
  /** The last transaction replayed: the recovery point achieved. */
  lastTransaction?: string;
  walSegmentsRestored: number;
  ready: boolean;
  /** A FATAL or PANIC line: the recovery failed. */
  fatal?: string;
}

/** PostgreSQL prints `2026-12-02 11:00:00.123+00` (lc_messages=C): to ISO 8601. */
function pgTimeToIso(text: string): string {
  const us = toMicros(text);
  return Number.isNaN(us) ? text.trim() : isoFromMicros(us);
}

export function parseRecoveryLog(text: string): RecoveryOutcome {
  const stopped = /recovery stopping (before|after) (commit|abort) of transaction (\d+), time (.+)$/m.exec(text);
  const stoppedLsn = /recovery stopping (?:before|after) WAL location \(LSN\) "([0-9A-F/]+)"/m.exec(text);
  const last = /last completed transaction was at log time (.+)$/m.exec(text);
  const fatal = /(?:FATAL|PANIC):\s+(.+)$/m.exec(text);
  return {
    ...(stopped
      ? { stopped: `${stopped[1]} ${stopped[2]} of transaction ${stopped[3]}, time ${pgTimeToIso(stopped[4])}` }
      : stoppedLsn
        ? { stopped: `after WAL location ${stoppedLsn[1]}` }
        : {}),
    ...(stopped && stopped[1] === 'before' ? { stoppedBeforeTime: pgTimeToIso(stopped[4]) } : {}),
    ...(last ? { lastTransaction: pgTimeToIso(last[1]) } : {}),
    walSegmentsRestored: (text.match(/restored log file "[0-9A-F]{24}" from archive/g) ?? []).length,
    ready: /database system is ready to accept connections/.test(text),
    ...(fatal ? { fatal: fatal[1].trim() } : {}),
  };
}

/**
 * Whether the recovery stopped where it was asked to: for a time, at the first commit after the target, with the last
 * replayed transaction at or before it; for an LSN, at that position. The reason when it did not.
 */
export function recoveryProblem(outcome: RecoveryOutcome, target: RecoveryTarget): string | undefined {
  if (!outcome.stopped)
    return 'the server promoted without saying where recovery stopped (no "recovery stopping" line in its log)';
  if (target.type === 'lsn') return outcome.stopped.includes(target.lsn) ? undefined : `it stopped ${outcome.stopped}`;
  const at = toMicros(target.time);
  if (outcome.stoppedBeforeTime && toMicros(outcome.stoppedBeforeTime) <= at)
    return `it stopped before a commit at ${outcome.stoppedBeforeTime}, not after ${target.time}`;
  if (outcome.lastTransaction && toMicros(outcome.lastTransaction) > at)
    return `its last replayed transaction is at ${outcome.lastTransaction}, after ${target.time}`;
  return undefined;
}

/**
 * The invalid-page reports of a recovery (`page 12 of relation base/16384/16390 does not exist`) that concern the
 * restored database (`base/<its oid>/`, or `pg_tblspc/<spc>/PG_…/<its oid>/` for its relations in a tablespace) or
 * the shared catalogs (`global/`): the ones that are not the zeroed files of excluded databases.
 */
export function invalidPagesOutside(log: string, databaseOid: string): string[] {
  return [...log.matchAll(/page \d+ of relation (\S+) (?:does not exist|is uninitialized|was uninitialized)/g)]
    .filter(
      (m) =>
        m[1]!.startsWith(`base/${databaseOid}/`) ||
        m[1]!.startsWith('global/') ||
        // A relation of the restored database in a tablespace: pg_tblspc/<tablespace>/PG_<version>/<database>/...
        new RegExp(`^pg_tblspc/\\d+/[^/]+/${databaseOid}/`).test(m[1]!),
    )
    .map((m) => m[0]);
}

/** The previous WAL segment's name (same timeline), or undefined at the very first. */
export function previousWalSegment(segment: string): string | undefined {
  const timeline = segment.slice(0, 8);
  let log = parseInt(segment.slice(8, 16), 16);
  let seg = parseInt(segment.slice(16, 24), 16);
  if (seg > 0) seg -= 1;
  else if (log > 0) {
    log -= 1;
    seg = 0xff;
  } else return undefined;
  const hex = (n: number) => n.toString(16).toUpperCase().padStart(8, '0');
  return `${timeline}${hex(log)}${hex(seg)}`;
}

// ---------------------------------------------------------------------------------------------------------------
// the host side: processes and directories

/** This host's id and the task queue only its workers poll (set by the worker: workers/worker.ts). */
export interface ScratchHost {
  id: string;
  taskQueue: string;
}

export function hostIdFrom(env: NodeJS.ProcessEnv = process.env): string {
  return (env.TENANT_RESTORE_HOST_ID || hostname()).replace(/[^A-Za-z0-9_.-]/g, '-');
}

export function hostTaskQueue(taskQueue: string, hostId: string): string {
  return `${taskQueue}@${hostId}`;
}

/**
 * This host's scratch area: TENANT_RESTORE_SCRATCH_DIR, or a folder of this user's own under the temporary directory
 * (its uid in the name, so that another local user cannot take the name first and deny it).
 */
export function scratchBase(env: NodeJS.ProcessEnv = process.env): string {
  return resolve(env.TENANT_RESTORE_SCRATCH_DIR || join(tmpdir(), `tenant-restore-scratch-${process.getuid?.() ?? 0}`));
}

/** Thrown when a path would leave the scratch area: no directory is removed, created or chowned outside it. */
export function underBase(base: string, path: string): string {
  const resolved = resolve(path);
  if (!resolved.startsWith(`${base}${sep}`))
    throw ApplicationFailure.nonRetryable(`${resolved} is not inside the scratch area ${base}`, 'InvalidInput');
  return resolved;
}

/**
 * A restore's (or a discover's) directories on this host. The names are digests of the kind, host and id, never the
 * id itself: no input reaches a path. The socket directory is short: a unix socket path holds 107 bytes.
 */
export function scratchPaths(
  id: string,
  hostId: string,
  env: NodeJS.ProcessEnv = process.env,
  kind: ScratchKind = 'restore',
) {
  const base = scratchBase(env);
  const digest = createHash('sha256').update(`${kind}:${hostId}/${id}`).digest('hex');
  const root = underBase(base, join(base, `${kind}-${digest.slice(0, 24)}`));
  return {
    base,
    root,
    dataDir: join(root, 'data'),
    logFile: join(root, 'postgres.log'),
    marker: join(root, 'tenant-restore.json'),
    hbaFile: join(root, 'pg_hba.conf'),
    /** Tablespaces of the source cluster are mapped here (never to their production paths), and removed with root. */
    tablespaces: join(root, 'tablespaces'),
    socketDir: underBase(base, join(base, `s-${digest.slice(0, 12)}`)),
  };
}

/**
 * The mode the scratch area has: 0700, so that no other local user can list it, plant a directory in it or swap a
 * socket directory for their own. A root worker runs PostgreSQL as 'postgres', which must pass through it to its own
 * directories (0700, its own): 0711 then, still neither listable nor writable by anyone else.
 */
function scratchBaseMode(): number {
  return runAsUser() ? 0o711 : 0o700;
}

/**
 * Creates the scratch area, or checks the one there: a directory (not a symlink), owned by this worker's user, with
 * no permission beyond scratchBaseMode. Refused otherwise: on a shared temporary directory a local user could put
 * their own PostgreSQL there and have its rows restored and validated.
 */
export async function ensureScratchBase(base: string): Promise<void> {
  const mode = scratchBaseMode();
  const uid = process.getuid?.();
  await mkdir(dirname(base), { recursive: true });
  try {
    await mkdir(base, { mode });
    await chmod(base, mode);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
  }
  const stat = await lstat(base);
  const problems = [
    ...(stat.isSymbolicLink() ? ['it is a symbolic link'] : !stat.isDirectory() ? ['it is not a directory'] : []),
    ...(uid !== undefined && stat.uid !== uid ? [`it is owned by uid ${stat.uid}, not this worker's uid ${uid}`] : []),
    ...((stat.mode & 0o777 & ~mode) !== 0
      ? [`its mode is ${(stat.mode & 0o777).toString(8)}, wider than ${mode.toString(8)}`]
      : []),
  ];
  if (problems.length)
    throw ApplicationFailure.nonRetryable(
      `The scratch area ${base} cannot be trusted: ${problems.join('; ')}. Another local user could have put their own data there. Remove it, or set TENANT_RESTORE_SCRATCH_DIR to a directory of the worker's own (mode ${mode.toString(8)}; systemd: StateDirectory=).`,
      'ScratchAreaUntrusted',
    );
}

/** PostgreSQL and pgBackRest refuse to run as root: as root they run as the 'postgres' user. */
function runAsUser(): string | undefined {
  return process.getuid?.() === 0 ? 'postgres' : undefined;
}

export function postgresBin(): string {
  const base = '/usr/lib/postgresql';
  for (const v of ['15', '16', '17', '14', '13'])
    if (existsSync(join(base, v, 'bin', 'pg_ctl'))) return join(base, v, 'bin');
  return '';
}

function commandFor(binary: string, args: string[]): { command: string; args: string[] } {
  const user = runAsUser();
  return user ? { command: 'runuser', args: ['-u', user, '--', binary, ...args] } : { command: binary, args };
}

export async function pgbackrestCommand(args: string[], signal: AbortSignal, wantStdout = false): Promise<string> {
  const { command, args: full } = commandFor('pgbackrest', args);
  return runTool(command, full, process.env, signal, wantStdout);
}

/** Hands a directory of the scratch area (never anything outside it) to the server's user. */
export async function ownForServer(base: string, path: string): Promise<void> {
  const user = runAsUser();
  if (user) spawnSync('chown', ['-R', user, underBase(base, path)]);
}

const pgCtl = () => join(postgresBin(), 'pg_ctl');

/** Stops a server left in `dataDir` (an earlier attempt's, or the one being dropped). Quietly nothing if none runs. */
function stopServer(dataDir: string, mode: 'fast' | 'immediate'): void {
  if (!existsSync(join(dataDir, 'postmaster.pid'))) return;
  // `pg_ctl stop` only reads the pid file and signals: no shell is involved (unlike `pg_ctl start`).
  const { command, args } = commandFor(pgCtl(), ['-D', dataDir, 'stop', '-m', mode, '-w', '-t', '60']);
  spawnSync(command, args, { stdio: 'ignore', env: serverEnvironment() });
}

/**
 * The recovered server's environment: almost nothing of the worker's. Its processes, and any superuser session on it
 * (`pg_read_file('/proc/self/environ')`), must not find the workers' database URLs or AWS keys. It keeps pgBackRest's
 * own variables (PGBACKREST_*), which its restore_command needs to fetch WAL: keep the repository's secrets in the file
 * PGBACKREST_CONFIG names (readable by the server's user anyway), not in PGBACKREST_REPO1_S3_KEY_SECRET.
 */
export function serverEnvironment(env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const pgbackrest = Object.fromEntries(Object.entries(env).filter(([name]) => name.startsWith('PGBACKREST_')));
  return { PATH: '/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin', LANG: 'C', LC_ALL: 'C', ...pgbackrest };
}

interface Marker {
  restoreId: string;
  kind?: ScratchKind;
  target: RecoveryTarget;
  stanza: string;
}

/**
 * Settings for a short-lived, read-mostly server that nobody else connects to: durability off, archiving off, and
 * inert: no replication, no subscription of production's started, no library of production's preloaded, no command
 * of production's configuration run. Given as `-c` arguments, which take precedence over the configuration files the
 * backup brought (postgresql.auto.conf holds whatever production set with ALTER SYSTEM).
 */
export function serverArguments(
  port: number,
  paths: { dataDir: string; socketDir: string; hbaFile: string },
): string[] {
  const settings = [
    `port=${port}`,
    `listen_addresses=`,
    `unix_socket_directories=${paths.socketDir}`,
    `unix_socket_permissions=0700`,
    `hba_file=${paths.hbaFile}`,
    'archive_mode=off',
    'hot_standby=off',
    'fsync=off',
    'synchronous_commit=off',
    'full_page_writes=off',
    'max_connections=200',
    'max_locks_per_transaction=256',
    'shared_buffers=256MB',
    'max_wal_size=4GB',
    'max_wal_senders=0',
    // pg_subscription is a shared catalog: without this, the restored database's enabled subscriptions would start
    // their apply workers after promotion, connect to production's publisher with its stored connection string, take
    // the real subscriber's slot and keep changing scratch after its recovery was verified.
    'max_logical_replication_workers=0',
    'shared_preload_libraries=',
    'session_preload_libraries=',
    'local_preload_libraries=',
    'recovery_end_command=',
    'archive_cleanup_command=',
    // --db-include restores the other databases of the cluster as zeroed files, and replaying WAL of theirs that
    // carries no full-page image (VACUUM's visibility records, say) would PANIC on them. Checked after: pages of the
    // restored database itself must not be among those ignored (invalidPagesOutside).
    'ignore_invalid_pages=on',
    'lc_messages=C',
    'logging_collector=off',
    'log_min_messages=info',
  ];
  return ['-D', paths.dataDir, ...settings.flatMap((setting) => ['-c', setting])];
}

export interface PreparePointInTimeInput {
  restoreId: string;
  /** Which command's scratch (default restore): a discover and a restore with one id get two. */
  kind?: ScratchKind;
  stanza: string;
  target: RecoveryTarget;
  /** The database to read from the recovered cluster; default: live's database name. */
  database?: string;
  live: DatabaseRef;
}

/** The activity's own check of its input: what becomes a path, a process argument or a connection. */
const preparePointInTimeInput = z.strictObject({
  restoreId: operationId('a restore or discover id'),
  kind: scratchKind.optional(),
  stanza: stanzaName,
  target: recoveryTarget,
  database: databaseNameSchema.optional(),
  live: databaseRef,
});

function refuseActivityInput(activity: string) {
  return (problems: string[], fields: string[]) =>
    invalidInput(`${activity} refused its input: ${problems.join('; ')}`, fields);
}

const stopPointInTimeInput = z.object({
  restoreId: operationId('a restore or discover id'),
  kind: scratchKind.optional(),
});

/**
 * Starts the recovered PostgreSQL as a process of its own (detached: it outlives an attempt, as a recovery may be
 * long), from an argument list: no shell reads any of it (`pg_ctl start` runs the postmaster through /bin/sh). Its
 * output goes to the log file that recovery is verified from, and its environment is serverEnvironment's.
 */
function startServer(paths: ReturnType<typeof scratchPaths>): { exited: () => string | undefined } {
  const log = openSync(paths.logFile, 'a', 0o600);
  let exited: string | undefined;
  try {
    const { command, args } = commandFor(join(postgresBin(), 'postgres'), serverArguments(scratchPort, paths));
    const child = spawn(command, args, { detached: true, stdio: ['ignore', log, log], env: serverEnvironment() });
    child.on(
      'exit',
      (code, signal) => (exited = `the server stopped during recovery (${signal ?? `exit code ${code}`})`),
    );
    child.on('error', (error) => (exited = `the server could not be started: ${error.message}`));
    child.unref();
  } finally {
    closeSync(log);
  }
  return { exited: () => exited };
}

/** The port names the socket file only (no TCP): any fixed number works. */
export const scratchPort = 5432;

/** `pgbackrest info`, and the newest commit in the last archived segments (pg_waldump), for the range check. */
export async function archiveRange(stanza: string, signal: AbortSignal): Promise<ArchiveRange> {
  const json = await pgbackrestCommand([`--stanza=${stanza}`, 'info', '--output=json'], signal, true);
  const range = archiveRangeFromInfo(json, stanza);
  if (!range.to) return range;
  // Unread (no pg_waldump here, say), the end is left to the recovery itself, which refuses a target beyond it.
  const lastCommit = await newestArchivedCommit(stanza, range.to.walSegment, signal).catch(() => undefined);
  return lastCommit ? { ...range, to: { ...range.to, lastCommit } } : range;
}

/** The newest COMMIT record's time among the last few archived segments (a segment after a switch may hold none). */
async function newestArchivedCommit(stanza: string, max: string, signal: AbortSignal): Promise<string | undefined> {
  // Its own directory in the private scratch area, 0700 and the server user's (archive-get runs as that user): no
  // other local user can plant a symlink named after the segment it fetches.
  const base = scratchBase();
  await ensureScratchBase(base);
  const workDir = underBase(base, join(base, `wal-${process.pid}-${Date.now()}`));
  await mkdir(workDir, { mode: 0o700 });
  await ownForServer(base, workDir);
  try {
    let segment: string | undefined = max;
    for (let i = 0; i < 4 && segment; i += 1, segment = previousWalSegment(segment)) {
      const file = join(workDir, segment);
      await pgbackrestCommand([`--stanza=${stanza}`, 'archive-get', segment, file], signal).catch(() => undefined);
      if (!existsSync(file)) continue;
      // pg_waldump stops with an error at the end of a switched segment; what it printed before is what we need.
      const dump = spawnSync(join(postgresBin(), 'pg_waldump'), [file], { encoding: 'utf8', maxBuffer: 1 << 28 });
      const commits = [...(dump.stdout ?? '').matchAll(/COMMIT (\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(?:\.\d+)? \w+)/g)];
      if (commits.length) {
        const text = commits.at(-1)![1].replace(/ UTC$/, '+00');
        return pgTimeToIso(text);
      }
    }
    return undefined;
  } finally {
    await rm(workDir, { recursive: true, force: true });
  }
}

export function createPointInTimeActivities({ pools, host }: { pools: Pools; host?: ScratchHost }) {
  return {
    /** The range a stanza can recover, for `start` to check --at against before anything runs. */
    async pointInTimeRange(input: { stanza: string }): Promise<ArchiveRange> {
      return archiveRange(input.stanza, cancellationSignal());
    },

    /**
     * Recovers the stanza to the target into this host's scratch directory for the restore, starts it, waits for the
     * promotion and checks where recovery stopped. Non-retryable refusals: a target outside the archive, a recovery
     * that ended before the target, a recovery that stopped elsewhere. An earlier attempt's server and directory on
     * this host are stopped and removed first.
     */
    async preparePointInTimeScratch(raw: PreparePointInTimeInput): Promise<ScratchInfo> {
      const input = checkInput(preparePointInTimeInput, raw, refuseActivityInput('preparePointInTimeScratch'));
      if (!host) throw new Error('this worker has no scratch host task queue (workers/worker.ts sets one)');
      const started = Date.now();
      const signal = cancellationSignal();
      const kind = input.kind ?? 'restore';
      const paths = scratchPaths(input.restoreId, host.id, process.env, kind);
      const database = input.database ?? databaseName(resolveConnectionString(input.live));
      let phase = 'checking the archive';
      let serverStarted = false;
      let segments = 0;
      const beat = setInterval(() => heartbeat({ phase, walSegmentsRestored: segments }), 2000);
      try {
        const range = await archiveRange(input.stanza, signal);
        const outside = targetOutsideRange(range, input.target);
        if (outside)
          throw ApplicationFailure.nonRetryable(`Cannot recover to --at: ${outside}`, 'PointInTimeOutOfRange');

        phase = 'restoring the base backup';
        await ensureScratchBase(paths.base);
        stopServer(paths.dataDir, 'immediate');
        await rm(paths.root, { recursive: true, force: true });
        await rm(paths.socketDir, { recursive: true, force: true });
        await mkdir(paths.root, { mode: 0o700 });
        await mkdir(paths.dataDir, { mode: 0o700 });
        await mkdir(paths.tablespaces, { mode: 0o700 });
        await mkdir(paths.socketDir, { mode: 0o700 });
        await writeFile(
          paths.marker,
          JSON.stringify({
            restoreId: input.restoreId,
            kind,
            target: input.target,
            stanza: input.stanza,
          } satisfies Marker),
        );
        await ownForServer(paths.base, paths.root);
        await ownForServer(paths.base, paths.socketDir);
        const targetArgs =
          input.target.type === 'time'
            ? ['--type=time', `--target=${pgbackrestTime(input.target.time)}`]
            : ['--type=lsn', `--target=${input.target.lsn}`];
        await pgbackrestCommand(
          [
            `--stanza=${input.stanza}`,
            `--pg1-path=${paths.dataDir}`,
            ...targetArgs,
            '--target-action=promote',
            '--archive-mode=off',
            // Tablespaces go under this scratch's directory, never back to the production paths the backup names.
            `--tablespace-map-all=${paths.tablespaces}`,
            // Only the restored database's files (and the system ones): the others in a shared cluster stay sparse.
            `--db-include=${database}`,
            '--process-max=2',
            'restore',
          ],
          signal,
        ).catch((error: Error) => {
          // Only a network or storage hiccup is worth another attempt; a refusal (an option, a backup set, the
          // repository's contents) would be refused again.
          if (/connect|timed? ?out|network|resolve|TLS|SSL|temporarily/i.test(error.message)) throw error;
          const missing = /database to include '.*' does not exist/.test(error.message)
            ? ` The database '${database}' is not in the base backup pgBackRest picked for that moment (the newest that ended before it): it was created after that backup. Choose a later --at, or name the database: --backup pgbackrest:${input.stanza}/<database>.`
            : '';
          throw ApplicationFailure.nonRetryable(
            `pgbackrest restore of stanza '${input.stanza}' failed: ${error.message}${missing}`,
            'PointInTimeRecoveryFailed',
          );
        });

        phase = 'recovering to the target';
        // Production clusters often keep pg_hba.conf and postgresql.conf outside the data directory (Debian): ours.
        await writeFile(paths.hbaFile, 'local all all trust\n');
        if (!existsSync(join(paths.dataDir, 'postgresql.conf')))
          await writeFile(join(paths.dataDir, 'postgresql.conf'), '');
        await ownForServer(paths.base, paths.root);
        const server = startServer(paths);
        serverStarted = true;

        let outcome: RecoveryOutcome = { walSegmentsRestored: 0, ready: false };
        for (;;) {
          if (signal.aborted) throw signal.reason ?? new Error('cancelled');
          await new Promise((resolve) => setTimeout(resolve, 500));
          const text = await readFile(paths.logFile, 'utf8').catch(() => '');
          outcome = parseRecoveryLog(text);
          segments = outcome.walSegmentsRestored;
          if (outcome.ready) break;
          if (outcome.fatal || server.exited()) {
            const why = outcome.fatal ?? server.exited() ?? 'the server stopped during recovery';
            // "recovery ended before configured recovery target was reached": the archive does not reach the target.
            const beyond = /recovery ended before configured recovery target/.test(why);
            throw ApplicationFailure.nonRetryable(
              beyond
                ? `Cannot recover to ${describeTarget(input.target)}: the WAL archive of stanza '${input.stanza}' ends before it (${why}). Archive the WAL up to that moment (SELECT pg_switch_wal() on the source, or wait for its archive_timeout) or choose an earlier --at.`
                : `Point-in-time recovery of stanza '${input.stanza}' failed: ${why}. See ${paths.logFile} on host ${host.id}.`,
              beyond ? 'PointInTimeOutOfRange' : 'PointInTimeRecoveryFailed',
            );
          }
        }
        const problem = recoveryProblem(outcome, input.target);
        if (problem)
          throw ApplicationFailure.nonRetryable(
            `Recovery to ${describeTarget(input.target)} is not verified: ${problem}. See ${paths.logFile} on host ${host.id}.`,
            'PointInTimeRecoveryFailed',
          );

        phase = 'checking the recovered database';
        const url = `postgresql://${encodeURIComponent(process.env.TENANT_RESTORE_PITR_USER || 'postgres')}@localhost:${scratchPort}/${encodeURIComponent(database)}?host=${encodeURIComponent(paths.socketDir)}`;
        const pool = pools.get(url, { max: 1 });
        const { rows } = await pool.query<{ recovering: boolean; oid: string; replicationWorkers: string }>(
          `SELECT pg_is_in_recovery() AS recovering, (SELECT oid::text FROM pg_database WHERE datname = current_database()) AS oid,
                  (SELECT count(*) FROM pg_stat_activity
                    WHERE backend_type IN ('logical replication launcher', 'logical replication worker'))::text
                    AS "replicationWorkers"`,
        );
        if (rows[0].recovering)
          throw new Error('the recovered server is still in recovery after saying it accepts connections');
        await pools.close(url);
        if (rows[0].replicationWorkers !== '0')
          throw ApplicationFailure.nonRetryable(
            `The recovered server runs ${rows[0].replicationWorkers} logical replication process(es): it must be inert (it could take production's replication slot). See ${paths.logFile} on host ${host.id}.`,
            'PointInTimeRecoveryFailed',
          );
        // ignore_invalid_pages lets replay pass over the databases --db-include left as zeroed files; a page of this
        // database or of the shared catalogs among them would be real damage.
        const damaged = invalidPagesOutside(await readFile(paths.logFile, 'utf8'), rows[0].oid);
        if (damaged.length)
          throw ApplicationFailure.nonRetryable(
            `Recovery of '${database}' replayed WAL onto pages it does not have (${damaged.slice(0, 3).join('; ')}): the base backup or the archive is damaged for this database. See ${paths.logFile} on host ${host.id}.`,
            'PointInTimeRecoveryFailed',
          );
        const recoveredTo = outcome.lastTransaction;
        return {
          ref: url,
          owned: true,
          reused: false,
          backup: `pgbackrest:${input.stanza} at ${describeTarget(input.target)}`,
          durationMs: Date.now() - started,
          pointInTime: {
            stanza: input.stanza,
            target: input.target,
            database,
            stopped: outcome.stopped,
            ...(recoveredTo ? { lastTransaction: recoveredTo } : {}),
            ...(recoveredTo && input.target.type === 'time'
              ? { gapMs: (toMicros(input.target.time) - toMicros(recoveredTo)) / 1000 }
              : {}),
            walSegmentsRestored: outcome.walSegmentsRestored,
            host: host.id,
            taskQueue: host.taskQueue,
            dataDir: paths.dataDir,
          },
        };
      } catch (error) {
        // A server that failed its checks is stopped (a server left running would hold memory on the host until
        // someone noticed); its directory and log stay for a look, until a retry of this restore on this host.
        if (serverStarted) stopServer(paths.dataDir, 'fast');
        throw error;
      } finally {
        clearInterval(beat);
      }
    },

    /**
     * Stops this restore's point-in-time scratch server and removes its directory: only on its own host (this runs on
     * the host's task queue), and only a directory whose marker names this restore.
     */
    async stopPointInTimeScratch(input: {
      restoreId: string;
      kind?: ScratchKind;
      scratch: ScratchInfo;
    }): Promise<{ dropped: boolean; reason?: string }> {
      checkInput(stopPointInTimeInput, input, refuseActivityInput('stopPointInTimeScratch'));
      const pit = input.scratch.pointInTime;
      if (!pit || !input.scratch.owned)
        return { dropped: false, reason: 'not a point-in-time scratch of this restore' };
      if (!host || host.id !== pit.host) return { dropped: false, reason: `this worker is not on host ${pit.host}` };
      const kind = input.kind ?? 'restore';
      const paths = scratchPaths(input.restoreId, host.id, process.env, kind);
      const marker = await readFile(paths.marker, 'utf8')
        .then((t) => JSON.parse(t) as Marker)
        .catch(() => undefined);
      if (!marker) return { dropped: false, reason: 'already gone' };
      if (marker.restoreId !== input.restoreId || (marker.kind ?? 'restore') !== kind)
        return { dropped: false, reason: `its marker names ${marker.kind ?? 'restore'} '${marker.restoreId}'` };
      await pools.close(input.scratch.ref);
      stopServer(paths.dataDir, 'fast');
      await rm(paths.root, { recursive: true, force: true });
      await rm(paths.socketDir, { recursive: true, force: true });
      return { dropped: true };
    },
  };
}
