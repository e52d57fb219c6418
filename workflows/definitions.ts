/**
 * What the workflows and their clients share: search attribute keys, workflow ids and defaults here; the inputs
 * (workflows/restore-input.ts), the state and results (restore-state.ts) and the messages (messages.ts), re-exported.
 * Nothing here carries row data or a password (invariant I5): databases are aliases or URLs without a password, the
 * plan travels as an S3 location plus its digest, tenant lists longer than a page live in S3.
 */
import { defineSearchAttributeKey } from '@temporalio/common';
import type { TenantId } from '../activities/restore-types';

// The engine's shapes, re-exported for the workflows and the command line: they are defined where they are recorded.
export { canonicalUuid, normalizeTenantId, reenableActionTimeoutSeconds } from '../activities/restore-types';
export type {
  ActionOutcome,
  ArtifactsRef,
  ObjectRef,
  PlanRef,
  RecoveryTarget,
  RestoreStatus,
  ScratchInfo,
  TenantResult,
  TenantStatus,
} from '../activities/restore-types';

// ---------------------------------------------------------------------------------------------------------------
// search attributes (registered by scripts/stack.ts; `temporal operator search-attribute create` in production)

export const RestoreIdKey = defineSearchAttributeKey('RestoreId', 'KEYWORD');
export const RestorePhaseKey = defineSearchAttributeKey('RestorePhase', 'KEYWORD');
export const RestoreKindKey = defineSearchAttributeKey('RestoreKind', 'KEYWORD');
export const TenantIdKey = defineSearchAttributeKey('TenantId', 'KEYWORD');
export const TenantsTotalKey = defineSearchAttributeKey('TenantsTotal', 'INT');
export const TenantsRestoredKey = defineSearchAttributeKey('TenantsRestored', 'INT');
export const TenantsFailedKey = defineSearchAttributeKey('TenantsFailed', 'INT');

/**
 * Workflow ids read as paths: the parent is `restore/<id>`; a restore unit of one tenant `restore/<id>/tenant/<tenantId>`,
 * of several `restore/<id>/group/<n>`, named by the position of its first tenant in the tenant list.
 */
export const bulkWorkflowId = (restoreId: string): string => `restore/${restoreId}`;
/** A discover is `discover/<id>`: its own namespace of ids, so that a discover and a restore may share an id's text. */
export const discoverWorkflowId = (discoverId: string): string => `discover/${discoverId}`;
export const tenantWorkflowId = (restoreId: string, tenantId: TenantId): string =>
  `restore/${restoreId}/tenant/${tenantId}`;
export const groupWorkflowId = (restoreId: string, firstIndex: number): string =>
  `restore/${restoreId}/group/${firstIndex}`;
export const unitWorkflowId = (restoreId: string, tenantIds: TenantId[], firstIndex: number): string =>
  tenantIds.length === 1 ? tenantWorkflowId(restoreId, tenantIds[0]!) : groupWorkflowId(restoreId, firstIndex);

/**
 * Tenants per restore unit when the operator does not choose (`start --group-size`, a drill's `groupSize`). Small
 * tenants share a unit's fixed costs (a Temporal round trip and a dozen statements per step); a unit that fails a
 * data step is split into units of one, so a larger unit costs little when one tenant is bad.
 */
export const defaultGroupSize = 20;
/**
 * Rows per restore unit when the operator does not choose the unit's size (`start --unit-rows`; `--group-size` fixes
 * it in tenants instead). The first units take `defaultGroupSize` tenants; each later one as many tenants as this many
 * rows hold at the rows per tenant the finished units restored, up to a page of the list (500). Thousands of small
 * tenants then go in a few units, and a unit of big tenants stays about this size: two or three seconds of live's work
 * (the bench's main dataset: 1.22x the ideal with 100,000, 1.18x with 200,000, one run each).
 */
export const defaultUnitRows = 200_000;
/**
 * Units restored at once when the operator does not choose (`start --concurrency`, a drill's `concurrency`): the bench
 * measured 4 raising the writer's p99 far more than it shortened the restore (README, Performance).
 */
export const defaultConcurrency = 2;
/** The concurrency an operator may set: at least one unit, and a bound that no live database would survive anyway. */
export const concurrencyRange = { min: 1, max: 1000 } as const;

export * from './messages';
export type * from './restore-input';
export type * from './restore-state';
