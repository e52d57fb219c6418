/**
 * The scratch of a restore, a discover or a drill, in one place: the one switch over source kinds (a backup loaded,
 * a point-in-time server recovered, a scratch given), the host-lost retry, and the release (a database dropped, or a
 * point-in-time server stopped on its host).
 */
import { log } from '@temporalio/workflow';
import type { ScratchInfo } from '../activities/restore-types';
import type { ScratchRisk } from '../activities/scratch-server';
import { parentActivities, scratchHostLost, scratchReaders } from './activity-options';
import type { RestoreSource } from './definitions';
import { failureMessage } from './failures';

/** Where scratch comes from, and for whom: a restore, a discover or a drill of this id. */
export interface ScratchRequest {
  kind: 'restore' | 'discover' | 'drill';
  id: string;
  source: RestoreSource;
  live: string;
  allowUnverifiedBackup?: boolean;
  unsafeScratch?: ScratchRisk[];
  /** A restore retries the loading patiently; a drill should fail loudly and soon (workflows/activity-options.ts). */
  patience?: 'restore' | 'drill';
}

export type ScratchReaders = ReturnType<typeof scratchReaders>;

/** Scratch, loaded from the backup, recovered to a point in time, or given (checked, never written). */
export function prepareScratch(request: ScratchRequest): Promise<ScratchInfo> {
  const { kind, id, source, live } = request;
  const { steps, scratchSteps } = parentActivities(request.patience ?? 'restore');
  if (source.kind === 'backup')
    return scratchSteps.prepareScratch({
      kind,
      restoreId: id,
      backup: source.backup,
      server: source.scratchServer ?? live,
      allowUnverifiedBackup: request.allowUnverifiedBackup,
      live,
      unsafeScratch: request.unsafeScratch,
    });
  if (source.kind === 'point-in-time')
    return scratchSteps.preparePointInTimeScratch({
      kind,
      restoreId: id,
      stanza: source.stanza,
      target: source.target,
      database: source.database,
      live,
    });
  return steps.checkScratch({ scratch: source.scratch });
}

/**
 * This scratch released: a database dropped on its server, or a point-in-time server stopped on its host. Returns
 * whether it was; a point-in-time host that is gone (and its server with it), or cannot stop it, is logged, not thrown.
 */
export async function releaseScratch(kind: ScratchRequest['kind'], id: string, scratch: ScratchInfo): Promise<boolean> {
  const { steps } = parentActivities('restore');
  if (!scratch.pointInTime) return (await steps.dropScratch({ kind, restoreId: id, scratch })).dropped;
  try {
    const readers = scratchReaders(scratch.pointInTime.taskQueue);
    return (await readers.parentSteps.stopPointInTimeScratch({ kind, restoreId: id, scratch })).dropped;
  } catch (error) {
    log.warn('could not stop the point-in-time scratch', { restoreId: id, error: failureMessage(error).message });
    return false;
  }
}

/**
 * prepare → `use(scratch, readers)` → release. A point-in-time scratch lives on the host that recovered it: if that
 * host is gone while `use` reads it, scratch is recovered again on another (`attempts` in all, default 1). Scratch is
 * released after `use` succeeded when `release(scratch)` says so (`onRelease` runs first); after a failure it is kept,
 * so that a new run can take it with `--scratch`. A bulk restore releases its scratch in a later run (its report), so
 * it asks for no release here.
 */
export async function withScratch<T>(
  request: ScratchRequest & {
    attempts?: number;
    beforePrepare?: () => void;
    release?: (scratch: ScratchInfo) => boolean;
    onRelease?: () => void;
  },
  use: (scratch: ScratchInfo, readers: ScratchReaders) => Promise<T>,
): Promise<{ value: T; scratch: ScratchInfo; released: boolean }> {
  for (let attempt = 1; ; attempt += 1) {
    request.beforePrepare?.();
    const scratch = await prepareScratch(request);
    let value: T;
    try {
      value = await use(scratch, scratchReaders(scratch.pointInTime?.taskQueue));
    } catch (error) {
      if (!(scratch.pointInTime && scratchHostLost(error) && attempt < (request.attempts ?? 1))) throw error;
      log.warn('the scratch host stopped answering: recovering scratch again on another host', {
        restoreId: request.id,
        host: scratch.pointInTime.host,
      });
      continue;
    }
    if (!request.release?.(scratch)) return { value, scratch, released: false };
    request.onRelease?.();
    return { value, scratch, released: await releaseScratch(request.kind, request.id, scratch) };
  }
}
