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
import { createRestoreActivities } from './restore-activities';
import { createScratchActivities } from './scratch';
import { createTenantListActivities } from './tenant-list';

export interface ActivityDeps {
  pools: Pools;
  s3: S3Client;
  logger?: Logger;
}

export function createActivities(deps: ActivityDeps) {
  return {
    ...createConnectivityActivities(deps),
    ...createScratchActivities(deps),
    ...createTenantListActivities(deps),
    ...createRestoreActivities(deps),
    ...createReenableActivities(deps),
    ...createReportActivities(deps),
    ...createDrillActivities(deps),
  };
}

export type Activities = ReturnType<typeof createActivities>;
