/**
 * I4 under a crash: a real worker process (`bin/tenant-restore worker`) is SIGKILLed while it copies a large tenant in
 * chunks. A new worker process takes over; the copy resumes from the checkpoint heartbeated before the kill; the
 * restore completes with exactly the backup's rows (no duplicates, nothing missing).
 */
import type { Client } from '@temporalio/client';
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CopyCheckpoint } from '../../activities/restore-types';
import { bulkWorkflowId, tenantWorkflowId, type BulkRestoreResult } from '../../workflows/definitions';
import { temporalClient, uniqueName, useFreshDatabases, useStackEnv } from '../helpers/stack';
import { range, smallTenant, tenantRows, withClient } from '../fixtures/orchestration/fixture';
import { lostTenants } from '../helpers/scenario';
import { historyEvents } from '../helpers/history';
import { runCli, startWorkerProcess, type WorkerProcess } from '../helpers/product';

const env = useStackEnv();
const { fresh } = useFreshDatabases();

describe('a worker killed in the middle of a copy', () => {
  const taskQueue = uniqueName('tq_orch_kill');
  const restoreId = uniqueName('kill').replace(/_/g, '-');
  const big = 6;
  const victims = range(1, 6);
  let source: { name: string; url: string };
  let live: { name: string; url: string };
  let backup: string;
  let client: Client;
  let closeClient: () => Promise<void>;
  const workers: WorkerProcess[] = [];

  beforeAll(async () => {
    ({ source, live, backup } = await lostTenants({
      fresh,
      name: 'orch_kill',
      backupKey: `test/${restoreId}/backup.dump`,
      victims,
      shape: [
        { first: 1, count: 5, shape: smallTenant },
        // 120,000 comments, copied in chunks of 200: a few hundred chunk transactions, so that there is a middle to
        // kill the worker in even on a fast, idle machine (the worker sends checkpoints to the server every second).
        {
          first: big,
          count: 1,
          shape: { users: 20, projects: 50, issuesPerProject: 40, commentsPerIssue: 60, installations: 3 },
        },
        { first: 7, count: 4, shape: smallTenant },
      ],
    }));
    ({ client, close: closeClient } = await temporalClient());
  });

  afterAll(async () => {
    for (const w of workers) await w.stop();
    await closeClient?.();
  });

  it('resumes from the heartbeated checkpoint on a new worker and converges to the backup, exactly', async () => {
    const first = await startWorkerProcess({ taskQueue });
    workers.push(first);
    const configPath = join(tmpdir(), `${restoreId}.json`);
    writeFileSync(configPath, JSON.stringify({ chunkRows: 200 }));
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
      // One child per tenant, so that the big tenant's own copy is the one killed (groups with kills: reliability-writers, chaos).
      '--config',
      configPath,
      '--concurrency',
      '6',
      '--group-size',
      '1',
      '--id',
      restoreId,
      '--task-queue',
      taskQueue,
      '--artifacts',
      `s3://${env.STACK_S3_BUCKET}/test-restores/`,
    ]);
    expect(started.code, started.stderr).toBe(0);

    // Wait until the big tenant's copy has heartbeated a checkpoint inside its chunked copy, then SIGKILL the worker.
    const child = client.workflow.getHandle(tenantWorkflowId(restoreId, String(big)));
    let checkpoint: CopyCheckpoint | undefined;
    while (!checkpoint) {
      const description = await child.describe().catch(() => undefined);
      const copy = description?.raw.pendingActivities?.find((a) => a.activityType?.name === 'copyTenantRows');
      const payload = copy?.heartbeatDetails?.payloads?.[0]?.data;
      if (payload && payload.length > 0) {
        const details = JSON.parse(Buffer.from(payload).toString('utf8')) as CopyCheckpoint | null;
        if (details?.position) checkpoint = details;
      }
      if (!checkpoint && description && description.status.name !== 'RUNNING') {
        throw new Error(
          `tenant ${big} ended (${description.status.name}) before a checkpoint of its chunked copy reached the server: the test needs a bigger tenant to kill the worker in the middle of the copy`,
        );
      }
      if (!checkpoint) await new Promise((r) => setTimeout(r, 100));
    }
    await first.kill('SIGKILL');
    const atKill = await tenantRows(live.url, [big]);
    const expected = await tenantRows(source.url, [big]);
    expect(atKill['app.comments'].count).toBeLessThan(expected['app.comments'].count);

    const second = await startWorkerProcess({ taskQueue });
    workers.push(second);
    const result = (await client.workflow.getHandle(bulkWorkflowId(restoreId)).result()) as BulkRestoreResult;
    expect(result).toMatchObject({ status: 'succeeded', total: 6, restored: 6, failed: 0 });
    await second.stop();

    // Exactly the backup's rows: same counts and checksums per table (a duplicate or a missing row would change both).
    expect(await tenantRows(live.url, victims)).toEqual(await tenantRows(source.url, victims));
    const dupes = await withClient(live.url, (c) =>
      c.query('SELECT body, count(*) FROM app.comments GROUP BY issue_id, body HAVING count(*) > 1'),
    );
    expect(dupes.rows).toHaveLength(0);

    // The copy ran again on the new worker and started from the checkpoint, not from the beginning.
    expect(second.log()).toContain('resuming copy from checkpoint');
    const events = await child.fetchHistory();
    const attempts = (events.events ?? [])
      .filter((e) => e.activityTaskStartedEventAttributes)
      .map((e) => e.activityTaskStartedEventAttributes!.attempt ?? 1);
    expect(Math.max(...attempts)).toBeGreaterThanOrEqual(2);
    expect(historyEvents(events).some((e) => e.type === 'activityTaskCompleted')).toBe(true);
  });
});
