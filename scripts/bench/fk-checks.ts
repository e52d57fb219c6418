/**
 * npx tsx scripts/bench/fk-checks.ts [--tenants N] [--rows N] [--victims N] [--group-size N] [--rounds N] [--keep]
 *
 * The cost of leaving FK checks to PostgreSQL (TENANT_RESTORE_FK_CHECKS=postgres: no GRANT SET ON PARAMETER
 * session_replication_role needed) against the engine's own checks (session_replication_role = replica in the tenant's
 * transaction, one set-based orphan scan before COMMIT), side by side in one run on the same data.
 *
 * Builds a workload (scripts/workload) as the backup's scratch, a live copy with the victims purged, then for each
 * round and each mode (the order alternates between rounds) copies the victims into a fresh clone of that live, in
 * groups as the product does (one copyTenant transaction per group), and times it. Databases are dropped at the end
 * unless --keep. Prints one JSON object on stdout; progress on stderr.
 */
import { parseArgs } from 'node:util';
import { Pools } from '../../activities/db';
import { copyTenant } from '../../activities/copy';
import { buildPlan, type FkChecks } from '../../activities/plan';
import { generateWorkload } from '../workload/generate';
import { pickVictims, purgeTenants } from '../workload/incident';
import { benchEnv, createDatabase, dropDatabase, say } from './pg';

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      tenants: { type: 'string', default: '300' },
      rows: { type: 'string', default: '400000' },
      victims: { type: 'string', default: '60' },
      'group-size': { type: 'string', default: '20' },
      rounds: { type: 'string', default: '3' },
      keep: { type: 'boolean', default: false },
    },
  });
  const tenants = Number(values.tenants);
  const rows = Number(values.rows);
  const victimCount = Number(values.victims);
  const groupSize = Number(values['group-size']);
  const rounds = Number(values.rounds);
  benchEnv();
  const tag = `${Date.now().toString(36)}`;
  const sourceName = `fkbench_src_${tag}`;
  const postName = `fkbench_post_${tag}`;
  const made: string[] = [];
  const pools = new Pools();
  try {
    const sourceUrl = await createDatabase(sourceName);
    made.push(sourceName);
    say(`generating ${tenants} tenants, ~${rows} rows in ${sourceName}`);
    const generated = await generateWorkload(sourceUrl, { tenants, rowsTarget: rows, seed: 7 });
    const victims = pickVictims(generated.tenantIds, victimCount, 7);
    const postUrl = await createDatabase(postName, sourceName);
    made.push(postName);
    await purgeTenants(postUrl, victims);
    const groups: string[][] = [];
    for (let i = 0; i < victims.length; i += groupSize) groups.push(victims.slice(i, i + groupSize));

    const timings: Record<FkChecks, number[]> = { engine: [], postgres: [] };
    let victimRows = 0;
    for (let round = 0; round < rounds; round += 1) {
      const order: FkChecks[] = round % 2 === 0 ? ['engine', 'postgres'] : ['postgres', 'engine'];
      for (const mode of order) {
        const liveName = `fkbench_live_${tag}_${round}_${mode}`;
        const liveUrl = await createDatabase(liveName, postName);
        made.push(liveName);
        const scratch = pools.get(sourceUrl, { max: 2 });
        const live = pools.get(liveUrl, { max: 2 });
        const plan = await buildPlan({ scratch, live, tenantRoot: 'app.tenants', fkChecks: mode });
        const expected = mode === 'engine' ? 'replica' : 'constraints';
        if (plan.fkEnforcement !== expected) throw new Error(`plan says ${plan.fkEnforcement}, expected ${expected}`);
        const t0 = performance.now();
        let written = 0;
        for (const ids of groups) {
          const result = await copyTenant({ scratch, live, plan, tenantIds: ids, conflict: 'skip' });
          written += Object.values(result.rows).reduce((a, b) => a + b, 0);
        }
        const ms = performance.now() - t0;
        victimRows = written;
        timings[mode].push(ms);
        say(`round ${round + 1} ${mode.padEnd(8)} ${(ms / 1000).toFixed(2)} s, ${written} rows`);
        await pools.closeAll();
        if (!values.keep) {
          await dropDatabase(liveName);
          made.pop();
        }
      }
    }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    const engine = median(timings.engine);
    const postgres = median(timings.postgres);
    process.stdout.write(
      `${JSON.stringify(
        {
          tenants,
          totalRows: generated.totalRows,
          victims: victims.length,
          victimRows,
          groupSize,
          rounds,
          ms: timings,
          medianMs: { engine: Math.round(engine), postgres: Math.round(postgres) },
          ratioPostgresToEngine: Number((postgres / engine).toFixed(2)),
        },
        null,
        2,
      )}\n`,
    );
  } finally {
    await pools.closeAll();
    if (!values.keep) for (const name of made) await dropDatabase(name);
  }
}

main().catch((error: Error) => {
  process.stderr.write(`${error.stack ?? error.message}\n`);
  process.exit(1);
});
