/**
 * The incident window's steps that the discover and the restore share (issue 26; activities/window.ts): the second
 * point-in-time scratch, at T1, recovered on the host of the first (T0), so that the activities comparing them find
 * both on one host, and stopped when it has been read.
 */
import { log } from '@temporalio/workflow';
import type { RecoveryTarget, ScratchInfo } from '../activities/restore-types';
import { scratchHostSteps, scratchReaders } from './activity-options';
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
