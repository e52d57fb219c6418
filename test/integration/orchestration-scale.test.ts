/**
 * 2,000 small tenants in 400 groups of 5: the tenant list goes to S3 (too long for an inline input), the parent
 * continues-as-new every 100 children carrying its state (including which group each running tenant is in), group
 * children report back to the current run by signal, and every tenant is restored.
 * Also measures what Temporal costs per tenant (printed, not asserted).
 */
import type { Client } from '@temporalio/client';
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createActivities } from '../../activities';
import { Pools } from '../../activities/db';
import { createS3Client, getJson } from '../../activities/s3';
import type { RestoreReport } from '../../activities/report';
import { bulkWorkflowId, type BulkRestoreResult } from '../../workflows/definitions';
import { startWorker, temporalClient, uniqueName, useFreshDatabases, useStackEnv } from '../helpers/stack';
import { range, tenantRows, tinyTenant } from '../fixtures/orchestration/fixture';
import { lostTenants } from '../helpers/scenario';
import { historyEvents, historyText, restoreExecutions, saveHistory } from '../helpers/history';
import { runCli } from '../helpers/product';

const env = useStackEnv();
const { fresh } = useFreshDatabases();

describe('a restore of 2,000 small tenants', () => {
  const pools = new Pools();
  const s3 = createS3Client();
  const taskQueue = uniqueName('tq_orch_scale');
  const restoreId = uniqueName('scale').replace(/_/g, '-');
  const victims = range(1, 2000);
  let source: { name: string; url: string };
  let live: { name: string; url: string };
  let backup: string;
  let worker: Awaited<ReturnType<typeof startWorker>>;
  let client: Client;
  let closeClient: () => Promise<void>;

  beforeAll(async () => {
    ({ source, live, backup } = await lostTenants({
      fresh,
      name: 'orch_scale',
      backupKey: `test/${restoreId}/backup.dump`,
      victims,
      shape: tinyTenant,
      tenants: 2100,
      generate: { minimal: true },
    }));
    worker = await startWorker({
      taskQueue,
      activities: createActivities({ pools, s3 }),
      maxConcurrentActivityTaskExecutions: 100,
    });
    ({ client, close: closeClient } = await temporalClient());
  });

  afterAll(async () => {
    await closeClient?.();
    await worker?.stop();
    await pools.closeAll();
    s3.destroy();
  });

  // 2,000 children on a shared 2-core machine: a larger safety net against a hang (not a performance bound).
  it('continues-as-new with its state and finishes every tenant', { timeout: 3_600_000 }, async () => {
    const tenantsFile = join(tmpdir(), `${restoreId}.tenants`);
    writeFileSync(tenantsFile, victims.join('\n'));
    const started = await runCli([
      'start',
      '--backup',
      backup,
      '--live',
      live.url,
      '--tenant-root',
      'app.tenants',
      '--tenants-file',
      tenantsFile,
      '--concurrency',
      '20',
      '--group-size',
      '5',
      '--children-per-run',
      '100',
      '--id',
      restoreId,
      '--task-queue',
      taskQueue,
      '--artifacts',
      `s3://${env.STACK_S3_BUCKET}/test-restores/`,
      '--json',
    ]);
    expect(started.code, started.stderr).toBe(0);
    expect(JSON.parse(started.stdout)).toMatchObject({ restoreId, tenants: 2000 });

    const handle = client.workflow.getHandle(bulkWorkflowId(restoreId));
    const t0 = Date.now();
    const result = (await handle.result()) as BulkRestoreResult;
    const wallMs = Date.now() - t0;
    expect(result).toMatchObject({ status: 'succeeded', total: 2000, restored: 2000, failed: 0, cancelled: 0 });

    // The list went to S3, not into the input: the first run's input names the object.
    const executions = await restoreExecutions(client, restoreId);
    const runs = executions.filter((e) => e.type === 'bulkRestore');
    expect(runs.length).toBeGreaterThanOrEqual(4);
    expect(executions.filter((e) => e.type === 'restoreUnit')).toHaveLength(400);
    expect(executions.filter((e) => e.type === 'tenantRestore' || e.type === 'tenantGroupRestore')).toHaveLength(0);
    for (const run of runs) {
      const history = await client.workflow.getHandle(run.workflowId, run.runId).fetchHistory();
      const events = historyEvents(history);
      expect(events.filter((e) => e.type === 'startChildWorkflowExecutionInitiated').length).toBeLessThanOrEqual(100);
      expect(events.length).toBeLessThan(20_000);
      const text = historyText(history);
      expect(text).toContain('tenants.input.json');
      expect(text).not.toContain(`"tenants":["1","2"`);
    }

    const minimalTables = ['app.tenants', 'app.billing_accounts'];
    const restored = await tenantRows(live.url, victims, minimalTables);
    expect(restored['app.tenants'].count).toBe(2000);
    expect(restored).toEqual(await tenantRows(source.url, victims, minimalTables));
    const report = await getJson<RestoreReport>(s3, {
      bucket: env.STACK_S3_BUCKET,
      key: `test-restores/${restoreId}/report.json`,
    });
    expect(report.totals).toMatchObject({ tenants: 2000, restored: 2000, notStarted: 0 });

    // What Temporal costs per group: wall time against the engine's own step time, at this concurrency.
    const groups = new Map(report.tenants.filter((t) => t.group).map((t) => [t.group!.workflowId, t.durations]));
    expect(groups.size).toBe(400);
    const engineMs = [...groups.values()].reduce(
      (a, d) => a + (d.preflight ?? 0) + (d.copy ?? 0) + (d.validate ?? 0),
      0,
    );
    const childMs = [...groups.values()].reduce((a, d) => a + (d.total ?? 0), 0);
    process.stderr.write(
      `[scale] 2000 tenants in ${(wallMs / 1000).toFixed(1)} s wall (${(wallMs / 2000).toFixed(1)} ms/tenant), ${runs.length} runs; ` +
        `per group of 5: ${(childMs / 400).toFixed(0)} ms in its child, of which engine steps ${(engineMs / 400).toFixed(0)} ms, orchestration ${((childMs - engineMs) / 400).toFixed(0)} ms\n`,
    );

    if (process.env.SAVE_REPLAY_HISTORIES) {
      // A run that started from carried state and itself continued-as-new.
      for (const run of runs) {
        const history = await client.workflow.getHandle(run.workflowId, run.runId).fetchHistory();
        const events = historyEvents(history);
        if (
          events.at(-1)?.type === 'workflowExecutionContinuedAsNew' &&
          !historyText(history).includes('prepareScratch')
        ) {
          await saveHistory(client, run.workflowId, run.runId, 'bulk-restore-units-continued-run');
          break;
        }
      }
    }
  });
});
