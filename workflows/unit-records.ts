/**
 * A restore unit's outcomes and records (workflows/restore-unit.ts): each tenant's outcome as it finishes, recorded in
 * S3 with the evidence of the attempt that restored it and told to the parent; and, when the unit is cancelled, one
 * record for its tenants not yet finished.
 */
import { CancellationScope } from '@temporalio/workflow';
import type { TenantId } from '../activities/restore-types';
import type { RestoreUnitInput, TenantOutcome, TenantResult } from './definitions';
import { recordFinished, type TenantRecord } from './unit-messages';
import type { TenantActions } from './unit-reenable';
import type { Evidence, StepFailure } from './unit-steps';

/** One execution of a unit: its input, who is approved, the outcomes so far, and the attempt in progress. */
export interface UnitRun {
  input: RestoreUnitInput;
  workflowId: string;
  approved: Set<TenantId>;
  /** Every finished tenant's outcome. */
  outcomes: Map<TenantId, TenantOutcome>;
  /** The tenants restored right now as one unit, and what it has learned so far (recorded if it is cancelled). */
  current?: { ids: TenantId[]; evidence: Evidence; startedAt: number };
}

/**
 * How one attempt over `ids` finishes its tenants: each gets its outcome (a refusal, the attempt's failure, or its own
 * action's failure; restored otherwise), recorded with the attempt's evidence and told to the parent.
 */
export function tenantFinisher(
  run: UnitRun,
  ids: TenantId[],
  attempt: { evidence: Evidence; startedAt: number; failure?: StepFailure; refusals: Map<TenantId, StepFailure> },
): (done: TenantId[], own?: Map<TenantId, TenantActions>) => Promise<void> {
  const { evidence, startedAt, failure, refusals } = attempt;
  const grouped = ids.length > 1;
  // What the copy wrote is told to the parent once, with the first tenants that finish.
  let copiedTold = false;
  return async (done, own) => {
    const finishedAt = Date.now();
    const copied =
      evidence.copy && !copiedTold
        ? { rows: Object.values(evidence.copy.rows).reduce((a, b) => a + b, 0), tenants: ids.length }
        : undefined;
    copiedTold ||= copied !== undefined;
    const records: TenantRecord[] = done.map((tenantId) => {
      const mine = own?.get(tenantId);
      const error = refusals.get(tenantId) ?? failure ?? mine?.failure;
      const outcome: TenantOutcome = {
        tenantId,
        status: error ? 'failed' : 'restored',
        reason: error
          ? `${error.step}: ${error.type ? `${error.type}: ` : ''}${error.message}`.slice(0, 500)
          : undefined,
        rows: grouped || !evidence.copy ? undefined : Object.values(evidence.copy.rows).reduce((a, b) => a + b, 0),
      };
      run.outcomes.set(tenantId, outcome);
      return { tenantId, status: outcome.status, error, actions: mine?.actions ?? [] };
    });
    const result: TenantResult = {
      restoreId: run.input.restoreId,
      tenantId: done[0]!,
      status: 'restored',
      actions: [],
      ...evidence,
      durations: { ...evidence.durations, total: finishedAt - startedAt },
      startedAt,
      finishedAt,
      ...(grouped ? { group: { workflowId: run.workflowId, tenantIds: ids } } : {}),
    };
    await CancellationScope.nonCancellable(() =>
      recordFinished(
        run.input,
        result,
        records,
        done.map((id) => run.outcomes.get(id)!),
        copied,
      ),
    );
  };
}

/** Cancelled by the operator: a one-transaction copy rolled back; tenants not yet finished are cancelled. */
export async function recordCancelled(run: UnitRun): Promise<void> {
  const { input, outcomes, current, workflowId } = run;
  const cancelled = input.tenantIds.filter((id) => !outcomes.has(id));
  for (const id of cancelled) outcomes.set(id, { tenantId: id, status: 'cancelled', reason: 'cancelled by operator' });
  const now = Date.now();
  // What the unit in progress learned (a partial tenant's restored keys, say) stays in the record when it is the
  // cancelled tenants' own; one record for all cancelled tenants, as always.
  const own = current && cancelled.every((id) => current.ids.includes(id)) ? current : undefined;
  await CancellationScope.nonCancellable(() =>
    recordFinished(
      input,
      {
        restoreId: input.restoreId,
        tenantId: input.tenantIds[0]!,
        status: 'cancelled',
        actions: [],
        ...own?.evidence,
        durations: { ...own?.evidence.durations, total: now - (own?.startedAt ?? now) },
        startedAt: own?.startedAt ?? now,
        finishedAt: now,
        ...(own && own.ids.length > 1 ? { group: { workflowId, tenantIds: own.ids } } : {}),
      },
      cancelled.map((tenantId) => ({
        tenantId,
        status: 'cancelled',
        error: { type: 'Cancelled', message: 'cancelled by operator' },
        actions: [],
      })),
      cancelled.map((id) => outcomes.get(id)!),
    ),
  );
}
