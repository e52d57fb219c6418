/**
 * Where the database time goes: samples pg_stat_activity every `intervalMs` and counts, per statement (its first
 * words, literals and numbers folded), how often a session of the product was seen running it. Samples × interval
 * approximates the time spent in that statement, summed over sessions. One light query per interval, from one
 * connection of the bench (not the product's).
 */
import { connect, type Client } from '../../activities/db';
import { dbUrl } from './pg';

export interface StatementTime {
  statement: string;
  ms: number;
  share: number;
}

/** Folds literals, numbers and whitespace so that the same statement for other tenants counts as one. */
export function normalizeStatement(sql: string): string {
  return sql
    .replace(/'(?:[^']|'')*'/g, '?')
    .replace(/\b\d+\b/g, '?')
    .replace(/\s+/g, ' ')
    .trim()
    .slice(0, 160);
}

export class DbSampler {
  private client?: Client;
  private timer?: NodeJS.Timeout;
  private busy = false;
  private readonly counts = new Map<string, number>();
  samples = 0;

  constructor(
    private readonly applicationPrefix = 'tenant-restore',
    private readonly intervalMs = 200,
  ) {}

  async start(): Promise<void> {
    this.client = await connect(dbUrl('postgres'), 'tenant-restore-bench-sampler');
    this.timer = setInterval(() => void this.sample(), this.intervalMs);
  }

  private async sample(): Promise<void> {
    if (this.busy || !this.client) return;
    this.busy = true;
    try {
      const { rows } = await this.client.query<{ query: string; wait: string | null }>(
        `SELECT query, wait_event_type || ':' || wait_event AS wait FROM pg_stat_activity
         WHERE state = 'active' AND pid <> pg_backend_pid()
           AND (application_name LIKE $1 || '%' OR application_name = 'pg_restore')
           AND application_name NOT LIKE 'tenant-restore-bench%'`,
        [this.applicationPrefix],
      );
      this.samples += 1;
      for (const r of rows) {
        const key = `${normalizeStatement(r.query)}${r.wait && !r.wait.startsWith('Client') ? ` [wait ${r.wait}]` : ''}`;
        this.counts.set(key, (this.counts.get(key) ?? 0) + 1);
      }
    } catch {
      // A sample lost under load changes nothing.
    } finally {
      this.busy = false;
    }
  }

  async stop(top = 8): Promise<{ samples: number; intervalMs: number; statements: StatementTime[] }> {
    if (this.timer) clearInterval(this.timer);
    while (this.busy) await new Promise((r) => setTimeout(r, 20));
    await this.client?.end().catch(() => undefined);
    const total = [...this.counts.values()].reduce((a, b) => a + b, 0) || 1;
    const statements = [...this.counts.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([statement, n]) => ({ statement, ms: n * this.intervalMs, share: n / total }));
    return { samples: this.samples, intervalMs: this.intervalMs, statements };
  }
}
