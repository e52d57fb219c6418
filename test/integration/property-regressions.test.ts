/**
 * Bugs the property suite (test/property) found, each as a permanent example next to its fix: the failing case's own
 * generated schema, rows and incident (its case.json, kept here), replayed deterministically without the fault timing
 * that exposed it.
 *
 * 1. The report said 0 rows written for a tenant a worker kill had restored. The kill came after the copy's COMMIT and
 *    before the activity reported; the retry, knowing the earlier attempt committed (its transaction id in S3), copied
 *    again over its own rows and counted the rows it found identical as nothing: `rows` 0 and `skipped` 0 in every
 *    table, while validation counted them in live. Found by the long run (seed 424242, case 14: 7 tenants, 11 tables,
 *    one kill). Fixed in copy.ts: a retry over its own rows counts them as restored (not for a partial tenant, whose
 *    identical rows were there before).
 * 2. The same for a partial tenant: the report said 0 rows written in every table while live gained them. A retry
 *    cannot tell its earlier attempt's inserts from the rows the tenant's users kept, and counted neither. Found by CI's
 *    bounded run (seed 242026, path 13: two partial tenants, one kill). Fixed in restore-activities.ts: a partial
 *    tenant's copy records what it wrote (rows and keys) in S3 before its COMMIT, and a retry that finds that
 *    transaction committed adds the record to its own counts.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { MockActivityEnvironment } from '@temporalio/testing';
import { copyTenant } from '../../activities/copy';
import { Pools } from '../../activities/db';
import { parseConfig } from '../../activities/config';
import { buildPlan, type Plan } from '../../activities/plan';
import type { CopyResult } from '../../activities/restore-types';
import { countsByTenant, prepare, type Case } from '../property/case';
import { chunkRows, dataSql } from '../property/data';
import { snapshot } from '../property/run-case';
import { restoreConfig, schemaSql } from '../property/schema';
import { createRestoreActivities, restoredKeysObject } from '../../activities/restore-activities';
import { createS3Client, getJson, putJson } from '../../activities/s3';
import { uniqueName, useFreshDatabases, useStackEnv, withClient } from '../helpers/stack';

const stack = useStackEnv();
const { fresh } = useFreshDatabases();

/** The failing case of seed 424242, run 14 (its case.json, as fast-check drew it). */
const evidenceAfterKill: Case = {
  shape: {
    schema: 'app',
    rootKey: 'text',
    chains: [1, 2],
    composite: true,
    selfReference: false,
    cycle: null,
    junction: true,
    sharedLookup: true,
    logicalLink: true,
    uniques: false,
    identity: 'always',
    generated: true,
    partitioned: false,
    triggers: true,
    nullableFks: false,
    excluded: 'leaf',
    deferrableUnique: false,
  },
  tenants: [
    { size: 1, fate: 'victim' },
    { size: 2, fate: 'victim' },
    { size: 0, fate: 'victim' },
    { size: 2, fate: 'partial' },
    { size: 0, fate: 'victim' },
    { size: 0, fate: 'victim' },
    { size: 1, fate: 'victim' },
    { size: 1, fate: 'bystander' },
  ],
  large: false,
  valueSeed: 20,
  allowPartial: true,
  dropSharedParent: false,
  writer: { before: 5, during: true, seed: 1134546706 },
  run: { groupSize: 1, concurrency: 2, conflict: 'skip', kills: [3752], restartPostgres: false },
};

describe('property suite regressions', () => {
  const pools = new Pools();
  afterAll(() => pools.closeAll());

  describe('a retry over the rows its committed attempt wrote reports them as restored', () => {
    const p = prepare(evidenceAfterKill);
    let scratchUrl: string;
    let liveUrl: string;
    let plan: Plan;

    beforeAll(async () => {
      const source = await fresh('preg_src');
      await withClient(source.url, async (c) => {
        await c.query(schemaSql(p.schema));
        await c.query(dataSql(p.schema, p.data));
      });
      scratchUrl = (await fresh('preg_scratch', source.name)).url;
      liveUrl = (await fresh('preg_live', source.name)).url;
      plan = await buildPlan({
        scratch: pools.get(scratchUrl),
        live: pools.get(liveUrl),
        tenantRoot: p.schema.root,
        config: parseConfig(JSON.stringify(restoreConfig(p.schema, chunkRows))),
      });
    });

    // The incident, again before each example: the victims are gone.
    beforeEach(() => withClient(liveUrl, (c) => c.query(p.incidentSql)));

    // As the copy activity calls it: a known commit drops the absence check; otherwise the retry may accept as its own
    // the rows it finds present and equal to scratch's.
    it.each([
      ['the earlier attempt is known to have committed', { earlierAttemptCommitted: true }],
      [
        'the earlier attempt said nothing, and the rows were accepted as its own',
        { expectAbsent: 'tenant', presentMayBeOwn: true },
      ],
    ])('%s', async (_, retry) => {
      // Each victim once: the first attempt commits, and the retry finds the tenant's rows already in live.
      const tenant = p.victims.find((t) => p.data.rows.filter((r) => r.tenant === t).length > 3)!;
      const copy = (extra: object) =>
        copyTenant({
          scratch: pools.get(scratchUrl),
          live: pools.get(liveUrl),
          plan,
          tenantIds: [tenant],
          conflict: 'skip',
          ...extra,
        });
      const before = countsByTenant(p, await snapshot(liveUrl, p), [tenant]).get(tenant)!;
      const first = await copy({});
      const after = countsByTenant(p, await snapshot(liveUrl, p), [tenant]).get(tenant)!;
      const retried = await copy({ ...retry, ...('expectAbsent' in retry ? { expectAbsent: [tenant] } : {}) });
      const gained = (table: string) => (after[table] ?? 0) - (before[table] ?? 0);
      for (const [key, rows] of Object.entries(first.rows)) {
        const table = key.slice(key.indexOf('.') + 1);
        expect(rows, `first attempt, ${key}`).toBe(gained(table));
        expect(retried.rows[key], `retry, ${key}`).toBe(gained(table));
        expect(retried.skipped[key], `retry, ${key}`).toBe(0);
      }
      expect(Object.values(first.rows).reduce((a, b) => a + b, 0)).toBeGreaterThan(3);
    });
  });

  describe("a partial tenant's retry after its committed attempt reports what that attempt inserted", () => {
    /** The failing case of seed 242026, path 13 (drawn again from the seed): two partial tenants, one kill. */
    const partialAfterKill: Case = {
      shape: {
        schema: 'Tenant Data',
        rootKey: 'bigint',
        chains: [1, 4, 2],
        composite: false,
        selfReference: false,
        cycle: null,
        junction: false,
        sharedLookup: false,
        logicalLink: false,
        uniques: true,
        identity: 'by-default',
        generated: false,
        partitioned: true,
        triggers: false,
        nullableFks: true,
        excluded: 'none',
        deferrableUnique: false,
      },
      tenants: [
        { size: 3, fate: 'partial' },
        { size: 1, fate: 'partial' },
        { size: 1, fate: 'bystander' },
        { size: 1, fate: 'victim' },
      ],
      large: false,
      valueSeed: 24,
      allowPartial: true,
      dropSharedParent: false,
      writer: { before: 1, during: false, seed: 2116355203 },
      run: { groupSize: 1, concurrency: 2, conflict: 'skip', kills: [3218], restartPostgres: false },
    };
    const p = prepare(partialAfterKill);
    const s3 = createS3Client();
    const activities = createRestoreActivities({ pools, s3 });
    const restoreId = uniqueName('preg_partial');
    const artifacts = { bucket: stack.STACK_S3_BUCKET, prefix: `restores/${restoreId}/` };
    let scratchUrl: string;
    let liveUrl: string;
    let plan: Plan;
    afterAll(() => s3.destroy());

    beforeAll(async () => {
      const source = await fresh('preg_psrc');
      await withClient(source.url, async (c) => {
        await c.query(schemaSql(p.schema));
        await c.query(dataSql(p.schema, p.data));
      });
      scratchUrl = (await fresh('preg_pscratch', source.name)).url;
      liveUrl = (await fresh('preg_plive', source.name)).url;
      plan = await buildPlan({
        scratch: pools.get(scratchUrl),
        live: pools.get(liveUrl),
        tenantRoot: p.schema.root,
        config: parseConfig(JSON.stringify(restoreConfig(p.schema))),
      });
      await putJson(s3, { bucket: artifacts.bucket, key: `${artifacts.prefix}plan.json` }, plan);
      await withClient(liveUrl, (c) => c.query(p.incidentSql));
    });

    it('the retry says what the first attempt inserted, rows and keys, and live gained exactly that', async () => {
      // The partial tenant that lost the most rows: its first attempt inserts them, and the retry finds them identical.
      const lost = (t: string) => p.deleted.filter((r) => r.tenant === t).length;
      const tenant = [...p.partial].sort((a, b) => lost(b) - lost(a))[0]!;
      expect(lost(tenant)).toBeGreaterThan(1);
      const input = {
        restoreId,
        scratch: scratchUrl,
        live: liveUrl,
        plan: {
          bucket: artifacts.bucket,
          key: `${artifacts.prefix}plan.json`,
          digest: plan.digest,
          tables: plan.tables.length,
          rootKeyType: plan.rootKey.type,
        },
        tenantId: tenant,
        conflict: 'skip' as const,
        partial: true,
        artifacts,
      };
      // One activity of one unit workflow: attempt 1, then attempt 2 with no heartbeat (the worker died after COMMIT).
      const attempt = (n: number): Promise<CopyResult> =>
        new MockActivityEnvironment({
          attempt: n,
          activityId: 'copy-1',
          workflowExecution: { workflowId: `unit/${restoreId}`, runId: 'run-1' },
          heartbeatDetails: undefined,
        }).run(activities.copyTenantRows, input);
      const before = countsByTenant(p, await snapshot(liveUrl, p), [tenant]).get(tenant)!;
      const first = await attempt(1);
      const after = countsByTenant(p, await snapshot(liveUrl, p), [tenant]).get(tenant)!;
      const keysOfFirst = await getJson(s3, restoredKeysObject(artifacts, tenant));
      const retried = await attempt(2);
      const gained = (key: string) => {
        const table = key.slice(key.lastIndexOf('.') + 1).replace(/^"|"$/g, '');
        return (after[table] ?? 0) - (before[table] ?? 0);
      };
      let total = 0;
      for (const [key, rows] of Object.entries(first.rows)) {
        expect(rows, `first attempt, ${key}`).toBe(gained(key));
        expect(retried.rows[key], `retry, ${key}`).toBe(gained(key));
        expect(retried.skipped[key], `retry, ${key}`).toBe(first.skipped[key]);
        expect(retried.restoredKeys?.[key]?.total ?? 0, `retry's keys, ${key}`).toBe(gained(key));
        total += rows;
      }
      expect(total).toBe(lost(tenant));
      // The list of keys the retry stores is the first attempt's, whole.
      expect(await getJson(s3, restoredKeysObject(artifacts, tenant))).toEqual(keysOfFirst);
    });
  });
});
