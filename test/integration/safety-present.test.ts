/**
 * Issue 11, item 1: tenants that were never deleted. The tenant list of a restore is as untrustworthy as the one that
 * caused the incident. Live holds four deleted tenants (1-4, absent), tenant 5 untouched (present), and tenant 6 partly
 * purged (partial: two comments gone) whose users kept working since the backup (a user's email changed). The restore
 * runs with --conflict overwrite, the policy that would do the most damage.
 *
 * - By default 5 and 6 are refused (TenantPresentError, with their class and missing counts), nothing of them is
 *   written (rows, re-enable action), 1-4 are restored, and `start` says how many were refused and why. Through the
 *   group child (default group size) and through the one-tenant child (--group-size 1).
 * - With --allow-partial, 6 gets exactly its two missing comments back, its changed email is not reverted (no UPDATE,
 *   whatever --conflict says), validation checks the backup's keys are all in live, and the report lists the keys.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { createActivities } from '../../activities';
import { Pools } from '../../activities/db';
import { createS3Client, getJson } from '../../activities/s3';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import type { RestoreReport, UnitRecord } from '../../activities/report';
import { startWorker, uniqueName, useFreshDatabases, useStackEnv } from '../helpers/stack';
import { range, smallTenant, tenantRows, withClient } from '../fixtures/orchestration/fixture';
import { lostTenants } from '../helpers/scenario';
import { runCli } from '../helpers/product';

const env = useStackEnv();
const { fresh } = useFreshDatabases();

type CliOut = { status: string; refused: number; tenants: Array<{ tenantId: string; status: string; error?: string }> };

describe('tenants still in live are refused; partial ones only with --allow-partial, missing rows only', () => {
  const pools = new Pools();
  const s3 = createS3Client();
  const taskQueue = uniqueName('tq_safety_present');
  const run = uniqueName('present').replace(/_/g, '-');
  const absent = range(1, 4);
  const present = 5;
  const partial = 6;
  const bystanders = range(7, 6);
  let live: { name: string; url: string };
  let source: { name: string; url: string };
  let backup: string;
  let config: string;
  let deletedComments: string[];
  let changedUser: string;
  let presentBefore: Awaited<ReturnType<typeof tenantRows>>;
  let partialBefore: Awaited<ReturnType<typeof tenantRows>>;
  let bystandersBefore: Awaited<ReturnType<typeof tenantRows>>;
  let worker: Awaited<ReturnType<typeof startWorker>>;

  const start = (id: string, tenants: number[], extra: string[] = []) =>
    runCli([
      'start',
      '--backup',
      backup,
      '--live',
      live.url,
      '--tenant-root',
      'app.tenants',
      '--tenants',
      tenants.join(','),
      '--conflict',
      'overwrite',
      '--config',
      config,
      '--id',
      id,
      '--wait',
      '--task-queue',
      taskQueue,
      '--artifacts',
      `s3://${env.STACK_S3_BUCKET}/test-restores/`,
      ...extra,
    ]);
  const report = (id: string) =>
    getJson<RestoreReport>(s3, { bucket: env.STACK_S3_BUCKET, key: `test-restores/${id}/report.json` });
  const reenabled = (ids: number[]) =>
    withClient(live.url, async (c) =>
      (
        await c.query<{ id: string }>(
          'SELECT tenant_id::text AS id FROM app.billing_accounts WHERE tenant_id = ANY($1) AND reenabled_by IS NOT NULL ORDER BY 1',
          [ids],
        )
      ).rows.map((r) => Number(r.id)),
    );

  beforeAll(async () => {
    ({ source, live, backup } = await lostTenants({
      fresh,
      name: 'safety_present',
      backupKey: `test/${run}/backup.dump`,
      victims: absent,
      shape: smallTenant,
      tenants: 12,
    }));
    await withClient(live.url, async (c) => {
      // Tenant 6: a purge that stopped half way (two comments gone), and a user who changed their email since the backup.
      deletedComments = (
        await c.query<{ id: string }>(
          `DELETE FROM app.comments WHERE id IN (SELECT cm.id FROM app.comments cm JOIN app.issues i ON i.id = cm.issue_id JOIN app.projects p ON p.id = i.project_id
           WHERE p.tenant_id = $1 ORDER BY cm.id LIMIT 2) RETURNING id::text`,
          [partial],
        )
      ).rows
        .map((r) => r.id)
        .sort((a, b) => Number(a) - Number(b));
      changedUser = (
        await c.query<{ id: string }>(
          `UPDATE app.users SET email = 'rowdata-new-email@example.test' WHERE id = (SELECT min(id) FROM app.users WHERE tenant_id = $1) RETURNING id::text`,
          [partial],
        )
      ).rows[0]!.id;
    });
    expect(deletedComments).toHaveLength(2);
    presentBefore = await tenantRows(live.url, [present]);
    partialBefore = await tenantRows(live.url, [partial]);
    bystandersBefore = await tenantRows(live.url, bystanders);
    config = join(tmpdir(), `${run}.config.json`);
    writeFileSync(
      config,
      JSON.stringify({
        actions: [
          {
            name: 'billing',
            type: 'sql',
            sql: 'UPDATE app.billing_accounts SET reenabled_by = $2 WHERE tenant_id = $1::bigint',
          },
        ],
      }),
    );
    worker = await startWorker({ taskQueue, activities: createActivities({ pools, s3 }) });
  });

  afterAll(async () => {
    await worker?.stop();
    await pools.closeAll();
    s3.destroy();
  });

  it('refuses the present and the partial tenant in a group, restores the absent ones, and says so', async () => {
    const id = `${run}-default`;
    const result = await start(id, [...absent, present, partial]);
    expect(result.code, result.stderr).toBe(1);
    expect(result.stdout).toContain('refused 2 of 6');
    expect(result.stdout).toMatch(
      new RegExp(`tenant ${present}: failed: TenantPresentError: Tenant ${present} is present in live`),
    );
    expect(result.stdout).toMatch(
      new RegExp(
        `tenant ${partial}: failed: TenantPresentError: Tenant ${partial} is partial in live: .*2 row\\(s\\) of the backup are missing \\(app.comments: 2\\).*--allow-partial`,
      ),
    );

    const r = await report(id);
    const byId = new Map(r.tenants.map((t) => [Number(t.tenantId), t]));
    for (const a of absent) expect(byId.get(a)!.status, `tenant ${a}`).toBe('restored');
    expect(byId.get(present)).toMatchObject({ status: 'failed', liveState: 'present', missingAtPreflight: {} });
    expect(byId.get(partial)).toMatchObject({
      status: 'failed',
      liveState: 'partial',
      missingAtPreflight: { 'app.comments': 2 },
    });
    expect(byId.get(present)!.actions).toEqual([]);

    // Nothing of 5 and 6 was written, not even the re-enable action; 1-4 are the backup's; bystanders untouched.
    expect(await tenantRows(live.url, [present])).toEqual(presentBefore);
    expect(await tenantRows(live.url, [partial])).toEqual(partialBefore);
    expect(await reenabled([present, partial])).toEqual([]);
    expect(await reenabled(absent)).toEqual(absent);
    expect(
      await tenantRows(live.url, absent, [
        'app.tenants',
        'app.users',
        'app.projects',
        'app.issues',
        'app.comments',
        'app.app_installations',
      ]),
    ).toEqual(
      await tenantRows(source.url, absent, [
        'app.tenants',
        'app.users',
        'app.projects',
        'app.issues',
        'app.comments',
        'app.app_installations',
      ]),
    );
    expect(await tenantRows(live.url, bystanders)).toEqual(bystandersBefore);
  });

  it('refuses a present tenant on the one-tenant path too (--group-size 1)', async () => {
    const id = `${run}-single`;
    const result = await start(id, [present], ['--group-size', '1', '--json']);
    expect(result.code, result.stderr).toBe(1);
    const out = JSON.parse(result.stdout) as CliOut;
    expect(out.refused).toBe(1);
    expect(out.tenants[0]!.error).toMatch(/^TenantPresentError: Tenant 5 is present in live/);
    expect(await tenantRows(live.url, [present])).toEqual(presentBefore);
    expect(await reenabled([present])).toEqual([]);
  });

  it('with --allow-partial inserts only the missing rows of the partial tenant, updates none, and lists them', async () => {
    const id = `${run}-partial`;
    const result = await start(id, [present, partial], ['--allow-partial', '--json']);
    expect(result.code, result.stderr).toBe(1);
    const out = JSON.parse(result.stdout) as CliOut;
    const byId = new Map(out.tenants.map((t) => [Number(t.tenantId), t]));
    expect(byId.get(partial)!.status, byId.get(partial)!.error).toBe('restored');
    expect(byId.get(present)!.error).toMatch(/^TenantPresentError/);
    expect(out.refused).toBe(1);

    // The two comments are back with the backup's content; the changed email is live's, not the backup's.
    const back = await withClient(
      live.url,
      async (c) =>
        (
          await c.query<{ id: string; body: string }>(
            'SELECT id::text, body FROM app.comments WHERE id = ANY($1::bigint[]) ORDER BY id',
            [deletedComments],
          )
        ).rows,
    );
    const inBackup = await withClient(
      source.url,
      async (c) =>
        (
          await c.query<{ id: string; body: string }>(
            'SELECT id::text, body FROM app.comments WHERE id = ANY($1::bigint[]) ORDER BY id',
            [deletedComments],
          )
        ).rows,
    );
    expect(back).toEqual(inBackup);
    const email = await withClient(
      live.url,
      async (c) =>
        (await c.query<{ email: string }>('SELECT email FROM app.users WHERE id = $1', [changedUser])).rows[0]!.email,
    );
    expect(email).toBe('rowdata-new-email@example.test');
    const after = await tenantRows(live.url, [partial]);
    expect(after['app.comments']!.count).toBe(partialBefore['app.comments']!.count + 2);
    for (const table of ['app.tenants', 'app.users', 'app.projects', 'app.issues', 'app.app_installations'])
      expect(after[table], table).toEqual(partialBefore[table]);
    expect(await tenantRows(live.url, [present])).toEqual(presentBefore);

    const t = (await report(id)).tenants.find((x) => Number(x.tenantId) === partial)!;
    expect(t.restoredKeys).toEqual({ 'app.comments': { keys: deletedComments.map((k) => [k]), total: 2 } });
    // The keys were kept out of workflow history: the tenant's result (what its child workflow carried) holds counts only.
    // The unit's record in S3 (one per unit since issue 25) carries the same evidence.
    const listed = await s3.send(
      new ListObjectsV2Command({ Bucket: env.STACK_S3_BUCKET, Prefix: `test-restores/${id}/units/` }),
    );
    const records = await Promise.all(
      (listed.Contents ?? []).map((o) => getJson<UnitRecord>(s3, { bucket: env.STACK_S3_BUCKET, key: o.Key! })),
    );
    const unit = records.find((r) => r.tenants.some((t) => Number(t.tenantId) === partial))!;
    const carried = unit.result as unknown as { copy: { restoredKeys: unknown; restoredKeysObject: { key: string } } };
    expect(carried.copy.restoredKeys).toEqual({ 'app.comments': { keys: [], total: 2 } });
    expect(carried.copy.restoredKeysObject.key).toBe(`test-restores/${id}/restored-keys/${partial}.json`);
    expect(t.rows['app.comments']).toBe(2);
    expect(t.validation.length).toBeGreaterThan(0);
    expect(t.validation.every((v) => v.match)).toBe(true);
    expect(await reenabled([partial])).toEqual([partial]);
    expect(await reenabled([present])).toEqual([]);
  });
});
