/**
 * Starting a restore: `buildStartRequest` checks the flags completely before anything is written or started (exit
 * code 2), and refuses a database URL that carries a password (invariant I5: workflow inputs never hold a secret);
 * `startRestore` (start-workflow.ts) then checks what needs a service, uploads a long tenant list, and starts the
 * workflow. Where the backup side comes from is source.ts's grammar.
 */
import { randomBytes } from 'node:crypto';
import { conflictPolicies, type ConflictPolicy, type TenantId } from '../../activities/restore-types';
import { bulkRestoreInput, windowConflictModes, type WindowConflictMode } from '../../activities/input-contract';
import {
  concurrencyRange,
  defaultConcurrency,
  defaultGroupSize,
  defaultUnitRows,
  type BulkRestoreInput,
} from '../../workflows/definitions';
import type { AllowPartial } from './discover';
import {
  checkStartInput,
  parseIntegerFlag,
  parseTenantText,
  taskQueueFrom,
  tenantsFromFlags,
  UsageError,
} from './input';
import { sourceFromFlags, type SourceFlags } from './source';

// Kept importable from here for the callers of before the split (cli/client/discover.ts, cli/commands/discover.ts).
export { sourceFromFlags, type SourceFlags } from './source';
export { pickedBackupLine, resolveBackupPrefix, withBackupStandIn } from './backup-prefix';
export { checkSourceReachable } from './source-reachable';

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

export function newRestoreId(now = new Date()): string {
  const stamp = now.toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
  return `r-${stamp}-${randomBytes(2).toString('hex')}`;
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
