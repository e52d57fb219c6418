/**
 * An operator steering a running restore: pause and resume, a concurrency change, cancel, and the approval gate on
 * billing. Each restore runs on the real dev server against its own live database (cloned from one post-incident
 * template). Assertions read the parent's history (what it started, and when) rather than racing a clock.
 */
import { WorkflowUpdateFailedError, type Client } from '@temporalio/client';
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createActivities } from '../../activities';
import { Pools } from '../../activities/db';
import { createS3Client } from '../../activities/s3';
import {
  approveUpdate,
  bulkWorkflowId,
  progressQuery,
  setConcurrencyUpdate,
  type BulkRestoreResult,
  type RestoreProgress,
} from '../../workflows/definitions';
import { startWorker, temporalClient, uniqueName, useFreshDatabases, useStackEnv } from '../helpers/stack';
import { range, smallTenant, tenantRows, withClient } from '../fixtures/orchestration/fixture';
import { lostTenants } from '../helpers/scenario';
import { historyEvents, saveHistory } from '../helpers/history';
import { runCli } from '../helpers/product';
import { startWebhookServer } from '../fixtures/orchestration/webhook-server';

const env = useStackEnv();
const { fresh } = useFreshDatabases();
const victims = range(1, 20);

describe('operator control of a running restore', () => {
  const pools = new Pools();
  const s3 = createS3Client();
  const taskQueue = uniqueName('tq_orch_ctl');
  let source: { name: string; url: string };
  let template: { name: string; url: string };
  let backup: string;
  let worker: Awaited<ReturnType<typeof startWorker>>;
  let client: Client;
  let closeClient: () => Promise<void>;

  beforeAll(async () => {
    // Live here is a template: each test restores into its own copy of it.
    ({
      source,
      live: template,
      backup,
    } = await lostTenants({
      fresh,
      name: 'orch_ctl',
      backupKey: `test/${uniqueName('ctl')}/backup.dump`,
      victims,
      shape: smallTenant,
      tenants: 30,
    }));
    worker = await startWorker({ taskQueue, activities: createActivities({ pools, s3 }) });
    ({ client, close: closeClient } = await temporalClient());
  });

  afterAll(async () => {
    await closeClient?.();
    await worker?.stop();
    await pools.closeAll();
    s3.destroy();
  });

  async function start(
    name: string,
    extra: string[],
    config?: object,
  ): Promise<{ restoreId: string; live: { name: string; url: string } }> {
    const live = await fresh(`orch_ctl_${name}`, template.name);
    const restoreId = uniqueName(name).replace(/_/g, '-');
    const args = [
      'start',
      '--backup',
      backup,
      '--live',
      live.url,
      '--tenant-root',
      'app.tenants',
      '--tenants',
      victims.join(','),
      '--id',
      restoreId,
      '--task-queue',
      taskQueue,
      '--artifacts',
      `s3://${env.STACK_S3_BUCKET}/test-restores/`,
      // One child per tenant unless the test says otherwise: the window assertions count tenants.
      ...(extra.includes('--group-size') ? [] : ['--group-size', '1']),
      ...extra,
    ];
    if (config) {
      const path = join(tmpdir(), `${restoreId}.json`);
      writeFileSync(path, JSON.stringify(config));
      args.push('--config', path);
    }
    const run = await runCli(args);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toContain(`started restore ${restoreId}`);
    return { restoreId, live };
  }

  const progress = (restoreId: string) => client.workflow.getHandle(bulkWorkflowId(restoreId)).query(progressQuery);
  const result = (restoreId: string) =>
    client.workflow.getHandle(bulkWorkflowId(restoreId)).result() as Promise<BulkRestoreResult>;
  async function until(restoreId: string, predicate: (p: RestoreProgress) => boolean): Promise<RestoreProgress> {
    for (;;) {
      const p = await progress(restoreId).catch(() => undefined);
      if (p && predicate(p)) return p;
      await new Promise((r) => setTimeout(r, 250));
    }
  }
  const running = (p: RestoreProgress) => p.counts.preflight + p.counts.copy + p.counts.validate + p.counts.reenable;
  const parentEvents = async (restoreId: string) =>
    historyEvents(await client.workflow.getHandle(bulkWorkflowId(restoreId)).fetchHistory());

  /** Max tenants in the window between events [from, to) of the parent's history: started minus reported done. */
  function windowPeak(events: Awaited<ReturnType<typeof parentEvents>>, from = 0, to = events.length): number {
    let inFlight = 0;
    let peak = 0;
    events.forEach((e, i) => {
      if (e.type === 'startChildWorkflowExecutionInitiated') inFlight += 1;
      // Units of one (--group-size 1 here) end with one `groupDone` signal each.
      if (e.type === 'workflowExecutionSignaled' && e.signal === 'groupDone') inFlight -= 1;
      if (i >= from && i < to) peak = Math.max(peak, inFlight);
    });
    return peak;
  }

  async function expectRestoredLikeBackup(live: string, ids: number[]): Promise<void> {
    expect(await tenantRows(live, ids)).toEqual(await tenantRows(source.url, ids));
  }

  it('pause stops starting tenants until resume; running ones finish; then all are restored', async () => {
    const { restoreId, live } = await start('pause', ['--concurrency', '2']);
    await until(restoreId, (p) => p.counts.restored >= 2);
    // pause is a Workflow Update: the restore answers with the state it is now in.
    const pause = await runCli(['pause', restoreId, '--json']);
    expect(pause.code, pause.stderr).toBe(0);
    expect(pause.json).toMatchObject({
      restoreId,
      control: 'pause',
      delivery: 'update',
      accepted: { paused: true, changed: true, concurrency: 2, cancelRequested: false },
    });
    const again = await runCli(['pause', restoreId]);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toMatch(
      new RegExp(`restore ${restoreId} was already paused: paused, concurrency 2, \\d+ tenants started`),
    );
    // The validators refuse, with a message and exit 2, what the restore would otherwise accept and ignore; a rejected
    // update leaves nothing in the history.
    const eventsBefore = (await parentEvents(restoreId)).filter((e) => e.update).length;
    const approve = await runCli(['approve', restoreId]);
    expect(approve.code).toBe(2);
    expect(approve.stderr).toContain(
      `approve refused by restore ${restoreId}, nothing changed: no re-enable action of restore ${restoreId} requires approval`,
    );
    await expect(
      client.workflow.getHandle(bulkWorkflowId(restoreId)).executeUpdate(setConcurrencyUpdate, { args: [0] }),
    ).rejects.toThrow(WorkflowUpdateFailedError);
    expect((await parentEvents(restoreId)).filter((e) => e.update).length).toBe(eventsBefore);

    const paused = await until(restoreId, (p) => p.paused && running(p) === 0);
    expect(paused.phase).toBe('paused');
    expect(paused.counts.pending).toBeGreaterThan(0);
    const status = await runCli(['status', restoreId]);
    expect(status.stdout).toContain('(paused)');
    await new Promise((r) => setTimeout(r, 3000)); // a while paused: the history below proves nothing started
    expect((await progress(restoreId)).started).toBe(paused.started);
    const resume = await runCli(['resume', restoreId]);
    expect(resume.code, resume.stderr).toBe(0);
    expect(resume.stdout).toMatch(
      new RegExp(`restore ${restoreId} resumed: running, concurrency 2, ${paused.started} tenants started`),
    );
    const done = await result(restoreId);
    expect(done).toMatchObject({ status: 'succeeded', total: 20, restored: 20, failed: 0 });
    const events = await parentEvents(restoreId);
    const pauseAt = events.findIndex((e) => e.update === 'pauseRestore');
    const resumeAt = events.findIndex((e) => e.update === 'resumeRestore');
    expect(pauseAt).toBeGreaterThan(0);
    expect(resumeAt).toBeGreaterThan(pauseAt);
    // Between pause and resume the workflow started no child.
    expect(
      events.slice(pauseAt, resumeAt).filter((e) => e.type === 'startChildWorkflowExecutionInitiated'),
    ).toHaveLength(0);
    expect(events.filter((e) => e.type === 'startChildWorkflowExecutionInitiated')).toHaveLength(20);
    await expectRestoredLikeBackup(live.url, victims);
  });

  it('a concurrency change takes effect while the restore runs', async () => {
    const { restoreId, live } = await start('conc', ['--concurrency', '1']);
    await until(restoreId, (p) => p.counts.restored >= 2);
    const change = await runCli(['concurrency', restoreId, '5']);
    expect(change.code, change.stderr).toBe(0);
    expect(change.stdout).toContain(`concurrency of restore ${restoreId} set to 5: running, concurrency 5`);
    expect((await runCli(['concurrency', restoreId, '0'])).code).toBe(2);
    const done = await result(restoreId);
    expect(done).toMatchObject({ status: 'succeeded', restored: 20 });
    const events = await parentEvents(restoreId);
    const changeAt = events.findIndex((e) => e.update === 'setRestoreConcurrency');
    expect(changeAt).toBeGreaterThan(0);
    expect(windowPeak(events, 0, changeAt)).toBe(1);
    expect(windowPeak(events, changeAt)).toBe(5);
    await expectRestoredLikeBackup(live.url, victims);
  });

  it('cancel stops new tenants, cancels running ones, and reports; no tenant is left half-restored', async () => {
    const { restoreId, live } = await start('cancel', ['--concurrency', '2']);
    await until(restoreId, (p) => p.counts.restored >= 2);
    expect((await runCli(['cancel', restoreId])).code).toBe(0);
    const done = await result(restoreId);
    expect(done.status).toBe('cancelled');
    expect(done.restored).toBeGreaterThanOrEqual(2);
    expect(done.restored + done.failed + done.cancelled).toBe(20);
    expect(done.cancelled).toBeGreaterThan(0);
    const events = await parentEvents(restoreId);
    const cancelAt = events.findIndex((e) => e.signal === 'cancel');
    expect(events.slice(cancelAt).filter((e) => e.type === 'startChildWorkflowExecutionInitiated')).toHaveLength(0);
    const report = await runCli(['report', restoreId, '--json']);
    expect(report.code).toBe(1);
    const tenants = (JSON.parse(report.stdout) as { tenants: Array<{ tenantId: string; status: string }> }).tenants;
    const restored = tenants.filter((t) => t.status === 'restored').map((t) => Number(t.tenantId));
    expect(restored).toHaveLength(done.restored);
    await expectRestoredLikeBackup(live.url, restored);
    // Every other tenant is either absent or complete: a cancelled copy rolled back as a whole.
    for (const t of tenants.filter((x) => x.status !== 'restored')) {
      const rows = await tenantRows(live.url, [Number(t.tenantId)]);
      const absent = Object.values(rows).every((r) => r.count === 0);
      const single = await tenantRows(source.url, [Number(t.tenantId)]);
      expect(absent || JSON.stringify(rows) === JSON.stringify(single), `tenant ${t.tenantId} is half-restored`).toBe(
        true,
      );
    }
    expect((await runCli(['pause', restoreId])).code).toBe(2); // not running any more
  });

  /**
   * The approval gate, the same in both shapes: all 20 tenants reach the gate (a child waiting for approval holds no
   * window slot), approving 3 and 4 finishes exactly those two, approving all finishes the rest. Returns the restore
   * id once it has succeeded, with live equal to the backup.
   */
  async function approvalScenario(
    name: string,
    args: string[],
    replay: { parent: string; child: string; childId: (restoreId: string) => string },
  ): Promise<string> {
    const webhook = await startWebhookServer(0);
    try {
      const { restoreId, live } = await start(name, args, {
        actions: [
          {
            name: 'reenable-apps',
            type: 'sql',
            sql: 'UPDATE app.app_installations SET enabled = true WHERE tenant_id = $1::bigint',
          },
          { name: 'billing', type: 'webhook', url: webhook.url, requiresApproval: true },
        ],
      });
      const waiting = await until(restoreId, (p) => p.counts['awaiting-approval'] === 20);
      expect(waiting.counts.restored).toBe(0);
      expect(webhook.calls).toHaveLength(0);
      const status = await runCli(['status', restoreId]);
      expect(status.stdout).toContain(`tenant-restore approve ${restoreId}`);

      // The restore's own validator refuses a tenant outside it (the CLI checks too; this is the workflow's check).
      await expect(
        client.workflow
          .getHandle(bulkWorkflowId(restoreId))
          .executeUpdate(approveUpdate, { args: [{ tenantIds: ['3', '99'] }] }),
      ).rejects.toThrow(WorkflowUpdateFailedError);
      const approved = await runCli(['approve', restoreId, '--tenants', '3,4']);
      expect(approved.code, approved.stderr).toBe(0);
      expect(approved.stdout).toContain(`approve: restore ${restoreId} approved tenants 3, 4: 2 released now`);
      await until(restoreId, (p) => p.counts.restored === 2);
      expect(webhook.calls.map((c) => c.key).sort()).toEqual([`${restoreId}/3/billing`, `${restoreId}/4/billing`]);
      expect((await progress(restoreId)).counts['awaiting-approval']).toBe(18);

      expect((await runCli(['approve', restoreId])).code).toBe(0);
      const done = await result(restoreId);
      expect(done).toMatchObject({ status: 'succeeded', restored: 20 });
      expect(webhook.calls.map((c) => c.key).sort()).toEqual(victims.map((id) => `${restoreId}/${id}/billing`).sort());
      await expectRestoredLikeBackup(live.url, victims);
      const enabled = await withClient(live.url, (c) =>
        c.query<{ n: number }>(
          'SELECT count(*)::int AS n FROM app.app_installations WHERE tenant_id = ANY($1) AND enabled',
          [victims],
        ),
      );
      expect(enabled.rows[0].n).toBe(40);
      if (process.env.SAVE_REPLAY_HISTORIES) {
        const parent = await client.workflow.getHandle(bulkWorkflowId(restoreId)).describe();
        await saveHistory(client, parent.workflowId, parent.runId, replay.parent);
        const child = await client.workflow.getHandle(replay.childId(restoreId)).describe();
        await saveHistory(client, child.workflowId, child.runId, replay.child);
      }
      return restoreId;
    } finally {
      await webhook.close();
    }
  }

  it('holds billing until approved, per tenant and then for all; other actions run at once', async () => {
    await approvalScenario('approve', ['--concurrency', '3'], {
      parent: 'bulk-restore-units-approval',
      child: 'restore-unit-approval',
      childId: (id) => `restore/${id}/tenant/3`,
    });
  });

  it('holds billing per tenant inside groups: approved tenants finish, the rest of their group keeps waiting', async () => {
    // Four groups of five; 3 and 4 share a group with 1, 2 and 5, and only they go on when approved.
    const restoreId = await approvalScenario('approve-groups', ['--concurrency', '2', '--group-size', '5'], {
      parent: 'bulk-restore-units-group-approval',
      child: 'restore-unit-group-approval',
      childId: (id) => `restore/${id}/group/0`,
    });
    const children = (await parentEvents(restoreId))
      .map((e) => e.childId)
      .filter((id) => id && id !== bulkWorkflowId(restoreId));
    expect([...new Set(children)].sort()).toEqual([0, 5, 10, 15].map((i) => `restore/${restoreId}/group/${i}`).sort());
  });
  it('a running restore without update handlers (an earlier release) still gets the controls, as signals, and is told so', async () => {
    // A workflow under a restore's id that has no update handler, held running by an activity that waits for the test.
    const oldQueue = uniqueName('tq_orch_old');
    let release = () => undefined as void;
    const held = new Promise<void>((resolve) => (release = resolve));
    const old = await startWorker({
      taskQueue: oldQueue,
      activities: {
        checkDatabase: async () => {
          await held;
          return { database: 'held', serverVersion: '0' };
        },
      },
    });
    const restoreId = uniqueName('old-release').replace(/_/g, '-');
    const handle = await client.workflow.start('stackCheck', {
      taskQueue: oldQueue,
      workflowId: bulkWorkflowId(restoreId),
      args: ['held'],
    });
    try {
      const paused = await runCli(['pause', restoreId, '--json']);
      expect(paused.code, paused.stderr).toBe(0);
      expect(paused.json).toMatchObject({ control: 'pause', delivery: 'signal' });
      expect((paused.json as { note: string }).note).toContain('started by an earlier release');
      const text = await runCli(['concurrency', restoreId, '3']);
      expect(text.stdout).toContain('(sent as a signal: the restore does not acknowledge it)');
      const signals = (await parentEvents(restoreId)).map((e) => e.signal).filter(Boolean);
      expect(signals).toEqual(['pause', 'setConcurrency']);
    } finally {
      release();
      await handle.result().catch(() => undefined);
      await old.stop();
    }
  });

  it('gives up on a webhook that does not answer within its timeout, and retries it', async () => {
    const webhook = await startWebhookServer(0, { hangFirst: 1 });
    try {
      const { restoreId } = await start('webhook-timeout', ['--concurrency', '2', '--group-size', '10'], {
        actions: [{ name: 'billing', type: 'webhook', url: webhook.url, timeoutSeconds: 1 }],
      });
      const done = await result(restoreId);
      expect(done).toMatchObject({ status: 'succeeded', restored: 20 });
      // Every tenant's first call hung and was abandoned after 1 s; the retry with the same key was answered.
      for (const id of victims) {
        expect(webhook.calls.filter((c) => c.key === `${restoreId}/${id}/billing`).map((c) => c.status)).toEqual([
          0, 200,
        ]);
      }
    } finally {
      await webhook.close();
    }
  });
});
