/**
 * createActivities builds every activity once in the worker, with its dependencies injected. Workflows type their
 * proxies as `ReturnType<typeof createActivities>` and never import this module's values.
 */
import type { S3Client } from '@aws-sdk/client-s3';
import type { Logger } from 'pino';
import { createConnectivityActivities } from './connectivity';
import type { Pools } from './db';
import { createDrillActivities } from './drill';
import { createReenableActivities } from './reenable';
import { createReportActivities } from './report';
import { createDiscoverActivities } from './discover';
import { createPointInTimeActivities, type ScratchHost } from './point-in-time';
import { planLoader, toActivityFailure } from './boundary';
import { createRestoreActivities } from './restore-activities';
import { createScratchActivities } from './scratch';
import { createTenantListActivities } from './tenant-list';
import { createWindowActivities } from './window';
import { createWhenActivities } from './when';

export interface ActivityDeps {
  pools: Pools;
  s3: S3Client;
  logger?: Logger;
  /** This worker's host and its own task queue: where a point-in-time scratch it prepares is read. */
  scratchHost?: ScratchHost;
}

/**
 * Every activity's errors pass through toActivityFailure: database errors are reduced (no row data, no `detail`) and
 * classified (only transient ones are retried) before Temporal records them or the SDK logs them.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
function atActivityBoundary<T extends Record<string, (...args: any[]) => Promise<unknown>>>(activities: T): T {
  const wrapped: Record<string, unknown> = {};
  for (const [name, fn] of Object.entries(activities)) {
    wrapped[name] = async (...args: unknown[]) => {
      try {
        return await fn(...args);
      } catch (error) {
        throw toActivityFailure(error);
      }
    };
  }
  return wrapped as T;
}

export function createActivities(deps: ActivityDeps) {
  return atActivityBoundary({
    ...createConnectivityActivities(deps),
    ...createScratchActivities(deps),
    ...createPointInTimeActivities({ pools: deps.pools, host: deps.scratchHost }),
    ...createWhenActivities({ pools: deps.pools, host: deps.scratchHost }),
    ...createTenantListActivities(deps),
    ...createRestoreActivities(deps),
    ...createReenableActivities(deps),
    ...createReportActivities(deps),
    ...createDrillActivities(deps),
    ...createDiscoverActivities({ ...deps, loadPlan: planLoader(deps.s3) }),
    ...createWindowActivities(deps),
  });
}

export type Activities = ReturnType<typeof createActivities>;
