import {
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
import type { TenantId } from '../activities/restore-types';
import {
  approveGroupTenantsSignal,
  groupDoneSignal,
  groupPhaseSignal,
  RestorePhaseKey,
  type ActionOutcome,
  type TenantGroupInput,
  type TenantOutcome,
  type TenantPhase,
  type TenantResult,
  type UnitOptions,
} from './definitions';
import { admitTenants, mustReshape, type Admission } from './admission';
import { bookkeeping, copy, failureMessage, groupActions, steps } from './tenant-steps';

type Evidence = Pick<TenantResult, 'preflight' | 'copy' | 'validation' | 'durations'>;
type StepFailure = { step: string; type?: string; message: string };

/**
 * tenantGroupRestore: a group of small tenants, preflight → copy → validate → re-enable, each step one activity over
 * the whole group (set-based SQL, one copy transaction for the group). Per tenant, a restore of a few thousand rows
 * spends most of its time in fixed costs (a Temporal round trip and a dozen queries per step); a group pays them once.
 * Invariants, beyond tenantRestore's:
 * - All or nothing per group: the copy is one transaction, so a failure leaves none of the group's rows behind.
 * - One tenant's failure never stops the others: when a data step of the group fails (a tenant missing from the
 *   backup, a key another tenant holds, a validation mismatch...), the group's tenants are restored again one at a
 *   time, and only the tenants that fail alone are reported failed. The copy is idempotent, so a tenant already
 *   written by the group's copy converges to the same rows.
 * - The evidence (counts, checksums, orphans) of a group is the group's: every tenant's report file carries it,
 *   marked with the group, and the report counts it once.
 * - Held actions run per tenant as each tenant is approved, so one tenant waiting for approval holds back no other.
 * - A tenant still in live (present, or partial without allowPartial) is refused after the unit's preflight, before
 *   anything of it is written; the others go on (workflows/admission.ts).
 */
export async function tenantGroupRestore(input: TenantGroupInput): Promise<TenantOutcome[]> {
  const { restoreId, tenantIds } = input;
  const { workflowId, parent } = workflowInfo();
  const approved = new Set<TenantId>(input.approvedTenants);
  const outcomes = new Map<TenantId, TenantOutcome>();
  setHandler(approveGroupTenantsSignal, ({ tenantIds: ids }) => {
    for (const id of ids) approved.add(id);
  });

  async function enter(ids: TenantId[], phase: TenantPhase): Promise<void> {
    upsertSearchAttributes([{ key: RestorePhaseKey, value: phase }]);
    if (parent) await tellParent(() => getExternalWorkflowHandle(parent.workflowId).signal(groupPhaseSignal, { tenantIds: ids, phase }));
  }

  async function tellParent(send: () => Promise<void>): Promise<void> {
    try {
      await send();
    } catch (error) {
      if (isCancellation(error)) throw error;
      log.warn('could not signal the parent', { group: workflowId, error: (error as Error).message });
    }
  }

  /**
   * Preflight, copy and validate of `ids` as one unit. Returns the evidence, or the step that failed and why, or (after
   * preflight, before anything is written) the admission when some tenants cannot go on with this unit.
   */
  async function dataSteps(ids: TenantId[], opts: UnitOptions): Promise<{ evidence: Evidence; failure?: StepFailure; admission?: Admission }> {
    const evidence: Evidence = { durations: {} };
    const stepInput = {
      restoreId, scratch: input.scratch, live: input.live, plan: input.plan, tenantId: ids[0]!, tenantIds: ids,
      // A partial tenant gets its missing rows only: no policy may update a row its users kept.
      conflict: opts.partial ? 'skip' as const : input.conflict,
      ...(opts.partial ? { partial: true, artifacts: input.artifacts } : {}),
    };
    // A group's preflight checks only presence (in the backup, in live): its copy repeats every key check inside its
    // transaction and reports the conflicts, so the full check would only be paid twice. A tenant alone gets the full one.
    const preflightInput = { ...stepInput, preflightChecks: ids.length > 1 ? 'state' as const : 'full' as const };
    let step = 'preflight';
    const timed = async <T>(name: 'preflight' | 'copy' | 'validate', fn: () => Promise<T>): Promise<T> => {
      const t0 = Date.now();
      try {
        return await fn();
      } finally {
        evidence.durations[name] = Date.now() - t0;
      }
    };
    try {
      evidence.preflight = await timed('preflight', () => steps.preflightTenantRestore(preflightInput));
      // Gated: a worker of the previous release may have run this workflow's task before a preflight result said who is in live.
      const admitting = patched('tenant-admission');
      const preflight = admitting ? evidence.preflight : { ...evidence.preflight, tenants: undefined };
      const admission = admitTenants(preflight, ids, { allowPartial: input.allowPartial, admitted: opts.admitted });
      if (mustReshape(admission, opts.partial ?? false)) return { evidence, admission };
      const expectAbsent = ids.filter((id) => preflight.tenants?.[id]?.state === 'absent' && !opts.admitted?.includes(id));
      step = 'copy';
      await enter(ids, 'copy');
      evidence.copy = await timed('copy', () => copy.copyTenantRows({ ...stepInput, chunkRows: input.chunkRows, ...(expectAbsent.length ? { expectAbsent } : {}) }));
      step = 'validate';
      await enter(ids, 'validate');
      evidence.validation = await timed('validate', () => steps.validateTenantRows(stepInput));
      if (!evidence.validation.ok) {
        const bad = evidence.validation.tables.filter((t) => !t.match).map((t) => `${t.table} (scratch ${t.scratchCount}, live ${t.liveCount})`);
        const orphans = evidence.validation.orphans.map((o) => `${o.rows} orphan(s) on ${o.constraint}`);
        return { evidence, failure: { step, type: 'ValidationFailed', message: `Validation failed: ${[...bad, ...orphans].join('; ')}` } };
      }
      return { evidence };
    } catch (error) {
      if (isCancellation(error)) throw error;
      return { evidence, failure: { step, ...failureMessage(error) } };
    }
  }

  type TenantActions = { actions: ActionOutcome[]; failure?: StepFailure };

  /**
   * The configured actions for `ids`, in order. Actions before the first held one run for all; from the held one on,
   * they run in waves, for the tenants approved so far. `finished` is called for tenants as they finish (each wave,
   * and the tenants an action rejected), so that the parent counts them at once.
   */
  async function reenable(ids: TenantId[], finished: (ids: TenantId[], own: Map<TenantId, TenantActions>) => Promise<void>): Promise<void> {
    const perTenant = new Map<TenantId, TenantActions>(ids.map((id) => [id, { actions: [] }]));
    const run = async (wave: TenantId[], from: number, to: number): Promise<TenantId[]> => {
      let alive = wave;
      for (const action of input.actions.slice(from, to)) {
        if (alive.length === 0) break;
        const t0 = Date.now();
        try {
          const done = await groupActions.runReenableActionForTenants({ restoreId, tenantIds: alive, live: input.live, action });
          const rejected = new Map(done.rejected.map((r) => [r.tenantId, r.message]));
          for (const id of alive) {
            const t = perTenant.get(id)!;
            const message = rejected.get(id);
            if (message === undefined) {
              t.actions.push({ name: action.name, type: action.type, status: 'done', attempts: done.attempts, detail: done.detail, durationMs: Date.now() - t0 });
            } else {
              t.actions.push({ name: action.name, type: action.type, status: 'failed', detail: message, durationMs: Date.now() - t0 });
              t.failure = { step: 'reenable', type: 'ReenableFailed', message: `Re-enable action ${action.name} failed: ${message}` };
            }
          }
          alive = alive.filter((id) => !rejected.has(id));
        } catch (error) {
          if (isCancellation(error)) throw error;
          const { message } = failureMessage(error);
          for (const id of alive) {
            const t = perTenant.get(id)!;
            t.actions.push({ name: action.name, type: action.type, status: 'failed', detail: message, durationMs: Date.now() - t0 });
            t.failure = { step: 'reenable', type: 'ReenableFailed', message: `Re-enable action ${action.name} failed: ${message}` };
          }
          alive = [];
        }
      }
      return alive;
    };
    const held = input.actions.findIndex((a) => a.requiresApproval);
    if (input.actions.length) await enter(ids, 'reenable');
    const passed = await run(ids, 0, held === -1 ? input.actions.length : held);
    const failedEarly = ids.filter((id) => !passed.includes(id));
    if (held === -1 || failedEarly.length) await finished(held === -1 ? ids : failedEarly, perTenant);
    if (held === -1) return;
    let waiting = passed;
    while (waiting.length) {
      const unapproved = waiting.filter((id) => !approved.has(id));
      if (unapproved.length) {
        await enter(unapproved, 'awaiting-approval');
        log.info('waiting for approval', { group: workflowId, tenants: unapproved.length });
      }
      await condition(() => waiting.some((id) => approved.has(id)));
      const wave = waiting.filter((id) => approved.has(id));
      waiting = waiting.filter((id) => !approved.has(id));
      await enter(wave, 'reenable');
      await run(wave, held, input.actions.length);
      await finished(wave, perTenant);
    }
  }

  /**
   * Restores `ids` as one unit. Returns the failure of a group's data step (the caller splits the group), or the
   * admission of a unit that must be reshaped (its refused tenants are already finished here); otherwise every
   * tenant's outcome is recorded in S3 and signalled to the parent as the tenant finishes.
   */
  async function restoreUnit(ids: TenantId[], grouped: boolean, opts: UnitOptions): Promise<{ failure?: StepFailure; reshape?: Admission; preflighted: boolean }> {
    const startedAt = Date.now();
    const { evidence, failure, admission } = await dataSteps(ids, opts);
    const preflighted = evidence.preflight !== undefined;
    if (failure && grouped) return { failure, preflighted };
    const refusals = new Map<TenantId, StepFailure>((admission?.refused ?? []).map((r) => [r.tenantId, { step: 'preflight', type: 'TenantPresentError', message: r.message }]));
    const finished = async (done: TenantId[], own?: Map<TenantId, TenantActions>): Promise<void> => {
      const finishedAt = Date.now();
      const tenants = done.map((tenantId) => {
        const mine = own?.get(tenantId);
        const error = refusals.get(tenantId) ?? failure ?? mine?.failure;
        const status = error ? 'failed' as const : 'restored' as const;
        const outcome: TenantOutcome = {
          tenantId,
          status,
          reason: error ? `${error.step}: ${error.type ? `${error.type}: ` : ''}${error.message}`.slice(0, 500) : undefined,
          rows: grouped || !evidence.copy ? undefined : Object.values(evidence.copy.rows).reduce((a, b) => a + b, 0),
        };
        outcomes.set(tenantId, outcome);
        return { tenantId, status, error, actions: mine?.actions ?? [] };
      });
      const result: TenantResult = {
        restoreId, tenantId: done[0]!, status: 'restored', actions: [], ...evidence,
        durations: { ...evidence.durations, total: finishedAt - startedAt }, startedAt, finishedAt,
        ...(grouped ? { group: { workflowId, tenantIds: ids } } : {}),
      };
      await CancellationScope.nonCancellable(async () => {
        await bookkeeping.recordGroupResults({ artifacts: input.artifacts, result, tenants });
        await report(done);
      });
    };
    if (admission) {
      // Refused tenants end here, with nothing of theirs written; the others go on in units the caller makes.
      if (refusals.size) await finished([...refusals.keys()]);
      return { reshape: admission, preflighted };
    }
    if (failure) await finished(ids);
    else await reenable(ids, finished);
    return { preflighted };
  }

  /**
   * Restores `ids`: as one unit, reshaped after preflight when some tenants must not go on with it (refused ones end,
   * absent ones go on together, each allowed partial tenant goes alone), and split into tenants of their own when a
   * group's data step fails.
   */
  async function restoreTenants(ids: TenantId[], opts: UnitOptions): Promise<void> {
    const unit = await restoreUnit(ids, ids.length > 1, opts);
    if (unit.reshape) {
      const { absent, partial } = unit.reshape;
      if (absent.length) await restoreTenants(absent, { admitted: absent });
      for (const id of partial) await restoreTenants([id], { admitted: [id], partial: true });
      return;
    }
    if (!unit.failure) return;
    log.warn('group failed; restoring its tenants one at a time', { group: workflowId, step: unit.failure.step, type: unit.failure.type, tenants: ids.length });
    // After a preflight that admitted them all, this group's own copy may have made its tenants present: admitted. Not
    // when the copy refused them because they came back into live (written by someone else, not by this group).
    const admitted = new Set(unit.preflighted && unit.failure.type !== 'TenantPresentError' ? ids : (opts.admitted ?? []));
    for (const id of ids) {
      await enter([id], 'preflight');
      await restoreTenants([id], { admitted: admitted.has(id) ? [id] : [], partial: opts.partial });
    }
  }

  /** Tells the parent the outcomes of `ids` (each tenant once). */
  async function report(ids: TenantId[]): Promise<void> {
    if (parent) await tellParent(() => getExternalWorkflowHandle(parent.workflowId).signal(groupDoneSignal, { outcomes: ids.map((id) => outcomes.get(id)!) }));
  }

  try {
    await restoreTenants(tenantIds, {});
  } catch (error) {
    if (!isCancellation(error)) throw error;
    // Cancelled by the operator: a one-transaction copy rolled back; tenants not yet finished are cancelled.
    const cancelled = tenantIds.filter((id) => !outcomes.has(id));
    for (const id of cancelled) outcomes.set(id, { tenantId: id, status: 'cancelled', reason: 'cancelled by operator' });
    await CancellationScope.nonCancellable(async () => {
      await bookkeeping.recordGroupResults({
        artifacts: input.artifacts,
        result: { restoreId, tenantId: tenantIds[0]!, status: 'cancelled', actions: [], durations: {}, startedAt: Date.now(), finishedAt: Date.now() },
        tenants: cancelled.map((tenantId) => ({ tenantId, status: 'cancelled', error: { type: 'Cancelled', message: 'cancelled by operator' }, actions: [] })),
      });
      await report(cancelled);
    });
  }

  const all = tenantIds.map((id) => outcomes.get(id)!);
  const failed = all.filter((o) => o.status !== 'restored').length;
  await CancellationScope.nonCancellable(async () => {
    upsertSearchAttributes([{ key: RestorePhaseKey, value: failed === 0 ? 'restored' : failed === all.length ? all[0]!.status : 'partial' }]);
  });
  return all;
}
