/**
 * The incident and the restore, on the issue-tracker fixture (test/fixtures/issue-tracker.sql):
 * 1. the fixture is pg_dump'ed and pg_restore'd into scratch (the backup);
 * 2. a concurrent writer keeps changing other tenants in live; the test hard-deletes 20% of the tenants in live (and
 *    a shared plan only they used) while it runs;
 * 3. the deleted tenants are restored one by one with copyTenant while the writer keeps going.
 * A shadow database receives the same deletion and exactly the same writes as live, but no restore. Then:
 * - I1: every tenant outside the restore set has, table by table, the same rows in live as in the shadow;
 * - I2: no DELETE or TRUNCATE reached live from the restore (ALWAYS triggers record them even in replica mode);
 * - I3: every restored tenant's rows equal the backup's, validateTenant agrees and finds no orphans.
 */
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { copyTenant } from '../../activities/copy';
import { Pools } from '../../activities/db';
import { buildPlan, type Plan } from '../../activities/plan';
import { preflightTenant } from '../../activities/preflight';
import { validateTenant } from '../../activities/validate';
import type { CopyResult } from '../../activities/restore-types';
import { destructiveStatements, installDeleteAudit } from '../helpers/audit';
import { dumpAndRestore, fingerprints, psqlFile, query, withClient } from '../helpers/engine';
import { deleteTenantsSql, tenantFilter, tenantTables } from '../helpers/issue-tracker';
import { useFreshDatabases, useStackEnv } from '../helpers/stack';

useStackEnv();
const { fresh } = useFreshDatabases();

const allTenants = Array.from({ length: 50 }, (_, i) => i + 1);
const deleted = allTenants.filter((t) => t % 5 === 0); // 10 of 50: 20%
const survivors = allTenants.filter((t) => !deleted.includes(t));

/**
 * Changes surviving tenants in live and, identically, in the shadow: updates issues (their trigger bumps version in
 * both), inserts issues and comments, deletes leaf comments. Values are chosen by the writer, never by now().
 */
class Writer {
  ops = 0;
  errors: Error[] = [];
  private stopped = false;
  private done: Promise<void> | undefined;
  private seed = 42;
  constructor(
    private readonly live: pg.Client,
    private readonly shadow: pg.Client,
  ) {}

  private random(n: number): number {
    this.seed = (this.seed * 1103515245 + 12345) % 2147483648;
    return this.seed % n;
  }

  private async both(sql: string, values: unknown[]): Promise<void> {
    await this.live.query(sql, values);
    await this.shadow.query(sql, values);
  }

  private async step(): Promise<void> {
    const tenant = survivors[this.random(survivors.length)]!;
    const { rows } = await this.live.query<{ id: string; project_id: string }>(
      `SELECT i.id, i.project_id FROM app.issues i JOIN app.projects p ON p.id = i.project_id WHERE p.tenant_id = $1 ORDER BY i.id OFFSET $2 LIMIT 1`,
      [tenant, this.random(40)],
    );
    const issue = rows[0];
    if (!issue) return;
    const user = (
      await this.live.query<{ id: string }>(`SELECT id FROM app.users WHERE tenant_id = $1 ORDER BY id LIMIT 1`, [
        tenant,
      ])
    ).rows[0]!.id;
    switch (this.random(4)) {
      case 0:
        await this.both(
          `UPDATE app.issues SET title = $2, meta = meta || jsonb_build_object('touched', $3::int) WHERE id = $1`,
          [issue.id, `edited ${this.ops}`, this.ops],
        );
        break;
      case 1: {
        const { rows: ins } = await this.live.query<{ id: string }>(
          `INSERT INTO app.issues (project_id, reporter_id, title, meta, created_at) VALUES ($1, $2, $3, '{"new": true}', '2025-01-01Z') RETURNING id`,
          [issue.project_id, user, `new issue ${this.ops}`],
        );
        await this.shadow.query(
          `INSERT INTO app.issues (id, project_id, reporter_id, title, meta, created_at) OVERRIDING SYSTEM VALUE VALUES ($1, $2, $3, $4, '{"new": true}', '2025-01-01Z')`,
          [ins[0]!.id, issue.project_id, user, `new issue ${this.ops}`],
        );
        break;
      }
      case 2:
        await this.both(
          `INSERT INTO app.comments (id, issue_id, author_id, body, created_at) VALUES ($1, $2, $3, $4, '2025-01-02Z')`,
          [randomUUID(), issue.id, user, `writer comment ${this.ops}`],
        );
        break;
      default: {
        const { rows: leaf } = await this.live.query<{ id: string }>(
          `SELECT c.id FROM app.comments c WHERE c.issue_id = $1 AND NOT EXISTS (SELECT 1 FROM app.comments r WHERE r.parent_id = c.id)
             AND NOT EXISTS (SELECT 1 FROM app.attachments a WHERE a.comment_id = c.id) ORDER BY c.id LIMIT 1`,
          [issue.id],
        );
        if (leaf[0]) await this.both(`DELETE FROM app.comments WHERE id = $1`, [leaf[0].id]);
      }
    }
    this.ops++;
  }

  start(): void {
    this.done = (async () => {
      while (!this.stopped) {
        try {
          await this.step();
        } catch (error) {
          this.errors.push(error as Error);
          return;
        }
      }
    })();
  }

  async until(ops: number): Promise<void> {
    while (this.ops < ops && !this.errors.length) await new Promise((r) => setTimeout(r, 20));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.done;
  }
}

describe('issue tracker: restore 20% of tenants while the others write', () => {
  const pools = new Pools();
  let scratchUrl: string;
  let liveUrl: string;
  let shadowUrl: string;
  let plan: Plan;
  const clients: pg.Client[] = [];

  beforeAll(async () => {
    const source = await fresh('it_src');
    psqlFile(source.url, join(__dirname, '..', 'fixtures', 'issue-tracker.sql'));
    scratchUrl = (await fresh('it_scratch')).url;
    dumpAndRestore(source.url, scratchUrl);
    liveUrl = (await fresh('it_live', source.name)).url;
    shadowUrl = (await fresh('it_shadow', source.name)).url;
    await installDeleteAudit(liveUrl, 'all');
    // Sequences: one behind the backup's ids (must be advanced), one far ahead (must not move back).
    await query(
      liveUrl,
      `SELECT setval(pg_get_serial_sequence('app.attachments', 'id'), 1); SELECT setval(pg_get_serial_sequence('app.projects', 'id'), 1000000)`,
    );
  });
  afterAll(async () => {
    for (const c of clients) await c.end();
    await pools.closeAll();
  });

  it('restores the deleted tenants; survivors are untouched (I1), no DELETE/TRUNCATE (I2), restored equal the backup (I3)', async () => {
    const connect = async (url: string) => {
      const c = new pg.Client({ connectionString: url, application_name: 'writer' });
      await c.connect();
      clients.push(c);
      return c;
    };
    const writer = new Writer(await connect(liveUrl), await connect(shadowUrl));
    writer.start();
    await writer.until(30);

    // The incident, in live and identically in the shadow, while the writer keeps going.
    const incident = deleteTenantsSql(deleted);
    await Promise.all([query(liveUrl, incident), query(shadowUrl, incident)]);
    expect((await query(liveUrl, `SELECT count(*)::int AS n FROM app.plans WHERE id = 4`))[0]!.n).toBe(0);
    await writer.until(writer.ops + 30);

    plan = await buildPlan({
      scratch: pools.get(scratchUrl),
      live: pools.get(liveUrl),
      tenantRoot: 'app.tenants',
      tenantIds: deleted.map(String),
    });
    expect(
      plan.cycles
        .map((c) => c.edges.map((e) => `${e.constraint}:${e.strategy}`))
        .flat()
        .sort(),
    ).toEqual([
      'comments_parent_id_fkey:single-statement',
      'projects_lead_issue_fk:null-then-update',
      'tenants_owner_fk:defer',
    ]);

    const opsBefore = writer.ops;
    const results: CopyResult[] = [];
    for (const id of deleted.map(String)) {
      const pre = await preflightTenant({
        scratch: pools.get(scratchUrl),
        live: pools.get(liveUrl),
        plan,
        tenantId: id,
        conflict: 'fail',
      });
      expect(pre.liveState).toBe('absent');
      results.push(
        await copyTenant({
          scratch: pools.get(scratchUrl),
          live: pools.get(liveUrl),
          plan,
          tenantIds: [id],
          conflict: 'fail',
        }),
      );
    }
    const opsDuring = writer.ops - opsBefore;
    await writer.until(writer.ops + 30);
    await writer.stop();
    expect(writer.errors).toEqual([]);
    expect(opsDuring).toBeGreaterThan(0);

    // The shared plan only the deleted tenants used came back once, as parent closure of the first of them.
    expect(results.flatMap((r) => r.parentClosure)).toEqual([{ table: 'app.plans', rows: 1 }]);
    expect(results.every((r) => !r.chunked)).toBe(true);

    // I2
    expect(await destructiveStatements(liveUrl)).toEqual([]);

    // I1: survivors in live are exactly what the writer left, as the shadow (same writes, no restore) shows.
    const others = tenantFilter(survivors);
    const liveOthers = await fingerprints(liveUrl, tenantTables, others);
    expect(Object.values(liveOthers).filter((f) => f.startsWith('0:'))).toEqual([]);
    expect(liveOthers).toEqual(await fingerprints(shadowUrl, tenantTables, others));

    // I3: restored tenants equal the backup, and the engine's own validation agrees.
    const restored = tenantFilter(deleted);
    expect(await fingerprints(liveUrl, tenantTables, restored)).toEqual(
      await fingerprints(scratchUrl, tenantTables, restored),
    );
    expect(await fingerprints(liveUrl, ['app.plans'])).toEqual(await fingerprints(scratchUrl, ['app.plans']));
    for (const id of deleted.map(String)) {
      const v = await validateTenant({
        scratch: pools.get(scratchUrl),
        live: pools.get(liveUrl),
        plan,
        tenantId: id,
        conflict: 'fail',
      });
      expect(v.orphans).toEqual([]);
      expect(v.tables.filter((t) => !t.match)).toEqual([]);
      expect(v.tables.find((t) => t.table === 'app.comments')!.liveCount).toBe(180);
    }

    // Sequences: advanced past restored ids, never moved back.
    const [seq] = await query<{ attachments: string; maxAttachment: string; projects: string }>(
      liveUrl,
      `SELECT
      (SELECT last_value FROM app.attachments_id_seq) AS attachments, (SELECT max(id) FROM app.attachments) AS "maxAttachment",
      (SELECT last_value FROM app.projects_id_seq) AS projects`,
    );
    expect(Number(seq!.attachments)).toBeGreaterThanOrEqual(Number(seq!.maxAttachment));
    expect(Number(seq!.projects)).toBe(1000000);
  });

  it('validation notices a restored row that changed, and an orphan', async () => {
    const id = String(deleted[0]);
    await query(liveUrl, `UPDATE app.labels SET name = 'tampered' WHERE tenant_id = $1 AND id = 1`, [id]);
    const v = await validateTenant({
      scratch: pools.get(scratchUrl),
      live: pools.get(liveUrl),
      plan,
      tenantId: id,
      conflict: 'overwrite',
    });
    expect(v.ok).toBe(false);
    expect(v.tables.filter((t) => !t.match).map((t) => t.table)).toEqual(['app.labels']);
    // Under skip, a row the restore wrote must hold the backup's values too (issue 23, item 6); only a row the copy kept
    // (live's version of an existing row wins) may differ, one per row the copy counted as kept.
    const skip = await validateTenant({
      scratch: pools.get(scratchUrl),
      live: pools.get(liveUrl),
      plan,
      tenantId: id,
      conflict: 'skip',
    });
    expect(skip.ok).toBe(false);
    const kept = await validateTenant({
      scratch: pools.get(scratchUrl),
      live: pools.get(liveUrl),
      plan,
      tenantId: id,
      conflict: 'skip',
      kept: { 'app.labels': 1 },
    });
    expect(kept.ok).toBe(true);

    // An orphan only a suspended FK check lets through (the situation the orphan scan exists for).
    await withClient(liveUrl, async (c) => {
      await c.query('SET session_replication_role = replica');
      await c.query(
        `UPDATE app.issues SET reporter_id = '00000000-0000-0000-0000-000000000001' WHERE id = (SELECT min(i.id) FROM app.issues i JOIN app.projects p ON p.id = i.project_id WHERE p.tenant_id = $1)`,
        [id],
      );
    });
    const orphaned = await validateTenant({
      scratch: pools.get(scratchUrl),
      live: pools.get(liveUrl),
      plan,
      tenantId: id,
      conflict: 'skip',
    });
    expect(orphaned.orphans).toEqual([{ table: 'app.issues', constraint: 'issues_reporter_id_fkey', rows: 1 }]);
    expect(orphaned.ok).toBe(false);
  });
});
