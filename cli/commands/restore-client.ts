/**
 * Plain functions behind the restore commands (start, status, pause, resume, cancel, approve, report). Each returns
 * data; the commands print it. Input is checked completely before anything is written or started (exit code 2), and
 * a database URL that carries a password is refused (invariant I5: workflow inputs never hold a secret).
 */
import type { Client, WorkflowHandle } from '@temporalio/client';
import { WorkflowExecutionAlreadyStartedError, WorkflowNotFoundError } from '@temporalio/client';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { loadConfig } from '../../activities/config';
import { hasPassword, passwordRefusal } from '../../activities/db';
import { conflictPolicies, type ConflictPolicy, type RestoreConfig, type TenantId } from '../../activities/restore-types';
import { createS3Client, formatS3Url, getJson, getText, head, parseS3Url, putJson, S3UrlError } from '../../activities/s3';
import { sameTenantKey, tenantIdPattern } from '../../activities/tenant-list';
import type { RestoreReport } from '../../activities/report';
import {
  approveSignal, bulkWorkflowId, cancelSignal, pauseSignal, progressQuery, RestoreIdKey, RestoreKindKey, RestorePhaseKey, resumeSignal,
  setConcurrencySignal, TenantsTotalKey, type ArtifactsRef, type BulkRestoreInput, type BulkRestoreResult, type RestoreProgress,
} from '../../workflows/definitions';
import { UsageError } from './common';

/** A service (Temporal, S3) could not be reached: exit code 3. The name matches the CLI's `unavailable` test. */
export class ServiceUnavailableError extends Error {
  override name = 'ServiceUnavailableError';
}

/** Inline tenant lists longer than this go to S3 first, so the workflow input stays far below the 2 MB payload limit. */
export const inlineTenantLimit = 1000;

export interface StartFlags {
  backup?: string;
  'scratch-server'?: string;
  scratch?: string;
  live?: string;
  'tenant-root'?: string;
  tenants?: string;
  'tenants-file'?: string;
  conflict?: string;
  concurrency?: string;
  'group-size'?: string;
  config?: string;
  id?: string;
  'keep-scratch'?: boolean;
  'allow-partial'?: boolean;
  artifacts?: string;
  'task-queue'?: string;
  'children-per-run'?: string;
  'allow-unverified-backup'?: boolean;
}

/** Tenants per child workflow unless --group-size says otherwise (README, Performance: how it was chosen). */
export const defaultGroupSize = 20;
/**
 * Children (groups) in flight unless --concurrency says otherwise. On the 2-core bench machine, 2 groups restored as
 * fast as 4 (the database was CPU-bound either way) and kept the writer's p99 at 2.5× instead of 6.1× (README).
 */
export const defaultConcurrency = 2;

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
  if (!/^postgres(ql)?:\/\//.test(ref)) return `alias:${ref.split('/')[0]}`;
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
  const how = input.source.scratchServer ? '--scratch-server is the same server as --live' : 'no --scratch-server was given';
  return `the scratch database will be created on LIVE's server (${how}): the whole backup is loaded next to production, and the role used needs CREATEDB there (the least-privilege live role of scripts/grants.sql has none, so the restore would fail). Put scratch elsewhere with --scratch-server postgres://<scratch role>@<other host>:<port>/postgres, or give --scratch <url> of a database you restored yourself.`;
}

const restoreIdPattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;
// `schema.table` as the catalog spells them, unquoted: any characters (capitals, spaces, quotes, non-ASCII) but a dot
// or a control character. The engine quotes each part itself.
const qualifiedName = /^[^.\p{Cc}]+\.[^.\p{Cc}]+$/u;
const aliasRef = /^[A-Za-z][A-Za-z0-9_]*(\/[A-Za-z0-9_]+)?$/;

/** Checks a database reference for a workflow input: an alias, `alias/db`, or a postgres URL without password. */
export function checkDatabaseRef(flag: string, ref: string): string {
  // First, so that no later message echoes a reference with a password in it.
  if (hasPassword(ref)) throw new UsageError(passwordRefusal(`--${flag}`, flag));
  if (aliasRef.test(ref)) return ref;
  if (!/^postgres(ql)?:\/\//.test(ref)) throw new UsageError(`--${flag} '${ref}' is neither a postgres:// URL nor an alias (TENANT_RESTORE_DB_<ALIAS> in the worker's environment).`);
  let url: URL;
  try {
    url = new URL(ref);
  } catch {
    throw new UsageError(`--${flag} is not a valid URL.`);
  }
  if (!url.hostname) throw new UsageError(`--${flag} has no host.`);
  if (!url.pathname.replace(/^\//, '')) throw new UsageError(`--${flag} names no database (postgres://user@host:port/<database>).`);
  return ref;
}

/** Parses `1,2,3`: no empty entries, no duplicates, only id characters. */
export function parseTenantList(text: string, origin: string): TenantId[] {
  const ids = text.split(',').map((s) => s.trim());
  return checkIds(ids.map((id, i) => ({ id, where: `${origin} entry ${i + 1}` })));
}

/** A tenants file: one id per line; blank lines and `#` comments are allowed, anything else is an error. */
export function parseTenantsFile(path: string): TenantId[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new UsageError(`cannot read --tenants-file ${path}: ${(error as Error).message}`);
  }
  const entries: Array<{ id: string; where: string }> = [];
  text.split(/\r?\n/).forEach((line, i) => {
    const id = line.replace(/#.*$/, '').trim();
    if (id) entries.push({ id, where: `${path} line ${i + 1}` });
  });
  return checkIds(entries);
}

function checkIds(entries: Array<{ id: string; where: string }>): TenantId[] {
  const problems: string[] = [];
  const seen = new Map<string, string>();
  /** By sameTenantKey: a uuid written in upper and in lower case is one tenant. */
  const listed = new Map<string, string>();
  for (const { id, where } of entries) {
    if (!id) problems.push(`${where} is empty`);
    else if (!tenantIdPattern.test(id)) problems.push(`${where} (${JSON.stringify(id.slice(0, 40))}) is not a tenant id`);
    else if (listed.has(sameTenantKey(id))) problems.push(`${where}: tenant ${id} is already listed at ${listed.get(sameTenantKey(id))}${seen.has(id) ? '' : ' (uuids are compared without regard to case)'}`);
    else {
      seen.set(id, where);
      listed.set(sameTenantKey(id), where);
    }
  }
  if (entries.length === 0) problems.push('the tenant list is empty');
  if (problems.length) throw new UsageError(`bad tenant list:\n  - ${problems.slice(0, 20).join('\n  - ')}${problems.length > 20 ? `\n  ... and ${problems.length - 20} more` : ''}`);
  return [...seen.keys()];
}

export function newRestoreId(now = new Date()): string {
  const stamp = now.toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
  return `r-${stamp}-${randomBytes(2).toString('hex')}`;
}

/** Every check that needs no service. Throws UsageError naming the flag to fix. */
export function buildStartRequest(flags: StartFlags, env: NodeJS.ProcessEnv = process.env): StartRequest {
  if (flags.backup && flags.scratch) throw new UsageError('give either --backup or --scratch, not both.');
  if (!flags.backup && !flags.scratch) throw new UsageError('missing --backup s3://<bucket>/<key> (or --scratch <url> for a database already restored).');
  if (flags['scratch-server'] && !flags.backup) throw new UsageError('--scratch-server only goes with --backup.');
  if (flags['allow-unverified-backup'] && !flags.backup) throw new UsageError('--allow-unverified-backup only goes with --backup.');
  if (!flags.live) throw new UsageError('missing --live <url|alias>.');
  if (!flags['tenant-root']) throw new UsageError('missing --tenant-root <schema.table>.');
  if (!qualifiedName.test(flags['tenant-root'])) throw new UsageError(`--tenant-root '${flags['tenant-root']}' is not schema.table.`);
  if (flags.tenants !== undefined && flags['tenants-file'] !== undefined) throw new UsageError('give either --tenants or --tenants-file, not both.');
  if (flags.tenants === undefined && flags['tenants-file'] === undefined) throw new UsageError('missing --tenants 1,2,3 or --tenants-file <path>.');

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
  const scratchServer = flags['scratch-server'] ? checkDatabaseRef('scratch-server', flags['scratch-server']) : undefined;
  const scratch = flags.scratch ? checkDatabaseRef('scratch', flags.scratch) : undefined;
  const tenants = flags.tenants !== undefined ? parseTenantList(flags.tenants, '--tenants') : parseTenantsFile(flags['tenants-file']!);

  const conflict = (flags.conflict ?? 'skip') as ConflictPolicy;
  if (!conflictPolicies.includes(conflict)) throw new UsageError(`--conflict '${flags.conflict}': use one of ${conflictPolicies.join(', ')}.`);
  const concurrency = flags.concurrency === undefined ? defaultConcurrency : Number(flags.concurrency);
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 1000) throw new UsageError(`--concurrency '${flags.concurrency}': an integer from 1 to 1000.`);
  const groupSize = flags['group-size'] === undefined ? defaultGroupSize : Number(flags['group-size']);
  if (!Number.isInteger(groupSize) || groupSize < 1 || groupSize > 1000) throw new UsageError(`--group-size '${flags['group-size']}': an integer from 1 to 1000 (1: one child workflow per tenant).`);
  const childrenPerRun = flags['children-per-run'] === undefined ? undefined : Number(flags['children-per-run']);
  if (childrenPerRun !== undefined && (!Number.isInteger(childrenPerRun) || childrenPerRun < 1)) throw new UsageError(`--children-per-run '${flags['children-per-run']}': a positive integer.`);

  let config: RestoreConfig | undefined;
  if (flags.config) {
    try {
      config = loadConfig(flags.config);
    } catch (error) {
      throw new UsageError((error as Error).message);
    }
    for (const action of config.actions ?? []) {
      if (action.type === 'webhook' && new URL(action.url).password) throw new UsageError(`action ${action.name}: its URL carries a password; use a header 'env:NAME' resolved by the worker.`);
    }
  }

  const restoreId = flags.id ?? newRestoreId();
  if (!restoreIdPattern.test(restoreId)) throw new UsageError(`--id '${restoreId}': letters, digits, '.', '_' and '-', at most 63 characters.`);

  const artifactsUrl = flags.artifacts ?? env.TENANT_RESTORE_ARTIFACTS ?? (backup ? `s3://${parseS3Url(backup).bucket}/restores/` : undefined);
  if (!artifactsUrl) throw new UsageError('where should the plan and report go? Give --artifacts s3://<bucket>/<prefix>/ or set TENANT_RESTORE_ARTIFACTS.');
  let artifacts: ArtifactsRef;
  try {
    const parsed = /^s3:\/\/([^/]+)\/?(.*)$/.exec(artifactsUrl);
    if (!parsed) throw new S3UrlError(`'${artifactsUrl}' is not s3://<bucket>/<prefix>`);
    const base = parsed[2] && !parsed[2].endsWith('/') ? `${parsed[2]}/` : parsed[2];
    artifacts = { bucket: parsed[1], prefix: `${base}${restoreId}/` };
  } catch (error) {
    throw new UsageError(`--artifacts: ${(error as Error).message}`);
  }

  const input: BulkRestoreInput = {
    restoreId,
    source: backup ? { kind: 'backup', backup, scratchServer } : { kind: 'scratch', scratch: scratch! },
    live,
    tenantRoot: flags['tenant-root'],
    conflict,
    concurrency,
    groupSize,
    config,
    keepScratch: flags['keep-scratch'] ?? false,
    ...(flags['allow-partial'] ? { allowPartial: true } : {}),
    artifacts,
    maxChildrenPerRun: childrenPerRun,
  };
  if (flags['allow-unverified-backup']) input.allowUnverifiedBackup = true;
  let upload: StartRequest['upload'];
  if (tenants.length > inlineTenantLimit) {
    upload = { bucket: artifacts.bucket, key: `${artifacts.prefix}tenants.input.json`, ids: tenants };
    input.tenantsObject = { bucket: upload.bucket, key: upload.key };
  } else {
    input.tenants = tenants;
  }
  const warnings = [scratchOnLiveWarning(input)].filter((w): w is string => !!w);
  return { input, taskQueue: flags['task-queue'] ?? env.TENANT_RESTORE_TASK_QUEUE ?? 'tenant-restore', upload, warnings };
}

function isNotFound(error: unknown): boolean {
  const e = error as { name?: string; $metadata?: { httpStatusCode?: number } };
  return e.name === 'NotFound' || e.name === 'NoSuchKey' || e.$metadata?.httpStatusCode === 404;
}

function s3Unavailable(error: unknown): never {
  const e = error as { name?: string; code?: string; $metadata?: { httpStatusCode?: number }; message: string };
  if (!e.$metadata?.httpStatusCode) throw new ServiceUnavailableError(`S3 is not reachable: ${e.message}`);
  throw error;
}

export interface StartedRestore { restoreId: string; workflowId: string; runId: string; tenants: number; taskQueue: string; artifacts: string; webUi: string; warnings: string[] }

export function webUiLink(restoreId: string, env: NodeJS.ProcessEnv = process.env): string {
  const base = env.TEMPORAL_UI_URL ?? 'http://127.0.0.1:8233';
  const namespace = env.TEMPORAL_NAMESPACE ?? 'default';
  return `${base}/namespaces/${namespace}/workflows?query=${encodeURIComponent(`RestoreId="${restoreId}"`)}`;
}

/** Checks what needs a service (the backup exists, no restore with this id is running), then uploads and starts. */
/**
 * A database server that does not even accept a TCP connection would only make the workers retry for many minutes
 * (a retry is right for a restart, not for a wrong host or port): refuse before starting. Needs no credentials.
 * Aliases are resolved by the workers only, so they are not checked here.
 */
export async function checkReachable(flag: string, ref: string, timeoutMs = 5000): Promise<void> {
  if (!/^postgres(ql)?:\/\//.test(ref)) return;
  const url = new URL(ref);
  const host = decodeURIComponent(url.hostname);
  if (!host || host.startsWith('/')) return;
  const port = Number(url.port || 5432);
  const problem = await new Promise<string | undefined>((resolve) => {
    const socket = createConnection({ host, port });
    const done = (result: string | undefined) => {
      socket.destroy();
      resolve(result);
    };
    socket.setTimeout(timeoutMs, () => done(`no answer within ${timeoutMs / 1000} s`));
    socket.once('connect', () => done(undefined));
    socket.once('error', (error: NodeJS.ErrnoException) => done(error.code ?? error.message));
  });
  if (problem) throw new ServiceUnavailableError(`--${flag}: PostgreSQL at ${host}:${port} is not reachable (${problem}). Nothing was started.`);
}

export async function startRestore(client: Client, request: StartRequest): Promise<StartedRestore> {
  const { input, taskQueue } = request;
  await checkReachable('live', input.live);
  if (input.source.kind === 'backup' && input.source.scratchServer) await checkReachable('scratch-server', input.source.scratchServer);
  if (input.source.kind === 'scratch') await checkReachable('scratch', input.source.scratch);
  if (input.source.kind === 'backup') {
    const location = parseS3Url(input.source.backup);
    const s3 = createS3Client();
    try {
      await head(s3, location);
    } catch (error) {
      if (isNotFound(error)) throw new UsageError(`--backup ${input.source.backup} does not exist.`);
      if ((error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 403) throw new UsageError(`--backup ${input.source.backup}: access denied.`);
      s3Unavailable(error);
    } finally {
      s3.destroy();
    }
  }
  await refuseExistingRestoreId(client, input);
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
  const handle = await client.workflow.start<(i: BulkRestoreInput) => Promise<BulkRestoreResult>>('bulkRestore', {
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
  }).catch((error: unknown) => {
    if (error instanceof WorkflowExecutionAlreadyStartedError) throw new UsageError(`restore ${input.restoreId} already exists (started at the same moment by someone else?): tenant-restore status ${input.restoreId}. Nothing was started; choose another --id.`);
    throw error;
  });
  return { restoreId: input.restoreId, workflowId, runId: handle.firstExecutionRunId, tenants: total, taskQueue, artifacts, webUi: webUiLink(input.restoreId), warnings: request.warnings ?? [] };
}

/**
 * A restore id names one restore: its workflow, its children (`restore/<id>/...`), its scratch and its artifacts
 * (`<prefix><id>/`). Starting an id again would mix a new run with the old one's children and report files, so an id
 * already used is refused before anything is checked or written: a running one with the status command, a finished
 * one (completed, failed, cancelled, terminated, timed out) with the report command, and an id whose workflow is gone
 * (past retention) but whose artifacts are still in S3 with their location.
 */
export async function refuseExistingRestoreId(client: Client, input: Pick<BulkRestoreInput, 'restoreId' | 'artifacts'>): Promise<void> {
  const id = input.restoreId;
  try {
    const description = await client.workflow.getHandle(bulkWorkflowId(id)).describe();
    const status = description.status.name;
    if (status === 'RUNNING') throw new UsageError(`restore ${id} is already running: follow it with 'tenant-restore status ${id} --watch'. Nothing was started.`);
    throw new UsageError(`restore ${id} already ran (${status.toLowerCase().replace(/_/g, ' ')}); a restore id is used once. See what it did with 'tenant-restore report ${id}' (or 'tenant-restore status ${id}'), and start a new restore with another --id. Nothing was started.`);
  } catch (error) {
    if (!(error instanceof WorkflowNotFoundError)) throw error;
  }
  const s3 = createS3Client();
  try {
    const listed = await s3.send(new ListObjectsV2Command({ Bucket: input.artifacts.bucket, Prefix: input.artifacts.prefix, MaxKeys: 2 }));
    // The uploaded tenant list of a start that failed before its workflow began is not a restore's artifact.
    if ((listed.Contents ?? []).some((o) => o.Key !== `${input.artifacts.prefix}tenants.input.json`)) {
      throw new UsageError(`s3://${input.artifacts.bucket}/${input.artifacts.prefix} already holds the artifacts of an earlier restore ${id} (its workflow is no longer in Temporal); a restore id is used once. Start a new restore with another --id. Nothing was started.`);
    }
  } catch (error) {
    if (error instanceof UsageError) throw error;
    const status = (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
    if (status === 404) return; // no such bucket yet: nothing stale in it
    if (status === 403) throw new UsageError(`--artifacts s3://${input.artifacts.bucket}/${input.artifacts.prefix}: access denied.`);
    s3Unavailable(error);
  } finally {
    s3.destroy();
  }
}

// ---------------------------------------------------------------------------------------------------------------
// status, signals, report

export interface RestoreStatus {
  restoreId: string;
  workflowStatus: string;
  progress?: RestoreProgress;
  result?: BulkRestoreResult;
  error?: string;
  artifacts?: string;
  webUi: string;
}

async function existingHandle(client: Client, restoreId: string): Promise<{ handle: WorkflowHandle; status: string; memo: Record<string, unknown> }> {
  const handle = client.workflow.getHandle(bulkWorkflowId(restoreId));
  try {
    const description = await handle.describe();
    return { handle, status: description.status.name, memo: (description.memo ?? {}) as Record<string, unknown> };
  } catch (error) {
    if (error instanceof WorkflowNotFoundError) throw new UsageError(`no restore with id '${restoreId}' (workflow ${bulkWorkflowId(restoreId)}).`);
    throw error;
  }
}

export async function getRestoreStatus(client: Client, restoreId: string): Promise<RestoreStatus> {
  const { handle, status, memo } = await existingHandle(client, restoreId);
  const base = { restoreId, workflowStatus: status, artifacts: memo.artifacts as string | undefined, webUi: webUiLink(restoreId) };
  if (status === 'RUNNING') return { ...base, progress: await handle.query(progressQuery) };
  try {
    return { ...base, result: (await handle.result()) as BulkRestoreResult };
  } catch (error) {
    const e = error as { cause?: { message?: string }; message: string };
    return { ...base, error: e.cause?.message ?? e.message };
  }
}

export type RestoreSignal = 'pause' | 'resume' | 'cancel' | 'approve' | 'setConcurrency';

export async function signalRestore(client: Client, restoreId: string, signal: RestoreSignal, arg?: { tenantIds?: TenantId[] } | number): Promise<{ restoreId: string; signal: RestoreSignal; sent: true }> {
  const { handle, status } = await existingHandle(client, restoreId);
  if (status !== 'RUNNING') throw new UsageError(`restore ${restoreId} is not running (${status.toLowerCase()}); nothing to ${signal}.`);
  if (signal === 'pause') await handle.signal(pauseSignal);
  else if (signal === 'resume') await handle.signal(resumeSignal);
  else if (signal === 'cancel') await handle.signal(cancelSignal);
  else if (signal === 'approve') await handle.signal(approveSignal, (arg ?? {}) as { tenantIds?: TenantId[] });
  else await handle.signal(setConcurrencySignal, arg as number);
  return { restoreId, signal, sent: true };
}

export async function getReport(client: Client, restoreId: string): Promise<{ report: RestoreReport; markdown: string; location: string }> {
  const { memo } = await existingHandle(client, restoreId);
  const artifacts = memo.artifacts as string | undefined;
  if (!artifacts) throw new UsageError(`restore ${restoreId} has no artifacts location in its memo.`);
  const { bucket, key } = parseS3Url(`${artifacts}report.json`);
  const s3 = createS3Client();
  try {
    const report = await getJson<RestoreReport>(s3, { bucket, key });
    const markdown = await getText(s3, { bucket, key: key.replace(/report\.json$/, 'report.md') });
    return { report, markdown, location: `s3://${bucket}/${key}` };
  } catch (error) {
    if (isNotFound(error)) throw new UsageError(`restore ${restoreId} has no report yet (it is written when the restore ends): tenant-restore status ${restoreId}`);
    s3Unavailable(error);
  } finally {
    s3.destroy();
  }
}

/** The one JSON object `start --wait --json` prints. */
export interface WaitOutput {
  restoreId: string;
  status: BulkRestoreResult['status'];
  tenants: Array<{ tenantId: TenantId; status: string; rows: Record<string, number>; error?: string; group?: { workflowId: string; tenants: number } }>;
  total: number;
  restored: number;
  failed: number;
  /** Of the failed: tenants refused because they are still in live (TenantPresentError), with nothing written. */
  refused: number;
  cancelled: number;
  report?: { json: string; markdown: string };
  error?: string;
}

/** Waits for the end, calling `onProgress` about once a second, then joins the result with the report's tenants. */
export async function waitForRestore(client: Client, restoreId: string, onProgress?: (p: RestoreProgress) => void): Promise<WaitOutput> {
  const handle = client.workflow.getHandle(bulkWorkflowId(restoreId));
  let done = false;
  const poller = (async () => {
    while (!done && onProgress) {
      try {
        onProgress(await handle.query(progressQuery));
      } catch {
        // The run may be continuing-as-new, or just finished: the next poll or the result answers.
      }
      await new Promise((r) => setTimeout(r, 1000));
    }
  })();
  let result: BulkRestoreResult | undefined;
  let error: string | undefined;
  try {
    result = (await handle.result()) as BulkRestoreResult;
  } catch (e) {
    const failure = e as { cause?: { message?: string }; message: string };
    error = failure.cause?.message ?? failure.message;
  } finally {
    done = true;
    await poller;
  }
  let report: RestoreReport | undefined;
  try {
    report = (await getReport(client, restoreId)).report;
  } catch {
    report = undefined;
  }
  const tenants = (report?.tenants ?? []).map((t) => ({ tenantId: t.tenantId, status: t.status, rows: t.rows, ...(t.error ? { error: t.error } : {}), ...(t.group ? { group: t.group } : {}) }));
  return {
    restoreId,
    status: result?.status ?? 'failed',
    tenants,
    total: result?.total ?? report?.totals.tenants ?? 0,
    restored: result?.restored ?? 0,
    failed: result?.failed ?? 0,
    refused: tenants.filter((t) => t.error?.startsWith('TenantPresentError')).length,
    cancelled: result?.cancelled ?? 0,
    report: result?.report,
    ...(error ? { error } : {}),
  };
}

// ---------------------------------------------------------------------------------------------------------------
// progress display

export function progressLine(p: RestoreProgress, width = 30): string {
  const done = p.counts.restored + p.counts.failed + p.counts.cancelled;
  const fraction = p.total ? done / p.total : 0;
  const filled = Math.round(fraction * width);
  const bar = `${'#'.repeat(filled)}${'.'.repeat(width - filled)}`;
  const running = p.counts.preflight + p.counts.copy + p.counts.validate + p.counts.reenable;
  const parts = [
    `[${bar}] ${done}/${p.total}`,
    `restored ${p.counts.restored}`,
    `failed ${p.counts.failed}`,
    `running ${running} (preflight ${p.counts.preflight}, copy ${p.counts.copy}, validate ${p.counts.validate}, re-enable ${p.counts.reenable})`,
  ];
  if (p.counts['awaiting-approval']) parts.push(`awaiting approval ${p.counts['awaiting-approval']}`);
  if (p.counts.cancelled) parts.push(`cancelled ${p.counts.cancelled}`);
  parts.push(`phase ${p.phase}${p.paused ? ' (paused)' : ''}`, `concurrency ${p.concurrency}`);
  return parts.join(' | ');
}

/** Redraws one line on a terminal; elsewhere prints a line when it changes, at most every 5 s. */
export function progressPrinter(stream: NodeJS.WriteStream = process.stderr): { update: (p: RestoreProgress) => void; end: () => void } {
  let last = '';
  let lastAt = 0;
  return {
    update(p) {
      const line = progressLine(p);
      if (stream.isTTY) {
        stream.write(`\r\x1b[2K${line.slice(0, (stream.columns ?? 200) - 1)}`);
      } else if (line !== last && Date.now() - lastAt > 5000) {
        stream.write(`${line}\n`);
        lastAt = Date.now();
      }
      last = line;
    },
    end() {
      if (stream.isTTY && last) stream.write('\n');
    },
  };
}

export async function connectOrExit3<T>(connect: () => Promise<T>): Promise<T> {
  try {
    return await connect();
  } catch (error) {
    throw new ServiceUnavailableError(`Temporal is not reachable at ${process.env.TEMPORAL_ADDRESS ?? '127.0.0.1:7233'}: ${(error as Error).message}`);
  }
}
