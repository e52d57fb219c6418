/**
 * A restore unit's re-enable actions (workflows/restore-unit.ts): in order, and from the first held action on, in
 * waves as tenants are approved, so that one tenant waiting for approval holds back no other.
 */
import { condition, isCancellation, log, workflowInfo } from '@temporalio/workflow';
import type { ReenableAction, TenantId } from '../activities/restore-types';
import type { ActionOutcome, RestoreUnitInput } from './definitions';
import { failureMessage } from './failures';
import { enterPhase, runAction } from './unit-messages';
import type { StepFailure } from './unit-steps';

/** A tenant's actions as they ran, and the failure of the one that stopped it. */
export type TenantActions = { actions: ActionOutcome[]; failure?: StepFailure };

/**
 * The configured actions for `ids`, in order. Actions before the first held one run for all; from the held one on,
 * they run in waves, for the tenants approved so far (`approved` grows as approvals arrive). `finished` is called for
 * tenants as they finish (each wave, and the tenants an action rejected), so that the parent counts them at once.
 */
export async function reenable(
  input: RestoreUnitInput,
  approved: ReadonlySet<TenantId>,
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
        const done = await runAction(input, alive, action);
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
  if (input.actions.length) await enterPhase(ids, 'reenable');
  const passed = await run(ids, 0, held === -1 ? input.actions.length : held);
  const failedEarly = ids.filter((id) => !passed.includes(id));
  if (held === -1 || failedEarly.length) await finished(held === -1 ? ids : failedEarly, perTenant);
  if (held === -1) return;
  let waiting = passed;
  while (waiting.length) {
    const unapproved = waiting.filter((id) => !approved.has(id));
    if (unapproved.length) {
      await enterPhase(unapproved, 'awaiting-approval');
      log.info('waiting for approval', { unit: workflowInfo().workflowId, tenants: unapproved.length });
    }
    await condition(() => waiting.some((id) => approved.has(id)));
    const wave = waiting.filter((id) => approved.has(id));
    waiting = waiting.filter((id) => !approved.has(id));
    await enterPhase(wave, 'reenable');
    await run(wave, held, input.actions.length);
    await finished(wave, perTenant);
  }
}
