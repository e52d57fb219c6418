/**
 * The end of a bulk restore (workflows/bulk-restore.ts): its report in S3, its scratch released, and its result; or,
 * when scratch or the plan failed before any tenant started, the failure reported and the workflow failed.
 */
import { allHandlersFinished, ApplicationFailure, condition, log, patched } from '@temporalio/workflow';
import { parentActivities } from './activity-options';
import type { BulkPhase, BulkRestoreInput, BulkRestoreResult, BulkRestoreState, RestoreStatus } from './definitions';
import { failureMessage } from './failures';
import { releaseScratch } from './scratch';

const { steps } = parentActivities('restore');

/** What the end of a restore reads of its run: the input, the carried state, the total, and how to publish a phase. */
export interface RestoreRun {
  input: BulkRestoreInput;
  state: BulkRestoreState;
  total(): number;
  setPhase(next: BulkPhase): void;
}

/**
 * The report in S3, and scratch dropped (when this restore made it and may). They are independent (the report reads
 * S3 only), so both run at once; a run that reached its report before that change replays them one after the other.
 */
export async function report(run: RestoreRun): Promise<BulkRestoreResult> {
  const { input, state, setPhase } = run;
  const status: RestoreStatus = state.cancelRequested ? 'cancelled' : state.failed > 0 ? 'partial' : 'succeeded';
  setPhase('reporting');
  let written: Awaited<ReturnType<typeof steps.writeRestoreReport>>;
  let dropped = false;
  const drop = state.scratch?.owned && !input.keepScratch ? state.scratch : undefined;
  if (drop && patched('report-and-drop-together')) {
    const writing = steps.writeRestoreReport(reportInput(run, status));
    const dropping = releaseScratch('restore', input.restoreId, drop);
    // Both end before the run goes on, whichever fails: a failed report is the error, then a failed drop.
    const [w, d] = await Promise.allSettled([writing, dropping]);
    if (w.status === 'rejected') throw w.reason;
    if (d.status === 'rejected') throw d.reason;
    written = w.value;
    dropped = d.value;
  } else {
    written = await steps.writeRestoreReport(reportInput(run, status));
    if (drop) {
      setPhase('cleanup');
      dropped = await releaseScratch('restore', input.restoreId, drop);
    }
  }
  setPhase(status === 'succeeded' ? 'completed' : status);
  await condition(allHandlersFinished);
  return result(run, status, written, dropped);
}

/**
 * Scratch or plan failed: nothing was written to live. Report it, keep scratch (a new restore can take it with
 * `--scratch`; a restore id is used once), and fail the workflow.
 */
export async function fail(run: RestoreRun, error: unknown): Promise<never> {
  const { restoreId } = run.input;
  const { message } = failureMessage(error);
  log.error('restore failed before any tenant started', { restoreId, error: message });
  run.setPhase('failed');
  try {
    await steps.writeRestoreReport(reportInput(run, 'failed', message));
  } catch (reportError) {
    log.error('could not write the report', { error: failureMessage(reportError).message });
  }
  await condition(allHandlersFinished);
  throw ApplicationFailure.nonRetryable(`Restore ${restoreId} failed: ${message}`, 'RestoreFailed');
}

function reportInput({ input, state }: RestoreRun, status: RestoreStatus, error?: string) {
  return {
    restoreId: input.restoreId,
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
  { input, state, total }: RestoreRun,
  status: RestoreStatus,
  written?: { json: string; markdown: string },
  dropped = false,
  error?: string,
): BulkRestoreResult {
  const cancelled =
    state.cancelledTenants + (state.cancelRequested || status === 'failed' ? total() - state.nextIndex : 0);
  return {
    restoreId: input.restoreId,
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
