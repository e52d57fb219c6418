import {
  ApplicationFailure,
  CancellationScope,
  condition,
  getExternalWorkflowHandle,
  isCancellation,
  log,
  patched,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import { admitTenants } from './admission';
import { actions, bookkeeping, copy, failureMessage, steps } from './tenant-steps';
import {
  approveTenantSignal,
  RestorePhaseKey,
  tenantDoneSignal,
  tenantPhaseSignal,
  tenantStatusQuery,
  type ActionOutcome,
  type TenantOutcome,
  type TenantPhase,
  type TenantRestoreInput,
  type TenantResult,
} from './definitions';

/**
 * tenantRestore: one tenant, preflight → copy → validate → re-enable. Invariants:
 * - Every step is an idempotent activity; a retry (crash, redeploy) converges to the same rows (I4).
 * - Rows never pass through this workflow: its payloads are ids, counts and digests (I5).
 * - A tenant is reported `restored` only after validation matched scratch and live (I3) and its actions ran.
 * - Whatever the outcome, it records its evidence in S3 and tells its parent (by workflow id, so the signal reaches
 *   the parent's current run after continue-as-new); a failure is this tenant's alone.
 * - Actions with `requiresApproval` wait for `approveTenant` (sent by the parent on `approve`).
 * - A tenant still in live (present, or partial without allowPartial) is refused after preflight: nothing of it is
 *   written, no action runs (workflows/admission.ts).
 */
export async function tenantRestore(input: TenantRestoreInput): Promise<TenantOutcome> {
  const { tenantId, restoreId } = input;
  const startedAt = Date.now();
  let phase: TenantPhase = 'preflight';
  let approved = input.approved;
  const parent = workflowInfo().parent;
  const result: TenantResult = { restoreId, tenantId, status: 'failed', actions: [], durations: {}, startedAt, finishedAt: startedAt };

  setHandler(approveTenantSignal, () => {
    approved = true;
  });
  setHandler(tenantStatusQuery, () => ({ tenantId, phase, approved }));

  /**
   * Moves to a phase: the child's own search attribute, and a signal to the parent (which counts tenants by phase,
   * and frees the window slot of a tenant waiting for approval).
   */
  async function enter(next: TenantPhase): Promise<void> {
    phase = next;
    upsertSearchAttributes([{ key: RestorePhaseKey, value: next }]);
    if (parent) await tellParent(() => getExternalWorkflowHandle(parent.workflowId).signal(tenantPhaseSignal, { tenantId, phase: next }));
  }

  /** A parent that is gone (terminated, or a test running this workflow alone) is not this tenant's failure. */
  async function tellParent(send: () => Promise<void>): Promise<void> {
    try {
      await send();
    } catch (error) {
      if (isCancellation(error)) throw error;
      log.warn('could not signal the parent', { tenantId, error: (error as Error).message });
    }
  }

  async function timed<T>(name: keyof TenantResult['durations'], fn: () => Promise<T>): Promise<T> {
    const t0 = Date.now();
    try {
      return await fn();
    } finally {
      result.durations[name] = (result.durations[name] ?? 0) + (Date.now() - t0);
    }
  }

  const stepInput = { restoreId, scratch: input.scratch, live: input.live, plan: input.plan, tenantId, conflict: input.conflict };
  let step = 'preflight';
  let cancelledBy: unknown;
  try {
    // Already 'preflight': the parent set it, with the search attribute, when it started this child. Children
    // started before this change signalled it; they keep doing so on replay.
    if (!patched('child-skips-preflight-signal')) await enter('preflight');
    result.preflight = await timed('preflight', () => steps.preflightTenantRestore(stepInput));
    // A tenant still in live is refused here, before anything of it is written; a partial one the operator allowed
    // gets its missing rows only (policy skip: no existing row is updated).
    // Gated: a worker of the previous release may have run this workflow's task before a preflight result said who is in live.
    const admitting = patched('tenant-admission');
    const admission = admitTenants(admitting ? result.preflight : { ...result.preflight, tenants: undefined }, [tenantId], { allowPartial: input.allowPartial });
    if (admission.refused.length) throw ApplicationFailure.nonRetryable(admission.refused[0]!.message, 'TenantPresentError');
    const dataInput = admission.partial.length ? { ...stepInput, conflict: 'skip' as const, partial: true, artifacts: input.artifacts } : stepInput;
    const expectAbsent = admitting && result.preflight.tenants?.[tenantId]?.state === 'absent' ? [tenantId] : undefined;

    step = 'copy';
    await enter('copy');
    result.copy = await timed('copy', () => copy.copyTenantRows({ ...dataInput, chunkRows: input.chunkRows, ...(expectAbsent ? { expectAbsent } : {}) }));

    step = 'validate';
    await enter('validate');
    result.validation = await timed('validate', () => steps.validateTenantRows(dataInput));
    if (!result.validation.ok) {
      const bad = result.validation.tables.filter((t) => !t.match).map((t) => `${t.table} (scratch ${t.scratchCount}, live ${t.liveCount})`);
      const orphans = result.validation.orphans.map((o) => `${o.rows} orphan(s) on ${o.constraint}`);
      throw ApplicationFailure.nonRetryable(`Validation failed: ${[...bad, ...orphans].join('; ')}`, 'ValidationFailed');
    }

    step = 'reenable';
    for (const action of input.actions) {
      if (action.requiresApproval && !approved) {
        await enter('awaiting-approval');
        log.info('waiting for approval', { tenantId, action: action.name });
        await timed('approvalWait', () => condition(() => approved));
      }
      if ((phase as TenantPhase) !== 'reenable') await enter('reenable');
      const t0 = Date.now();
      try {
        const done = await timed('reenable', () => actions.runReenableAction({ restoreId, tenantId, live: input.live, action }));
        result.actions.push({ name: action.name, type: action.type, status: 'done', attempts: done.attempts, detail: done.detail, durationMs: Date.now() - t0 } satisfies ActionOutcome);
      } catch (error) {
        if (isCancellation(error)) throw error;
        result.actions.push({ name: action.name, type: action.type, status: 'failed', detail: failureMessage(error).message, durationMs: Date.now() - t0 });
        throw ApplicationFailure.nonRetryable(`Re-enable action ${action.name} failed: ${failureMessage(error).message}`, 'ReenableFailed');
      }
    }
    result.status = 'restored';
    phase = 'restored';
  } catch (error) {
    const cancelled = isCancellation(error);
    if (cancelled) cancelledBy = error;
    result.status = cancelled ? 'cancelled' : 'failed';
    const { type, message } = failureMessage(error);
    result.error = cancelled ? { type: 'Cancelled', message: 'cancelled by operator', step } : { type, message, step };
    phase = result.status;
  }

  result.finishedAt = Date.now();
  result.durations.total = result.finishedAt - startedAt;
  const outcome: TenantOutcome = {
    tenantId,
    status: result.status,
    reason: result.error ? `${result.error.step}: ${result.error.type ? `${result.error.type}: ` : ''}${result.error.message}`.slice(0, 500) : undefined,
    rows: result.copy ? Object.values(result.copy.rows).reduce((a, b) => a + b, 0) : undefined,
  };
  // Evidence and the parent's bookkeeping must happen even when this tenant was cancelled.
  await CancellationScope.nonCancellable(async () => {
    upsertSearchAttributes([{ key: RestorePhaseKey, value: result.status }]);
    await bookkeeping.recordTenantResult({ artifacts: input.artifacts, result });
    if (parent) await tellParent(() => getExternalWorkflowHandle(parent.workflowId).signal(tenantDoneSignal, outcome));
  });
  // The execution's own status says it too, so the Web UI can list failed tenants.
  if (cancelledBy) throw cancelledBy;
  if (result.status === 'failed') throw ApplicationFailure.nonRetryable(outcome.reason ?? 'failed', 'TenantRestoreFailed');
  return outcome;
}
