/**
 * The incident window's first two phases on the T0 scratch: the delta of every owned table with each tenant's conflicts
 * against live, then scratch narrowed to what the window changed. Each is one transaction that records it is done.
 */
import { cancellationSignal } from '@temporalio/activity';
import { pipeline } from 'node:stream/promises';
import { copyFrom, copyTo, escapeIdentifier as q, escapeLiteral, type PoolClient, type Pools } from './db';
import { qualify, type Plan, type PlanTable } from './plan';
import { rowHash, setSuspects, tableTriples } from './sql/discover';
import type { Narrowing } from './window';
import { windowSchema } from './sql/window';
import { openSession, closeSession, sessionSetup } from './sql/session';

export const delta = `${windowSchema}.delta`;
export const added = `${windowSchema}.added`;
export const conflicts = `${windowSchema}.conflicts`;
export const done = `${windowSchema}.done`;

export const owned = (plan: Plan) => plan.tables.filter((t) => t.role !== 'shared');
const keyHash = (table: PlanTable, alias = 't') => rowHash(table, table.primaryKey, alias);
export const keyText = (table: PlanTable) => `ARRAY[${table.primaryKey.map((c) => `t.${q(c)}::text`).join(', ')}]`;

export async function phaseDone(scratch: PoolClient, phase: string): Promise<boolean> {
  const { rows } = await scratch.query(`SELECT 1 FROM ${done} WHERE phase = $1`, [phase]);
  return rows.length > 0;
}

/** Streams the rows of `sql` (a SELECT) from one session into `target` (a COPY ... FROM STDIN) of another. */
export async function stream(from: PoolClient, sql: string, to: PoolClient, target: string): Promise<void> {
  await pipeline(from.query(copyTo(`COPY (${sql}) TO STDOUT`)), to.query(copyFrom(target)), {
    signal: cancellationSignal(),
  });
}

/** Phase 1: the delta of every owned table, and each tenant's conflicts against live now. */
export async function computeDelta(
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
export async function narrow(input: Narrowing, scratch: PoolClient, beat: (table: string) => void): Promise<void> {
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
