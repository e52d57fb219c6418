/**
 * The incident window (issue 26): what changed between T0 (just before the incident) and T1 (just after it), both
 * recovered from the WAL archive as scratches on one host, and a three-way revert of it against live now.
 *
 * `narrowToWindow` runs once per restore, on the scratch host, before any unit:
 * 1. The delta. Every owned table's rows on T1 are streamed as (tenant, key hash, row hash) into the T0 scratch and
 *    compared there with T0's own rows: `deleted` (the key is gone at T1), `changed` (same key, other content; both
 *    versions' hashes kept), and, counted only, `added` (keys only at T1). Users' activity before T0 or after T1 is not
 *    in it, by construction.
 * 2. The conflicts, against live now, for the tenants the delta names: a deleted row whose key live holds with other
 *    content; a changed row that live no longer holds (deleted since) or holds with a third content (changed since).
 * 3. The T0 scratch is narrowed to the delta: every row of an owned table that the window did not delete or change is
 *    removed, except the rows the remaining ones need to be found as their tenant's (their parents on the ownership
 *    path). Those kept parents are unchanged since T0; one that live no longer holds is a conflict too, and is removed
 *    (a restore never brings back a row a user deleted). The units then restore from this scratch as for any restore:
 *    deleted rows are inserted (policy skip: a key live holds is kept, never written), and the changed rows are set
 *    back to T0 inside the same transaction only where live's row still hashes to its T1 version (copy/staged.ts
 *    revertChanged); any other row is a conflict, left as it is.
 *
 * Each phase is one transaction on the T0 scratch and records that it is done: a retry after a crash of the worker
 * skips what committed, and never computes a delta from a scratch already narrowed.
 */
import { heartbeat, cancellationSignal } from '@temporalio/activity';
import type { S3Client } from '@aws-sdk/client-s3';
import { pipeline } from 'node:stream/promises';
import { copyFrom, copyTo, escapeIdentifier as q, escapeLiteral, type PoolClient, type Pools } from './db';
import { qualify, type Plan, type PlanTable } from './plan';
import type { ArtifactsRef, ObjectRef, PlanRef, RecoveryTarget, TenantId } from './restore-types';
import { planLoader } from './restore-activities';
import { putJson } from './s3';
import { rowHash, setSuspects, tableTriples } from './sql/discover';
import { windowSchema } from './sql/window';
import { openSession, closeSession, sessionSetup } from './sql/session';

const delta = `${windowSchema}.delta`;
const added = `${windowSchema}.added`;
const conflicts = `${windowSchema}.conflicts`;
const done = `${windowSchema}.done`;

export type ConflictReason =
  'live holds another row with its key' | 'deleted since the window' | 'changed since the window';

export interface NarrowToWindowInput {
  restoreId: string;
  /** The T0 scratch (written: narrowed to the delta) and the T1 scratch (read). */
  scratch: string;
  windowEnd: string;
  live: string;
  plan: PlanRef;
  from: RecoveryTarget;
  to: RecoveryTarget;
  artifacts: ArtifactsRef;
}

export interface WindowTenant {
  tenantId: TenantId;
  /** Per table: rows the window deleted, changed, added, and the rows that conflict with live now. */
  deleted: Record<string, number>;
  changed: Record<string, number>;
  added: Record<string, number>;
  conflicts: Record<string, number>;
}

export interface WindowConflict {
  tenantId: TenantId;
  table: string;
  key: string[];
  reason: ConflictReason | 'deleted since the window (a parent of rows the incident deleted)';
}

/** The input with its plan read. */
type Narrowing = Omit<NarrowToWindowInput, 'plan'> & { plan: Plan };

/** What the workflow keeps (small): the tenants, and where the detail is. */
export interface WindowSummary {
  object: ObjectRef;
  /** Tenants the window deleted or changed rows of. */
  touched: TenantId[];
  /** Tenants with at least one conflict. */
  conflicted: TenantId[];
  rows: { deleted: number; changed: number; added: number; conflicts: number };
}

export const windowObject = (artifacts: ArtifactsRef): ObjectRef => ({
  bucket: artifacts.bucket,
  key: `${artifacts.prefix}window.json`,
});

const owned = (plan: Plan) => plan.tables.filter((t) => t.role !== 'shared');
const keyHash = (table: PlanTable, alias = 't') => rowHash(table, table.primaryKey, alias);
const keyText = (table: PlanTable) => `ARRAY[${table.primaryKey.map((c) => `t.${q(c)}::text`).join(', ')}]`;

async function phaseDone(scratch: PoolClient, phase: string): Promise<boolean> {
  const { rows } = await scratch.query(`SELECT 1 FROM ${done} WHERE phase = $1`, [phase]);
  return rows.length > 0;
}

/** Streams the rows of `sql` (a SELECT) from one session into `target` (a COPY ... FROM STDIN) of another. */
async function stream(from: PoolClient, sql: string, to: PoolClient, target: string): Promise<void> {
  await pipeline(from.query(copyTo(`COPY (${sql}) TO STDOUT`)), to.query(copyFrom(target)), {
    signal: cancellationSignal(),
  });
}

/** Phase 1: the delta of every owned table, and each tenant's conflicts against live now. */
async function computeDelta(
  pools: Pools,
  input: Narrowing,
  scratch: PoolClient,
  beat: (table: string) => void,
): Promise<void> {
  const { plan } = input;
  const t1 = await openSession(
    pools.get(input.windowEnd),
    sessionSetup({ mode: 'snapshot', canonicalText: true, tenantIds: [] }),
  );
  const live = await openSession(
    pools.get(input.live),
    sessionSetup({ mode: 'snapshot', canonicalText: true, tenantIds: [] }),
  );
  try {
    await scratch.query(
      `CREATE TEMP TABLE w_t1 (tenant text, k bigint, r bigint) ON COMMIT DROP;
       CREATE TEMP TABLE w_t0 (tenant text, k bigint, r bigint) ON COMMIT DROP;
       CREATE TEMP TABLE w_live (k bigint, r bigint) ON COMMIT DROP`,
    );
    for (const table of owned(plan)) {
      beat(table.key);
      const key = escapeLiteral(table.key);
      await scratch.query('TRUNCATE w_t1, w_t0');
      await stream(t1, tableTriples(plan, table), scratch, 'COPY w_t1 (tenant, k, r) FROM STDIN');
      await scratch.query(`INSERT INTO w_t0 ${tableTriples(plan, table)}`);
      await scratch.query('ANALYZE w_t1, w_t0');
      // A row reached by two ownership paths counts once, under the first tenant found.
      await scratch.query(
        `INSERT INTO ${delta} (table_key, tenant, k, t0, t1)
         SELECT ${key}, b.tenant, b.k, b.r, l.r FROM w_t0 b LEFT JOIN w_t1 l ON l.k = b.k
          WHERE l.k IS NULL OR l.r <> b.r
         ON CONFLICT DO NOTHING`,
      );
      await scratch.query(
        `INSERT INTO ${added} (table_key, tenant, n)
         SELECT ${key}, l.tenant, count(*) FROM w_t1 l WHERE NOT EXISTS (SELECT 1 FROM w_t0 b WHERE b.k = l.k)
          GROUP BY l.tenant`,
      );
    }
    // Live now, for every tenant the delta names, table by table: which keys it holds and with what content. A
    // parent kept in phase 2 may belong to a tenant with no delta row in its own table.
    const { rows } = await scratch.query<{ tenant: string }>(`SELECT DISTINCT tenant FROM ${delta}`);
    if (rows.length) await live.query(setSuspects(rows.map((r) => r.tenant)));
    for (const table of rows.length ? owned(plan) : []) {
      beat(table.key);
      const key = escapeLiteral(table.key);
      await scratch.query('TRUNCATE w_live');
      await stream(
        live,
        `SELECT k, r FROM (${tableTriples(plan, table, true)}) x`,
        scratch,
        'COPY w_live (k, r) FROM STDIN',
      );
      await scratch.query('ANALYZE w_live');
      await scratch.query(
        `INSERT INTO ${windowSchema}.live_keys (table_key, k) SELECT ${key}, k FROM w_live ON CONFLICT DO NOTHING`,
      );
      await scratch.query(
        `INSERT INTO ${conflicts} (table_key, tenant, k, reason)
         SELECT d.table_key, d.tenant, d.k,
                CASE WHEN d.t1 IS NULL THEN 'live holds another row with its key'
                     WHEN l.k IS NULL THEN 'deleted since the window'
                     ELSE 'changed since the window' END
           FROM ${delta} d LEFT JOIN w_live l ON l.k = d.k
          WHERE d.table_key = ${key}
            AND ((d.t1 IS NULL AND l.k IS NOT NULL AND l.r <> d.t0)
              OR (d.t1 IS NOT NULL AND (l.k IS NULL OR (l.r <> d.t1 AND l.r <> d.t0))))
         ON CONFLICT DO NOTHING`,
      );
      // The conflicting rows' keys, readable, for the report (from T0's own row).
      await scratch.query(
        `UPDATE ${conflicts} c SET key = x.key
           FROM (SELECT ${keyHash(table)} AS k, ${keyText(table)} AS key FROM ${qualify(plan, table.key)} t) x
          WHERE c.table_key = ${key} AND c.k = x.k`,
      );
    }
    await scratch.query(`INSERT INTO ${done} (phase) VALUES ('delta')`);
  } finally {
    await closeSession(t1);
    await closeSession(live);
  }
}

/**
 * Phase 2: the T0 scratch narrowed to the delta, children before parents (the plan's order reversed). A row stays when
 * the window deleted or changed it (a changed row deleted from live since is a conflict, and goes), or when a row that
 * stays references it (its tenant is found through it); such a parent that live no longer holds goes too, a conflict.
 */
async function narrow(input: Narrowing, scratch: PoolClient, beat: (table: string) => void): Promise<void> {
  const { plan } = input;
  // FK triggers off in this transaction: a parent may go before a child that does not stay (children go first anyway).
  await scratch.query('SET LOCAL session_replication_role = replica');
  const tables = owned(plan);
  const onPaths = new Set(
    plan.tables.flatMap((t) =>
      (t.paths ?? []).flatMap((path) => path.map((step) => `${step.from}|${step.constraint}`)),
    ),
  );
  for (const table of [...tables].reverse()) {
    beat(table.key);
    const key = escapeLiteral(table.key);
    // Only the FKs a row's tenant is found through (its ownership paths) keep a parent: another reference (a reply to
    // a comment, say) finds its parent in live, or the copy refuses it as dangling. A self-reference on no path would
    // otherwise keep every row that has a child, and call it a conflict in every tenant.
    const referenced = plan.tables
      .flatMap((child) =>
        child.foreignKeys
          .filter((fk) => fk.to === table.key && onPaths.has(`${child.key}|${fk.constraint}`))
          .map((fk) => ({ child, fk })),
      )
      .map(
        ({ child, fk }) =>
          `EXISTS (SELECT 1 FROM ${qualify(plan, child.key)} c WHERE ${fk.columns
            .map((col, i) => `c.${q(col)} = t.${q(fk.referencedColumns[i]!)}`)
            .join(' AND ')})`,
      );
    const inDelta = `EXISTS (SELECT 1 FROM ${delta} d WHERE d.table_key = ${key} AND d.k = ${keyHash(table)}
      AND NOT EXISTS (SELECT 1 FROM ${conflicts} c WHERE c.table_key = ${key} AND c.k = d.k AND c.reason = 'deleted since the window'))`;
    const needed = referenced.length ? `(${referenced.join(' OR ')})` : 'false';
    // A kept parent (not in the delta) that live lacks: a user deleted it since; it and what hangs under it stay out.
    // Its tenant through its ownership path (its own parents are still all there: parents come later in this loop).
    await scratch.query(
      `INSERT INTO ${conflicts} (table_key, tenant, k, reason, key)
       SELECT DISTINCT ON (x.k) ${key}, o.tenant, x.k, 'deleted since the window (a parent of rows the incident deleted)', x.key
         FROM (SELECT ${keyHash(table)} AS k, ${keyText(table)} AS key
                 FROM ${qualify(plan, table.key)} t WHERE NOT ${inDelta} AND ${needed}) x
         JOIN (${tableTriples(plan, table)}) o ON o.k = x.k
        WHERE o.tenant IN (SELECT tenant FROM ${delta})
          AND NOT EXISTS (SELECT 1 FROM ${windowSchema}.live_keys l WHERE l.table_key = ${key} AND l.k = x.k)
       ON CONFLICT DO NOTHING`,
    );
    await scratch.query(
      `DELETE FROM ${qualify(plan, table.key)} t WHERE NOT ${inDelta}
         AND (NOT ${needed} OR EXISTS (SELECT 1 FROM ${conflicts} c WHERE c.table_key = ${key} AND c.k = ${keyHash(table)}
                                        AND c.reason LIKE 'deleted since the window%'))`,
    );
  }
  await scratch.query(`INSERT INTO ${done} (phase) VALUES ('narrowed')`);
}

/** The delta and its conflicts per tenant and table, from the bookkeeping tables. */
async function summarize(input: Narrowing, scratch: PoolClient, s3: S3Client): Promise<WindowSummary> {
  const tenants = new Map<TenantId, WindowTenant>();
  const get = (id: TenantId) => {
    let t = tenants.get(id);
    if (!t) tenants.set(id, (t = { tenantId: id, deleted: {}, changed: {}, added: {}, conflicts: {} }));
    return t;
  };
  const counts = await scratch.query<{ tenant: string; table_key: string; deleted: string; changed: string }>(
    `SELECT tenant, table_key, count(*) FILTER (WHERE t1 IS NULL) AS deleted, count(*) FILTER (WHERE t1 IS NOT NULL) AS changed
       FROM ${delta} GROUP BY 1, 2`,
  );
  for (const r of counts.rows) {
    const t = get(r.tenant);
    if (Number(r.deleted)) t.deleted[r.table_key] = Number(r.deleted);
    if (Number(r.changed)) t.changed[r.table_key] = Number(r.changed);
  }
  const touched = [...tenants.keys()];
  const grown = await scratch.query<{ tenant: string; table_key: string; n: string }>(
    `SELECT tenant, table_key, n FROM ${added}`,
  );
  // Rows the window added are reported for every tenant, also one it did not otherwise touch (never deleted).
  for (const r of grown.rows) get(r.tenant).added[r.table_key] = Number(r.n);
  const listed = await scratch.query<{
    tenant: string;
    table_key: string;
    key: string[] | null;
    reason: WindowConflict['reason'];
  }>(`SELECT tenant, table_key, key, reason FROM ${conflicts} ORDER BY tenant, table_key, key`);
  const conflictList: WindowConflict[] = listed.rows.map((r) => ({
    tenantId: r.tenant,
    table: r.table_key,
    key: r.key ?? [],
    reason: r.reason,
  }));
  for (const c of conflictList) {
    const t = get(c.tenantId);
    t.conflicts[c.table] = (t.conflicts[c.table] ?? 0) + 1;
  }
  const sum = (pick: (t: WindowTenant) => Record<string, number>) =>
    [...tenants.values()].reduce((n, t) => n + Object.values(pick(t)).reduce((a, b) => a + b, 0), 0);
  const object = windowObject(input.artifacts);
  const summary: WindowSummary = {
    object,
    touched,
    conflicted: [...new Set(conflictList.map((c) => c.tenantId))],
    rows: {
      deleted: sum((t) => t.deleted),
      changed: sum((t) => t.changed),
      added: sum((t) => t.added),
      conflicts: conflictList.length,
    },
  };
  await putJson(s3, object, {
    from: input.from,
    to: input.to,
    ...summary.rows,
    tenants: [...tenants.values()],
    conflicts: conflictList,
  });
  return summary;
}

export function createWindowActivities({ pools, s3 }: { pools: Pools; s3: S3Client }) {
  const loadPlan = planLoader(s3);
  return {
    /** The delta of the window, its conflicts with live, and the T0 scratch narrowed to it (see the module's comment). */
    async narrowToWindow(raw: NarrowToWindowInput): Promise<WindowSummary> {
      const input: Narrowing = { ...raw, plan: await loadPlan(raw.plan) };
      const beat = (table: string) => heartbeat({ table });
      const t0 = await pools.get(input.scratch).connect();
      try {
        await t0.query(
          `CREATE SCHEMA IF NOT EXISTS ${windowSchema};
           CREATE TABLE IF NOT EXISTS ${done} (phase text PRIMARY KEY);
           CREATE TABLE IF NOT EXISTS ${delta} (table_key text, tenant text, k bigint, t0 bigint, t1 bigint, PRIMARY KEY (table_key, k));
           CREATE TABLE IF NOT EXISTS ${added} (table_key text, tenant text, n bigint);
           CREATE TABLE IF NOT EXISTS ${conflicts} (table_key text, tenant text, k bigint, reason text, key text[], PRIMARY KEY (table_key, k));
           CREATE TABLE IF NOT EXISTS ${windowSchema}.live_keys (table_key text, k bigint, PRIMARY KEY (table_key, k))`,
        );
        for (const [phase, run] of [
          ['delta', () => computeDelta(pools, input, t0, beat)],
          ['narrowed', () => narrow(input, t0, beat)],
        ] as const) {
          await t0.query('BEGIN');
          try {
            // Hash joins of whole tables in memory (the temp tables carry no index: they are joined once each).
            await t0.query(
              `SET LOCAL max_parallel_workers_per_gather = 0; SET LOCAL jit = off; SET LOCAL work_mem = '128MB'`,
            );
            if (!(await phaseDone(t0, phase))) await run();
            await t0.query('COMMIT');
          } catch (error) {
            await t0.query('ROLLBACK').catch(() => undefined);
            throw error;
          }
        }
        await t0.query('ANALYZE');
        return await summarize(input, t0, s3);
      } finally {
        t0.release();
      }
    },
  };
}
