/**
 * The host a point-in-time scratch lives on: its id and task queue, the worker's own scratch directory (0700, paths
 * that never leave it), the PostgreSQL and pgBackRest binaries run there, and the private server's environment,
 * arguments and marker.
 */
import { ApplicationFailure } from '@temporalio/common';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, lstat, mkdir } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { dirname, join, resolve, sep } from 'node:path';
import type { RecoveryTarget } from '../restore-types';
import { runTool } from '../tools';
import type { ScratchKind } from '../scratch';

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

export function commandFor(binary: string, args: string[]): { command: string; args: string[] } {
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

export const pgCtl = () => join(postgresBin(), 'pg_ctl');

/** Stops a server left in `dataDir` (an earlier attempt's, or the one being dropped). Quietly nothing if none runs. */
export function stopServer(dataDir: string, mode: 'fast' | 'immediate'): void {
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

export interface Marker {
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
