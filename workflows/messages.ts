/**
 * The messages of the restore workflows: the operator's controls (updates, and the signals the CLI still sends), the
 * progress query, and what a unit and its parent tell each other. Wire names never change: a restore in flight
 * hears them by name.
 */
import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import type { TenantId } from '../activities/restore-types';
import type { RestoreProgress, TenantOutcome, TenantPhase } from './restore-state';

export const pauseSignal = defineSignal('pause');
export const resumeSignal = defineSignal('resume');
/** Stops starting tenants, cancels the running ones (each rolls back or keeps only idempotent chunks), then reports. */
export const cancelSignal = defineSignal('cancel');
export const setConcurrencySignal = defineSignal<[number]>('setConcurrency');
/** Approve the held re-enable actions: of the listed tenants, or of every tenant when the list is absent. */
export const approveSignal = defineSignal<[{ tenantIds?: TenantId[] }]>('approve');
export const progressQuery = defineQuery<RestoreProgress>('progress');

/**
 * The same controls as Workflow Updates: the workflow checks each against its state (a validator that rejects writes
 * nothing to history) and answers with what it accepted, so the CLI prints the restore's state instead of "sent".
 * The signals above stay: the CLI sends cancel as a signal (it must land even when the workflow is busy), and the
 * other controls as signals when no worker polls the restore's task queue (cli/client/control.ts).
 */
export interface ControlAck {
  restoreId: string;
  paused: boolean;
  concurrency: number;
  cancelRequested: boolean;
  /** False when the restore was already in the state asked for (pause of a paused restore, say). */
  changed: boolean;
  /** Tenants started so far, and those running now (in a unit that has not ended). */
  started: number;
  running: number;
}
export interface ApproveAck {
  restoreId: string;
  approved: TenantId[] | 'all';
  /** Of the approved tenants, those waiting at the gate now: their held actions run at once. */
  releasedNow: number;
  /** Of them, those in a unit that has not reached the gate: they will pass it without waiting. */
  runningBeforeGate: number;
}
export const pauseUpdate = defineUpdate<ControlAck>('pauseRestore');
export const resumeUpdate = defineUpdate<ControlAck>('resumeRestore');
export const setConcurrencyUpdate = defineUpdate<ControlAck, [number]>('setRestoreConcurrency');
export const approveUpdate = defineUpdate<ApproveAck, [{ tenantIds?: TenantId[] }]>('approveTenants');

/** Unit → parent, by workflow id, so that it reaches the parent's current run after continue-as-new. */
export const unitPhaseSignal = defineSignal<[{ tenantIds: TenantId[]; phase: TenantPhase }]>('groupPhase');
export const unitDoneSignal =
  defineSignal<[{ outcomes: TenantOutcome[]; copied?: { rows: number; tenants: number } }]>('groupDone');
/** Parent → unit: the held actions of these tenants are approved. */
export const approveUnitTenantsSignal = defineSignal<[{ tenantIds: TenantId[] }]>('approveGroupTenants');
/**
 * Parent → a tenant's unit by its own id, for a running tenant with no unit in groupOf (workflows/approvals.ts): the
 * runs recorded before every unit of one was listed there sent it, and their histories replay.
 */
export const approveTenantSignal = defineSignal('approveTenant');
