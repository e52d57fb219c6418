import {
  allHandlersFinished,
  ApplicationFailure,
  CancellationScope,
  condition,
  continueAsNew,
  log,
  ParentClosePolicy,
  patched,
  setHandler,
  startChild,
  upsertSearchAttributes,
} from '@temporalio/workflow';
import { bulkRestoreInput } from '../activities/input-contract';
import type { TenantId } from '../activities/restore-types';
import { parentActivities, scratchHostLost, scratchReaders } from './activity-options';
import { Approvals } from './approvals';
import {
  groupWorkflowId,
  progressQuery,
  RestoreIdKey,
  RestoreKindKey,
  RestorePhaseKey,
  TenantIdKey,
  TenantsFailedKey,
  TenantsRestoredKey,
  TenantsTotalKey,
  tenantWorkflowId,
  unitWorkflowId,
  type BulkPhase,
  type BulkRestoreInput,
  type BulkRestoreResult,
  type BulkRestoreState,
  type RestoreStatus,
  type TenantOutcome,
  type TenantPhase,
} from './definitions';
import { failureMessage } from './failures';
import { checkWorkflowInput } from './input-check';
import { tenantGroupRestore, tenantRestore } from './previous-release';
import { prepareWindowEnd, stopWindowEnd } from './incident-window';
import { restoreUnit } from './restore-unit';
import { progress, SlidingWindow } from './window';

const { steps, scratchSteps } = parentActivities('restore');

/**
 * Units started by one run before it continues-as-new: ~15 events each keeps a run near 8k events (limit 51,200). A
 * unit signals once per phase for all its tenants; splits and approval waves add signals, but the server's
 * continueAsNewSuggested still ends a run before its history grows too large.
 */
const defaultMaxChildrenPerRun = 500;
/** Tenant ids read from S3 at a time. */
const pageSize = 500;

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
/**
 * Tenants in the next unit. With `unitRows` (units sized by rows): as many as `unitRows` rows hold at the rows per
 * tenant the finished units copied (state.rowsSeen), at least one; `groupSize` until a unit has finished. A unit never
 * spans two pages of the list, so it holds at most a page (500). Deterministic: rowsSeen comes from signals in history.
 */
export function unitSize(
  input: Pick<BulkRestoreInput, 'unitRows'>,
  state: Pick<BulkRestoreState, 'rowsSeen'>,
  groupSize: number,
): number {
  const seen = state.rowsSeen;
  if (!input.unitRows || !seen || seen.tenants === 0) return groupSize;
  const perTenant = seen.rows / seen.tenants;
  if (perTenant <= 0) return pageSize;
  return Math.max(1, Math.min(pageSize, Math.floor(input.unitRows / perTenant)));
}

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
  window.registerControls(restoreId);
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

  return CancellationScope.nonCancellable(async () => {
    publish();
    if (!carried) {
      try {
        await prepareScratchAndPlan();
      } catch (error) {
        return fail(error);
      }
    }

    setPhase(state.paused ? 'paused' : 'restoring');
    const next = await window.run({
      restoreId,
      total,
      nextUnit,
      startUnit,
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
    return report();
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
    // it, scratch is recovered again on another (twice at most).
    for (let attempt = 1; ; attempt += 1) {
      setPhase('preparing-scratch');
      state.scratch = await prepareScratch();
      if (state.cancelRequested) return;
      setPhase('planning');
      try {
        state.plan = await scratchReaders(state.scratch.pointInTime?.taskQueue).parentSteps.buildRestorePlan({
          restoreId,
          scratch: state.scratch.ref,
          live: input.live,
          tenantRoot: input.tenantRoot,
          config: input.config,
          artifacts: input.artifacts,
        });
        await narrowToWindow();
        break;
      } catch (error) {
        if (!(state.scratch.pointInTime && scratchHostLost(error) && attempt < 3)) throw error;
        log.warn('the scratch host stopped answering: recovering scratch again on another host', {
          restoreId,
          host: state.scratch.pointInTime.host,
        });
      }
    }
    approvals.normalize(state.plan.rootKeyType);
  }

  /**
   * An incident window (`--from T0 --to T1`): the scratch at T1 recovered beside the one at T0, their difference
   * computed against live, and the T0 scratch narrowed to it (activities/window.ts). The units then restore exactly the
   * window's deleted and changed rows.
   */
  async function narrowToWindow(): Promise<void> {
    const { source } = input;
    if (source.kind !== 'point-in-time' || !source.until || !state.scratch || !state.plan) return;
    log.info('recovering the end of the incident window, then narrowing scratch to the window', { restoreId });
    const end = await prepareWindowEnd(restoreId, source, source.until, input.live, state.scratch);
    let hostLost = false;
    try {
      const readers = scratchReaders(state.scratch.pointInTime?.taskQueue);
      const window = await readers.parentSteps.narrowToWindow({
        restoreId,
        scratch: state.scratch.ref,
        windowEnd: end.ref,
        live: input.live,
        plan: state.plan,
        from: source.target,
        to: source.until,
        artifacts: input.artifacts,
      });
      state.window = { touched: window.touched, conflicted: window.conflicted, object: window.object };
      log.info('incident window narrowed', { restoreId, ...window.rows, conflicted: window.conflicted.length });
    } catch (error) {
      hostLost = scratchHostLost(error);
      throw error;
    } finally {
      // A host that is gone took its servers with it: asking it to stop one would only wait for its queue again.
      if (!hostLost) await stopWindowEnd(restoreId, end);
    }
  }

  /** The unit's share of the window: its tenants the window touched, those with conflicts, and the policy. */
  function windowOfUnit(window: NonNullable<BulkRestoreState['window']>, tenantIds: TenantId[]) {
    const touched = new Set(window.touched);
    const conflicted = new Set(window.conflicted);
    return {
      touched: tenantIds.filter((id) => touched.has(id)),
      conflicted: tenantIds.filter((id) => conflicted.has(id)),
      refuseConflicts: input.windowConflicts !== 'report',
    };
  }

  function prepareScratch() {
    const { source } = input;
    if (source.kind === 'backup')
      return scratchSteps.prepareScratch({
        kind: 'restore',
        restoreId,
        backup: source.backup,
        server: source.scratchServer ?? input.live,
        allowUnverifiedBackup: input.allowUnverifiedBackup,
        live: input.live,
        unsafeScratch: input.unsafeScratch,
      });
    if (source.kind === 'point-in-time')
      return scratchSteps.preparePointInTimeScratch({
        kind: 'restore',
        restoreId,
        stanza: source.stanza,
        target: source.target,
        database: source.database,
        live: input.live,
      });
    return steps.checkScratch({ scratch: source.scratch });
  }

  /** This restore's scratch dropped: a database on a server, or a point-in-time server stopped on its host. */
  async function dropScratch(scratch: NonNullable<BulkRestoreState['scratch']>): Promise<boolean> {
    if (!scratch.pointInTime) return (await steps.dropScratch({ kind: 'restore', restoreId, scratch })).dropped;
    try {
      const readers = scratchReaders(scratch.pointInTime.taskQueue);
      return (await readers.parentSteps.stopPointInTimeScratch({ kind: 'restore', restoreId, scratch })).dropped;
    } catch (error) {
      // Its host is gone (and the server with it), or cannot stop it: the report says it was not dropped.
      log.warn('could not stop the point-in-time scratch', { restoreId, error: failureMessage(error).message });
      return false;
    }
  }

  /**
   * The report in S3, and scratch dropped (when this restore made it and may). They are independent (the report reads
   * S3 only), so both run at once; a run that reached its report before that change replays them one after the other.
   */
  async function report(): Promise<BulkRestoreResult> {
    const status: RestoreStatus = state.cancelRequested ? 'cancelled' : state.failed > 0 ? 'partial' : 'succeeded';
    setPhase('reporting');
    let written: Awaited<ReturnType<typeof steps.writeRestoreReport>>;
    let dropped = false;
    const drop = state.scratch?.owned && !input.keepScratch ? state.scratch : undefined;
    if (drop && patched('report-and-drop-together')) {
      const writing = steps.writeRestoreReport(reportInput(status));
      const dropping = dropScratch(drop);
      // Both end before the run goes on, whichever fails: a failed report is the error, then a failed drop.
      const [w, d] = await Promise.allSettled([writing, dropping]);
      if (w.status === 'rejected') throw w.reason;
      if (d.status === 'rejected') throw d.reason;
      written = w.value;
      dropped = d.value;
    } else {
      written = await steps.writeRestoreReport(reportInput(status));
      if (drop) {
        setPhase('cleanup');
        dropped = await dropScratch(drop);
      }
    }
    setPhase(status === 'succeeded' ? 'completed' : status);
    await condition(allHandlersFinished);
    return result(status, written, dropped);
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

  /** Starts the child workflow of one unit. */
  function startUnit(tenantIds: TenantId[]): {
    workflowId: string;
    started: Promise<{ result(): Promise<TenantOutcome[]> }>;
  } {
    const firstIndex = state.nextIndex;
    const unitInput = {
      restoreId,
      scratch: state.scratch!.ref,
      ...(state.scratch!.pointInTime ? { scratchTaskQueue: state.scratch!.pointInTime.taskQueue } : {}),
      live: input.live,
      plan: state.plan!,
      conflict: input.conflict,
      chunkRows: input.config?.chunkRows,
      actions: input.config?.actions ?? [],
      artifacts: input.artifacts,
      allowPartial: input.allowPartial,
      tenantIds,
      approvedTenants: tenantIds.filter((id) => approvals.isApproved(id)),
      ...(state.window ? { window: windowOfUnit(state.window, tenantIds) } : {}),
    };
    // Children outlive a continue-as-new of this run; they report back by signal.
    const options = { parentClosePolicy: ParentClosePolicy.ABANDON };
    const attributes = (kind: 'tenant' | 'group') => [
      { key: RestoreIdKey, value: restoreId },
      { key: RestoreKindKey, value: kind },
      ...(kind === 'tenant' ? [{ key: TenantIdKey, value: tenantIds[0]! }] : []),
      { key: RestorePhaseKey, value: 'preflight' as TenantPhase },
    ];
    if (patched('one-restore-unit')) {
      const workflowId = unitWorkflowId(restoreId, tenantIds, firstIndex);
      for (const id of tenantIds) state.groupOf![id] = workflowId;
      const kind = tenantIds.length === 1 ? 'tenant' : 'group';
      return {
        workflowId,
        started: startChild(restoreUnit, {
          ...options,
          workflowId,
          typedSearchAttributes: attributes(kind),
          args: [unitInput],
        }),
      };
    }
    // A run of the previous release, replaying: the child types it started, with their inputs.
    if (groupSize > 1) {
      const workflowId = groupWorkflowId(restoreId, firstIndex);
      for (const id of tenantIds) state.groupOf![id] = workflowId;
      return {
        workflowId,
        started: startChild(tenantGroupRestore, {
          ...options,
          workflowId,
          typedSearchAttributes: attributes('group'),
          args: [unitInput],
        }),
      };
    }
    const [tenantId] = tenantIds as [TenantId];
    const workflowId = tenantWorkflowId(restoreId, tenantId);
    const { tenantIds: _ids, approvedTenants: _approved, ...common } = unitInput;
    const started = startChild(tenantRestore, {
      ...options,
      workflowId,
      typedSearchAttributes: attributes('tenant'),
      args: [{ ...common, tenantId, approved: approvals.isApproved(tenantId) }],
    });
    return { workflowId, started: started.then((handle) => ({ result: async () => [await handle.result()] })) };
  }

  function reportInput(status: RestoreStatus, error?: string) {
    return {
      restoreId,
      artifacts: input.artifacts,
      status,
      startedAt: state.startedAt,
      finishedAt: Date.now(),
      live: input.live,
      tenantRoot: input.tenantRoot,
      conflict: input.conflict,
      backup:
        input.source.kind === 'backup'
          ? input.source.backup
          : input.source.kind === 'point-in-time'
            ? (state.scratch?.backup ?? `pgbackrest:${input.source.stanza}`)
            : undefined,
      scratch: state.scratch,
      plan: state.plan,
      tenantList: state.tenantList,
      error,
      ...(state.window ? { window: state.window.object } : {}),
    };
  }

  function result(
    status: RestoreStatus,
    written?: { json: string; markdown: string },
    dropped = false,
    error?: string,
  ): BulkRestoreResult {
    const cancelled =
      state.cancelledTenants + (state.cancelRequested || status === 'failed' ? total() - state.nextIndex : 0);
    return {
      restoreId,
      status,
      total: total(),
      restored: state.restored,
      failed: state.failed,
      cancelled,
      failures: state.failures,
      report: written,
      scratch: state.scratch ? { ref: state.scratch.ref, dropped } : undefined,
      durationMs: Date.now() - state.startedAt,
      error,
    };
  }

  /**
   * Scratch or plan failed: nothing was written to live. Report it, keep scratch (a new restore can take it with
   * `--scratch`; a restore id is used once), and fail the workflow.
   */
  async function fail(error: unknown): Promise<never> {
    const { message } = failureMessage(error);
    log.error('restore failed before any tenant started', { restoreId, error: message });
    setPhase('failed');
    try {
      await steps.writeRestoreReport(reportInput('failed', message));
    } catch (reportError) {
      log.error('could not write the report', { error: failureMessage(reportError).message });
    }
    await condition(allHandlersFinished);
    throw ApplicationFailure.nonRetryable(`Restore ${restoreId} failed: ${message}`, 'RestoreFailed');
  }
}
