/**
 * Issue 11, item 2: no orphan is ever committed, and keys are keys however they are declared.
 * - FKs to tables outside the plan (excluded by the config) are checked before COMMIT; an exclusion that leaves
 *   restored rows pointing at tenant rows that are gone is refused at plan time.
 * - A chunked copy that fails in a later chunk leaves no committed row pointing at nothing, says what it committed,
 *   and a rerun converges.
 * - Partial and expression unique indexes count for the cross-tenant guard under skip and overwrite.
 * - A DEFERRABLE primary key or unique constraint is refused at plan time (ON CONFLICT cannot use it).
 * Orphans are counted independently of the engine: every FK of live's catalog, every row.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../activities/config';
import { copyTenant } from '../../activities/copy';
import { Pools } from '../../activities/db';
import {
  CrossTenantConflictError,
  DanglingReferenceError,
  DeferrableUniqueKeyError,
  ExcludedParentError,
  nonRetryableErrorTypes,
} from '../../activities/errors';
import { buildPlan, chunkUnits, describePlan, renderContext, type Plan, type PlanTable } from '../../activities/plan';
import { ownedPredicate } from '../../activities/plan/ownership';
import { validateTenant } from '../../activities/validate';
import type { CopyCheckpoint } from '../../activities/restore-types';
import { fingerprints, psqlFile, query, userTables } from '../helpers/engine';
import { deleteTenantsSql, tenantFilter, tenantTables } from '../helpers/issue-tracker';
import { useFreshDatabases, useStackEnv } from '../helpers/stack';

useStackEnv();
const { fresh } = useFreshDatabases();

/** Rows whose FK (any constraint of the catalog, MATCH SIMPLE) references no row, per constraint. */
async function orphans(url: string): Promise<Record<string, number>> {
  const fks = await query<{ name: string; child: string; parent: string; cols: string[]; refs: string[] }>(
    url,
    `
    SELECT c.conname AS name, c.conrelid::regclass::text AS child, c.confrelid::regclass::text AS parent,
           ARRAY(SELECT quote_ident(a.attname) FROM unnest(c.conkey) WITH ORDINALITY k(n, o) JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.o) AS cols,
           ARRAY(SELECT quote_ident(a.attname) FROM unnest(c.confkey) WITH ORDINALITY k(n, o) JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n ORDER BY k.o) AS refs
    FROM pg_constraint c WHERE c.contype = 'f' ORDER BY 1`,
  );
  const out: Record<string, number> = {};
  for (const fk of fks) {
    const [{ n }] = (await query<{ n: string }>(
      url,
      `SELECT count(*) AS n FROM ${fk.child} t WHERE ${fk.cols.map((c) => `t.${c} IS NOT NULL`).join(' AND ')}
      AND NOT EXISTS (SELECT 1 FROM ${fk.parent} p WHERE ${fk.cols.map((c, i) => `p.${fk.refs[i]} = t.${c}`).join(' AND ')})`,
    )) as [{ n: string }];
    if (Number(n) > 0) out[fk.name] = Number(n);
  }
  return out;
}

describe('foreign keys: no orphan is ever committed', () => {
  const pools = new Pools();
  let source: { name: string; url: string };
  let scratchUrl: string;

  beforeAll(async () => {
    source = await fresh('sfk_src');
    psqlFile(source.url, join(__dirname, '..', 'fixtures', 'issue-tracker.sql'));
    scratchUrl = (await fresh('sfk_scratch', source.name)).url;
  });
  afterAll(() => pools.closeAll());

  async function live(prefix: string, setup: string): Promise<string> {
    const { url } = await fresh(prefix, source.name);
    await query(url, setup);
    return url;
  }

  async function failure(call: () => Promise<unknown>): Promise<Error> {
    const error = await call().then(
      () => null,
      (e: Error) => e,
    );
    expect(error).toBeInstanceOf(Error);
    return error!;
  }

  it('an FK to an excluded table is checked before COMMIT: a missing parent stops the tenant, nothing committed', async () => {
    // Tenants 10 and 20 are on plan 4, which the incident deleted with them (no one else used it). With app.plans
    // excluded, the restore does not bring plan 4 back: tenants.plan_id of the restored row would point at nothing.
    const liveUrl = await live('sfk_excl', deleteTenantsSql([10, 20]));
    const config = parseConfig(JSON.stringify({ excludeTables: ['app.plans'] }));
    const plan = await buildPlan({
      scratch: pools.get(scratchUrl),
      live: pools.get(liveUrl),
      tenantRoot: 'app.tenants',
      config,
    });
    expect(plan.tables.map((t) => t.key)).not.toContain('app.plans');
    const fk = plan.tables.find((t) => t.key === 'app.tenants')!.foreignKeys.find((f) => f.to === 'app.plans')!;
    expect(fk).toMatchObject({ toSchema: 'app', toName: 'plans' });
    // The plan says who checks it.
    expect(plan.fkEnforcement).toBe('replica');
    const warning = plan.warnings.find((w) => w.includes('tenants_plan_id_fkey'));
    expect(warning).toContain('excluded by the config');
    expect(warning).toContain("engine's orphan scan before each COMMIT");
    expect(describePlan(plan)).toContain("all checked before COMMIT by the engine's orphan scan");

    const tables = await userTables(liveUrl);
    const before = await fingerprints(liveUrl, tables);
    const e = await failure(() =>
      copyTenant({
        scratch: pools.get(scratchUrl),
        live: pools.get(liveUrl),
        plan,
        tenantIds: ['10'],
        conflict: 'skip',
      }),
    );
    expect(e).toBeInstanceOf(DanglingReferenceError);
    expect(e.message).toContain('tenants_plan_id_fkey');
    expect(e.message).toContain('Nothing was committed');
    expect(await fingerprints(liveUrl, tables)).toEqual(before);
    expect(await orphans(liveUrl)).toEqual({});

    // A tenant whose plan is still in live (plan 3, used by others) restores under the same exclusion: the check is on
    // the parent row, not on the exclusion.
    const other = await live('sfk_excl_ok', deleteTenantsSql([5]));
    const p5 = await buildPlan({
      scratch: pools.get(scratchUrl),
      live: pools.get(other),
      tenantRoot: 'app.tenants',
      config,
    });
    const ok = await copyTenant({
      scratch: pools.get(scratchUrl),
      live: pools.get(other),
      plan: p5,
      tenantIds: ['5'],
      conflict: 'skip',
    });
    expect(ok.rows['app.tenants']).toBe(1);
    expect(await orphans(other)).toEqual({});

    // A table only in live (not in the backup, so not in the plan) that restored rows reference: checked the same way.
    const liveOnly = await live(
      'sfk_live_only',
      `${deleteTenantsSql([10, 20])}
      CREATE TABLE app.plan_limits (plan_id int PRIMARY KEY); INSERT INTO app.plan_limits VALUES (1), (2), (3);
      ALTER TABLE app.tenants ADD CONSTRAINT tenants_plan_limits_fk FOREIGN KEY (plan_id) REFERENCES app.plan_limits NOT VALID`,
    );
    const p10 = await buildPlan({
      scratch: pools.get(scratchUrl),
      live: pools.get(liveOnly),
      tenantRoot: 'app.tenants',
    });
    expect(p10.warnings.find((w) => w.includes('tenants_plan_limits_fk'))).toContain('not in the backup');
    const liveOnlyTables = await userTables(liveOnly);
    const untouched = await fingerprints(liveOnly, liveOnlyTables);
    const e2 = await failure(() =>
      copyTenant({
        scratch: pools.get(scratchUrl),
        live: pools.get(liveOnly),
        plan: p10,
        tenantIds: ['10'],
        conflict: 'skip',
      }),
    );
    expect(e2).toBeInstanceOf(DanglingReferenceError);
    expect(e2.message).toContain('tenants_plan_limits_fk');
    expect(await fingerprints(liveOnly, liveOnlyTables)).toEqual(untouched);
  });

  it('an exclusion that leaves restored rows pointing at tenant rows that are gone is refused at plan time, naming the constraint', async () => {
    const liveUrl = await live('sfk_excl_owned', deleteTenantsSql([5]));
    const config = parseConfig(JSON.stringify({ excludeTables: ['app.labels'] }));
    const e = await failure(() =>
      buildPlan({ scratch: pools.get(scratchUrl), live: pools.get(liveUrl), tenantRoot: 'app.tenants', config }),
    );
    expect(e).toBeInstanceOf(ExcludedParentError);
    expect(nonRetryableErrorTypes).toContain(e.name);
    expect(e.message).toContain('app.issue_labels.issue_labels_tenant_id_label_id_fkey');
    expect(e.message).toContain('app.labels is excluded by the config');
    expect(e.message).toContain('excludeTables');
    // Excluding the referencing table too is the way out the message gives.
    const both = parseConfig(JSON.stringify({ excludeTables: ['app.labels', 'app.issue_labels'] }));
    const plan = await buildPlan({
      scratch: pools.get(scratchUrl),
      live: pools.get(liveUrl),
      tenantRoot: 'app.tenants',
      config: both,
    });
    expect(plan.tables.map((t) => t.key)).not.toContain('app.issue_labels');
  });

  it.each(['engine', 'postgres'] as const)(
    'a chunked copy that fails in a later chunk commits no orphan, says what it committed, and a rerun converges (FK checks by %s)',
    async (fkChecks) => {
      // Tenant 15's comments reply to other comments (parent_id, a self-reference); chunks of 25 by uuid key put many
      // replies before their parents. Another tenant's comment sits on the key of tenant 15's 26th comment: the second
      // chunk of app.comments stops with CrossTenantConflictError after the first one committed.
      const squatter = `(SELECT id FROM (SELECT md5('comment-' || i || '-' || c)::uuid AS id FROM generate_series(841, 900) i, generate_series(1, 3) c) x ORDER BY id OFFSET 25 LIMIT 1)`;
      const liveUrl = await live(
        `sfk_chunk_${fkChecks}`,
        `${deleteTenantsSql([15])}
      INSERT INTO app.comments (id, issue_id, author_id, parent_id, body, created_at) VALUES (${squatter}, 901, md5('user-16-1')::uuid, NULL, 'squatter', '2024-05-01Z')`,
      );
      const plan = await buildPlan({
        scratch: pools.get(scratchUrl),
        live: pools.get(liveUrl),
        tenantRoot: 'app.tenants',
        fkChecks,
      });
      expect(plan.fkEnforcement).toBe(fkChecks === 'engine' ? 'replica' : 'constraints');
      const units = chunkUnits(plan);
      const comments = units.find((u) => plan.tables[u.start]!.key === 'app.comments')!;
      expect(comments).toMatchObject({ mode: 'chunks', deferred: { 'app.comments': ['parent_id'] } });
      // tenants.owner_id is NOT NULL and references users, later in the order: that cycle goes in one transaction.
      const tenants = units.find((u) => plan.tables.slice(u.start, u.end).some((t) => t.key === 'app.tenants'))!;
      expect(tenants.mode).toBe('one-transaction');
      expect(tenants.reason).toContain('tenants_owner_fk');

      const checkpoints: CopyCheckpoint[] = [];
      const e = await failure(() =>
        copyTenant({
          scratch: pools.get(scratchUrl),
          live: pools.get(liveUrl),
          plan,
          tenantIds: ['15'],
          conflict: 'skip',
          chunkRows: 25,
          onCheckpoint: (c) => void checkpoints.push(c),
        }),
      );
      expect(e).toBeInstanceOf(CrossTenantConflictError);
      expect(e.message).toContain('app.comments');
      // The invariant: no committed row points at nothing.
      expect(await orphans(liveUrl)).toEqual({});
      // Some chunks were committed: the message must not claim otherwise, and must say which.
      expect(checkpoints.length).toBeGreaterThan(0);
      const [{ n: committedComments }] = (await query<{ n: string }>(
        liveUrl,
        `SELECT count(*) AS n FROM app.comments WHERE issue_id BETWEEN 841 AND 900`,
      )) as [{ n: string }];
      expect(Number(committedComments)).toBe(25);
      expect(e.message).not.toMatch(/nothing was (written|committed)/i);
      expect(e.message).toMatch(/chunk\(s\) were committed before this failure/);
      expect(e.message).toContain('app.comments: 1');
      expect(e.message).toContain('app.comments(parent_id)');
      // A restore id is used once: the way on is a new restore, which finds the tenant partial (its root is committed).
      expect(e.message).toContain('--allow-partial');

      // The operator settles the conflicting key (the squatter was not tenant 16's to keep), and reruns from the checkpoint.
      await query(liveUrl, `UPDATE app.comments SET id = gen_random_uuid() WHERE body = 'squatter'`);
      const resumed = await copyTenant({
        scratch: pools.get(scratchUrl),
        live: pools.get(liveUrl),
        plan,
        tenantIds: ['15'],
        conflict: 'skip',
        chunkRows: 25,
        resumeFrom: checkpoints[checkpoints.length - 1],
      });
      expect(resumed.chunked).toBe(true);
      expect(await fingerprints(liveUrl, tenantTables, tenantFilter([15]))).toEqual(
        await fingerprints(scratchUrl, tenantTables, tenantFilter([15])),
      );
      expect(await orphans(liveUrl)).toEqual({});
      const v = await validateTenant({
        scratch: pools.get(scratchUrl),
        live: pools.get(liveUrl),
        plan,
        tenantId: '15',
        conflict: 'skip',
      });
      expect(v.ok).toBe(true);
    },
  );

  it.each([undefined, 25])(
    'a tenant with no row in a table whose FK goes in NULL first is restored (chunkRows %s)',
    async (chunkRows) => {
      // a ↔ b is a cycle whose nullable a.b_id goes in NULL and is filled after. Tenant 1 has rows in a and b, tenant 2
      // none: the fill must not look for the keys of rows that were never staged.
      const schema = `CREATE SCHEMA s;
      CREATE TABLE s.t (id int PRIMARY KEY);
      CREATE TABLE s.a (id int PRIMARY KEY, t_id int NOT NULL REFERENCES s.t, b_id int);
      CREATE TABLE s.b (id int PRIMARY KEY, a_id int NOT NULL REFERENCES s.a);
      ALTER TABLE s.a ADD FOREIGN KEY (b_id) REFERENCES s.b;`;
      const backup = await fresh(`sfk_bare_${chunkRows ?? 'one'}`);
      await query(
        backup.url,
        `${schema}
      INSERT INTO s.t VALUES (1), (2); INSERT INTO s.a VALUES (10, 1, NULL); INSERT INTO s.b VALUES (20, 10); UPDATE s.a SET b_id = 20;`,
      );
      const liveDb = await fresh(`sfk_bare_live_${chunkRows ?? 'one'}`);
      await query(liveDb.url, schema);
      const plan = await buildPlan({ scratch: pools.get(backup.url), live: pools.get(liveDb.url), tenantRoot: 's.t' });
      expect(plan.tables.find((t) => t.key === 's.a')!.nullThenUpdate).toEqual(['b_id']);
      // No index on s.a(t_id) nor s.b(a_id): their ownership predicates match a hashed key set (IN), not an array.
      expect(plan.tables.find((t) => t.key === 's.a')!.indexedColumns).toEqual(['id']);
      expect(ownedPredicate('s.b', 't', renderContext(plan, ['1']))).toContain('IN (SELECT');
      for (const tenant of ['2', '1']) {
        const result = await copyTenant({
          scratch: pools.get(backup.url),
          live: pools.get(liveDb.url),
          plan,
          tenantIds: [tenant],
          conflict: 'skip',
          chunkRows,
        });
        expect(result.rows['s.a']).toBe(tenant === '1' ? 1 : 0);
      }
      expect(await query(liveDb.url, 'SELECT id, t_id, b_id FROM s.a')).toEqual([{ id: 10, t_id: 1, b_id: 20 }]);
      expect(await query(liveDb.url, 'SELECT id FROM s.t ORDER BY id')).toEqual([{ id: 1 }, { id: 2 }]);
      expect(await orphans(liveDb.url)).toEqual({});
    },
  );

  it('under skip, conflicts are the live rows that differ from the backup: counted whether or not the insert wrote the rest', async () => {
    const schema = `CREATE SCHEMA s;
      CREATE TABLE s.t (id int PRIMARY KEY);
      CREATE TABLE s.a (id int PRIMARY KEY, t_id int NOT NULL REFERENCES s.t, v text);`;
    const backup = await fresh('sfk_skip_src');
    await query(
      backup.url,
      `${schema} INSERT INTO s.t VALUES (1); INSERT INTO s.a VALUES (10, 1, 'x'), (11, 1, 'y'), (12, 1, 'z');`,
    );
    const liveDb = await fresh('sfk_skip_live');
    // Live kept row 10 as it was and changed row 11; row 12 is gone.
    await query(
      liveDb.url,
      `${schema} INSERT INTO s.t VALUES (1); INSERT INTO s.a VALUES (10, 1, 'x'), (11, 1, 'changed');`,
    );
    const plan = await buildPlan({ scratch: pools.get(backup.url), live: pools.get(liveDb.url), tenantRoot: 's.t' });
    const result = await copyTenant({
      scratch: pools.get(backup.url),
      live: pools.get(liveDb.url),
      plan,
      tenantIds: ['1'],
      conflict: 'skip',
    });
    expect(result.conflicts?.['s.a']).toBe(1);
    expect(result.skipped['s.a']).toBe(1);
    expect(await query(liveDb.url, 'SELECT id, v FROM s.a ORDER BY id')).toEqual([
      { id: 10, v: 'x' },
      { id: 11, v: 'changed' },
      { id: 12, v: 'z' },
    ]);
    // A tenant whose rows are all new has no conflict, and the count is not even needed.
    await query(liveDb.url, 'DELETE FROM s.a; DELETE FROM s.t');
    const fresh2 = await copyTenant({
      scratch: pools.get(backup.url),
      live: pools.get(liveDb.url),
      plan,
      tenantIds: ['1'],
      conflict: 'skip',
    });
    expect(fresh2.conflicts?.['s.a']).toBe(0);
    expect(fresh2.rows['s.a']).toBe(3);
  });

  it('a database error in a later chunk is named, says what was committed, and leaves no orphan', async () => {
    // Live has a rule (added after the backup) that tenant 15's 26th comment breaks: the second chunk of app.comments fails.
    const nth = `(SELECT id FROM (SELECT md5('comment-' || i || '-' || c)::uuid AS id FROM generate_series(841, 900) i, generate_series(1, 3) c) x ORDER BY id OFFSET 25 LIMIT 1)`;
    const [{ id }] = (await query<{ id: string }>(scratchUrl, `SELECT ${nth} AS id`)) as [{ id: string }];
    const liveUrl = await live(
      'sfk_chunk_check',
      `${deleteTenantsSql([15])} ALTER TABLE app.comments ADD CONSTRAINT comments_not_this CHECK (id <> '${id}'::uuid) NOT VALID`,
    );
    const plan = await buildPlan({
      scratch: pools.get(scratchUrl),
      live: pools.get(liveUrl),
      tenantRoot: 'app.tenants',
    });
    const checkpoints: CopyCheckpoint[] = [];
    const e = await failure(() =>
      copyTenant({
        scratch: pools.get(scratchUrl),
        live: pools.get(liveUrl),
        plan,
        tenantIds: ['15'],
        conflict: 'fail',
        chunkRows: 25,
        onCheckpoint: (c) => void checkpoints.push(c),
      }),
    );
    expect(e.name).toBe('ConstraintViolationError');
    expect(nonRetryableErrorTypes).toContain(e.name);
    expect(e.message).toContain('comments_not_this');
    expect(e.message).not.toContain(id);
    expect(e.message).toContain('app.comments: 1 chunk(s), 25 row(s) written');
    expect(await orphans(liveUrl)).toEqual({});
    await query(liveUrl, 'ALTER TABLE app.comments DROP CONSTRAINT comments_not_this');
    await copyTenant({
      scratch: pools.get(scratchUrl),
      live: pools.get(liveUrl),
      plan: await buildPlan({ scratch: pools.get(scratchUrl), live: pools.get(liveUrl), tenantRoot: 'app.tenants' }),
      tenantIds: ['15'],
      conflict: 'fail',
      chunkRows: 25,
      resumeFrom: checkpoints[checkpoints.length - 1],
    });
    expect(await fingerprints(liveUrl, tenantTables, tenantFilter([15]))).toEqual(
      await fingerprints(scratchUrl, tenantTables, tenantFilter([15])),
    );
    expect(await orphans(liveUrl)).toEqual({});
  });

  it('a key held by another tenant in a partial expression unique index stops the tenant under skip and overwrite', async () => {
    // lower(email) among users without a profile: tenant 6's user 1 (no profile) now has tenant 5's user 1 address,
    // in other case. The plain unique index on email does not see it; the expression index does.
    const index = `CREATE UNIQUE INDEX users_email_ci ON app.users (lower(email)) WHERE profile IS NULL`;
    const liveUrl = await live(
      'sfk_expr',
      `${deleteTenantsSql([5])} ${index};
      UPDATE app.users SET email = 'USER1@tenant5.example' WHERE email = 'user1@tenant6.example'`,
    );
    const plan = await buildPlan({
      scratch: pools.get(scratchUrl),
      live: pools.get(liveUrl),
      tenantRoot: 'app.tenants',
    });
    expect(plan.tables.find((t) => t.key === 'app.users')!.uniqueIndexes).toEqual([
      { name: 'users_email_ci', keys: ['lower(email)'], predicate: 'profile IS NULL', nullsNotDistinct: false },
    ]);
    const tables = await userTables(liveUrl);
    const before = await fingerprints(liveUrl, tables);
    for (const conflict of ['skip', 'overwrite'] as const) {
      const e = await failure(() =>
        copyTenant({ scratch: pools.get(scratchUrl), live: pools.get(liveUrl), plan, tenantIds: ['5'], conflict }),
      );
      expect(e).toBeInstanceOf(CrossTenantConflictError);
      expect(e.message).toContain('users_email_ci');
      expect(e.message).toContain('app.users');
      expect(await fingerprints(liveUrl, tables)).toEqual(before);
    }
    // The predicate applies to both sides: user 2 has a profile, so the same trick on it is no conflict (and no
    // violation: the index does not cover the row), and the tenant is restored.
    const outside = await live(
      'sfk_expr_pred',
      `${deleteTenantsSql([5])} ${index};
      UPDATE app.users SET email = 'USER2@tenant5.example' WHERE email = 'user2@tenant6.example'`,
    );
    const p2 = await buildPlan({ scratch: pools.get(scratchUrl), live: pools.get(outside), tenantRoot: 'app.tenants' });
    const ok = await copyTenant({
      scratch: pools.get(scratchUrl),
      live: pools.get(outside),
      plan: p2,
      tenantIds: ['5'],
      conflict: 'overwrite',
    });
    expect(ok.rows['app.users']).toBe(5);
    expect(await orphans(outside)).toEqual({});
  });

  it('a DEFERRABLE primary key or unique constraint is refused at plan time, naming the constraint', async () => {
    const liveUrl = await live(
      'sfk_defer',
      `${deleteTenantsSql([5])} ALTER TABLE app.labels ADD CONSTRAINT labels_name_uq UNIQUE (tenant_id, name) DEFERRABLE`,
    );
    const e = await failure(() =>
      buildPlan({ scratch: pools.get(scratchUrl), live: pools.get(liveUrl), tenantRoot: 'app.tenants' }),
    );
    expect(e).toBeInstanceOf(DeferrableUniqueKeyError);
    expect(nonRetryableErrorTypes).toContain(e.name);
    expect(e.message).toContain('app.labels (constraint labels_name_uq)');
    expect(e.message).toContain('NOT DEFERRABLE');
  });
});

describe('chunk units (pure logic)', () => {
  const table = (key: string, fks: Array<{ columns: string[]; to: string; nullable?: boolean }>): PlanTable => ({
    key,
    schema: key.split('.')[0]!,
    name: key.split('.')[1]!,
    role: 'owned',
    columns: [
      { name: 'id', type: 'int' },
      { name: 'parent_id', type: 'int' },
      { name: 'b_id', type: 'int' },
    ],
    primaryKey: ['id'],
    uniqueKeys: [['id']],
    overridingSystemValue: false,
    sequences: [],
    paths: [],
    nullThenUpdate: [],
    userTriggers: [],
    foreignKeys: fks.map((f, i) => ({
      constraint: `${key}_fk${i}`,
      columns: f.columns,
      to: f.to,
      referencedColumns: ['id'],
      ...(f.nullable === undefined ? {} : { nullable: f.nullable }),
    })),
  });
  const cycle = (tables: string[]): Plan['cycles'][number] => ({ tables, edges: [] });

  it('a NOT NULL self-reference or forward FK keeps its unit in one transaction; nullable ones are deferred; tables outside cycles chunk as they are', () => {
    const plan = {
      tables: [
        table('s.root', []),
        table('s.tree', [{ columns: ['parent_id'], to: 's.tree', nullable: false }]),
        table('s.a', [{ columns: ['b_id'], to: 's.b', nullable: true }]),
        table('s.b', [{ columns: ['parent_id'], to: 's.a', nullable: false }]),
      ],
      cycles: [cycle(['s.tree']), cycle(['s.a', 's.b'])],
    };
    expect(chunkUnits(plan)).toEqual([
      { start: 0, end: 1, mode: 'chunks', deferred: {} },
      {
        start: 1,
        end: 2,
        mode: 'one-transaction',
        deferred: {},
        reason: 's.tree.s.tree_fk0 (parent_id) is NOT NULL and references the same table',
      },
      // b -> a points backwards (a is committed first): only a.b_id, forward and nullable, is deferred.
      { start: 2, end: 4, mode: 'chunks', deferred: { 's.a': ['b_id'] } },
    ]);
    // A plan of an older version does not say whether the FK is nullable: never assumed.
    const old = { tables: [table('s.tree', [{ columns: ['parent_id'], to: 's.tree' }])], cycles: [cycle(['s.tree'])] };
    expect(chunkUnits(old)[0]!.mode).toBe('one-transaction');
  });
});
