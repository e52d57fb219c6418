/**
 * The previous release's child workflow types, kept registered so that the children it started finish: thin shims
 * over restoreUnit. Nothing of this release starts them (bulkRestore starts them only while replaying a run of the
 * previous release; see `patched('one-restore-unit')` there). Remove them once no restore of that release runs.
 */
import {
  ApplicationFailure,
  getExternalWorkflowHandle,
  patched,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import { restoreUnitInput, tenantRestoreInput } from '../activities/input-contract';
import type { TenantId } from '../activities/restore-types';
import { actions, bookkeeping } from './activity-options';
import {
  approveTenantSignal,
  RestorePhaseKey,
  tenantDoneSignal,
  tenantPhaseSignal,
  type RestoreUnitInput,
  type TenantOutcome,
  type TenantPhase,
  type TenantRestoreInput,
} from './definitions';
import { checkWorkflowInput } from './input-check';
import { runUnit, tellParent, unitIo, type UnitIo } from './restore-unit';

/** The previous release's group child: the same steps, messages and activities as a restore unit. */
export async function tenantGroupRestore(input: RestoreUnitInput): Promise<TenantOutcome[]> {
  checkWorkflowInput('tenantGroupRestore', restoreUnitInput, input);
  return runUnit(input, unitIo(input, 'previous-release-group'));
}

/**
 * The previous release's per-tenant child: a restore unit of one that speaks that release's messages (`tenantPhase`,
 * `tenantDone`, `approveTenant`) and runs its per-tenant activities (runReenableAction, recordTenantResult), in the
 * order it did, so that its histories replay. It fails its execution when the tenant fails, as it did.
 */
export async function tenantRestore(input: TenantRestoreInput): Promise<TenantOutcome> {
  checkWorkflowInput('tenantRestore', tenantRestoreInput, input);
  const { tenantId, restoreId } = input;
  const { parent } = workflowInfo();
  let current: TenantPhase = 'preflight';
  /** That release signalled `reenable` right before each action it ran, never ahead of an approval wait. */
  let reenablePending = false;
  const signal = async (phase: TenantPhase) => {
    current = phase;
    upsertSearchAttributes([{ key: RestorePhaseKey, value: phase }]);
    if (parent)
      await tellParent(() =>
        getExternalWorkflowHandle(parent.workflowId).signal(tenantPhaseSignal, { tenantId, phase }),
      );
  };
  const io: UnitIo = {
    partialInPlace: true,
    // That release's children signalled `preflight` first unless started after this patch.
    async begin() {
      if (!patched('child-skips-preflight-signal')) await signal('preflight');
    },
    // That release approved its per-tenant children by a signal that names no tenant.
    listen(approve) {
      setHandler(approveTenantSignal, () => approve([tenantId]));
    },
    async enter(_ids: TenantId[], phase) {
      if (phase === 'reenable') reenablePending = current !== 'reenable';
      else if (phase !== current) await signal(phase);
    },
    async runAction(_ids, action) {
      if (reenablePending) {
        reenablePending = false;
        await signal('reenable');
      }
      const done = await actions.runReenableAction({ restoreId, tenantId, live: input.live, action });
      return { attempts: done.attempts, detail: done.detail, rejected: [] };
    },
    async finished(result, tenants, outcomes) {
      const mine = tenants[0]!;
      upsertSearchAttributes([{ key: RestorePhaseKey, value: mine.status }]);
      await bookkeeping.recordTenantResult({ artifacts: input.artifacts, result: { ...result, ...mine } });
      if (parent)
        await tellParent(() => getExternalWorkflowHandle(parent.workflowId).signal(tenantDoneSignal, outcomes[0]!));
    },
    async ended(outcomes, cancelledBy) {
      if (cancelledBy) throw cancelledBy;
      const outcome = outcomes[0]!;
      if (outcome.status === 'failed')
        throw ApplicationFailure.nonRetryable(outcome.reason ?? 'failed', 'TenantRestoreFailed');
    },
  };
  const [outcome] = await runUnit(
    { ...input, tenantIds: [tenantId], approvedTenants: input.approved ? [tenantId] : [] },
    io,
  );
  return outcome!;
}
