/**
 * The incident window's delta and narrowing (activities/window.ts, issue 26), without the WAL archive: three ordinary
 * databases of the stack stand in for the scratch at T0, the scratch at T1 and live, and the real `narrowToWindow`
 * activity runs on them. What the point-in-time test (window.test.ts) proves end to end, this one pins on a schema with
 * a self-reference (replies to comments), which the bench's main dataset has and the orchestration fixture has not: a
 * self-reference is not an ownership path, so it keeps no parent and makes no conflict in a tenant the window left alone.
 */
import { MockActivityEnvironment } from '@temporalio/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../activities/config';
import { Pools } from '../../activities/db';
import { buildPlan, type Plan } from '../../activities/plan';
import { createS3Client, getJson, putJson } from '../../activities/s3';
import { createWindowActivities, type WindowConflict, type WindowSummary } from '../../activities/window';
import { uniqueName, useFreshDatabases, useStackEnv, withClient } from '../helpers/stack';

const stack = useStackEnv();
const { fresh } = useFreshDatabases();

const schema = `
  CREATE SCHEMA app;
  CREATE TABLE app.tenants (id bigint PRIMARY KEY, name text NOT NULL);
  CREATE TABLE app.issues (id bigint PRIMARY KEY, tenant_id bigint NOT NULL REFERENCES app.tenants (id) ON DELETE CASCADE,
                           title text NOT NULL);
  CREATE TABLE app.comments (id bigint PRIMARY KEY, issue_id bigint NOT NULL REFERENCES app.issues (id) ON DELETE CASCADE,
                             parent_id bigint REFERENCES app.comments (id) ON DELETE CASCADE, body text NOT NULL);
  -- Tenants 1-4, two issues each, three comments per issue: a root comment and two replies, the second to the first.
  INSERT INTO app.tenants SELECT t, 'tenant ' || t FROM generate_series(1, 4) t;
  INSERT INTO app.issues SELECT t * 10 + i, t, 'issue ' || i FROM generate_series(1, 4) t, generate_series(1, 2) i;
  INSERT INTO app.comments SELECT i.id * 10 + 1, i.id, NULL, 'root' FROM app.issues i;
  INSERT INTO app.comments SELECT i.id * 10 + 2, i.id, i.id * 10 + 1, 'reply' FROM app.issues i;
  INSERT INTO app.comments SELECT i.id * 10 + 3, i.id, i.id * 10 + 2, 'reply to the reply' FROM app.issues i;`;

/** Rows of a table per tenant in a database, as ids. */
async function ids(url: string, sql: string): Promise<string[]> {
  return withClient(url, async (c) => (await c.query<{ id: string }>(sql)).rows.map((r) => String(r.id)).sort());
}

describe('the incident window: delta, conflicts and narrowing (issue 26)', () => {
  const pools = new Pools();
  const s3 = createS3Client();
  const activities = createWindowActivities({ pools, s3 });
  const restoreId = uniqueName('wdelta');
  const artifacts = { bucket: stack.STACK_S3_BUCKET, prefix: `restores/${restoreId}/` };
  let t0: { name: string; url: string };
  let t1: { name: string; url: string };
  let live: { name: string; url: string };
  let plan: Plan;
  let summary: WindowSummary;

  afterAll(async () => {
    await pools.closeAll();
    s3.destroy();
  });

  beforeAll(async () => {
    t0 = await fresh('wdelta_t0');
    await withClient(t0.url, (c) => c.query(schema));
    t1 = await fresh('wdelta_t1', t0.name);
    // The incident: tenant 1 purged, one reply of tenant 2 deleted (with its own reply), a wrong UPDATE of tenant 3.
    await withClient(t1.url, (c) =>
      c.query(`DELETE FROM app.tenants WHERE id = 1;
               DELETE FROM app.comments WHERE id = 212;
               UPDATE app.issues SET title = 'oops' WHERE tenant_id = 3;
               INSERT INTO app.comments VALUES (999, 41, NULL, 'added in the window')`),
    );
    live = await fresh('wdelta_live', t1.name);
    // After T1, users: tenant 3 changes one of the 'oops' issues again (a conflict); tenant 4, untouched by the
    // window, deletes a comment of its own (nothing to do with the window).
    await withClient(live.url, (c) =>
      c.query(`UPDATE app.issues SET title = 'fixed by hand' WHERE id = 31; DELETE FROM app.comments WHERE id = 413`),
    );
    plan = await buildPlan({
      scratch: pools.get(t0.url),
      live: pools.get(live.url),
      tenantRoot: 'app.tenants',
      config: parseConfig('{}'),
    });
    const key = `${artifacts.prefix}plan.json`;
    await putJson(s3, { bucket: artifacts.bucket, key }, plan);
    summary = await new MockActivityEnvironment().run(activities.narrowToWindow, {
      restoreId,
      scratch: t0.url,
      windowEnd: t1.url,
      live: live.url,
      plan: { bucket: artifacts.bucket, key, digest: plan.digest, tables: plan.tables.length },
      from: { type: 'lsn' as const, lsn: '0/1' },
      to: { type: 'lsn' as const, lsn: '0/2' },
      artifacts,
    });
  }, 120_000);

  it('names exactly the tenants the window touched, and counts its rows', () => {
    expect([...summary.touched].sort()).toEqual(['1', '2', '3']);
    // Tenant 1: its root, 2 issues, 6 comments; tenant 2: a reply and the reply to it.
    expect(summary.rows).toEqual({ deleted: 1 + 2 + 6 + 2, changed: 2, added: 1, conflicts: 1 });
  });

  it('finds the one conflict: a row the window changed that a user changed again since', async () => {
    expect(summary.conflicted).toEqual(['3']);
    const file = await getJson<{ conflicts: WindowConflict[] }>(s3, summary.object);
    expect(file.conflicts).toEqual([
      { tenantId: '3', table: 'app.issues', key: ['31'], reason: 'changed since the window' },
    ]);
  });

  it('narrows the T0 scratch to the delta and the parents its rows are found through, nothing else', async () => {
    // Tenant 4 (untouched, whose comments have replies) is gone whole; tenant 1 is whole; tenant 2 keeps its root, the
    // issue of the deleted replies and those replies; tenant 3 its root and its two changed issues.
    expect(await ids(t0.url, 'SELECT id FROM app.tenants')).toEqual(['1', '2', '3']);
    expect(await ids(t0.url, 'SELECT id FROM app.issues')).toEqual(['11', '12', '21', '31', '32']);
    expect(await ids(t0.url, 'SELECT id FROM app.comments')).toEqual([
      '111',
      '112',
      '113',
      '121',
      '122',
      '123',
      '212',
      '213',
    ]);
    // The changed issues hold their T0 version there: what the revert sets back.
    expect(await ids(t0.url, "SELECT id FROM app.issues WHERE title <> 'oops' AND tenant_id = 3")).toEqual([
      '31',
      '32',
    ]);
  });

  it('is idempotent: a retry after it committed leaves the narrowed scratch and the summary as they are', async () => {
    const again = await new MockActivityEnvironment({ attempt: 2 }).run(activities.narrowToWindow, {
      restoreId,
      scratch: t0.url,
      windowEnd: t1.url,
      live: live.url,
      plan: {
        bucket: artifacts.bucket,
        key: `${artifacts.prefix}plan.json`,
        digest: plan.digest,
        tables: plan.tables.length,
      },
      from: { type: 'lsn' as const, lsn: '0/1' },
      to: { type: 'lsn' as const, lsn: '0/2' },
      artifacts,
    });
    expect(again).toEqual(summary);
    expect(await ids(t0.url, 'SELECT id FROM app.comments')).toHaveLength(8);
  });
});
