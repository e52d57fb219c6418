/**
 * The incident window's delta (issue 26) against its baseline, side by side in one run: what `narrowToWindow`
 * (activities/window.ts) costs next to one `count(*) GROUP BY` pass over the same tables.
 *
 * RECOVERY TIME IS NOT INCLUDED. In production T0 and T1 are two point-in-time recovered scratches; recovering them
 * is the point-in-time section's figure (bench/point-in-time.ts: pgbackrest restore, WAL replay), paid once per
 * scratch whatever is done with it, and it depends on the archive (base backup, WAL since), not on the delta. Here two
 * ordinary databases on the stack's scratch server stand in for them, so that this section measures the delta alone:
 *
 * - T0: the main dataset's backup (every tenant present), `pg_restore`d into the scratch server once and cached;
 * - T1: a copy of T0 after an incident: the dataset's victims purged (tenants wholly deleted), a wrong UPDATE on
 *   living tenants (issues closed, users demoted), a few rows added (one label per such tenant);
 * - live: on the stack's main server, the dataset's post-deletion database with the same UPDATE and INSERT (the same
 *   rows as T1: touch triggers off), so the conflicts pass finds none.
 *
 * Each repetition, on a fresh copy of T0 (`CREATE DATABASE ... TEMPLATE`, since narrowToWindow narrows what it reads):
 * - baseline: one `SELECT tenant, count(*) FROM (tableTriples) x GROUP BY tenant` per owned table, one table after
 *   another in one session with the product's session settings (snapshot, no parallel workers, no JIT): the ownership
 *   joins the delta reads T0 through. Run twice (the first warms the copy's pages); the second is the baseline.
 *   Beside it, for information: a plain `count(*) GROUP BY tenant_id` on the tables that hold a tenant column, and a
 *   hashing pass (discover's per-tenant sums: count, sum of key hashes, sum of row hashes) over every owned table.
 * - delta: the real activity, `createWindowActivities({ pools, s3 }).narrowToWindow` in a MockActivityEnvironment, with
 *   a plan built by buildPlan and stored in the stack's bucket. Its phases from its heartbeats (one per owned table and
 *   pass) and from when its ANALYZE starts: T1 against T0, live for the touched tenants, the narrowing, then ANALYZE
 *   and the summary.
 */
import { MockActivityEnvironment } from '@temporalio/testing';
import type pg from 'pg';
import { Pools } from '../../activities/db';
import { buildPlan } from '../../activities/plan';
import type { PlanRef } from '../../activities/restore-types';
import { createS3Client, putJson } from '../../activities/s3';
import { tableSums } from '../../activities/sql/discover';
import { createWindowActivities, type NarrowToWindowInput, type WindowSummary } from '../../activities/window';
import type { MainDataset } from './dataset';
import { benchEnv, dbUrl, say } from './pg';
import { scratchDbUrl, drop, copyOf, windowDatabases } from './window-databases';
import { pass, triplesCount, plainTables, plainSql } from './window-pass';

export interface WindowRep {
  /** The copy of T0 this repetition narrowed. */
  database: string;
  /** CREATE DATABASE ... TEMPLATE of T0 (not in either figure). */
  copyMs: number;
  /** The first baseline pass, on the fresh copy (pages cold in its server), then the baseline. */
  baselineColdMs: number;
  baselineMs: number;
  /** Milliseconds per table of the baseline. */
  baselineMsPerTable: Record<string, number>;
  /** `count(*) GROUP BY tenant_id` on the tables with a tenant column, and the baseline's time on those tables. */
  plainMs: number;
  plainBaselineMs: number;
  /** Count and sums of key and row hashes per tenant, every owned table: hashing every row once. */
  hashPassMs: number;
  /** narrowToWindow, called to returned. */
  deltaMs: number;
  ratio: number;
  phases?: {
    /** Plan from S3, bookkeeping tables, the transaction opened. */
    setupMs: number;
    /** T1's rows streamed into T0's scratch and compared there, every owned table. */
    t1Ms: number;
    /** Live's rows of the touched tenants streamed in, conflicts. */
    liveMs: number;
    /** Phase 2: the T0 scratch narrowed to the delta. */
    narrowMs: number;
    /** ANALYZE of the narrowed scratch, the summary written to S3. */
    analyzeSummaryMs: number;
    /** The T1 pass per table (heartbeat to heartbeat). */
    t1MsPerTable: Record<string, number>;
  };
  summary?: Omit<WindowSummary, 'object' | 'touched' | 'conflicted'> & { touched: number; conflicted: number };
  /** Rows of owned tables left in the narrowed copy. */
  rowsKept?: number;
}

export interface WindowBenchResult {
  status: 'ok' | 'failed' | 'skipped' | 'not-available';
  reason?: string;
  t0?: string;
  t1?: string;
  live?: string;
  tenants?: number;
  tables?: number;
  /** Owned rows of T0 per table (the baseline's counts), and in all. */
  rowsPerTable?: Record<string, number>;
  rowsT0?: number;
  /** Owned rows of T1 (one count per table). */
  rowsT1?: number;
  plainTables?: string[];
  incident?: { deletedTenants: number; deletedRows: number; updatedRows: Record<string, number>; addedRows: number };
  /** Building T0, T1 and live; 0 when reused. */
  buildMs?: { t0: number; t1: number; live: number };
  reused?: boolean;
  reps: WindowRep[];
  /** Medians over the repetitions. */
  deltaMs?: number;
  baselineMs?: number;
  ratio?: number;
  phases?: WindowRep['phases'];
  summary?: WindowRep['summary'];
}

const median = (values: number[]) => {
  const s = [...values].sort((a, b) => a - b);
  return s.length ? (s[(s.length - 1) >> 1]! + s[s.length >> 1]!) / 2 : undefined;
};

export async function windowSideBySide(args: {
  dataset: MainDataset;
  runTag: string;
  reps: number;
  fresh: boolean;
  keep: boolean;
}): Promise<WindowBenchResult> {
  const { dataset, runTag } = args;
  const result: WindowBenchResult = { status: 'ok', reps: [], tenants: dataset.tenants };
  const env = benchEnv();
  const pools = new Pools();
  const s3 = createS3Client();
  const copies: string[] = [];
  try {
    const dbs = await windowDatabases(dataset, args.fresh);
    Object.assign(result, {
      t0: dbs.t0,
      t1: dbs.t1,
      live: dbs.live,
      incident: dbs.incident,
      buildMs: dbs.buildMs,
      reused: dbs.reused,
    });
    const t1Url = scratchDbUrl(dbs.t1);
    const liveUrl = dbUrl(dbs.live);
    // Pools of their own, closed at once: T0 is the template of every run's copy, which needs it without sessions.
    const planPools = new Pools();
    const plan = await buildPlan({
      scratch: planPools.get(scratchDbUrl(dbs.t0)),
      live: planPools.get(liveUrl),
      tenantRoot: 'app.tenants',
    }).finally(() => planPools.closeAll());
    const owned = plan.tables.filter((t) => t.role !== 'shared');
    result.tables = owned.length;
    result.plainTables = plainTables.map((t) => t.table);
    const artifacts = { bucket: env.STACK_S3_BUCKET, prefix: `bench/runs/${runTag}/window/` };
    const planRef: PlanRef = {
      bucket: artifacts.bucket,
      key: `${artifacts.prefix}plan.json`,
      digest: plan.digest,
      tables: plan.tables.length,
      rootKeyType: plan.rootKey.type,
    };
    await putJson(s3, planRef, plan);
    const baselineSql = owned.map((t) => ({ table: t.key, sql: triplesCount(plan, t) }));
    const hashSql = owned.map((t) => ({ table: t.key, sql: tableSums(plan, t) }));
    result.rowsT1 = Object.values((await pass(pools.get(t1Url), baselineSql)).rows).reduce((a, b) => a + b, 0);
    const activities = createWindowActivities({ pools, s3 });

    for (let i = 1; i <= args.reps; i++) {
      const database = `bench_win_run_${runTag}_${i}`;
      copies.push(database);
      await drop(database);
      let started = performance.now();
      await copyOf(database, dbs.t0);
      const copyMs = performance.now() - started;
      const url = scratchDbUrl(database);
      const pool = pools.get(url);

      const cold = await pass(pool, baselineSql);
      const base = await pass(pool, baselineSql);
      const plain = await pass(pool, plainSql);
      const hash = await pass(pool, hashSql);
      result.rowsPerTable = base.rows;
      result.rowsT0 = Object.values(base.rows).reduce((a, b) => a + b, 0);

      // When the activity's ANALYZE starts (after phase 2 committed): its own session, on this pool.
      let analyzeAt: number | undefined;
      const onAcquire = (client: pg.PoolClient) => {
        const marked = client as pg.PoolClient & { benchWindow?: boolean };
        if (marked.benchWindow) return;
        marked.benchWindow = true;
        const original = client.query.bind(client) as (...a: unknown[]) => unknown;
        (client as unknown as { query: (...a: unknown[]) => unknown }).query = (...a: unknown[]) => {
          if (a[0] === 'ANALYZE') analyzeAt ??= performance.now();
          return original(...a);
        };
      };
      pool.on('acquire', onAcquire);
      const beats: Array<{ at: number; table: string }> = [];
      const mock = new MockActivityEnvironment({ activityId: `window-${i}` });
      mock.on('heartbeat', (d: { table?: string } | undefined) =>
        beats.push({ at: performance.now(), table: d?.table ?? '' }),
      );
      say(`window: repetition ${i} of ${args.reps}: narrowToWindow on ${database}`);
      started = performance.now();
      const input: NarrowToWindowInput = {
        restoreId: `bench-window-${runTag}-${i}`,
        scratch: url,
        windowEnd: t1Url,
        live: liveUrl,
        plan: planRef,
        from: { type: 'time', time: '2026-01-01T00:00:00Z' },
        to: { type: 'time', time: '2026-01-01T00:01:00Z' },
        artifacts,
      };
      const summary: WindowSummary = await mock.run(activities.narrowToWindow, input);
      const ended = performance.now();
      pool.off('acquire', onAcquire);
      const deltaMs = ended - started;
      const n = owned.length;
      const rep: WindowRep = {
        database,
        copyMs,
        baselineColdMs: cold.ms,
        baselineMs: base.ms,
        baselineMsPerTable: base.perTable,
        plainMs: plain.ms,
        plainBaselineMs: plainTables.reduce((a, t) => a + (base.perTable[t.table] ?? 0), 0),
        hashPassMs: hash.ms,
        deltaMs,
        ratio: deltaMs / base.ms,
        summary: {
          rows: summary.rows,
          touched: summary.touched.length,
          conflicted: summary.conflicted.length,
        },
      };
      // Heartbeats: one per owned table in the T1 pass, in the live pass (when the delta names a tenant), in phase 2.
      if (beats.length === 3 * n && analyzeAt !== undefined)
        rep.phases = {
          setupMs: beats[0]!.at - started,
          t1Ms: beats[n]!.at - beats[0]!.at,
          liveMs: beats[2 * n]!.at - beats[n]!.at,
          narrowMs: analyzeAt - beats[2 * n]!.at,
          analyzeSummaryMs: ended - analyzeAt,
          t1MsPerTable: Object.fromEntries(beats.slice(0, n).map((b, j) => [b.table, beats[j + 1]!.at - b.at])),
        };
      else
        say(
          `window: ${beats.length} heartbeats for ${n} tables, ANALYZE ${analyzeAt ? 'seen' : 'not seen'}: no phases`,
        );
      rep.rowsKept = Object.values((await pass(pool, baselineSql)).rows).reduce((a, b) => a + b, 0);
      result.reps.push(rep);
      say(
        `window ${i}: delta ${(deltaMs / 1000).toFixed(1)} s, baseline ${(base.ms / 1000).toFixed(2)} s: ${rep.ratio.toFixed(2)}x; ${rep.summary!.touched} tenants touched`,
      );
      if (!args.keep) await drop(database).catch(() => undefined);
    }
    const reps = result.reps;
    result.deltaMs = median(reps.map((r) => r.deltaMs));
    result.baselineMs = median(reps.map((r) => r.baselineMs));
    result.ratio = median(reps.map((r) => r.ratio));
    if (reps.every((r) => r.phases)) {
      const m = (pick: (p: NonNullable<WindowRep['phases']>) => number) => median(reps.map((r) => pick(r.phases!)))!;
      result.phases = {
        setupMs: m((p) => p.setupMs),
        t1Ms: m((p) => p.t1Ms),
        liveMs: m((p) => p.liveMs),
        narrowMs: m((p) => p.narrowMs),
        analyzeSummaryMs: m((p) => p.analyzeSummaryMs),
        t1MsPerTable: reps.at(-1)!.phases!.t1MsPerTable,
      };
    }
    result.summary = reps.at(-1)?.summary;
    const expected = dataset.victims.length;
    const deleted = reps.at(-1)?.summary;
    if (deleted && deleted.touched < expected)
      Object.assign(result, {
        status: 'failed',
        reason: `the delta names ${deleted.touched} touched tenants, the incident purged ${expected} and changed more`,
      });
    return result;
  } catch (error) {
    return { ...result, status: 'failed', reason: (error as Error).message };
  } finally {
    s3.destroy();
    await pools.closeAll();
    if (!args.keep) for (const db of copies) await drop(db).catch(() => undefined);
  }
}
