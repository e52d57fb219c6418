/**
 * Scale-out (issue 14): one bulk restore on two worker processes polling one task queue. One is SIGKILLed in the middle
 * of the restore and not replaced: the other takes over its workflow and activity tasks (after the sticky queue and
 * heartbeat timeouts), and the restore ends with I1-I4 holding and I5 in its histories.
 */
import type { Client } from '@temporalio/client';
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bulkWorkflowId, TenantsRestoredKey, type BulkRestoreResult } from '../../workflows/definitions';
import { destructiveStatements, installDeleteAudit } from '../helpers/audit';
import { createServer } from 'node:net';
import { productEnv, runCli, startWorkerProcess, type WorkerProcess } from '../helpers/product';
import { temporalClient, uniqueName, useFreshDatabases, useStackEnv } from '../helpers/stack';
import { range, smallTenant, tenantRows } from '../fixtures/orchestration/fixture';
import { lostTenants } from '../helpers/scenario';

const env = useStackEnv();
const password = new URL(env.STACK_PG_URL).password;
const { fresh } = useFreshDatabases();

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

describe('two workers on one task queue, one killed mid-restore', () => {
  const taskQueue = uniqueName('tq_scaleout');
  const restoreId = uniqueName('scaleout').replace(/_/g, '-');
  const victims = range(1, 16);
  const survivors = range(17, 4);
  let source: { name: string; url: string };
  let live: { name: string; url: string };
  let backup: string;
  let client: Client;
  let closeClient: () => Promise<void>;
  const workers: WorkerProcess[] = [];

  beforeAll(async () => {
    ({ source, live, backup } = await lostTenants({
      fresh,
      name: 'orch_scaleout',
      backupKey: `test/${restoreId}/backup.dump`,
      victims,
      shape: [
        { first: 1, count: 16, shape: { ...smallTenant, commentsPerIssue: 40 } },
        { first: 17, count: 4, shape: smallTenant },
      ],
    }));
    await installDeleteAudit(live.url, 'all');
    ({ client, close: closeClient } = await temporalClient());
  });

  afterAll(async () => {
    for (const w of workers) await w.stop();
    await closeClient?.();
  });

  it('the surviving worker finishes the restore alone; I1-I5 hold', async () => {
    const a = await startWorkerProcess({ taskQueue, name: `${restoreId}-a` });
    // The survivor serves its metrics for Prometheus: after the restore they show what it did.
    const metricsPort = await freePort();
    const b = await startWorkerProcess({
      taskQueue,
      name: `${restoreId}-b`,
      env: productEnv({ TENANT_RESTORE_METRICS_ADDRESS: `127.0.0.1:${metricsPort}` }),
    });
    workers.push(a, b);
    const survivorsBefore = await tenantRows(live.url, survivors);
    const config = join(tmpdir(), `${restoreId}.json`);
    writeFileSync(
      config,
      JSON.stringify({
        actions: [
          {
            name: 'reactivate-billing',
            type: 'sql',
            sql: 'UPDATE app.billing_accounts SET active = true WHERE tenant_id = $1::bigint AND NOT active',
          },
        ],
      }),
    );
    const started = await runCli([
      'start',
      '--backup',
      backup,
      '--live',
      live.url,
      '--tenant-root',
      'app.tenants',
      '--tenants',
      victims.join(','),
      '--group-size',
      '2',
      '--concurrency',
      '4',
      '--config',
      config,
      '--id',
      restoreId,
      '--task-queue',
      taskQueue,
      '--artifacts',
      `s3://${env.STACK_S3_BUCKET}/test-restores/`,
    ]);
    expect(started.code, started.stderr).toBe(0);

    // In the middle: some units done, not all.
    const handle = client.workflow.getHandle(bulkWorkflowId(restoreId));
    let restored = 0;
    for (;;) {
      const description = await handle.describe();
      restored = description.typedSearchAttributes.get(TenantsRestoredKey) ?? 0;
      if (description.status.name !== 'RUNNING')
        throw new Error(`the restore ended (${description.status.name}) before the kill: the test needs more tenants`);
      if (restored >= 2) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(restored).toBeLessThan(victims.length);
    await a.kill('SIGKILL');
    const survivorLogAtKill = b.log().length;

    const result = (await handle.result()) as BulkRestoreResult;
    expect(result).toMatchObject({ status: 'succeeded', total: victims.length, restored: victims.length, failed: 0 });
    // The survivor did work after the kill: re-enable actions of tenants not restored at the kill ran on it.
    expect(b.log().slice(survivorLogAtKill)).toContain('re-enable action done');

    // I3 and I4: exactly the backup's rows (a duplicate or a missing row would change count and checksum).
    expect(await tenantRows(live.url, victims)).toEqual(await tenantRows(source.url, victims));
    // I1: the other tenants as they were.
    expect(await tenantRows(live.url, survivors)).toEqual(survivorsBefore);
    // I2
    expect(await destructiveStatements(live.url)).toEqual([]);
    // Metrics: the SDK's own and the worker's, on the Prometheus endpoint of the survivor.
    const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    expect(metrics).toMatch(/^temporal_activity_execution_latency\w*\{/m);
    expect(metrics).toMatch(/^tenant_restore_tenants\{[^}]*status="restored"[^}]*\} [1-9]/m);
    expect(metrics).toMatch(/^tenant_restore_rows_restored\{[^}]*\} [1-9]/m);
    // I5: no password in the parent's history (the children's are scanned in orchestration-bulk and the chaos run).
    const history = JSON.stringify((await handle.fetchHistory()).events ?? []);
    expect(history).not.toContain(password);
  });
});
