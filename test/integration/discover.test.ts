/**
 * Issue 15, "Done when": discover finds exactly who was hit, through the real CLI and a real worker.
 *
 * A source of 60 tenants (the orchestration fixture) is backed up to MinIO, and live is cloned from it. Then a random
 * mix, chosen by a seeded PRNG (DISCOVER_SEED to replay one), is done to live, and this file keeps its own books of
 * every row it deleted, changed or added:
 *   - whole tenants deleted (→ absent), all rows of one or two child tables of others deleted (→ partial), a few rows of
 *     others deleted (→ partial), content of others updated (→ changed), rows added to others (→ grown), tenants created
 *     in live only (→ new);
 *   - background tenants outside the incident whose own users deleted rows since the backup (a comment, an app
 *     installation, an issue with its comments), and one account closed (its tenant deleted whole), as real tenants
 *     do: discover cannot tell them from damage, so they come out partial and absent like the victims;
 *   - a writer inserts and updates rows of other tenants before and WHILE discover runs (normal activity: grown or
 *     changed, never absent or partial); the untouched rest must come out intact.
 * `tenant-restore discover` must list exactly the damaged tenants with the right class and per-table counts (read back
 * from its discover.json in S3), write the list to restore, and leave live as it was. `start --from-discover` with the
 * bare `--allow-partial`, or with a count that is not the number of partial tenants, is refused (exit 2) with that number
 * and the ten tenants with the most rows that would come back (issue 23 item 5: users' deletions would come back too);
 * `--allow-partial=<n>` said back right restores them, and a second discover finds none absent or partial.
 * Bad input: a tenant root that is not a table (exit 2), an empty live and a live that is another database (a loud
 * warning naming --live).
 */
import pg, { type Client as PgClient } from 'pg';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createActivities } from '../../activities';
import { Pools } from '../../activities/db';
import type { DiscoveredTenant, DiscoverSummary, TenantClass } from '../../activities/discover';
import { createS3Client, getJson, parseS3Url } from '../../activities/s3';
import { prng } from '../../scripts/workload/prng';
import { generate, range, smallTenant, tenantRows, uploadBackup, withClient } from '../fixtures/orchestration/fixture';
import { runCli, type CliResult } from '../helpers/product';
import { startWorker, uniqueName, useFreshDatabases, useStackEnv } from '../helpers/stack';

const env = useStackEnv();
const { fresh } = useFreshDatabases();
const seed = Number(process.env.DISCOVER_SEED ?? 15);
const artifacts = `s3://${env.STACK_S3_BUCKET}/test-discover/`;

type Counts = Record<string, number>;
interface Expected {
  class: TenantClass;
  missing?: Counts;
  changed?: Counts;
  added?: Counts;
}

/** A seeded Fisher-Yates shuffle. */
function shuffle<T>(items: T[], random: () => number): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

/**
 * The books: every row this test deleted, changed or added in live, per tenant and table. Each statement names its
 * rows exactly and cascades into nothing (comments go before their issues), so its row count is what discover must see.
 */
class Books {
  readonly tenants = new Map<string, Expected>();

  private entry(tenant: number, cls: TenantClass): Expected {
    let e = this.tenants.get(String(tenant));
    if (!e) this.tenants.set(String(tenant), (e = { class: cls }));
    return e;
  }

  async run(
    c: PgClient,
    tenant: number,
    cls: TenantClass,
    kind: 'missing' | 'changed' | 'added',
    table: string,
    sql: string,
    values: unknown[],
  ): Promise<void> {
    const n = (await c.query(sql, values)).rowCount ?? 0;
    const e = this.entry(tenant, cls);
    if (n > 0) {
      const counts = (e[kind] ??= {});
      counts[table] = (counts[table] ?? 0) + n;
    }
  }

  record(tenant: number, cls: TenantClass, kind: 'missing' | 'changed' | 'added', counts: Counts): void {
    const e = this.entry(tenant, cls);
    for (const [table, n] of Object.entries(counts))
      if (n > 0) (e[kind] ??= {})[table] = ((e[kind] ??= {})[table] ?? 0) + n;
  }

  of(cls: TenantClass): string[] {
    return [...this.tenants].filter(([, e]) => e.class === cls).map(([id]) => id);
  }
}

/** Issues of a tenant, oldest first (the fixture's issues reach the tenant through their project). */
const issuesOf = async (c: PgClient, tenant: number): Promise<string[]> =>
  (
    await c.query<{ id: string }>(
      'SELECT i.id::text FROM app.issues i JOIN app.projects p ON p.id = i.project_id WHERE p.tenant_id = $1 ORDER BY i.id',
      [tenant],
    )
  ).rows.map((r) => r.id);

/**
 * Normal activity on tenants outside the incident: each transaction inserts an issue with a comment, inserts a comment,
 * or updates an issue's title. Nothing is deleted, so discover may call these tenants grown or changed, never partial.
 */
class Writer {
  readonly log: Array<{ tenant: string; op: 'insert' | 'update'; at: number }> = [];
  private running = false;
  private loop?: Promise<void>;
  errors: string[] = [];

  constructor(
    private readonly url: string,
    private readonly tenants: number[],
    private readonly random: () => number,
  ) {}

  async start(): Promise<void> {
    const client = new pg.Client({ connectionString: this.url });
    await client.connect();
    const targets = new Map<number, { projects: string[]; issues: string[]; user: string }>();
    for (const t of this.tenants) {
      const projects = await client.query<{ id: string }>('SELECT id::text FROM app.projects WHERE tenant_id = $1', [
        t,
      ]);
      const user = await client.query<{ id: string }>(
        'SELECT min(id)::text AS id FROM app.users WHERE tenant_id = $1',
        [t],
      );
      targets.set(t, {
        projects: projects.rows.map((r) => r.id),
        issues: await issuesOf(client, t),
        user: user.rows[0]!.id,
      });
    }
    this.running = true;
    this.loop = (async () => {
      let seq = 0;
      try {
        while (this.running) {
          const tenant = this.tenants[Math.floor(this.random() * this.tenants.length)]!;
          const t = targets.get(tenant)!;
          const dice = this.random();
          seq += 1;
          try {
            await client.query('BEGIN');
            let op: 'insert' | 'update';
            if (dice < 0.3) {
              op = 'insert';
              const project = t.projects[Math.floor(this.random() * t.projects.length)];
              const issue = await client.query<{ id: string }>(
                `INSERT INTO app.issues (project_id, title) VALUES ($1, 'rowdata writer issue ' || $2::int) RETURNING id::text`,
                [project, seq],
              );
              await client.query(
                `INSERT INTO app.comments (issue_id, author_id, body) VALUES ($1, $2, 'rowdata writer comment')`,
                [issue.rows[0]!.id, t.user],
              );
            } else if (dice < 0.6) {
              op = 'insert';
              await client.query(
                `INSERT INTO app.comments (issue_id, author_id, body) VALUES ($1, $2, 'rowdata writer comment ' || $3::int)`,
                [t.issues[Math.floor(this.random() * t.issues.length)], t.user, seq],
              );
            } else {
              op = 'update';
              await client.query(`UPDATE app.issues SET title = 'rowdata writer title ' || $2::int WHERE id = $1`, [
                t.issues[Math.floor(this.random() * t.issues.length)],
                seq,
              ]);
            }
            await client.query('COMMIT');
            this.log.push({ tenant: String(tenant), op, at: Date.now() });
          } catch (error) {
            await client.query('ROLLBACK').catch(() => undefined);
            this.errors.push((error as Error).message);
          }
          await new Promise((r) => setTimeout(r, 15));
        }
      } finally {
        await client.end();
      }
    })();
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
  }
}

/**
 * An order-independent checksum of every table of live, for the rows the writer cannot touch (issues and comments of
 * its tenants are left out), and the number of relations in schema app: discover must change none of it.
 */
async function liveFingerprint(url: string, writerTenants: number[]): Promise<Record<string, string>> {
  return withClient(url, async (c) => {
    const sql: Record<string, string> = {
      'app.plans': 'SELECT x::text AS r FROM app.plans x',
      'app.tenants': 'SELECT x::text AS r FROM app.tenants x',
      'app.users': 'SELECT x::text AS r FROM app.users x',
      'app.projects': 'SELECT x::text AS r FROM app.projects x',
      'app.billing_accounts': 'SELECT x::text AS r FROM app.billing_accounts x',
      'app.app_installations': 'SELECT x::text AS r FROM app.app_installations x',
      'app.issues':
        'SELECT x::text AS r FROM app.issues x JOIN app.projects p ON p.id = x.project_id WHERE NOT (p.tenant_id = ANY($1::bigint[]))',
      'app.comments':
        'SELECT x::text AS r FROM app.comments x JOIN app.issues i ON i.id = x.issue_id JOIN app.projects p ON p.id = i.project_id WHERE NOT (p.tenant_id = ANY($1::bigint[]))',
    };
    const out: Record<string, string> = {};
    for (const [table, q] of Object.entries(sql)) {
      const { rows } = await c.query<{ n: string; sum: string | null }>(
        `SELECT count(*)::text AS n, md5(string_agg(r, ',' ORDER BY r)) AS sum FROM (${q}) s`,
        q.includes('$1') ? [writerTenants] : [],
      );
      out[table] = `${rows[0]!.n}:${rows[0]!.sum ?? ''}`;
    }
    const rel = await c.query<{ n: string }>(
      "SELECT count(*)::text AS n FROM pg_class WHERE relnamespace = 'app'::regnamespace",
    );
    out.relations = rel.rows[0]!.n;
    return out;
  });
}

const readList = (path: string) =>
  readFileSync(path, 'utf8')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));

const sortIds = (ids: string[]) => [...ids].sort((a, b) => Number(a) - Number(b));

describe('discover: the blast radius of a random incident', () => {
  const pools = new Pools();
  const s3 = createS3Client();
  const taskQueue = uniqueName('tq_discover');
  const books = new Books();
  let source: { name: string; url: string };
  let live: { name: string; url: string };
  let backup: string;
  let worker: Awaited<ReturnType<typeof startWorker>>;
  let writerTenants: number[] = [];
  let intactTenants: string[] = [];
  /** Tenants outside the incident whose users deleted rows, and the closed account. */
  const background = new Set<string>();

  const discover = (args: string[]): Promise<CliResult> =>
    runCli(['discover', '--tenant-root', 'app.tenants', '--task-queue', taskQueue, '--artifacts', artifacts, ...args]);

  /** discover.json of a finished discover: the summary and every tenant that is not intact. */
  const discovered = (summary: DiscoverSummary) =>
    getJson<{ summary: DiscoverSummary; tenants: DiscoveredTenant[] }>(s3, parseS3Url(summary.artifacts.json));

  beforeAll(async () => {
    process.stderr.write(`[discover.test] seed ${seed} (DISCOVER_SEED to replay)\n`);
    source = await fresh('disc_src');
    await generate(source.url, [{ first: 1, count: 60, shape: smallTenant }]);
    ({ backup } = await uploadBackup(source.url, env.STACK_S3_BUCKET, `test/${uniqueName('discover')}/backup.dump`));
    live = await fresh('disc_live', source.name);
    worker = await startWorker({ taskQueue, activities: createActivities({ pools, s3 }) });

    const random = prng(seed);
    const pick = <T>(items: T[]) => items[Math.floor(random() * items.length)]!;
    const order = shuffle(range(1, 60), random);
    const take = (n: number) => order.splice(0, n);
    const absent = take(6);
    const wholeTables = take(5);
    const fewRows = take(5);
    const changed = take(5);
    const grown = take(5);
    const deletedByUsers = take(6);
    const closed = take(1);
    writerTenants = take(8);
    intactTenants = order.map(String);

    // Absent: what the backup holds of each is what live must now miss (ON DELETE CASCADE takes it all).
    for (const t of absent) {
      const rows = await tenantRows(source.url, [t]);
      books.record(t, 'absent', 'missing', Object.fromEntries(Object.entries(rows).map(([k, v]) => [k, v.count])));
    }
    await withClient(live.url, (c) => c.query('DELETE FROM app.tenants WHERE id = ANY($1::bigint[])', [absent]));
    // A closed account, outside the incident: absent too, and in the list (restored by default: the README says so).
    for (const t of closed) {
      const rows = await tenantRows(source.url, [t]);
      books.record(t, 'absent', 'missing', Object.fromEntries(Object.entries(rows).map(([k, v]) => [k, v.count])));
      background.add(String(t));
    }
    await withClient(live.url, (c) => c.query('DELETE FROM app.tenants WHERE id = ANY($1::bigint[])', [closed]));

    await withClient(live.url, async (c) => {
      const tenantIssues =
        'SELECT i.id FROM app.issues i JOIN app.projects p ON p.id = i.project_id WHERE p.tenant_id = $1';
      // Partial: every row of one or two child tables (issues go with their comments, deleted first and counted).
      for (const t of wholeTables) {
        const tables = shuffle(['app.app_installations', 'app.billing_accounts', 'app.comments', 'app.issues'], random);
        for (const table of tables.slice(0, 1 + Math.floor(random() * 2))) {
          if (table === 'app.comments' || table === 'app.issues')
            await books.run(
              c,
              t,
              'partial',
              'missing',
              'app.comments',
              `DELETE FROM app.comments WHERE issue_id IN (${tenantIssues})`,
              [t],
            );
          if (table === 'app.issues')
            await books.run(
              c,
              t,
              'partial',
              'missing',
              'app.issues',
              `DELETE FROM app.issues WHERE id IN (${tenantIssues})`,
              [t],
            );
          if (table === 'app.app_installations' || table === 'app.billing_accounts')
            await books.run(c, t, 'partial', 'missing', table, `DELETE FROM ${table} WHERE tenant_id = $1`, [t]);
        }
      }
      // Partial: a few rows (a comment, an app installation, an issue with its comments).
      for (const t of fewRows) {
        const n = 1 + Math.floor(random() * 3);
        for (let i = 0; i < n; i++) {
          const what = pick(['comment', 'installation', 'issue']);
          if (what === 'comment')
            await books.run(
              c,
              t,
              'partial',
              'missing',
              'app.comments',
              `DELETE FROM app.comments WHERE id = (SELECT min(id) FROM app.comments WHERE issue_id IN (${tenantIssues}))`,
              [t],
            );
          else if (what === 'installation')
            await books.run(
              c,
              t,
              'partial',
              'missing',
              'app.app_installations',
              'DELETE FROM app.app_installations WHERE id = (SELECT max(id) FROM app.app_installations WHERE tenant_id = $1)',
              [t],
            );
          else {
            const issue = (await issuesOf(c, t)).at(-1);
            if (!issue) continue;
            await books.run(
              c,
              t,
              'partial',
              'missing',
              'app.comments',
              'DELETE FROM app.comments WHERE issue_id = $1',
              [issue],
            );
            await books.run(c, t, 'partial', 'missing', 'app.issues', 'DELETE FROM app.issues WHERE id = $1', [issue]);
          }
        }
      }
      // Background: ordinary users of tenants outside the incident deleted a row or two since the backup (a comment, an
      // app installation they removed, an issue with its comments). Partial, exactly like damage.
      for (const t of deletedByUsers) {
        background.add(String(t));
        const what = pick(['comment', 'installation', 'issue']);
        if (what === 'comment')
          await books.run(
            c,
            t,
            'partial',
            'missing',
            'app.comments',
            `DELETE FROM app.comments WHERE id = (SELECT max(id) FROM app.comments WHERE issue_id IN (${tenantIssues}))`,
            [t],
          );
        else if (what === 'installation')
          await books.run(
            c,
            t,
            'partial',
            'missing',
            'app.app_installations',
            'DELETE FROM app.app_installations WHERE id = (SELECT min(id) FROM app.app_installations WHERE tenant_id = $1)',
            [t],
          );
        else {
          // Every tenant of the fixture has issues (smallTenant).
          const issue = (await issuesOf(c, t))[0]!;
          await books.run(c, t, 'partial', 'missing', 'app.comments', 'DELETE FROM app.comments WHERE issue_id = $1', [
            issue,
          ]);
          await books.run(c, t, 'partial', 'missing', 'app.issues', 'DELETE FROM app.issues WHERE id = $1', [issue]);
        }
      }
      // Changed: other content under the same keys.
      for (const t of changed) {
        const updates: Array<[string, string]> = [
          ['app.tenants', `UPDATE app.tenants SET name = name || ' (renamed)' WHERE id = $1`],
          [
            'app.users',
            `UPDATE app.users SET email = 'changed-' || email WHERE id = (SELECT max(id) FROM app.users WHERE tenant_id = $1)`,
          ],
          ['app.projects', `UPDATE app.projects SET name = name || ' v2' WHERE tenant_id = $1`],
          [
            'app.comments',
            `UPDATE app.comments SET body = body || ' (edited)' WHERE id = (SELECT max(id) FROM app.comments WHERE issue_id IN (${tenantIssues}))`,
          ],
          ['app.billing_accounts', `UPDATE app.billing_accounts SET card_last4 = '9999' WHERE tenant_id = $1`],
        ];
        for (const [table, sql] of shuffle(updates, random).slice(0, 1 + Math.floor(random() * 2)))
          await books.run(c, t, 'changed', 'changed', table, sql, [t]);
      }
      // Grown: new rows only.
      for (const t of grown) {
        const inserts: Array<[string, string]> = [
          [
            'app.app_installations',
            `INSERT INTO app.app_installations (tenant_id, app, enabled) VALUES ($1, 'rowdata-app-new', true)`,
          ],
          [
            'app.users',
            `INSERT INTO app.users (tenant_id, email) VALUES ($1::bigint, 'rowdata-grown-' || $1::text || '@example.test')`,
          ],
          ['app.projects', `INSERT INTO app.projects (tenant_id, name) VALUES ($1, 'rowdata new project')`],
          [
            'app.comments',
            `INSERT INTO app.comments (issue_id, body) SELECT min(i.id), 'rowdata new comment' FROM app.issues i JOIN app.projects p ON p.id = i.project_id WHERE p.tenant_id = $1`,
          ],
        ];
        for (const [table, sql] of shuffle(inserts, random).slice(0, 1 + Math.floor(random() * 3)))
          await books.run(c, t, 'grown', 'added', table, sql, [t]);
      }
      // New: tenants created after the backup.
      for (const t of [1001, 1002]) {
        await books.run(
          c,
          t,
          'new',
          'added',
          'app.tenants',
          `INSERT INTO app.tenants (id, name, plan_id) VALUES ($1::bigint, 'rowdata tenant ' || $1::text, 2)`,
          [t],
        );
        await books.run(
          c,
          t,
          'new',
          'added',
          'app.billing_accounts',
          `INSERT INTO app.billing_accounts (tenant_id, card_last4) VALUES ($1, '4242')`,
          [t],
        );
        await books.run(
          c,
          t,
          'new',
          'added',
          'app.users',
          `INSERT INTO app.users (tenant_id, email) VALUES ($1::bigint, 'rowdata-new-' || $1::text || '@example.test')`,
          [t],
        );
      }
    });
    process.stderr.write(
      `[discover.test] absent ${books.of('absent')}; partial ${books.of('partial')}; background ${[...background]}; changed ${books.of('changed')}; grown ${books.of('grown')}; writer ${writerTenants}\n`,
    );
  });

  afterAll(async () => {
    await worker?.stop();
    await pools.closeAll();
    s3.destroy();
  });

  let firstId: string;
  let listed: string[] = [];

  it('lists exactly the damaged tenants, with the right class and per-table counts, while a writer works; live is untouched', async () => {
    const writer = new Writer(live.url, writerTenants, prng(seed + 1));
    await writer.start();
    // Some writes are committed before discover starts: those tenants cannot come out intact.
    while (writer.log.length < 10) await new Promise((r) => setTimeout(r, 20));
    const before = await liveFingerprint(live.url, writerTenants);
    const committedBefore = [...writer.log];
    const listFile = join(tmpdir(), `${uniqueName('discover-list')}.txt`);
    firstId = uniqueName('d').replace(/_/g, '-');
    const startedAt = Date.now();
    let run: CliResult;
    try {
      run = await discover([
        '--backup',
        backup,
        '--live',
        live.url,
        '--id',
        firstId,
        '--json',
        '--write-list',
        listFile,
        '--include-partial',
      ]);
    } finally {
      await writer.stop();
    }
    const finishedAt = Date.now();
    expect(run.code, run.stderr).toBe(0);
    expect(writer.errors).toEqual([]);
    // The writer really worked while discover ran.
    expect(writer.log.filter((e) => e.at > startedAt && e.at < finishedAt).length).toBeGreaterThan(0);
    expect(await liveFingerprint(live.url, writerTenants)).toEqual(before);

    const summary = run.json as DiscoverSummary;
    expect(summary.discoverId).toBe(firstId);
    expect(summary.tenantRoot).toBe('app.tenants');
    expect(summary.tenantsInBackup).toBe(60);
    expect(summary.tenantsInLive).toBe(60 - books.of('absent').length + books.of('new').length);
    expect(summary.warnings).toEqual([]);

    const { tenants } = await discovered(summary);
    // --json prints the same tenants, by class, as discover.json holds them: scripts need not read S3 themselves.
    const printed = (run.json as { tenants: Record<string, DiscoveredTenant[]> }).tenants;
    expect(Object.keys(printed).sort()).toEqual(['absent', 'changed', 'grown', 'new', 'partial']);
    for (const [c, list] of Object.entries(printed)) expect(list).toEqual(tenants.filter((t) => t.class === c));
    expect(Object.values(printed).flat().length).toBe(tenants.length);
    const found = new Map(tenants.map((t) => [t.tenantId, t]));
    // The incident's tenants: class and every per-table count as booked.
    for (const [id, expected] of books.tenants) {
      const t = found.get(id);
      expect(t, `tenant ${id} (${expected.class}) is not in discover.json`).toBeDefined();
      expect({ id, class: t!.class, missing: t!.missing, changed: t!.changed, added: t!.added }).toEqual({
        id,
        class: expected.class,
        missing: expected.missing,
        changed: expected.changed,
        added: expected.added,
      });
    }
    // The writer's tenants: normal activity. One with an update committed before discover began is changed; none
    // misses a row.
    const updatedBefore = new Set(committedBefore.filter((e) => e.op === 'update').map((e) => e.tenant));
    const writtenBefore = new Set(committedBefore.map((e) => e.tenant));
    for (const w of writerTenants.map(String)) {
      const t = found.get(w);
      if (writtenBefore.has(w)) expect(t, `writer tenant ${w}`).toBeDefined();
      if (!t) continue;
      expect(['changed', 'grown'], `writer tenant ${w}: ${JSON.stringify(t)}`).toContain(t.class);
      expect(t.missing).toBeUndefined();
      if (updatedBefore.has(w)) expect(t.class).toBe('changed');
    }
    // Nobody else differs.
    const known = new Set([...books.tenants.keys(), ...writerTenants.map(String)]);
    expect(tenants.filter((t) => !known.has(t.tenantId)).map((t) => t.tenantId)).toEqual([]);
    const writerFound = writerTenants.map(String).filter((w) => found.has(w));
    expect(summary.counts).toEqual({
      absent: books.of('absent').length,
      partial: books.of('partial').length,
      changed: books.of('changed').length + writerFound.filter((w) => found.get(w)!.class === 'changed').length,
      grown: books.of('grown').length + writerFound.filter((w) => found.get(w)!.class === 'grown').length,
      intact: intactTenants.length + writerTenants.length - writerFound.length,
      new: books.of('new').length,
    });

    // The tables most affected add up to the booked missing rows.
    const missingPerTable: Record<string, number> = {};
    for (const e of books.tenants.values())
      for (const [table, n] of Object.entries(e.missing ?? {}))
        missingPerTable[table] = (missingPerTable[table] ?? 0) + n;
    expect(Object.fromEntries(summary.mostAffected.map((m) => [m.table, m.missingRows]))).toEqual(missingPerTable);
    expect(summary.mostAffected.map((m) => m.missingRows)).toEqual(
      [...summary.mostAffected.map((m) => m.missingRows)].sort((a, b) => b - a),
    );

    // The list to restore: absent + partial, in the format of --tenants-file.
    listed = readList(listFile);
    expect(sortIds(listed)).toEqual(sortIds([...books.of('absent'), ...books.of('partial')]));
  });

  it('start --from-discover: partial tenants only with their number said back (--allow-partial=<n>), then restored; a second discover finds none absent or partial', async () => {
    expect(firstId, 'the first discover ran').toBeDefined();
    const restoreId = uniqueName('r-from-d').replace(/_/g, '-');
    const start = (allowPartial: string[]) =>
      runCli([
        'start',
        '--from-discover',
        firstId,
        ...allowPartial,
        '--backup',
        backup,
        '--live',
        live.url,
        '--tenant-root',
        'app.tenants',
        '--id',
        restoreId,
        '--task-queue',
        taskQueue,
        '--artifacts',
        artifacts,
        '--wait',
        '--json',
      ]);
    // The partial tenants of the list: the incident's and the background tenants whose users deleted rows; discover
    // cannot tell them apart, so the operator must read them and say their number.
    const partial = books.of('partial');
    const absent = books.of('absent');
    expect(partial.filter((t) => background.has(t)).length).toBeGreaterThan(0);
    expect(partial.length).toBeGreaterThan(10);
    const rowsOf = (id: string) => Object.values(books.tenants.get(id)!.missing ?? {}).reduce((s, n) => s + n, 0);
    const topTen = partial
      .map((id) => ({ id, rows: rowsOf(id) }))
      .sort((a, b) => b.rows - a.rows || Number(a.id) - Number(b.id))
      .slice(0, 10)
      .map((t) => `${t.id}: ${t.rows}`);
    const shown = (stderr: string) =>
      [...stderr.matchAll(/^ {2}tenant (\S+): (\d+) row\(s\)/gm)].map((m) => `${m[1]}: ${m[2]}`);
    const before = await tenantRows(live.url, listed.map(Number));

    // The bare flag: refused, with the count, the ten with the most rows that would come back, and how to say it.
    const bare = await start(['--allow-partial']);
    expect(bare.code, bare.stderr).toBe(2);
    expect(bare.stderr).toContain(
      `--allow-partial needs the number of partial tenants said back (--allow-partial=<n>): discover ${firstId} found ${partial.length} partial tenant(s)`,
    );
    expect(bare.stderr).toContain("their own users' deletions since the backup, which a restore brings back too");
    expect(shown(bare.stderr)).toEqual(topTen);
    expect(bare.stderr).toContain(
      `start again with --allow-partial=${partial.length}; without --allow-partial, only the ${absent.length} absent tenant(s) (root row gone: purged, or an account closed) are restored. Nothing was started.`,
    );

    // A count that is not theirs (given as '--allow-partial <n>'): refused the same way.
    const wrong = await start(['--allow-partial', String(partial.length - 1)]);
    expect(wrong.code, wrong.stderr).toBe(2);
    expect(wrong.stderr).toContain(
      `--allow-partial=${partial.length - 1} does not match: discover ${firstId} found ${partial.length} partial tenant(s)`,
    );
    expect(shown(wrong.stderr)).toEqual(topTen);
    // Nothing was written (and the same restore id is still free: used below).
    expect(await tenantRows(live.url, listed.map(Number))).toEqual(before);

    // The number said back: absent and partial tenants restored, the users' own deletions too (what was accepted).
    const run = await start([`--allow-partial=${partial.length}`]);
    expect(run.code, run.stderr).toBe(0);
    const out = run.json as { status: string; tenants: Array<{ tenantId: string; status: string }> };
    expect(out.status).toBe('succeeded');
    expect(sortIds(out.tenants.map((t) => t.tenantId))).toEqual(sortIds(listed));
    expect(out.tenants.filter((t) => t.status !== 'restored')).toEqual([]);
    const damaged = listed.map(Number);
    expect(await tenantRows(live.url, damaged)).toEqual(await tenantRows(source.url, damaged));
    // Among them the background tenants: the rows their users deleted and the closed account are back, as the
    // refusal said they would be.
    const others = [...background].map(Number);
    expect(others.length).toBe(7);
    expect(await tenantRows(live.url, others)).toEqual(await tenantRows(source.url, others));

    const again = await discover(['--scratch', source.url, '--live', live.url, '--json']);
    expect(again.code, again.stderr).toBe(0);
    const summary = again.json as DiscoverSummary;
    expect(summary.counts.absent).toBe(0);
    expect(summary.counts.partial).toBe(0);
    expect(summary.counts.new).toBe(2);
    expect(summary.counts.changed).toBeGreaterThanOrEqual(books.of('changed').length);
    expect(summary.mostAffected).toEqual([]);

    // A discover that found nobody to restore: start --from-discover refuses it, nothing started.
    const none = await runCli([
      'start',
      '--from-discover',
      summary.discoverId,
      '--allow-partial',
      '--scratch',
      source.url,
      '--live',
      live.url,
      '--tenant-root',
      'app.tenants',
      '--task-queue',
      taskQueue,
      '--artifacts',
      artifacts,
    ]);
    expect(none.code, none.stderr).toBe(2);
    expect(none.stderr).toContain(`discover ${summary.discoverId} found no tenant to restore`);
    expect(none.stderr).toContain('Nothing was started.');
  });
});

describe('discover: bad input', () => {
  const pools = new Pools();
  const s3 = createS3Client();
  const taskQueue = uniqueName('tq_discover_bad');
  let source: { name: string; url: string };
  let worker: Awaited<ReturnType<typeof startWorker>>;

  const discover = (args: string[]): Promise<CliResult> =>
    runCli(['discover', '--task-queue', taskQueue, '--artifacts', artifacts, ...args]);

  beforeAll(async () => {
    source = await fresh('disc_bad_src');
    await generate(source.url, [{ first: 1, count: 20, shape: smallTenant }]);
    await withClient(source.url, (c) => c.query('CREATE VIEW app.tenant_names AS SELECT id, name FROM app.tenants'));
    worker = await startWorker({ taskQueue, activities: createActivities({ pools, s3 }) });
  });

  afterAll(async () => {
    await worker?.stop();
    await pools.closeAll();
    s3.destroy();
  });

  it.each([
    ['a view', 'app.tenant_names'],
    ['nothing at all', 'app.no_such_table'],
  ])('a tenant root that is %s: exit 2, the message names it', async (_what, root) => {
    const run = await discover(['--scratch', source.url, '--live', source.url, '--tenant-root', root]);
    expect(run.code, run.stderr).toBe(2);
    expect(run.stderr).toContain(`Tenant root ${root} is not a table`);
  });

  it('start --allow-partial: a count with an explicit list, or a count that is not a number: exit 2, nothing started', async () => {
    const start = (allowPartial: string) =>
      runCli([
        'start',
        '--tenants',
        '1,2',
        allowPartial,
        '--scratch',
        source.url,
        '--live',
        source.url,
        '--tenant-root',
        'app.tenants',
        '--task-queue',
        taskQueue,
        '--artifacts',
        artifacts,
      ]);
    const counted = await start('--allow-partial=2');
    expect(counted.code, counted.stderr).toBe(2);
    expect(counted.stderr).toContain(
      "--allow-partial=2: a count is checked against a discover's partial tenants (--from-discover); with --tenants or --tenants-file, which tenants are partial is known only at their preflight, after the start. Give --allow-partial without a count",
    );
    const junk = await start('--allow-partial=x');
    expect(junk.code, junk.stderr).toBe(2);
    expect(junk.stderr).toContain(
      "--allow-partial 'x': give the number of partial tenants to restore (--allow-partial=<n>), or the bare flag with --tenants.",
    );
  });

  it('an empty live: every tenant absent, and a warning that says to check --live', async () => {
    const empty = await fresh('disc_empty');
    await generate(empty.url, []);
    const run = await discover(['--scratch', source.url, '--live', empty.url, '--tenant-root', 'app.tenants']);
    expect(run.code, run.stderr).toBe(0);
    expect(`${run.stdout}${run.stderr}`).toMatch(/WARNING: live has no tenant at all.*Check --live/);
    const json = await discover([
      '--scratch',
      source.url,
      '--live',
      empty.url,
      '--tenant-root',
      'app.tenants',
      '--json',
    ]);
    expect(json.code, json.stderr).toBe(0);
    const summary = json.json as DiscoverSummary;
    expect(summary.counts).toMatchObject({ absent: 20, intact: 0, new: 0 });
    expect(summary.warnings.join('\n')).toContain('Check --live');
  });

  it('a live schema that drifted: the drift is reported, tenants are classified on the columns both sides have', async () => {
    const drifted = await fresh('disc_drift', source.name);
    await withClient(drifted.url, async (c) => {
      await c.query(`ALTER TABLE app.users ADD COLUMN nickname text NOT NULL DEFAULT 'rowdata nick'`);
      await c.query('ALTER TABLE app.app_installations DROP COLUMN enabled');
      await c.query('DELETE FROM app.tenants WHERE id = 3');
      await c.query(
        `UPDATE app.users SET email = 'drift-' || email WHERE id = (SELECT min(id) FROM app.users WHERE tenant_id = 4)`,
      );
    });
    const run = await discover([
      '--scratch',
      source.url,
      '--live',
      drifted.url,
      '--tenant-root',
      'app.tenants',
      '--json',
    ]);
    expect(run.code, run.stderr).toBe(0);
    const summary = run.json as DiscoverSummary;
    expect(summary.counts).toEqual({ absent: 1, partial: 0, changed: 1, grown: 0, intact: 18, new: 0 });
    expect(summary.drift.tables.map((d) => d.table).sort()).toEqual(['app.app_installations', 'app.users']);
    expect(summary.warnings.join('\n')).toMatch(/drift.*app\.(users|app_installations)/);
  });

  it('a live that is another database: almost every tenant absent or new, said loudly', async () => {
    const other = await fresh('disc_other');
    await generate(other.url, [{ first: 5001, count: 25, shape: smallTenant }]);
    const run = await discover([
      '--scratch',
      source.url,
      '--live',
      other.url,
      '--tenant-root',
      'app.tenants',
      '--json',
    ]);
    expect(run.code, run.stderr).toBe(0);
    const summary = run.json as DiscoverSummary;
    expect(summary.counts).toMatchObject({ absent: 20, new: 25, intact: 0 });
    expect(summary.warnings.join('\n')).toMatch(/live looks like another database.*Check --live/);
  });
});
