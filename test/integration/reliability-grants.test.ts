/**
 * Least privilege (issue 7, part 4): scripts/grants.sql, applied with psql the way its header says, gives a role that
 * can do everything a restore needs (the real engine restores tenants with it, FK checks suspended in its own
 * transactions only) and nothing destructive: no DELETE, no TRUNCATE, no DDL, no trigger switching, no other role.
 * The scratch role is separate: CREATEDB on the scratch server, and it cannot even connect to live.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { copyTenant } from '../../activities/copy';
import { buildPlan, type Plan } from '../../activities/plan';
import { preflightTenant } from '../../activities/preflight';
import { validateTenant } from '../../activities/validate';
import { diffChecksums, tenantChecksums } from '../../scripts/workload/checksums';
import { generateWorkload } from '../../scripts/workload/generate';
import { pickVictims, purgeTenants } from '../../scripts/workload/incident';
import {
  applyGrants,
  auditEvents,
  createScratchRole,
  dropRoles,
  installDeleteAudit,
  newPassword,
  roleUrlWithPassword,
} from '../helpers/audit';
import { adminQuery, uniqueName, useFreshDatabases, useStackEnv, withClient } from '../helpers/stack';

useStackEnv();
const { fresh } = useFreshDatabases();

const restoreRole = uniqueName('tr_rel_restore');
const scratchRole = uniqueName('tr_rel_scratch');
const restorePassword = newPassword();
const scratchPassword = newPassword();

/** The SQLSTATE a statement fails with (or 'ok'), run in its own transaction that is always rolled back. */
async function sqlState(url: string, sql: string): Promise<string> {
  return withClient(url, async (c) => {
    await c.query('BEGIN');
    try {
      await c.query(sql);
      return 'ok';
    } catch (error) {
      return (error as { code?: string }).code ?? 'error';
    } finally {
      await c.query('ROLLBACK').catch(() => undefined);
    }
  });
}

describe('scripts/grants.sql', () => {
  let live: { name: string; url: string };
  let scratch: { name: string; url: string };
  let victims: string[];
  let restoreUrl: string;

  beforeAll(async () => {
    live = await fresh('rel_grants_live');
    const generated = await generateWorkload(live.url, { tenants: 12, rowsTarget: 4_000, seed: 21 });
    // The backup, as a database: an exact copy of live before the incident.
    scratch = await fresh('rel_grants_scratch', live.name);
    victims = pickVictims(
      generated.tenantIds,
      3,
      21,
      generated.largestTenants.map((t) => t.tenantId),
    );
    await purgeTenants(live.url, victims);
    restoreUrl = roleUrlWithPassword(restoreRole, restorePassword, live.name);
  });

  afterAll(async () => {
    await dropRoles([restoreRole, scratchRole]);
  });

  it('applies with psql, and applies again (idempotent)', async () => {
    const first = await applyGrants(live.name, restoreRole, restorePassword);
    expect(first.output).toBe('');
    expect(first.code).toBe(0);
    const again = await applyGrants(live.name, restoreRole, restorePassword);
    expect(again.code).toBe(0);
    // The password never reaches psql's output.
    expect(first.output + again.output).not.toContain(restorePassword);
    const [role] = (
      await adminQuery(
        'SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls, rolcanlogin FROM pg_roles WHERE rolname = $1',
        [restoreRole],
      )
    ).rows;
    expect(role).toEqual({
      rolsuper: false,
      rolcreatedb: false,
      rolcreaterole: false,
      rolreplication: false,
      rolbypassrls: false,
      rolcanlogin: true,
    });
  });

  it('refuses everything destructive or beyond a restore', async () => {
    const denied = {
      delete: await sqlState(restoreUrl, 'DELETE FROM app.attachments WHERE false'),
      deleteRoot: await sqlState(restoreUrl, 'DELETE FROM app.tenants'),
      truncate: await sqlState(restoreUrl, 'TRUNCATE app.issue_labels'),
      truncateShared: await sqlState(restoreUrl, 'TRUNCATE app.plans CASCADE'),
      createTable: await sqlState(restoreUrl, 'CREATE TABLE app.evil (id int)'),
      dropTable: await sqlState(restoreUrl, 'DROP TABLE app.labels'),
      alterTable: await sqlState(restoreUrl, 'ALTER TABLE app.users ADD COLUMN evil int'),
      disableTriggers: await sqlState(restoreUrl, 'ALTER TABLE app.issues DISABLE TRIGGER ALL'),
      setRole: await sqlState(restoreUrl, 'SET ROLE postgres'),
      createRole: await sqlState(restoreUrl, 'CREATE ROLE evil'),
    };
    // CREATE DATABASE cannot run in a transaction block: checked on its own.
    const outside = (sql: string) =>
      withClient(restoreUrl, (c) =>
        c.query(sql).then(
          () => 'ok',
          (e: { code?: string }) => e.code ?? 'error',
        ),
      );
    const createDatabase = await outside('CREATE DATABASE tr_rel_evil');
    // The replica role is granted for SET (LOCAL) in the role's own sessions, never server-wide.
    const sessionReplicationRoleGlobal = await outside('ALTER SYSTEM SET session_replication_role = replica');
    expect({ ...denied, createDatabase, sessionReplicationRoleGlobal }).toEqual({
      delete: '42501',
      deleteRoot: '42501',
      truncate: '42501',
      truncateShared: '42501',
      createTable: '42501',
      dropTable: '42501',
      alterTable: '42501',
      disableTriggers: '42501',
      createDatabase: '42501',
      setRole: '42501',
      sessionReplicationRoleGlobal: '42501',
      createRole: '42501',
    });
  });

  it('allows what a restore needs: read, insert, update, sequences, temp staging, replica role in its own transaction, key-share locks', async () => {
    const allowed = {
      select: await sqlState(restoreUrl, 'SELECT count(*) FROM app.comments'),
      catalog: await sqlState(restoreUrl, "SELECT conname FROM pg_constraint WHERE connamespace = 'app'::regnamespace"),
      insert: await sqlState(
        restoreUrl,
        "INSERT INTO app.labels (tenant_id, name, color) SELECT id, 'x', '#000000' FROM app.tenants LIMIT 1",
      ),
      insertIdentityAlways: await sqlState(
        restoreUrl,
        "INSERT INTO app.comments (id, issue_id, author_id, body) OVERRIDING SYSTEM VALUE SELECT 999999999, id, reporter_id, 'x' FROM app.issues LIMIT 1",
      ),
      update: await sqlState(
        restoreUrl,
        'UPDATE app.billing_accounts SET active = true WHERE tenant_id = (SELECT min(id) FROM app.tenants)',
      ),
      upsert: await sqlState(
        restoreUrl,
        "INSERT INTO app.plans (id, code, name, monthly_price_cents) VALUES (1, 'free', 'Free', 0) ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name",
      ),
      setval: await sqlState(
        restoreUrl,
        "SELECT setval(pg_get_serial_sequence('app.issues', 'id'), (SELECT max(id) FROM app.issues) + 10)",
      ),
      tempTable: await sqlState(
        restoreUrl,
        'CREATE TEMP TABLE tr_stage ON COMMIT DROP AS SELECT * FROM app.issues WITH NO DATA',
      ),
      replicaLocal: await sqlState(restoreUrl, 'SET LOCAL session_replication_role = replica'),
      keyShare: await sqlState(restoreUrl, 'SELECT id FROM app.tenants LIMIT 3 FOR KEY SHARE'),
      keyShareShared: await sqlState(restoreUrl, 'SELECT code FROM app.countries LIMIT 3 FOR KEY SHARE'),
    };
    expect(allowed).toEqual(Object.fromEntries(Object.keys(allowed).map((k) => [k, 'ok'])));
  });

  it('is enough for the real engine: the victims come back equal to the backup, FK checks suspended only in its transactions, and no DELETE or TRUNCATE is issued', async () => {
    const audited = await installDeleteAudit(live.url);
    expect(audited).toBe(13);
    // The audit sees through session_replication_role = replica (the control: a superuser DELETE of no row).
    await withClient(live.url, async (c) => {
      await c.query('BEGIN; SET LOCAL session_replication_role = replica');
      await c.query('DELETE FROM app.attachments WHERE false');
      await c.query('COMMIT');
    });
    const control = await auditEvents(live.url);
    expect(control.map((e) => [e.op, e.tbl, e.current_user, e.replication_role])).toEqual([
      ['DELETE', 'app.attachments', 'postgres', 'replica'],
    ]);

    const expected = await tenantChecksums(scratch.url, victims);
    const livePool = new pg.Pool({ connectionString: restoreUrl, max: 3, application_name: 'tenant-restore' });
    const scratchPool = new pg.Pool({ connectionString: scratch.url, max: 3 });
    try {
      const plan: Plan = await buildPlan({ scratch: scratchPool, live: livePool, tenantRoot: 'app.tenants' });
      // grants.sql's SET ON PARAMETER is what lets the engine suspend FK and user triggers in its own transaction.
      expect(plan.fkEnforcement).toBe('replica');
      for (const tenantId of victims) {
        const pre = await preflightTenant({ scratch: scratchPool, live: livePool, plan, tenantId, conflict: 'skip' });
        expect(pre.liveState).toBe('absent');
        const copied = await copyTenant({
          scratch: scratchPool,
          live: livePool,
          plan,
          tenantIds: [tenantId],
          conflict: 'skip',
        });
        expect(copied.rows['app.tenants']).toBe(1);
        const validation = await validateTenant({
          scratch: scratchPool,
          live: livePool,
          plan,
          tenantId,
          conflict: 'skip',
        });
        expect(validation.ok, JSON.stringify(validation)).toBe(true);
      }
    } finally {
      await livePool.end();
      await scratchPool.end();
    }
    expect(diffChecksums(expected, await tenantChecksums(live.url, victims))).toEqual([]);
    const events = await auditEvents(live.url);
    expect(
      events.filter(
        (e) => e.current_user === restoreRole || e.session_user === restoreRole || e.app.startsWith('tenant-restore'),
      ),
    ).toEqual([]);
    expect(events).toHaveLength(1);
  });

  it('chunked copies work with the same grants', async () => {
    const victim = victims[0]!;
    // A second database pair, so that this copy starts from nothing again.
    const live2 = await fresh('rel_grants_live2', scratch.name);
    await purgeTenants(live2.url, [victim]);
    expect((await applyGrants(live2.name, restoreRole, restorePassword)).code).toBe(0);
    const url2 = roleUrlWithPassword(restoreRole, restorePassword, live2.name);
    const livePool = new pg.Pool({ connectionString: url2, max: 3 });
    const scratchPool = new pg.Pool({ connectionString: scratch.url, max: 3 });
    try {
      const plan = await buildPlan({ scratch: scratchPool, live: livePool, tenantRoot: 'app.tenants' });
      const checkpoints: unknown[] = [];
      const copied = await copyTenant({
        scratch: scratchPool,
        live: livePool,
        plan,
        tenantIds: [victim],
        conflict: 'skip',
        chunkRows: 7,
        onCheckpoint: (c) => void checkpoints.push(c),
      });
      expect(copied.chunked).toBe(true);
      expect(checkpoints.length).toBeGreaterThan(plan.tables.length);
    } finally {
      await livePool.end();
      await scratchPool.end();
    }
    expect(
      diffChecksums(await tenantChecksums(scratch.url, [victim]), await tenantChecksums(live2.url, [victim])),
    ).toEqual([]);
  });

  it('keeps the scratch role apart: CREATEDB on the scratch server, no way into live', async () => {
    await createScratchRole(scratchRole, scratchPassword, [live.name]);
    const onServer = roleUrlWithPassword(scratchRole, scratchPassword, 'postgres');
    const db = uniqueName('tr_rel_scratchdb');
    await withClient(onServer, (c) => c.query(`CREATE DATABASE ${pg.escapeIdentifier(db)}`));
    await withClient(onServer, (c) => c.query(`DROP DATABASE ${pg.escapeIdentifier(db)}`));
    const intoLive = await withClient(
      roleUrlWithPassword(scratchRole, scratchPassword, live.name),
      async () => 'ok',
    ).catch((e: { code?: string }) => e.code);
    expect(intoLive).toBe('42501');
    // The restore role still connects: grants.sql grants CONNECT itself rather than relying on PUBLIC.
    expect(await sqlState(restoreUrl, 'SELECT 1')).toBe('ok');
    const [flags] = (await adminQuery('SELECT rolsuper, rolcreatedb FROM pg_roles WHERE rolname = $1', [scratchRole]))
      .rows;
    expect(flags).toEqual({ rolsuper: false, rolcreatedb: true });
  });
});
