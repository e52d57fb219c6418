/**
 * The controls of a running restore (pause, resume, cancel, approve, concurrency): a Workflow Update answered by the
 * restore, or a signal where no update handler can answer (cancel; no worker polling), and approved tenants checked
 * against the restore's list first.
 */
import type { Client, WorkflowHandle } from '@temporalio/client';
import { WorkflowUpdateFailedError, WorkflowUpdateRPCTimeoutOrCancelledError } from '@temporalio/client';
import type { TenantId } from '../../activities/restore-types';
import { sameTenantKey } from '../../activities/tenant-list';
import {
  approveSignal,
  approveUpdate,
  cancelSignal,
  pauseSignal,
  pauseUpdate,
  resumeSignal,
  resumeUpdate,
  setConcurrencySignal,
  setConcurrencyUpdate,
  type ApproveAck,
  type ControlAck,
} from '../../workflows/definitions';
import { noWorkerWarning, workflowPollers } from './connection';
import { ServiceUnavailableError, UsageError } from './errors';
import { existingHandle, restoreTenantList } from './restore';

export type RestoreControl = 'pause' | 'resume' | 'cancel' | 'approve' | 'setConcurrency';

export interface ControlResult {
  restoreId: string;
  control: RestoreControl;
  /**
   * 'update': the workflow checked the request and answered with what it accepted (`accepted`). 'signal': delivered,
   * not acknowledged (cancel; a restore no worker polls; a restore started by an earlier release). `note` says why.
   */
  delivery: 'update' | 'signal';
  accepted?: ControlAck | ApproveAck;
  note?: string;
}

/** How long a control waits for the workflow's answer; a worker takes it within a workflow task, well under this. */
const updateTimeoutMs = 15_000;

/**
 * pause, resume, approve and concurrency go as Workflow Updates: a validator in the workflow refuses what it would
 * ignore (a concurrency out of range, tenants not in the restore, a restore being cancelled: exit 2, nothing
 * changed), and the answer is the state the restore is in now. cancel stays a signal: it must land even when the
 * workflow is busy.
 */
export async function controlRestore(
  client: Client,
  restoreId: string,
  control: RestoreControl,
  arg?: { tenantIds?: TenantId[] } | number,
): Promise<ControlResult> {
  const { handle, status, memo, description } = await existingHandle(client, restoreId);
  if (status !== 'RUNNING')
    throw new UsageError(
      `restore ${restoreId} is not running (${status.toLowerCase()}); nothing to ${control === 'setConcurrency' ? 'change' : control}.`,
    );
  const listNote =
    control === 'approve' && typeof arg === 'object' && arg.tenantIds
      ? await refuseTenantsOutsideRestore(client, restoreId, memo.artifacts as string | undefined, arg.tenantIds)
      : undefined;
  const result = await deliver();
  return listNote ? { ...result, note: [result.note, listNote].filter(Boolean).join('; ') } : result;

  async function deliver(): Promise<ControlResult> {
    if (control === 'cancel') return signal(restoreId, handle, control, arg);
    if ((await workflowPollers(client, description.taskQueue).catch(() => 1)) === 0)
      return {
        ...(await signal(restoreId, handle, control, arg)),
        note: `${noWorkerWarning(description.taskQueue)} It was sent as a signal, which the restore applies when a worker runs it; no acknowledgement`,
      };
    try {
      const accepted = await client.withDeadline(Date.now() + updateTimeoutMs, () => update(handle, control, arg));
      return { restoreId, control, delivery: 'update', accepted };
    } catch (error) {
      if (error instanceof WorkflowUpdateFailedError) {
        const reason = (error.cause as Error | undefined)?.message ?? error.message;
        // A restore started by an earlier release has only the signals.
        if (/No registered handler for update/.test(reason))
          return {
            ...(await signal(restoreId, handle, control, arg)),
            note: 'this restore was started by an earlier release, which does not acknowledge controls: sent as a signal',
          };
        throw new UsageError(`${control} refused by restore ${restoreId}, nothing changed: ${reason}`);
      }
      if (error instanceof WorkflowUpdateRPCTimeoutOrCancelledError)
        throw new ServiceUnavailableError(
          `restore ${restoreId} did not answer the ${control} within ${updateTimeoutMs / 1000} s (its worker is busy or stopping): it may still apply; check with tenant-restore status ${restoreId}.`,
        );
      throw error;
    }
  }
}

export function update(
  handle: WorkflowHandle,
  control: Exclude<RestoreControl, 'cancel'>,
  arg: { tenantIds?: TenantId[] } | number | undefined,
): Promise<ControlAck | ApproveAck> {
  if (control === 'pause') return handle.executeUpdate(pauseUpdate);
  if (control === 'resume') return handle.executeUpdate(resumeUpdate);
  if (control === 'approve')
    return handle.executeUpdate(approveUpdate, { args: [(arg ?? {}) as { tenantIds?: TenantId[] }] });
  return handle.executeUpdate(setConcurrencyUpdate, { args: [arg as number] });
}

export async function signal(
  restoreId: string,
  handle: WorkflowHandle,
  control: RestoreControl,
  arg: { tenantIds?: TenantId[] } | number | undefined,
): Promise<ControlResult> {
  if (control === 'pause') await handle.signal(pauseSignal);
  else if (control === 'resume') await handle.signal(resumeSignal);
  else if (control === 'cancel') await handle.signal(cancelSignal);
  else if (control === 'approve') await handle.signal(approveSignal, (arg ?? {}) as { tenantIds?: TenantId[] });
  else await handle.signal(setConcurrencySignal, arg as number);
  return { restoreId, control, delivery: 'signal' };
}

/**
 * Approving a tenant the restore does not hold would be sent, accepted and ignored: the operator would believe a
 * tenant's billing was released. Ids outside the restore's list are refused, nothing sent.
 */
async function refuseTenantsOutsideRestore(
  client: Client,
  restoreId: string,
  artifacts: string | undefined,
  tenantIds: TenantId[],
): Promise<string | undefined> {
  const listed = await restoreTenantList(client, restoreId, artifacts);
  if (!listed) return "the restore's tenant list could not be read: the tenants were not checked against it";
  const inRestore = new Set(listed.map((id) => sameTenantKey(String(id))));
  const outside = tenantIds.filter((id) => !inRestore.has(sameTenantKey(id)));
  if (outside.length)
    throw new UsageError(
      `tenant(s) ${outside.join(', ')} are not in restore ${restoreId} (${listed.length} tenants): nothing was sent. ` +
        `Check the ids (tenant-restore report ${restoreId} lists the restore's tenants), then approve again.`,
    );
  return undefined;
}
