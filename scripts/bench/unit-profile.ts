/**
 * npx tsx scripts/bench/unit-profile.ts [--scratch db] [--post db] [--group N] [--groups N]: one restore unit's statements, timed.
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
import { dbUrl } from './pg';

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
    },
  });
  const live = 'bench_unit_profile_live';
  const pools = new Pools();
  const admin = pools.get(dbUrl('postgres'));
  await admin.query(`DROP DATABASE IF EXISTS ${live} WITH (FORCE)`);
  await admin.query(`CREATE DATABASE ${live} TEMPLATE ${values.post}`);
  const scratch = pools.get(dbUrl(values.scratch!));
  const livePool = pools.get(dbUrl(live));
  const timings = new Map<string, Timing>();
  const step = { name: 'plan' };
  instrument(scratch, timings, step);
  instrument(livePool, timings, step);
  try {
    const victims = (await scratch.query<{ id: string }>(`SELECT id::text FROM app.tenants ORDER BY id`)).rows.map(
      (r) => r.id,
    );
    const present = new Set(
      (await livePool.query<{ id: string }>(`SELECT id::text FROM app.tenants`)).rows.map((r) => r.id),
    );
    const absent = victims.filter((id) => !present.has(id));
    const plan = await buildPlan({ scratch, live: livePool, tenantRoot: 'app.tenants' });
    const size = Number(values.group);
    const steps: Record<string, number> = {};
    for (let g = 0; g < Number(values.groups); g++) {
      const tenantIds = absent.slice(g * size, (g + 1) * size);
      for (const [name, run] of [
        [
          'copy',
          () =>
            copyTenant({
              scratch,
              live: livePool,
              plan,
              tenantIds,
              conflict: 'skip',
              chunkRows: Number(values.chunk) || undefined,
            }),
        ],
        [
          'validate',
          () => validateTenant({ scratch, live: livePool, plan, tenantId: tenantIds[0]!, tenantIds, conflict: 'skip' }),
        ],
      ] as const) {
        step.name = name;
        const t0 = performance.now();
        const result = (await run()) as { ok?: boolean };
        steps[name] = (steps[name] ?? 0) + performance.now() - t0;
        if (result.ok === false) throw new Error(`validation failed: ${JSON.stringify(result)}`);
      }
    }
    const rows = [...timings].sort((a, b) => b[1].ms - a[1].ms);
    for (const [kind, t] of rows.slice(0, 40))
      console.log(`${t.ms.toFixed(0).padStart(7)} ms ${String(t.count).padStart(4)}x  ${kind}`);
    for (const [kind, t] of rows.slice(0, Number(values.full))) console.log(`\n-- ${kind}\n${t.text}`);
    console.log(
      `steps: ${Object.entries(steps)
        .map(([k, ms]) => `${k} ${ms.toFixed(0)} ms`)
        .join(', ')}; statements: ${rows.reduce((n, [, t]) => n + t.count, 0)}`,
    );
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

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
