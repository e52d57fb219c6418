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
import { restoreUnitInput } from '../activities/input-contract';
import type { ReenableAction, TenantId } from '../activities/restore-types';
import { bookkeeping, scratchReaders, unitActions } from './activity-options';
import { admitTenants, mustReshape, type Admission } from './admission';
import {
  approveUnitTenantsSignal,
  RestorePhaseKey,
  unitDoneSignal,
  unitPhaseSignal,
  type ActionOutcome,
  type RestoreUnitInput,
  type TenantOutcome,
  type TenantPhase,
  type TenantResult,
  type UnitOptions,
} from './definitions';
import { failureMessage } from './failures';
import { checkWorkflowInput } from './input-check';

type Evidence = Pick<TenantResult, 'preflight' | 'copy' | 'validation' | 'durations'>;

/** The patch of issue 23 item 4: admission on evidence of this restore's own writes, not on having got past preflight. */
const oneRestoreAtATime = 'one-restore-at-a-time';

/** The patch of issue 25: a failed unit of more than `bisectAbove` tenants is halved instead of split into singles. */
const bisectFailedUnits = 'bisect-failed-units';
const bisectAbove = 4;

/** A copy's failure says that this restore committed rows of it before failing (activities/restore-activities.ts copyCall). */
function copyCommitted(error: unknown): boolean {
  let e = error as { cause?: unknown; details?: unknown[] } | undefined;
  for (let depth = 0; depth < 4 && e; depth++) {
    if ((e.details?.[0] as { committed?: unknown } | undefined)?.committed === true) return true;
    e = e.cause as typeof e;
  }
  return false;
}

type StepFailure = { step: string; type?: string; message: string };
type TenantActions = { actions: ActionOutcome[]; failure?: StepFailure };
/** What the record activity keeps of each tenant beside the unit's evidence. */
export type TenantRecord = Pick<TenantResult, 'tenantId' | 'status' | 'error' | 'actions'>;

/**
 * How a unit talks to the world: its parent, its record in S3, its actions. restoreUnit uses `unitIo`; the
 * previous release's per-tenant children finish through the same code with the messages and activities they
 * started with (workflows/previous-release.ts), so that their histories replay.
 */
export interface UnitIo {
  /** The unit's tenants `ids` move to `phase`: the search attribute, and the parent's count of tenants by phase. */
  enter(ids: TenantId[], phase: TenantPhase): Promise<void>;
  /** Runs one action for `ids`; tenants whose call was refused for good are returned in `rejected`. */
  runAction(
    ids: TenantId[],
    action: ReenableAction,
  ): Promise<{ attempts?: number; detail?: string; rejected: Array<{ tenantId: TenantId; message: string }> }>;
  /**
   * Records finished tenants in S3 (with the unit's evidence) and tells the parent their outcomes, and once per copy
   * what it copied (`copied`: rows and tenants, which size the parent's next units).
   */
  finished(
    result: TenantResult,
    tenants: TenantRecord[],
    outcomes: TenantOutcome[],
    copied?: { rows: number; tenants: number },
  ): Promise<void>;
  /** After every tenant finished: the unit's final search attribute. `cancelledBy` is set when the unit was cancelled. */
  ended(outcomes: TenantOutcome[], cancelledBy?: unknown): Promise<void>;
  /** A unit of one allowed partial tenant goes on in place instead of being preflighted again alone. */
  partialInPlace?: boolean;
  /** Runs first, inside the unit's cancellation handling (a cancel then still records and tells the parent). */
  begin?(): Promise<void>;
  /** Registers messages of its own that approve tenants of the unit. */
  listen?(approve: (ids: TenantId[]) => void): void;
}

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
  return runUnit(input, unitIo(input, 'unit'));
}

/**
 * The unit's messages and activities. A `unit` ends as its tenants did, so the Web UI lists a unit whose every tenant
 * failed as Failed and a cancelled one as Cancelled, and a unit of one allowed partial tenant goes on in place. The
 * previous release's group child (`previous-release-group`) completed whatever its tenants did and preflighted an
 * allowed partial tenant again alone: it keeps doing both, so that its histories replay.
 */
export function unitIo(input: RestoreUnitInput, kind: 'unit' | 'previous-release-group'): UnitIo {
  const { parent } = workflowInfo();
  const endAsTenants = kind === 'unit';
  return {
    async enter(ids, phase) {
      upsertSearchAttributes([{ key: RestorePhaseKey, value: phase }]);
      if (parent)
        await tellParent(() =>
          getExternalWorkflowHandle(parent.workflowId).signal(unitPhaseSignal, { tenantIds: ids, phase }),
        );
    },
    async runAction(ids, action) {
      return unitActions.runReenableActionForTenants({
        restoreId: input.restoreId,
        tenantIds: ids,
        live: input.live,
        action,
      });
    },
    async finished(result, tenants, outcomes, copied) {
      await bookkeeping.recordGroupResults({ artifacts: input.artifacts, result, tenants });
      if (parent)
        await tellParent(() =>
          getExternalWorkflowHandle(parent.workflowId).signal(unitDoneSignal, {
            outcomes,
            ...(copied ? { copied } : {}),
          }),
        );
    },
    async ended(outcomes, cancelledBy) {
      const failed = outcomes.filter((o) => o.status !== 'restored').length;
      upsertSearchAttributes([
        {
          key: RestorePhaseKey,
          value: failed === 0 ? 'restored' : failed === outcomes.length ? outcomes[0]!.status : 'partial',
        },
      ]);
      if (!endAsTenants) return;
      if (cancelledBy) throw cancelledBy;
      if (outcomes.every((o) => o.status === 'failed')) {
        const reason =
          outcomes.length === 1
            ? (outcomes[0]!.reason ?? 'failed')
            : `all ${outcomes.length} tenants failed; the first: ${outcomes[0]!.reason ?? 'failed'}`;
        throw ApplicationFailure.nonRetryable(reason, 'TenantRestoreFailed');
      }
    },
    partialInPlace: endAsTenants,
  };
}

/** A parent that is gone (terminated, or a test running this workflow alone) is not this unit's failure. */
export async function tellParent(send: () => Promise<void>): Promise<void> {
  try {
    await send();
  } catch (error) {
    if (isCancellation(error)) throw error;
    log.warn('could not signal the parent', { workflowId: workflowInfo().workflowId, error: (error as Error).message });
  }
}

/** The body of a unit, whatever messages it speaks. Returns every tenant's outcome, in the order of `tenantIds`. */
export async function runUnit(input: RestoreUnitInput, io: UnitIo): Promise<TenantOutcome[]> {
  const { restoreId, tenantIds } = input;
  const { workflowId } = workflowInfo();
  const { steps, copy } = scratchReaders(input.scratchTaskQueue);
  const approved = new Set<TenantId>(input.approvedTenants);
  const outcomes = new Map<TenantId, TenantOutcome>();
  const approve = (ids: TenantId[]) => ids.forEach((id) => approved.add(id));
  setHandler(approveUnitTenantsSignal, ({ tenantIds: ids }) => approve(ids));
  io.listen?.(approve);
  /** The tenants restored right now as one unit, and what it has learned so far (recorded if it is cancelled). */
  let current: { ids: TenantId[]; evidence: Evidence; startedAt: number } | undefined;

  /**
   * Preflight, copy and validate of `ids` as one unit, filling `evidence` as the steps run. Returns the step that failed
   * and why, or (after preflight, before anything is written) the admission when some tenants cannot go on with this
   * unit.
   */
  async function dataSteps(
    ids: TenantId[],
    opts: UnitOptions,
    evidence: Evidence,
  ): Promise<{ failure?: StepFailure; admission?: Admission; wrote?: boolean }> {
    const inputFor = (partial: boolean) => ({
      restoreId,
      scratch: input.scratch,
      live: input.live,
      plan: input.plan,
      tenantId: ids[0]!,
      tenantIds: ids,
      // A partial tenant gets its missing rows only: no policy may update a row its users kept.
      conflict: partial ? ('skip' as const) : input.conflict,
      ...(partial ? { partial: true, artifacts: input.artifacts } : {}),
      ...(input.window ? { window: true } : {}),
    });
    let stepInput = inputFor(opts.partial ?? false);
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
      // A unit of several checks only presence here (in the backup, in live): its copy repeats every key check inside
      // its transaction and reports the conflicts, so the full check would only be paid twice.
      evidence.preflight = await timed('preflight', () =>
        steps.preflightTenantRestore({
          ...stepInput,
          preflightChecks: ids.length > 1 ? ('state' as const) : ('full' as const),
        }),
      );
      // Gated: a worker of an earlier release may have run this task before a preflight result said who is in live.
      const admitting = patched('tenant-admission');
      const preflight = admitting ? evidence.preflight : { ...evidence.preflight, tenants: undefined };
      const admission = admitTenants(preflight, ids, {
        allowPartial: input.allowPartial,
        admitted: opts.admitted,
        ...(input.window ? { window: input.window } : {}),
      });
      const partialAlone = io.partialInPlace && ids.length === 1 && admission.partial.length === 1;
      if (partialAlone) stepInput = inputFor(true);
      else if (mustReshape(admission, opts.partial ?? false)) return { admission };
      // Every tenant found absent is checked again under the lock, admitted or not: nothing of this restore is in live
      // for a tenant whose root row is gone (the root table commits first). Only tenants this restore's own copy wrote
      // (opts.admitted, on evidence) and that preflight found in live go on without it.
      const expectAbsent = ids.filter((id) => preflight.tenants?.[id]?.state === 'absent');
      step = 'copy';
      await io.enter(ids, 'copy');
      evidence.copy = await timed('copy', () =>
        copy.copyTenantRows({
          ...stepInput,
          // Where the copy records the transactions it is about to commit: a retry reads whether they did.
          artifacts: input.artifacts,
          chunkRows: input.chunkRows,
          ...(expectAbsent.length ? { expectAbsent } : {}),
        }),
      );
      step = 'validate';
      await io.enter(ids, 'validate');
      // What the copy kept under skip (live's own rows): every other row must hold the backup's values.
      const kept = evidence.copy.skipped;
      // The direct paths proved every reference before COMMIT: validation leaves its orphan scan out.
      const referencesProven = evidence.copy.path === 'direct' || evidence.copy.path === 'chunked-direct';
      evidence.validation = await timed('validate', () =>
        steps.validateTenantRows({ ...stepInput, kept, ...(referencesProven ? { referencesProven } : {}) }),
      );
      if (!evidence.validation.ok) {
        const bad = evidence.validation.tables
          .filter((t) => !t.match)
          .map((t) => `${t.table} (scratch ${t.scratchCount}, live ${t.liveCount})`);
        const orphans = evidence.validation.orphans.map((o) => `${o.rows} orphan(s) on ${o.constraint}`);
        return {
          failure: { step, type: 'ValidationFailed', message: `Validation failed: ${[...bad, ...orphans].join('; ')}` },
        };
      }
      return {};
    } catch (error) {
      if (isCancellation(error)) throw error;
      // The copy completed (validation failed), or failed for good after committing some of its rows (its details).
      const wrote = evidence.copy !== undefined || (step === 'copy' && copyCommitted(error));
      return { failure: { step, ...failureMessage(error) }, wrote };
    }
  }

  /**
   * The configured actions for `ids`, in order. Actions before the first held one run for all; from the held one on,
   * they run in waves, for the tenants approved so far. `finished` is called for tenants as they finish (each wave,
   * and the tenants an action rejected), so that the parent counts them at once.
   */
  async function reenable(
    ids: TenantId[],
    finished: (ids: TenantId[], own: Map<TenantId, TenantActions>) => Promise<void>,
  ): Promise<void> {
    const perTenant = new Map<TenantId, TenantActions>(ids.map((id) => [id, { actions: [] }]));
    const fail = (id: TenantId, action: ReenableAction, message: string, durationMs: number) => {
      const t = perTenant.get(id)!;
      t.actions.push({ name: action.name, type: action.type, status: 'failed', detail: message, durationMs });
      t.failure = {
        step: 'reenable',
        type: 'ReenableFailed',
        message: `Re-enable action ${action.name} failed: ${message}`,
      };
    };
    const run = async (wave: TenantId[], from: number, to: number): Promise<TenantId[]> => {
      let alive = wave;
      for (const action of input.actions.slice(from, to)) {
        if (alive.length === 0) break;
        const t0 = Date.now();
        try {
          const done = await io.runAction(alive, action);
          const rejected = new Map(done.rejected.map((r) => [r.tenantId, r.message]));
          for (const id of alive) {
            const message = rejected.get(id);
            if (message !== undefined) fail(id, action, message, Date.now() - t0);
            else
              perTenant.get(id)!.actions.push({
                name: action.name,
                type: action.type,
                status: 'done',
                attempts: done.attempts,
                detail: done.detail,
                durationMs: Date.now() - t0,
              });
          }
          alive = alive.filter((id) => !rejected.has(id));
        } catch (error) {
          if (isCancellation(error)) throw error;
          for (const id of alive) fail(id, action, failureMessage(error).message, Date.now() - t0);
          alive = [];
        }
      }
      return alive;
    };
    const held = input.actions.findIndex((a) => a.requiresApproval);
    if (input.actions.length) await io.enter(ids, 'reenable');
    const passed = await run(ids, 0, held === -1 ? input.actions.length : held);
    const failedEarly = ids.filter((id) => !passed.includes(id));
    if (held === -1 || failedEarly.length) await finished(held === -1 ? ids : failedEarly, perTenant);
    if (held === -1) return;
    let waiting = passed;
    while (waiting.length) {
      const unapproved = waiting.filter((id) => !approved.has(id));
      if (unapproved.length) {
        await io.enter(unapproved, 'awaiting-approval');
        log.info('waiting for approval', { unit: workflowId, tenants: unapproved.length });
      }
      await condition(() => waiting.some((id) => approved.has(id)));
      const wave = waiting.filter((id) => approved.has(id));
      waiting = waiting.filter((id) => !approved.has(id));
      await io.enter(wave, 'reenable');
      await run(wave, held, input.actions.length);
      await finished(wave, perTenant);
    }
  }

  /**
   * Restores `ids` as one unit. Returns the failure of a data step of several tenants (the caller splits them), or
   * the admission of a unit that must be reshaped (its refused tenants are already finished here); otherwise every
   * tenant's outcome is recorded and told as the tenant finishes.
   */
  async function restoreOnce(
    ids: TenantId[],
    opts: UnitOptions,
  ): Promise<{ failure?: StepFailure; reshape?: Admission; preflighted: boolean; wrote?: boolean }> {
    const grouped = ids.length > 1;
    const startedAt = Date.now();
    const evidence: Evidence = { durations: {} };
    current = { ids, evidence, startedAt };
    const { failure, admission, wrote } = await dataSteps(ids, opts, evidence);
    const preflighted = evidence.preflight !== undefined;
    // A failure of several tenants is split by the caller, except an emptied scratch (ScratchResetError): every smaller
    // unit would meet it too, so the unit's tenants end failed here, with what to do.
    if (failure && grouped && failure.type !== 'ScratchResetError') return { failure, preflighted, wrote };
    const refusals = new Map<TenantId, StepFailure>(
      (admission?.refused ?? []).map((r) => [
        r.tenantId,
        { step: 'preflight', type: r.type ?? 'TenantPresentError', message: r.message },
      ]),
    );
    // What the copy wrote is told to the parent once, with the first tenants that finish.
    let copiedTold = false;
    const finished = async (done: TenantId[], own?: Map<TenantId, TenantActions>): Promise<void> => {
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
        outcomes.set(tenantId, outcome);
        return { tenantId, status: outcome.status, error, actions: mine?.actions ?? [] };
      });
      const result: TenantResult = {
        restoreId,
        tenantId: done[0]!,
        status: 'restored',
        actions: [],
        ...evidence,
        durations: { ...evidence.durations, total: finishedAt - startedAt },
        startedAt,
        finishedAt,
        ...(grouped ? { group: { workflowId, tenantIds: ids } } : {}),
      };
      await CancellationScope.nonCancellable(() =>
        io.finished(
          result,
          records,
          done.map((id) => outcomes.get(id)!),
          copied,
        ),
      );
    };
    if (admission) {
      // Refused tenants end here, with nothing of theirs written; the others go on in units the caller makes.
      if (refusals.size) await finished([...refusals.keys()]);
      return { reshape: admission, preflighted };
    }
    // Billing and apps are switched back on only for tenants whose root came back: not for a window's tenant whose
    // root stayed in live (its rows were set back, it was never switched off).
    if (failure || (input.window && opts.partial)) await finished(ids);
    else await reenable(ids, finished);
    return { preflighted };
  }

  /**
   * Restores `ids`: as one unit, reshaped after preflight when some tenants must not go on with it (refused ones end,
   * absent ones go on together, each allowed partial tenant goes alone), and split into units of one when a data step
   * of several fails.
   */
  async function restoreTenants(ids: TenantId[], opts: UnitOptions): Promise<void> {
    const unit = await restoreOnce(ids, opts);
    if (unit.reshape) {
      const { absent, partial } = unit.reshape;
      // Nothing was written by the unit being reshaped: its absent tenants are not this restore's, and are classified
      // (and checked under the lock) again; only tenants admitted on evidence before stay admitted.
      const evidenceBased = patched(oneRestoreAtATime);
      const admitted = evidenceBased ? absent.filter((id) => opts.admitted?.includes(id)) : absent;
      if (absent.length) await restoreTenants(absent, { admitted });
      for (const id of partial) await restoreTenants([id], { admitted: [id], partial: true });
      return;
    }
    if (!unit.failure) return;
    log.warn('unit failed; restoring its tenants one at a time', {
      unit: workflowId,
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
      await io.enter(part, 'preflight');
      await restoreTenants(part, { admitted: part.filter((id) => admitted.has(id)), partial: opts.partial });
    }
  }

  let cancelledBy: unknown;
  try {
    await io.begin?.();
    await restoreTenants(tenantIds, {});
  } catch (error) {
    if (!isCancellation(error)) throw error;
    cancelledBy = error;
    // Cancelled by the operator: a one-transaction copy rolled back; tenants not yet finished are cancelled.
    const cancelled = tenantIds.filter((id) => !outcomes.has(id));
    for (const id of cancelled)
      outcomes.set(id, { tenantId: id, status: 'cancelled', reason: 'cancelled by operator' });
    const now = Date.now();
    // What the unit in progress learned (a partial tenant's restored keys, say) stays in the record when it is the
    // cancelled tenants' own; one record for all cancelled tenants, as always.
    const own = current && cancelled.every((id) => current!.ids.includes(id)) ? current : undefined;
    await CancellationScope.nonCancellable(() =>
      io.finished(
        {
          restoreId,
          tenantId: tenantIds[0]!,
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

  const all = tenantIds.map((id) => outcomes.get(id)!);
  await CancellationScope.nonCancellable(() => io.ended(all, cancelledBy));
  return all;
}
