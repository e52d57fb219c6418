/**
 * whenDeleted (`when/<id>`): which commits deleted some tenants' root rows (`tenant-restore when`). A point-in-time
 * scratch recovered at --since (default: the end of the stanza's oldest backup) → the root rows located there and
 * followed through the archived WAL to the end of the archive, on the scratch's host (activities/when.ts) → the
 * scratch stopped, whether that succeeded or not.
 *
 * Invariants: nothing is written anywhere but the scratch area of one host; live is not read (only its name gives the
 * database's default); the result is small (per tenant an xid, a time and two LSNs).
 */
import { ApplicationFailure, log } from '@temporalio/workflow';
import { parseRecoveryTarget } from '../activities/input-contract';
import type { ScratchInfo } from '../activities/restore-types';
import { describeMoment, whenInput, type WhenInput, type WhenResult } from '../activities/when-contract';
import { parentActivities, scratchReaders } from './activity-options';
import { failureMessage } from './failures';
import { checkWorkflowInput } from './input-check';

const { steps, scratchSteps } = parentActivities('restore');

export async function whenDeleted(input: WhenInput): Promise<WhenResult> {
  checkWorkflowInput('whenDeleted', whenInput, input);
  const { whenId } = input;
  let scratch: ScratchInfo | undefined;
  try {
    let since = input.since;
    if (!since) {
      const range = await steps.pointInTimeRange({ stanza: input.stanza });
      const end = range.from && parseRecoveryTarget(range.from.time);
      if (!end)
        throw ApplicationFailure.nonRetryable(
          `stanza '${input.stanza}' has no backup to start reading from (${range.status}): take one (pgbackrest --stanza=${input.stanza} backup)`,
          'WhenRefused',
        );
      since = end;
    }
    scratch = await scratchSteps.preparePointInTimeScratch({
      kind: 'when',
      restoreId: whenId,
      stanza: input.stanza,
      target: since,
      ...(input.database ? { database: input.database } : {}),
      live: input.live,
    });
    const readers = scratchReaders(scratch.pointInTime?.taskQueue);
    const found = await readers.parentSteps.findRootDeletions({
      whenId,
      stanza: input.stanza,
      database: scratch.pointInTime!.database,
      tenantRoot: input.tenantRoot,
      tenants: input.tenants,
      since,
    });
    const { walFrom, ...rest } = found;
    return {
      whenId,
      stanza: input.stanza,
      tenantRoot: input.tenantRoot,
      since: {
        target: describeMoment(since),
        isDefault: !input.since,
        ...(scratch.pointInTime?.stopped ? { recovery: scratch.pointInTime.stopped } : {}),
        walFrom,
      },
      ...rest,
    };
  } catch (error) {
    const { type, message } = failureMessage(error);
    log.error('when failed', { whenId, error: message });
    // The recovery's refusals speak of --at (start's flag); here the moment is --since.
    throw ApplicationFailure.nonRetryable(
      `when ${whenId}: ${message.replace(/--at\b/g, '--since')}`,
      type === 'TenantNotAtSince' || type === 'PointInTimeOutOfRange' ? type : 'WhenFailed',
    );
  } finally {
    // Stopped on its own host, also after a failure; a host gone took its server with it.
    if (scratch?.pointInTime) {
      const stopping = scratch;
      await scratchReaders(stopping.pointInTime!.taskQueue)
        .parentSteps.stopPointInTimeScratch({ kind: 'when', restoreId: whenId, scratch: stopping })
        .catch((error: unknown) =>
          log.warn('could not stop the when scratch', { whenId, error: failureMessage(error).message }),
        );
    }
  }
}
