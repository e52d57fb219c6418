import {
  ApplicationFailure,
  CancellationScope,
  continueAsNew,
  log,
  setHandler,
  upsertSearchAttributes,
} from '@temporalio/workflow';
import { bulkRestoreInput } from '../activities/input-contract';
import type { TenantId } from '../activities/restore-types';
import { parentActivities } from './activity-options';
import { Approvals } from './approvals';
import {
  progressQuery,
  RestoreIdKey,
  RestoreKindKey,
  RestorePhaseKey,
  TenantsFailedKey,
  TenantsRestoredKey,
  TenantsTotalKey,
  type BulkPhase,
  type BulkRestoreInput,
  type BulkRestoreResult,
  type BulkRestoreState,
} from './definitions';
import { checkWorkflowInput } from './input-check';
import { narrowScratchToWindow } from './incident-window';
import { fail, report, type RestoreRun } from './restore-report';
import { withScratch } from './scratch';
import { pageSize, startUnit, unitSize } from './units';
import { registerControls } from './controls';
import { progress } from './progress';
import { SlidingWindow } from './window';

const { steps } = parentActivities('restore');

/**
 * Units started by one run before it continues-as-new: ~15 events each keeps a run near 8k events (limit 51,200). A
 * unit signals once per phase for all its tenants; splits and approval waves add signals, but the server's
 * continueAsNewSuggested still ends a run before its history grows too large.
 */
const defaultMaxChildrenPerRun = 500;

function initialState(input: BulkRestoreInput): BulkRestoreState {
  return {
    startedAt: Date.now(),
    nextIndex: 0,
    running: {},
    restored: 0,
    failed: 0,
    cancelledTenants: 0,
    failures: [],
    concurrency: input.concurrency,
    paused: false,
    cancelRequested: false,
    approvedAll: false,
    approvedTenants: [],
    runs: 0,
    childrenStarted: 0,
  };
}

/**
 * bulkRestore: prepare scratch → build the plan once → restore units through a sliding window → report.
 * Invariants:
 * - At most `concurrency` units hold a window slot (a tenant waiting for approval does not: it uses no database).
 * - One tenant's failure never stops the others; the failure is counted and reported with its reason.
 * - Pause stops starting units; running ones finish. Cancel stops starting units and cancels running ones (a
 *   one-transaction copy rolls back; a chunked copy keeps only idempotent chunks). Then it reports.
 * - Inputs and state carry ids, counts, digests and S3 locations; never rows or passwords (I5). The plan and the
 *   tenant list live in S3.
 * - It continues-as-new after `maxChildrenPerRun` units or when the server suggests it, carrying its state; units
 *   are ABANDONed so they outlive the run, and report back by signal to the workflow id.
 */
export async function bulkRestore(input: BulkRestoreInput, carried?: BulkRestoreState): Promise<BulkRestoreResult> {
  checkWorkflowInput('bulkRestore', bulkRestoreInput, input);
  const { restoreId } = input;
  const state = carried ?? initialState(input);
  state.runs += 1;
  const window = new SlidingWindow(state);
  const approvals = new Approvals(restoreId, state);
  // Restores started before units had several tenants carry no group size: one tenant per unit.
  const groupSize = Math.max(1, Math.floor(input.groupSize ?? 1));
  let phase: BulkPhase = carried ? 'restoring' : 'preparing-scratch';
  let page: TenantId[] = [];
  let pageStart = state.nextIndex;
  const total = () => state.tenantList?.count ?? input.tenants?.length ?? 0;

  // Signals buffered in a run's first task reach their handlers in the order the handlers are set: the same order as
  // the runs of earlier releases, whose histories replay (an approve and a unit's end in one task, say).
  registerControls(restoreId, state);
  approvals.register(input);
  window.listenToUnits();
  setHandler(progressQuery, () => progress(restoreId, phase, state, total(), input.artifacts));

  let published = '';
  function publish(): void {
    const key = `${phase}|${total()}|${state.restored}|${state.failed}`;
    if (key === published) return;
    published = key;
    upsertSearchAttributes([
      { key: RestoreIdKey, value: restoreId },
      { key: RestoreKindKey, value: 'bulk' },
      { key: RestorePhaseKey, value: phase },
      { key: TenantsTotalKey, value: total() },
      { key: TenantsRestoredKey, value: state.restored },
      { key: TenantsFailedKey, value: state.failed },
    ]);
  }
  function setPhase(next: BulkPhase): void {
    phase = next;
    publish();
  }
  const run: RestoreRun = { input, state, total, setPhase };

  return CancellationScope.nonCancellable(async () => {
    publish();
    if (!carried) {
      try {
        await prepareScratchAndPlan();
      } catch (error) {
        return fail(run, error);
      }
    }

    setPhase(state.paused ? 'paused' : 'restoring');
    const next = await window.run({
      restoreId,
      total,
      nextUnit,
      startUnit: (tenantIds) => startUnit(input, state, tenantIds, (id) => approvals.isApproved(id)),
      maxUnitsPerRun: input.maxChildrenPerRun ?? defaultMaxChildrenPerRun,
      changed: (moment) => {
        if (moment === 'cancelling') return setPhase('cancelling');
        if (!state.cancelRequested) setPhase(state.paused ? 'paused' : 'restoring');
        publish();
      },
    });
    if (next === 'continue-as-new') {
      log.info('continuing as new', {
        restoreId,
        started: state.nextIndex,
        running: Object.keys(state.running).length,
        run: state.runs,
      });
      approvals.carry();
      return continueAsNew<typeof bulkRestore>({ ...input, tenants: undefined }, state);
    }
    return report(run);
  });

  /** Scratch (loaded from the backup, or given) and the plan: nothing is written to live before both succeed. */
  async function prepareScratchAndPlan(): Promise<void> {
    state.tenantList = await steps.stageTenantList({
      artifacts: input.artifacts,
      tenants: input.tenants,
      tenantsObject: input.tenantsObject,
    });
    publish();
    // A point-in-time scratch lives on the host that recovered it: if that host is gone before the plan is read from
    // it, scratch is recovered again on another (twice at most). Scratch is released by the report (a later run).
    let cancelled = false;
    await withScratch(
      {
        kind: 'restore',
        id: restoreId,
        source: input.source,
        live: input.live,
        allowUnverifiedBackup: input.allowUnverifiedBackup,
        unsafeScratch: input.unsafeScratch,
        attempts: 3,
        beforePrepare: () => setPhase('preparing-scratch'),
      },
      async (scratch, readers) => {
        state.scratch = scratch;
        cancelled = state.cancelRequested;
        if (cancelled) return;
        setPhase('planning');
        state.plan = await readers.parentSteps.buildRestorePlan({
          restoreId,
          scratch: scratch.ref,
          live: input.live,
          tenantRoot: input.tenantRoot,
          config: input.config,
          artifacts: input.artifacts,
        });
        await narrowScratchToWindow(input, state);
      },
    );
    if (cancelled) return;
    approvals.normalize(state.plan!.rootKeyType);
  }

  /** The next unit's tenants from the current page of the list, or undefined after reading the next page. */
  async function nextUnit(): Promise<TenantId[] | undefined> {
    if (state.nextIndex >= pageStart + page.length) {
      page = await steps.readTenantPage({
        list: state.tenantList!,
        offset: state.nextIndex,
        limit: pageSize,
        rootKeyType: state.plan?.rootKeyType,
      });
      pageStart = state.nextIndex;
      if (page.length === 0)
        throw ApplicationFailure.nonRetryable(
          `Tenant list ended at ${state.nextIndex}, expected ${total()} ids.`,
          'InvalidTenantList',
        );
      return undefined;
    }
    const offset = state.nextIndex - pageStart;
    return page.slice(offset, offset + unitSize(input, state, groupSize));
  }
}
