/**
 * What the operator asks of an existing restore: its status, a control (pause, resume, cancel, approve,
 * concurrency), its report. Each returns data; the commands print it. An unknown or finished restore is a UsageError (exit 2).
 */
import type { Client, WorkflowExecutionDescription, WorkflowHandle } from '@temporalio/client';
import { WorkflowNotFoundError } from '@temporalio/client';
import type { RestoreReport } from '../../activities/report';
import type { ObjectRef } from '../../activities/restore-types';
import { defaultPayloadConverter } from '@temporalio/common';
import { createS3Client, getJson, getText, parseS3Url } from '../../activities/s3';
import {
  bulkWorkflowId,
  progressQuery,
  RestorePhaseKey,
  TenantsFailedKey,
  TenantsRestoredKey,
  TenantsTotalKey,
  type BulkRestoreInput,
  type BulkRestoreResult,
  type RestoreProgress,
} from '../../workflows/definitions';
import { isNotFound, noWorkerWarning, s3Unavailable, webUiLink, workflowPollers } from './connection';
import { RestoreNotFoundError, UsageError } from './errors';
export * from './control';

export interface RestoreStatus {
  restoreId: string;
  workflowStatus: string;
  progress?: RestoreProgress;
  /**
   * A running restore that no worker polls: its progress cannot be asked (a query needs a worker), so these are the
   * counts its workflow last wrote into its search attributes, and `noWorker` says what to do.
   */
  searchAttributes?: { phase?: string; total?: number; restored?: number; failed?: number };
  noWorker?: string;
  result?: BulkRestoreResult;
  error?: string;
  artifacts?: string;
  webUi: string;
}

export async function existingHandle(
  client: Client,
  restoreId: string,
): Promise<{
  handle: WorkflowHandle;
  status: string;
  memo: Record<string, unknown>;
  description: WorkflowExecutionDescription;
}> {
  const handle = client.workflow.getHandle(bulkWorkflowId(restoreId));
  try {
    const description = await handle.describe();
    return {
      handle,
      status: description.status.name,
      memo: (description.memo ?? {}) as Record<string, unknown>,
      description,
    };
  } catch (error) {
    if (error instanceof WorkflowNotFoundError)
      throw new RestoreNotFoundError(`no restore with id '${restoreId}' (workflow ${bulkWorkflowId(restoreId)}).`);
    throw error;
  }
}

/** A query that no worker answers in this time is given up: the status then comes from the search attributes. */
const queryTimeoutMs = 10_000;

export async function getRestoreStatus(client: Client, restoreId: string): Promise<RestoreStatus> {
  const { handle, status, memo, description } = await existingHandle(client, restoreId);
  const base = {
    restoreId,
    workflowStatus: status,
    artifacts: memo.artifacts as string | undefined,
    webUi: webUiLink(restoreId),
  };
  if (status === 'RUNNING') {
    const attributes = description.typedSearchAttributes;
    const fromAttributes = () => ({
      phase: attributes.get(RestorePhaseKey),
      total: attributes.get(TenantsTotalKey),
      restored: attributes.get(TenantsRestoredKey),
      failed: attributes.get(TenantsFailedKey),
    });
    if ((await workflowPollers(client, description.taskQueue).catch(() => 1)) === 0)
      return { ...base, searchAttributes: fromAttributes(), noWorker: noWorkerWarning(description.taskQueue) };
    try {
      return {
        ...base,
        progress: await client.withDeadline(Date.now() + queryTimeoutMs, () => handle.query(progressQuery)),
      };
    } catch (error) {
      // A worker polls, but none answered in time (busy, or on its way out): what the search attributes say.
      return {
        ...base,
        searchAttributes: fromAttributes(),
        noWorker: `the progress query got no answer within ${queryTimeoutMs / 1000} s (${(error as Error).message}): counts from the search attributes`,
      };
    }
  }
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

/**
 * The input of the restore's current run, from the first event of its history: what it was started with (a run that
 * continued-as-new carries its list in S3, not inline). Works without a worker.
 */
export async function restoreInput(client: Client, restoreId: string): Promise<BulkRestoreInput | undefined> {
  const { history } = await client.workflowService.getWorkflowExecutionHistory({
    namespace: client.options.namespace,
    execution: { workflowId: bulkWorkflowId(restoreId) },
    maximumPageSize: 1,
  });
  const payload = history?.events?.[0]?.workflowExecutionStartedEventAttributes?.input?.payloads?.[0];
  return payload ? defaultPayloadConverter.fromPayload<BulkRestoreInput>(payload) : undefined;
}

/**
 * The restore's tenant list: `<artifacts>tenants.json`, which its first activity writes; until then, the list in the
 * input of its workflow (inline, or the uploaded object it names). Works without a worker.
 */
export async function restoreTenantList(
  client: Client,
  restoreId: string,
  artifacts: string | undefined,
): Promise<unknown[] | undefined> {
  const s3 = createS3Client();
  try {
    const read = async (ref: ObjectRef) => {
      try {
        return await getJson<unknown[]>(s3, ref);
      } catch (error) {
        if (isNotFound(error)) return undefined;
        s3Unavailable(error);
      }
    };
    const staged = artifacts ? await read(parseS3Url(`${artifacts}tenants.json`)) : undefined;
    if (staged) return staged;
    const input = await restoreInput(client, restoreId);
    return input?.tenants ?? (input?.tenantsObject ? await read(input.tenantsObject) : undefined);
  } finally {
    s3.destroy();
  }
}

export async function getReport(
  client: Client,
  restoreId: string,
): Promise<{ report: RestoreReport; markdown: string; location: string }> {
  const { memo } = await existingHandle(client, restoreId);
  const artifacts = memo.artifacts as string | undefined;
  if (!artifacts) throw new UsageError(`restore ${restoreId} has no artifacts location in its memo.`);
  return readReport(artifacts, restoreId);
}

/**
 * The artifacts folder of a restore from the `--artifacts` base a restore was started with (the same flag, or
 * TENANT_RESTORE_ARTIFACTS): `<base>/<restoreId>/`.
 */
export function artifactsOf(base: string, restoreId: string): string {
  if (!/^s3:\/\/[^/]+/.test(base)) throw new UsageError(`--artifacts '${base}' is not s3://<bucket>/<prefix>/.`);
  return `${base.endsWith('/') ? base : `${base}/`}${restoreId}/`;
}

/** The report in the artifacts folder `artifacts` (s3://bucket/prefix/), read from S3 alone. */
export async function readReport(
  artifacts: string,
  restoreId: string,
): Promise<{ report: RestoreReport; markdown: string; location: string }> {
  const { bucket, key } = parseS3Url(`${artifacts}report.json`);
  const s3 = createS3Client();
  try {
    const report = await getJson<RestoreReport>(s3, { bucket, key });
    const markdown = await getText(s3, { bucket, key: key.replace(/report\.json$/, 'report.md') });
    return { report, markdown, location: `s3://${bucket}/${key}` };
  } catch (error) {
    if (isNotFound(error))
      throw new UsageError(
        `restore ${restoreId} has no report at s3://${bucket}/${key} (it is written when the restore ends): tenant-restore status ${restoreId}`,
      );
    s3Unavailable(error);
  } finally {
    s3.destroy();
  }
}
