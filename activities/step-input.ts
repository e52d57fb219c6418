/**
 * What every restore step of a unit takes (preflight, copy, validate), and where a partial tenant's restored keys go.
 */
import type { ConflictPolicy, TenantId } from './restore-types';
import type { ArtifactsRef, ObjectRef, PlanRef } from './restore-types';

export interface TenantStepInput {
  restoreId: string;
  scratch: string;
  live: string;
  plan: PlanRef;
  tenantId: TenantId;
  /** A group restored together (set-based, one copy transaction); `tenantId` is then its first tenant. */
  tenantIds?: TenantId[];
  conflict: ConflictPolicy;
  /** Preflight's depth (see PreflightResult.checks); default full. */
  preflightChecks?: 'full' | 'state';
  /** A partial tenant (allowPartial): the copy records the keys it inserts, validation checks the backup's keys are back. */
  partial?: boolean;
  /** For validation under skip: the rows the copy kept per table (its `skipped`); every other row must be the backup's. */
  kept?: Record<string, number>;
  /** For validation: the copy went direct and proved every reference before its COMMIT (validate.ts). */
  referencesProven?: boolean;
  /** For the copy: tenants preflight found absent that nothing of this restore wrote yet (checked again under the lock). */
  expectAbsent?: TenantId[];
  /** Where a partial tenant's copy stores the keys it inserted (see storeRestoredKeys). */
  artifacts?: ArtifactsRef;
  /** An incident window's revert: scratch is T0 narrowed to the delta; the copy sets changed rows back (window.ts). */
  window?: boolean;
}

/**
 * A partial tenant's restored keys go to S3, not into workflow history: a primary key can be row data (an email), and
 * 1,000 keys per table can grow a payload toward its limit. The result keeps the counts and the object's location. A
 * retry after the COMMIT inserts nothing: it leaves the first attempt's list as it is.
 */
export function restoredKeysObject(artifacts: ArtifactsRef, tenantId: TenantId): ObjectRef {
  return { bucket: artifacts.bucket, key: `${artifacts.prefix}restored-keys/${tenantId}.json` };
}
