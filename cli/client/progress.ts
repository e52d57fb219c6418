/** Following a running restore to its end: the wait of `start --wait`, and the progress line it and `status --watch` draw. */
import type { Client } from '@temporalio/client';
import type { RestoreReport } from '../../activities/report';
import type { TenantId } from '../../activities/restore-types';
import {
  bulkWorkflowId,
  progressQuery,
  type BulkRestoreResult,
  type RestoreProgress,
} from '../../workflows/definitions';
import { noWorkerWarning, workflowPollers } from './connection';
import { getReport, restoreFailureMessage } from './restore';

/** The one JSON object `start --wait --json` prints. */
export interface WaitOutput {
  restoreId: string;
  status: BulkRestoreResult['status'];
  tenants: Array<{
    tenantId: TenantId;
    status: string;
    rows: Record<string, number>;
    error?: string;
    group?: { workflowId: string; tenants: number };
  }>;
  total: number;
  restored: number;
  failed: number;
  /** Of the failed: tenants refused because they are still in live (TenantPresentError), with nothing written. */
  refused: number;
  cancelled: number;
  report?: { json: string; markdown: string };
  error?: string;
}

/** How often a wait looks for a worker on the restore's task queue while none polls it. */
const pollerCheckMs = 10_000;
/** How often the warning is repeated while no worker polls. */
const noWorkerRepeatMs = 60_000;

/**
 * Waits for the end, calling `onProgress` about once a second, then joins the result with the report's tenants. With
 * `watch`, the restore's task queue is checked for workers: while none polls it, the progress is not queried (a query
 * waits for a worker: it would only time out) and `onNoWorker` is called, at once and then every minute.
 */
export async function waitForRestore(
  client: Client,
  restoreId: string,
  onProgress?: (p: RestoreProgress) => void,
  watch?: { taskQueue: string; onNoWorker: (message: string) => void },
): Promise<WaitOutput> {
  const handle = client.workflow.getHandle(bulkWorkflowId(restoreId));
  let done = false;
  let polled = { at: 0, workers: 1 };
  let warnedAt = 0;
  const workerPolls = async (): Promise<boolean> => {
    if (!watch) return true;
    if (Date.now() - polled.at >= (polled.workers ? pollerCheckMs * 3 : pollerCheckMs)) {
      polled = { at: Date.now(), workers: await workflowPollers(client, watch.taskQueue).catch(() => 1) };
      if (!polled.workers && Date.now() - warnedAt >= noWorkerRepeatMs) {
        warnedAt = Date.now();
        watch.onNoWorker(noWorkerWarning(watch.taskQueue));
      }
    }
    return polled.workers > 0;
  };
  // The poller's pause between polls ends at once when the result arrives: the wait does not sit out the last second.
  let wake: (() => void) | undefined;
  const pause = (ms: number) =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        wake = undefined;
        resolve();
      }, ms);
      wake = () => {
        clearTimeout(timer);
        wake = undefined;
        resolve();
      };
    });
  const poller = (async () => {
    while (!done && (onProgress || watch)) {
      try {
        if ((await workerPolls()) && onProgress) onProgress(await handle.query(progressQuery));
      } catch {
        // The run may be continuing-as-new, or just finished: the next poll or the result answers.
      }
      if (!done) await pause(1000);
    }
  })();
  let result: BulkRestoreResult | undefined;
  let error: string | undefined;
  try {
    result = (await handle.result()) as BulkRestoreResult;
  } catch (e) {
    error = restoreFailureMessage(e);
  } finally {
    done = true;
    wake?.();
    await poller;
  }
  let report: RestoreReport | undefined;
  try {
    report = (await getReport(client, restoreId)).report;
  } catch {
    report = undefined;
  }
  const tenants = (report?.tenants ?? []).map((t) => ({
    tenantId: t.tenantId,
    status: t.status,
    rows: t.rows,
    ...(t.error ? { error: t.error } : {}),
    ...(t.group ? { group: t.group } : {}),
  }));
  return {
    restoreId,
    status: result?.status ?? 'failed',
    tenants,
    total: result?.total ?? report?.totals.tenants ?? 0,
    restored: result?.restored ?? 0,
    failed: result?.failed ?? 0,
    refused: tenants.filter((t) => t.error?.startsWith('TenantPresentError')).length,
    cancelled: result?.cancelled ?? 0,
    report: result?.report,
    ...(error ? { error } : {}),
  };
}

// ---------------------------------------------------------------------------------------------------------------
// progress display

export function progressLine(p: RestoreProgress, width = 30): string {
  const done = p.counts.restored + p.counts.failed + p.counts.cancelled;
  const fraction = p.total ? done / p.total : 0;
  const filled = Math.round(fraction * width);
  const bar = `${'#'.repeat(filled)}${'.'.repeat(width - filled)}`;
  const running = p.counts.preflight + p.counts.copy + p.counts.validate + p.counts.reenable;
  const parts = [
    `[${bar}] ${done}/${p.total}`,
    `restored ${p.counts.restored}`,
    `failed ${p.counts.failed}`,
    `running ${running} (preflight ${p.counts.preflight}, copy ${p.counts.copy}, validate ${p.counts.validate}, re-enable ${p.counts.reenable})`,
  ];
  if (p.counts['awaiting-approval']) parts.push(`awaiting approval ${p.counts['awaiting-approval']}`);
  if (p.counts.cancelled) parts.push(`cancelled ${p.counts.cancelled}`);
  parts.push(`phase ${p.phase}${p.paused ? ' (paused)' : ''}`, `concurrency ${p.concurrency}`);
  return parts.join(' | ');
}

/** Redraws one line on a terminal; elsewhere prints a line when it changes, at most every 5 s. */
export function progressPrinter(stream: NodeJS.WriteStream = process.stderr): {
  update: (p: RestoreProgress) => void;
  end: () => void;
} {
  let last = '';
  let lastAt = 0;
  return {
    update(p) {
      const line = progressLine(p);
      if (stream.isTTY) {
        stream.write(`\r\x1b[2K${line.slice(0, (stream.columns ?? 200) - 1)}`);
      } else if (line !== last && Date.now() - lastAt > 5000) {
        stream.write(`${line}\n`);
        lastAt = Date.now();
      }
      last = line;
    },
    end() {
      if (stream.isTTY && last) stream.write('\n');
    },
  };
}
