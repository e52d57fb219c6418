/**
 * A restore unit's data steps: preflight → admit → copy → validate, each one activity over the whole unit
 * (workflows/restore-unit.ts). Returns the step that failed and why, or the admission when some tenants cannot go on
 * with this unit; nothing here decides how the unit is reshaped or split.
 */
import { isCancellation, patched } from '@temporalio/workflow';
import type { TenantId } from '../activities/restore-types';
import { scratchReaders } from './activity-options';
import { admitTenants, mustReshape, type Admission } from './admission';
import type { RestoreUnitInput, TenantResult, UnitOptions } from './definitions';
import { failureMessage } from './failures';
import { enterPhase } from './unit-messages';

/** What a unit learns as its steps run: recorded with its tenants, whatever the outcome. */
export type Evidence = Pick<TenantResult, 'preflight' | 'copy' | 'validation' | 'durations'>;
export type StepFailure = { step: string; type?: string; message: string };

/** A copy's failure says that this restore committed rows of it before failing (activities/boundary.ts copyCall). */
function copyCommitted(error: unknown): boolean {
  let e = error as { cause?: unknown; details?: unknown[] } | undefined;
  for (let depth = 0; depth < 4 && e; depth++) {
    if ((e.details?.[0] as { committed?: unknown } | undefined)?.committed === true) return true;
    e = e.cause as typeof e;
  }
  return false;
}

/**
 * Preflight, copy and validate of `ids` as one unit, filling `evidence` as the steps run. Returns the step that failed
 * and why, or (after preflight, before anything is written) the admission when some tenants cannot go on with this
 * unit.
 */
export async function dataSteps(
  input: RestoreUnitInput,
  ids: TenantId[],
  opts: UnitOptions,
  evidence: Evidence,
): Promise<{ failure?: StepFailure; admission?: Admission; wrote?: boolean }> {
  const { steps, copy } = scratchReaders(input.scratchTaskQueue);
  const inputFor = (partial: boolean) => ({
    restoreId: input.restoreId,
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
    // A unit of one allowed partial tenant goes on in place instead of being preflighted again alone.
    const partialAlone = ids.length === 1 && admission.partial.length === 1;
    if (partialAlone) stepInput = inputFor(true);
    else if (mustReshape(admission, opts.partial ?? false)) return { admission };
    // Every tenant found absent is checked again under the lock, admitted or not: nothing of this restore is in live
    // for a tenant whose root row is gone (the root table commits first). Only tenants this restore's own copy wrote
    // (opts.admitted, on evidence) and that preflight found in live go on without it.
    const expectAbsent = ids.filter((id) => preflight.tenants?.[id]?.state === 'absent');
    step = 'copy';
    await enterPhase(ids, 'copy');
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
    await enterPhase(ids, 'validate');
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
