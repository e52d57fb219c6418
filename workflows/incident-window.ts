/**
 * The incident window's steps that the discover and the restore share (issue 26; activities/window.ts): the second
 * point-in-time scratch, at T1, recovered on the host of the first (T0), so that the activities comparing them find
 * both on one host, and stopped when it has been read.
 */
import { log } from '@temporalio/workflow';
import type { RecoveryTarget, ScratchInfo } from '../activities/restore-types';
import { scratchHostLost, scratchHostSteps, scratchReaders } from './activity-options';
import type { BulkRestoreInput, BulkRestoreState } from './definitions';
import { failureMessage } from './failures';

/** The T1 scratch of `id` (`until`, from the stanza of `source`), on the host of `first` (the T0 scratch). */
export function prepareWindowEnd(
  id: string,
  source: { stanza: string; database?: string },
  until: RecoveryTarget,
  live: string,
  first: ScratchInfo,
) {
  if (!first.pointInTime) throw new Error('an incident window needs a point-in-time scratch at T0');
  return scratchHostSteps(first.pointInTime.taskQueue).preparePointInTimeScratch({
    kind: 'window-end',
    restoreId: id,
    stanza: source.stanza,
    target: until,
    ...(source.database ? { database: source.database } : {}),
    live,
  });
}

/** The T1 scratch stopped and removed on its host; a failure is logged (its host is gone, and the server with it). */
export async function stopWindowEnd(id: string, end: ScratchInfo): Promise<void> {
  try {
    await scratchReaders(end.pointInTime?.taskQueue).parentSteps.stopPointInTimeScratch({
      kind: 'window-end',
      restoreId: id,
      scratch: end,
    });
  } catch (error) {
    log.warn('could not stop the scratch at the end of the window', { id, error: failureMessage(error).message });
  }
}

/**
 * A restore's incident window (`--from T0 --to T1`): the scratch at T1 recovered beside the one at T0, their
 * difference computed against live, and the T0 scratch narrowed to it (activities/window.ts). The units then restore
 * exactly the window's deleted and changed rows.
 */
export async function narrowScratchToWindow(input: BulkRestoreInput, state: BulkRestoreState): Promise<void> {
  const { source, restoreId } = input;
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
