/**
 * restoreUnit: the child workflow of a bulk restore. This file holds its shape and its split policy; the steps are in
 * workflows/unit-steps.ts, the re-enable waves in unit-reenable.ts, outcomes and records in unit-records.ts, and its
 * messages in unit-messages.ts.
 */
import { CancellationScope, isCancellation, log, patched, setHandler, workflowInfo } from '@temporalio/workflow';
import { restoreUnitInput } from '../activities/input-contract';
import type { TenantId } from '../activities/restore-types';
import type { Admission } from './admission';
import { approveUnitTenantsSignal, type RestoreUnitInput, type TenantOutcome, type UnitOptions } from './definitions';
import { checkWorkflowInput } from './input-check';
import { endUnit, enterPhase } from './unit-messages';
import { recordCancelled, tenantFinisher, type UnitRun } from './unit-records';
import { reenable } from './unit-reenable';
import { dataSteps, type Evidence, type StepFailure } from './unit-steps';

/** The patch of issue 23 item 4: admission on evidence of this restore's own writes, not on having got past preflight. */
const oneRestoreAtATime = 'one-restore-at-a-time';

/** The patch of issue 25: a failed unit of more than `bisectAbove` tenants is halved instead of split into singles. */
const bisectFailedUnits = 'bisect-failed-units';
const bisectAbove = 4;

/**
 * restoreUnit: N ≥ 1 tenants, preflight → copy → validate → re-enable, each step one activity over the whole unit
 * (set-based SQL, one copy transaction for the unit). A restore of a few thousand rows spends most of its time in
 * fixed costs (a Temporal round trip and a dozen queries per step); a unit pays them once for its tenants.
 * Invariants:
 * - Every step is an idempotent activity; a retry (crash, redeploy) converges to the same rows (I4). Rows never pass
 *   through this workflow: its payloads are ids, counts and digests (I5).
 * - All or nothing per unit: the copy is one transaction (unless chunked), so a failure leaves none of its rows.
 * - One tenant's failure never stops the others: when a data step of a unit of several fails (a tenant missing from the
 *   backup, a key another tenant holds, a validation mismatch...), its tenants are restored again as units of one,
 *   through this same code, and only the tenants that fail alone are reported failed.
 * - A tenant still in live (present, or partial without allowPartial) is refused after preflight, before anything of
 *   it is written; the others go on (workflows/admission.ts).
 * - A tenant is `restored` only after validation matched scratch and live (I3) and its actions ran. Held actions run
 *   in waves as tenants are approved, so one tenant waiting for approval holds back no other.
 * - Each tenant is recorded in S3 and signalled to the parent (by workflow id, so the signal reaches the parent's
 *   current run after continue-as-new) as it finishes, whatever the outcome; the evidence of a unit of several is the
 *   unit's, marked with it, and the report counts it once.
 * - The execution ends as its tenants did: Failed when every tenant failed, Cancelled when cancelled (the Web UI lists
 *   them so); Completed otherwise, with each tenant's outcome in its result.
 */
export async function restoreUnit(input: RestoreUnitInput): Promise<TenantOutcome[]> {
  checkWorkflowInput('restoreUnit', restoreUnitInput, input);
  const run: UnitRun = {
    input,
    workflowId: workflowInfo().workflowId,
    approved: new Set<TenantId>(input.approvedTenants),
    outcomes: new Map<TenantId, TenantOutcome>(),
  };
  setHandler(approveUnitTenantsSignal, ({ tenantIds: ids }) => ids.forEach((id) => run.approved.add(id)));
  let cancelledBy: unknown;
  try {
    await restoreTenants(run, input.tenantIds, {});
  } catch (error) {
    if (!isCancellation(error)) throw error;
    cancelledBy = error;
    await recordCancelled(run);
  }
  const all = input.tenantIds.map((id) => run.outcomes.get(id)!);
  await CancellationScope.nonCancellable(() => endUnit(all, cancelledBy));
  return all;
}

/**
 * Restores `ids` as one unit. Returns the failure of a data step of several tenants (the caller splits them), or
 * the admission of a unit that must be reshaped (its refused tenants are already finished here); otherwise every
 * tenant's outcome is recorded and told as the tenant finishes.
 */
async function restoreOnce(
  run: UnitRun,
  ids: TenantId[],
  opts: UnitOptions,
): Promise<{ failure?: StepFailure; reshape?: Admission; preflighted: boolean; wrote?: boolean }> {
  const startedAt = Date.now();
  const evidence: Evidence = { durations: {} };
  run.current = { ids, evidence, startedAt };
  const { failure, admission, wrote } = await dataSteps(run.input, ids, opts, evidence);
  const preflighted = evidence.preflight !== undefined;
  // A failure of several tenants is split by the caller, except an emptied scratch (ScratchResetError): every smaller
  // unit would meet it too, so the unit's tenants end failed here, with what to do.
  if (failure && ids.length > 1 && failure.type !== 'ScratchResetError') return { failure, preflighted, wrote };
  const refusals = new Map<TenantId, StepFailure>(
    (admission?.refused ?? []).map((r) => [
      r.tenantId,
      { step: 'preflight', type: r.type ?? 'TenantPresentError', message: r.message },
    ]),
  );
  const finished = tenantFinisher(run, ids, { evidence, startedAt, failure, refusals });
  if (admission) {
    // Refused tenants end here, with nothing of theirs written; the others go on in units the caller makes.
    if (refusals.size) await finished([...refusals.keys()]);
    return { reshape: admission, preflighted };
  }
  // Billing and apps are switched back on only for tenants whose root came back: not for a window's tenant whose
  // root stayed in live (its rows were set back, it was never switched off).
  if (failure || (run.input.window && opts.partial)) await finished(ids);
  else await reenable(run.input, run.approved, ids, finished);
  return { preflighted };
}

/**
 * Restores `ids`: as one unit, reshaped after preflight when some tenants must not go on with it (refused ones end,
 * absent ones go on together, each allowed partial tenant goes alone), and split when a data step of several fails.
 */
async function restoreTenants(run: UnitRun, ids: TenantId[], opts: UnitOptions): Promise<void> {
  const unit = await restoreOnce(run, ids, opts);
  if (unit.reshape) {
    const { absent, partial } = unit.reshape;
    // Nothing was written by the unit being reshaped: its absent tenants are not this restore's, and are classified
    // (and checked under the lock) again; only tenants admitted on evidence before stay admitted.
    const evidenceBased = patched(oneRestoreAtATime);
    const admitted = evidenceBased ? absent.filter((id) => opts.admitted?.includes(id)) : absent;
    if (absent.length) await restoreTenants(run, absent, { admitted });
    for (const id of partial) await restoreTenants(run, [id], { admitted: [id], partial: true });
    return;
  }
  if (!unit.failure) return;
  log.warn('unit failed; restoring its tenants one at a time', {
    unit: run.workflowId,
    step: unit.failure.step,
    type: unit.failure.type,
    tenants: ids.length,
  });
  // Tenants this unit's own copy wrote (it completed, or failed for good after a commit) may be present now, by this
  // restore's hand: admitted. Any other tenant is not this restore's: classified, and checked under the lock, again.
  // Histories of the release before that admitted every tenant of a unit that got past preflight.
  const admitted = new Set(
    patched(oneRestoreAtATime)
      ? unit.wrote
        ? ids
        : (opts.admitted ?? [])
      : unit.preflighted && unit.failure.type !== 'TenantPresentError'
        ? ids
        : (opts.admitted ?? []),
  );
  // A large unit is halved (each half a unit, halved again if it fails): a bad tenant among n costs about 2·log2(n)
  // unit attempts, not n. Histories of the release before this one split into units of one.
  const parts =
    ids.length > bisectAbove && patched(bisectFailedUnits)
      ? [ids.slice(0, Math.ceil(ids.length / 2)), ids.slice(Math.ceil(ids.length / 2))]
      : ids.map((id) => [id]);
  for (const part of parts) {
    await enterPhase(part, 'preflight');
    await restoreTenants(run, part, { admitted: part.filter((id) => admitted.has(id)), partial: opts.partial });
  }
}
