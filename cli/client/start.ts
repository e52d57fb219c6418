/**
 * Starting a restore: `buildStartRequest` checks the flags completely before anything is written or started (exit
 * code 2), and refuses a database URL that carries a password (invariant I5: workflow inputs never hold a secret);
 * `startRestore` then checks what needs a service, uploads a long tenant list, and starts the workflow.
 */
import type { Client } from '@temporalio/client';
import { WorkflowExecutionAlreadyStartedError, WorkflowNotFoundError } from '@temporalio/client';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  conflictPolicies,
  type ConflictPolicy,
  type RestoreConfig,
  type TenantId,
} from '../../activities/restore-types';
import { age, NoBackupFoundError, pickBackup, type PickedBackup } from '../../activities/backups';
import {
  bulkRestoreInput,
  idPattern,
  windowConflictModes,
  type WindowConflictMode,
} from '../../activities/input-contract';
import {
  archiveRange,
  describeTarget,
  lsnValue,
  parseRecoveryTarget,
  targetOutsideRange,
  type RecoveryTarget,
} from '../../activities/point-in-time';
import { createS3Client, formatS3Url, head, parseS3Prefix, parseS3Url, putJson, S3UrlError } from '../../activities/s3';
import {
  bulkWorkflowId,
  concurrencyRange,
  defaultConcurrency,
  defaultGroupSize,
  defaultUnitRows,
  RestoreIdKey,
  RestoreKindKey,
  RestorePhaseKey,
  TenantsTotalKey,
  type ArtifactsRef,
  type BulkRestoreInput,
  type BulkRestoreResult,
} from '../../workflows/definitions';
import {
  scratchPlacementRefusal,
  scratchRiskFlag,
  scratchRisks,
  scratchServerVariable,
  type ScratchRisk,
} from '../../activities/scratch-server';
import { checkReachable, isNotFound, s3Unavailable, webUiLink } from './connection';
import type { AllowPartial } from './discover';
import {
  checkDatabaseRef,
  checkStartInput,
  checkTenantRoot,
  isPostgresUrl,
  loadConfigFlag,
  parseIntegerFlag,
  parseTenantText,
  taskQueueFrom,
  tenantsFromFlags,
  UsageError,
} from './input';

/** Inline tenant lists longer than this go to S3 first, so the workflow input stays far below the 2 MB payload limit. */
export const inlineTenantLimit = 1000;

export interface StartFlags extends SourceFlags {
  tenants?: string;
  'tenants-file'?: string;
  conflict?: string;
  concurrency?: string;
  'group-size'?: string;
  'unit-rows'?: string;
  'keep-scratch'?: boolean;
  /** '' for the bare flag, else the count of partial tenants said back: see parseAllowPartial. */
  'allow-partial'?: string;
  'task-queue'?: string;
  'children-per-run'?: string;
  'from-discover'?: string;
  /** An incident window's conflicts: refuse (default) or report. */
  conflicts?: string;
}

export interface StartRequest {
  input: BulkRestoreInput;
  taskQueue: string;
  /** Set when the tenant list is too long to go inline: it is uploaded to S3 just before the start. */
  upload?: { bucket: string; key: string; ids: TenantId[] };
  /** Things the operator must see before trusting the run (`start` prints them loudly, and in --json). */
  warnings: string[];
}

/** Host and port of a URL reference, or the alias of an alias reference: what tells two servers apart. */
function serverOf(ref: string): string {
  if (!isPostgresUrl(ref)) return `alias:${ref.split('/')[0]}`;
  const url = new URL(ref);
  return `${decodeURIComponent(url.hostname).toLowerCase()}:${url.port || '5432'}`;
}

/**
 * A scratch loaded from --backup goes to --scratch-server, by default live's own server: the whole backup then loads
 * next to production (its CPU, disk and connections), and live's role needs CREATEDB, which the least-privilege role
 * of scripts/grants.sql does not have. Said loudly, not refused: a small database on a single server may accept it.
 */
export function scratchOnLiveWarning(input: Pick<BulkRestoreInput, 'source' | 'live'>): string | undefined {
  if (input.source.kind !== 'backup') return undefined;
  const scratchServer = input.source.scratchServer ?? input.live;
  if (serverOf(scratchServer) !== serverOf(input.live)) return undefined;
  const how = input.source.scratchServer
    ? '--scratch-server is the same server as --live'
    : 'no --scratch-server was given';
  return `the scratch database will be created on LIVE's server (${how}): the whole backup is loaded next to production, and the role used needs CREATEDB there (the least-privilege live role of scripts/grants.sql has none, so the restore would fail). Put scratch elsewhere with --scratch-server postgres://<scratch role>@<other host>:<port>/postgres, or give --scratch <url> of a database you restored yourself.`;
}

export function newRestoreId(now = new Date()): string {
  const stamp = now.toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
  return `r-${stamp}-${randomBytes(2).toString('hex')}`;
}

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

/** The risks of loading the backup that the operator accepted, one flag each (activities/scratch-server.ts). */
export function unsafeScratchFromFlags(flags: object): ScratchRisk[] {
  const given = flags as Record<string, unknown>;
  return scratchRisks.filter((risk) => given[scratchRiskFlag[risk].slice(2)] === true);
}

/**
 * Where scratch is loaded, from --scratch-server, else the configured default (TENANT_RESTORE_SCRATCH_SERVER), else
 * live's own server, which is refused (exit 2) unless accepted by flag, as is a scratch server on live's host:port or
 * with live's user. The worker checks again on the servers themselves.
 */
export function scratchServerFromFlags(
  flag: string,
  given: string | undefined,
  live: string,
  unsafeScratch: ScratchRisk[],
  env: NodeJS.ProcessEnv,
): string | undefined {
  const configured = env[scratchServerVariable]?.trim();
  const server = given
    ? checkDatabaseRef(flag, given)
    : configured
      ? checkDatabaseRef(`${flag} (from ${scratchServerVariable})`, configured)
      : undefined;
  const refusal = scratchPlacementRefusal(live, server, unsafeScratch, env);
  if (refusal) throw new UsageError(`refused: ${refusal} Nothing was started.`);
  return server;
}

/**
 * `--backup-prefix s3://bucket/prefix/ [--at <time>]`: the newest pg_dump archive under the prefix, or the newest taken
 * before `--at` (the moment of the incident), by its manifest's createdAt (activities/backups.ts). Returns the flags
 * with `backup` set to it, and what was picked, for the operator to see. Without --backup-prefix: the flags as given.
 */
export async function resolveBackupPrefix<T extends SourceFlags>(
  flags: T,
  now = new Date(),
): Promise<{ flags: T; picked?: PickedBackup & { age: string; at?: string } }> {
  const prefix = flags['backup-prefix'];
  // --backup pgbackrest:<stanza> --at: the moment goes to the recovery itself (sourceFromFlags checks it).
  if (isPointInTime(flags.backup)) return { flags };
  refuseWindowWithoutArchive(flags);
  if (flags.at !== undefined && !prefix)
    throw new UsageError(
      '--at needs a source to go back in: --backup pgbackrest:<stanza> (point-in-time recovery from the WAL archive), or --backup-prefix s3://<bucket>/<prefix>/ (the newest pg_dump archive taken before that moment).',
    );
  if (!prefix) return { flags };
  if (flags.backup || flags.scratch) throw new UsageError('give one of --backup, --backup-prefix or --scratch.');
  let at: Date | undefined;
  if (flags.at !== undefined) {
    // RFC 3339 with its offset (2026-12-02T07:03:00Z, 2026-12-02T08:03:00+01:00): a time without a zone is ambiguous.
    if (
      !/^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})$/i.test(flags.at) ||
      Number.isNaN(Date.parse(flags.at))
    )
      throw new UsageError(`--at '${flags.at}' is not an RFC 3339 time with its zone, such as 2026-12-02T07:03:00Z.`);
    at = new Date(flags.at);
    if (at.getTime() > now.getTime())
      throw new UsageError(
        `--at ${at.toISOString()} is in the future: give the moment of the incident (it is now ${now.toISOString()}).`,
      );
  }
  const s3 = createS3Client();
  try {
    const picked = await pickBackup(s3, prefix, at);
    return {
      flags: { ...flags, backup: picked.backup },
      picked: { ...picked, age: age(picked.takenAt, at ?? now), ...(at ? { at: at.toISOString() } : {}) },
    };
  } catch (error) {
    if (error instanceof NoBackupFoundError || error instanceof S3UrlError)
      throw new UsageError(`--backup-prefix: ${error.message}`);
    s3Unavailable(error);
  } finally {
    s3.destroy();
  }
}

/**
 * The flags as the checks that need no service see them before --backup-prefix is resolved: a stand-in archive under
 * the prefix (its bucket is the default artifacts bucket), so that a wrong --live or --id is reported (exit 2) before
 * S3 is listed.
 */
export function withBackupStandIn<T extends SourceFlags>(flags: T): T {
  const prefix = flags['backup-prefix'];
  if (!prefix || flags.backup || flags.scratch) return flags;
  return { ...flags, backup: `${prefix.endsWith('/') ? prefix : `${prefix}/`}(newest).dump` };
}

/** The line that says which archive --backup-prefix picked and how old it is. */
export function pickedBackupLine(
  picked: NonNullable<Awaited<ReturnType<typeof resolveBackupPrefix>>['picked']>,
): string {
  return `using backup ${picked.backup}, taken ${picked.takenAt} (by its ${picked.takenBy}), ${picked.age} before ${picked.at ? `--at ${picked.at}` : 'now'}`;
}

/**
 * The checks `start` and `discover` share, needing no service: the source (--backup or --scratch), live, the tenant
 * root, the config, the id (given: `flags.id`) and the artifacts folder `<base><id>/`. Throws UsageError naming the flag.
 */
/** `--from/--to` with anything but a WAL archive: a dump or a given scratch holds one moment only. */
function refuseWindowWithoutArchive(flags: SourceFlags): void {
  if (isPointInTime(flags.backup) || (flags.from === undefined && flags.to === undefined)) return;
  throw new UsageError(
    '--from/--to (the incident window) need a WAL archive: --backup pgbackrest:<stanza>[/<database>]. A pg_dump archive holds one moment only; without an archive, restore from a dump and let --allow-partial=<n> say back how many partial tenants get their missing rows (deletions of their own users since the backup included).',
  );
}

export function sourceFromFlags(
  flags: SourceFlags & { id: string },
  env: NodeJS.ProcessEnv = process.env,
): Pick<
  BulkRestoreInput,
  'source' | 'live' | 'tenantRoot' | 'config' | 'artifacts' | 'allowUnverifiedBackup' | 'unsafeScratch'
> & {
  warnings: string[];
} {
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

  if (isPointInTime(flags.backup)) return pointInTimeSource({ ...flags, backup: flags.backup! }, env);
  let backup: string | undefined;
  if (flags.backup) {
    try {
      backup = formatS3Url(parseS3Url(flags.backup));
    } catch (error) {
      if (error instanceof S3UrlError) throw new UsageError(`--backup: ${error.message}`);
      throw error;
    }
  }
  const live = checkDatabaseRef('live', flags.live);
  const scratchServer = backup
    ? scratchServerFromFlags('scratch-server', flags['scratch-server'], live, unsafeScratch, env)
    : undefined;
  const scratch = flags.scratch ? checkDatabaseRef('scratch', flags.scratch) : undefined;
  // Validated by the config schema (activities/config.ts), which also refuses credentials in webhook URLs.
  const config: RestoreConfig | undefined = flags.config ? loadConfigFlag(flags.config) : undefined;

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
  let artifacts: ArtifactsRef;
  try {
    const { bucket, prefix } = parseS3Prefix(artifactsUrl);
    artifacts = { bucket, prefix: `${prefix && !prefix.endsWith('/') ? `${prefix}/` : prefix}${flags.id}/` };
  } catch (error) {
    throw new UsageError(`--artifacts: ${(error as Error).message}`);
  }
  const source: BulkRestoreInput['source'] = backup
    ? { kind: 'backup', backup, scratchServer }
    : { kind: 'scratch', scratch: scratch! };
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

/**
 * `--allow-partial` (the command turns the bare flag into '') or `--allow-partial=<n>`, n the number of partial
 * tenants said back: a whole number, nothing else (not '1e1', not ' 5').
 */
export function parseAllowPartial(value: string | undefined): AllowPartial | undefined {
  if (value === undefined) return undefined;
  if (value === '') return {};
  if (!/^\d{1,9}$/.test(value))
    throw new UsageError(
      `--allow-partial '${value}': give the number of partial tenants to restore (--allow-partial=<n>), or the bare flag with --tenants.`,
    );
  return { count: Number(value) };
}

/**
 * Every check that needs no service. Throws UsageError naming the flag to fix. `fromDiscover` is the list a finished
 * discover wrote (`--from-discover`, read by the command before this), in the format of --tenants-file.
 */
export function buildStartRequest(
  flags: StartFlags,
  env: NodeJS.ProcessEnv = process.env,
  fromDiscover?: { discoverId: string; text: string },
): StartRequest {
  const restoreId = flags.id ?? newRestoreId();
  const { source, live, tenantRoot, config, artifacts, allowUnverifiedBackup, unsafeScratch, warnings } =
    sourceFromFlags({ ...flags, id: restoreId }, env);
  if (fromDiscover && (flags.tenants !== undefined || flags['tenants-file'] !== undefined))
    throw new UsageError('give --from-discover, or --tenants / --tenants-file, not both.');
  const tenants = fromDiscover
    ? parseTenantText(fromDiscover.text, `the list of discover ${fromDiscover.discoverId}`)
    : tenantsFromFlags(flags, true);
  const allowPartial = parseAllowPartial(flags['allow-partial']);
  // Which tenants of an explicit list are partial is known only at each unit's preflight, after the start: there is no
  // count to check a said-back number against, and a number that is not checked must not look as if it were.
  if (allowPartial?.count !== undefined && !fromDiscover)
    throw new UsageError(
      `--allow-partial=${allowPartial.count}: a count is checked against a discover's partial tenants (--from-discover); with --tenants or --tenants-file, which tenants are partial is known only at their preflight, after the start. Give --allow-partial without a count: each partial tenant of the list then gets only its missing rows back, listed by key in the report.`,
    );

  const conflict = (flags.conflict ?? 'skip') as ConflictPolicy;
  if (!conflictPolicies.includes(conflict))
    throw new UsageError(`--conflict '${flags.conflict}': use one of ${conflictPolicies.join(', ')}.`);
  const inWindow = source.kind === 'point-in-time' && source.until !== undefined;
  if (inWindow && flags.conflict !== undefined && flags.conflict !== 'skip')
    throw new UsageError(
      `--conflict ${flags.conflict} does not go with an incident window: a window's revert never overwrites a row a user changed since T1, and never deletes. Its conflicts are refused per tenant, or with --conflicts report restored around and listed.`,
    );
  if (flags.conflicts !== undefined && !inWindow)
    throw new UsageError(
      `--conflicts goes with an incident window (--backup pgbackrest:<stanza> --from <T0> --to <T1>); for a restore from one moment, --conflict skip|overwrite|fail says what a key already in live gets.`,
    );
  if (flags.conflicts !== undefined && !windowConflictModes.includes(flags.conflicts as WindowConflictMode))
    throw new UsageError(
      `--conflicts '${flags.conflicts}': refuse (default: a tenant with any conflict is not written) or report (restore the rest of it, list its conflicts).`,
    );
  if (inWindow && allowPartial)
    throw new UsageError(
      '--allow-partial does not go with an incident window: the window says exactly which rows the incident deleted, so every tenant it touched gets exactly those back, and nothing its users deleted before or after it.',
    );
  const concurrency =
    flags.concurrency === undefined
      ? defaultConcurrency
      : parseIntegerFlag('--concurrency', flags.concurrency, concurrencyRange.min, concurrencyRange.max);
  const groupSize =
    flags['group-size'] === undefined
      ? defaultGroupSize
      : parseIntegerFlag('--group-size', flags['group-size'], 1, 1000, ' (1: one child workflow per tenant)');
  if (flags['group-size'] !== undefined && flags['unit-rows'] !== undefined)
    throw new UsageError(
      '--group-size and --unit-rows both size the units: give one (--group-size N: N tenants per unit; --unit-rows N: units of about N rows).',
    );
  // Units sized by rows unless the operator fixed them in tenants.
  const unitRows =
    flags['group-size'] !== undefined
      ? undefined
      : flags['unit-rows'] === undefined
        ? defaultUnitRows
        : parseIntegerFlag('--unit-rows', flags['unit-rows'], 1, 100_000_000);
  const childrenPerRun =
    flags['children-per-run'] === undefined
      ? undefined
      : parseIntegerFlag('--children-per-run', flags['children-per-run'], 1);

  const input: BulkRestoreInput = {
    restoreId,
    source,
    live,
    tenantRoot,
    conflict,
    concurrency,
    groupSize,
    ...(unitRows ? { unitRows } : {}),
    config,
    keepScratch: flags['keep-scratch'] ?? false,
    ...(allowPartial ? { allowPartial: true } : {}),
    ...(inWindow ? { windowConflicts: (flags.conflicts ?? 'refuse') as WindowConflictMode } : {}),
    artifacts,
    maxChildrenPerRun: childrenPerRun,
  };
  if (allowUnverifiedBackup) input.allowUnverifiedBackup = true;
  if (unsafeScratch) input.unsafeScratch = unsafeScratch;
  let upload: StartRequest['upload'];
  if (tenants.length > inlineTenantLimit) {
    upload = { bucket: artifacts.bucket, key: `${artifacts.prefix}tenants.input.json`, ids: tenants };
    input.tenantsObject = { bucket: upload.bucket, key: upload.key };
  } else {
    input.tenants = tenants;
  }
  checkStartInput('bulkRestore', bulkRestoreInput, input);
  return { input, taskQueue: taskQueueFrom(flags['task-queue'], env), upload, warnings };
}

export interface StartedRestore {
  restoreId: string;
  workflowId: string;
  runId: string;
  tenants: number;
  taskQueue: string;
  artifacts: string;
  webUi: string;
  warnings: string[];
}

export function isPointInTime(backup: string | undefined): boolean {
  return !!backup?.startsWith('pgbackrest:');
}

/**
 * `--backup pgbackrest:<stanza>[/<database>] --at <RFC 3339 time | LSN>`: scratch recovered to that moment from the
 * stanza's WAL archive, on a worker's host (activities/point-in-time.ts). The database defaults to live's.
 */
function pointInTimeSource(
  flags: SourceFlags & { id: string; backup: string },
  env: NodeJS.ProcessEnv,
  now = new Date(),
): ReturnType<typeof sourceFromFlags> {
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
  // The rest of the checks (live, tenant root, config, id, artifacts) are the same as for a dump.
  const base = sourceFromFlags(
    { ...flags, backup: undefined, scratch: 'postgres://stand-in/none', at: undefined, from: undefined, to: undefined },
    env,
  );
  return {
    ...base,
    source: {
      kind: 'point-in-time',
      stanza: match[1],
      target,
      ...(until ? { until } : {}),
      ...(match[2] ? { database: match[2] } : {}),
    },
    warnings: [],
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

/** T0 comes before T1: both times, or both LSNs (a time and an LSN cannot be compared here). */
function before(a: RecoveryTarget, b: RecoveryTarget): boolean {
  if (a.type === 'time' && b.type === 'time') return Date.parse(a.time) < Date.parse(b.time);
  if (a.type === 'lsn' && b.type === 'lsn') return lsnValue(a.lsn) < lsnValue(b.lsn);
  return false;
}

/**
 * Before a point-in-time restore starts: the moment is inside what the stanza can recover, when this machine can ask
 * pgBackRest (`pgbackrest info`, with PGBACKREST_CONFIG). A machine without pgbackrest leaves the check to the worker,
 * which refuses the same way before it restores anything. Returns the line that says what will be recovered.
 */
export async function checkPointInTime(
  source: { stanza: string; target: RecoveryTarget },
  flag = 'at',
): Promise<string | undefined> {
  if (spawnSync('pgbackrest', ['version']).status !== 0) return undefined;
  let range;
  try {
    range = await archiveRange(source.stanza, AbortSignal.timeout(120_000));
  } catch (error) {
    // This machine cannot read the repository (no configuration, no access): the worker checks the same before it
    // restores anything.
    process.stderr.write(
      `warning: could not check --${flag} against stanza ${source.stanza} here (pgbackrest info: ${(error as Error).message.slice(0, 300)}); the worker will check it\n`,
    );
    return undefined;
  }
  const outside = targetOutsideRange(range, source.target);
  if (outside) throw new UsageError(`--${flag}: ${outside}`);
  return `recovering stanza ${source.stanza} to ${describeTarget(source.target)} (it can recover from ${range.from!.time}${range.to?.lastCommit ? ` to ${range.to.lastCommit}` : ''})`;
}

/**
 * Runs checks at once and reports as if they had run one after another: the error of the first failing check in the
 * order given, as soon as every check before it has passed. The checks after a failure are left to end on their own.
 */
export async function inOrder(checks: Array<Promise<unknown>>): Promise<void> {
  // Each outcome is caught as it comes, so that a later check failing first is not an unhandled rejection.
  const outcomes = checks.map((check) =>
    check.then(
      () => undefined,
      (error: unknown) => ({ error }),
    ),
  );
  for (const outcome of outcomes) {
    const failed = await outcome;
    if (failed) throw failed.error;
  }
}

/**
 * What `start` and `discover` check before they start a workflow: live (and scratch, or its server) answers, and the
 * backup exists and may be read. UsageError for a missing or forbidden backup, ServiceUnavailable (exit 3) otherwise.
 * The checks run at once; the error reported is the first in this order: live, scratch (or its server), the
 * point-in-time range (asked only once live answers, as before), the backup.
 */
export async function checkSourceReachable(input: Pick<BulkRestoreInput, 'source' | 'live'>): Promise<void> {
  const { source } = input;
  const live = checkReachable('live', input.live);
  await inOrder(
    [
      live,
      source.kind === 'backup' && source.scratchServer
        ? checkReachable('scratch-server', source.scratchServer)
        : undefined,
      source.kind === 'scratch' ? checkReachable('scratch', source.scratch) : undefined,
      source.kind === 'point-in-time'
        ? live.then(async () => {
            const line = await checkPointInTime(source, source.until ? 'from' : 'at');
            if (line) process.stderr.write(`${line}\n`);
          })
        : undefined,
      source.kind === 'backup' ? checkBackupReadable(source.backup) : undefined,
    ].filter((check): check is Promise<void> => check !== undefined),
  );
}

/** The backup object exists and may be read. */
async function checkBackupReadable(backup: string): Promise<void> {
  const location = parseS3Url(backup);
  const s3 = createS3Client();
  try {
    await head(s3, location);
  } catch (error) {
    if (isNotFound(error)) throw new UsageError(`--backup ${backup} does not exist.`);
    if ((error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 403)
      throw new UsageError(`--backup ${backup}: access denied.`);
    s3Unavailable(error);
  } finally {
    s3.destroy();
  }
}

/** Checks what needs a service (the backup exists, no restore with this id is running), then uploads and starts. */
export async function startRestore(client: Client, request: StartRequest): Promise<StartedRestore> {
  const { input, taskQueue } = request;
  // Independent: asked at once, reported in this order (a source problem before an id already used).
  await inOrder([checkSourceReachable(input), refuseExistingRestoreId(client, input)]);
  const workflowId = bulkWorkflowId(input.restoreId);
  if (request.upload) {
    const s3 = createS3Client();
    try {
      await putJson(s3, request.upload, request.upload.ids);
    } catch (error) {
      s3Unavailable(error);
    } finally {
      s3.destroy();
    }
  }
  const total = request.upload?.ids.length ?? input.tenants?.length ?? 0;
  const artifacts = `s3://${input.artifacts.bucket}/${input.artifacts.prefix}`;
  const handle = await client.workflow
    .start<(i: BulkRestoreInput) => Promise<BulkRestoreResult>>('bulkRestore', {
      workflowId,
      // A restore id is used once: a second start of the same id (even one racing this one) is refused by Temporal too.
      workflowIdReusePolicy: 'REJECT_DUPLICATE',
      taskQueue,
      args: [input],
      typedSearchAttributes: [
        { key: RestoreIdKey, value: input.restoreId },
        { key: RestoreKindKey, value: 'bulk' },
        { key: RestorePhaseKey, value: 'preparing-scratch' },
        { key: TenantsTotalKey, value: total },
      ],
      memo: { artifacts, live: input.live, tenantRoot: input.tenantRoot },
    })
    .catch((error: unknown) => {
      if (error instanceof WorkflowExecutionAlreadyStartedError)
        throw new UsageError(
          `restore ${input.restoreId} already exists (started at the same moment by someone else?): tenant-restore status ${input.restoreId}. Nothing was started; choose another --id.`,
        );
      throw error;
    });
  return {
    restoreId: input.restoreId,
    workflowId,
    runId: handle.firstExecutionRunId,
    tenants: total,
    taskQueue,
    artifacts,
    webUi: webUiLink(input.restoreId),
    warnings: request.warnings ?? [],
  };
}

/**
 * A restore id names one restore: its workflow, its children (`restore/<id>/...`), its scratch and its artifacts
 * (`<prefix><id>/`). Starting an id again would mix a new run with the old one's children and report files, so an id
 * already used is refused before anything is checked or written: a running one with the status command, a finished
 * one (completed, failed, cancelled, terminated, timed out) with the report command, and an id whose workflow is gone
 * (past retention) but whose artifacts are still in S3 with their location.
 */
export async function refuseExistingRestoreId(
  client: Client,
  input: Pick<BulkRestoreInput, 'restoreId' | 'artifacts'>,
): Promise<void> {
  const id = input.restoreId;
  try {
    const description = await client.workflow.getHandle(bulkWorkflowId(id)).describe();
    const status = description.status.name;
    if (status === 'RUNNING')
      throw new UsageError(
        `restore ${id} is already running: follow it with 'tenant-restore status ${id} --watch'. Nothing was started.`,
      );
    throw new UsageError(
      `restore ${id} already ran (${status.toLowerCase().replace(/_/g, ' ')}); a restore id is used once. See what it did with 'tenant-restore report ${id}' (or 'tenant-restore status ${id}'), and start a new restore with another --id. Nothing was started.`,
    );
  } catch (error) {
    if (!(error instanceof WorkflowNotFoundError)) throw error;
  }
  const s3 = createS3Client();
  try {
    const listed = await s3.send(
      new ListObjectsV2Command({ Bucket: input.artifacts.bucket, Prefix: input.artifacts.prefix, MaxKeys: 2 }),
    );
    // The uploaded tenant list of a start that failed before its workflow began is not a restore's artifact.
    if ((listed.Contents ?? []).some((o) => o.Key !== `${input.artifacts.prefix}tenants.input.json`)) {
      throw new UsageError(
        `s3://${input.artifacts.bucket}/${input.artifacts.prefix} already holds the artifacts of an earlier restore ${id} (its workflow is no longer in Temporal); a restore id is used once. Start a new restore with another --id. Nothing was started.`,
      );
    }
  } catch (error) {
    if (error instanceof UsageError) throw error;
    const status = (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
    if (status === 404) return; // no such bucket yet: nothing stale in it
    if (status === 403)
      throw new UsageError(`--artifacts s3://${input.artifacts.bucket}/${input.artifacts.prefix}: access denied.`);
    s3Unavailable(error);
  } finally {
    s3.destroy();
  }
}
