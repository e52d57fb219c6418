/**
 * Issue 11 against the real stack (Temporal, Postgres, MinIO), through the real CLI:
 * - item 8: a tenant root keyed by uuid; ids given in upper case are the same tenants as the backup's lowercase ones
 *   (restored, deduplicated, approved); a config the CLI never saw is checked by the worker too;
 * - item 5: a webhook carrying a secret header that answers with a redirect is not followed;
 * - item 7b: TENANT_RESTORE_FK_CHECKS=postgres on the worker leaves FK checks to PostgreSQL even for a role that may
 *   set session_replication_role (the mode that needs no such grant): user triggers fire, the restore is the same.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { createActivities } from '../../activities';
import { Pools } from '../../activities/db';
import { createS3Client, getJson } from '../../activities/s3';
import type { Plan } from '../../activities/plan';
import { buildStartRequest } from '../../cli/client/start';
import { bulkWorkflowId, progressQuery, type BulkRestoreResult } from '../../workflows/definitions';
import { buildPlan } from '../../activities/plan';
import { applyGrants, dropRoles, newPassword, roleUrlWithPassword } from '../helpers/audit';
import {
  adminQuery,
  startWorker,
  temporalClient,
  uniqueName,
  useFreshDatabases,
  useStackEnv,
  withClient,
} from '../helpers/stack';
import { runCli } from '../helpers/product';

const env = useStackEnv();
const { fresh } = useFreshDatabases();
const password = new URL(env.STACK_PG_URL).password;

/** Tenant n's uuid: hex letters in it, so that upper case differs from PostgreSQL's own text. */
const uuidOf = (n: number) => `a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a${n.toString(16).padStart(2, '0')}`;

const schema = `
  CREATE SCHEMA app;
  CREATE SCHEMA audit;
  CREATE TABLE app.tenants (id uuid PRIMARY KEY, name text NOT NULL);
  CREATE TABLE app.projects (id bigint PRIMARY KEY, tenant_id uuid NOT NULL REFERENCES app.tenants (id), name text NOT NULL);
  CREATE TABLE app.billing (tenant_id uuid PRIMARY KEY REFERENCES app.tenants (id), active boolean NOT NULL DEFAULT false);
  -- A user trigger that records that it fired (in a table outside the restore), and under which replication role.
  CREATE TABLE audit.trigger_log (id bigserial PRIMARY KEY, tenant_id uuid NOT NULL, replication_role text NOT NULL);
  CREATE FUNCTION audit.log_project() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN INSERT INTO audit.trigger_log (tenant_id, replication_role) VALUES (NEW.tenant_id, current_setting('session_replication_role')); RETURN NEW; END $$;
  CREATE TRIGGER log_project AFTER INSERT ON app.projects FOR EACH ROW EXECUTE FUNCTION audit.log_project();`;

describe('safety of configs and tenant ids on a uuid-keyed root', () => {
  const pools = new Pools();
  const s3 = createS3Client();
  const taskQueue = uniqueName('tq_safety_cfg');
  const postgresChecksQueue = uniqueName('tq_safety_pgfk');
  let source: { name: string; url: string };
  let live: { name: string; url: string };
  const workers: Array<Awaited<ReturnType<typeof startWorker>>> = [];
  const servers: Server[] = [];
  const artifacts = `s3://${env.STACK_S3_BUCKET}/test-restores/`;

  beforeAll(async () => {
    source = await fresh('safety_cfg_src');
    await withClient(source.url, async (c) => {
      await c.query(schema);
      for (let n = 1; n <= 8; n += 1) {
        await c.query('INSERT INTO app.tenants VALUES ($1, $2)', [uuidOf(n), `tenant ${n}`]);
        await c.query('INSERT INTO app.billing VALUES ($1, false)', [uuidOf(n)]);
        for (let p = 1; p <= 3; p += 1)
          await c.query('INSERT INTO app.projects VALUES ($1, $2, $3)', [n * 100 + p, uuidOf(n), `project ${p}`]);
      }
    });
    live = await fresh('safety_cfg_live', source.name);
    await withClient(live.url, async (c) => {
      // Tenants 1-7 were deleted by the incident; 8 is a bystander.
      const victims = [1, 2, 3, 4, 5, 6, 7].map(uuidOf);
      await c.query('DELETE FROM app.projects WHERE tenant_id = ANY($1::uuid[])', [victims]);
      await c.query('DELETE FROM app.billing WHERE tenant_id = ANY($1::uuid[])', [victims]);
      await c.query('DELETE FROM app.tenants WHERE id = ANY($1::uuid[])', [victims]);
      await c.query('TRUNCATE audit.trigger_log');
    });
    workers.push(await startWorker({ taskQueue, activities: createActivities({ pools, s3 }) }));
    // The worker reads TENANT_RESTORE_FK_CHECKS when its activities are made.
    process.env.TENANT_RESTORE_FK_CHECKS = 'postgres';
    try {
      workers.push(await startWorker({ taskQueue: postgresChecksQueue, activities: createActivities({ pools, s3 }) }));
    } finally {
      delete process.env.TENANT_RESTORE_FK_CHECKS;
    }
  });

  afterAll(async () => {
    for (const w of workers) await w.stop();
    for (const s of servers)
      await new Promise<void>((resolve) => {
        s.close(() => resolve());
        s.closeAllConnections();
      });
    await pools.closeAll();
    s3.destroy();
  });

  const start = (restoreId: string, tenants: string, extra: string[] = [], queue = taskQueue) =>
    runCli([
      'start',
      '--scratch',
      source.url,
      '--live',
      live.url,
      '--tenant-root',
      'app.tenants',
      '--tenants',
      tenants,
      '--id',
      restoreId,
      '--task-queue',
      queue,
      '--artifacts',
      artifacts,
      '--json',
      ...extra,
    ]);
  const liveRows = (n: number) =>
    withClient(live.url, async (c) => {
      const { rows } = await c.query<{ tenants: number; projects: number; active: boolean | null; fired: number }>(
        `SELECT (SELECT count(*)::int FROM app.tenants WHERE id = $1) AS tenants, (SELECT count(*)::int FROM app.projects WHERE tenant_id = $1) AS projects,
              (SELECT active FROM app.billing WHERE tenant_id = $1) AS active, (SELECT count(*)::int FROM audit.trigger_log WHERE tenant_id = $1) AS fired`,
        [uuidOf(n)],
      );
      return rows[0]!;
    });
  const planOf = (restoreId: string) =>
    getJson<Plan>(s3, { bucket: env.STACK_S3_BUCKET, key: `test-restores/${restoreId}/plan.json` });

  it("restores tenants listed with upper-case uuids, under PostgreSQL's own spelling of their ids", async () => {
    const restoreId = uniqueName('uuid-upper').replace(/_/g, '-');
    const run = await start(restoreId, `${uuidOf(1).toUpperCase()},${uuidOf(2)}`, ['--group-size', '1', '--wait']);
    expect(run.code, run.stderr + run.stdout).toBe(0);
    const out = JSON.parse(run.stdout) as {
      status: string;
      tenants: Array<{ tenantId: string; status: string; error?: unknown }>;
    };
    expect(out.status).toBe('succeeded');
    expect(out.tenants.map((t) => [t.tenantId, t.status]).sort()).toEqual([
      [uuidOf(1), 'restored'],
      [uuidOf(2), 'restored'],
    ]);
    expect(await liveRows(1)).toEqual({ tenants: 1, projects: 3, active: false, fired: 0 });
    expect(await liveRows(2)).toEqual({ tenants: 1, projects: 3, active: false, fired: 0 });
    // The default: the engine checks FKs, user triggers are suspended in the tenant's transaction (fired: 0 above).
    expect((await planOf(restoreId)).fkEnforcement).toBe('replica');
  });

  it('refuses a uuid listed twice in two cases before anything starts', async () => {
    const restoreId = uniqueName('uuid-dup').replace(/_/g, '-');
    const run = await start(restoreId, `${uuidOf(3)},${uuidOf(3).toUpperCase()}`);
    expect(run.code, run.stdout).toBe(2);
    expect(run.stderr).toContain(
      `tenant ${uuidOf(3).toUpperCase()} is already listed at --tenants entry 1 as ${uuidOf(3)} (uuids are compared without regard to case)`,
    );
    expect(await liveRows(3)).toMatchObject({ tenants: 0, projects: 0 });
  });

  it('releases a held action when the approval names the tenant in upper case', async () => {
    const restoreId = uniqueName('uuid-approve').replace(/_/g, '-');
    const config = join(tmpdir(), `${restoreId}.json`);
    writeFileSync(
      config,
      JSON.stringify({
        actions: [
          {
            name: 'billing',
            type: 'sql',
            requiresApproval: true,
            sql: 'UPDATE app.billing SET active = true WHERE tenant_id = $1::uuid',
          },
        ],
      }),
    );
    const run = await start(restoreId, uuidOf(3), ['--config', config]);
    expect(run.code, run.stderr).toBe(0);
    const { client, close } = await temporalClient();
    try {
      const handle = client.workflow.getHandle(bulkWorkflowId(restoreId));
      while ((await handle.query(progressQuery)).counts['awaiting-approval'] !== 1)
        await new Promise((r) => setTimeout(r, 200));
      expect((await liveRows(3)).active).toBe(false);
      const approve = await runCli(['approve', restoreId, '--tenants', uuidOf(3).toUpperCase()]);
      expect(approve.code, approve.stderr).toBe(0);
      const result = (await handle.result()) as BulkRestoreResult;
      expect(result).toMatchObject({ status: 'succeeded', restored: 1, failed: 0 });
    } finally {
      await close();
    }
    expect(await liveRows(3)).toEqual({ tenants: 1, projects: 3, active: true, fired: 0 });
  });

  it('checks a config that did not come through the CLI in the worker, before anything is written', async () => {
    const restoreId = uniqueName('cfg-direct').replace(/_/g, '-');
    const { input, taskQueue: queue } = buildStartRequest({
      scratch: source.url,
      live: live.url,
      'tenant-root': 'app.tenants',
      tenants: uuidOf(4),
      id: restoreId,
      artifacts,
      'task-queue': taskQueue,
    });
    input.config = {
      actions: [
        {
          name: 'billing',
          type: 'sql',
          sql: 'UPDATE app.billing SET active = true WHERE tenant_id = $1::uuid',
          requiresApproval: 'false' as unknown as boolean,
        },
      ],
    };
    const { client, close } = await temporalClient();
    try {
      const handle = await client.workflow.start('bulkRestore', {
        taskQueue: queue,
        workflowId: bulkWorkflowId(restoreId),
        args: [input],
      });
      const error = await handle.result().then(
        () => undefined,
        (e: Error & { cause?: { message?: string } }) => e,
      );
      expect(error?.cause?.message).toMatch(
        /the restore config is not a valid restore config:\n {2}- actions\[0\]\.requiresApproval: must be true or false/,
      );
    } finally {
      await close();
    }
    expect(await liveRows(4)).toMatchObject({ tenants: 0, projects: 0, active: null });
  });

  it('does not follow a redirect of a webhook that carries a secret header, and says where it pointed', async () => {
    const received: Array<{ url?: string; apiKey?: string }> = [];
    const elsewhere = createServer((req, res) => {
      received.push({ url: req.url, apiKey: req.headers['x-api-key'] as string | undefined });
      res.writeHead(200).end('{}');
    });
    servers.push(elsewhere);
    await new Promise<void>((resolve) => elsewhere.listen(0, '127.0.0.1', resolve));
    const elsewherePort = (elsewhere.address() as AddressInfo).port;
    const redirecting = createServer((req, res) => {
      req.resume();
      // 307 keeps the method and the body: a client that followed it would send the POST, headers and all, there.
      res.writeHead(307, { location: `http://127.0.0.1:${elsewherePort}/elsewhere?token=from-the-server` }).end();
    });
    servers.push(redirecting);
    await new Promise<void>((resolve) => redirecting.listen(0, '127.0.0.1', resolve));
    const restoreId = uniqueName('hook-redirect').replace(/_/g, '-');
    const config = join(tmpdir(), `${restoreId}.json`);
    writeFileSync(
      config,
      JSON.stringify({
        actions: [
          {
            name: 'notify',
            type: 'webhook',
            url: `http://127.0.0.1:${(redirecting.address() as AddressInfo).port}/hooks`,
            headers: { 'X-Api-Key': 'env:TENANT_RESTORE_WEBHOOK_SAFETY_TEST_KEY' },
          },
        ],
      }),
    );
    process.env.TENANT_RESTORE_WEBHOOK_SAFETY_TEST_KEY = 'k-secret-value-from-worker-env';
    try {
      const run = await start(restoreId, uuidOf(5).toUpperCase(), ['--config', config, '--group-size', '1', '--wait']);
      expect(run.code, run.stderr).toBe(1);
      const out = JSON.parse(run.stdout) as { tenants: Array<{ tenantId: string; status: string; error?: string }> };
      expect(out.tenants).toHaveLength(1);
      expect(out.tenants[0]).toMatchObject({ tenantId: uuidOf(5), status: 'failed' });
      expect(out.tenants[0]!.error).toContain(
        `Webhook notify answered HTTP 307, a redirect to http://127.0.0.1:${elsewherePort}/elsewhere (query left out); webhooks do not follow redirects`,
      );
      expect(run.stdout + run.stderr).not.toContain('k-secret-value-from-worker-env');
      expect(run.stdout + run.stderr).not.toContain('from-the-server');
      expect(received).toEqual([]);
    } finally {
      delete process.env.TENANT_RESTORE_WEBHOOK_SAFETY_TEST_KEY;
    }
  });

  it('leaves FK checks to PostgreSQL when the worker says TENANT_RESTORE_FK_CHECKS=postgres, though the role may suspend them', async () => {
    const restoreId = uniqueName('fk-postgres').replace(/_/g, '-');
    const run = await start(restoreId, `${uuidOf(6)},${uuidOf(7)}`, ['--wait'], postgresChecksQueue);
    expect(run.code, run.stderr + run.stdout).toBe(0);
    expect(run.stdout + run.stderr).not.toContain(password);
    const plan = await planOf(restoreId);
    expect(plan.fkEnforcement).toBe('constraints');
    expect(plan.warnings).toContain(
      'app.projects: user triggers (log_project) will fire on restored rows, because FK checks are left to postgres (TENANT_RESTORE_FK_CHECKS=postgres)',
    );
    // The user trigger fired for each restored project, in an ordinary session (no replica role anywhere).
    expect(await liveRows(6)).toEqual({ tenants: 1, projects: 3, active: false, fired: 3 });
    expect(await liveRows(7)).toEqual({ tenants: 1, projects: 3, active: false, fired: 3 });
    const roles = await withClient(live.url, (c) =>
      c.query<{ replication_role: string }>('SELECT DISTINCT replication_role FROM audit.trigger_log'),
    );
    expect(roles.rows).toEqual([{ replication_role: 'origin' }]);
  });

  it('grants.sql with -v fk_checks=postgres gives the role no SET on session_replication_role, and the plan does without', async () => {
    const role = uniqueName('tr_safety_fk');
    const rolePassword = newPassword();
    const grants = (extra: string[]) => applyGrants(live.name, role, rolePassword, 'app', extra);
    const canSet = async () =>
      (await adminQuery("SELECT has_parameter_privilege($1, 'session_replication_role', 'SET') AS ok", [role])).rows[0]
        .ok as boolean;
    const planAsRole = async () => {
      const rolePools = new Pools();
      try {
        return (
          await buildPlan({
            scratch: rolePools.get(source.url),
            live: rolePools.get(roleUrlWithPassword(role, rolePassword, live.name)),
            tenantRoot: 'app.tenants',
          })
        ).fkEnforcement;
      } finally {
        await rolePools.closeAll();
      }
    };
    try {
      expect(await grants(['-v', 'fk_checks=postgres'])).toEqual({ code: 0, output: '' });
      expect(await canSet()).toBe(false);
      expect(await planAsRole()).toBe('constraints');
      // The default grants it; fk_checks=postgres again takes it back.
      expect(await grants([])).toEqual({ code: 0, output: '' });
      expect(await canSet()).toBe(true);
      expect(await planAsRole()).toBe('replica');
      expect(await grants(['-v', 'fk_checks=postgres'])).toEqual({ code: 0, output: '' });
      expect(await canSet()).toBe(false);
      const bad = await grants(['-v', 'fk_checks=off']);
      expect(bad.code).not.toBe(0);
      expect(bad.output).toContain('fk_checks must be engine or postgres, not off');
    } finally {
      await dropRoles([role]);
    }
  });
});
