/**
 * The activity options of a tenant's steps, shared by tenantRestore (one tenant) and tenantGroupRestore (a group).
 */
import { proxyActivities } from '@temporalio/workflow';
import type { Activities } from '../activities';
import { reenableActionTimeoutSeconds } from './definitions';

/** Short database steps: retried on transient errors (connection loss, restarts); named engine errors are non-retryable. */
export const steps = proxyActivities<Activities>({
  startToCloseTimeout: '30 minutes',
  heartbeatTimeout: '20 seconds',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '30 seconds', maximumAttempts: 20 },
});

/** The copy: long, heartbeating its checkpoint; a retry on another worker resumes from it. */
export const copy = proxyActivities<Activities>({
  startToCloseTimeout: '6 hours',
  heartbeatTimeout: '10 seconds',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '30 seconds', maximumAttempts: 50 },
});

/** Re-enable actions call other systems: back off longer, give up after a while and report the action as failed. */
export const actions = proxyActivities<Activities>({
  startToCloseTimeout: reenableActionTimeoutSeconds * 1000,
  retry: { initialInterval: '500 milliseconds', backoffCoefficient: 2, maximumInterval: '1 minute', maximumAttempts: 8 },
});

/** A group's action runs for each of its tenants in turn, heartbeating the tenants done so that a retry skips them. */
export const groupActions = proxyActivities<Activities>({
  startToCloseTimeout: '15 minutes',
  heartbeatTimeout: reenableActionTimeoutSeconds * 1000,
  retry: { initialInterval: '500 milliseconds', backoffCoefficient: 2, maximumInterval: '1 minute', maximumAttempts: 8 },
});

export const bookkeeping = proxyActivities<Activities>({
  startToCloseTimeout: '1 minute',
  retry: { initialInterval: '1 second', maximumInterval: '30 seconds', maximumAttempts: 20 },
});

export function failureMessage(error: unknown): { type?: string; message: string } {
  // An activity failure wraps the real cause; report the cause (its type is the engine's error name).
  let e = error as { cause?: unknown; type?: string; message?: string; name?: string };
  while (e?.cause && (e as { name?: string }).name === 'ActivityFailure') e = e.cause as typeof e;
  return { type: e?.type ?? e?.name, message: e?.message ?? String(error) };
}
