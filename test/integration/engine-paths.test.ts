/**
 * The copy's paths give the same rows (issues 13 and 25). For skip and fail, a table's insert goes first, and when it inserts
 * every staged row, live held none of their keys: the cross-tenant check and the conflict count are skipped, and the
 * pre-COMMIT FK check reads the references from staging (the fast path). Otherwise (overwrite, or rows left out) the
 * checks run as before, and the FK check joins the target (the checked path). Here the same deleted tenants are
 * restored into two copies of the same live, one on each path, and a partial tenant goes through the checked path:
 * - the statements each copy ran show which path it took;
 * - both lives end with the same rows in every table, the restored tenants equal to the backup (I3), and every other
 *   tenant untouched (I1); no DELETE or TRUNCATE reached either (I2); validation finds no mismatch and no orphan;
 * - the direct path (issue 25: COPY straight into the targets, no staging, probes only for parents its transaction did
 *   not insert) restores the same tenants into a third live with the same rows; the partial tenant, whose root is in
 *   live, makes its first COPY fail on a key, and the whole unit goes staged instead, with the same result;
 * - a copy with chunkRows counts at most its largest table, bounded: under the threshold it goes in one transaction, over it in chunks,
 *   with the same rows.
 */
import { join } from 'node:path';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { copyTenant } from '../../activities/copy';
import { Pools } from '../../activities/db';
import { buildPlan, type Plan } from '../../activities/plan';
import type { ConflictPolicy } from '../../activities/restore-types';
import { validateTenant } from '../../activities/validate';
import { destructiveStatements, installDeleteAudit } from '../helpers/audit';
import { dumpAndRestore, fingerprints, psqlFile, query, userTables } from '../helpers/engine';
import { deleteTenantsSql, tenantFilter, tenantTables } from '../helpers/issue-tracker';
import { useFreshDatabases, useStackEnv } from '../helpers/stack';

useStackEnv();
const { fresh } = useFreshDatabases();

const absent = [5, 10, 15];
/** Root present; only its comments (and their attachments) were deleted. */
const partial = 20;
const others = Array.from({ length: 50 }, (_, i) => i + 1).filter((t) => !absent.includes(t) && t !== partial);

/** Records the text of every statement the pool's sessions run. */
function record(pool: pg.Pool): string[] {
  const texts: string[] = [];
  pool.on('connect', (client) => {
    const query = client.query.bind(client) as (...args: unknown[]) => unknown;
    (client as unknown as { query: (...args: unknown[]) => unknown }).query = (...args: unknown[]) => {
      const first = args[0] as { text?: string } | string;
      texts.push(typeof first === 'string' ? first : (first.text ?? ''));
      return query(...args);
    };
  });
  return texts;
}

/** COPY straight into a live table (the direct path), by table. */
const directCopies = (texts: string[]) =>
  texts.flatMap((t) => /^COPY ("app"\."\w+") \(.*\) FROM STDIN$/s.exec(t)?.[1] ?? []).sort();
/** The direct path's probes of the references its transaction did not insert, by parent table. */
const externalProbes = (texts: string[]) =>
  texts.flatMap((t) =>
    /^WITH r AS \(SELECT \* FROM unnest\(/s.test(t) ? [/FROM ("\w+"\."\w+") p WHERE/.exec(t)![1]!] : [],
  );

/** The checked path's statements: the cross-tenant check and the conflict count join staging to the target. */
const checks = (texts: string[]) =>
  texts.filter(
    (t) => /^SELECT count\(\*\) AS n FROM tr_stage_\d+_\w+ s (JOIN|WHERE EXISTS)/.test(t) || /^WITH sk AS/.test(t),
  ).length;
/** The pre-COMMIT FK check reading references from staging alone, and joining the target. */
const fkFromStaging = (texts: string[]) =>
  texts.filter((t) => /^WITH r AS \(SELECT DISTINCT .* FROM tr_stage_\d+_\w+ t WHERE/s.test(t)).length;
const fkJoined = (texts: string[]) =>
  texts.filter((t) => /^WITH r AS \(SELECT DISTINCT .* t JOIN tr_stage_\d+_\w+ s ON/s.test(t)).length;

describe('fast path and checked path', () => {
  const pools = new Pools();
  let scratchUrl: string;
  let fastUrl: string;
  let checkedUrl: string;
  let directUrl: string;
  let sourceUrl: string;
  let sourceName: string;
  let plan: Plan;

  const incident = `${deleteTenantsSql(absent)}
    DELETE FROM app.attachments WHERE comment_id IN (SELECT c.id FROM app.comments c JOIN app.issues i ON i.id = c.issue_id JOIN app.projects p ON p.id = i.project_id WHERE p.tenant_id = ${partial});
    UPDATE app.comments SET parent_id = NULL WHERE issue_id IN (SELECT i.id FROM app.issues i JOIN app.projects p ON p.id = i.project_id WHERE p.tenant_id = ${partial});
    DELETE FROM app.comments WHERE issue_id IN (SELECT i.id FROM app.issues i JOIN app.projects p ON p.id = i.project_id WHERE p.tenant_id = ${partial});`;

  beforeAll(async () => {
    const source = await fresh('paths_src');
    sourceUrl = source.url;
    sourceName = source.name;
    psqlFile(source.url, join(__dirname, '..', 'fixtures', 'issue-tracker.sql'));
    scratchUrl = (await fresh('paths_scratch')).url;
    dumpAndRestore(source.url, scratchUrl);
    fastUrl = (await fresh('paths_fast', source.name)).url;
    checkedUrl = (await fresh('paths_checked', source.name)).url;
    directUrl = (await fresh('paths_direct', source.name)).url;
    for (const url of [fastUrl, checkedUrl, directUrl]) {
      await query(url, incident);
      await installDeleteAudit(url, 'all');
    }
    plan = await buildPlan({ scratch: pools.get(scratchUrl), live: pools.get(fastUrl), tenantRoot: 'app.tenants' });
    expect(plan.fkEnforcement).toBe('replica');
  });
  afterAll(() => pools.closeAll());

  it('restores the same rows on both paths, and the statements show which path each took', async () => {
    const fastPool = pools.get(fastUrl, { applicationName: 'paths-fast' });
    const checkedPool = pools.get(checkedUrl, { applicationName: 'paths-checked' });
    const fastTexts = record(fastPool);
    const checkedTexts = record(checkedPool);
    // The two staged paths of issue 13, with the direct path turned off.
    const copy = (live: pg.Pool, tenantIds: string[], conflict: ConflictPolicy) =>
      copyTenant({ scratch: pools.get(scratchUrl), live, plan, tenantIds, conflict, directCopy: false });

    const fast = await copy(fastPool, absent.map(String), 'fail');
    const checked = await copy(checkedPool, absent.map(String), 'overwrite');
    expect(checks(fastTexts)).toBe(0);
    expect(checks(checkedTexts)).toBeGreaterThan(0);
    // Every staged row was inserted on both: the FK check reads staging, never joins the target.
    expect(fkFromStaging(fastTexts)).toBeGreaterThan(0);
    expect(fkJoined(fastTexts)).toBe(0);
    expect(fast.rows).toEqual(checked.rows);
    expect(fast.parentClosure).toEqual(checked.parentClosure);
    expect([fast.path, checked.path]).toEqual(['staged', 'staged']);

    // The direct path: every owned table by one COPY into the target, nothing staged but the shared tables' closure.
    const directPool = pools.get(directUrl, { applicationName: 'paths-direct' });
    const directTexts = record(directPool);
    const direct = await copyTenant({
      scratch: pools.get(scratchUrl),
      live: directPool,
      plan,
      tenantIds: absent.map(String),
      conflict: 'fail',
    });
    expect(direct.path).toBe('direct');
    expect(direct.directRefused).toBeUndefined();
    const owned = plan.tables.filter((t) => t.role !== 'shared').map((t) => `"${t.key.replace('.', '"."')}"`);
    expect(directCopies(directTexts)).toEqual([...owned].sort());
    expect(directTexts.filter((t) => /^INSERT INTO "app"\."(?!plans|countries)/.test(t))).toEqual([]);
    // No probe of a parent the transaction inserted itself: comments -> issues, issues -> projects, and so on. The
    // probes that remain reach the shared tables only (every parent of these tenants' rows is theirs or shared).
    const probed = externalProbes(directTexts);
    const shared = plan.tables.filter((t) => t.role === 'shared').map((t) => `"${t.key.replace('.', '"."')}"`);
    expect(probed.filter((p) => !shared.includes(p))).toEqual([]);
    expect(direct.rows).toEqual(fast.rows);
    expect(direct.parentClosure).toEqual(fast.parentClosure);

    // The partial tenant: most staged rows are in live already, so the insert leaves them out and the checks run.
    fastTexts.length = 0;
    const part = await copy(fastPool, [String(partial)], 'skip');
    expect(checks(fastTexts)).toBeGreaterThan(0);
    expect(fkJoined(fastTexts)).toBeGreaterThan(0);
    expect(part.rows['app.comments']).toBeGreaterThan(0);
    expect(part.rows['app.issues']).toBe(0);
    expect(Object.values(part.skipped).every((n) => n === 0)).toBe(true);
    await copy(checkedPool, [String(partial)], 'overwrite');
    // On the direct path's live: the root is there, the first COPY fails on its key, and the unit goes staged.
    const directPart = await copyTenant({
      scratch: pools.get(scratchUrl),
      live: directPool,
      plan,
      tenantIds: [String(partial)],
      conflict: 'skip',
    });
    expect(directPart.path).toBe('staged');
    expect(directPart.directRefused).toMatch(/^23505/);
    expect(directPart.rows).toEqual(part.rows);

    // Same rows everywhere, in both lives.
    const tables = await userTables(fastUrl);
    expect(await fingerprints(fastUrl, tables)).toEqual(await fingerprints(checkedUrl, tables));
    expect(await fingerprints(directUrl, tables)).toEqual(await fingerprints(fastUrl, tables));
    // I3: the restored tenants equal the backup; I1: every other tenant as before the restore.
    const restored = tenantFilter([...absent, partial]);
    expect(await fingerprints(fastUrl, tenantTables, restored)).toEqual(
      await fingerprints(scratchUrl, tenantTables, restored),
    );
    expect(await fingerprints(fastUrl, tenantTables, tenantFilter(others))).toEqual(
      await fingerprints(sourceUrl, tenantTables, tenantFilter(others)),
    );
    // I2
    expect(await destructiveStatements(fastUrl)).toEqual([]);
    expect(await destructiveStatements(checkedUrl)).toEqual([]);
    expect(await destructiveStatements(directUrl)).toEqual([]);
    for (const id of [...absent, partial]) {
      const v = await validateTenant({
        scratch: pools.get(scratchUrl),
        live: fastPool,
        plan,
        tenantId: String(id),
        conflict: 'fail',
      });
      expect(v.orphans).toEqual([]);
      expect(v.tables.filter((t) => !t.match)).toEqual([]);
    }
  });

  it('with chunkRows, counts one table at most, bounded: one transaction under the threshold, chunks over it, the same rows', async () => {
    const tenant = 35;
    const run = async (chunkRows: number) => {
      const live = await fresh('paths_chunk', sourceName);
      await query(live.url, deleteTenantsSql([tenant]));
      const scratch = pools.get(scratchUrl, { applicationName: `paths-chunk-${chunkRows}` });
      const texts = record(scratch);
      const result = await copyTenant({
        scratch,
        live: pools.get(live.url),
        plan,
        tenantIds: [String(tenant)],
        conflict: 'fail',
        chunkRows,
      });
      const counts = texts.filter((t) => t.startsWith('SELECT count(*) AS n FROM'));
      // At most one count, of the largest table, bounded at chunkRows + 1 rows (issue 25: a plainly too large tenant
      // goes in chunks at once); never a full count of every table.
      expect(counts.every((t) => t.includes(`LIMIT ${chunkRows + 1})`))).toBe(true);
      const counted = counts.length;
      return { result, counted, rows: await fingerprints(live.url, tenantTables, tenantFilter([tenant])) };
    };
    const whole = await run(100_000);
    const chunks = await run(25);
    expect(whole.result.chunked).toBe(false);
    expect(chunks.result.chunked).toBe(true);
    expect(whole.counted).toBe(1);
    expect(chunks.counted).toBe(1);
    expect(chunks.result.rows).toEqual(whole.result.rows);
    expect(whole.rows).toEqual(await fingerprints(scratchUrl, tenantTables, tenantFilter([tenant])));
    expect(chunks.rows).toEqual(whole.rows);
  });
});
