/**
 * The books of an incident-window test (issue 26): every row of the orchestration fixture as (tenant, table, key, text),
 * the three-way oracle that says what live must hold after a revert of the window, the orphan scan, and a writer of
 * bystander tenants that keeps its own model of every row it committed.
 *
 * The oracle is written from the issue's words, not from the product: base T0, incident T1, live now.
 * - a row in T0 and not in T1 (the window deleted it) comes back as it was at T0, unless live holds its key (with T0's
 *   content: nothing to do; with another: a conflict, live keeps it);
 * - a row in both with other content (the window changed it) goes back to T0 only where live still holds T1's version;
 *   live without it (deleted since) or with a third content (changed since) is a conflict, left as it is;
 * - anything else (rows the window added, rows it did not touch) is live's.
 * It does not model a conflict on a parent (a row a user deleted since T1 that rows the window deleted hang under):
 * scenarios that use it must not make one.
 */
import pg from 'pg';
import { withClient } from './stack';

export interface Row {
  tenant: string;
  table: string;
  key: string;
  row: string;
}

/** Rows by `${table} ${key}`. */
export type Snapshot = Map<string, Row>;

export const rowId = (table: string, key: string): string => `${table} ${key}`;

/**
 * Each owned table of the fixture: its tenant (through the ownership path), its key, its row as text. The billing row
 * leaves out reenabled_by, which the re-enable action writes after a restore.
 */
const owned: Record<string, string> = {
  'app.tenants': 'SELECT x.id::text AS tenant, x.id::text AS k, x::text AS r FROM app.tenants x WHERE x.id = ANY($1)',
  'app.users': 'SELECT x.tenant_id::text, x.id::text, x::text FROM app.users x WHERE x.tenant_id = ANY($1)',
  'app.projects': 'SELECT x.tenant_id::text, x.id::text, x::text FROM app.projects x WHERE x.tenant_id = ANY($1)',
  'app.issues':
    'SELECT p.tenant_id::text, x.id::text, x::text FROM app.issues x JOIN app.projects p ON p.id = x.project_id WHERE p.tenant_id = ANY($1)',
  'app.comments': `SELECT p.tenant_id::text, x.id::text, x::text FROM app.comments x JOIN app.issues i ON i.id = x.issue_id
    JOIN app.projects p ON p.id = i.project_id WHERE p.tenant_id = ANY($1)`,
  'app.billing_accounts':
    'SELECT x.tenant_id::text, x.tenant_id::text, (x.tenant_id, x.active, x.card_last4)::text FROM app.billing_accounts x WHERE x.tenant_id = ANY($1)',
  'app.app_installations':
    'SELECT x.tenant_id::text, x.id::text, x::text FROM app.app_installations x WHERE x.tenant_id = ANY($1)',
};
export const ownedTables = Object.keys(owned);

/** Every row of the given tenants, on one client (one query per table). */
export async function snapshotWith(c: pg.Client, tenants: number[]): Promise<Snapshot> {
  const out: Snapshot = new Map();
  for (const [table, sql] of Object.entries(owned)) {
    const { rows } = await c.query<{ tenant: string; k: string; r: string }>(
      `SELECT s.* FROM (${sql}) AS s(tenant, k, r)`,
      [tenants],
    );
    for (const r of rows) out.set(rowId(table, r.k), { tenant: r.tenant, table, key: r.k, row: r.r });
  }
  return out;
}

export async function snapshot(url: string, tenants: number[]): Promise<Snapshot> {
  return withClient(url, (c) => snapshotWith(c, tenants));
}

/** The rows of some tenants as sorted lines: what toEqual compares, with a readable diff. */
export function lines(s: Snapshot, tenants?: Array<number | string>): string[] {
  const only = tenants ? new Set(tenants.map(String)) : undefined;
  return [...s.values()]
    .filter((r) => !only || only.has(r.tenant))
    .map((r) => `${r.tenant} ${r.table} ${r.key} ${r.row}`)
    .sort();
}

export type ConflictReason =
  'live holds another row with its key' | 'deleted since the window' | 'changed since the window';

export interface OracleConflict {
  tenantId: string;
  table: string;
  key: string;
  reason: ConflictReason;
}

type Counts = Record<string, Record<string, number>>;

/** What the window did, per tenant and table: rows deleted (in T0, not in T1) and changed (both, other content). */
export function windowDelta(t0: Snapshot, t1: Snapshot): { deleted: Counts; changed: Counts; added: Counts } {
  const deleted: Counts = {};
  const changed: Counts = {};
  const added: Counts = {};
  const bump = (c: Counts, r: Row) => {
    const t = (c[r.tenant] ??= {});
    t[r.table] = (t[r.table] ?? 0) + 1;
  };
  for (const [id, r0] of t0) {
    const r1 = t1.get(id);
    if (!r1) bump(deleted, r0);
    else if (r1.row !== r0.row) bump(changed, r0);
  }
  for (const [id, r1] of t1) if (!t0.has(id)) bump(added, r1);
  return { deleted, changed, added };
}

/**
 * The three-way revert of the window (t0, t1) onto `now`, for the tenants in `restored`: live as it must be after it
 * (every row of `now`, with the revert applied to those tenants' rows), and the conflicts it must report.
 */
export function threeWay(
  t0: Snapshot,
  t1: Snapshot,
  now: Snapshot,
  restored: Array<number | string>,
): { expected: Snapshot; conflicts: OracleConflict[]; reverted: Counts } {
  const set = new Set(restored.map(String));
  const expected: Snapshot = new Map(now);
  const conflicts: OracleConflict[] = [];
  const reverted: Counts = {};
  for (const [id, r0] of t0) {
    if (!set.has(r0.tenant)) continue;
    const r1 = t1.get(id);
    const rn = now.get(id);
    const conflict = (reason: ConflictReason) =>
      conflicts.push({ tenantId: r0.tenant, table: r0.table, key: r0.key, reason });
    if (!r1) {
      if (!rn) expected.set(id, r0);
      else if (rn.row !== r0.row) conflict('live holds another row with its key');
    } else if (r1.row !== r0.row) {
      if (rn?.row === r1.row) {
        expected.set(id, r0);
        const t = (reverted[r0.tenant] ??= {});
        t[r0.table] = (t[r0.table] ?? 0) + 1;
      } else if (!rn) conflict('deleted since the window');
      else if (rn.row !== r0.row) conflict('changed since the window');
    }
  }
  return { expected, conflicts, reverted };
}

/** Each FK of the fixture as a count of children whose parent is missing: all must be zero. */
export async function orphans(url: string): Promise<Record<string, number>> {
  const fks: Record<string, string> = {
    'users.tenant_id': 'app.users c WHERE NOT EXISTS (SELECT 1 FROM app.tenants p WHERE p.id = c.tenant_id)',
    'projects.tenant_id': 'app.projects c WHERE NOT EXISTS (SELECT 1 FROM app.tenants p WHERE p.id = c.tenant_id)',
    'projects.owner_id':
      'app.projects c WHERE c.owner_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM app.users p WHERE p.id = c.owner_id)',
    'issues.project_id': 'app.issues c WHERE NOT EXISTS (SELECT 1 FROM app.projects p WHERE p.id = c.project_id)',
    'comments.issue_id': 'app.comments c WHERE NOT EXISTS (SELECT 1 FROM app.issues p WHERE p.id = c.issue_id)',
    'comments.author_id':
      'app.comments c WHERE c.author_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM app.users p WHERE p.id = c.author_id)',
    'billing_accounts.tenant_id':
      'app.billing_accounts c WHERE NOT EXISTS (SELECT 1 FROM app.tenants p WHERE p.id = c.tenant_id)',
    'app_installations.tenant_id':
      'app.app_installations c WHERE NOT EXISTS (SELECT 1 FROM app.tenants p WHERE p.id = c.tenant_id)',
    'tenants.plan_id': 'app.tenants c WHERE NOT EXISTS (SELECT 1 FROM app.plans p WHERE p.id = c.plan_id)',
  };
  return withClient(url, async (c) => {
    const out: Record<string, number> = {};
    for (const [fk, from] of Object.entries(fks))
      out[fk] = (await c.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${from}`)).rows[0]!.n;
    return out;
  });
}

/** A WAL position (`0/3A000060`) as a number, to compare two. */
export const lsnValue = (lsn: string): bigint => {
  const [hi, lo] = lsn.split('/');
  return (BigInt(`0x${hi}`) << 32n) + BigInt(`0x${lo}`);
};

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Normal activity on bystander tenants for the whole scenario: each transaction inserts an issue with a comment, inserts
 * a comment, or renames an issue (one of the fixture's or one it made). `model` starts as a snapshot of its tenants and
 * takes every committed row as the database returned it, so that live's rows of these tenants can be compared with it
 * exactly at any moment the writer is paused. `pause()` resolves once no transaction of it is in flight.
 */
export class Writer {
  model: Snapshot = new Map();
  commits = 0;
  readonly errors: string[] = [];
  private client?: pg.Client;
  private loop?: Promise<void>;
  private stopped = false;
  private pauseRequested = false;
  private onPaused?: () => void;
  private resumed: Promise<void> = Promise.resolve();
  private resumeNow?: () => void;

  constructor(
    private readonly url: string,
    private readonly tenants: number[],
    private readonly everyMs = 40,
  ) {}

  async start(): Promise<void> {
    const client = new pg.Client({ connectionString: this.url });
    await client.connect();
    this.client = client;
    this.model = await snapshotWith(client, this.tenants);
    const issues = (t: number) =>
      [...this.model.values()].filter((r) => r.table === 'app.issues' && r.tenant === String(t)).map((r) => r.key);
    const firstOf = (t: number, table: string) =>
      [...this.model.values()]
        .filter((r) => r.table === table && r.tenant === String(t))
        .map((r) => r.key)
        .sort((a, b) => Number(a) - Number(b))[0]!;
    let seq = 0;
    this.loop = (async () => {
      try {
        while (!this.stopped) {
          if (this.pauseRequested) {
            this.onPaused?.();
            await this.resumed;
            continue;
          }
          seq += 1;
          const tenant = this.tenants[seq % this.tenants.length]!;
          const user = firstOf(tenant, 'app.users');
          const project = firstOf(tenant, 'app.projects');
          const its = issues(tenant);
          const issue = its[(seq * 7) % its.length]!;
          const pending: Row[] = [];
          const keep = (table: string, r: { k: string; r: string }) =>
            pending.push({ tenant: String(tenant), table, key: r.k, row: r.r });
          try {
            await client.query('BEGIN');
            if (seq % 3 === 0) {
              const i = await client.query<{ k: string; r: string }>(
                `INSERT INTO app.issues AS x (project_id, title) VALUES ($1, 'rowdata writer issue ' || $2::int)
                 RETURNING x.id::text AS k, x::text AS r`,
                [project, seq],
              );
              keep('app.issues', i.rows[0]!);
              const c = await client.query<{ k: string; r: string }>(
                `INSERT INTO app.comments AS x (issue_id, author_id, body) VALUES ($1, $2, 'rowdata writer comment')
                 RETURNING x.id::text AS k, x::text AS r`,
                [i.rows[0]!.k, user],
              );
              keep('app.comments', c.rows[0]!);
            } else if (seq % 3 === 1) {
              const c = await client.query<{ k: string; r: string }>(
                `INSERT INTO app.comments AS x (issue_id, author_id, body) VALUES ($1, $2, 'rowdata writer comment ' || $3::int)
                 RETURNING x.id::text AS k, x::text AS r`,
                [issue, user, seq],
              );
              keep('app.comments', c.rows[0]!);
            } else {
              const u = await client.query<{ k: string; r: string }>(
                `UPDATE app.issues AS x SET title = 'rowdata writer title ' || $2::int WHERE x.id = $1
                 RETURNING x.id::text AS k, x::text AS r`,
                [issue, seq],
              );
              keep('app.issues', u.rows[0]!);
            }
            await client.query('COMMIT');
            for (const r of pending) this.model.set(rowId(r.table, r.key), r);
            this.commits += 1;
          } catch (error) {
            await client.query('ROLLBACK').catch(() => undefined);
            this.errors.push((error as Error).message);
          }
          await sleep(this.everyMs);
        }
      } finally {
        this.onPaused?.();
      }
    })();
  }

  /** Resolves once the writer is between transactions and will start none until resume(). */
  async pause(): Promise<void> {
    if (this.pauseRequested || !this.loop) return;
    this.resumed = new Promise((r) => (this.resumeNow = r));
    const paused = new Promise<void>((r) => (this.onPaused = r));
    this.pauseRequested = true;
    await paused;
  }

  resume(): void {
    this.pauseRequested = false;
    this.onPaused = undefined;
    this.resumeNow?.();
  }

  /** Resolves once `n` more transactions have committed. */
  async waitForCommits(n: number, timeoutMs = 60_000): Promise<void> {
    const target = this.commits + n;
    const deadline = Date.now() + timeoutMs;
    while (this.commits < target) {
      if (Date.now() > deadline)
        throw new Error(`the writer committed nothing for ${timeoutMs / 1000} s: ${this.errors.slice(-3).join('; ')}`);
      await sleep(20);
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.resume();
    await this.loop;
    await this.client?.end();
    this.loop = undefined;
  }
}
