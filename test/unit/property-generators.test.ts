/**
 * The property suite's generators (test/property/*) without a database. The property run trusts them to produce the
 * shapes the issue lists and to know, from the rows alone, what the incident deleted and what live must hold after the
 * restore; a generator that silently stopped producing a construct, or an oracle built on rows that disagree with their
 * own SQL, would let that run pass without testing anything. So this file proves: the fixed-seed sample reaches every
 * branch; each shape switch really puts its construct into the schema SQL and the rows; the rows agree with their
 * keys, their FKs and the refs the oracle reads; and the incident deletes exactly what the oracle assumes.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  caseArbitrary,
  expectedAfter,
  prepare,
  type Prepared,
  type Snapshot,
  type WriterChange,
} from '../property/case';
import { allBranches, branchesOf } from '../property/coverage';
import { buildData, chunkRows, dataSql, type Dataset, type Population, type Row } from '../property/data';
import {
  buildSchema,
  q,
  restoreConfig,
  schemaSql,
  tableSpec,
  type CaseSchema,
  type FkSpec,
  type Shape,
} from '../property/schema';

// ---------------------------------------------------------------------------------------------------------------
// Reading the generated SQL back, so that the checks are on what PostgreSQL would run, not on the specs beside it.

const escapeRegExp = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const identifier = '"(?:[^"]|"")+"';
const unquote = (quoted: string) => quoted.slice(1, -1).replace(/""/g, '"');
const identifierList = (list: string) => list.split(', ').map(unquote);

interface SqlTable {
  /** Column name → its definition after the name (type, NOT NULL, DEFAULT, GENERATED ...). */
  columns: Map<string, string>;
  primaryKey: string[];
  partitionBy?: string;
}

interface SqlForeignKey {
  table: string;
  name: string;
  columns: string[];
  to: string;
  refColumns: string[];
  deferrable: boolean;
}

interface ParsedSchema {
  tables: Map<string, SqlTable>;
  foreignKeys: SqlForeignKey[];
}

function parseSchemaSql(sql: string, schemaName: string): ParsedSchema {
  const s = escapeRegExp(q(schemaName));
  const tables = new Map<string, SqlTable>();
  const createTable = new RegExp(
    `^CREATE TABLE ${s}\\.(${identifier}) \\(\\n([\\s\\S]*?)\\n\\)(?: PARTITION BY (.+?))?;$`,
    'gm',
  );
  for (const [, name, body, partitionBy] of sql.matchAll(createTable)) {
    const columns = new Map<string, string>();
    let primaryKey: string[] = [];
    // Definitions end with ',\n'; a comma inside one (numeric(14,4)) is never followed by a newline.
    for (const line of body!.split(',\n')) {
      const pk = /^ {2}PRIMARY KEY \((.*)\)$/.exec(line);
      if (pk) primaryKey = identifierList(pk[1]!);
      else {
        const column = new RegExp(`^ {2}(${identifier}) (.+)$`).exec(line);
        if (!column) throw new Error(`unreadable column definition: ${line}`);
        columns.set(unquote(column[1]!), column[2]!);
      }
    }
    tables.set(unquote(name!), { columns, primaryKey, partitionBy });
  }
  const addForeignKey = new RegExp(
    `^ALTER TABLE ${s}\\.(${identifier}) ADD CONSTRAINT (${identifier}) FOREIGN KEY \\((.*?)\\) REFERENCES ${s}\\.(${identifier}) \\((.*?)\\)( DEFERRABLE INITIALLY IMMEDIATE)?;$`,
    'gm',
  );
  const foreignKeys = [...sql.matchAll(addForeignKey)].map(([, table, name, columns, to, refColumns, deferrable]) => ({
    table: unquote(table!),
    name: unquote(name!),
    columns: identifierList(columns!),
    to: unquote(to!),
    refColumns: identifierList(refColumns!),
    deferrable: deferrable !== undefined,
  }));
  // A statement the patterns above did not read would make every check below vacuous for it.
  const lines = sql.split('\n');
  expect(tables.size).toBe(lines.filter((l) => l.startsWith('CREATE TABLE') && !l.includes('PARTITION OF')).length);
  expect(foreignKeys).toHaveLength(lines.filter((l) => l.includes('FOREIGN KEY')).length);
  return { tables, foreignKeys };
}

const isNotNull = (definition: string) => / NOT NULL\b/.test(definition);
const typeOf = (definition: string) => definition.split(' ')[0];

/** The INSERT statements of a data SQL: table → its column list and whether it overrides identity values. */
function parseInserts(sql: string, schemaName: string): Map<string, { columns: string[]; overriding: boolean }> {
  const insert = new RegExp(
    `^INSERT INTO ${escapeRegExp(q(schemaName))}\\.(${identifier}) \\((.*?)\\)( OVERRIDING SYSTEM VALUE)? VALUES$`,
    'gm',
  );
  return new Map(
    [...sql.matchAll(insert)].map(([, table, columns, overriding]) => [
      unquote(table!),
      { columns: identifierList(columns!), overriding: overriding !== undefined },
    ]),
  );
}

/** What a key or reference literal of the data generator stands for, as `::text` prints it; null for NULL. */
function literalValue(literal: string): string | null {
  if (literal === 'NULL') return null;
  if (/^(-?\d+|true|false)$/.test(literal)) return literal;
  const quoted = /^'((?:[^']|'')*)'::[a-z0-9]+$/.exec(literal);
  if (quoted) return quoted[1]!.replace(/''/g, "'");
  throw new Error(`not a key or reference literal: ${literal}`);
}

// ---------------------------------------------------------------------------------------------------------------
// Shapes and populations.

/** Every switch off: each test below turns on the one it is about. */
const plainShape: Shape = {
  schema: 'app',
  rootKey: 'bigint',
  chains: [1],
  composite: false,
  selfReference: false,
  cycle: null,
  junction: false,
  sharedLookup: false,
  logicalLink: false,
  uniques: false,
  identity: null,
  generated: false,
  partitioned: false,
  triggers: false,
  nullableFks: false,
  excluded: 'none',
  deferrableUnique: false,
};

/** Every switch on (the refusals included): the most the schema generator can build at once. */
const fullShape: Shape = {
  schema: 'app',
  rootKey: 'uuid',
  chains: [4, 2],
  composite: true,
  selfReference: true,
  cycle: { size: 3, closedBy: 'nullable' },
  junction: true,
  sharedLookup: true,
  logicalLink: true,
  uniques: true,
  identity: 'always',
  generated: true,
  partitioned: true,
  triggers: true,
  nullableFks: true,
  excluded: 'parent',
  deferrableUnique: true,
};

/** Enough tenants of the largest size that a construct drawn with some chance per row does show up. */
const rich: Population = { sizes: [3, 3, 3, 3, 3, 3], large: false, seed: 20_240_601 };

interface Generated {
  schema: CaseSchema;
  sql: string;
  parsed: ParsedSchema;
  config: Record<string, unknown>;
  data: Dataset;
  dataSql: string;
}

function generate(switches: Partial<Shape>, population: Population = rich): Generated {
  const schema = buildSchema({ ...plainShape, ...switches });
  const sql = schemaSql(schema);
  const data = buildData(schema, population);
  const generated = {
    schema,
    sql,
    parsed: parseSchemaSql(sql, schema.schema),
    config: restoreConfig(schema),
    data,
    dataSql: dataSql(schema, data),
  };
  expectSqlMatchesSpecs(generated);
  expectRowsConsistent(generated.schema, generated.data);
  return generated;
}

const rowsOf = (data: Dataset, table: string) => data.rows.filter((r) => r.table === table);
const fkTarget = (row: Row, fk: Pick<FkSpec, 'columns'>) => {
  const values = fk.columns.map((c) => literalValue(row.values[c]!));
  return values.includes(null) ? null : values.join('|');
};
const foreignKeysOf = (parsed: ParsedSchema, table: string) => parsed.foreignKeys.filter((f) => f.table === table);

/**
 * The oracle reads the specs (TableSpec, FkSpec) while PostgreSQL runs the SQL: they must say the same thing, or the
 * oracle's expectations are about a schema nobody created.
 */
function expectSqlMatchesSpecs({ schema, parsed }: Generated): void {
  expect([...parsed.tables.keys()]).toEqual(schema.tables.map((t) => t.name));
  for (const spec of schema.tables) {
    const table = parsed.tables.get(spec.name)!;
    expect(table.primaryKey).toEqual(spec.primaryKey);
    expect([...table.columns.keys()]).toEqual(spec.columns.map((c) => c.name));
    for (const column of spec.columns) {
      const definition = table.columns.get(column.name)!;
      expect(typeOf(definition)).toBe(column.type);
      expect(isNotNull(definition)).toBe(column.notNull === true);
    }
    const declared = spec.foreignKeys.filter((f) => !f.logical);
    expect(foreignKeysOf(parsed, spec.name)).toEqual(
      declared.map((f) => ({
        table: spec.name,
        name: f.name,
        columns: f.columns,
        to: f.to,
        refColumns: f.refColumns,
        deferrable: f.deferrable,
      })),
    );
    // An FK the spec calls nullable must have a column that allows NULL, and the other way round.
    for (const f of spec.foreignKeys) expect(f.columns.some((c) => !isNotNull(table.columns.get(c)!))).toBe(f.nullable);
  }
}

/**
 * Every row as the oracle sees it agrees with its own SQL values: its key is its primary key's values, its tenant is
 * its tenant column, and its refs are exactly the rows its FK columns (declared or logical) point to, which exist and
 * belong to the same tenant or to nobody.
 */
function expectRowsConsistent(schema: CaseSchema, data: Dataset): void {
  // Problems are collected, not asserted one by one: thousands of rows per dataset, and the list names every culprit.
  const problems: string[] = [];
  const byId = new Map<string, Row>();
  for (const row of data.rows) {
    const id = `${row.table}/${row.key}`;
    if (byId.has(id)) problems.push(`${id}: duplicate primary key`);
    byId.set(id, row);
  }
  if (new Set(data.tenantKeys).size !== data.tenantKeys.length) problems.push('duplicate tenant keys');
  const tenantKeys = new Set(data.tenantKeys);
  const specs = new Map(schema.tables.map((t) => [t.name, t]));
  for (const row of data.rows) {
    const id = `${row.table}/${row.key}`;
    const spec = specs.get(row.table);
    if (!spec) {
      problems.push(`${id}: no such table`);
      continue;
    }
    const inserted = spec.columns.filter((c) => !c.generated).map((c) => c.name);
    if (Object.keys(row.values).join() !== inserted.join())
      problems.push(`${id}: values of ${Object.keys(row.values)}`);
    for (const column of spec.columns)
      if (column.notNull && !column.generated && row.values[column.name] === 'NULL')
        problems.push(`${id}: NULL in NOT NULL ${column.name}`);
    const primaryKey = spec.primaryKey.map((c) => literalValue(row.values[c]!)).join('|');
    if (row.key !== primaryKey) problems.push(`${id}: key is not its primary key ${primaryKey}`);
    if (spec.tenantColumn && literalValue(row.values[spec.tenantColumn]!) !== row.tenant)
      problems.push(`${id}: ${spec.tenantColumn} is not its tenant ${row.tenant}`);
    if (spec.owned ? !tenantKeys.has(row.tenant!) : row.tenant !== null)
      problems.push(`${id}: tenant ${row.tenant} in a table ${spec.owned ? '' : 'not '}owned`);

    const pointed = spec.foreignKeys.flatMap((f) => {
      const key = fkTarget(row, f);
      return key === null ? [] : [`${f.to}/${key}`];
    });
    const refs = row.refs.map((r) => `${r.table}/${r.key}`);
    if (refs.sort().join() !== [...pointed].sort().join())
      problems.push(`${id}: refs ${refs.join(' ')} but its FK columns point to ${pointed.join(' ')}`);
    for (const target of pointed) {
      const targetRow = byId.get(target);
      if (!targetRow) problems.push(`${id}: points to ${target}, which is not a generated row`);
      else if (targetRow.tenant !== null && targetRow.tenant !== row.tenant)
        problems.push(`${id}: points to ${target} of another tenant (${targetRow.tenant})`);
    }
  }
  expect(problems).toEqual([]);
}

// ---------------------------------------------------------------------------------------------------------------

/** Computed once, on first use: the sample and what is derived from it are shared by many tests. */
function once<T>(compute: () => T): () => T {
  let value: { v: T } | undefined;
  return () => (value ??= { v: compute() }).v;
}

const sample = once(() => fc.sample(caseArbitrary(), { numRuns: 400, seed: 42 }));
const prepared = once(() => sample().map(prepare));
const sampleBranches = once(() => sample().map((c) => new Set(branchesOf(c))));

describe('the fixed-seed sample of caseArbitrary', () => {
  it.each(allBranches)('has a case with the branch: %s', (branch) => {
    expect(sampleBranches().some((branches) => branches.has(branch))).toBe(true);
  });

  it('restarts PostgreSQL only when restarts are allowed', () => {
    expect(sample().some((c) => c.run.restartPostgres)).toBe(false);
    const withRestarts = fc.sample(caseArbitrary({ restarts: true }), { numRuns: 400, seed: 42 });
    expect(withRestarts.some((c) => c.run.restartPostgres)).toBe(true);
    // The chaos branch stays out of the bounded run's list: the bounded run shares the stack and may not restart it.
    expect(allBranches).not.toContain('PostgreSQL restarted');
  });

  it('always has a victim to restore', () => {
    for (const c of sample()) expect(c.tenants.some((t) => t.fate === 'victim')).toBe(true);
  });

  // The branches below are named from the case's flags; these find a case whose rows really have the situation.
  it('has a restored victim that really owns nothing but its root row', () => {
    const witness = prepared().some((p) =>
      p.victims.some((tenant) => p.data.rows.filter((r) => r.tenant === tenant).length === 1),
    );
    expect(witness).toBe(true);
  });

  it('has a restored victim with more rows in one table than chunkRows', () => {
    const witness = prepared().some((p) =>
      p.victims.some((tenant) =>
        p.schema.tables.some((t) => rowsOf(p.data, t.name).filter((r) => r.tenant === tenant).length > chunkRows),
      ),
    );
    expect(witness).toBe(true);
  });

  it('has an incident that deletes a shared row only victims used, and a partial tenant restored', () => {
    expect(prepared().some((p) => p.deleted.some((r) => r.tenant === null))).toBe(true);
    expect(prepared().some((p) => p.partial.length > 0 && p.restoreList.includes(p.partial[0]!))).toBe(true);
  });
});

describe('the schema generator, one switch at a time', () => {
  it('builds only the root and one owned table when every switch is off', () => {
    const { schema, sql, parsed, config, dataSql: data } = generate({});
    expect([...parsed.tables.keys()]).toEqual(['tenants', 'c0_1']);
    expect(parsed.foreignKeys.map((f) => `${f.table}→${f.to}`)).toEqual(['c0_1→tenants']);
    expect(schema.root).toBe('app.tenants');
    expect(schema.refusal).toBeUndefined();
    expect(config).toEqual({});
    // The constructs the switches add are absent, so each test below shows its switch is what adds them.
    for (const construct of ['UNIQUE', 'DEFERRABLE', 'TRIGGER', 'PARTITION', 'GENERATED'])
      expect(sql).not.toContain(construct);
    expect(data).not.toContain('OVERRIDING');
    expect(data).not.toContain('setval');
  });

  it.each([
    { rootKey: 'bigint' as const, form: /^\d+$/ },
    { rootKey: 'uuid' as const, form: /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/ },
    // Text keys that are neither numbers nor UUIDs: a cast to either would fail, so a text key stays text.
    { rootKey: 'text' as const, form: /^(?!\d+$)(?![0-9a-f]{8}-)./ },
  ])('root key $rootKey: the root and every tenant column have that type, the keys that form', ({ rootKey, form }) => {
    const { schema, parsed, data } = generate({ rootKey, chains: [2], composite: true, logicalLink: true });
    expect(typeOf(parsed.tables.get('tenants')!.columns.get('id')!)).toBe(rootKey);
    const tenantColumns = schema.tables.filter((t) => t.tenantColumn);
    expect(tenantColumns.length).toBeGreaterThan(1);
    for (const t of tenantColumns)
      expect(typeOf(parsed.tables.get(t.name)!.columns.get(t.tenantColumn!)!)).toBe(rootKey);
    expect(data.tenantKeys).toHaveLength(rich.sizes.length);
    for (const key of data.tenantKeys) expect(key).toMatch(form);
  });

  it.each([1, 2, 3, 4])('chain of length %i: an FK path of that length from its last table to the root', (length) => {
    const { parsed, data } = generate({ chains: [length] });
    const chain = Array.from({ length }, (_, i) => `c0_${i + 1}`);
    expect([...parsed.tables.keys()].filter((t) => t.startsWith('c0_'))).toEqual(chain);
    // Walk the FKs from the deepest table up: each hop goes one level up, the last reaches the root.
    let at = chain.at(-1)!;
    let hops = 0;
    while (at !== 'tenants') {
      const up = foreignKeysOf(parsed, at).filter((f) => f.to !== at);
      expect(up, `${at} has one FK up`).toHaveLength(1);
      at = up[0]!.to;
      hops++;
    }
    expect(hops).toBe(length);
    // Every level has rows, and each row's parent is a row of the level above of the same tenant.
    for (const [depth, table] of chain.entries()) {
      const rows = rowsOf(data, table);
      expect(rows.length, table).toBeGreaterThan(0);
      if (depth === 0) continue;
      const parents = new Map(rowsOf(data, chain[depth - 1]!).map((r) => [r.key, r]));
      for (const row of rows) expect(parents.get(literalValue(row.values.parent_id!)!)?.tenant).toBe(row.tenant);
    }
  });

  it('several chains: one table set per chain, each reached from the root', () => {
    const { parsed } = generate({ chains: [2, 1, 3] });
    expect([...parsed.tables.keys()].filter((t) => /^c\d_/.test(t))).toEqual([
      'c0_1',
      'c0_2',
      'c1_1',
      'c2_1',
      'c2_2',
      'c2_3',
    ]);
    for (const first of ['c0_1', 'c1_1', 'c2_1']) expect(foreignKeysOf(parsed, first)[0]!.to).toBe('tenants');
  });

  it('composite: cc references cp by a two-column key, and every cc row has its cp row in the same tenant', () => {
    const { parsed, data } = generate({ composite: true });
    expect(foreignKeysOf(parsed, 'cc')).toEqual([
      expect.objectContaining({ columns: ['tenant_id', 'n'], to: 'cp', refColumns: ['tenant_id', 'n'] }),
    ]);
    expect(parsed.tables.get('cp')!.primaryKey).toEqual(['tenant_id', 'n']);
    const cp = new Set(rowsOf(data, 'cp').map((r) => `${r.tenant}|${literalValue(r.values.n!)}`));
    const cc = rowsOf(data, 'cc');
    expect(cc.length).toBeGreaterThan(0);
    for (const row of cc) {
      expect(literalValue(row.values.tenant_id!)).toBe(row.tenant);
      expect(cp.has(`${row.tenant}|${literalValue(row.values.n!)}`)).toBe(true);
    }
  });

  it('self-reference: tree references tree, and its rows include children and roots', () => {
    const { parsed, data } = generate({ selfReference: true });
    expect(foreignKeysOf(parsed, 'tree').map((f) => f.to)).toContain('tree');
    const tree = rowsOf(data, 'tree');
    const ids = new Map(tree.map((r) => [r.key, r]));
    const parents = tree.map((r) => literalValue(r.values.parent_id!));
    expect(parents).toContain(null);
    const children = tree.filter((r, i) => parents[i] !== null);
    expect(children.length).toBeGreaterThan(0);
    for (const [i, row] of tree.entries())
      if (parents[i] !== null) expect(ids.get(parents[i]!)?.tenant).toBe(row.tenant);
  });

  const cycles = ([2, 3] as const).flatMap((size) =>
    (['nullable', 'deferrable', 'not-null'] as const).map((closedBy) => ({ size, closedBy })),
  );
  it.each(cycles)('cycle of $size tables closed by a $closedBy FK', ({ size, closedBy }) => {
    const { parsed, data } = generate({ cycle: { size, closedBy } });
    const members = [...parsed.tables.keys()].filter((t) => t.startsWith('cy_'));
    expect(members).toHaveLength(size);
    const inCycle = parsed.foreignKeys.filter((f) => members.includes(f.table) && members.includes(f.to));
    // One FK out of each member into the cycle; following them from any member visits all and comes back.
    const next = new Map(inCycle.map((f) => [f.table, f]));
    expect(inCycle).toHaveLength(size);
    expect(next.size).toBe(size);
    const visited = new Set<string>();
    let at = members[0]!;
    for (let i = 0; i < size; i++) {
      visited.add(at);
      at = next.get(at)!.to;
    }
    expect(at).toBe(members[0]);
    expect(visited.size).toBe(size);

    const nullable = inCycle.filter((f) => !isNotNull(parsed.tables.get(f.table)!.columns.get(f.columns[0]!)!));
    const deferrable = inCycle.filter((f) => f.deferrable);
    expect(nullable).toHaveLength(closedBy === 'nullable' ? 1 : 0);
    expect(deferrable).toHaveLength(closedBy === 'deferrable' ? 1 : 0);
    // A nullable closing FK is what lets the cycle be inserted: some rows must use the NULL, some the link.
    for (const closing of nullable) {
      const targets = rowsOf(data, closing.table).map((r) => fkTarget(r, closing));
      expect(targets).toContain(null);
      expect(targets.some((t) => t !== null)).toBe(true);
    }
    for (const f of inCycle) expect(rowsOf(data, f.table).length).toBeGreaterThan(0);
  });

  it('junction: jn has no tenant column and links c0_1 and tags rows of one tenant', () => {
    const { schema, parsed, data } = generate({ junction: true });
    const jn = tableSpec(schema, 'jn');
    expect(jn.tenantColumn).toBeUndefined();
    expect(jn.columns.filter((c) => c.values === 'tenant')).toEqual([]);
    expect(foreignKeysOf(parsed, 'jn').map((f) => f.to)).toEqual(['c0_1', 'tags']);
    const tenantOf = new Map(data.rows.map((r) => [`${r.table}/${r.key}`, r.tenant]));
    const rows = rowsOf(data, 'jn');
    expect(rows.length).toBeGreaterThan(0);
    for (const row of rows) {
      expect(tenantOf.get(`c0_1/${literalValue(row.values.c_id!)}`)).toBe(row.tenant);
      expect(tenantOf.get(`tags/${literalValue(row.values.tag_id!)}`)).toBe(row.tenant);
    }
  });

  it('shared lookup: owned by nobody, referenced by the root and c0_1', () => {
    const { schema, parsed, data } = generate({ sharedLookup: true });
    expect(tableSpec(schema, 'lookup').owned).toBe(false);
    expect(foreignKeysOf(parsed, 'lookup')).toEqual([]);
    const referencing = parsed.foreignKeys.filter((f) => f.to === 'lookup');
    expect(referencing.map((f) => f.table).sort()).toEqual(['c0_1', 'tenants']);
    const lookup = rowsOf(data, 'lookup');
    expect(lookup.length).toBeGreaterThan(0);
    for (const row of lookup) expect(row.tenant).toBeNull();
    for (const f of referencing) expect(rowsOf(data, f.table).some((r) => fkTarget(r, f) !== null)).toBe(true);
  });

  it('logical link: audit_trail → tenants only in the restore config, never in the SQL', () => {
    const { schema, sql, parsed, config, data } = generate({ logicalLink: true });
    const link = tableSpec(schema, 'audit_trail').foreignKeys.find((f) => f.to === 'tenants')!;
    expect(link.logical).toBe(true);
    expect(foreignKeysOf(parsed, 'audit_trail')).toEqual([]);
    expect(sql).not.toContain(q(link.name));
    expect(config.logicalForeignKeys).toEqual([
      { from: 'app.audit_trail', columns: link.columns, to: 'app.tenants', referencedColumns: link.refColumns },
    ]);
    // The rows still carry the link, so that the restore has something to follow.
    const rows = rowsOf(data, 'audit_trail');
    expect(rows.length).toBeGreaterThan(0);
    for (const row of rows) expect(fkTarget(row, link)).toBe(row.tenant);
  });

  it('uniques: a UNIQUE constraint and a partial unique index, and archived slugs repeated across tenants', () => {
    const { sql, data } = generate({ uniques: true });
    const tags = `${q('app')}.tags`;
    expect(sql).toMatch(
      new RegExp(`^ALTER TABLE ${escapeRegExp(tags)} ADD CONSTRAINT \\S+ UNIQUE \\(([^)]+)\\);$`, 'm'),
    );
    const partial = new RegExp(
      `^CREATE UNIQUE INDEX \\S+ ON ${escapeRegExp(tags)} \\((\\w+)\\) WHERE (.+);$`,
      'm',
    ).exec(sql);
    expect(partial).not.toBeNull();
    expect(sql).not.toContain('DEFERRABLE');
    const rows = rowsOf(data, 'tags');
    const archived = (r: Row) => literalValue(r.values.archived!) === 'true';
    const slug = (r: Row) => literalValue(r.values.slug!)!;
    // The data obeys both keys ...
    const labels = rows.map((r) => `${r.tenant}|${literalValue(r.values.label!)}`);
    expect(new Set(labels).size).toBe(labels.length);
    const liveSlugs = rows.filter((r) => !archived(r)).map(slug);
    expect(new Set(liveSlugs).size).toBe(liveSlugs.length);
    // ... and uses what only the partial index allows: one archived slug in several tenants.
    const tenantsBySlug = new Map<string, Set<string | null>>();
    for (const r of rows.filter(archived))
      tenantsBySlug.set(slug(r), (tenantsBySlug.get(slug(r)) ?? new Set()).add(r.tenant));
    expect([...tenantsBySlug.values()].some((tenants) => tenants.size > 1)).toBe(true);
  });

  it.each(['always', 'by-default'] as const)(
    'identity %s: the id column, OVERRIDING only for always, setval',
    (kind) => {
      const { parsed, data, dataSql: sql } = generate({ identity: kind });
      const keyword = kind === 'always' ? 'ALWAYS' : 'BY DEFAULT';
      expect(parsed.tables.get('c0_1')!.columns.get('id')).toContain(`GENERATED ${keyword} AS IDENTITY`);
      const inserts = parseInserts(sql, 'app');
      expect(inserts.get('c0_1')!.overriding).toBe(kind === 'always');
      expect([...inserts].filter(([table, i]) => table !== 'c0_1' && i.overriding)).toEqual([]);
      // The explicit ids are above the sequence's start: without setval, the next insert would collide.
      expect(sql).toContain(`SELECT setval(pg_get_serial_sequence('${q('app')}.${q('c0_1')}', 'id'),`);
      expect(rowsOf(data, 'c0_1').length).toBeGreaterThan(0);
    },
  );

  it('generated: a stored generated column that the data never inserts', () => {
    const { schema, parsed, data, dataSql: sql } = generate({ generated: true });
    const generatedColumns = [...parsed.tables.get('c0_1')!.columns].filter(([, d]) =>
      /GENERATED ALWAYS AS \(.+\) STORED$/.test(d),
    );
    expect(generatedColumns).toHaveLength(1);
    const [name] = generatedColumns[0]!;
    expect(tableSpec(schema, 'c0_1').columns.find((c) => c.name === name)!.generated).toBe(true);
    const inserted = parseInserts(sql, 'app').get('c0_1')!.columns;
    expect(inserted.length).toBeGreaterThan(0);
    expect(inserted).not.toContain(name);
    for (const row of rowsOf(data, 'c0_1')) expect(row.values).not.toHaveProperty(name);
  });

  it('partitioned: pe partitioned by hash, with three partitions', () => {
    const { sql, parsed, data } = generate({ partitioned: true });
    expect(parsed.tables.get('pe')!.partitionBy).toMatch(/^HASH \(/);
    const partitions = sql.split('\n').filter((l) => l.includes(`PARTITION OF ${q('app')}.pe `));
    expect(partitions).toHaveLength(3);
    // Three remainders of modulus 3: every hash value has a partition, so no row can be refused.
    expect(partitions.map((l) => /MODULUS (\d+), REMAINDER (\d+)/.exec(l)!.slice(1).join('/')).sort()).toEqual([
      '3/0',
      '3/1',
      '3/2',
    ]);
    expect(rowsOf(data, 'pe').length).toBeGreaterThan(0);
  });

  it('triggers: a BEFORE INSERT OR UPDATE trigger on c0_1 and on tree, and the function they call', () => {
    const { sql, parsed } = generate({ triggers: true, selfReference: true });
    const triggers = [
      ...sql.matchAll(
        new RegExp(
          `^CREATE TRIGGER \\S+ BEFORE INSERT OR UPDATE ON ${escapeRegExp(q('app'))}\\.(${identifier}) FOR EACH ROW EXECUTE FUNCTION (\\S+)\\(\\);$`,
          'gm',
        ),
      ),
    ];
    expect(triggers.map(([, table]) => unquote(table!))).toEqual(['c0_1', 'tree']);
    for (const [, , fn] of triggers) expect(sql).toContain(`CREATE FUNCTION ${fn}() RETURNS trigger`);
    for (const table of ['c0_1', 'tree']) expect(parsed.tables.get(table)!.columns.has('updated_at')).toBe(true);
  });

  it('nullable FKs: alt_id below the first level of each chain, NULL in some rows and set in others', () => {
    const { parsed, data } = generate({ nullableFks: true, chains: [3, 2] });
    const alts = parsed.foreignKeys.filter((f) => f.columns.includes('alt_id'));
    expect(alts.map((f) => `${f.table}→${f.to}`)).toEqual(['c0_2→c0_1', 'c0_3→c0_1', 'c1_2→c1_1']);
    for (const f of alts) expect(isNotNull(parsed.tables.get(f.table)!.columns.get('alt_id')!)).toBe(false);
    const targets = alts.flatMap((f) => rowsOf(data, f.table).map((r) => fkTarget(r, f)));
    expect(targets).toContain(null);
    expect(targets.some((t) => t !== null)).toBe(true);
  });

  it.each([
    { excluded: 'leaf' as const, refusal: undefined },
    { excluded: 'parent' as const, refusal: 'ExcludedParentError' },
  ])('excluded $excluded: sessions in excludeTables, refusal $refusal', ({ excluded, refusal }) => {
    const { schema, parsed, config, data } = generate({ excluded });
    expect(config.excludeTables).toEqual(['app.sessions']);
    expect(rowsOf(data, 'sessions').length).toBeGreaterThan(0);
    const children = parsed.foreignKeys.filter((f) => f.to === 'sessions');
    expect(children.map((f) => f.table)).toEqual(excluded === 'parent' ? ['c0_1'] : []);
    // An excluded parent is only a refusal if rows really point into it.
    for (const f of children) expect(rowsOf(data, f.table).some((r) => fkTarget(r, f) !== null)).toBe(true);
    expect(schema.refusal).toBe(refusal);
  });

  it('deferrable unique key: a DEFERRABLE UNIQUE constraint and the refusal it documents', () => {
    const { schema, sql } = generate({ deferrableUnique: true });
    expect(sql).toMatch(/ADD CONSTRAINT \S+ UNIQUE \([^)]+\) DEFERRABLE\b/);
    expect(schema.refusal).toBe('DeferrableUniqueKeyError');
  });

  it.each(['app', 'Tenant Data', 'x$y'] as const)(
    'schema name %s: always quoted in the SQL, plain in the config',
    (name) => {
      const { schema, sql, config, dataSql: data } = generate({ ...fullShape, schema: name });
      const occurrences = (text: string, part: string) => text.split(part).length - 1;
      for (const text of [sql, data]) {
        expect(occurrences(text, q(name))).toBeGreaterThan(0);
        expect(occurrences(text, name)).toBe(occurrences(text, q(name)));
      }
      expect(schema.root).toBe(`${name}.tenants`);
      const named = [
        ...(config.excludeTables as string[]),
        ...(config.logicalForeignKeys as Array<{ from: string; to: string }>).flatMap((f) => [f.from, f.to]),
      ];
      for (const table of named) expect(table.startsWith(`${name}.`)).toBe(true);
    },
  );
});

describe('the data generator', () => {
  it('gives a tenant of size 0 only its root row, even in a schema with every table', () => {
    const { data } = generate(fullShape, { sizes: [0, 3], large: false, seed: 7 });
    const [empty, full] = data.tenantKeys;
    expect(data.rows.filter((r) => r.tenant === empty).map((r) => r.table)).toEqual(['tenants']);
    // The same schema does give the other tenant rows in many tables: the emptiness is the size's doing.
    expect(new Set(data.rows.filter((r) => r.tenant === full).map((r) => r.table)).size).toBeGreaterThan(5);
  });

  it('gives the large tenant 0 more rows in c0_1 than chunkRows, and nobody else that many in any table', () => {
    const { data } = generate({ chains: [2] }, { sizes: [1, 3, 3], large: true, seed: 7 });
    const [large, ...others] = data.tenantKeys;
    const count = (tenant: string | undefined, table: string) =>
      data.rows.filter((r) => r.tenant === tenant && r.table === table).length;
    expect(count(large, 'c0_1')).toBe(3 * chunkRows + 5);
    for (const tenant of others)
      for (const table of ['c0_1', 'c0_2']) expect(count(tenant, table)).toBeLessThanOrEqual(chunkRows);
    const notLarge = generate({ chains: [2] }, { sizes: [1, 3, 3], large: false, seed: 7 }).data;
    expect(
      notLarge.rows.filter((r) => r.tenant === notLarge.tenantKeys[0] && r.table === 'c0_1').length,
    ).toBeLessThanOrEqual(chunkRows);
  });

  it('keeps every row consistent with its keys and FKs in the full shape and in 400 drawn cases', () => {
    generate(fullShape); // generate checks the consistency of what it builds
    for (const p of prepared()) expectRowsConsistent(p.schema, p.data);
  });

  it('keeps every tenant at most chunkRows rows per table in the drawn cases, but the large one', () => {
    for (const p of prepared()) {
      const counts = new Map<string, number>();
      for (const r of p.data.rows)
        if (r.tenant !== null) counts.set(`${r.tenant}/${r.table}`, (counts.get(`${r.tenant}/${r.table}`) ?? 0) + 1);
      const large = p.testCase.large ? `${p.data.tenantKeys[0]}/c0_1` : undefined;
      for (const [tenantTable, n] of counts)
        if (tenantTable !== large) expect(n, tenantTable).toBeLessThanOrEqual(chunkRows);
    }
  });

  it('is deterministic: the same population gives the same data SQL, another seed another', () => {
    const schema = buildSchema(fullShape);
    const first = dataSql(schema, buildData(schema, rich));
    expect(dataSql(schema, buildData(schema, { ...rich }))).toBe(first);
    expect(dataSql(schema, buildData(schema, { ...rich, seed: rich.seed + 1 }))).not.toBe(first);
  });

  it('fills the columns with the value palettes that break round trips', () => {
    const { schema, data, dataSql: sql } = generate({}, { ...rich, large: true });
    const literals = (kind: string) =>
      tableSpec(schema, 'c0_1')
        .columns.filter((c) => c.values === kind)
        .flatMap((c) => rowsOf(data, 'c0_1').map((r) => r.values[c.name]!));
    const texts = literals('text');
    // Each literal must reach the SQL as is, so checking the literals checks the SQL.
    for (const literal of [...texts, ...literals('numeric'), ...literals('jsonb'), ...literals('bytea')])
      expect(sql).toContain(literal);
    expect(texts).toContain('NULL');
    expect(texts.some((l) => l.startsWith(" E'") && l.includes('\\\\'))).toBe(true); // a backslash, escaped
    expect(texts).toContain(" E'\\\\N'"); // COPY's null marker as text, not NULL
    expect(texts.some((l) => /^'[^']*\n[^']*'$/.test(l))).toBe(true);
    expect(literals('numeric')).toContain("'NaN'::numeric");
    expect(literals('float8')).toContain("'NaN'::float8");
    expect(literals('timestamptz').some((l) => /^'-?infinity'::timestamptz$/.test(l))).toBe(true);
    expect([...literals('text[]'), ...literals('int[]')].some((l) => /^'\{\}'::\w+\[\]$/.test(l))).toBe(true);
    expect(literals('jsonb')).toContain("'null'::jsonb"); // JSON null beside SQL NULL
    expect(literals('jsonb')).toContain('NULL');
    expect(literals('bytea').some((l) => /^'\\x[0-9a-f]+'::bytea$/.test(l))).toBe(true);
  });
});

describe('the incident (prepare)', () => {
  const rowId = (r: { table: string; key: string }) => `${r.table}/${r.key}`;

  it('deletes all of each victim, part of each partial tenant (never its root), nothing of a bystander', () => {
    for (const p of prepared()) {
      const deleted = new Set(p.deleted.map(rowId));
      const fates = new Map(p.data.tenantKeys.map((k, i) => [k, p.testCase.tenants[i]!.fate]));
      expect(p.victims).toEqual(p.data.tenantKeys.filter((k) => fates.get(k) === 'victim'));
      for (const r of p.data.rows)
        if (r.tenant !== null && p.victims.includes(r.tenant)) expect(deleted.has(rowId(r))).toBe(true);
      for (const tenant of p.partial) {
        expect(fates.get(tenant)).toBe('partial');
        const rows = p.data.rows.filter((r) => r.tenant === tenant);
        expect(deleted.has(rowId({ table: 'tenants', key: tenant }))).toBe(false);
        expect(rows.some((r) => deleted.has(rowId(r)))).toBe(true);
      }
      for (const r of p.data.rows)
        if (r.tenant !== null && p.bystanders.includes(r.tenant)) expect(deleted.has(rowId(r))).toBe(false);
      expect([...p.victims, ...p.partial, ...p.bystanders].sort()).toEqual([...p.data.tenantKeys].sort());
    }
  });

  it('leaves no surviving row referencing a deleted row', () => {
    for (const p of prepared()) {
      const deleted = new Set(p.deleted.map(rowId));
      for (const r of p.data.rows)
        if (!deleted.has(rowId(r)))
          for (const ref of r.refs) expect(deleted.has(rowId(ref)), `${rowId(r)} → ${rowId(ref)}`).toBe(false);
    }
  });

  it('deletes a shared row only when asked to and only victims used it', () => {
    for (const p of prepared()) {
      const shared = p.deleted.filter((r) => r.tenant === null);
      if (!p.testCase.dropSharedParent) expect(shared).toEqual([]);
      expect(shared.length).toBeLessThanOrEqual(1);
      for (const row of shared) {
        const users = p.data.rows.filter((r) => r.refs.some((ref) => rowId(ref) === rowId(row)));
        expect(users.length).toBeGreaterThan(0);
        for (const user of users) expect(p.victims).toContain(user.tenant);
      }
    }
  });

  it('asks to restore the victims, and the partial tenants with allowPartial', () => {
    for (const p of prepared())
      expect(p.restoreList).toEqual([...p.victims, ...(p.testCase.allowPartial ? p.partial : [])]);
  });

  it('writes an incident SQL that deletes exactly the deleted rows', () => {
    for (const p of prepared()) {
      const deletedByTable = new Map<string, string[]>();
      const deleteLine = new RegExp(
        `^DELETE FROM ${escapeRegExp(q(p.schema.schema))}\\.(${identifier}) t WHERE .* = ANY\\(ARRAY\\[(.*)\\]::text\\[\\]\\);$`,
        'gm',
      );
      for (const [, table, keys] of p.incidentSql.matchAll(deleteLine))
        deletedByTable.set(
          unquote(table!),
          [...keys!.matchAll(/'((?:[^']|'')*)'/g)].map(([, k]) => k!.replace(/''/g, "'")),
        );
      const expected = new Map<string, string[]>();
      for (const r of p.deleted) expected.set(r.table, [...(expected.get(r.table) ?? []), r.key]);
      expect(new Map([...deletedByTable].map(([t, keys]) => [t, keys.sort()]))).toEqual(
        new Map([...expected].map(([t, keys]) => [t, keys.sort()])),
      );
    }
  });

  /** A snapshot whose row text is the row's literals, every table of the schema present. */
  const snapshotOf = (p: Prepared, rows: Row[]): Snapshot => {
    const snapshot: Snapshot = new Map(p.schema.tables.map((t) => [t.name, new Map<string, string>()]));
    for (const r of rows) snapshot.get(r.table)!.set(r.key, JSON.stringify(r.values));
    return snapshot;
  };

  it('expects, after a refused restore, live before it plus the writer changes, and nothing restored', () => {
    // A case with something to restore and a bystander row the writer can update and another it can delete.
    const bystanderLeaf = (p: Prepared) =>
      p.data.rows.find((r) => r.table === 'c0_1' && p.bystanders.includes(r.tenant!));
    const p = prepared().find((c) => c.deleted.length > 0 && bystanderLeaf(c) !== undefined)!;
    expect(p).toBeDefined();
    const deleted = new Set(p.deleted.map(rowId));
    const backup = snapshotOf(p, p.data.rows);
    const survivors = () => p.data.rows.filter((r) => !deleted.has(rowId(r)));
    const before = snapshotOf(p, survivors());
    const leaf = bystanderLeaf(p)!;
    const root = p.data.rows.find((r) => r.table === 'tenants' && r.tenant === leaf.tenant)!;
    const during: WriterChange[] = [
      { table: 'tenants', key: root.key, after: 'renamed by the writer' },
      { table: 'c0_1', key: 'written-during-the-restore', after: 'new row' },
      { table: leaf.table, key: leaf.key, after: null },
    ];
    const expected = new Map([...before].map(([t, rows]) => [t, new Map(rows)]));
    for (const change of during)
      if (change.after === null) expected.get(change.table)!.delete(change.key);
      else expected.get(change.table)!.set(change.key, change.after);

    expect(expectedAfter(p, backup, before, during, true)).toEqual(expected);
    // The same inputs without the refusal do bring the deleted rows of the restored tenants back.
    const restored = expectedAfter(p, backup, before, during, false);
    const excluded = new Set(p.schema.tables.filter((t) => t.excluded).map((t) => t.name));
    const broughtBack = p.deleted.filter(
      (r) => r.tenant !== null && p.restoreList.includes(r.tenant) && !excluded.has(r.table),
    );
    expect(broughtBack.length).toBeGreaterThan(0);
    for (const r of broughtBack) expect(restored.get(r.table)!.get(r.key)).toBe(backup.get(r.table)!.get(r.key));
    // And expectedAfter leaves its inputs alone: the run compares them afterwards.
    expect(before).toEqual(snapshotOf(p, survivors()));
  });
});
