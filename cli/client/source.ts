/**
 * Where a restore (or a discover) reads the backup side from: one grammar for --backup, --backup-prefix, --at,
 * --from/--to, --scratch and --scratch-server, turned into the `RestoreSource` the workflows take, together with what
 * every source shares (live, the tenant root, the config, the artifacts folder). Checks needing no service only; a bad
 * flag is a UsageError naming it (exit 2). `--at`, `--from` and `--to` are parsed here, once, by `momentFromFlag`.
 */
import type { RestoreConfig } from '../../activities/restore-types';
import { idPattern } from '../../activities/input-contract';
import { lsnValue, parseRecoveryTarget, type RecoveryTarget } from '../../activities/point-in-time';
import { formatS3Url, parseS3Prefix, parseS3Url, S3UrlError } from '../../activities/s3';
import { scratchRiskFlag } from '../../activities/scratch-server';
import type { ArtifactsRef, BulkRestoreInput, RestoreSource } from '../../workflows/definitions';
import { checkDatabaseRef, checkTenantRoot, loadConfigFlag, UsageError } from './input';
import { scratchOnLiveWarning, scratchServerFromFlags, unsafeScratchFromFlags } from './scratch-placement';

/** The flags `start` and `discover` share: where the backup is, live, the tenant root, config, id and artifacts. */
export interface SourceFlags {
  backup?: string;
  'backup-prefix'?: string;
  at?: string;
  /** The incident window, with --backup pgbackrest:<stanza>: T0 (just before it) and T1 (just after it). */
  from?: string;
  to?: string;
  'scratch-server'?: string;
  scratch?: string;
  live?: string;
  'tenant-root'?: string;
  config?: string;
  id?: string;
  artifacts?: string;
  'allow-unverified-backup'?: boolean;
  'unsafe-scratch-on-live-server'?: boolean;
  'unsafe-scratch-as-live-role'?: boolean;
  'unsafe-scratch-as-superuser'?: boolean;
}

/** What the source flags give a workflow input, and the warnings the operator must see before trusting the run. */
export type SourceFromFlags = Pick<
  BulkRestoreInput,
  'source' | 'live' | 'tenantRoot' | 'config' | 'artifacts' | 'allowUnverifiedBackup' | 'unsafeScratch'
> & { source: RestoreSource; warnings: string[] };

export function isPointInTime(backup: string | undefined): boolean {
  return !!backup?.startsWith('pgbackrest:');
}

/** `--from/--to` with anything but a WAL archive: a dump or a given scratch holds one moment only. */
export function refuseWindowWithoutArchive(flags: SourceFlags): void {
  if (isPointInTime(flags.backup) || (flags.from === undefined && flags.to === undefined)) return;
  throw new UsageError(
    '--from/--to (the incident window) need a WAL archive: --backup pgbackrest:<stanza>[/<database>]. A pg_dump archive holds one moment only; without an archive, restore from a dump and let --allow-partial=<n> say back how many partial tenants get their missing rows (deletions of their own users since the backup included).',
  );
}

/**
 * The checks `start` and `discover` share, needing no service: the source (--backup or --scratch), live, the tenant
 * root, the config, the id (given: `flags.id`) and the artifacts folder `<base><id>/`. Throws UsageError naming the flag.
 * --backup-prefix is resolved before this (backup-prefix.ts), into --backup.
 */
export function sourceFromFlags(
  flags: SourceFlags & { id: string },
  env: NodeJS.ProcessEnv = process.env,
): SourceFromFlags {
  refuseWindowWithoutArchive(flags);
  if (flags.backup && flags.scratch) throw new UsageError('give either --backup or --scratch, not both.');
  if (!flags.backup && !flags.scratch)
    throw new UsageError(
      'missing --backup s3://<bucket>/<key> (or --backup-prefix s3://<bucket>/<prefix>/ [--at <time>], or --scratch <url> for a database already restored).',
    );
  if (flags['scratch-server'] && !flags.backup) throw new UsageError('--scratch-server only goes with --backup.');
  if (flags['allow-unverified-backup'] && !flags.backup)
    throw new UsageError('--allow-unverified-backup only goes with --backup.');
  const unsafeScratch = unsafeScratchFromFlags(flags);
  if (unsafeScratch.length && !flags.backup)
    throw new UsageError(
      `${scratchRiskFlag[unsafeScratch[0]!]} only goes with --backup (a pg_dump archive loaded into scratch).`,
    );
  if (!flags.live) throw new UsageError('missing --live <url|alias>.');
  if (!flags['tenant-root']) throw new UsageError('missing --tenant-root <schema.table>.');
  const tenantRoot = checkTenantRoot(flags['tenant-root']);

  let source: RestoreSource;
  let live: string;
  let backup: string | undefined;
  if (isPointInTime(flags.backup)) {
    source = pointInTimeFromFlags({ ...flags, backup: flags.backup! });
    live = checkDatabaseRef('live', flags.live);
  } else {
    if (flags.backup) backup = backupUrlFromFlag(flags.backup);
    live = checkDatabaseRef('live', flags.live);
    source = backup
      ? {
          kind: 'backup',
          backup,
          scratchServer: scratchServerFromFlags('scratch-server', flags['scratch-server'], live, unsafeScratch, env),
        }
      : { kind: 'scratch', scratch: checkDatabaseRef('scratch', flags.scratch!) };
  }
  // Validated by the config schema (activities/config.ts), which also refuses credentials in webhook URLs.
  const config: RestoreConfig | undefined = flags.config ? loadConfigFlag(flags.config) : undefined;
  const artifacts = artifactsFromFlags(flags, env, backup);
  const warnings = [scratchOnLiveWarning({ source, live })].filter((w): w is string => !!w);
  return {
    source,
    live,
    tenantRoot,
    config,
    artifacts,
    ...(flags['allow-unverified-backup'] ? { allowUnverifiedBackup: true } : {}),
    ...(unsafeScratch.length ? { unsafeScratch } : {}),
    warnings,
  };
}

/** `--backup s3://<bucket>/<key>`, in its one canonical spelling. */
function backupUrlFromFlag(backup: string): string {
  try {
    return formatS3Url(parseS3Url(backup));
  } catch (error) {
    if (error instanceof S3UrlError) throw new UsageError(`--backup: ${error.message}`);
    throw error;
  }
}

/**
 * The id, then the artifacts folder `<base><id>/`: --artifacts, else TENANT_RESTORE_ARTIFACTS, else `restores/` in the
 * bucket of a pg_dump backup.
 */
function artifactsFromFlags(
  flags: SourceFlags & { id: string },
  env: NodeJS.ProcessEnv,
  backup?: string,
): ArtifactsRef {
  if (!idPattern.test(flags.id))
    throw new UsageError(`--id '${flags.id}': letters, digits, '.', '_' and '-', at most 63 characters.`);
  const artifactsUrl =
    flags.artifacts ??
    env.TENANT_RESTORE_ARTIFACTS ??
    (backup ? `s3://${parseS3Url(backup).bucket}/restores/` : undefined);
  if (!artifactsUrl)
    throw new UsageError(
      'where should the plan and report go? Give --artifacts s3://<bucket>/<prefix>/ or set TENANT_RESTORE_ARTIFACTS.',
    );
  try {
    const { bucket, prefix } = parseS3Prefix(artifactsUrl);
    return { bucket, prefix: `${prefix && !prefix.endsWith('/') ? `${prefix}/` : prefix}${flags.id}/` };
  } catch (error) {
    throw new UsageError(`--artifacts: ${(error as Error).message}`);
  }
}

/**
 * `--backup pgbackrest:<stanza>[/<database>] --at <RFC 3339 time | LSN>` (or `--from <T0> --to <T1>`): scratch
 * recovered to that moment from the stanza's WAL archive, on a worker's host (activities/point-in-time/). The
 * database defaults to live's.
 */
function pointInTimeFromFlags(flags: SourceFlags & { backup: string }, now = new Date()): RestoreSource {
  const match = /^pgbackrest:([A-Za-z0-9_.-]+)(?:\/([A-Za-z0-9_$-]+))?$/.exec(flags.backup);
  if (!match)
    throw new UsageError(
      `--backup '${flags.backup}': a WAL archive is named pgbackrest:<stanza> or pgbackrest:<stanza>/<database> (the database to restore from; default: live's).`,
    );
  for (const other of [
    'backup-prefix',
    'scratch',
    'scratch-server',
    'allow-unverified-backup',
    'unsafe-scratch-on-live-server',
    'unsafe-scratch-as-live-role',
    'unsafe-scratch-as-superuser',
  ] as const)
    if (flags[other]) throw new UsageError(`--${other} does not go with --backup pgbackrest:<stanza>.`);
  const window = flags.from !== undefined || flags.to !== undefined;
  if (window && flags.at !== undefined)
    throw new UsageError(
      '--at and --from/--to both say where to recover to: give --at <moment> (the backup side at one moment, compared with live), or --from <T0> --to <T1> (the incident window: exactly what changed between them is reverted).',
    );
  if (window && (flags.from === undefined || flags.to === undefined))
    throw new UsageError(
      `the incident window needs both ends: --from <T0> (just before the incident) and --to <T1> (just after it), each an RFC 3339 time with its zone or an LSN. 'tenant-restore when' finds them.`,
    );
  if (!window && flags.at === undefined)
    throw new UsageError(
      `--backup ${flags.backup} recovers to a moment: give --at <RFC 3339 time with its zone> (the moment just before the incident, e.g. 2026-12-02T07:03:00Z) or --at <LSN> (e.g. 0/3A000060); or an incident window, --from <T0> --to <T1>.`,
    );
  const moment = (flag: 'at' | 'from' | 'to', text: string): RecoveryTarget =>
    momentFromFlag(flag, text, now, 'give the moment of the incident');
  const target = window ? moment('from', flags.from!) : moment('at', flags.at!);
  const until = window ? moment('to', flags.to!) : undefined;
  if (until && !before(target, until))
    throw new UsageError(
      `--from ${flags.from} is not before --to ${flags.to}: T0 is the moment just before the incident, T1 the moment just after it${target.type !== until.type ? ' (give both as times, or both as LSNs, so that they can be compared)' : ''}.`,
    );
  return {
    kind: 'point-in-time',
    stanza: match[1],
    target,
    ...(until ? { until } : {}),
    ...(match[2] ? { database: match[2] } : {}),
  };
}

/**
 * A moment of the WAL archive given by `--<flag>` (`--at`, `--from`, `--to`, when's `--since`): an RFC 3339 time with
 * its zone or an LSN (parseRecoveryTarget), not in the future (`hint` says what to give instead).
 */
export function momentFromFlag(flag: string, text: string, now: Date, hint: string): RecoveryTarget {
  const target = parseRecoveryTarget(text);
  if (!target)
    throw new UsageError(
      `--${flag} '${text}' is neither an RFC 3339 time with its zone (2026-12-02T07:03:00Z) nor a WAL position (0/3A000060).`,
    );
  if (target.type === 'time' && Date.parse(target.time) > now.getTime())
    throw new UsageError(`--${flag} ${target.time} is in the future: ${hint} (it is now ${now.toISOString()}).`);
  return target;
}

/**
 * `--at` with --backup-prefix: a time only (an archive's createdAt is a time, not a WAL position), RFC 3339 with its
 * offset (2026-12-02T07:03:00Z, 2026-12-02T08:03:00+01:00): a time without a zone is ambiguous. Not in the future.
 */
export function instantFromFlag(text: string, now: Date): Date {
  if (
    !/^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})$/i.test(text) ||
    Number.isNaN(Date.parse(text))
  )
    throw new UsageError(`--at '${text}' is not an RFC 3339 time with its zone, such as 2026-12-02T07:03:00Z.`);
  const at = new Date(text);
  if (at.getTime() > now.getTime())
    throw new UsageError(
      `--at ${at.toISOString()} is in the future: give the moment of the incident (it is now ${now.toISOString()}).`,
    );
  return at;
}

/** T0 comes before T1: both times, or both LSNs (a time and an LSN cannot be compared here). */
function before(a: RecoveryTarget, b: RecoveryTarget): boolean {
  if (a.type === 'time' && b.type === 'time') return Date.parse(a.time) < Date.parse(b.time);
  if (a.type === 'lsn' && b.type === 'lsn') return lsnValue(a.lsn) < lsnValue(b.lsn);
  return false;
}
