/**
 * The other tenants at work: a concurrent writer that keeps inserting, updating and deleting rows of tenants that are
 * NOT in a given set (the victims), while the incident and the restore run.
 *
 * It keeps an exact log of what it committed: for every row it touched, the table, the key and the row's digest
 * after its write (`md5(row::text)`, read back with RETURNING, so after triggers ran), or null for a delete. With the
 * log, checksums.ts can prove that every other change to those tenants' rows came from nobody: see
 * `compareSnapshots`. It also samples the latency of each transaction, for the benchmark (p50/p99 before and
 * during a restore).
 */
import { connect, type Client } from '../../activities/db';
import { prng } from './prng';

export interface WriterLogEntry {
  seq: number;
  /** ms since epoch, at commit */
  at: number;
  op: 'insert' | 'update' | 'delete';
  table: string;
  key: string;
  tenantId: string;
  /** md5 of the row's text after the write; null when the row was deleted. */
  digest: string | null;
}

export interface LatencySample {
  at: number;
  ms: number;
}

export interface LatencySummary {
  count: number;
  p50: number;
  p99: number;
  max: number;
}

export interface WriterOptions {
  url: string;
  /** Tenants the writer must never touch (the victims). */
  excludeTenants: Iterable<string>;
  /** Sessions writing in parallel (default 2). */
  connections?: number;
  /** Pause between two transactions of one session, ms (default 10): the writer is load, not a stress test. */
  pauseMs?: number;
  seed?: number;
  /**
   * Write to these tenants only (the victims, until the moment they are deleted: the demo's point-in-time story), and
   * only insert: what a restore must bring back is then exactly the rows in the log.
   */
  onlyTenants?: Iterable<string>;
  insertsOnly?: boolean;
}

export interface WriterStats {
  transactions: number;
  errors: number;
  byOp: Record<string, number>;
  latency: LatencySummary;
  lastErrors: string[];
}

interface TenantState {
  tenantId: string;
  projects: string[];
  users: string[];
}

/** Percentiles by nearest rank. */
export function summarize(samples: LatencySample[], from = 0, to = Number.POSITIVE_INFINITY): LatencySummary {
  const ms = samples
    .filter((s) => s.at >= from && s.at < to)
    .map((s) => s.ms)
    .sort((a, b) => a - b);
  const pick = (p: number) => (ms.length ? ms[Math.min(ms.length - 1, Math.ceil((p / 100) * ms.length) - 1)] : 0);
  return { count: ms.length, p50: pick(50), p99: pick(99), max: ms.length ? ms[ms.length - 1] : 0 };
}

export class Writer {
  readonly log: WriterLogEntry[] = [];
  readonly samples: LatencySample[] = [];
  private readonly excluded: Set<string>;
  private tenants: TenantState[] = [];
  private running = false;
  private loops: Promise<void>[] = [];
  private clients: Client[] = [];
  private seq = 0;
  /** The tail of the commit queue (commitInOrder): each session's COMMIT and log entries, one after another. */
  private commits: Promise<void> = Promise.resolve();
  private errors = 0;
  private readonly lastErrors: string[] = [];
  private readonly byOp: Record<string, number> = {};

  constructor(private readonly options: WriterOptions) {
    this.excluded = new Set([...options.excludeTenants].map(String));
  }

  /** Loads the writable tenants (their projects and users) and starts the sessions. */
  async start(): Promise<void> {
    const client = await connect(this.options.url, 'workload-writer');
    try {
      const excluded = [...this.excluded];
      const only = this.options.onlyTenants ? [...this.options.onlyTenants].map(String) : undefined;
      const which = only ? 'tenant_id = ANY($1::bigint[])' : 'NOT (tenant_id = ANY($1::bigint[]))';
      const projects = await client.query<{ tenant_id: string; ids: string[] }>(
        `SELECT tenant_id::text, array_agg(id::text ORDER BY id) AS ids FROM app.projects WHERE ${which} GROUP BY tenant_id`,
        [only ?? excluded],
      );
      const users = await client.query<{ tenant_id: string; ids: string[] }>(
        `SELECT tenant_id::text, array_agg(id::text ORDER BY id) AS ids FROM app.users WHERE ${which} GROUP BY tenant_id`,
        [only ?? excluded],
      );
      const usersOf = new Map(users.rows.map((r) => [r.tenant_id, r.ids]));
      this.tenants = projects.rows
        .filter((r) => usersOf.has(r.tenant_id))
        .map((r) => ({ tenantId: r.tenant_id, projects: r.ids, users: usersOf.get(r.tenant_id)! }))
        .sort((a, b) => Number(a.tenantId) - Number(b.tenantId));
    } finally {
      await client.end();
    }
    if (this.tenants.length === 0) throw new Error('the writer found no tenant to write to');
    this.running = true;
    const sessions = this.options.connections ?? 2;
    for (let i = 0; i < sessions; i++) {
      const session = await connect(this.options.url, 'workload-writer');
      // Digests are md5(row::text): timestamps must print the same way here and in checksums.ts.
      await session.query("SET TimeZone = 'UTC'; SET DateStyle = 'ISO, MDY'");
      this.clients.push(session);
      this.loops.push(this.loop(session, prng((this.options.seed ?? 7) * 1000 + i)));
    }
  }

  /** Stops after the transactions in flight, closes the sessions, and returns the figures. */
  async stop(): Promise<WriterStats> {
    this.running = false;
    await Promise.all(this.loops);
    await Promise.all(this.clients.map((c) => c.end().catch(() => undefined)));
    this.clients = [];
    return this.stats();
  }

  stats(): WriterStats {
    return {
      transactions: this.samples.length,
      errors: this.errors,
      byOp: { ...this.byOp },
      latency: summarize(this.samples),
      lastErrors: [...this.lastErrors],
    };
  }

  /**
   * COMMIT, then log, with no other session's COMMIT in between. Two sessions may update one row: the second waits for
   * the first's COMMIT and reads its change back, so the log must hold the first's entry first. Without this, under
   * load the second session's reply could be handled first and the log's last digest for the row would be the older.
   */
  private async commitInOrder(client: Client, log: (at: number) => void): Promise<number> {
    let release!: () => void;
    const previous = this.commits;
    this.commits = new Promise<void>((resolve) => (release = resolve));
    await previous;
    try {
      await client.query('COMMIT');
      const at = Date.now();
      log(at);
      return at;
    } finally {
      release();
    }
  }

  private async loop(client: Client, random: () => number): Promise<void> {
    const pause = this.options.pauseMs ?? 10;
    while (this.running) {
      const tenant = this.tenants[Math.floor(random() * this.tenants.length)];
      const project = tenant.projects[Math.floor(random() * tenant.projects.length)];
      const user = tenant.users[Math.floor(random() * tenant.users.length)];
      const dice = this.options.insertsOnly ? 0 : random();
      const started = performance.now();
      const entries: Array<Omit<WriterLogEntry, 'seq' | 'at' | 'tenantId'>> = [];
      let op = '';
      try {
        await client.query('BEGIN');
        if (dice < 0.35) {
          op = 'insert issue+comment';
          const issue = await client.query<{ id: string; digest: string }>(
            `INSERT INTO app.issues AS x (project_id, reporter_id, title, metadata) VALUES ($1, $2, $3, $4)
             RETURNING x.id::text, md5(x::text) AS digest`,
            [project, user, `Writer issue ${this.seq}`, JSON.stringify({ source: 'writer' })],
          );
          entries.push({ op: 'insert', table: 'app.issues', key: issue.rows[0].id, digest: issue.rows[0].digest });
          const comment = await client.query<{ id: string; digest: string }>(
            `INSERT INTO app.comments AS x (issue_id, author_id, body) VALUES ($1, $2, 'first!') RETURNING x.id::text, md5(x::text) AS digest`,
            [issue.rows[0].id, user],
          );
          entries.push({
            op: 'insert',
            table: 'app.comments',
            key: comment.rows[0].id,
            digest: comment.rows[0].digest,
          });
        } else if (dice < 0.7) {
          op = 'update issue';
          // Recent issues of the project: the updated_at trigger fires on each.
          const result = await client.query<{ id: string; digest: string }>(
            `UPDATE app.issues x SET status = $2, priority = $3
             WHERE x.id = (SELECT id FROM app.issues WHERE project_id = $1 ORDER BY id DESC LIMIT 1 OFFSET $4)
             RETURNING x.id::text, md5(x::text) AS digest`,
            [
              project,
              ['open', 'in_progress', 'review', 'done'][Math.floor(random() * 4)],
              1 + Math.floor(random() * 5),
              Math.floor(random() * 10),
            ],
          );
          for (const r of result.rows) entries.push({ op: 'update', table: 'app.issues', key: r.id, digest: r.digest });
        } else if (dice < 0.8) {
          op = 'update user';
          const result = await client.query<{ id: string; digest: string }>(
            `UPDATE app.users x SET profile = x.profile || jsonb_build_object('last_seen_seq', $2::int) WHERE x.id = $1
             RETURNING x.id::text, md5(x::text) AS digest`,
            [user, this.seq],
          );
          for (const r of result.rows) entries.push({ op: 'update', table: 'app.users', key: r.id, digest: r.digest });
        } else if (dice < 0.9) {
          op = 'delete attachment';
          const result = await client.query<{ id: string }>(
            `DELETE FROM app.attachments x WHERE x.id = (
               SELECT a.id FROM app.issues i JOIN app.comments c ON c.issue_id = i.id JOIN app.attachments a ON a.comment_id = c.id
               WHERE i.project_id = $1 LIMIT 1)
             RETURNING x.id::text`,
            [project],
          );
          for (const r of result.rows)
            entries.push({ op: 'delete', table: 'app.attachments', key: r.id, digest: null });
        } else {
          op = 'delete issue label';
          const result = await client.query<{ key: string }>(
            `DELETE FROM app.issue_labels x WHERE (x.issue_id, x.label_id) = (
               SELECT il.issue_id, il.label_id FROM app.issues i JOIN app.issue_labels il ON il.issue_id = i.id
               WHERE i.project_id = $1 LIMIT 1)
             RETURNING x.issue_id::text || ':' || x.label_id::text AS key`,
            [project],
          );
          for (const r of result.rows)
            entries.push({ op: 'delete', table: 'app.issue_labels', key: r.key, digest: null });
        }
        const at = await this.commitInOrder(client, (committedAt) => {
          for (const e of entries) this.log.push({ ...e, seq: this.seq++, at: committedAt, tenantId: tenant.tenantId });
        });
        this.byOp[op] = (this.byOp[op] ?? 0) + 1;
        this.samples.push({ at, ms: performance.now() - started });
      } catch (error) {
        this.errors++;
        this.lastErrors.push(`${op}: ${(error as Error).message}`);
        if (this.lastErrors.length > 10) this.lastErrors.shift();
        await client.query('ROLLBACK').catch(() => undefined);
        // A broken session ends this loop; the others go on.
        if (/terminated|ended|not queryable/i.test((error as Error).message)) return;
      }
      if (pause > 0) await new Promise((r) => setTimeout(r, pause));
    }
  }
}
