/**
 * Restore drills (workflows/restore-drill.ts), as plain functions behind `tenant-restore drill`. A drill restores K
 * tenants of the latest backup into a disposable database with live's schema, never into live, validates them, and
 * records the time to restore and the rows per second in `drills/<id>.json`.
 */
import { ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { WorkflowFailedError, type Client } from '@temporalio/client';
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
export * from './drill-schedule';

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
