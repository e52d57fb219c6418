/**
 * One case of the property suite: a schema shape, its tenants, the damage, how the restore is run and what faults it
 * meets. `caseArbitrary` draws and shrinks it; everything else here is pure: the incident as SQL, and what live must
 * hold afterwards (the oracle's expectations), computed from the generated rows alone, never from the product.
 */
import fc from 'fast-check';
import pg from 'pg';
import { buildData, type Dataset, type Population, type Row } from './data';
import { buildSchema, q, shapeArbitrary, type CaseSchema, type Shape } from './schema';

export type Fate = 'bystander' | 'victim' | 'partial';

export interface Case {
  shape: Shape;
  tenants: Array<{ size: 0 | 1 | 2 | 3; fate: Fate }>;
  /** Tenant 0 is large enough to be copied in chunks. */
  large: boolean;
  valueSeed: number;
  /** Partial tenants go on the restore list, with --allow-partial. */
  allowPartial: boolean;
  /** The incident also deletes a lookup row that only one victim used (the parent closure brings it back). */
  dropSharedParent: boolean;
  /** Writer operations on bystanders after the incident, and whether it keeps writing during the restore. */
  writer: { before: number; during: boolean; seed: number };
  run: {
    groupSize: 1 | 3 | 20;
    concurrency: 1 | 2;
    conflict: 'skip' | 'overwrite';
    /** Worker SIGKILLs, each this many ms after the previous event (start, or the last kill). */
    kills: number[];
    /** A PostgreSQL restart during the restore (the chaos mode only: it would break files running beside it). */
    restartPostgres: boolean;
  };
}

export interface CaseOptions {
  /** Allow PostgreSQL restarts (only when nothing else uses the stack). */
  restarts?: boolean;
}

export function caseArbitrary(options: CaseOptions = {}): fc.Arbitrary<Case> {
  return fc
    .record({
      shape: shapeArbitrary,
      tenants: fc.array(
        fc.record({
          size: fc.constantFrom(0 as const, 1 as const, 2 as const, 3 as const),
          fate: fc.constantFrom('bystander' as const, 'victim' as const, 'partial' as const),
        }),
        { minLength: 2, maxLength: 8 },
      ),
      large: fc.boolean(),
      valueSeed: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
      allowPartial: fc.boolean(),
      dropSharedParent: fc.boolean(),
      writer: fc.record({
        before: fc.integer({ min: 0, max: 12 }),
        during: fc.boolean(),
        seed: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
      }),
      run: fc.record({
        groupSize: fc.constantFrom(1 as const, 3 as const, 20 as const),
        concurrency: fc.constantFrom(1 as const, 2 as const),
        conflict: fc.constantFrom('skip' as const, 'overwrite' as const),
        kills: fc.oneof(
          { weight: 3, arbitrary: fc.constant([] as number[]) },
          { weight: 1, arbitrary: fc.array(fc.integer({ min: 0, max: 6000 }), { minLength: 1, maxLength: 2 }) },
        ),
        restartPostgres: options.restarts ? fc.boolean() : fc.constant(false),
      }),
    })
    .map((c) =>
      // A restore needs someone to restore: without a victim, the first tenant is one.
      c.tenants.some((t) => t.fate === 'victim')
        ? c
        : { ...c, tenants: [{ ...c.tenants[0]!, fate: 'victim' as const }, ...c.tenants.slice(1)] },
    );
}

export interface Prepared {
  testCase: Case;
  schema: CaseSchema;
  data: Dataset;
  victims: string[];
  /** Tenants that lost some rows (and kept their root) in the incident. */
  partial: string[];
  bystanders: string[];
  /** The tenants the restore is asked for. */
  restoreList: string[];
  /** Rows the incident deletes. */
  deleted: Row[];
  incidentSql: string;
}

export function population(c: Case): Population {
  return { sizes: c.tenants.map((t) => t.size), large: c.large, seed: c.valueSeed };
}

/** The schema, the rows, and the incident, from a case: deterministic. */
export function prepare(testCase: Case): Prepared {
  const schema = buildSchema(testCase.shape);
  const data = buildData(schema, population(testCase));
  const fate = new Map(data.tenantKeys.map((k, i) => [k, testCase.tenants[i]!.fate]));
  const victims = data.tenantKeys.filter((k) => fate.get(k) === 'victim');
  const excluded = new Set(schema.tables.filter((t) => t.excluded).map((t) => t.name));

  // Rows that reference a row (declared or logical FK): deleting a row deletes them too, as an application would.
  const referencing = new Map<string, Row[]>();
  for (const r of data.rows)
    for (const ref of r.refs) {
      const id = `${ref.table}/${ref.key}`;
      referencing.set(id, [...(referencing.get(id) ?? []), r]);
    }
  const deleted = new Map<string, Row>();
  const remove = (r: Row) => {
    const id = `${r.table}/${r.key}`;
    if (deleted.has(id)) return;
    deleted.set(id, r);
    for (const child of referencing.get(id) ?? []) remove(child);
  };
  for (const r of data.rows) if (r.tenant !== null && victims.includes(r.tenant)) remove(r);

  // Partial damage: about half of a partial tenant's rows below the root (and what references them).
  let seed = testCase.valueSeed ^ 0x5bd1e995;
  const next = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32;
  const partialCandidates = data.tenantKeys.filter((k) => fate.get(k) === 'partial');
  for (const tenant of partialCandidates)
    for (const r of data.rows)
      if (r.tenant === tenant && r.table !== 'tenants' && !excluded.has(r.table) && next() < 0.5) remove(r);
  // A partial tenant keeps its root; one whose rows all survived is not partial after all.
  const partial = partialCandidates.filter((t) => [...deleted.values()].some((r) => r.tenant === t));

  if (testCase.dropSharedParent && schema.tables.some((t) => t.name === 'lookup')) {
    // A lookup row used by victims' rows only: the incident takes it too (and nothing else references it).
    const users = (code: string) => data.rows.filter((r) => r.refs.some((x) => x.table === 'lookup' && x.key === code));
    const lookup = data.rows.find(
      (r) =>
        r.table === 'lookup' &&
        users(r.key).length > 0 &&
        users(r.key).every((u) => u.tenant !== null && victims.includes(u.tenant)),
    );
    if (lookup) deleted.set(`lookup/${lookup.key}`, lookup);
  }

  const bystanders = data.tenantKeys.filter((k) => !victims.includes(k) && !partial.includes(k));
  const restoreList = [...victims, ...(testCase.allowPartial ? partial : [])];
  return {
    testCase,
    schema,
    data,
    victims,
    partial,
    bystanders,
    restoreList,
    deleted: [...deleted.values()],
    incidentSql: deleteSql(schema, [...deleted.values()]),
  };
}

/** `concat_ws('|', pk::text ...)` of a table: the key text the generator gives its rows. */
export function keyExpression(schema: CaseSchema, table: string, alias = 't'): string {
  const spec = schema.tables.find((t) => t.name === table)!;
  return `concat_ws('|', ${spec.primaryKey.map((c) => `${alias}.${q(c)}::text`).join(', ')})`;
}

/** DELETE of exactly these rows, FK checks off (every row that referenced them is among them). */
export function deleteSql(schema: CaseSchema, rows: Row[]): string {
  const lines = ['SET session_replication_role = replica;'];
  for (const t of schema.tables) {
    const keys = rows.filter((r) => r.table === t.name).map((r) => r.key);
    if (keys.length)
      lines.push(
        `DELETE FROM ${q(schema.schema)}.${q(t.name)} t WHERE ${keyExpression(schema, t.name)} = ANY(ARRAY[${keys.map((k) => pg.escapeLiteral(k)).join(', ')}]::text[]);`,
      );
  }
  lines.push('SET session_replication_role = origin;');
  return `${lines.join('\n')}\n`;
}

/** Rows of every table, by key: each row's text in fixed settings (what the oracle compares). */
export type Snapshot = Map<string, Map<string, string>>;

export interface WriterChange {
  table: string;
  key: string;
  /** The row's text after the change; null when the writer deleted it. */
  after: string | null;
}

/**
 * What live must hold after the restore, table by table: live just before it, the writer's changes during it, and
 * the rows the restore brings back (all of a victim's rows; the missing rows of a partial tenant on the list; shared
 * rows that restored rows reference and live lost). A refused restore brings back nothing.
 */
export function expectedAfter(
  p: Prepared,
  backup: Snapshot,
  before: Snapshot,
  during: WriterChange[],
  refused: boolean,
): Snapshot {
  const expected: Snapshot = new Map([...before].map(([t, rows]) => [t, new Map(rows)]));
  for (const change of during) {
    const rows = expected.get(change.table)!;
    if (change.after === null) rows.delete(change.key);
    else rows.set(change.key, change.after);
  }
  if (refused) return expected;
  const restored = new Set(p.restoreList);
  const excluded = new Set(p.schema.tables.filter((t) => t.excluded).map((t) => t.name));
  for (const r of p.data.rows) {
    if (r.tenant === null || !restored.has(r.tenant) || excluded.has(r.table)) continue;
    const rows = expected.get(r.table)!;
    if (rows.has(r.key)) continue;
    rows.set(r.key, backup.get(r.table)!.get(r.key)!);
    // The parent closure: a shared row it references that live lost comes back from the backup.
    for (const ref of r.refs) {
      const shared = p.data.rows.find((x) => x.table === ref.table && x.key === ref.key);
      if (shared?.tenant === null && !expected.get(ref.table)!.has(ref.key))
        expected.get(ref.table)!.set(ref.key, backup.get(ref.table)!.get(ref.key)!);
    }
  }
  return expected;
}

/** Differences between two snapshots, at most `limit`, each a line naming the table and key. */
export function snapshotDiff(expected: Snapshot, actual: Snapshot, limit = 20): string[] {
  const out: string[] = [];
  for (const [table, rows] of expected) {
    const got = actual.get(table) ?? new Map<string, string>();
    for (const [key, row] of rows)
      if (!got.has(key)) out.push(`${table} ${key}: missing (expected ${row})`);
      else if (got.get(key) !== row) out.push(`${table} ${key}: is ${got.get(key)}, expected ${row}`);
    for (const [key, row] of got) if (!rows.has(key)) out.push(`${table} ${key}: unexpected row ${row}`);
    if (out.length >= limit) break;
  }
  return out.slice(0, limit);
}

/** Rows per table of each tenant in a snapshot, by the generator's ownership tags (writer rows: by their tenant). */
export function countsByTenant(
  p: Prepared,
  snapshot: Snapshot,
  tenants: string[],
): Map<string, Record<string, number>> {
  const owner = new Map(p.data.rows.map((r) => [`${r.table}/${r.key}`, r.tenant]));
  const out = new Map(tenants.map((t) => [t, {} as Record<string, number>]));
  for (const [table, rows] of snapshot)
    for (const key of rows.keys()) {
      const tenant = owner.get(`${table}/${key}`);
      const counts = tenant == null ? undefined : out.get(tenant);
      if (counts) counts[table] = (counts[table] ?? 0) + 1;
    }
  return out;
}
