/**
 * The sliding window of a bulk restore: which units run, how many at once, pause, resume and cancel (the controls
 * that set them are in workflows/controls.ts). A plain module over the parent's carried state, so that the parent
 * reads as its steps and this logic is tested on its own (test/unit/workflows.test.ts).
 */
import {
  allHandlersFinished,
  condition,
  getExternalWorkflowHandle,
  log,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';
import type { TenantId } from '../activities/restore-types';
import {
  tenantWorkflowId,
  unitDoneSignal,
  unitPhaseSignal,
  type BulkRestoreState,
  type TenantOutcome,
} from './definitions';
import { failureMessage, isCancelled } from './failures';

/** Failures kept with their reasons in workflow state and the progress query; the report has all of them. */
const maxFailuresKept = 100;

export type WindowState = Pick<
  BulkRestoreState,
  | 'nextIndex'
  | 'running'
  | 'restored'
  | 'failed'
  | 'cancelledTenants'
  | 'failures'
  | 'concurrency'
  | 'paused'
  | 'cancelRequested'
  | 'childrenStarted'
  | 'groupOf'
  | 'rowsSeen'
>;

/** What the window needs from its parent. */
export interface WindowSource {
  restoreId: string;
  /** Tenants in the whole list. */
  total(): number;
  /**
   * The tenants of the next unit, starting at `state.nextIndex` (1..groupSize ids; they never span two pages), or
   * undefined after it had to read the next page of the list (the window then looks again: a cancel may have come).
   */
  nextUnit(): Promise<TenantId[] | undefined>;
  /** Starts the child workflow of a unit; resolves when the server accepted it, with a handle on its result. */
  startUnit(tenantIds: TenantId[]): { workflowId: string; started: Promise<{ result(): Promise<TenantOutcome[]> }> };
  /** Units started by one run before it continues-as-new. */
  maxUnitsPerRun: number;
  /**
   * The window is about to cancel the running units ('cancelling'), or to wait for a slot, a unit's end or a message
   * ('waiting'): the parent publishes its phase and counts.
   */
  changed(moment: 'cancelling' | 'waiting'): void;
}

export class SlidingWindow {
  private startedThisRun = 0;
  private startsPending = 0;
  private cancelForwarded = false;

  constructor(private readonly state: WindowState) {
    this.state.groupOf ??= {};
  }

  /** Units tell the parent (by workflow id, so any run of it hears) where their tenants are, and how they ended. */
  listenToUnits(): void {
    const { state } = this;
    setHandler(unitPhaseSignal, ({ tenantIds, phase }) => {
      for (const id of tenantIds) if (id in state.running) state.running[id] = phase;
    });
    setHandler(unitDoneSignal, ({ outcomes, copied }) => {
      // What a unit copied sizes the next units (units by rows, bulk-restore.ts unitSize).
      if (copied && copied.tenants > 0) {
        const seen = (this.state.rowsSeen ??= { rows: 0, tenants: 0 });
        seen.rows += copied.rows;
        seen.tenants += copied.tenants;
      }
      outcomes.forEach((o) => this.finish(o));
    });
  }

  /** Counts a tenant's outcome, once (a unit's signal and its result may both report it). */
  finish(outcome: TenantOutcome): void {
    const { state } = this;
    if (!(outcome.tenantId in state.running)) return;
    delete state.running[outcome.tenantId];
    delete state.groupOf![outcome.tenantId];
    if (outcome.status === 'restored') state.restored += 1;
    else if (outcome.status === 'cancelled') state.cancelledTenants += 1;
    else {
      state.failed += 1;
      if (state.failures.length < maxFailuresKept)
        state.failures.push({ tenantId: outcome.tenantId, reason: outcome.reason ?? 'failed' });
    }
  }

  /**
   * Starts units while there are tenants, slots and no pause; waits for them. Returns 'drained' when every tenant has
   * finished (or the cancel has ended them), 'continue-as-new' when this run should hand over to a new one (every
   * start acknowledged, every message handled).
   * Invariants: at most `concurrency` units hold a slot (a tenant waiting for approval does not: it uses no database);
   * pause stops starting units and running ones finish; cancel stops starting units and cancels running ones.
   */
  async run(source: WindowSource): Promise<'drained' | 'continue-as-new'> {
    const { state } = this;
    const hasMore = () => !state.cancelRequested && state.nextIndex < source.total();
    const canStart = () => hasMore() && !state.paused && this.inFlight() < state.concurrency;
    const shouldContinueAsNew = () =>
      (hasMore() && this.startedThisRun >= source.maxUnitsPerRun) || workflowInfo().continueAsNewSuggested;
    const mustForwardCancel = () => state.cancelRequested && !this.cancelForwarded && this.startsPending === 0;
    const idle = () => !hasMore() && Object.keys(state.running).length === 0 && this.startsPending === 0;

    while (!idle()) {
      if (mustForwardCancel()) {
        this.cancelForwarded = true;
        source.changed('cancelling');
        this.cancelRunning(source.restoreId);
        continue;
      }
      if (shouldContinueAsNew()) {
        await condition(() => this.startsPending === 0 && allHandlersFinished());
        return 'continue-as-new';
      }
      if (canStart()) {
        const tenantIds = await source.nextUnit();
        if (tenantIds) this.start(source, tenantIds);
        continue;
      }
      source.changed('waiting');
      const seen = this.fingerprint();
      await condition(
        () => canStart() || idle() || mustForwardCancel() || shouldContinueAsNew() || seen !== this.fingerprint(),
      );
    }
    return 'drained';
  }

  /** Units holding a slot: a unit holds one while any of its tenants still uses the database. */
  private inFlight(): number {
    const units = new Set<string>();
    for (const [id, phase] of Object.entries(this.state.running))
      if (phase !== 'awaiting-approval') units.add(this.state.groupOf![id] ?? id);
    return units.size;
  }

  private fingerprint(): string {
    const { restored, failed, paused, concurrency } = this.state;
    return `${restored}|${failed}|${paused}|${concurrency}`;
  }

  private cancelRunning(restoreId: string): void {
    const units = new Set<string>();
    // A tenant with no unit in groupOf (runs recorded before every unit was listed there) by its own workflow id.
    for (const id of Object.keys(this.state.running))
      units.add(this.state.groupOf![id] ?? tenantWorkflowId(restoreId, id));
    for (const workflowId of units) {
      getExternalWorkflowHandle(workflowId)
        .cancel()
        .catch((error: Error) => {
          log.info('cancel not delivered (unit already finished)', { workflowId, error: error.message });
        });
    }
  }

  /**
   * Starts one unit and counts its tenants when it ends. Across runs the unit signals its outcomes; within this run
   * its result arrives too, so a unit that ended without signalling (terminated, say) is still counted.
   */
  private start(source: WindowSource, tenantIds: TenantId[]): void {
    const { state } = this;
    const { workflowId, started } = source.startUnit(tenantIds);
    for (const id of tenantIds) state.running[id] = 'preflight';
    state.nextIndex += tenantIds.length;
    state.childrenStarted += 1;
    this.startedThisRun += 1;
    this.startsPending += 1;
    const finishAll = (status: TenantOutcome['status'], reason: string) =>
      tenantIds.forEach((tenantId) => this.finish({ tenantId, status, reason }));
    started.then(
      (handle) => {
        this.startsPending -= 1;
        handle.result().then(
          (outcomes) => outcomes.forEach((o) => this.finish(o)),
          (error: unknown) => finishAll(isCancelled(error) ? 'cancelled' : 'failed', failureMessage(error).message),
        );
      },
      (error: Error) => {
        this.startsPending -= 1;
        if (error.name === 'WorkflowExecutionAlreadyStartedError') {
          // Still running from an earlier attempt of this restore: it will signal its outcomes to this workflow id.
          log.warn('unit already running; waiting for its signal', { workflowId });
          return;
        }
        finishAll('failed', `could not start: ${error.message}`);
      },
    );
  }
}
