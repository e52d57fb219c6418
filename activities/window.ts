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
import { heartbeat } from '@temporalio/activity';
import type { S3Client } from '@aws-sdk/client-s3';
import { type PoolClient, type Pools } from './db';
import { type Plan } from './plan';
import type { ArtifactsRef, ObjectRef, PlanRef, RecoveryTarget, TenantId } from './restore-types';
import { planLoader } from './boundary';
import { putJson } from './s3';
import { windowSchema } from './sql/window';
import { added, computeDelta, conflicts, delta, done, narrow, phaseDone } from './window-phases';

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
export type Narrowing = Omit<NarrowToWindowInput, 'plan'> & { plan: Plan };

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
