/**
 * Group restores when a tenant cannot be restored: one bad tenant fails alone, never its group. Sixteen tenants
 * (`start --group-size 5`) go to four restoreUnit children. One group holds tenant 7, whose user id a
 * bystander (tenant 30) now holds in live with other content (a CrossTenantConflictError under every policy); another
 * holds 9999, an id the backup does not have (TenantNotInBackupError). Both groups fail as a unit, nothing of them
 * is committed, and their tenants are restored again one at a time: only 7 and 9999 are reported failed. The report
 * (CLI JSON, report.json) marks the tenants of the clean group with `group` and the group's rows, the tenants
 * restored alone without it and with their own rows, and counts each group's rows once. Live ends with the backup's
 * rows for every restored tenant, nothing for 7, and every bystander (tenant 30's row included) as it was.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createActivities } from '../../activities';
import { Pools } from '../../activities/db';
import { createS3Client, getJson } from '../../activities/s3';
import type { RestoreReport } from '../../activities/report';
import { groupWorkflowId, tenantWorkflowId, unitWorkflowId } from '../../workflows/definitions';
import { startWorker, temporalClient, uniqueName, useFreshDatabases, useStackEnv } from '../helpers/stack';
import { range, smallTenant, tables, tenantRows, withClient } from '../fixtures/orchestration/fixture';
import { lostTenants } from '../helpers/scenario';
import { restoreExecutions } from '../helpers/history';
import { runCli } from '../helpers/product';

const env = useStackEnv();
const { fresh } = useFreshDatabases();
const password = new URL(env.STACK_PG_URL).password;

type CliTenant = {
  tenantId: string;
  status: string;
  rows: Record<string, number>;
  error?: string;
  group?: { workflowId: string; tenants: number };
};

describe('a group restore in which one tenant conflicts and one is not in the backup', () => {
  const pools = new Pools();
  const s3 = createS3Client();
  const taskQueue = uniqueName('tq_orch_groups');
  const restoreId = uniqueName('groups').replace(/_/g, '-');
  const victims = range(1, 15);
  const conflicted = 7;
  const missing = 9999;
  /** The tenant list, in order: groups of 5 by position are [1-5], [6-10] (with 7), [11, 12, 9999, 13, 14], [15]. */
  const list = [...range(1, 12), missing, 13, 14, 15];
  const groupSize = 5;
  const restored = victims.filter((id) => id !== conflicted);
  const bystanders = range(16, 25); // 16..40, tenant 30 included
  /** A tenant of smallTenant's shape, per table (the fixture's generate: issues per project, comments per issue). */
  const perTenant: Record<string, number> = {
    'app.tenants': 1,
    'app.users': smallTenant.users,
    'app.projects': smallTenant.projects,
    'app.issues': smallTenant.projects * smallTenant.issuesPerProject,
    'app.comments': smallTenant.projects * smallTenant.issuesPerProject * smallTenant.commentsPerIssue,
    'app.billing_accounts': 1,
    'app.app_installations': smallTenant.installations,
  };
  let live: { name: string; url: string };
  let source: { name: string; url: string };
  let backup: string;
  let stolenUserId: string;
  let bystandersBefore: Awaited<ReturnType<typeof tenantRows>>;
  let worker: Awaited<ReturnType<typeof startWorker>>;
  let out: { restoreId: string; status: string; tenants: CliTenant[] };

  beforeAll(async () => {
    ({ source, live, backup } = await lostTenants({
      fresh,
      name: 'orch_groups',
      backupKey: `test/${restoreId}/backup.dump`,
      victims,
      shape: smallTenant,
      tenants: 40,
    }));
    // Since the backup, tenant 30 got a user whose id is one of tenant 7's users in the backup (other tenant, other
    // email): restoring 7 would overwrite another tenant's row, which no policy may do.
    stolenUserId = await withClient(
      source.url,
      async (c) =>
        (await c.query<{ id: string }>('SELECT max(id)::text AS id FROM app.users WHERE tenant_id = $1', [conflicted]))
          .rows[0]!.id,
    );
    await withClient(live.url, (c) =>
      c.query(`INSERT INTO app.users (id, tenant_id, email) VALUES ($1, 30, 'rowdata-taken-by-t30@example.test')`, [
        stolenUserId,
      ]),
    );
    bystandersBefore = await tenantRows(live.url, bystanders);
    worker = await startWorker({ taskQueue, activities: createActivities({ pools, s3 }) });
  });

  afterAll(async () => {
    await worker?.stop();
    await pools.closeAll();
    s3.destroy();
  });

  it('fails only the conflicting and the missing tenant, exit 1, status partial', async () => {
    // The fixture's shape, as the source has it.
    const one = await tenantRows(source.url, [1]);
    expect(Object.fromEntries(Object.entries(one).map(([t, r]) => [t, r.count]))).toEqual(perTenant);

    const run = await runCli([
      'start',
      '--backup',
      backup,
      '--live',
      live.url,
      '--tenant-root',
      'app.tenants',
      '--tenants',
      list.join(','),
      '--conflict',
      'skip',
      '--concurrency',
      '2',
      '--group-size',
      String(groupSize),
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
    expect(run.code, run.stderr).toBe(1);
    out = JSON.parse(run.stdout) as typeof out;
    expect(out.restoreId).toBe(restoreId);
    expect(out.status).toBe('partial');
    expect(out.tenants.map((t) => t.tenantId).sort()).toEqual(list.map(String).sort());

    const byId = new Map(out.tenants.map((t) => [Number(t.tenantId), t]));
    const seven = byId.get(conflicted)!;
    expect(seven.status).toBe('failed');
    expect(seven.error).toContain('CrossTenantConflictError');
    expect(seven.error).toContain('app.users');
    expect(seven.group).toBeUndefined();
    const nine = byId.get(missing)!;
    expect(nine.status).toBe('failed');
    expect(nine.error).toContain('TenantNotInBackupError');
    expect(nine.group).toBeUndefined();

    // The clean group [1-5]: restored together, each tenant carrying the group and the group's rows.
    const cleanGroup = groupWorkflowId(restoreId, 0);
    for (const id of range(1, 5)) {
      const t = byId.get(id)!;
      expect(t.status, `tenant ${id}`).toBe('restored');
      expect(t.error).toBeUndefined();
      expect(t.group, `tenant ${id}`).toEqual({ workflowId: cleanGroup, tenants: groupSize });
      expect(t.rows).toEqual(Object.fromEntries(Object.entries(perTenant).map(([k, n]) => [k, n * groupSize])));
    }
    // The tenants of the two failed groups: each group was halved (issue 25: a unit of more than 4 tenants that fails is
    // halved until the bad tenant fails alone), so the good ones come back in smaller units of their group's child, or
    // alone, each with its unit's rows. 15 (a group of one) alone.
    const inHalves = [];
    for (const id of [6, 8, 9, 10, 11, 12, 13, 14, 15]) {
      const t = byId.get(id)!;
      expect(t.status, `tenant ${id}: ${t.error}`).toBe('restored');
      expect(t.error).toBeUndefined();
      if (t.group) {
        inHalves.push(id);
        expect(t.group.workflowId, `tenant ${id}`).toBe(groupWorkflowId(restoreId, id <= 10 ? 5 : 10));
        expect(t.group.tenants, `tenant ${id}`).toBeLessThan(groupSize);
        expect(t.rows, `tenant ${id}`).toEqual(
          Object.fromEntries(Object.entries(perTenant).map(([k, n]) => [k, n * t.group!.tenants])),
        );
      } else expect(t.rows, `tenant ${id}`).toEqual(perTenant);
    }
    expect(inHalves.length).toBeGreaterThan(0);
    expect(byId.get(15)!.group).toBeUndefined();
  });

  it("left the backup's rows for the restored tenants, none for 7, and the bystanders (tenant 30 too) as they were", async () => {
    expect(await tenantRows(live.url, restored)).toEqual(await tenantRows(source.url, restored));
    const seven = await tenantRows(live.url, [conflicted]);
    for (const table of tables) expect(seven[table].count, `${table} of tenant 7`).toBe(0);
    expect(await tenantRows(live.url, bystanders)).toEqual(bystandersBefore);
    const stolen = await withClient(live.url, (c) =>
      c.query<{ tenant_id: string; email: string }>('SELECT tenant_id::text, email FROM app.users WHERE id = $1', [
        stolenUserId,
      ]),
    );
    expect(stolen.rows).toEqual([{ tenant_id: '30', email: 'rowdata-taken-by-t30@example.test' }]);
    const ghost = await withClient(live.url, (c) =>
      c.query<{ n: number }>('SELECT count(*)::int AS n FROM app.tenants WHERE id = $1', [missing]),
    );
    expect(ghost.rows[0]!.n).toBe(0);
  });

  it("wrote a report whose totals count each group's rows once", async () => {
    const report = await getJson<RestoreReport>(s3, {
      bucket: env.STACK_S3_BUCKET,
      key: `test-restores/${restoreId}/report.json`,
    });
    expect(report.status).toBe('partial');
    expect(report.totals).toMatchObject({
      tenants: list.length,
      restored: restored.length,
      failed: 2,
      cancelled: 0,
      notStarted: 0,
    });
    const fromSource = await tenantRows(source.url, restored);
    const expected = Object.fromEntries(Object.entries(fromSource).map(([table, r]) => [table, r.count]));
    expect(expected['app.comments']).toBe(restored.length * perTenant['app.comments']!);
    expect(report.totals.rows).toEqual(expected);
    // The report's tenants say what the CLI printed.
    for (const t of report.tenants) {
      const printed = out.tenants.find((x) => x.tenantId === t.tenantId)!;
      expect(t.status).toBe(printed.status);
      expect(t.group).toEqual(printed.group);
      expect(t.rows).toEqual(printed.rows);
      if (t.status === 'restored') expect(t.validation.length > 0 && t.validation.every((v) => v.match)).toBe(true);
    }
  });

  it("ran one restoreUnit per group of 5 (the last, of one tenant, named by its tenant), and none of the previous release's child types", async () => {
    const { client, close } = await temporalClient();
    try {
      const executions = await restoreExecutions(client, restoreId);
      const groups = executions.filter((e) => e.type === 'restoreUnit');
      expect(groups).toHaveLength(Math.ceil(list.length / groupSize));
      // 16 tenants: three units of five, and a unit of one, whose id is the tenant's.
      expect(groups.map((e) => e.workflowId).sort()).toEqual(
        [0, 5, 10, 15].map((i) => unitWorkflowId(restoreId, list.slice(i, i + groupSize).map(String), i)).sort(),
      );
      expect(groups.map((e) => e.workflowId)).toContain(tenantWorkflowId(restoreId, String(list[15])));
      expect(executions.filter((e) => e.type === 'tenantRestore' || e.type === 'tenantGroupRestore')).toHaveLength(0);
      expect(executions.filter((e) => e.type === 'bulkRestore').length).toBeGreaterThanOrEqual(1);
    } finally {
      await close();
    }
  });
});
