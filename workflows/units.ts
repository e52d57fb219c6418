/**
 * A bulk restore's units (workflows/bulk-restore.ts): how many tenants go in the next one, and how it is started as a
 * restoreUnit child workflow.
 */
import { deprecatePatch, ParentClosePolicy, startChild } from '@temporalio/workflow';
import type { TenantId } from '../activities/restore-types';
import {
  RestoreIdKey,
  RestoreKindKey,
  RestorePhaseKey,
  TenantIdKey,
  unitWorkflowId,
  type BulkRestoreInput,
  type BulkRestoreState,
  type RestoreUnitInput,
  type TenantOutcome,
  type TenantPhase,
} from './definitions';
import { restoreUnit } from './restore-unit';

/** Tenant ids read from S3 at a time. */
export const pageSize = 500;

/**
 * Tenants in the next unit. With `unitRows` (units sized by rows): as many as `unitRows` rows hold at the rows per
 * tenant the finished units copied (state.rowsSeen), at least one; `groupSize` until a unit has finished. A unit never
 * spans two pages of the list, so it holds at most a page (500). Deterministic: rowsSeen comes from signals in history.
 */
export function unitSize(
  input: Pick<BulkRestoreInput, 'unitRows'>,
  state: Pick<BulkRestoreState, 'rowsSeen'>,
  groupSize: number,
): number {
  const seen = state.rowsSeen;
  if (!input.unitRows || !seen || seen.tenants === 0) return groupSize;
  const perTenant = seen.rows / seen.tenants;
  if (perTenant <= 0) return pageSize;
  return Math.max(1, Math.min(pageSize, Math.floor(input.unitRows / perTenant)));
}

/** The unit's share of the window: its tenants the window touched, those with conflicts, and the policy. */
function windowOfUnit(input: BulkRestoreInput, window: NonNullable<BulkRestoreState['window']>, tenantIds: TenantId[]) {
  const touched = new Set(window.touched);
  const conflicted = new Set(window.conflicted);
  return {
    touched: tenantIds.filter((id) => touched.has(id)),
    conflicted: tenantIds.filter((id) => conflicted.has(id)),
    refuseConflicts: input.windowConflicts !== 'report',
  };
}

/**
 * Starts the child workflow of one unit: `restore/<id>/tenant/<tenantId>` or `restore/<id>/group/<n>`, named by the
 * position of its first tenant (state.nextIndex). Children outlive a continue-as-new of this run; they report back by
 * signal.
 */
export function startUnit(
  input: BulkRestoreInput,
  state: BulkRestoreState,
  tenantIds: TenantId[],
  isApproved: (id: TenantId) => boolean,
): { workflowId: string; started: Promise<{ result(): Promise<TenantOutcome[]> }> } {
  const { restoreId } = input;
  const unitInput: RestoreUnitInput = {
    restoreId,
    scratch: state.scratch!.ref,
    ...(state.scratch!.pointInTime ? { scratchTaskQueue: state.scratch!.pointInTime.taskQueue } : {}),
    live: input.live,
    plan: state.plan!,
    conflict: input.conflict,
    chunkRows: input.config?.chunkRows,
    actions: input.config?.actions ?? [],
    artifacts: input.artifacts,
    allowPartial: input.allowPartial,
    tenantIds,
    approvedTenants: tenantIds.filter(isApproved),
    ...(state.window ? { window: windowOfUnit(input, state.window, tenantIds) } : {}),
  };
  // Runs before this patch started the previous release's child types; none was deployed (version 0.1.0), but the
  // histories of this release carry its marker: deprecated, not removed, so that they replay (Temporal's rule).
  deprecatePatch('one-restore-unit');
  const workflowId = unitWorkflowId(restoreId, tenantIds, state.nextIndex);
  for (const id of tenantIds) state.groupOf![id] = workflowId;
  const kind = tenantIds.length === 1 ? 'tenant' : 'group';
  return {
    workflowId,
    started: startChild(restoreUnit, {
      parentClosePolicy: ParentClosePolicy.ABANDON,
      workflowId,
      typedSearchAttributes: [
        { key: RestoreIdKey, value: restoreId },
        { key: RestoreKindKey, value: kind },
        ...(kind === 'tenant' ? [{ key: TenantIdKey, value: tenantIds[0]! }] : []),
        { key: RestorePhaseKey, value: 'preflight' as TenantPhase },
      ],
      args: [unitInput],
    }),
  };
}
