/**
 * discover (`discover/<id>`): who was hit. Scratch (loaded from the backup, or given) → the plan → every owned table
 * compared, a few tables per activity, two activities at a time → one class per tenant, stored in S3 → scratch dropped
 * (when this discover made it). Live is only read. The result is small (counts, locations); the per-tenant detail and
 * the list to restore are in S3.
 */
import { ApplicationFailure, log, upsertSearchAttributes } from '@temporalio/workflow';
import type { DiscoverSummary } from '../activities/discover';
import { discoverInput } from '../activities/input-contract';
import { parentActivities, scratchHostLost } from './activity-options';
import { RestoreIdKey, RestoreKindKey, RestorePhaseKey, TenantsTotalKey, type DiscoverInput } from './definitions';
import type { ScratchInfo } from '../activities/restore-types';
import { failureMessage } from './failures';
import { prepareWindowEnd, stopWindowEnd } from './incident-window';
import { checkWorkflowInput } from './input-check';
import { withScratch } from './scratch';

const { steps } = parentActivities('restore');

/** Tables per activity: each is one read per side, so a retry repeats little; the heartbeat skips the tables done. */
const tablesPerActivity = 8;
/** Activities at once: each holds a session on scratch and one on live. */
const activitiesAtOnce = 2;

export async function discover(input: DiscoverInput): Promise<DiscoverSummary> {
  checkWorkflowInput('discover', discoverInput, input);
  const { discoverId } = input;
  const phase = (value: string) =>
    upsertSearchAttributes([
      { key: RestoreIdKey, value: discoverId },
      { key: RestoreKindKey, value: 'discover' },
      { key: RestorePhaseKey, value: value },
    ]);
  let windowEnd: ScratchInfo | undefined;
  try {
    const { source } = input;
    const dropped = (scratch: ScratchInfo) => scratch.owned && !input.keepScratch;
    const { value: summary, scratch } = await withScratch(
      {
        kind: 'discover',
        id: discoverId,
        source,
        live: input.live,
        allowUnverifiedBackup: input.allowUnverifiedBackup,
        unsafeScratch: input.unsafeScratch,
        beforePrepare: () => phase('preparing-scratch'),
        release: dropped,
        onRelease: () => phase('cleanup'),
      },
      async (scratch, readers) => {
        // An incident window (`--from T0 --to T1`): T0's scratch is compared with T1's instead of live, so that what
        // the window did is told apart from what users did before and after it (activities/window.ts).
        const window =
          source.kind === 'point-in-time' && source.until ? { from: source.target, to: source.until } : undefined;
        if (window && source.kind === 'point-in-time') {
          phase('preparing-window-end');
          windowEnd = await prepareWindowEnd(discoverId, source, window.to, input.live, scratch);
        }
        const compared = windowEnd?.ref ?? input.live;
        phase('planning');
        const plan = await readers.parentSteps.buildRestorePlan({
          restoreId: discoverId,
          scratch: scratch.ref,
          live: input.live,
          tenantRoot: input.tenantRoot,
          config: input.config,
          artifacts: input.artifacts,
          purpose: 'discover',
        });
        phase('comparing');
        const owned = await steps.ownedTableIndexes({ plan });
        const batches: number[][] = [];
        for (let i = 0; i < owned.length; i += tablesPerActivity) batches.push(owned.slice(i, i + tablesPerActivity));
        let next = 0;
        const worker = async () => {
          while (next < batches.length) {
            const tables = batches[next++]!;
            await readers.parentSteps.discoverTables({
              discoverId,
              scratch: scratch.ref,
              live: compared,
              plan,
              tables,
              artifacts: input.artifacts,
            });
          }
        };
        await Promise.all(Array.from({ length: Math.min(activitiesAtOnce, batches.length) }, worker));
        phase('classifying');
        const summary = await steps.summarizeDiscovery({
          discoverId,
          plan,
          tables: owned,
          artifacts: input.artifacts,
          ...(window ? { window } : {}),
        });
        if (windowEnd) {
          await stopWindowEnd(discoverId, windowEnd);
          windowEnd = undefined;
        }
        upsertSearchAttributes([{ key: TenantsTotalKey, value: summary.tenantsInBackup }]);
        return summary;
      },
    );
    phase('completed');
    // A scratch kept (--keep-scratch) is where the restore of what discover found can start: start --scratch <ref>.
    return { ...summary, scratch: { ref: scratch.ref, dropped: dropped(scratch) } };
  } catch (error) {
    if (windowEnd && !scratchHostLost(error)) await stopWindowEnd(discoverId, windowEnd);
    const { message } = failureMessage(error);
    log.error('discover failed', { discoverId, error: message });
    phase('failed');
    throw ApplicationFailure.nonRetryable(`Discover ${discoverId} failed: ${message}`, 'DiscoverFailed');
  }
}
