/**
 * The worker's own metrics, beside the SDK's (both on the Prometheus endpoint when TENANT_RESTORE_METRICS_ADDRESS is
 * set, see workers/worker.ts). Recorded through the activity context's meter, so they carry the worker's labels
 * (namespace, task queue). Outside an activity (engine tests calling the engine directly) they are no-ops.
 */
import { Context } from '@temporalio/activity';
import type { MetricMeter } from '@temporalio/common';

function meter(): MetricMeter | undefined {
  try {
    return Context.current().metricMeter;
  } catch {
    return undefined;
  }
}

/** Rows a copy wrote into live (the tenants' owned tables; the parent closure not counted). */
export function rowsRestored(rows: number): void {
  if (rows > 0) meter()?.createCounter('tenant_restore_rows_restored', 'rows').add(rows);
}

/** Tenants that ended, by status (restored, failed, cancelled). */
export function tenantEnded(status: string): void {
  meter()?.createCounter('tenant_restore_tenants', 'tenants').add(1, { status });
}

export function s3BytesRead(bytes: number): void {
  if (bytes > 0) meter()?.createCounter('tenant_restore_s3_bytes_read', 'bytes').add(bytes);
}

/** Time the restore's statements waited for a busy live (adaptive throttling). */
export function throttleWait(ms: number): void {
  if (ms > 0) meter()?.createCounter('tenant_restore_throttle_wait', 'ms').add(Math.round(ms));
}

/** A drill's time to restore, and when the last one that passed ended: an alert fires when drills go stale. */
export function drillRecorded(passed: boolean, timeToRestoreMs: number, finishedAt: string): void {
  const m = meter();
  if (!m) return;
  m.createGauge('tenant_restore_drill_time_to_restore', 'float', 's').set(timeToRestoreMs / 1000, {
    status: passed ? 'passed' : 'failed',
  });
  if (passed)
    m.createGauge('tenant_restore_drill_last_success_timestamp', 'float', 's').set(Date.parse(finishedAt) / 1000);
}
