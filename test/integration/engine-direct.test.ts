/**
 * The direct copy paths against the real PostgreSQL (activities/copy/direct.ts, chunked-direct.ts): rows COPYed from
 * scratch straight into the live targets, references read off the stream in Node, only those to rows the transaction
 * did not insert probed in live (and locked FOR KEY SHARE), the forward references of a chunked copy set afterwards by
 * key. The schema has the shapes that matter to them:
 *
 *   app.regions   shared, text keys with the characters COPY escapes (tab, newline, backslash, `\N` as text, ...)
 *   app.tenants   the root; region -> regions ('only-one' and 'only-three': each referenced by one tenant alone)
 *   app.users     bigint key, a globally unique email (a key another tenant can take)
 *   app.nodes     random v4 uuid key, parent_id -> nodes (a tree: about half of the parents sort after their child),
 *                 owner_id -> users (tenant 4's nodes point at a user of tenant 5), tag -> regions (the odd codes);
 *                 tenant 9 has more nodes than one read of 4096 lines (e)
 *   app.teams     lead_id -> members, and members.team_id -> teams: a two-table cycle of nullable FKs
 *   app.members   keys above 2^53, mentor_id -> members (one row before, one after)
 *
 * What is pinned:
 * a. a tenant above chunkRows goes chunked and direct: every owned table by COPY straight into the target, one COPY
 *    per chunk, nothing merged (result.path 'chunked-direct'); the fill UPDATEs set exactly the self-references whose
 *    parent sorts after the row and the cycle's forward column (and, in a row whose other deferred column went in
 *    NULL, its earlier self-reference too: a row's deferred columns are NULL together or not at all), nothing else;
 *    live equals the backup for the tenant, no orphan, every other tenant untouched, no DELETE or TRUNCATE;
 * b. every committed chunk leaves live without a dangling reference (checked after each checkpoint); a copy stopped
 *    inside a unit whose columns wait for their fill resumes from its last checkpoint (staged) and ends equal;
 * c. a parent a transaction references but did not insert (a shared row, a row an earlier chunk committed) cannot be
 *    deleted by another session before that transaction's COMMIT (55P03 under lock_timeout, where an unlocked parent
 *    would be deleted); a reference to a parent live lacks is a DanglingReferenceError, nothing committed on the
 *    one-transaction path, committed chunks without a dangling reference on the chunked one;
 * d. a key another tenant holds sends the direct path to the staged one, whose CrossTenantConflictError is the same as
 *    with the direct path off, nothing committed; on the chunked direct path it hands over from the last checkpoint;
 *    a partial tenant goes staged (directRefused 23505) and ends exactly as with the direct path off, per policy;
 * e. a chunk whose COPY live refuses while Node is still writing it (the conflict on its first row, the second write
 *    held by the pacer until the refusal is in) hands over cleanly: the staged path's error, no TypeError of the
 *    stream, no unhandled rejection, and the scratch session is not left stuck in its COPY.
 */
import { PassThrough } from 'node:stream';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { copyTenant, type CopyTenantInput } from '../../activities/copy';
import { Pools } from '../../activities/db';
import { CrossTenantConflictError, DanglingReferenceError } from '../../activities/errors';
import { buildPlan, type Plan } from '../../activities/plan';
import type { ConflictPolicy, CopyCheckpoint, CopyResult } from '../../activities/restore-types';
import { validateTenant } from '../../activities/validate';
import { auditEvents, destructiveStatements, installDeleteAudit } from '../helpers/audit';
import { dumpAndRestore, fingerprints, query, withClient } from '../helpers/engine';
import { useFreshDatabases, useStackEnv } from '../helpers/stack';

useStackEnv();
const { fresh } = useFreshDatabases();

/** Region codes with every character COPY text escapes, and the text `\N` (not NULL). */
const oddCodes = ['tab\there', 'back\\slash', '\\N', 'new\nline\r', 'ünï€😀', 'N', 'bell\x07', '\\\\N', 'ff\fbs\bvt\v'];
const bigTenant = 1;
/** Referenced only by the big tenant's node k = 77. */
const soleUser = 1999;
const memberBase = 9007199254740000n;
const owned = ['app.tenants', 'app.users', 'app.nodes', 'app.teams', 'app.members'];
const allTables = ['app.regions', ...owned];
const chunkRows = 25;
/** Tenant 9's nodes, and the chunk of e: more than one read of linesPerRead (4096 lines, chunked-direct.ts). */
const largeNodes = 5000;
const largeChunk = 4500;

const schemaSql = `
  CREATE SCHEMA app;
  CREATE TABLE app.regions (code text PRIMARY KEY, name text NOT NULL);
  CREATE TABLE app.tenants (id bigint PRIMARY KEY, name text NOT NULL, region text NOT NULL REFERENCES app.regions);
  CREATE TABLE app.users (id bigint PRIMARY KEY, tenant_id bigint NOT NULL REFERENCES app.tenants, email text NOT NULL UNIQUE);
  CREATE INDEX ON app.users (tenant_id);
  CREATE TABLE app.nodes (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id bigint NOT NULL REFERENCES app.tenants,
    k int NOT NULL,
    parent_id uuid REFERENCES app.nodes,
    owner_id bigint REFERENCES app.users,
    tag text REFERENCES app.regions,
    label text NOT NULL);
  CREATE INDEX ON app.nodes (tenant_id);
  CREATE TABLE app.teams (id bigint PRIMARY KEY, tenant_id bigint NOT NULL REFERENCES app.tenants, lead_id bigint, name text NOT NULL);
  CREATE INDEX ON app.teams (tenant_id);
  CREATE TABLE app.members (
    id bigint PRIMARY KEY,
    tenant_id bigint NOT NULL REFERENCES app.tenants,
    team_id bigint REFERENCES app.teams,
    mentor_id bigint REFERENCES app.members,
    note text);
  CREATE INDEX ON app.members (tenant_id);
  ALTER TABLE app.teams ADD CONSTRAINT teams_lead_fk FOREIGN KEY (lead_id) REFERENCES app.members;`;

/** Nodes per tenant: the big one, tenant 9 (large rows, for e), the others. */
const nodeCount = (t: string) => `CASE ${t} WHEN ${bigTenant} THEN 160 WHEN 9 THEN ${largeNodes} ELSE 12 END`;

const dataSql = [
  `INSERT INTO app.regions SELECT code, 'region ' || n FROM unnest($1::text[]) WITH ORDINALITY u(code, n)`,
  `INSERT INTO app.regions VALUES ('eu', 'Europe'), ('only-one', 'one tenant'), ('only-three', 'one tenant')`,
  `INSERT INTO app.tenants SELECT t, 'tenant ' || t, CASE t WHEN 1 THEN 'only-one' WHEN 3 THEN 'only-three' ELSE 'eu' END
   FROM generate_series(1, 9) t`,
  `INSERT INTO app.users SELECT t * 1000 + u, t, 'u' || u || '@t' || t || '.example'
   FROM generate_series(1, 9) t, generate_series(1, CASE WHEN t = ${bigTenant} THEN 30 ELSE 4 END) u`,
  `INSERT INTO app.users VALUES (${soleUser}, ${bigTenant}, 'sole@t1.example')`,
  // A heap-shaped tree (the parent of k is k / 2) over random uuids: about half of the parents sort after the child.
  `INSERT INTO app.nodes (id, tenant_id, k, parent_id, owner_id, tag, label)
   WITH n AS MATERIALIZED (
     SELECT t, k, gen_random_uuid() AS id FROM generate_series(1, 9) t, generate_series(1, ${nodeCount('t')}) k)
   SELECT n.id, n.t, n.k, p.id,
     CASE WHEN n.t = 4 THEN 5001 WHEN n.t = ${bigTenant} AND n.k = 77 THEN ${soleUser} WHEN n.k % 11 = 0 THEN NULL
          ELSE n.t * 1000 + 1 + n.k % (CASE WHEN n.t = ${bigTenant} THEN 30 ELSE 4 END) END,
     CASE WHEN n.k % 4 = 0 THEN NULL ELSE ($1::text[])[1 + n.k % cardinality($1::text[])] END,
     'node ' || n.k || E'\\t\\\\ of ' || n.t || E'\\n€'
   FROM n LEFT JOIN n p ON p.t = n.t AND p.k = n.k / 2`,
  `INSERT INTO app.teams (id, tenant_id, name) SELECT t * 100000 + k, t, 'team ' || k
   FROM generate_series(1, 9) t, generate_series(1, CASE WHEN t = ${bigTenant} THEN 40 ELSE 3 END) k`,
  `INSERT INTO app.members (id, tenant_id, team_id, mentor_id, note)
   SELECT ${memberBase} + t * 1000 + k, t, CASE WHEN k % 9 = 0 THEN NULL ELSE t * 100000 + (k + 1) / 2 END,
     CASE WHEN k % 5 = 0 THEN NULL WHEN k % 2 = 1 AND k < n THEN ${memberBase} + t * 1000 + k + 1
          WHEN k % 2 = 0 THEN ${memberBase} + t * 1000 + k - 1 END,
     E'note \\\\' || k
   FROM (SELECT t, k, CASE WHEN t = ${bigTenant} THEN 80 ELSE 6 END AS n
         FROM generate_series(1, 9) t, generate_series(1, CASE WHEN t = ${bigTenant} THEN 80 ELSE 6 END) k) s`,
  `UPDATE app.teams SET lead_id = ${memberBase} + tenant_id * 1000 + (id % 100000) * 2 - 1 WHERE id % 7 <> 0`,
];

/** The incident: tenants hard-deleted, children first (written here, not by the engine). */
function deleteTenantsSql(ids: number[]): string {
  const list = `ARRAY[${ids.join(',')}]::bigint[]`;
  return `BEGIN;
    UPDATE app.teams SET lead_id = NULL WHERE tenant_id = ANY(${list});
    DELETE FROM app.members WHERE tenant_id = ANY(${list});
    DELETE FROM app.teams WHERE tenant_id = ANY(${list});
    DELETE FROM app.nodes WHERE tenant_id = ANY(${list});
    DELETE FROM app.users WHERE tenant_id = ANY(${list});
    DELETE FROM app.tenants WHERE id = ANY(${list});
    COMMIT;`;
}

/** Rows of some tenants per table (every owned table carries tenant_id; the root is its id); regions whole. */
function tenantFilter(ids: number[]): (table: string) => string | null {
  const list = `ARRAY[${ids.join(',')}]::bigint[]`;
  return (table) =>
    table === 'app.regions' ? 'true' : table === 'app.tenants' ? `t.id = ANY(${list})` : `t.tenant_id = ANY(${list})`;
}
const othersThan = (ids: number[]) => {
  const list = `ARRAY[${ids.join(',')}]::bigint[]`;
  return (table: string) =>
    table === 'app.regions'
      ? 'true'
      : table === 'app.tenants'
        ? `NOT t.id = ANY(${list})`
        : `NOT t.tenant_id = ANY(${list})`;
};

interface Statement {
  client: number;
  text: string;
  values?: unknown[];
  rowCount?: number | null;
  error?: string;
}

/** Records every statement the pool's sessions run: session, text, parameters, and once done its row count or error. */
function record(pool: pg.Pool): Statement[] {
  const statements: Statement[] = [];
  let clients = 0;
  pool.on('connect', (client) => {
    const id = ++clients;
    const query = client.query.bind(client) as (...args: unknown[]) => unknown;
    (client as unknown as { query: (...args: unknown[]) => unknown }).query = (...args: unknown[]) => {
      const first = args[0] as { text?: string; values?: unknown[] } | string;
      const entry: Statement = {
        client: id,
        text: typeof first === 'string' ? first : (first.text ?? ''),
        values: typeof first === 'string' ? (args[1] as unknown[] | undefined) : (first.values ?? undefined),
      };
      statements.push(entry);
      // A COPY is a stream, not a promise: its error reaches it through handleError (wrapped, so that no listener is
      // added: the product's own handling of the stream's 'error' stays as it is).
      const submittable = first as { handleError?: (e: { code?: string }, ...rest: unknown[]) => unknown };
      if (typeof first !== 'string' && typeof submittable.handleError === 'function') {
        const handleError = submittable.handleError.bind(first);
        submittable.handleError = (e, ...rest) => {
          entry.error = e?.code ?? 'error';
          return handleError(e, ...rest);
        };
      }
      const result = query(...args);
      if (result && typeof (result as Promise<unknown>).then === 'function')
        (result as Promise<pg.QueryResult>).then(
          (r) => void (entry.rowCount = r?.rowCount ?? null),
          (e: { code?: string }) => void (entry.error = e?.code ?? 'error'),
        );
      return result;
    };
  });
  return statements;
}

interface Transaction {
  client: number;
  statements: Statement[];
  end?: 'COMMIT' | 'ROLLBACK';
}

/** The recorded statements grouped into transactions (BEGIN to COMMIT or ROLLBACK, per session), in BEGIN order. */
function transactions(statements: Statement[]): Transaction[] {
  const all: Transaction[] = [];
  const open = new Map<number, Transaction>();
  for (const s of statements) {
    if (/^BEGIN\b/.test(s.text)) {
      const t: Transaction = { client: s.client, statements: [] };
      open.set(s.client, t);
      all.push(t);
      continue;
    }
    const t = open.get(s.client);
    if (!t) continue;
    if (s.text === 'COMMIT' || s.text === 'ROLLBACK') {
      t.end = s.text;
      open.delete(s.client);
    } else t.statements.push(s);
  }
  return all;
}

/** The table a statement COPYs into, straight into the live target (not a staging table). */
const copyTarget = (s: Statement) => /^COPY "app"\."(\w+)" \(.*\) FROM STDIN$/s.exec(s.text)?.[1];
/** The fill of chunked-direct.ts: `UPDATE target SET column = v.value FROM unnest(keys, values)`. */
const fillOf = (s: Statement) => /^UPDATE "app"\."(\w+)" t SET "(\w+)" = v\.value::\S+\s+FROM unnest\(/.exec(s.text);
/** A merge of staged rows into a live table (the staged paths). */
const mergeInto = (s: Statement) => /^INSERT INTO "app"\."(\w+)"/.exec(s.text)?.[1];

/** Every FK of live's app schema, read from the catalog: constraint, child, parent, columns. */
async function foreignKeys(url: string) {
  return query<{ name: string; child: string; parent: string; columns: string[]; referenced: string[] }>(
    url,
    `SELECT c.conname AS name, c.conrelid::regclass::text AS child, c.confrelid::regclass::text AS parent,
            (SELECT array_agg(quote_ident(a.attname) ORDER BY k.i) FROM unnest(c.conkey) WITH ORDINALITY k(n, i)
               JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n) AS columns,
            (SELECT array_agg(quote_ident(a.attname) ORDER BY k.i) FROM unnest(c.confkey) WITH ORDINALITY k(n, i)
               JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n) AS referenced
     FROM pg_constraint c JOIN pg_namespace s ON s.oid = c.connamespace
     WHERE c.contype = 'f' AND s.nspname = 'app' ORDER BY 1`,
  );
}

/** References in live, of any row, that find no parent: constraint -> rows (only those with some). */
async function danglingReferences(client: pg.Client | pg.PoolClient, url: string): Promise<Record<string, number>> {
  const fks = await foreignKeys(url);
  expect(fks.length).toBe(11);
  const out: Record<string, number> = {};
  for (const fk of fks) {
    const notNull = fk.columns.map((c) => `c.${c} IS NOT NULL`).join(' AND ');
    const match = fk.columns.map((c, i) => `p.${fk.referenced[i]} = c.${c}`).join(' AND ');
    const { rows } = await client.query<{ n: string }>(
      `SELECT count(*) AS n FROM ${fk.child} c WHERE ${notNull} AND NOT EXISTS (SELECT 1 FROM ${fk.parent} p WHERE ${match})`,
    );
    if (Number(rows[0]!.n) > 0) out[fk.name] = Number(rows[0]!.n);
  }
  return out;
}

async function orphansIn(url: string): Promise<Record<string, number>> {
  return withClient(url, (c) => danglingReferences(c, url));
}

/**
 * From another session: tries `sql` in a transaction that it rolls back, under a lock_timeout. 'ok' when it ran (so a
 * DELETE would have gone through), else the SQLSTATE it failed with (55P03: it waited for a lock).
 */
async function attempt(url: string, sql: string, values: unknown[]): Promise<string> {
  const client = new pg.Client({ connectionString: url, application_name: 'engine-direct-other-session' });
  await client.connect();
  try {
    await client.query('BEGIN');
    await client.query(`SET LOCAL lock_timeout = '300ms'`);
    try {
      await client.query(sql, values);
      return 'ok';
    } catch (error) {
      return (error as { code?: string }).code ?? 'error';
    } finally {
      await client.query('ROLLBACK');
    }
  } finally {
    await client.end();
  }
}

describe('direct copy paths', () => {
  const pools = new Pools();
  let sourceName: string;
  let scratchUrl: string;
  let plan: Plan;
  /** Rows per owned table of the big tenant in the backup. */
  const bigRows: Record<string, number> = {};

  beforeAll(async () => {
    const source = await fresh('direct_src');
    sourceName = source.name;
    await withClient(source.url, async (c) => {
      await c.query(schemaSql);
      for (const sql of dataSql) await c.query(sql, sql.includes('$1') ? [oddCodes] : []);
    });
    scratchUrl = (await fresh('direct_scratch')).url;
    dumpAndRestore(source.url, scratchUrl);
    const planLive = await liveWith([bigTenant]);
    plan = await buildPlan({ scratch: pools.get(scratchUrl), live: pools.get(planLive), tenantRoot: 'app.tenants' });
    expect(plan.fkEnforcement).toBe('replica');
    for (const t of owned) {
      const [row] = await query<{ n: string }>(
        scratchUrl,
        `SELECT count(*) AS n FROM ${t} t WHERE ${tenantFilter([bigTenant])(t)}`,
      );
      bigRows[t] = Number(row!.n);
    }
    expect(bigRows).toEqual({
      'app.tenants': 1,
      'app.users': 31,
      'app.nodes': 160,
      'app.teams': 40,
      'app.members': 80,
    });
  });
  afterAll(() => pools.closeAll());

  /** A live copy of the source with the given tenants deleted, then `extra` SQL, then the DELETE/TRUNCATE audit. */
  async function liveWith(deleted: number[], extra = ''): Promise<string> {
    const live = await fresh('direct_live', sourceName);
    if (deleted.length) await query(live.url, deleteTenantsSql(deleted));
    if (extra) await query(live.url, extra);
    await installDeleteAudit(live.url, ['app']);
    return live.url;
  }

  const copy = (live: string, tenantIds: number[], over: Partial<CopyTenantInput> = {}) =>
    copyTenant({
      scratch: pools.get(scratchUrl),
      live: pools.get(live),
      plan,
      tenantIds: tenantIds.map(String),
      conflict: 'fail',
      ...over,
    });

  const equalToBackup = async (live: string, ids: number[]) =>
    expect(await fingerprints(live, allTables, tenantFilter(ids))).toEqual(
      await fingerprints(scratchUrl, allTables, tenantFilter(ids)),
    );

  async function validated(live: string, tenantId: number) {
    const v = await validateTenant({
      scratch: pools.get(scratchUrl),
      live: pools.get(live),
      plan,
      tenantId: String(tenantId),
      conflict: 'fail',
    });
    expect(v.orphansCheckedBy).toBe('validation');
    expect(v.orphans).toEqual([]);
    expect(v.tables.filter((t) => !t.match)).toEqual([]);
    expect(v.ok).toBe(true);
  }

  /** Nothing but the product's own sessions touched live, and none of them deleted or truncated. */
  async function noDestructiveStatement(live: string) {
    expect(await destructiveStatements(live)).toEqual([]);
    expect(await auditEvents(live)).toEqual([]);
  }

  /**
   * Rows of the big tenant in live whose reference is NULL where the backup's is set (the fill has not run yet), over
   * every column a chunked copy may fill.
   */
  async function pendingFills(live: string): Promise<number> {
    let pending = 0;
    for (const [table, column] of [
      ['app.nodes', 'parent_id'],
      ['app.teams', 'lead_id'],
      ['app.members', 'team_id'],
      ['app.members', 'mentor_id'],
    ]) {
      const sql = `SELECT id::text AS id, ${column} IS NULL AS unset FROM ${table} WHERE tenant_id = ${bigTenant}`;
      const inBackup = new Map(
        (await query<{ id: string; unset: boolean }>(scratchUrl, sql)).map((r) => [r.id, r.unset]),
      );
      for (const r of await query<{ id: string; unset: boolean }>(live, sql))
        if (r.unset && inBackup.get(r.id) === false) pending++;
    }
    return pending;
  }

  /** Keys (as text) of the big tenant's rows whose column references a row with a key that sorts after their own. */
  async function forwardKeys(table: string, column: string): Promise<string[]> {
    return keysWhere(table, `${column} > id`);
  }

  /** Keys (as text, sorted in Node) of the big tenant's rows of `table` in the backup that satisfy `condition`. */
  async function keysWhere(table: string, condition: string): Promise<string[]> {
    const rows = await query<{ id: string }>(
      scratchUrl,
      `SELECT id::text AS id FROM ${table} WHERE tenant_id = ${bigTenant} AND ${condition}`,
    );
    return rows.map((r) => r.id).sort();
  }

  it('a. chunked direct: COPY straight into the targets, the fill sets exactly the forward references', async () => {
    const live = await liveWith([bigTenant]);
    const others = othersThan([bigTenant]);
    const othersBefore = await fingerprints(live, allTables, others);
    const livePool = pools.get(live);
    const statements = record(livePool);
    const checkpoints: CopyCheckpoint[] = [];
    const pendingSeen: number[] = [];
    const result = await copy(live, [bigTenant], {
      chunkRows,
      onCheckpoint: async (c) => {
        checkpoints.push(c);
        // After every committed chunk: not one reference of live dangles, whatever the fill has not set yet.
        expect(await orphansIn(live)).toEqual({});
        pendingSeen.push(await pendingFills(live));
      },
    });
    const copyStatements = [...statements];

    expect(result.path).toBe('chunked-direct');
    expect(result.chunked).toBe(true);
    expect(result.directRefused).toBeUndefined();
    expect(Object.fromEntries(owned.map((t) => [t, result.rows[t]]))).toEqual(bigRows);
    expect(result.parentClosure).toEqual([]);
    // Some of the checks ran while a fill was still due; none is due at the end.
    expect(Math.max(...pendingSeen)).toBeGreaterThan(0);
    expect(await pendingFills(live)).toBe(0);
    expect(checkpoints.length).toBeGreaterThan(10);

    await equalToBackup(live, [bigTenant]);
    expect(await fingerprints(live, allTables, others)).toEqual(othersBefore);
    await validated(live, bigTenant);
    expect(await orphansIn(live)).toEqual({});
    await noDestructiveStatement(live);

    // Every transaction of the copy committed: the chunks (a one-transaction attempt, when the copy makes one before
    // it finds the tenant too large, is rolled back and left out here).
    const txs = transactions(copyStatements);
    expect(txs.filter((t) => t.end === 'ROLLBACK').length).toBeLessThanOrEqual(1);
    const chunks = txs.filter((t) => t.end === 'COMMIT');
    expect(chunks.length).toBeGreaterThan(10);
    const copies = chunks.flatMap((t) => t.statements.flatMap((s) => copyTarget(s) ?? []));
    const perTable = Object.fromEntries(owned.map((t) => [t, copies.filter((c) => `app.${c}` === t).length]));
    expect(perTable).toEqual(Object.fromEntries(owned.map((t) => [t, Math.ceil(bigRows[t]! / chunkRows)])));
    // One COPY per chunk and no chunk with two: each transaction COPYs one table's chunk at most.
    expect(chunks.every((t) => t.statements.filter((s) => copyTarget(s)).length <= 1)).toBe(true);
    // Nothing of the tenant merged from staging: the only INSERT is the shared regions' parent closure.
    expect([...new Set(chunks.flatMap((t) => t.statements.flatMap((s) => mergeInto(s) ?? [])))]).toEqual(['regions']);

    // The fill: by key, exactly the rows whose reference went in NULL, each UPDATE setting every key it was given.
    const fills = chunks.flatMap((t) => t.statements.filter((s) => fillOf(s)));
    expect(fills.every((s) => s.rowCount === (s.values![0] as string[]).length)).toBe(true);
    const filled = (table: string, column: string) =>
      fills
        .filter((s) => fillOf(s)![1] === table && fillOf(s)![2] === column)
        .flatMap((s) => s.values![0] as string[])
        .sort();
    const nodesForward = await forwardKeys('app.nodes', 'parent_id');
    const nodesBackward = await query<{ n: string }>(
      scratchUrl,
      `SELECT count(*) AS n FROM app.nodes WHERE tenant_id = ${bigTenant} AND parent_id < id`,
    );
    // Random uuids: both directions are there, so the test can tell a row-level rule from "every parent in NULL".
    expect(nodesForward.length).toBeGreaterThan(10);
    expect(Number(nodesBackward[0]!.n)).toBeGreaterThan(10);
    expect(filled('nodes', 'parent_id')).toEqual(nodesForward);
    // The cycle: the column of its first table (in the plan's order) that references the later one, every value.
    const teamsFirst =
      plan.tables.findIndex((t) => t.key === 'app.teams') < plan.tables.findIndex((t) => t.key === 'app.members');
    const [forwardTable, forwardColumn] = teamsFirst ? ['teams', 'lead_id'] : ['members', 'team_id'];
    const cycleForward = await keysWhere(`app.${forwardTable}`, `${forwardColumn} IS NOT NULL`);
    expect(cycleForward.length).toBeGreaterThan(10);
    expect(filled(forwardTable, forwardColumn)).toEqual(cycleForward);
    // Keys above 2^53: a mentor above the row's key is set afterwards, one below goes in with its row, unless another
    // deferred column of the row goes in NULL (the cycle's team_id, when members come first): a row's deferred columns
    // are NULL all together or not at all, as the staged fill pass of a resumed copy expects.
    const mentorsForward = await forwardKeys('app.members', 'mentor_id');
    expect(mentorsForward.length).toBeGreaterThan(10);
    const mentorsFilled = await keysWhere(
      'app.members',
      `mentor_id IS NOT NULL AND (mentor_id > id${teamsFirst ? '' : ' OR team_id IS NOT NULL'})`,
    );
    expect(filled('members', 'mentor_id')).toEqual(mentorsFilled);
    if (!teamsFirst) expect(mentorsFilled.length).toBeGreaterThan(mentorsForward.length);
    // And nothing else was filled.
    const filledColumns = [...new Set(fills.map((s) => `${fillOf(s)![1]}.${fillOf(s)![2]}`))].sort();
    expect(filledColumns).toEqual(['members.mentor_id', 'nodes.parent_id', `${forwardTable}.${forwardColumn}`].sort());
  });

  it.each([
    [
      'inside nodes, with parents still to fill',
      (c: CopyCheckpoint, p: Plan) => c.tableIndex === index(p, 'app.nodes') && c.position === 3 * chunkRows,
    ],
    [
      'between the two tables of the cycle, its forward column still NULL',
      (c: CopyCheckpoint, p: Plan) => c.tableIndex === cycleSecond(p) && !c.position,
    ],
  ])('b. a copy stopped %s leaves no dangling reference, and resumes to the backup', async (_name, stopAt) => {
    const live = await liveWith([bigTenant]);
    const checkpoints: CopyCheckpoint[] = [];
    const stop = new Error('stopped by the test');
    const stopped = await copy(live, [bigTenant], {
      chunkRows,
      onCheckpoint: (c) => {
        checkpoints.push(c);
        if (stopAt(c, plan)) throw stop;
      },
    }).then(
      () => null,
      (e: unknown) => e,
    );
    expect(stopped).toBe(stop);
    const last = checkpoints[checkpoints.length - 1]!;
    expect(stopAt(last, plan)).toBe(true);
    expect(await orphansIn(live)).toEqual({});
    // Stopped inside a unit whose fill has not run: live holds NULL where the backup has a reference.
    expect(await pendingFills(live)).toBeGreaterThan(0);

    const resumed = await copy(live, [bigTenant], { chunkRows, resumeFrom: last });
    expect(resumed.path).toBe('chunked');
    expect(Object.fromEntries(owned.map((t) => [t, resumed.rows[t]]))).toEqual(bigRows);
    await equalToBackup(live, [bigTenant]);
    await validated(live, bigTenant);
    expect(await orphansIn(live)).toEqual({});
    await noDestructiveStatement(live);
  });

  /**
   * In each transaction of the copy, right before its COMMIT: for each table the transaction COPYed, the DELETE that
   * another session tries of a parent the transaction references but did not insert.
   */
  async function deletesBeforeCommit(
    live: string,
    statements: Statement[],
    targets: Record<string, { sql: string; values: unknown[] }>,
    outcomes: Array<{ table: string; outcome: string }>,
  ): Promise<void> {
    const current = transactions(statements).find(
      (t) => !t.end && t.statements.at(-1)?.text === 'SELECT pg_current_xact_id()::text AS id',
    );
    expect(current).toBeDefined();
    for (const table of current!.statements.flatMap((s) => copyTarget(s) ?? [])) {
      const target = targets[table];
      if (target) outcomes.push({ table, outcome: await attempt(live, target.sql, target.values) });
    }
  }

  it('c. chunked direct: a parent a chunk references but did not insert cannot be deleted before its COMMIT', async () => {
    const live = await liveWith([bigTenant]);
    const statements = record(pools.get(live));
    const outcomes: Array<{ table: string; outcome: string }> = [];
    const targets = {
      // A shared row that only this tenant references.
      tenants: { sql: `DELETE FROM app.regions WHERE code = $1`, values: ['only-one'] },
      // A user committed by an earlier chunk, referenced by one node only.
      nodes: { sql: `DELETE FROM app.users WHERE id = $1`, values: [soleUser] },
    };
    const result = await copy(live, [bigTenant], {
      chunkRows,
      beforeCommit: () => deletesBeforeCommit(live, statements, targets, outcomes),
    });
    expect(result.path).toBe('chunked-direct');
    // The tenant's one chunk held the region: the DELETE waited (lock_timeout). Unlocked, it would have gone through.
    expect(outcomes.filter((o) => o.table === 'tenants').map((o) => o.outcome)).toEqual(['55P03']);
    // Nodes: the chunks before the one with node 77 do not reference the user (its DELETE would go through), the one
    // with it holds the user until COMMIT, and once that chunk is committed PostgreSQL's own FK check refuses.
    const nodeOutcomes = outcomes.filter((o) => o.table === 'nodes').map((o) => o.outcome);
    expect(nodeOutcomes).toHaveLength(Math.ceil(bigRows['app.nodes']! / chunkRows));
    const held = nodeOutcomes.indexOf('55P03');
    expect(held).toBeGreaterThanOrEqual(0);
    expect(nodeOutcomes.slice(0, held).every((o) => o === 'ok')).toBe(true);
    expect(nodeOutcomes.slice(held + 1).every((o) => o === '23503')).toBe(true);
    expect(await attempt(live, targets.tenants.sql, targets.tenants.values)).toBe('23503');
    await equalToBackup(live, [bigTenant]);
    await validated(live, bigTenant);
    await noDestructiveStatement(live);
  });

  it('c. direct, one transaction: a shared parent it references cannot be deleted before its COMMIT', async () => {
    const live = await liveWith([3]);
    const statements = record(pools.get(live));
    const outcomes: Array<{ table: string; outcome: string }> = [];
    const targets = { tenants: { sql: `DELETE FROM app.regions WHERE code = $1`, values: ['only-three'] } };
    const result = await copy(live, [3], {
      beforeCommit: () => deletesBeforeCommit(live, statements, targets, outcomes),
    });
    expect(result.path).toBe('direct');
    expect(outcomes).toEqual([{ table: 'tenants', outcome: '55P03' }]);
    expect(await attempt(live, targets.tenants.sql, targets.tenants.values)).toBe('23503');
    await equalToBackup(live, [3]);
    await validated(live, 3);
    await noDestructiveStatement(live);
  });

  it('c. a reference to a parent live lacks: DanglingReferenceError, nothing committed on the direct path', async () => {
    // Tenant 4's nodes point at a user of tenant 5; both were deleted, only 4 is restored.
    const live = await liveWith([4, 5]);
    const before = await fingerprints(live, allTables);
    const statements = record(pools.get(live));
    const error = await copy(live, [4]).then(
      () => null,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(DanglingReferenceError);
    expect((error as DanglingReferenceError).message).toMatch(/app\.nodes.*nodes_owner_id_fkey: 1\b/s);
    expect((error as DanglingReferenceError).message).toContain('Nothing was committed');
    // It was the direct path that found it: the nodes went by COPY into the target, then the whole unit rolled back.
    const txs = transactions(statements);
    expect(txs.map((t) => t.end)).toEqual(['ROLLBACK']);
    expect(txs[0]!.statements.some((s) => copyTarget(s) === 'nodes')).toBe(true);
    expect(txs[0]!.statements.flatMap((s) => mergeInto(s) ?? []).filter((t) => t !== 'regions')).toEqual([]);
    expect(await fingerprints(live, allTables)).toEqual(before);
    await noDestructiveStatement(live);

    // In chunks: what was committed has no dangling reference, and the message says what was committed.
    const chunked = await copy(live, [4], { chunkRows: 5 }).then(
      () => null,
      (e: unknown) => e,
    );
    expect(chunked).toBeInstanceOf(DanglingReferenceError);
    expect((chunked as Error).message).toMatch(/chunk\(s\) were committed before this failure/);
    expect((chunked as Error).message).not.toContain('Nothing was committed');
    expect(await orphansIn(live)).toEqual({});
    const [root] = await query<{ n: string }>(live, 'SELECT count(*) AS n FROM app.tenants WHERE id = 4');
    expect(root!.n).toBe('1');
    await noDestructiveStatement(live);
  });

  it('d. a key another tenant holds: staged after the direct path, the same CrossTenantConflictError, nothing committed', async () => {
    // After the incident, a user of tenant 7 took the email of tenant 6's last user.
    const live = await liveWith([6], `UPDATE app.users SET email = 'u4@t6.example' WHERE id = 7001`);
    const before = await fingerprints(live, allTables);
    const statements = record(pools.get(live));
    const outcome = (p: Promise<CopyResult>) =>
      p.then(
        () => null,
        (e: Error) => ({ name: e.name, message: e.message, cls: e.constructor }),
      );
    for (const conflict of ['fail', 'skip', 'overwrite'] as ConflictPolicy[]) {
      statements.length = 0;
      const direct = await outcome(copy(live, [6], { conflict }));
      expect(direct?.cls).toBe(CrossTenantConflictError);
      // The direct path tried first: its COPY into users met the key, the unit rolled back, then the staged path.
      const txs = transactions(statements);
      expect(txs.map((t) => t.end)).toEqual(['ROLLBACK', 'ROLLBACK']);
      expect(txs[0]!.statements.find((s) => copyTarget(s) === 'users')?.error).toBe('23505');
      expect(txs[1]!.statements.some((s) => copyTarget(s))).toBe(false);
      const staged = await outcome(copy(live, [6], { conflict, directCopy: false }));
      expect(direct).toEqual(staged);
      expect(await fingerprints(live, allTables)).toEqual(before);
    }
    await noDestructiveStatement(live);
  });

  it('d. chunked direct: a key another tenant holds hands over from the last checkpoint, then the same error', async () => {
    const live = await liveWith([6], `UPDATE app.users SET email = 'u4@t6.example' WHERE id = 7001`);
    const statements = record(pools.get(live));
    const checkpoints: CopyCheckpoint[] = [];
    const error = await copy(live, [6], { chunkRows: 2, onCheckpoint: (c) => void checkpoints.push(c) }).then(
      () => null,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(CrossTenantConflictError);
    // The users' first chunk (6001, 6002) is in; the second met the key; the staged path went on from there.
    expect((error as Error).message).toMatch(/app\.users: 1 chunk\(s\), 2 row\(s\) written/);
    const users = await query<{ id: string }>(
      live,
      'SELECT id::text AS id FROM app.users WHERE tenant_id = 6 ORDER BY 1',
    );
    expect(users.map((u) => u.id)).toEqual(['6001', '6002']);
    const usersIndex = index(plan, 'app.users');
    expect(checkpoints.at(-1)).toMatchObject({ tableIndex: usersIndex, position: 2 });
    const txs = transactions(statements);
    const refused = txs.findIndex((t) => t.statements.some((s) => copyTarget(s) === 'users' && s.error === '23505'));
    expect(refused).toBeGreaterThan(0);
    // After the hand-over, nothing before the users was copied again (no COPY, no merge into the tenants).
    const after = txs.slice(refused + 1).flatMap((t) => t.statements);
    expect(after.some((s) => copyTarget(s) || ['tenants', 'regions'].includes(mergeInto(s) ?? ''))).toBe(false);
    expect(await orphansIn(live)).toEqual({});
    await noDestructiveStatement(live);
  });

  it.each(['skip', 'overwrite', 'fail'] as ConflictPolicy[])(
    'd. a partial tenant goes staged (directRefused 23505) and ends as with the direct path off, policy %s',
    async (conflict) => {
      // Tenant 8's root is in live; its leaf nodes were deleted, and one of its users changed since the backup.
      const incident = `DELETE FROM app.nodes WHERE tenant_id = 8 AND k > 6; UPDATE app.users SET email = 'changed@t8.example' WHERE id = 8002`;
      const withDirect = await liveWith([], incident);
      const without = await liveWith([], incident);
      const run = (live: string, directCopy?: boolean) =>
        copy(live, [8], { conflict, ...(directCopy === false ? { directCopy } : {}) }).then(
          (r) => ({ ok: r }),
          (e: Error) => ({ error: { name: e.name, message: e.message } }),
        );
      const a = await run(withDirect);
      const b = await run(without, false);
      if ('ok' in a && 'ok' in b) {
        expect(a.ok.path).toBe('staged');
        expect(a.ok.directRefused).toMatch(/^23505/);
        expect(b.ok.directRefused).toBeUndefined();
        const { durationMs: _a, throttledMs: _ta, directRefused: _r, ...restA } = a.ok;
        const { durationMs: _b, throttledMs: _tb, ...restB } = b.ok;
        expect(restA).toEqual(restB);
        expect(a.ok.rows['app.nodes']).toBe(6);
      } else expect(a).toEqual(b);
      expect(conflict === 'fail' ? 'error' in a : 'ok' in a).toBe(true);
      expect(await fingerprints(withDirect, allTables)).toEqual(await fingerprints(without, allTables));
      const [email] = await query<{ email: string }>(withDirect, 'SELECT email FROM app.users WHERE id = 8002');
      expect(email!.email).toBe(conflict === 'overwrite' ? 'u2@t8.example' : 'changed@t8.example');
      await noDestructiveStatement(withDirect);
    },
  );

  it('e. live refuses a chunk while Node still writes it: the copy hands over cleanly, no unhandled rejection', async () => {
    // Tenant 9: more nodes than one read of 4096 lines, in one chunk. After the incident, a node of tenant 2 took the id
    // of tenant 9's first node (in key order): the first row the chunk writes.
    const [first] = await query<{ id: string }>(
      scratchUrl,
      'SELECT id::text AS id FROM app.nodes WHERE tenant_id = 9 ORDER BY id LIMIT 1',
    );
    const live = await liveWith(
      [9],
      `INSERT INTO app.nodes (id, tenant_id, k, label) VALUES ('${first!.id}', 2, 999, 'squatter')`,
    );
    const statements = record(pools.get(live));
    // The pacer, called before each write of a chunk, holds the chunk's second write until live has refused the COPY
    // of its first: the refusal comes while the chunk is still being written, every time.
    const paced = new Map<Statement, number>();
    let heldUntilRefused = false;
    const pacer = {
      pipe: () => new PassThrough(),
      pace: async () => {
        const copying = statements.filter((s) => copyTarget(s)).at(-1);
        if (!copying || copyTarget(copying) !== 'nodes') return;
        paced.set(copying, (paced.get(copying) ?? 0) + 1);
        if (paced.get(copying) !== 2) return;
        for (let turn = 0; copying.error === undefined && turn < 1_000_000; turn++)
          await new Promise((resolve) => setImmediate(resolve));
        heldUntilRefused = copying.error === '23505';
      },
    };
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => void unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    let error: unknown;
    try {
      error = await copy(live, [9], { chunkRows: largeChunk, pacer }).then(
        () => null,
        (e: unknown) => e,
      );
      await new Promise((resolve) => setImmediate(resolve));
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
    expect(heldUntilRefused).toBe(true);
    // Handed over to the staged path, whose cross-tenant check names the conflict (not a TypeError of the stream).
    expect(error).toBeInstanceOf(CrossTenantConflictError);
    expect((error as Error).message).toMatch(/chunk\(s\) were committed before this failure/);
    expect(unhandled).toEqual([]);
    const [nodes] = await query<{ n: string }>(live, 'SELECT count(*) AS n FROM app.nodes WHERE tenant_id = 9');
    expect(nodes!.n).toBe('0');
    expect(await orphansIn(live)).toEqual({});
    await noDestructiveStatement(live);
  });
});

function index(plan: Plan, table: string): number {
  const i = plan.tables.findIndex((t) => t.key === table);
  expect(i).toBeGreaterThanOrEqual(0);
  return i;
}

/** The index of the later table of the teams/members cycle. */
function cycleSecond(plan: Plan): number {
  return Math.max(index(plan, 'app.teams'), index(plan, 'app.members'));
}
