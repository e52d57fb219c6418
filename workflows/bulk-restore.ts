import {
  allHandlersFinished,
  ApplicationFailure,
  CancellationScope,
  condition,
  continueAsNew,
  getExternalWorkflowHandle,
  isCancellation,
  log,
  ParentClosePolicy,
  proxyActivities,
  setHandler,
  startChild,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { TenantId } from '../activities/restore-types';
import {
  approveGroupTenantsSignal,
  approveSignal,
  approveTenantSignal,
  cancelSignal,
  groupDoneSignal,
  groupPhaseSignal,
  groupWorkflowId,
  normalizeTenantId,
  pauseSignal,
  progressQuery,
  RestoreIdKey,
  RestoreKindKey,
  RestorePhaseKey,
  resumeSignal,
  setConcurrencySignal,
  TenantIdKey,
  tenantDoneSignal,
  tenantPhaseSignal,
  TenantsFailedKey,
  TenantsRestoredKey,
  TenantsTotalKey,
  tenantWorkflowId,
  type BulkPhase,
  type BulkRestoreInput,
  type BulkRestoreResult,
  type BulkRestoreState,
  type RestoreProgress,
  type TenantOutcome,
  type TenantPhase,
} from './definitions';
import { tenantGroupRestore } from './tenant-group-restore';
import { tenantRestore } from './tenant-restore';

/** Loading scratch can take a while (download + pg_restore): heartbeats say it is alive. */
const scratchSteps = proxyActivities<Activities>({
  startToCloseTimeout: '6 hours',
  heartbeatTimeout: '1 minute',
  retry: { initialInterval: '2 seconds', backoffCoefficient: 2, maximumInterval: '1 minute', maximumAttempts: 10 },
});

const steps = proxyActivities<Activities>({
  startToCloseTimeout: '30 minutes',
  heartbeatTimeout: '1 minute',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '30 seconds', maximumAttempts: 20 },
});

/** Children started by one run before it continues-as-new: ~15 events each keeps a run near 8k events (limit 51,200). A group child sends one signal per phase for all its tenants, so the same bound holds for groups. */
const defaultMaxChildrenPerRun = 500;
/** Tenant ids read from S3 at a time. */
const pageSize = 500;
/** Failures kept with their reasons in workflow state and the progress query; the report has all of them. */
const maxFailuresKept = 100;

function describe(error: unknown): string {
  let e = error as { cause?: unknown; message?: string; name?: string };
  while (e?.cause && e.name === 'ActivityFailure') e = e.cause as typeof e;
  return e?.message ?? String(error);
}

/**
 * bulkRestore: prepare scratch → build the plan once → one tenantRestore child per tenant through a sliding window.
 * Invariants:
 * - At most `concurrency` tenants hold a window slot (a tenant waiting for approval does not: it uses no database).
 * - One tenant's failure never stops the others; the failure is counted and reported with its reason.
 * - Pause stops starting tenants; running ones finish. Cancel stops starting tenants and cancels running ones
 *   (a one-transaction copy rolls back; a chunked copy keeps only idempotent chunks). Then it reports.
 * - Inputs and state carry ids, counts, digests and S3 locations; never rows or passwords (I5). The plan and the
 *   tenant list live in S3.
 * - It continues-as-new after `maxChildrenPerRun` children or when the server suggests it, carrying its state;
 *   children are ABANDONed so they outlive the run, and report back by signal to the workflow id.
 */
export async function bulkRestore(input: BulkRestoreInput, carried?: BulkRestoreState): Promise<BulkRestoreResult> {
  const { restoreId } = input;
  const state: BulkRestoreState = carried ?? {
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
  state.runs += 1;
  const approved = new Set<TenantId>(state.approvedTenants);
  const groupSize = Math.max(1, Math.floor(input.groupSize ?? 1));
  /** The child workflow of a tenant started in a group (tenants with a child of their own are not in it). */
  const groupOf = (state.groupOf ??= {});
  const maxChildrenPerRun = input.maxChildrenPerRun ?? defaultMaxChildrenPerRun;
  let phase: BulkPhase = carried ? 'restoring' : 'preparing-scratch';
  let startedThisRun = 0;
  let startsPending = 0;
  let cancelForwarded = false;
  let page: TenantId[] = [];
  let pageStart = state.nextIndex;
  const total = () => state.tenantList?.count ?? input.tenants?.length ?? 0;

  // --- messages ------------------------------------------------------------------------------------------------
  setHandler(pauseSignal, () => {
    state.paused = true;
  });
  setHandler(resumeSignal, () => {
    state.paused = false;
  });
  setHandler(cancelSignal, () => {
    state.cancelRequested = true;
  });
  setHandler(setConcurrencySignal, (n: number) => {
    if (Number.isInteger(n) && n >= 1 && n <= 1000) state.concurrency = n;
    else log.warn('ignored setConcurrency: not an integer in 1..1000', { value: n });
  });
  setHandler(approveSignal, async ({ tenantIds }) => {
    if (!tenantIds) state.approvedAll = true;
    else for (const id of tenantIds) approved.add(normalizeTenantId(id, state.plan?.rootKeyType));
    // Running children learn it now; children started later get it in their input.
    const targets = Object.keys(state.running).filter((id) => state.approvedAll || approved.has(id));
    const groups = new Map<string, TenantId[]>();
    for (const id of targets) if (groupOf[id]) groups.set(groupOf[id], [...(groups.get(groupOf[id]) ?? []), id]);
    await Promise.all([...groups].map(async ([workflowId, ids]) => {
      try {
        await getExternalWorkflowHandle(workflowId).signal(approveGroupTenantsSignal, { tenantIds: ids });
      } catch (error) {
        log.info('approval not delivered (group already finished)', { group: workflowId, error: (error as Error).message });
      }
    }));
    await Promise.all(targets.filter((id) => !groupOf[id]).map(async (id) => {
      try {
        await getExternalWorkflowHandle(tenantWorkflowId(restoreId, id)).signal(approveTenantSignal);
      } catch (error) {
        log.info('approval not delivered (tenant already finished)', { tenantId: id, error: (error as Error).message });
      }
    }));
  });
  setHandler(tenantPhaseSignal, ({ tenantId, phase: p }) => {
    if (tenantId in state.running) state.running[tenantId] = p;
  });
  setHandler(tenantDoneSignal, (outcome: TenantOutcome) => finish(outcome));
  setHandler(groupPhaseSignal, ({ tenantIds, phase: p }) => {
    for (const id of tenantIds) if (id in state.running) state.running[id] = p;
  });
  setHandler(groupDoneSignal, ({ outcomes }) => outcomes.forEach(finish));
  setHandler(progressQuery, (): RestoreProgress => {
    const counts: RestoreProgress['counts'] = {
      pending: state.cancelRequested ? 0 : total() - state.nextIndex,
      preflight: 0, copy: 0, validate: 0, 'awaiting-approval': 0, reenable: 0,
      restored: state.restored,
      failed: state.failed,
      cancelled: state.cancelledTenants + (state.cancelRequested ? total() - state.nextIndex : 0),
    };
    for (const p of Object.values(state.running)) counts[p] += 1;
    return {
      restoreId, phase, paused: state.paused, cancelRequested: state.cancelRequested, concurrency: state.concurrency,
      total: total(), started: state.nextIndex, counts, failures: state.failures, approvedAll: state.approvedAll,
      scratch: state.scratch?.ref, planDigest: state.plan?.digest, runs: state.runs, artifacts: input.artifacts,
    };
  });

  function finish(outcome: TenantOutcome): void {
    if (!(outcome.tenantId in state.running)) return; // already counted (signal and child result both report)
    delete state.running[outcome.tenantId];
    delete groupOf[outcome.tenantId];
    if (outcome.status === 'restored') state.restored += 1;
    else if (outcome.status === 'cancelled') state.cancelledTenants += 1;
    else {
      state.failed += 1;
      if (state.failures.length < maxFailuresKept) state.failures.push({ tenantId: outcome.tenantId, reason: outcome.reason ?? 'failed' });
    }
  }

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

  // A cancel of the workflow itself (Web UI, `temporal workflow cancel`) is treated like the cancel signal: the body
  // runs non-cancellable so that it can cancel the children, report and clean up.
  CancellationScope.current().cancelRequested.catch(() => {
    state.cancelRequested = true;
  });

  return CancellationScope.nonCancellable(async () => {
    publish();
    // --- prepare scratch and plan (first run only) ----------------------------------------------------------------
    if (!carried) {
      try {
        state.tenantList = await steps.stageTenantList({ artifacts: input.artifacts, tenants: input.tenants, tenantsObject: input.tenantsObject });
        publish();
        state.scratch = input.source.kind === 'backup'
          ? await scratchSteps.prepareScratch({ restoreId, backup: input.source.backup, server: input.source.scratchServer ?? input.live, allowUnverifiedBackup: input.allowUnverifiedBackup })
          : await steps.checkScratch({ scratch: input.source.scratch });
        if (!state.cancelRequested) {
          setPhase('planning');
          state.plan = await steps.buildRestorePlan({ restoreId, scratch: state.scratch.ref, live: input.live, tenantRoot: input.tenantRoot, config: input.config, artifacts: input.artifacts });
          // Approvals that came before the plan knew the root key's type: compare them as the tenant pages will be.
          for (const id of [...approved]) {
            approved.delete(id);
            approved.add(normalizeTenantId(id, state.plan.rootKeyType));
          }
        }
      } catch (error) {
        return fail(error);
      }
    }

    // --- the sliding window ---------------------------------------------------------------------------------------
    setPhase(state.paused ? 'paused' : 'restoring');
    // Window slots are child workflows: a group holds one while any of its tenants still uses the database.
    const inFlight = () => {
      const children = new Set<string>();
      for (const [id, p] of Object.entries(state.running)) if (p !== 'awaiting-approval') children.add(groupOf[id] ?? id);
      return children.size;
    };
    const hasMore = () => !state.cancelRequested && state.nextIndex < total();
    const canStart = () => hasMore() && !state.paused && inFlight() < state.concurrency;
    const shouldContinueAsNew = () => (hasMore() && startedThisRun >= maxChildrenPerRun) || workflowInfo().continueAsNewSuggested;
    const mustForwardCancel = () => state.cancelRequested && !cancelForwarded && startsPending === 0;
    const idle = () => !hasMore() && Object.keys(state.running).length === 0 && startsPending === 0;

    while (!idle()) {
      if (mustForwardCancel()) {
        cancelForwarded = true;
        setPhase('cancelling');
        const children = new Set<string>();
        for (const id of Object.keys(state.running)) children.add(groupOf[id] ?? tenantWorkflowId(restoreId, id));
        for (const workflowId of children) {
          getExternalWorkflowHandle(workflowId).cancel().catch((error: Error) => {
            log.info('cancel not delivered (child already finished)', { workflowId, error: error.message });
          });
        }
        continue;
      }
      if (shouldContinueAsNew()) {
        // Every child start must be acknowledged, and every message handled, before this run ends.
        await condition(() => startsPending === 0 && allHandlersFinished());
        log.info('continuing as new', { restoreId, started: state.nextIndex, running: Object.keys(state.running).length, run: state.runs });
        state.approvedTenants = [...approved];
        return continueAsNew<typeof bulkRestore>({ ...input, tenants: undefined }, state);
      }
      if (canStart()) {
        if (state.nextIndex >= pageStart + page.length) {
          page = await steps.readTenantPage({ list: state.tenantList!, offset: state.nextIndex, limit: pageSize, rootKeyType: state.plan?.rootKeyType });
          pageStart = state.nextIndex;
          if (page.length === 0) throw ApplicationFailure.nonRetryable(`Tenant list ended at ${state.nextIndex}, expected ${total()} ids.`, 'InvalidTenantList');
          continue;
        }
        const offset = state.nextIndex - pageStart;
        if (groupSize > 1) startGroup(page.slice(offset, offset + groupSize));
        else startTenant(page[offset]!);
        continue;
      }
      if (!state.cancelRequested) setPhase(state.paused ? 'paused' : 'restoring');
      publish();
      const seen = `${state.restored}|${state.failed}|${state.paused}|${state.concurrency}`;
      await condition(() => canStart() || idle() || mustForwardCancel() || shouldContinueAsNew()
        || seen !== `${state.restored}|${state.failed}|${state.paused}|${state.concurrency}`);
    }

    // --- report and clean up ---------------------------------------------------------------------------------------
    const status: BulkRestoreResult['status'] = state.cancelRequested ? 'cancelled' : state.failed > 0 ? 'partial' : 'succeeded';
    setPhase('reporting');
    const report = await steps.writeRestoreReport(reportInput(status));
    let dropped = false;
    if (state.scratch?.owned && !input.keepScratch) {
      setPhase('cleanup');
      dropped = (await steps.dropScratch({ restoreId, scratch: state.scratch })).dropped;
    }
    setPhase(status === 'succeeded' ? 'completed' : status);
    await condition(allHandlersFinished);
    return result(status, report, dropped);
  });

  /** What every child gets, whether it restores one tenant or a group. */
  function childInput() {
    return {
      restoreId,
      scratch: state.scratch!.ref,
      live: input.live,
      plan: state.plan!,
      conflict: input.conflict,
      chunkRows: input.config?.chunkRows,
      actions: input.config?.actions ?? [],
      artifacts: input.artifacts,
      allowPartial: input.allowPartial,
    };
  }

  function startTenant(tenantId: TenantId): void {
    state.running[tenantId] = 'preflight';
    state.nextIndex += 1;
    state.childrenStarted += 1;
    startedThisRun += 1;
    startsPending += 1;
    const workflowId = tenantWorkflowId(restoreId, tenantId);
    watchChild(startChild(tenantRestore, {
      workflowId,
      // Children outlive a continue-as-new of this run; they report back by signal.
      parentClosePolicy: ParentClosePolicy.ABANDON,
      typedSearchAttributes: [
        { key: RestoreIdKey, value: restoreId },
        { key: RestoreKindKey, value: 'tenant' },
        { key: TenantIdKey, value: tenantId },
        { key: RestorePhaseKey, value: 'preflight' as TenantPhase },
      ],
      args: [{ ...childInput(), tenantId, approved: state.approvedAll || approved.has(tenantId) }],
    }), [tenantId], (outcome) => [outcome], workflowId);
  }

  /** Starts one tenantGroupRestore child for consecutive tenants of the list (they are never split across pages). */
  function startGroup(tenantIds: TenantId[]): void {
    const workflowId = groupWorkflowId(restoreId, state.nextIndex);
    for (const id of tenantIds) {
      state.running[id] = 'preflight';
      groupOf[id] = workflowId;
    }
    state.nextIndex += tenantIds.length;
    state.childrenStarted += 1;
    startedThisRun += 1;
    startsPending += 1;
    watchChild(startChild(tenantGroupRestore, {
      workflowId,
      parentClosePolicy: ParentClosePolicy.ABANDON,
      typedSearchAttributes: [
        { key: RestoreIdKey, value: restoreId },
        { key: RestoreKindKey, value: 'group' },
        { key: RestorePhaseKey, value: 'preflight' as TenantPhase },
      ],
      args: [{ ...childInput(), tenantIds, approvedTenants: tenantIds.filter((id) => state.approvedAll || approved.has(id)) }],
    }), tenantIds, (outcomes) => outcomes, workflowId);
  }

  /**
   * Counts a child's tenants when it ends. Across runs the child signals its outcomes; within this run its result
   * arrives too, so a child that ended without signalling (terminated, say) is still counted.
   */
  function watchChild<T>(started: Promise<{ result(): Promise<T> }>, tenantIds: TenantId[], outcomesOf: (result: T) => TenantOutcome[], workflowId: string): void {
    const finishAll = (status: TenantOutcome['status'], reason: string) => tenantIds.forEach((tenantId) => finish({ tenantId, status, reason }));
    started.then((handle) => {
      startsPending -= 1;
      handle.result().then(
        (result) => outcomesOf(result).forEach(finish),
        (error: unknown) => finishAll(isCancellation(error) || isCancelledChild(error) ? 'cancelled' : 'failed', describeChild(error)),
      );
    }, (error: Error) => {
      startsPending -= 1;
      if (error.name === 'WorkflowExecutionAlreadyStartedError') {
        // Still running from an earlier attempt of this restore: it will signal its outcomes to this workflow id.
        log.warn('child already running; waiting for its signal', { workflowId });
        return;
      }
      finishAll('failed', `could not start: ${error.message}`);
    });
  }

  function reportInput(status: BulkRestoreResult['status'], error?: string) {
    return {
      restoreId, artifacts: input.artifacts, status, startedAt: state.startedAt, finishedAt: Date.now(), live: input.live,
      tenantRoot: input.tenantRoot, conflict: input.conflict, backup: input.source.kind === 'backup' ? input.source.backup : undefined,
      scratch: state.scratch, plan: state.plan, tenantList: state.tenantList, error,
    };
  }

  function result(status: BulkRestoreResult['status'], report?: { json: string; markdown: string }, dropped = false, error?: string): BulkRestoreResult {
    const cancelled = state.cancelledTenants + (state.cancelRequested || status === 'failed' ? total() - state.nextIndex : 0);
    return {
      restoreId, status, total: total(), restored: state.restored, failed: state.failed, cancelled,
      failures: state.failures, report, scratch: state.scratch ? { ref: state.scratch.ref, dropped } : undefined,
      durationMs: Date.now() - state.startedAt, error,
    };
  }

  /**
   * Scratch or plan failed: nothing was written to live. Report it, keep scratch (a new restore can take it with
   * `--scratch`; a restore id is used once), and fail the workflow.
   */
  async function fail(error: unknown): Promise<never> {
    const message = describe(error);
    log.error('restore failed before any tenant started', { restoreId, error: message });
    setPhase('failed');
    try {
      await steps.writeRestoreReport(reportInput('failed', message));
    } catch (reportError) {
      log.error('could not write the report', { error: describe(reportError) });
    }
    await condition(allHandlersFinished);
    throw ApplicationFailure.nonRetryable(`Restore ${restoreId} failed: ${message}`, 'RestoreFailed');
  }
}

function isCancelledChild(error: unknown): boolean {
  const cause = (error as { cause?: { name?: string } }).cause;
  return cause?.name === 'CancelledFailure';
}

function describeChild(error: unknown): string {
  const e = error as { cause?: { message?: string }; message?: string };
  return e.cause?.message ?? e.message ?? 'failed';
}
