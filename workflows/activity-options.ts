/**
 * Timeouts and retries of every activity the workflows call: the parent's and the drill's own steps
 * (parentActivities), and a restore unit's steps (workflows/unit-steps.ts, unit-messages.ts).
 */
import { TimeoutType } from '@temporalio/common';
import { ActivityFailure, proxyActivities, TimeoutFailure, type ActivityOptions } from '@temporalio/workflow';
import type { Activities } from '../activities';
import { reenableActionTimeoutSeconds } from './definitions';

/**
 * A parent's own steps (tenant list, plan, report, a drill's database) and the loading of scratch (download and
 * pg_restore: long, heartbeating). A restore retries them patiently; a drill should fail loudly and soon, so it gives
 * them fewer attempts.
 */
function parentStepOptions(patience: 'restore' | 'drill'): ActivityOptions {
  return {
    startToCloseTimeout: '30 minutes',
    heartbeatTimeout: '1 minute',
    retry: {
      initialInterval: '1 second',
      backoffCoefficient: 2,
      maximumInterval: '30 seconds',
      maximumAttempts: patience === 'restore' ? 20 : 10,
    },
  };
}

export function parentActivities(patience: 'restore' | 'drill') {
  const restore = patience === 'restore';
  return {
    steps: proxyActivities<Activities>(parentStepOptions(patience)),
    scratchSteps: proxyActivities<Activities>({
      startToCloseTimeout: '6 hours',
      heartbeatTimeout: '1 minute',
      retry: {
        initialInterval: '2 seconds',
        backoffCoefficient: 2,
        maximumInterval: restore ? '1 minute' : '30 seconds',
        maximumAttempts: restore ? 10 : 4,
      },
    }),
  };
}

/** Short database steps: retried on transient errors (connection loss, restarts); named engine errors are non-retryable. */
const stepOptions: ActivityOptions = {
  startToCloseTimeout: '30 minutes',
  heartbeatTimeout: '20 seconds',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '30 seconds', maximumAttempts: 20 },
};
export const steps = proxyActivities<Activities>(stepOptions);

/** The copy: long, heartbeating its checkpoint; a retry on another worker resumes from it. */
const copyOptions: ActivityOptions = {
  startToCloseTimeout: '6 hours',
  heartbeatTimeout: '10 seconds',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '30 seconds', maximumAttempts: 50 },
};
export const copy = proxyActivities<Activities>(copyOptions);

/**
 * How long an activity for a point-in-time scratch waits for a worker of its host. Longer than a worker's restart;
 * past it the host is taken for gone, and its server with it (scratchHostLost).
 */
const scratchHostPatience = '2 minutes' as const;

/**
 * The activities that read scratch (a unit's preflight, copy and validate; the parent's plan and cleanup), sent to the
 * scratch host's own task queue when scratch is a point-in-time server on one host (activities/point-in-time/),
 * and to the shared queue otherwise (the same proxies as before, so that earlier histories replay).
 */
export function scratchReaders(taskQueue: string | undefined) {
  if (!taskQueue) return { steps, copy, parentSteps: parentActivities('restore').steps };
  const onHost = { taskQueue, scheduleToStartTimeout: scratchHostPatience };
  return {
    steps: proxyActivities<Activities>({ ...stepOptions, ...onHost }),
    copy: proxyActivities<Activities>({ ...copyOptions, ...onHost }),
    parentSteps: proxyActivities<Activities>({ ...parentStepOptions('restore'), ...onHost }),
  };
}

/** An activity failed because no worker of the scratch host took it in time: that host, and its server, are gone. */
export function scratchHostLost(error: unknown): boolean {
  return (
    error instanceof ActivityFailure &&
    error.cause instanceof TimeoutFailure &&
    error.cause.timeoutType === TimeoutType.SCHEDULE_TO_START
  );
}

/** Re-enable actions call other systems. A unit's action runs for each of its tenants in turn, heartbeating the tenants done so that a retry skips them. */
export const unitActions = proxyActivities<Activities>({
  startToCloseTimeout: '15 minutes',
  heartbeatTimeout: reenableActionTimeoutSeconds * 1000,
  retry: {
    initialInterval: '500 milliseconds',
    backoffCoefficient: 2,
    maximumInterval: '1 minute',
    maximumAttempts: 8,
  },
});

export const bookkeeping = proxyActivities<Activities>({
  startToCloseTimeout: '1 minute',
  retry: { initialInterval: '1 second', maximumInterval: '30 seconds', maximumAttempts: 20 },
});

/**
 * The loading of a point-in-time scratch on a given host (an incident window's second scratch, at T1, is recovered
 * on the host of the first, so that one activity can read both): the scratch steps' patience, the host's queue.
 */
export function scratchHostSteps(taskQueue: string) {
  return proxyActivities<Activities>({
    startToCloseTimeout: '6 hours',
    heartbeatTimeout: '1 minute',
    scheduleToStartTimeout: scratchHostPatience,
    taskQueue,
    retry: { initialInterval: '2 seconds', backoffCoefficient: 2, maximumInterval: '1 minute', maximumAttempts: 10 },
  });
}
