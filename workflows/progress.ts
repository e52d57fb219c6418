/** The `progress` query of a bulk restore: counts by phase, from the window's state. */
import type { ArtifactsRef, BulkPhase, BulkRestoreState, RestoreProgress } from './definitions';

export function progress(
  restoreId: string,
  phase: BulkPhase,
  state: BulkRestoreState,
  total: number,
  artifacts: ArtifactsRef,
): RestoreProgress {
  const counts: RestoreProgress['counts'] = {
    pending: state.cancelRequested ? 0 : total - state.nextIndex,
    preflight: 0,
    copy: 0,
    validate: 0,
    'awaiting-approval': 0,
    reenable: 0,
    restored: state.restored,
    failed: state.failed,
    cancelled: state.cancelledTenants + (state.cancelRequested ? total - state.nextIndex : 0),
  };
  for (const p of Object.values(state.running)) counts[p] += 1;
  return {
    restoreId,
    phase,
    paused: state.paused,
    cancelRequested: state.cancelRequested,
    concurrency: state.concurrency,
    total,
    started: state.nextIndex,
    counts,
    failures: state.failures,
    approvedAll: state.approvedAll,
    scratch: state.scratch?.ref,
    planDigest: state.plan?.digest,
    runs: state.runs,
    artifacts,
  };
}
