/**
 * What the operator asks of an existing restore: its status, a signal (pause, resume, cancel, approve, concurrency),
 * its report. Each returns data; the commands print it. An unknown or finished restore is a UsageError (exit 2).
 */
import type { Client, WorkflowHandle } from '@temporalio/client';
import { WorkflowNotFoundError } from '@temporalio/client';
import type { RestoreReport } from '../../activities/report';
import type { TenantId } from '../../activities/restore-types';
import { createS3Client, getJson, getText, parseS3Url } from '../../activities/s3';
import {
  approveSignal,
  bulkWorkflowId,
  cancelSignal,
  pauseSignal,
  progressQuery,
  resumeSignal,
  setConcurrencySignal,
  type BulkRestoreResult,
  type RestoreProgress,
} from '../../workflows/definitions';
import { isNotFound, s3Unavailable, webUiLink } from './connection';
import { UsageError } from './input';

export interface RestoreStatus {
  restoreId: string;
  workflowStatus: string;
  progress?: RestoreProgress;
  result?: BulkRestoreResult;
  error?: string;
  artifacts?: string;
  webUi: string;
}

async function existingHandle(
  client: Client,
  restoreId: string,
): Promise<{ handle: WorkflowHandle; status: string; memo: Record<string, unknown> }> {
  const handle = client.workflow.getHandle(bulkWorkflowId(restoreId));
  try {
    const description = await handle.describe();
    return { handle, status: description.status.name, memo: (description.memo ?? {}) as Record<string, unknown> };
  } catch (error) {
    if (error instanceof WorkflowNotFoundError)
      throw new UsageError(`no restore with id '${restoreId}' (workflow ${bulkWorkflowId(restoreId)}).`);
    throw error;
  }
}

export async function getRestoreStatus(client: Client, restoreId: string): Promise<RestoreStatus> {
  const { handle, status, memo } = await existingHandle(client, restoreId);
  const base = {
    restoreId,
    workflowStatus: status,
    artifacts: memo.artifacts as string | undefined,
    webUi: webUiLink(restoreId),
  };
  if (status === 'RUNNING') return { ...base, progress: await handle.query(progressQuery) };
  try {
    return { ...base, result: (await handle.result()) as BulkRestoreResult };
  } catch (error) {
    return { ...base, error: restoreFailureMessage(error) };
  }
}

/** Why a restore's workflow failed: the message of its cause (the workflow's error), not the SDK's wrapper. */
export function restoreFailureMessage(error: unknown): string {
  const e = error as { cause?: { message?: string }; message: string };
  return e.cause?.message ?? e.message;
}

export type RestoreSignal = 'pause' | 'resume' | 'cancel' | 'approve' | 'setConcurrency';

export async function signalRestore(
  client: Client,
  restoreId: string,
  signal: RestoreSignal,
  arg?: { tenantIds?: TenantId[] } | number,
): Promise<{ restoreId: string; signal: RestoreSignal; sent: true }> {
  const { handle, status } = await existingHandle(client, restoreId);
  if (status !== 'RUNNING')
    throw new UsageError(`restore ${restoreId} is not running (${status.toLowerCase()}); nothing to ${signal}.`);
  if (signal === 'pause') await handle.signal(pauseSignal);
  else if (signal === 'resume') await handle.signal(resumeSignal);
  else if (signal === 'cancel') await handle.signal(cancelSignal);
  else if (signal === 'approve') await handle.signal(approveSignal, (arg ?? {}) as { tenantIds?: TenantId[] });
  else await handle.signal(setConcurrencySignal, arg as number);
  return { restoreId, signal, sent: true };
}

export async function getReport(
  client: Client,
  restoreId: string,
): Promise<{ report: RestoreReport; markdown: string; location: string }> {
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
    if (isNotFound(error))
      throw new UsageError(
        `restore ${restoreId} has no report yet (it is written when the restore ends): tenant-restore status ${restoreId}`,
      );
    s3Unavailable(error);
  } finally {
    s3.destroy();
  }
}
