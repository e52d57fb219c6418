/**
 * npx tsx scripts/bench/unit-profile.ts [--scratch db] [--post db] [--group N] [--groups N] [--compare N]: one restore
 * unit's statements, timed. `--compare N`: the staged path (directCopy off) and the default path (direct COPY), N rounds
 * each, alternated, the same units into fresh copies of live: the two side by side in one run.
 *
 * Dev tooling for the speed work: runs the engine's copy and validate steps (no Temporal) for groups of victims of the
 * bench's dataset, from its source database as scratch into a fresh copy of its post-deletion database, and prints the
 * time per statement kind. A change to the data path is measured here in seconds; `npm run bench` then confirms it.
 * Needs the bench's datasets (one `npm run bench` creates them) and the stack.
 */
import { parseArgs } from 'node:util';
import type pg from 'pg';
import { copyTenant } from '../../activities/copy';
import { Pools } from '../../activities/db';
import { buildPlan } from '../../activities/plan';
import { validateTenant } from '../../activities/validate';
import { dbUrl, query } from './pg';

interface Timing {
  count: number;
  ms: number;
  text: string;
}

/** Times every query of the pool's clients, by the statement's first words (the kind). */
function instrument(pool: pg.Pool, timings: Map<string, Timing>, step: { name: string }): void {
  pool.on('connect', (client) => {
    // Plans of slow statements into the server log (the stack's .stack/pg/postgres.log).
    if (process.env.UNIT_PROFILE_EXPLAIN)
      void client.query(
        `LOAD 'auto_explain'; SET auto_explain.log_min_duration = ${Number(process.env.UNIT_PROFILE_EXPLAIN)}; SET auto_explain.log_analyze = on`,
      );
    if (process.env.UNIT_PROFILE_LOG) void client.query('SET log_min_duration_statement = 0');
    const query = client.query.bind(client) as (...args: unknown[]) => unknown;
    (client as unknown as { query: (...args: unknown[]) => unknown }).query = (...args: unknown[]) => {
      const first = args[0] as { text?: string } | string;
      const text = typeof first === 'string' ? first : (first.text ?? 'COPY stream');
      const kind = `${step.name}: ${text.replace(/\s+/g, ' ').slice(0, 110)}`;
      const t0 = performance.now();
      const add = () => {
        const t = timings.get(kind) ?? { count: 0, ms: 0, text };
        timings.set(kind, { count: t.count + 1, ms: t.ms + performance.now() - t0, text });
      };
      const result = query(...args) as { then?: unknown; on?: (e: string, f: () => void) => void };
      if (typeof result?.then === 'function') (result as Promise<unknown>).then(add, add);
      else {
        result?.on?.('end', add);
        result?.on?.('finish', add);
      }
      return result;
    };
  });
}

export interface UnitProfile {
  units: number;
  tenantsPerUnit: number;
  tables: number;
  rowsPerUnit: number;
  /** Per unit: statements of copy and validate, and their time. */
  statementsPerUnit: number;
  copyMsPerUnit: number;
  validateMsPerUnit: number;
  statementsPerTablePerUnit: number;
  msPerTablePerUnit: number;
  /** The slowest statement kinds over all units. */
  top: Array<{ kind: string; count: number; ms: number; text: string }>;
}

/**
 * Copies and validates `units` units of `size` tenants (the first absent ones of `tenantIds`) from `scratch` into a
 * fresh copy of `liveTemplate`, alone on the server, timing every statement. The live copy is dropped afterwards.
 */
export async function profileUnits(options: {
  scratch: string;
  liveTemplate: string;
  tenantIds: string[];
  size: number;
  units: number;
  chunkRows?: number;
  /** `false`: the staged path only (copy/index.ts). */
  directCopy?: boolean;
}): Promise<UnitProfile> {
  const live = 'bench_unit_profile_live';
  const pools = new Pools();
  const admin = pools.get(dbUrl('postgres'));
  await admin.query(`DROP DATABASE IF EXISTS ${live} WITH (FORCE)`);
  await admin.query(`CREATE DATABASE ${live} TEMPLATE ${options.liveTemplate}`);
  const scratch = pools.get(dbUrl(options.scratch));
  const livePool = pools.get(dbUrl(live));
  const timings = new Map<string, Timing>();
  const step = { name: 'plan' };
  instrument(scratch, timings, step);
  instrument(livePool, timings, step);
  try {
    const plan = await buildPlan({ scratch, live: livePool, tenantRoot: 'app.tenants' });
    const steps = { copy: 0, validate: 0 };
    let rows = 0;
    for (let g = 0; g < options.units; g++) {
      const tenantIds = options.tenantIds.slice(g * options.size, (g + 1) * options.size);
      if (!tenantIds.length) break;
      step.name = 'copy';
      let t0 = performance.now();
      const copied = await copyTenant({
        scratch,
        live: livePool,
        plan,
        tenantIds,
        conflict: 'skip',
        chunkRows: options.chunkRows,
        directCopy: options.directCopy,
      });
      steps.copy += performance.now() - t0;
      rows += Object.values(copied.rows).reduce((a, b) => a + b, 0);
      step.name = 'validate';
      t0 = performance.now();
      const v = await validateTenant({
        scratch,
        live: livePool,
        plan,
        tenantId: tenantIds[0]!,
        tenantIds,
        conflict: 'skip',
      });
      steps.validate += performance.now() - t0;
      if (!v.ok) throw new Error(`validation failed: ${JSON.stringify(v)}`);
    }
    const units = Math.min(options.units, Math.ceil(options.tenantIds.length / options.size));
    const all = [...timings].filter(([kind]) => !kind.startsWith('plan:'));
    const statements = all.reduce((n, [, t]) => n + t.count, 0);
    const tables = plan.tables.length;
    return {
      units,
      tenantsPerUnit: options.size,
      tables,
      rowsPerUnit: rows / units,
      statementsPerUnit: statements / units,
      copyMsPerUnit: steps.copy / units,
      validateMsPerUnit: steps.validate / units,
      statementsPerTablePerUnit: statements / units / tables,
      msPerTablePerUnit: (steps.copy + steps.validate) / units / tables,
      top: all
        .sort((a, b) => b[1].ms - a[1].ms)
        .slice(0, (options as { topN?: number }).topN ?? 12)
        .map(([kind, t]) => ({ kind, count: t.count, ms: t.ms, text: t.text })),
    };
  } finally {
    await pools.closeAll();
    const cleanup = new Pools();
    await cleanup
      .get(dbUrl('postgres'))
      .query(`DROP DATABASE IF EXISTS ${live} WITH (FORCE)`)
      .catch(() => undefined);
    await cleanup.closeAll();
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      scratch: { type: 'string', default: 'bench_src_2000t_3300000r_400v_20e_s42' },
      post: { type: 'string', default: 'bench_post_2000t_3300000r_400v_20e_s42' },
      group: { type: 'string', default: '20' },
      groups: { type: 'string', default: '2' },
      chunk: { type: 'string', default: '200000' },
      /** Print the whole text of the N slowest statement kinds. */
      full: { type: 'string', default: '0' },
      compare: { type: 'string', default: '0' },
    },
  });
  const inScratch = await query<{ id: string }>(values.scratch!, 'SELECT id::text FROM app.tenants ORDER BY id');
  const present = new Set(
    (await query<{ id: string }>(values.post!, 'SELECT id::text FROM app.tenants')).map((r) => r.id),
  );
  const profile = (directCopy?: boolean) =>
    profileUnits({
      scratch: values.scratch!,
      liveTemplate: values.post!,
      tenantIds: inScratch.map((r) => r.id).filter((id) => !present.has(id)),
      size: Number(values.group),
      units: Number(values.groups),
      chunkRows: Number(values.chunk) || undefined,
      directCopy,
    });
  const rounds = Number(values.compare);
  if (rounds > 0) {
    const runs: Record<'staged' | 'direct', UnitProfile[]> = { staged: [], direct: [] };
    for (let r = 0; r < rounds; r++) {
      // Alternated, the order flipped every round: drift on a noisy machine lands on both sides.
      for (const path of r % 2 ? (['direct', 'staged'] as const) : (['staged', 'direct'] as const))
        runs[path].push(await profile(path === 'direct' ? undefined : false));
    }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    for (const path of ['staged', 'direct'] as const) {
      const p = runs[path];
      console.log(
        `${path.padEnd(6)} per unit of ${p[0]!.tenantsPerUnit} tenants (${Math.round(p[0]!.rowsPerUnit)} rows), median of ${rounds}: ` +
          `copy ${median(p.map((x) => x.copyMsPerUnit)).toFixed(0)} ms, validate ${median(p.map((x) => x.validateMsPerUnit)).toFixed(0)} ms, ` +
          `${median(p.map((x) => x.statementsPerUnit)).toFixed(0)} statements`,
      );
      for (const t of p[p.length - 1]!.top.slice(0, 6))
        console.log(`   ${t.ms.toFixed(0).padStart(7)} ms ${String(t.count).padStart(4)}x  ${t.kind}`);
    }
    const ratio = (f: (x: UnitProfile) => number) => median(runs.direct.map(f)) / median(runs.staged.map(f));
    console.log(
      `direct / staged: copy ${ratio((x) => x.copyMsPerUnit).toFixed(2)}×, copy+validate ${ratio((x) => x.copyMsPerUnit + x.validateMsPerUnit).toFixed(2)}×`,
    );
    return;
  }
  const p = await profile();
  for (const t of p.top) console.log(`${t.ms.toFixed(0).padStart(7)} ms ${String(t.count).padStart(4)}x  ${t.kind}`);
  for (const t of p.top.slice(0, Number(values.full))) console.log(`\n-- ${t.kind}\n${t.text}`);
  console.log(
    `per unit of ${p.tenantsPerUnit} tenants (${p.units} units, ${p.tables} tables, ${Math.round(p.rowsPerUnit)} rows): ` +
      `copy ${p.copyMsPerUnit.toFixed(0)} ms, validate ${p.validateMsPerUnit.toFixed(0)} ms, ${p.statementsPerUnit.toFixed(0)} statements ` +
      `(${p.statementsPerTablePerUnit.toFixed(1)} per table, ${p.msPerTablePerUnit.toFixed(1)} ms per table)`,
  );
}

if (process.argv[1]?.endsWith('unit-profile.ts'))
  main().catch((error) => {
    console.error(error);
    process.exit(1);
  });
