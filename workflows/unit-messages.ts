/**
 * How a restore unit talks to the world (workflows/restore-unit.ts): its search attribute and its parent, its actions,
 * and its record in S3. The parent is told by workflow id, so that a signal reaches its current run after
 * continue-as-new.
 */
import {
  ApplicationFailure,
  getExternalWorkflowHandle,
  isCancellation,
  log,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { ReenableAction, TenantId } from '../activities/restore-types';
import { bookkeeping, unitActions } from './activity-options';
import {
  RestorePhaseKey,
  unitDoneSignal,
  unitPhaseSignal,
  type RestoreUnitInput,
  type TenantOutcome,
  type TenantPhase,
  type TenantResult,
} from './definitions';

/** What the record activity keeps of each tenant beside the unit's evidence. */
export type TenantRecord = Pick<TenantResult, 'tenantId' | 'status' | 'error' | 'actions'>;

/** A parent that is gone (terminated, or a test running this workflow alone) is not this unit's failure. */
async function tellParent(send: () => Promise<void>): Promise<void> {
  try {
    await send();
  } catch (error) {
    if (isCancellation(error)) throw error;
    log.warn('could not signal the parent', { workflowId: workflowInfo().workflowId, error: (error as Error).message });
  }
}

/** The unit's tenants `ids` move to `phase`: the search attribute, and the parent's count of tenants by phase. */
export async function enterPhase(ids: TenantId[], phase: TenantPhase): Promise<void> {
  const { parent } = workflowInfo();
  upsertSearchAttributes([{ key: RestorePhaseKey, value: phase }]);
  if (parent)
    await tellParent(() =>
      getExternalWorkflowHandle(parent.workflowId).signal(unitPhaseSignal, { tenantIds: ids, phase }),
    );
}

/** Runs one action for `ids`; tenants whose call was refused for good are returned in `rejected`. */
export function runAction(input: RestoreUnitInput, ids: TenantId[], action: ReenableAction) {
  return unitActions.runReenableActionForTenants({
    restoreId: input.restoreId,
    tenantIds: ids,
    live: input.live,
    action,
  });
}

/**
 * Records finished tenants in S3 (with the unit's evidence) and tells the parent their outcomes, and once per copy
 * what it copied (`copied`: rows and tenants, which size the parent's next units).
 */
export async function recordFinished(
  input: RestoreUnitInput,
  result: TenantResult,
  tenants: TenantRecord[],
  outcomes: TenantOutcome[],
  copied?: { rows: number; tenants: number },
): Promise<void> {
  const { parent } = workflowInfo();
  await bookkeeping.recordGroupResults({ artifacts: input.artifacts, result, tenants });
  if (parent)
    await tellParent(() =>
      getExternalWorkflowHandle(parent.workflowId).signal(unitDoneSignal, {
        outcomes,
        ...(copied ? { copied } : {}),
      }),
    );
}

/**
 * After every tenant finished: the unit's final search attribute, and its execution ends as its tenants did, so that
 * the Web UI lists a unit whose every tenant failed as Failed and a cancelled one (`cancelledBy`) as Cancelled.
 */
export async function endUnit(outcomes: TenantOutcome[], cancelledBy?: unknown): Promise<void> {
  const failed = outcomes.filter((o) => o.status !== 'restored').length;
  upsertSearchAttributes([
    {
      key: RestorePhaseKey,
      value: failed === 0 ? 'restored' : failed === outcomes.length ? outcomes[0]!.status : 'partial',
    },
  ]);
  if (cancelledBy) throw cancelledBy;
  if (outcomes.every((o) => o.status === 'failed')) {
    const reason =
      outcomes.length === 1
        ? (outcomes[0]!.reason ?? 'failed')
        : `all ${outcomes.length} tenants failed; the first: ${outcomes[0]!.reason ?? 'failed'}`;
    throw ApplicationFailure.nonRetryable(reason, 'TenantRestoreFailed');
  }
}
