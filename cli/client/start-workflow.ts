/**
 * Starting the `bulkRestore` workflow of a checked request (start.ts builds it): what needs a service is checked
 * first (the source answers, the restore id was never used), then a long tenant list is uploaded and the workflow
 * starts.
 */
import type { Client } from '@temporalio/client';
import { WorkflowExecutionAlreadyStartedError, WorkflowNotFoundError } from '@temporalio/client';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import { createS3Client, putJson } from '../../activities/s3';
import {
  bulkWorkflowId,
  RestoreIdKey,
  RestoreKindKey,
  RestorePhaseKey,
  TenantsTotalKey,
  type BulkRestoreInput,
  type BulkRestoreResult,
} from '../../workflows/definitions';
import { s3Unavailable, webUiLink } from './connection';
import { UsageError } from './input';
import { checkSourceReachable, inOrder } from './source-reachable';
import type { StartRequest } from './start';

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
