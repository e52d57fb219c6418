/**
 * Every named error of the engine, triggered against real databases; each time, live is checked to be exactly what it
 * was before the call (every table's fingerprint), so "nothing was written" is observed.
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../activities/config';
import { copyTenant } from '../../activities/copy';
import { Pools } from '../../activities/db';
import {
  ConflictPolicyError,
  CrossTenantConflictError,
  DanglingReferenceError,
  InvalidCheckpointError,
  InvalidConfigError,
  InvalidTenantRootError,
  MissingPrimaryKeyError,
  nonRetryableErrorTypes,
  PlanMismatchError,
  SchemaDriftError,
  TenantNotInBackupError,
  UnbreakableCycleError,
} from '../../activities/errors';
import { buildPlan, type Plan } from '../../activities/plan';
import { preflightTenant } from '../../activities/preflight';
import { fingerprints, psqlFile, query, userTables, withClient } from '../helpers/engine';
import { adminQuery, serverUrl, useFreshDatabases, useStackEnv } from '../helpers/stack';
import { deleteTenantsSql } from '../helpers/issue-tracker';

useStackEnv();
const { fresh } = useFreshDatabases();

describe('named errors leave live untouched', () => {
  const pools = new Pools();
  let source: { name: string; url: string };
  let scratchUrl: string;
  let plan: Plan;
  const roles: string[] = [];

  beforeAll(async () => {
    source = await fresh('err_src');
    psqlFile(source.url, join(__dirname, '..', 'fixtures', 'issue-tracker.sql'));
    scratchUrl = (await fresh('err_scratch', source.name)).url;
  });
  afterAll(async () => {
    await pools.closeAll();
    for (const r of roles) await adminQuery(`DROP OWNED BY ${r}; DROP ROLE ${r}`).catch(() => undefined);
  });

  /** A live database cloned from the fixture, with `setup` applied (the state before the call under test). */
  async function live(prefix: string, setup: string): Promise<string> {
    const { url } = await fresh(prefix, source.name);
    await query(url, setup);
    return url;
  }

  /** Runs `call`, expects `type`, and checks every table of live is unchanged. */
  async function expectUntouched(
    liveUrl: string,
    call: () => Promise<unknown>,
    type: new (...args: never[]) => Error,
  ): Promise<Error> {
    const tables = await userTables(liveUrl);
    const before = await fingerprints(liveUrl, tables);
    const error = await call().then(
      () => null,
      (e: Error) => e,
    );
    expect(error).toBeInstanceOf(type);
    expect(nonRetryableErrorTypes).toContain(error!.name);
    expect(await fingerprints(liveUrl, tables)).toEqual(before);
    return error!;
  }

  const planFor = (liveUrl: string) =>
    buildPlan({ scratch: pools.get(scratchUrl), live: pools.get(liveUrl), tenantRoot: 'app.tenants' });

  it('TenantNotInBackupError: the tenant has no root row in the backup', async () => {
    const liveUrl = await live('err_missing', deleteTenantsSql([5]));
    plan = await planFor(liveUrl);
    const e = await expectUntouched(
      liveUrl,
      () =>
        copyTenant({
          scratch: pools.get(scratchUrl),
          live: pools.get(liveUrl),
          plan,
          tenantIds: ['5', '999'],
          conflict: 'skip',
        }),
      TenantNotInBackupError,
    );
    expect(e.message).toContain('999');
    expect(e.message).not.toContain('5,');
    await expectUntouched(
      liveUrl,
      () =>
        preflightTenant({
          scratch: pools.get(scratchUrl),
          live: pools.get(liveUrl),
          plan,
          tenantId: '999',
          conflict: 'skip',
        }),
      TenantNotInBackupError,
    );
  });

  it('CrossTenantConflictError: another tenant now holds a unique key (email) of the tenant, under every policy', async () => {
    const liveUrl = await live(
      'err_cross',
      `${deleteTenantsSql([5])} UPDATE app.users SET email = 'user2@tenant5.example' WHERE email = 'user2@tenant6.example'`,
    );
    for (const conflict of ['skip', 'overwrite', 'fail'] as const) {
      const e = await expectUntouched(
        liveUrl,
        () =>
          copyTenant({ scratch: pools.get(scratchUrl), live: pools.get(liveUrl), plan, tenantIds: ['5'], conflict }),
        CrossTenantConflictError,
      );
      expect(e.message).toContain('app.users');
      await expectUntouched(
        liveUrl,
        () =>
          preflightTenant({ scratch: pools.get(scratchUrl), live: pools.get(liveUrl), plan, tenantId: '5', conflict }),
        CrossTenantConflictError,
      );
    }
  });

  it('CrossTenantConflictError: a key of the tenant is held by a tenant inside the same restore batch', async () => {
    // Tenant 5's label row (5, 1) is gone; tenant 6 was deleted too. A row of tenant 5 in live now carries tenant 6's
    // identity: restoring 5 alone must not overwrite it, even though 6 is also being restored later.
    const liveUrl = await live(
      'err_cross_batch',
      `${deleteTenantsSql([5, 6])}
      INSERT INTO app.plans SELECT 4, 'legacy', 500 WHERE NOT EXISTS (SELECT 1 FROM app.plans WHERE id = 4);
      INSERT INTO app.tenants VALUES (6, 'tenant 6', 1, md5('user-6-1')::uuid, '{}', '2024-01-07Z');
      INSERT INTO app.users VALUES (md5('user-6-1')::uuid, 6, 'user1@tenant6.example', NULL), (md5('user-5-1')::uuid, 6, 'stolen@tenant6.example', NULL);`,
    );
    const e = await expectUntouched(
      liveUrl,
      () =>
        preflightTenant({
          scratch: pools.get(scratchUrl),
          live: pools.get(liveUrl),
          plan,
          tenantId: '5',
          conflict: 'overwrite',
        }),
      CrossTenantConflictError,
    );
    expect(e.message).toContain('app.users');
    await expectUntouched(
      liveUrl,
      () =>
        copyTenant({
          scratch: pools.get(scratchUrl),
          live: pools.get(liveUrl),
          plan,
          tenantIds: ['5'],
          conflict: 'overwrite',
        }),
      CrossTenantConflictError,
    );
  });

  it('ConflictPolicyError: policy fail meets a row of the same tenant with other content', async () => {
    const liveUrl = await live('err_policy', `UPDATE app.labels SET name = 'renamed' WHERE tenant_id = 7 AND id = 2`);
    // Tenant 7's root row is in live: preflight reports it present (the workflow refuses it, TenantPresentError) rather
    // than a policy conflict whose advice (switch policies) would restore a tenant that was never deleted.
    const tables = await userTables(liveUrl);
    const before = await fingerprints(liveUrl, tables);
    const pre = await preflightTenant({
      scratch: pools.get(scratchUrl),
      live: pools.get(liveUrl),
      plan,
      tenantId: '7',
      conflict: 'fail',
    });
    expect(pre.tenants?.['7']?.state).toBe('present');
    expect(await fingerprints(liveUrl, tables)).toEqual(before);
    // The engine's copy itself still enforces the policy, inside its transaction.
    const e = await expectUntouched(
      liveUrl,
      () =>
        copyTenant({
          scratch: pools.get(scratchUrl),
          live: pools.get(liveUrl),
          plan,
          tenantIds: ['7'],
          conflict: 'fail',
        }),
      ConflictPolicyError,
    );
    expect(e.message).toContain('app.labels');
    // The same state under skip is no error, and keeps live's row.
    const skipped = await copyTenant({
      scratch: pools.get(scratchUrl),
      live: pools.get(liveUrl),
      plan,
      tenantIds: ['7'],
      conflict: 'skip',
    });
    expect(skipped.skipped['app.labels']).toBe(1);
    expect(Object.values(skipped.rows).every((n) => n === 0)).toBe(true);
  });

  it('DanglingReferenceError: a restored row references a parent that is nowhere', async () => {
    const liveUrl = await live('err_dangling', deleteTenantsSql([5]));
    const brokenScratch = await fresh('err_scratch_broken', source.name);
    await withClient(brokenScratch.url, async (c) => {
      await c.query('SET session_replication_role = replica');
      await c.query(
        `UPDATE app.issues SET reporter_id = '00000000-0000-0000-0000-00000000dead' WHERE id = (SELECT min(i.id) FROM app.issues i JOIN app.projects p ON p.id = i.project_id WHERE p.tenant_id = 5)`,
      );
    });
    const e = await expectUntouched(
      liveUrl,
      () =>
        copyTenant({
          scratch: pools.get(brokenScratch.url),
          live: pools.get(liveUrl),
          plan,
          tenantIds: ['5'],
          conflict: 'fail',
        }),
      DanglingReferenceError,
    );
    expect(e.message).toContain('issues_reporter_id_fkey');
  });

  it('PlanMismatchError and InvalidCheckpointError: an altered plan, a checkpoint that does not fit', async () => {
    const liveUrl = await live('err_plan', deleteTenantsSql([5]));
    const altered: Plan = {
      ...plan,
      tables: plan.tables.map((t) => (t.key === 'app.users' ? { ...t, paths: [] } : t)),
    };
    await expectUntouched(
      liveUrl,
      () =>
        copyTenant({
          scratch: pools.get(scratchUrl),
          live: pools.get(liveUrl),
          plan: altered,
          tenantIds: ['5'],
          conflict: 'skip',
        }),
      PlanMismatchError,
    );
    await expectUntouched(
      liveUrl,
      () =>
        copyTenant({
          scratch: pools.get(scratchUrl),
          live: pools.get(liveUrl),
          plan,
          tenantIds: ['5'],
          conflict: 'skip',
          chunkRows: 10,
          resumeFrom: { tableIndex: 99, rows: {} },
        }),
      InvalidCheckpointError,
    );
  });

  it('SchemaDriftError: a type without a cast, and a NOT NULL column only in live without default', async () => {
    const retyped = await live('err_drift_type', `ALTER TABLE app.labels ALTER COLUMN name TYPE integer USING 0`);
    const e = await expectUntouched(retyped, () => planFor(retyped), SchemaDriftError);
    expect(e.message).toContain('app.labels.name');
    const added = await live(
      'err_drift_col',
      `ALTER TABLE app.users ADD COLUMN locale text NOT NULL DEFAULT 'en'; ALTER TABLE app.users ALTER COLUMN locale DROP DEFAULT`,
    );
    expect((await expectUntouched(added, () => planFor(added), SchemaDriftError)).message).toContain(
      'app.users.locale',
    );
    // A column only in live with a default, and one only in the backup, are drift but no error.
    const ok = await live(
      'err_drift_ok',
      `ALTER TABLE app.users ADD COLUMN locale text NOT NULL DEFAULT 'en'; ALTER TABLE app.users DROP COLUMN profile`,
    );
    const p = await planFor(ok);
    expect(p.drift.tables).toEqual([{ table: 'app.users', defaulted: ['locale'], dropped: ['profile'], retyped: [] }]);
  });

  it('InvalidTenantRootError and MissingPrimaryKeyError', async () => {
    const liveUrl = await live('err_root', 'SELECT 1');
    await expectUntouched(
      liveUrl,
      () => buildPlan({ scratch: pools.get(scratchUrl), live: pools.get(liveUrl), tenantRoot: 'app.nope' }),
      InvalidTenantRootError,
    );
    await expectUntouched(
      liveUrl,
      () => buildPlan({ scratch: pools.get(scratchUrl), live: pools.get(liveUrl), tenantRoot: 'app.labels' }),
      InvalidTenantRootError,
    );
    const noPk = await live('err_nopk', `ALTER TABLE app.attachments DROP CONSTRAINT attachments_pkey`);
    const e = await expectUntouched(noPk, () => planFor(noPk), MissingPrimaryKeyError);
    expect(e.message).toContain('app.attachments');
  });

  it('InvalidConfigError: bad JSON, bad fields, a logical FK that names a missing column', async () => {
    expect(() => parseConfig('{')).toThrow(InvalidConfigError);
    const bad = (() => {
      try {
        parseConfig('{"chunkRows": -1, "excludeTables": ["nodot"], "surprise": 1}');
        return null;
      } catch (error) {
        return error as Error;
      }
    })();
    expect(bad).toBeInstanceOf(InvalidConfigError);
    for (const field of ['chunkRows', 'excludeTables[0]', 'surprise']) expect(bad!.message).toContain(field);
    const liveUrl = await live('err_config', 'SELECT 1');
    const config = parseConfig(
      JSON.stringify({
        logicalForeignKeys: [
          { from: 'app.attachments', columns: ['nope'], to: 'app.comments', referencedColumns: ['id'] },
        ],
      }),
    );
    const e = await expectUntouched(
      liveUrl,
      () => buildPlan({ scratch: pools.get(scratchUrl), live: pools.get(liveUrl), tenantRoot: 'app.tenants', config }),
      InvalidConfigError,
    );
    expect(e.message).toContain('app.attachments has no column nope');
  });

  it('UnbreakableCycleError: a NOT NULL, non-deferrable cycle, and a role that may not suspend FK checks', async () => {
    const cycleSql = `CREATE TABLE t_root (id int PRIMARY KEY);
      CREATE TABLE a (id int PRIMARY KEY, root_id int NOT NULL REFERENCES t_root, b_id int NOT NULL);
      CREATE TABLE b (id int PRIMARY KEY, a_id int NOT NULL REFERENCES a);
      ALTER TABLE a ADD CONSTRAINT a_b_fk FOREIGN KEY (b_id) REFERENCES b;`;
    const scratch = await fresh('err_cycle_scratch');
    const liveDb = await fresh('err_cycle_live');
    await query(scratch.url, cycleSql);
    await query(liveDb.url, cycleSql);
    const role = `tr_limited_${randomBytes(4).toString('hex')}`;
    const password = randomBytes(12).toString('hex');
    roles.push(role);
    await adminQuery(`CREATE ROLE ${role} LOGIN PASSWORD '${password}'`);
    const limited = new URL(serverUrl(liveDb.name));
    limited.username = role;
    limited.password = password;
    // With the privilege (superuser), the cycle is handled by the orphan scan.
    const ok = await buildPlan({
      scratch: pools.get(scratch.url),
      live: pools.get(liveDb.url),
      tenantRoot: 'public.t_root',
    });
    expect(ok.cycles[0]!.edges.map((e) => e.strategy)).toEqual(['unchecked', 'unchecked']);
    const e = await expectUntouched(
      liveDb.url,
      () =>
        buildPlan({
          scratch: pools.get(scratch.url),
          live: pools.get(limited.toString()),
          tenantRoot: 'public.t_root',
        }),
      UnbreakableCycleError,
    );
    expect(e.message).toContain('public.a <-> public.b');
    expect(e.message).toContain('a_b_fk');
  });
});
