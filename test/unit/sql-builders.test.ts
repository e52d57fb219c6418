/**
 * The engine's SQL builders (activities/sql/*) on a small hand-made plan, without a database: the text and the values
 * of each statement. The integration suites (engine-*, safety-*, orchestration-*) run the same builders for real.
 */
import { describe, expect, it } from 'vitest';
import {
  CrossTenantConflictError,
  ConflictPolicyError,
  DanglingReferenceError,
  TenantNotInBackupError,
} from '../../activities/errors';
import { renderContext, type Plan, type PlanTable } from '../../activities/plan';
import { tableChecksum, tablesChecksum } from '../../activities/sql/checksum';
import { crossTenantConflict, crossTenantIndexCount, crossTenantKeyCount } from '../../activities/sql/cross-tenant';
import { tenantLock } from '../../activities/sql/lock';
import {
  conflictCount,
  conflictPolicyRefusal,
  createWrittenKeys,
  fillChunkRows,
  fillWrittenRows,
  insertStaged,
  insertTracked,
  writtenKeys,
} from '../../activities/sql/merge';
import { danglingReference, orphanCount } from '../../activities/sql/orphans';
import {
  assertTenantsInBackup,
  idsCastSurely,
  missingFromBackup,
  missingKeyCount,
  ownedRowCount,
  rootsInLive,
  tenantsMissingFromBackup,
} from '../../activities/sql/presence';
import { advanceSequences } from '../../activities/sql/sequences';
import { sessionSetup } from '../../activities/sql/session';
import {
  analyzeStaging,
  copyIn,
  copyOut,
  createStaging,
  lastStagedKey,
  setKeysetCursor,
  stagingName,
} from '../../activities/sql/stage';
import type { Sql } from '../../activities/sql';

// app.plans (shared) <- app.tenants (root, integer key) <- app.users (owned; unique email; an expression index; a sequence).
const plans: PlanTable = {
  key: 'app.plans',
  schema: 'app',
  name: 'plans',
  role: 'shared',
  columns: [
    { name: 'id', type: 'integer' },
    { name: 'name', type: 'text' },
  ],
  primaryKey: ['id'],
  uniqueKeys: [['id']],
  overridingSystemValue: false,
  sequences: [],
  paths: [],
  foreignKeys: [],
  nullThenUpdate: [],
  userTriggers: [],
};
const tenants: PlanTable = {
  key: 'app.tenants',
  schema: 'app',
  name: 'tenants',
  role: 'root',
  columns: [
    { name: 'id', type: 'integer' },
    { name: 'plan_id', type: 'integer' },
  ],
  primaryKey: ['id'],
  uniqueKeys: [['id']],
  overridingSystemValue: false,
  sequences: [],
  paths: [[]],
  foreignKeys: [
    { constraint: 'tenants_plan_id_fkey', columns: ['plan_id'], to: 'app.plans', referencedColumns: ['id'] },
  ],
  nullThenUpdate: [],
  userTriggers: [],
};
const usersTenant = {
  constraint: 'users_tenant_id_fkey',
  from: 'app.users',
  columns: ['tenant_id'],
  to: 'app.tenants',
  referencedColumns: ['id'],
};
const users: PlanTable = {
  key: 'app.users',
  schema: 'app',
  name: 'users',
  role: 'owned',
  columns: [
    { name: 'id', type: 'integer' },
    { name: 'tenant_id', type: 'integer' },
    { name: 'email', type: 'text' },
  ],
  primaryKey: ['id'],
  uniqueKeys: [['id'], ['email']],
  uniqueIndexes: [
    { name: 'users_email_ci', keys: ['lower(email)'], predicate: 'deleted IS NULL', nullsNotDistinct: false },
  ],
  overridingSystemValue: true,
  sequences: [{ column: 'id', sequence: '"app"."users_id_seq"' }],
  paths: [[usersTenant]],
  foreignKeys: [
    { constraint: usersTenant.constraint, columns: ['tenant_id'], to: 'app.tenants', referencedColumns: ['id'] },
  ],
  nullThenUpdate: [],
  userTriggers: [],
};
const plan = {
  version: 1,
  tenantRoot: 'app.tenants',
  rootKey: { column: 'id', type: 'integer' },
  tables: [plans, tenants, users],
  cycles: [],
  closureEdges: [
    {
      constraint: 'tenants_plan_id_fkey',
      from: 'app.tenants',
      columns: ['plan_id'],
      to: 'app.plans',
      referencedColumns: ['id'],
    },
  ],
  fkEnforcement: 'replica',
  drift: { tables: [], onlyInLive: [], onlyInBackup: [] },
  excludedTables: [],
  warnings: [],
  digest: 'test',
} as Plan;
// Tenant 5, inlined as a constant array (RenderContext.tenantIds: the planner sees how many tenants there are).
const ctx = renderContext(plan, ['5']);
const ours = `(t."tenant_id" = ANY('{"5"}'::integer[]))`;
const otherOwner = `(t."tenant_id" <> ALL('{"5"}'::integer[]))`;
const userRow = (a: string) => `ROW(${a}."id", ${a}."tenant_id", ${a}."email")::text`;

/** The statement with its white space folded, so that expectations need not repeat the builders' line breaks. */
const flat = (sql: Sql): Sql => ({ ...sql, text: sql.text.replace(/\s+/g, ' ').replace(/\( /g, '(') });

describe('session', () => {
  const tenantIds = { text: `SELECT set_config('tenant_restore.tenant_ids', $1::text[]::text, true)`, values: [['5']] };
  const noParallel = { text: 'SET LOCAL max_parallel_workers_per_gather = 0; SET LOCAL jit = off' };
  it('scratch: one read-only snapshot, no parallel workers and no JIT, the tenants as a $1 setting', () => {
    expect(sessionSetup({ mode: 'snapshot', tenantIds: ['5'] })).toEqual([
      { text: 'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY' },
      noParallel,
      tenantIds,
    ]);
  });
  it("the copy's live transaction: triggers suspended for this session only, deferrable constraints at COMMIT", () => {
    const setup = sessionSetup({
      mode: 'write',
      canonicalText: true,
      replicaRole: true,
      deferConstraints: true,
      tenantIds: ['5'],
    });
    expect(setup).toEqual([
      { text: 'BEGIN' },
      noParallel,
      sessionSetup({ mode: 'snapshot', canonicalText: true, tenantIds: ['5'] })[2],
      { text: 'SET LOCAL session_replication_role = replica' },
      { text: 'SET CONSTRAINTS ALL DEFERRED' },
      tenantIds,
    ]);
  });
  it('a compared session: canonical row text, a snapshot that may create temporary tables', () => {
    const setup = sessionSetup({ mode: 'snapshot-temp', canonicalText: true, tenantIds: ['5'] });
    expect(setup[0]).toEqual({ text: 'BEGIN ISOLATION LEVEL REPEATABLE READ' });
    expect(setup[2]!.text).toBe(
      "SET LOCAL client_encoding = 'UTF8'; SET LOCAL DateStyle = 'ISO, YMD'; SET LOCAL IntervalStyle = 'postgres'; SET LOCAL TimeZone = 'UTC'; SET LOCAL extra_float_digits = '3'; SET LOCAL bytea_output = 'hex'",
    );
    expect(setup).toHaveLength(4);
  });
});

describe('stage', () => {
  it('staging takes live column types, lives with the session and is emptied at COMMIT', () => {
    expect(createStaging(plan, users, 'tr_stage_2', { kind: 'rows' })).toEqual({
      text: 'CREATE TEMP TABLE IF NOT EXISTS tr_stage_2 ON COMMIT DELETE ROWS AS SELECT "id", "tenant_id", "email" FROM "app"."users" WITH NO DATA',
    });
    expect(createStaging(plan, users, 'tr_preflight_2', { kind: 'hashed', columns: ['id', 'email'] })).toEqual({
      text: `CREATE TEMP TABLE IF NOT EXISTS tr_preflight_2 ON COMMIT DELETE ROWS AS SELECT "id", "email", ''::text AS tr_row FROM "app"."users" WITH NO DATA`,
    });
  });
  it("a staging table's name carries a digest of its shape: reused only for the same table, columns, types and shape", () => {
    const rows = stagingName('tr_stage_2', users, { kind: 'rows' });
    expect(rows).toMatch(/^tr_stage_2_[0-9a-f]{12}$/);
    expect(stagingName('tr_stage_2', users, { kind: 'rows' })).toBe(rows);
    expect(stagingName('tr_stage_2', users, { kind: 'keys', columns: ['id'] })).not.toBe(rows);
    expect(stagingName('tr_stage_2', tenants, { kind: 'rows' })).not.toBe(rows);
    const retyped = {
      ...users,
      columns: users.columns.map((c) => (c.name === 'email' ? { ...c, type: 'citext' } : c)),
    };
    expect(stagingName('tr_stage_2', retyped, { kind: 'rows' })).not.toBe(rows);
  });
  it("COPY out of the tenants' rows: whole, hashed, or a chunk after the keyset cursor", () => {
    expect(copyOut(plan, ctx, users, { kind: 'rows' })).toEqual({
      text: `COPY (SELECT t."id", t."tenant_id", t."email" FROM "app"."users" t WHERE ${ours}) TO STDOUT`,
    });
    expect(copyOut(plan, ctx, users, { kind: 'hashed', columns: ['id', 'email'] })).toEqual({
      text: `COPY (SELECT t."id", t."email", md5(${userRow('t')}) FROM "app"."users" t WHERE ${ours}) TO STDOUT`,
    });
    expect(copyOut(plan, ctx, users, { kind: 'rows' }, { limit: 25, afterKey: true })).toEqual({
      text: `COPY (SELECT t."id", t."tenant_id", t."email" FROM "app"."users" t WHERE ${ours} AND (t."id") > ((current_setting('tenant_restore.after_key')::text[])[1]::integer) ORDER BY t."id" LIMIT 25) TO STDOUT`,
    });
  });
  it('a shared table stages the parent closure: rows that the tenants reference', () => {
    expect(copyOut(plan, ctx, plans, { kind: 'keys', columns: ['id'] })).toEqual({
      text: `COPY (SELECT t."id" FROM "app"."plans" t WHERE ((t."id") IN (SELECT t_c0."plan_id" FROM "app"."tenants" t_c0 WHERE t_c0."plan_id" IS NOT NULL AND (t_c0."id" = ANY('{"5"}'::integer[]))))) TO STDOUT`,
    });
  });
  it('COPY in, ANALYZE, and the keyset cursor as a $1 setting', () => {
    expect(copyIn(users, 'tr_preflight_2', { kind: 'hashed', columns: ['id', 'email'] })).toEqual({
      text: 'COPY tr_preflight_2 ("id", "email", tr_row) FROM STDIN',
    });
    expect(analyzeStaging('tr_stage_2')).toEqual({ text: 'ANALYZE tr_stage_2' });
    expect(setKeysetCursor(['41'])).toEqual({
      text: `SELECT set_config('tenant_restore.after_key', $1::text[]::text, true)`,
      values: [['41']],
    });
    expect(lastStagedKey(users, 'tr_stage_chunk')).toEqual({
      text: 'SELECT ARRAY["id"::text] AS key FROM tr_stage_chunk ORDER BY "id" DESC LIMIT 1',
    });
  });
});

describe('merge', () => {
  it('skip and fail insert what live lacks; a shared table only its missing parents', () => {
    expect(insertStaged(plan, ctx, users, 's1', 'skip')).toEqual({
      text: 'INSERT INTO "app"."users" ("id", "tenant_id", "email") OVERRIDING SYSTEM VALUE SELECT s."id", s."tenant_id", s."email" FROM s1 s ON CONFLICT DO NOTHING',
    });
    expect(insertStaged(plan, ctx, users, 's1', 'fail')).toEqual(insertStaged(plan, ctx, users, 's1', 'skip'));
    expect(insertStaged(plan, ctx, plans, 's0', 'overwrite')).toEqual({
      text: 'INSERT INTO "app"."plans" ("id", "name") SELECT s."id", s."name" FROM s0 s ON CONFLICT DO NOTHING',
    });
  });
  it('overwrite repeats the ownership test on the row it replaces, and leaves identical rows alone', () => {
    expect(flat(insertStaged(plan, ctx, users, 's1', 'overwrite'))).toEqual({
      text: `INSERT INTO "app"."users" AS t ("id", "tenant_id", "email") OVERRIDING SYSTEM VALUE SELECT s."id", s."tenant_id", s."email" FROM s1 s ON CONFLICT ("id") DO UPDATE SET "tenant_id" = EXCLUDED."tenant_id", "email" = EXCLUDED."email" WHERE NOT ${otherOwner} AND ${userRow('t')} IS DISTINCT FROM ${userRow('EXCLUDED')}`,
    });
  });
  it('columns inserted NULL (null-then-update) go in as NULL and are left out of the conflict comparison', () => {
    const cyclic = { ...users, nullThenUpdate: ['tenant_id'] };
    expect(insertStaged(plan, ctx, cyclic, 's1', 'skip').text).toContain('SELECT s."id", NULL, s."email" FROM s1 s');
    expect(conflictCount(plan, cyclic, 's1', 'rows').text).toContain(
      'ROW(t."id", t."email")::text IS DISTINCT FROM ROW(s."id", s."email")::text',
    );
  });
  it('conflicts: same-tenant keys in live with other content, over whole or hashed staged rows', () => {
    expect(conflictCount(plan, users, 's1', 'rows')).toEqual({
      text: `SELECT count(*) AS n FROM s1 s WHERE EXISTS (SELECT 1 FROM "app"."users" t WHERE s."id" = t."id" AND ${userRow('t')} IS DISTINCT FROM ${userRow('s')} AND NOT t.xmin = (txid_current() % 4294967296)::text::xid)`,
    });
    expect(conflictCount(plan, users, 's1', 'hashed')).toEqual({
      text: `SELECT count(*) AS n FROM s1 s JOIN "app"."users" t ON s."id" = t."id" WHERE md5(${userRow('t')}) <> s.tr_row`,
    });
  });
  it('the inserted keys are tracked and read back in key order, at most a limit', () => {
    expect(createWrittenKeys(plan, users, 'w1')).toEqual({
      text: 'CREATE TEMP TABLE w1 ON COMMIT DROP AS SELECT "id" FROM "app"."users" WITH NO DATA',
    });
    expect(insertTracked(insertStaged(plan, ctx, users, 's1', 'skip'), users, 'w1').text).toBe(
      'WITH w AS (INSERT INTO "app"."users" ("id", "tenant_id", "email") OVERRIDING SYSTEM VALUE SELECT s."id", s."tenant_id", s."email" FROM s1 s ON CONFLICT DO NOTHING RETURNING "id") INSERT INTO w1 SELECT * FROM w',
    );
    expect(writtenKeys(users, 'w1', 1000)).toEqual({
      text: 'SELECT ARRAY["id"::text] AS key FROM w1 ORDER BY "id" LIMIT 1000',
    });
  });
  it('the fills set the NULL columns only on rows this copy wrote', () => {
    expect(flat(fillWrittenRows(plan, { ...users, nullThenUpdate: ['tenant_id'] }, 's1', 'w1'))).toEqual({
      text: 'UPDATE "app"."users" t SET "tenant_id" = s."tenant_id" FROM s1 s JOIN w1 w ON s."id" = w."id" WHERE t."id" = s."id"',
    });
    expect(flat(fillChunkRows(plan, ctx, users, ['tenant_id'], 's1'))).toEqual({
      text: `UPDATE "app"."users" t SET "tenant_id" = s."tenant_id" FROM s1 s WHERE t."id" = s."id" AND t."tenant_id" IS NULL AND NOT (s."tenant_id" IS NULL) AND ROW(t."id", t."email")::text = ROW(s."id", s."email")::text AND NOT ${otherOwner}`,
    });
  });
  it("policy fail's refusal names the table and says nothing was written", () => {
    const e = conflictPolicyRefusal('app.users', 3, ['5']);
    expect(e).toBeInstanceOf(ConflictPolicyError);
    expect(e.message).toMatch(
      /^3 row\(s\) of app\.users of tenant\(s\) 5 already exist in live with other content.*Nothing was written\./,
    );
    expect(e.details).toEqual({ table: 'app.users', rows: 3, tenantIds: ['5'] });
  });
});

describe('cross-tenant check', () => {
  it("a unique key held by another tenant's row with other content", () => {
    expect(flat(crossTenantKeyCount(plan, ctx, users, 's1', ['email'], 'rows'))).toEqual({
      text: `SELECT count(*) AS n FROM s1 s JOIN "app"."users" t ON s."email" = t."email" WHERE ${userRow('t')} IS DISTINCT FROM ${userRow('s')} AND ${otherOwner}`,
    });
    expect(flat(crossTenantKeyCount(plan, ctx, users, 's1', ['email'], 'hashed'))).toEqual({
      text: `SELECT count(*) AS n FROM s1 s JOIN "app"."users" t ON s."email" = t."email" WHERE md5(${userRow('t')}) <> s.tr_row AND ${otherOwner}`,
    });
  });
  it('a partial expression index: its expressions and predicate on both sides', () => {
    expect(flat(crossTenantIndexCount(plan, ctx, users, 's1', users.uniqueIndexes![0]!))).toEqual({
      text: `WITH sk AS (SELECT "id", "tenant_id", "email", (lower(email)) AS tr_key_0 FROM s1 WHERE (deleted IS NULL)) SELECT count(*) AS n FROM sk WHERE EXISTS (SELECT 1 FROM "app"."users" t WHERE (lower(email)) = sk.tr_key_0 AND (deleted IS NULL) AND ${userRow('t')} IS DISTINCT FROM ${userRow('sk')} AND ${otherOwner})`,
    });
  });
  it('one refusal, for a key and for an index', () => {
    const key = crossTenantConflict('app.users', 2, ['5'], { columns: ['email'] });
    expect(key).toBeInstanceOf(CrossTenantConflictError);
    expect(key.message).toMatch(
      /^2 row\(s\) of app\.users that tenant\(s\) 5 would restore have a key \(email\) that another tenant holds in live\..*Nothing was written for these tenants\./,
    );
    expect(key.details).toEqual({ table: 'app.users', key: ['email'], rows: 2, tenantIds: ['5'] });
    const index = crossTenantConflict('app.users', 1, ['5'], {
      index: 'users_email_ci',
      description: 'unique index users_email_ci (lower(email))',
    });
    expect(index.message).toContain(
      'have a key in unique index users_email_ci (lower(email)) that another tenant holds in live',
    );
    expect(index.details).toEqual({ table: 'app.users', index: 'users_email_ci', rows: 1, tenantIds: ['5'] });
  });
});

describe('orphan scan', () => {
  const fk = users.foreignKeys[0]!;
  it("staged rows: the parents are locked FOR KEY SHARE, as PostgreSQL's own check would", () => {
    expect(flat(orphanCount(plan, users, fk, { staged: 's1' }))).toEqual({
      text: 'WITH r AS (SELECT DISTINCT t."tenant_id" AS r0 FROM "app"."users" t JOIN s1 s ON t."id" = s."id" WHERE t."tenant_id" IS NOT NULL), locked AS (SELECT l.* FROM r CROSS JOIN LATERAL (SELECT p."id" AS k0 FROM "app"."tenants" p WHERE p."id" = r.r0 FOR KEY SHARE OF p) l) SELECT (SELECT count(*) FROM r) - (SELECT count(*) FROM (SELECT DISTINCT k0 FROM locked) l) AS n',
    });
  });
  it('staged rows that are all live rows (every one inserted): the references are read from staging alone', () => {
    expect(flat(orphanCount(plan, users, fk, { staged: 's1', asStaged: true })).text).toMatch(
      /^WITH r AS \(SELECT DISTINCT t."tenant_id" AS r0 FROM s1 t WHERE t."tenant_id" IS NOT NULL\), locked AS/,
    );
  });
  it("the tenants' rows in live, read only", () => {
    expect(flat(orphanCount(plan, users, fk, { owned: ctx }))).toEqual({
      text: `SELECT count(*) AS n FROM "app"."users" t WHERE ${ours} AND (t."tenant_id" IS NOT NULL AND NOT EXISTS (SELECT 1 FROM "app"."tenants" p WHERE p."id" = t."tenant_id"))`,
    });
  });
  it('one refusal for dangling references', () => {
    const e = danglingReference('app.users', [{ constraint: 'users_tenant_id_fkey', rows: 1 }], ['5']);
    expect(e).toBeInstanceOf(DanglingReferenceError);
    expect(e.message).toContain('(users_tenant_id_fkey: 1). Nothing was committed.');
  });
});

describe('presence', () => {
  it('the tenants without a root in the backup, and those whose root is in live: ids as $1', () => {
    // In the key's type, for the root's index; the text test keeps the answer (`007` is not tenant 7).
    expect(flat(tenantsMissingFromBackup(plan, ['5', '6']))).toEqual({
      text: 'SELECT array_agg(wanted.tenant_id ORDER BY wanted.tenant_id) AS missing FROM unnest($1::text[]) AS wanted(tenant_id) WHERE NOT EXISTS (SELECT 1 FROM "app"."tenants" r WHERE r."id" = wanted.tenant_id::integer AND r."id"::text = wanted.tenant_id)',
      values: [['5', '6']],
    });
    expect(flat(tenantsMissingFromBackup(plan, ['5', 'x'], 'text'))).toEqual({
      text: 'SELECT array_agg(wanted.tenant_id ORDER BY wanted.tenant_id) AS missing FROM unnest($1::text[]) AS wanted(tenant_id) WHERE NOT EXISTS (SELECT 1 FROM "app"."tenants" r WHERE r."id"::text = wanted.tenant_id)',
      values: [['5', 'x']],
    });
    expect(flat(rootsInLive(plan, ['5']))).toEqual({
      text: 'SELECT wanted.id FROM unnest($1::text[]) AS wanted(id) WHERE EXISTS (SELECT 1 FROM "app"."tenants" r WHERE r."id" = wanted.id::integer)',
      values: [['5']],
    });
  });
  it("the backup's keys that live lacks, and the tenants' rows of a table", () => {
    expect(missingKeyCount(plan, users, 'k1')).toEqual({
      text: 'SELECT count(*) AS n FROM k1 s WHERE NOT EXISTS (SELECT 1 FROM "app"."users" t WHERE s."id" = t."id")',
    });
    expect(ownedRowCount(plan, ctx, tenants)).toEqual({
      text: `SELECT count(*) AS n FROM "app"."tenants" t WHERE (t."id" = ANY('{"5"}'::integer[]))`,
    });
  });
});

describe('checksum, sequences, lock', () => {
  it('count and order-independent sums of row and key hashes', () => {
    expect(flat(tableChecksum(plan, ctx, users))).toEqual({
      text: `SELECT count(*) AS n, coalesce(sum(hashtextextended(${userRow('t')}, 0)), 0)::text AS rows, coalesce(sum(hashtextextended(ROW(t."id")::text, 0)), 0)::text AS keys FROM "app"."users" t WHERE ${ours}`,
    });
  });
  it('several tables in one statement, one row each, the orphans of each FK as an array', () => {
    const text = flat(tablesChecksum(plan, ctx, [users, tenants], true)).text;
    expect(text.split(' UNION ALL ').map((part) => part.slice(0, 12))).toEqual(['SELECT 0 AS ', 'SELECT 1 AS ']);
    expect(text).toContain(
      `AS keys, ARRAY[count(*) FILTER (WHERE (t."tenant_id" IS NOT NULL AND NOT EXISTS (SELECT 1 FROM "app"."tenants" p WHERE p."id" = t."tenant_id")))]::bigint[] AS orphans FROM "app"."users" t`,
    );
    const noFks = flat(tablesChecksum(plan, ctx, [{ ...tenants, foreignKeys: [] }], true)).text;
    expect(noFks).toContain(`AS keys, '{}'::bigint[] AS orphans FROM "app"."tenants" t`);
  });
  it("on live, the same pass counts each FK's rows whose parent is missing", () => {
    expect(flat(tableChecksum(plan, ctx, users, true)).text).toContain(
      `AS keys, count(*) FILTER (WHERE (t."tenant_id" IS NOT NULL AND NOT EXISTS (SELECT 1 FROM "app"."tenants" p WHERE p."id" = t."tenant_id"))) AS o0 FROM "app"."users" t WHERE ${ours}`,
    );
  });
  it('a sequence only moves forward, its name as $1 for the regclass', () => {
    expect(advanceSequences(users, 's1').map(flat)).toEqual([
      {
        text: 'SELECT setval($1::regclass, x.m, true) FROM (SELECT max("id")::bigint AS m FROM s1) x, "app"."users_id_seq" seq WHERE x.m IS NOT NULL AND (x.m > seq.last_value OR (x.m = seq.last_value AND NOT seq.is_called))',
        values: ['"app"."users_id_seq"'],
      },
    ]);
    expect(advanceSequences(tenants, 's0')).toEqual([]);
  });
  it("the tenant lock: keyed on the root and the id in the key's own type", () => {
    expect(tenantLock(plan, '5')).toEqual({
      text: `SELECT pg_advisory_lock(hashtextextended('tenant-restore:tenant:app.tenants:' || ($1::integer)::text, 0))`,
      values: ['5'],
    });
  });
});

describe('presence: the root lookup in the backup, in the key type', () => {
  /** A scratch session that answers the lookup: the typed form fails as PostgreSQL does when an id does not cast. */
  function fakeScratch(backup: string[], castFails?: { code: string }) {
    const statements: string[] = [];
    const query = async (sql: Sql | string) => {
      const text = typeof sql === 'string' ? sql : sql.text;
      statements.push(
        text.replace(/\s+/g, ' ').includes('::integer AND')
          ? 'typed lookup'
          : text.startsWith('SELECT')
            ? 'text lookup'
            : text,
      );
      if (typeof sql === 'string') return { rows: [] };
      const ids = sql.values![0] as string[];
      if (text.includes('::integer AND') && castFails)
        throw Object.assign(new Error(`SQLSTATE ${castFails.code}`), { ...castFails, severity: 'ERROR' });
      const missing = ids.filter((id) => !backup.includes(id)).sort();
      return { rows: [{ missing: missing.length ? missing : null }] };
    };
    return { scratch: { query } as never, statements };
  }

  it('ids that surely cast: one typed statement, no savepoint', async () => {
    const { scratch, statements } = fakeScratch(['5']);
    expect(await missingFromBackup(scratch, plan, ['5', '6'])).toEqual(['6']);
    expect(statements).toEqual(['typed lookup']);
  });

  it('an id that might not cast: the typed statement under a savepoint, released when it answers', async () => {
    const { scratch, statements } = fakeScratch(['5']);
    expect(await missingFromBackup(scratch, plan, ['5', ' 6'])).toEqual([' 6']);
    expect(statements).toEqual(['SAVEPOINT tr_root_lookup', 'typed lookup', 'RELEASE SAVEPOINT tr_root_lookup']);
  });

  it.each(['22P02', '22003', '23514'])(
    'an id that does not cast (%s): rolled back to the savepoint, answered by the text form, reported missing',
    async (code) => {
      const { scratch, statements } = fakeScratch(['5'], { code });
      await expect(assertTenantsInBackup(scratch, plan, ['5', 'abc'])).rejects.toThrow(TenantNotInBackupError);
      expect(statements).toEqual([
        'SAVEPOINT tr_root_lookup',
        'typed lookup',
        'ROLLBACK TO SAVEPOINT tr_root_lookup',
        'RELEASE SAVEPOINT tr_root_lookup',
        'text lookup',
      ]);
      await expect(assertTenantsInBackup(scratch, plan, ['5', 'abc'])).rejects.toThrow(
        /Tenant\(s\) abc have no row in app\.tenants of the backup/,
      );
    },
  );

  it('another error is not taken for a cast: thrown as it is', async () => {
    const { scratch, statements } = fakeScratch(['5'], { code: '57014' });
    await expect(missingFromBackup(scratch, plan, ['abc'])).rejects.toThrow(/57014/);
    expect(statements).toEqual(['SAVEPOINT tr_root_lookup', 'typed lookup']);
  });

  it('which ids surely cast to the key type', () => {
    expect(idsCastSurely('bigint', ['1', '-5', '007', '9223372036854775807'])).toBe(true);
    expect(idsCastSurely('bigint', ['9223372036854775808'])).toBe(false);
    expect(idsCastSurely('bigint', ['abc'])).toBe(false);
    expect(idsCastSurely('bigint', ['1e3'])).toBe(false);
    expect(idsCastSurely('integer', ['2147483647'])).toBe(true);
    expect(idsCastSurely('integer', ['2147483648'])).toBe(false);
    expect(idsCastSurely('smallint', ['-32768'])).toBe(true);
    expect(idsCastSurely('smallint', ['32768'])).toBe(false);
    expect(idsCastSurely('uuid', ['0b5e8d2c-6f0e-4d7a-9c1b-2a3f4e5d6c7b'])).toBe(true);
    expect(idsCastSurely('uuid', ['0b5e8d2c6f0e4d7a9c1b2a3f4e5d6c7b'])).toBe(false);
    expect(idsCastSurely('text', ['anything'])).toBe(true);
    expect(idsCastSurely('character varying(3)', ['longer than three'])).toBe(true);
    // Not known to cast: a domain (its CHECK), numeric, citext.
    expect(idsCastSurely('app.tenant_key', ['1'])).toBe(false);
    expect(idsCastSurely('numeric', ['1'])).toBe(false);
  });
});
