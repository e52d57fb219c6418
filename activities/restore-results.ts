/**
 * How a unit's tenants ended, and how a whole restore did: the results a child records and the report reads.
 * Workflow code imports these (through restore-types.ts): plain shapes only.
 */
import type { TenantId, PreflightResult, CopyResult, ValidationResult } from './restore-types';

export type TenantStatus = 'restored' | 'failed' | 'cancelled';

export interface ActionOutcome {
  name: string;
  type: 'sql' | 'webhook';
  status: 'done' | 'failed';
  attempts?: number;
  detail?: string;
  durationMs: number;
}

/** Everything a child learned about its tenant; written to S3 for the report (counts and digests only). */
export interface TenantResult {
  restoreId: string;
  tenantId: TenantId;
  status: TenantStatus;
  error?: { type?: string; message: string; step?: string };
  preflight?: PreflightResult;
  copy?: CopyResult;
  validation?: ValidationResult;
  actions: ActionOutcome[];
  durations: Partial<Record<'preflight' | 'copy' | 'validate' | 'approvalWait' | 'reenable' | 'total', number>>;
  startedAt: number;
  finishedAt: number;
  /**
   * Set when the tenant was restored in a group: `preflight`, `copy` and `validation` then hold the evidence of the
   * whole group (its rows, counts and checksums, summed over its tenants), which the report counts once per group.
   */
  group?: { workflowId: string; tenantIds: TenantId[] };
}

/** How a whole restore ended. */
export type RestoreStatus = 'succeeded' | 'partial' | 'cancelled' | 'failed';
