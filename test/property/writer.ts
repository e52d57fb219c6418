/**
 * The property suite's writer: an application's own traffic on the bystanders (tenants the restore must not touch),
 * after the incident and, in some cases, during the restore. It updates rows, adds rows and whole new tenants, and
 * deletes leaf rows, and logs each change with the row's text as committed (RETURNING), so that the oracle can tell
 * its changes from the restore's.
 */
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { prng } from '../../scripts/workload/prng';
import { keyExpression, type Prepared, type WriterChange } from './case';
import { q } from './schema';

/** Text settings every reader of row texts uses (snapshots and the writer alike). */
export const canonicalSettings =
  "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET extra_float_digits = 3; SET bytea_output = 'hex'; SET IntervalStyle = 'postgres'";

interface Target {
  table: string;
  key: string;
  tenant: string;
}

export class PropertyWriter {
  readonly changes: WriterChange[] = [];
  private readonly random: () => number;
  private readonly rows: Target[];
  private client?: pg.Client;
  private loop?: Promise<void>;
  private stopping = false;
  private inserted = 0;
  errors: string[] = [];

  constructor(
    private readonly url: string,
    private readonly p: Prepared,
    seed: number,
  ) {
    this.random = prng(seed);
    const gone = new Set(p.deleted.map((r) => `${r.table}/${r.key}`));
    const bystanders = new Set(p.bystanders);
    const excluded = new Set(p.schema.tables.filter((t) => t.excluded).map((t) => t.name));
    this.rows = p.data.rows
      .filter((r) => r.tenant !== null && bystanders.has(r.tenant) && !gone.has(`${r.table}/${r.key}`))
      .filter((r) => !excluded.has(r.table))
      .map((r) => ({ table: r.table, key: r.key, tenant: r.tenant! }));
  }

  private async connect(): Promise<pg.Client> {
    if (!this.client) {
      this.client = new pg.Client({ connectionString: this.url, application_name: 'property-writer' });
      await this.client.connect();
      await this.client.query(canonicalSettings);
    }
    return this.client;
  }

  private get s(): string {
    return q(this.p.schema.schema);
  }

  private pick<T>(list: T[]): T | undefined {
    return list.length ? list[Math.floor(this.random() * list.length)] : undefined;
  }

  /** One operation: an update, an insert or a delete on a bystander (or a new tenant). */
  async step(): Promise<void> {
    const client = await this.connect();
    const roll = this.random();
    const schema = this.p.schema;
    if (roll < 0.45) {
      const textColumn = (table: string) =>
        schema.tables
          .find((t) => t.name === table)!
          .columns.find((c) => c.values === 'text' && ['note', 'name', 'body', 'label'].includes(c.name))?.name;
      const target = this.pick(this.rows.filter((r) => textColumn(r.table)));
      if (!target) return;
      const column = textColumn(target.table)!;
      const { rows } = await client.query<{ k: string; r: string }>(
        `UPDATE ${this.s}.${q(target.table)} t SET ${q(column)} = $1 WHERE ${keyExpression(schema, target.table)} = $2
         RETURNING ${keyExpression(schema, target.table)} AS k, t::text AS r`,
        [`writer's ${this.changes.length}\t✓`, target.key],
      );
      for (const row of rows) this.changes.push({ table: target.table, key: row.k, after: row.r });
    } else if (roll < 0.75) {
      this.inserted += 1;
      const tenant = this.pick([...new Set(this.rows.map((r) => r.tenant))]);
      if (roll < 0.6 || !tenant) {
        // A new tenant signs up.
        const key =
          schema.shape.rootKey === 'bigint'
            ? String(500_000 + this.inserted)
            : schema.shape.rootKey === 'text'
              ? `w-${this.inserted}`
              : randomUUID();
        const { rows } = await client.query<{ k: string; r: string }>(
          `INSERT INTO ${this.s}.tenants AS t (id, name) VALUES ($1, $2) RETURNING ${keyExpression(schema, 'tenants')} AS k, t::text AS r`,
          [key, `new tenant ${this.inserted}`],
        );
        this.changes.push({ table: 'tenants', key: rows[0]!.k, after: rows[0]!.r });
        this.rows.push({ table: 'tenants', key: rows[0]!.k, tenant: rows[0]!.k });
      } else {
        const c01 = schema.tables.find((t) => t.name === 'c0_1')!;
        const { rows } = await client.query<{ k: string; r: string }>(
          `INSERT INTO ${this.s}.c0_1 AS t (id, tenant_id, note)${c01.identity === 'always' ? ' OVERRIDING SYSTEM VALUE' : ''}
           VALUES ($1, $2, $3) RETURNING ${keyExpression(schema, 'c0_1')} AS k, t::text AS r`,
          [7_000_000_000 + this.inserted, tenant, `added by the writer`],
        );
        this.changes.push({ table: 'c0_1', key: rows[0]!.k, after: rows[0]!.r });
        this.rows.push({ table: 'c0_1', key: rows[0]!.k, tenant });
      }
    } else {
      // A leaf row (a table no FK points to) of a bystander: deleting it breaks nothing.
      const referenced = new Set(schema.tables.flatMap((t) => t.foreignKeys.map((f) => f.to)));
      const target = this.pick(this.rows.filter((r) => !referenced.has(r.table) && r.table !== 'tenants'));
      if (!target) return;
      await client.query(
        `DELETE FROM ${this.s}.${q(target.table)} t WHERE ${keyExpression(schema, target.table)} = $1`,
        [target.key],
      );
      this.changes.push({ table: target.table, key: target.key, after: null });
      this.rows.splice(this.rows.indexOf(target), 1);
    }
  }

  async steps(n: number): Promise<void> {
    for (let i = 0; i < n; i++) await this.step();
  }

  /** Writes in the background (an operation every ~30 ms) until stop(). */
  start(): void {
    this.stopping = false;
    this.loop = (async () => {
      while (!this.stopping) {
        try {
          await this.step();
        } catch (error) {
          // A failed statement changed nothing (each is its own transaction): logged, and the writer goes on.
          this.errors.push((error as Error).message);
          await this.close();
        }
        await new Promise((r) => setTimeout(r, 30));
      }
    })();
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await this.loop;
    this.loop = undefined;
  }

  async close(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    await client?.end().catch(() => undefined);
  }
}
