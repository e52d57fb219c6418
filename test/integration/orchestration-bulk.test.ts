/**
 * The acceptance path: a 50-tenant bulk restore from a pg_dump archive in MinIO, started by the real CLI
 * (`tenant-restore start --wait --json`, default group size: three group children), run by a worker on the real dev server. Every tenant is restored, validated
 * and re-enabled (SQL action + webhook that fails its first attempt), other tenants are untouched, the report is in
 * S3, scratch is dropped, and no history holds a password or a row value.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { createActivities } from '../../activities';
import { Pools } from '../../activities/db';
import { createS3Client, getJson, getText } from '../../activities/s3';
import { scratchDatabaseName } from '../../activities/scratch';
import type { RestoreReport } from '../../activities/report';
import {
  scratchAdminQuery,
  startWorker,
  temporalClient,
  uniqueName,
  useFreshDatabases,
  useStackEnv,
} from '../helpers/stack';
import { range, smallTenant, tenantRows, withClient } from '../fixtures/orchestration/fixture';
import { lostTenants } from '../helpers/scenario';
import { historyText, restoreExecutions, saveHistory } from '../helpers/history';
import { productEnv, runCli } from '../helpers/product';
import { startWebhookServer } from '../fixtures/orchestration/webhook-server';

const env = useStackEnv();
const { fresh } = useFreshDatabases();
const password = new URL(env.STACK_PG_URL).password;

describe('bulk restore of 50 tenants from a backup in MinIO', () => {
  const pools = new Pools();
  const s3 = createS3Client();
  const taskQueue = uniqueName('tq_orch_bulk');
  const restoreId = uniqueName('bulk50').replace(/_/g, '-');
  const victims = range(11, 50);
  const bystanders = [...range(1, 10), ...range(61, 20)];
  let live: { name: string; url: string };
  let source: { name: string; url: string };
  let backup: string;
  let bystandersBefore: Awaited<ReturnType<typeof tenantRows>>;
  let worker: Awaited<ReturnType<typeof startWorker>>;
  let webhook: Awaited<ReturnType<typeof startWebhookServer>>;
  let configPath: string;

  beforeAll(async () => {
    ({ source, live, backup, bystandersBefore } = await lostTenants({
      fresh,
      name: 'orch_bulk',
      backupKey: `test/${restoreId}/backup.dump`,
      victims,
      bystanders,
      shape: smallTenant,
      tenants: 80,
    }));
    webhook = await startWebhookServer(1);
    configPath = join(tmpdir(), `${restoreId}.config.json`);
    writeFileSync(
      configPath,
      JSON.stringify({
        actions: [
          {
            name: 'reactivate-billing',
            type: 'sql',
            sql: 'UPDATE app.billing_accounts SET reenabled_by = $2 WHERE tenant_id = $1::bigint',
          },
          {
            name: 'notify-apps',
            type: 'webhook',
            url: webhook.url,
            headers: { authorization: 'env:TENANT_RESTORE_WEBHOOK_ORCH_TEST_TOKEN' },
          },
        ],
      }),
    );
    process.env.TENANT_RESTORE_WEBHOOK_ORCH_TEST_TOKEN = 'Bearer test-token-from-worker-env';
    worker = await startWorker({ taskQueue, activities: createActivities({ pools, s3 }) });
  });

  afterAll(async () => {
    await worker?.stop();
    await webhook?.close();
    await pools.closeAll();
    s3.destroy();
  });

  it('restores, validates and re-enables every tenant, and prints the contract JSON', async () => {
    const tenantsFile = join(tmpdir(), `${restoreId}.tenants`);
    writeFileSync(tenantsFile, `# victims of the incident\n${victims.join('\n')}\n\n`);
    const run = await runCli([
      'start',
      '--backup',
      backup,
      '--live',
      live.url,
      '--tenant-root',
      'app.tenants',
      '--tenants-file',
      tenantsFile,
      '--conflict',
      'skip',
      '--concurrency',
      '10',
      '--config',
      configPath,
      '--id',
      restoreId,
      '--wait',
      '--json',
      '--task-queue',
      taskQueue,
      '--artifacts',
      `s3://${env.STACK_S3_BUCKET}/test-restores/`,
    ]);
    expect(run.stderr).not.toContain(password);
    expect(run.code, run.stderr).toBe(0);
    const out = JSON.parse(run.stdout) as {
      restoreId: string;
      status: string;
      tenants: Array<{
        tenantId: string;
        status: string;
        rows: Record<string, number>;
        error?: string;
        group?: { workflowId: string; tenants: number };
      }>;
    };
    expect(out.restoreId).toBe(restoreId);
    expect(out.status).toBe('succeeded');
    expect(out.tenants.map((t) => t.tenantId).sort()).toEqual(victims.map(String).sort());
    // The default --group-size (20) puts the 50 tenants in groups of 20, 20 and 10; each tenant's rows are its group's.
    const perTenant = {
      'app.tenants': 1,
      'app.users': 3,
      'app.projects': 2,
      'app.issues': 6,
      'app.comments': 12,
      'app.billing_accounts': 1,
      'app.app_installations': 2,
    };
    const groups = new Map<string, number>();
    for (const t of out.tenants) {
      expect(t.status).toBe('restored');
      expect(t.error).toBeUndefined();
      expect(t.group, `tenant ${t.tenantId} was not restored in a group`).toBeDefined();
      groups.set(t.group!.workflowId, (groups.get(t.group!.workflowId) ?? 0) + 1);
      expect(t.rows).toEqual(Object.fromEntries(Object.entries(perTenant).map(([k, n]) => [k, n * t.group!.tenants])));
    }
    expect([...groups.values()].sort((a, b) => a - b)).toEqual([10, 20, 20]);
    for (const [workflowId, n] of groups)
      expect(out.tenants.filter((t) => t.group!.workflowId === workflowId)[0]!.group!.tenants).toBe(n);
  });

  it("left live with the backup's rows for the victims and untouched bystanders", async () => {
    const restored = await tenantRows(live.url, victims);
    expect(restored['app.comments'].count).toBe(50 * 12);
    expect(restored).toEqual(await tenantRows(source.url, victims));
    expect(await tenantRows(live.url, bystanders)).toEqual(bystandersBefore);
  });

  it('ran the re-enable actions once per tenant with the idempotency key, retrying the webhook', async () => {
    const billing = await withClient(live.url, (c) =>
      c.query<{ tenant_id: string; reenabled_by: string | null }>(
        'SELECT tenant_id, reenabled_by FROM app.billing_accounts ORDER BY tenant_id',
      ),
    );
    for (const row of billing.rows) {
      const id = Number(row.tenant_id);
      expect(row.reenabled_by).toBe(victims.includes(id) ? `${restoreId}/${id}/reactivate-billing` : null);
    }
    const ok = webhook.calls.filter((c) => c.status === 200);
    expect(ok.map((c) => c.key).sort()).toEqual(victims.map((id) => `${restoreId}/${id}/notify-apps`).sort());
    // Each tenant's first attempt got a 503 and was retried with the same key.
    for (const id of victims) {
      const calls = webhook.calls.filter((c) => c.key === `${restoreId}/${id}/notify-apps`);
      expect(calls.map((c) => c.status)).toEqual([503, 200]);
      expect(calls[1].authorization).toBe('Bearer test-token-from-worker-env');
      expect(calls[1].body).toEqual({
        restoreId,
        tenantId: String(id),
        action: 'notify-apps',
        idempotencyKey: `${restoreId}/${id}/notify-apps`,
      });
    }
  });

  it('wrote the report to S3, and the report command prints it', async () => {
    const prefix = `test-restores/${restoreId}/`;
    const report = await getJson<RestoreReport>(s3, { bucket: env.STACK_S3_BUCKET, key: `${prefix}report.json` });
    expect(report.status).toBe('succeeded');
    expect(report.totals).toMatchObject({ tenants: 50, restored: 50, failed: 0, cancelled: 0, notStarted: 0 });
    expect(report.totals.rows['app.comments']).toBe(50 * 12);
    expect(report.source.verifiedBy).toBe('signature');
    for (const t of report.tenants) {
      expect(t.validation.length).toBeGreaterThan(0);
      expect(t.validation.every((v) => v.match && v.scratchCount === v.liveCount)).toBe(true);
      expect(t.actions.map((a) => `${a.name}:${a.status}`)).toEqual(['reactivate-billing:done', 'notify-apps:done']);
    }
    const markdown = await getText(s3, { bucket: env.STACK_S3_BUCKET, key: `${prefix}report.md` });
    expect(markdown).toContain(`# Restore ${restoreId}: succeeded`);
    const cli = await runCli(['report', restoreId]);
    expect(cli.code, cli.stderr).toBe(0);
    expect(cli.stdout).toContain('| app.comments | 600 |');
    // From S3 alone, as after Temporal's retention removed the workflow: with Temporal unreachable, --artifacts
    // (the base the restore was started with) finds the same report.
    const alone = await runCli(
      ['report', restoreId, '--artifacts', `s3://${env.STACK_S3_BUCKET}/test-restores/`],
      productEnv({ TEMPORAL_ADDRESS: '127.0.0.1:1' }),
    );
    expect(alone.code, alone.stderr).toBe(0);
    expect(alone.stdout).toBe(cli.stdout);
    const withoutLocation = await runCli(['report', uniqueName('gone')]);
    expect(withoutLocation.code).toBe(2);
    expect(withoutLocation.stderr).toMatch(/give --artifacts s3:\/\/<bucket>\/<prefix>\//);
    const status = await runCli(['status', restoreId, '--json']);
    expect(status.code, status.stderr).toBe(0);
    expect(JSON.parse(status.stdout).result).toMatchObject({ status: 'succeeded', restored: 50, failed: 0 });
  });

  it('dropped its scratch database', async () => {
    // On the scratch server (the stack's scratch cluster), where it was loaded.
    const { rows } = await scratchAdminQuery('SELECT 1 FROM pg_database WHERE datname = $1', [
      scratchDatabaseName(restoreId),
    ]);
    expect(rows).toHaveLength(0);
  });

  it('kept every password and every row value out of workflow history (I5)', async () => {
    const { client, close } = await temporalClient();
    try {
      const executions = await restoreExecutions(client, restoreId);
      expect(executions.filter((e) => e.type === 'bulkRestore').length).toBeGreaterThanOrEqual(1);
      expect(executions.filter((e) => e.type === 'restoreUnit')).toHaveLength(3);
      expect(executions.filter((e) => e.type === 'tenantRestore' || e.type === 'tenantGroupRestore')).toHaveLength(0);
      for (const e of executions) {
        const text = historyText(await client.workflow.getHandle(e.workflowId, e.runId).fetchHistory());
        expect(text).toContain(restoreId); // the decoding works: payloads are readable
        expect(text).not.toContain(password);
        expect(text).not.toContain(env.AWS_SECRET_ACCESS_KEY);
        expect(text).not.toContain('test-token-from-worker-env');
        expect(text).not.toMatch(/rowdata/i);
      }
      if (process.env.SAVE_REPLAY_HISTORIES) {
        const bulk = executions.find((e) => e.type === 'bulkRestore')!;
        const child = executions.find((e) => e.type === 'restoreUnit')!;
        await saveHistory(client, bulk.workflowId, bulk.runId, 'bulk-restore-units');
        await saveHistory(client, child.workflowId, child.runId, 'restore-unit-actions');
      }
    } finally {
      await close();
    }
  });
});
