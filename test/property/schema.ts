/**
 * The property suite's schema generator: a `Shape` (a record of choices that fast-check draws and shrinks) becomes a
 * multi-tenant schema as SQL, with the restore config it needs. Every construct the issue lists has its switch here,
 * so a shrunk case names the constructs a failure needs and nothing else.
 */
import fc from 'fast-check';
import pg from 'pg';

export type RootKey = 'bigint' | 'text' | 'uuid';

export interface Shape {
  /** The schema's name: plain, or one that must be quoted everywhere. */
  schema: 'app' | 'Tenant Data' | 'x$y';
  rootKey: RootKey;
  /** Owned chains reached from the root by FK paths: one entry per chain, its length (1 to 4). */
  chains: number[];
  /** cp (tenant_id, n) and cc (tenant_id, n, m) owned through a composite FK. */
  composite: boolean;
  /** tree.parent_id references tree. */
  selfReference: boolean;
  /** A two- or three-table FK cycle, closed by a nullable FK, a DEFERRABLE one, or a NOT NULL one (neither). */
  cycle: { size: 2 | 3; closedBy: 'nullable' | 'deferrable' | 'not-null' } | null;
  /** jn (c0_1, tags): a junction table with no tenant column. */
  junction: boolean;
  /** lookup: a shared table (not reachable from the root) that the root and c0_1 reference. */
  sharedLookup: boolean;
  /** audit_trail.tenant_ref: a link to the root that only the restore config declares. */
  logicalLink: boolean;
  /** tags: UNIQUE (tenant_id, label) and a partial unique index on slug. */
  uniques: boolean;
  /** c0_1.id as an identity column. */
  identity: 'always' | 'by-default' | null;
  /** c0_1.amount_twice GENERATED ALWAYS AS (amount * 2) STORED. */
  generated: boolean;
  /** pe: partitioned by hash of tenant_id. */
  partitioned: boolean;
  /** updated_at set by a BEFORE INSERT OR UPDATE trigger on c0_1 and tree. */
  triggers: boolean;
  /** Chain tables below the first get a nullable alt_id → c<i>_1, NULL in about half the rows. */
  nullableFks: boolean;
  /** sessions, excluded by the config: a leaf, or a parent of c0_1 (a documented refusal: ExcludedParentError). */
  excluded: 'none' | 'leaf' | 'parent';
  /** tags' per-tenant unique key is DEFERRABLE (a documented refusal: DeferrableUniqueKeyError). */
  deferrableUnique: boolean;
}

export const shapeArbitrary: fc.Arbitrary<Shape> = fc.record({
  schema: fc.constantFrom('app' as const, 'Tenant Data' as const, 'x$y' as const),
  rootKey: fc.constantFrom('bigint' as const, 'text' as const, 'uuid' as const),
  chains: fc.array(fc.integer({ min: 1, max: 4 }), { minLength: 1, maxLength: 3 }),
  composite: fc.boolean(),
  selfReference: fc.boolean(),
  cycle: fc.option(
    fc.record({
      size: fc.constantFrom(2 as const, 3 as const),
      closedBy: fc.constantFrom('nullable' as const, 'deferrable' as const, 'not-null' as const),
    }),
    { freq: 2 },
  ),
  junction: fc.boolean(),
  sharedLookup: fc.boolean(),
  logicalLink: fc.boolean(),
  uniques: fc.boolean(),
  identity: fc.constantFrom(null, 'always' as const, 'by-default' as const),
  generated: fc.boolean(),
  partitioned: fc.boolean(),
  triggers: fc.boolean(),
  nullableFks: fc.boolean(),
  // The refusals are rarer than the restores they stand beside.
  excluded: fc.oneof(
    { weight: 3, arbitrary: fc.constant('none' as const) },
    { weight: 2, arbitrary: fc.constant('leaf' as const) },
    { weight: 1, arbitrary: fc.constant('parent' as const) },
  ),
  deferrableUnique: fc.oneof({ weight: 9, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }),
});

export interface ColumnSpec {
  name: string;
  type: string;
  notNull?: boolean;
  /** SQL after the type: DEFAULT, GENERATED ... */
  extra?: string;
  /** Generated columns are never inserted. */
  generated?: boolean;
  /** The value kind the data generator fills the column with. */
  values: ValueKind;
}

export type ValueKind =
  | 'key' // filled by the data generator from the table's keys
  | 'tenant' // the row's tenant key
  | 'ref' // filled from an FK
  | 'text'
  | 'numeric'
  | 'timestamptz'
  | 'text[]'
  | 'int[]'
  | 'jsonb'
  | 'bytea'
  | 'boolean'
  | 'float8'
  | 'none';

export interface FkSpec {
  name: string;
  columns: string[];
  to: string;
  refColumns: string[];
  nullable: boolean;
  deferrable: boolean;
  /** Declared only in the restore config (logicalForeignKeys), not in the schema. */
  logical: boolean;
}

export interface TableSpec {
  name: string;
  columns: ColumnSpec[];
  primaryKey: string[];
  foreignKeys: FkSpec[];
  /** Owned by tenants (reachable from the root); false for the shared lookup. */
  owned: boolean;
  excluded: boolean;
  /** The column holding the tenant key directly, when the table has one. */
  tenantColumn?: string;
  /** Extra DDL after CREATE TABLE (indexes, triggers, partitions). */
  after: string[];
  partitionBy?: string;
  identity?: 'always' | 'by-default';
}

export interface CaseSchema {
  shape: Shape;
  schema: string;
  tables: TableSpec[];
  /** `schema.table` of the tenant root, as --tenant-root takes it. */
  root: string;
  /** The documented refusal a restore of this schema must end with, if any. */
  refusal?: 'ExcludedParentError' | 'DeferrableUniqueKeyError';
}

/** Every documented refusal that applies to a schema (a schema with two may be refused for either, whichever the plan meets first). */
export function acceptedRefusals(schema: CaseSchema): Array<NonNullable<CaseSchema['refusal']>> {
  return refusalsOf(schema.shape);
}

function refusalsOf(shape: Shape): Array<NonNullable<CaseSchema['refusal']>> {
  return [
    ...(shape.excluded === 'parent' ? (['ExcludedParentError'] as const) : []),
    ...(shape.deferrableUnique ? (['DeferrableUniqueKeyError'] as const) : []),
  ];
}

/** What the product's message of each documented refusal says (the CLI prints the message, not the class). */
export const refusalWords: Record<NonNullable<CaseSchema['refusal']>, RegExp> = {
  ExcludedParentError: /is excluded by the config, but its rows belong to tenants/,
  DeferrableUniqueKeyError: /whose primary key or unique constraint is DEFERRABLE in live/,
};

export const q = (name: string): string => pg.escapeIdentifier(name);

export function buildSchema(shape: Shape): CaseSchema {
  const key = shape.rootKey;
  const tables: TableSpec[] = [];
  const fk = (
    name: string,
    columns: string[],
    to: string,
    refColumns = ['id'],
    o: Partial<Pick<FkSpec, 'nullable' | 'deferrable' | 'logical'>> = {},
  ): FkSpec => ({ name, columns, to, refColumns, nullable: false, deferrable: false, logical: false, ...o });
  const idColumn: ColumnSpec = { name: 'id', type: 'bigint', notNull: true, values: 'key' };
  const tenantColumn = (name = 'tenant_id'): ColumnSpec => ({ name, type: key, notNull: true, values: 'tenant' });
  const updatedAt: ColumnSpec[] = shape.triggers
    ? [{ name: 'updated_at', type: 'timestamptz', notNull: true, extra: 'DEFAULT now()', values: 'timestamptz' }]
    : [];
  const touch = (table: string) =>
    shape.triggers
      ? [
          `CREATE TRIGGER ${q(`${table}_touch`)} BEFORE INSERT OR UPDATE ON ${q(shape.schema)}.${q(table)} FOR EACH ROW EXECUTE FUNCTION ${q(shape.schema)}.touch()`,
        ]
      : [];
  const table = (spec: Omit<TableSpec, 'owned' | 'excluded' | 'after'> & Partial<TableSpec>): TableSpec => {
    const t: TableSpec = { owned: true, excluded: false, after: [], ...spec };
    tables.push(t);
    return t;
  };

  if (shape.sharedLookup)
    table({
      name: 'lookup',
      owned: false,
      columns: [
        { name: 'code', type: 'text', notNull: true, values: 'key' },
        { name: 'label', type: 'text', values: 'text' },
      ],
      primaryKey: ['code'],
      foreignKeys: [],
    });
  table({
    name: 'tenants',
    columns: [
      { name: 'id', type: key, notNull: true, values: 'key' },
      { name: 'name', type: 'text', notNull: true, values: 'text' },
      ...(shape.sharedLookup ? [{ name: 'plan_code', type: 'text', values: 'ref' as const }] : []),
      { name: 'created_at', type: 'timestamptz', values: 'timestamptz' },
    ],
    primaryKey: ['id'],
    foreignKeys: shape.sharedLookup
      ? [fk('tenants_plan_fk', ['plan_code'], 'lookup', ['code'], { nullable: true })]
      : [],
  });
  if (shape.excluded !== 'none')
    table({
      name: 'sessions',
      excluded: true,
      tenantColumn: 'tenant_id',
      columns: [idColumn, tenantColumn(), { name: 'token', type: 'text', values: 'text' }],
      primaryKey: ['id'],
      foreignKeys: [fk('sessions_tenant_fk', ['tenant_id'], 'tenants')],
    });

  shape.chains.forEach((length, chain) => {
    for (let depth = 1; depth <= length; depth++) {
      const name = `c${chain}_${depth}`;
      const first = depth === 1;
      const main = chain === 0 && first;
      const columns: ColumnSpec[] = [
        main && shape.identity
          ? { ...idColumn, extra: `GENERATED ${shape.identity === 'always' ? 'ALWAYS' : 'BY DEFAULT'} AS IDENTITY` }
          : idColumn,
      ];
      const fks: FkSpec[] = [];
      if (first) {
        columns.push(tenantColumn());
        fks.push(fk(`${name}_tenant_fk`, ['tenant_id'], 'tenants'));
      } else {
        columns.push({ name: 'parent_id', type: 'bigint', notNull: true, values: 'ref' });
        fks.push(fk(`${name}_parent_fk`, ['parent_id'], `c${chain}_${depth - 1}`));
        if (shape.nullableFks) {
          columns.push({ name: 'alt_id', type: 'bigint', values: 'ref' });
          fks.push(fk(`${name}_alt_fk`, ['alt_id'], `c${chain}_1`, ['id'], { nullable: true }));
        }
      }
      columns.push({ name: 'note', type: 'text', values: 'text' });
      if (main) {
        columns.push(
          { name: 'amount', type: 'numeric(14,4)', values: 'numeric' },
          { name: 'at', type: 'timestamptz', values: 'timestamptz' },
          { name: 'labels', type: 'text[]', values: 'text[]' },
          { name: 'nums', type: 'int[]', values: 'int[]' },
          { name: 'doc', type: 'jsonb', values: 'jsonb' },
          { name: 'blob', type: 'bytea', values: 'bytea' },
          { name: 'flag', type: 'boolean', values: 'boolean' },
          { name: 'ratio', type: 'float8', values: 'float8' },
          ...updatedAt,
        );
        if (shape.generated)
          columns.push({
            name: 'amount_twice',
            type: 'numeric',
            extra: 'GENERATED ALWAYS AS (amount * 2) STORED',
            generated: true,
            values: 'none',
          });
        if (shape.sharedLookup) {
          columns.push({ name: 'kind_code', type: 'text', values: 'ref' });
          fks.push(fk(`${name}_kind_fk`, ['kind_code'], 'lookup', ['code'], { nullable: true }));
        }
        if (shape.excluded === 'parent') {
          columns.push({ name: 'session_id', type: 'bigint', values: 'ref' });
          fks.push(fk(`${name}_session_fk`, ['session_id'], 'sessions', ['id'], { nullable: true }));
        }
      }
      table({
        name,
        columns,
        primaryKey: ['id'],
        foreignKeys: fks,
        tenantColumn: first ? 'tenant_id' : undefined,
        after: main ? touch(name) : [],
        identity: main && shape.identity ? shape.identity : undefined,
      });
    }
  });

  if (shape.composite) {
    table({
      name: 'cp',
      tenantColumn: 'tenant_id',
      columns: [
        tenantColumn(),
        { name: 'n', type: 'integer', notNull: true, values: 'key' },
        { name: 'label', type: 'text', values: 'text' },
      ],
      primaryKey: ['tenant_id', 'n'],
      foreignKeys: [fk('cp_tenant_fk', ['tenant_id'], 'tenants')],
    });
    // Owned only through the composite FK: no FK of its own to the root.
    table({
      name: 'cc',
      tenantColumn: 'tenant_id',
      columns: [
        tenantColumn(),
        { name: 'n', type: 'integer', notNull: true, values: 'ref' },
        { name: 'm', type: 'integer', notNull: true, values: 'key' },
        { name: 'body', type: 'text', values: 'text' },
      ],
      primaryKey: ['tenant_id', 'n', 'm'],
      foreignKeys: [fk('cc_cp_fk', ['tenant_id', 'n'], 'cp', ['tenant_id', 'n'])],
    });
  }

  if (shape.selfReference)
    table({
      name: 'tree',
      tenantColumn: 'tenant_id',
      columns: [
        idColumn,
        tenantColumn(),
        { name: 'parent_id', type: 'bigint', values: 'ref' },
        { name: 'name', type: 'text', values: 'text' },
        ...updatedAt,
      ],
      primaryKey: ['id'],
      foreignKeys: [
        fk('tree_tenant_fk', ['tenant_id'], 'tenants'),
        fk('tree_parent_fk', ['parent_id'], 'tree', ['id'], { nullable: true }),
      ],
      after: touch('tree'),
    });

  if (shape.cycle) {
    const names = ['cy_a', 'cy_b', 'cy_c'].slice(0, shape.cycle.size);
    names.forEach((name, i) => {
      const closing = i === names.length - 1;
      const nullable = closing && shape.cycle!.closedBy === 'nullable';
      table({
        name,
        tenantColumn: 'tenant_id',
        columns: [
          idColumn,
          tenantColumn(),
          { name: 'next_id', type: 'bigint', notNull: !nullable, values: 'ref' },
          { name: 'note', type: 'text', values: 'text' },
        ],
        primaryKey: ['id'],
        foreignKeys: [
          fk(`${name}_tenant_fk`, ['tenant_id'], 'tenants'),
          fk(`${name}_next_fk`, ['next_id'], names[(i + 1) % names.length]!, ['id'], {
            nullable,
            deferrable: closing && shape.cycle!.closedBy === 'deferrable',
          }),
        ],
      });
    });
  }

  const tags = shape.junction || shape.uniques || shape.deferrableUnique;
  if (tags) {
    const after: string[] = [];
    if (shape.uniques)
      after.push(
        `CREATE UNIQUE INDEX ${q('tags_live_slug')} ON ${q(shape.schema)}.tags (slug) WHERE NOT archived`,
        `ALTER TABLE ${q(shape.schema)}.tags ADD CONSTRAINT tags_label_unique UNIQUE (tenant_id, label)`,
      );
    if (shape.deferrableUnique)
      after.push(
        `ALTER TABLE ${q(shape.schema)}.tags ADD CONSTRAINT tags_slug_deferrable UNIQUE (tenant_id, slug) DEFERRABLE INITIALLY IMMEDIATE`,
      );
    table({
      name: 'tags',
      tenantColumn: 'tenant_id',
      columns: [
        idColumn,
        tenantColumn(),
        { name: 'label', type: 'text', notNull: true, values: 'key' },
        { name: 'slug', type: 'text', notNull: true, values: 'key' },
        { name: 'archived', type: 'boolean', notNull: true, values: 'key' },
      ],
      primaryKey: ['id'],
      foreignKeys: [fk('tags_tenant_fk', ['tenant_id'], 'tenants')],
      after,
    });
  }
  if (shape.junction)
    table({
      name: 'jn',
      columns: [
        { name: 'c_id', type: 'bigint', notNull: true, values: 'ref' },
        { name: 'tag_id', type: 'bigint', notNull: true, values: 'ref' },
        { name: 'note', type: 'text', values: 'text' },
      ],
      primaryKey: ['c_id', 'tag_id'],
      foreignKeys: [fk('jn_c_fk', ['c_id'], 'c0_1'), fk('jn_tag_fk', ['tag_id'], 'tags')],
    });

  if (shape.logicalLink)
    table({
      name: 'audit_trail',
      tenantColumn: 'tenant_ref',
      columns: [idColumn, tenantColumn('tenant_ref'), { name: 'body', type: 'text', values: 'text' }],
      primaryKey: ['id'],
      foreignKeys: [fk('audit_trail_tenant_logical', ['tenant_ref'], 'tenants', ['id'], { logical: true })],
    });

  if (shape.partitioned)
    table({
      name: 'pe',
      tenantColumn: 'tenant_id',
      columns: [tenantColumn(), idColumn, { name: 'v', type: 'jsonb', values: 'jsonb' }],
      primaryKey: ['tenant_id', 'id'],
      foreignKeys: [fk('pe_tenant_fk', ['tenant_id'], 'tenants')],
      partitionBy: 'HASH (tenant_id)',
      after: [0, 1, 2].map(
        (i) =>
          `CREATE TABLE ${q(shape.schema)}.${q(`pe_${i}`)} PARTITION OF ${q(shape.schema)}.pe FOR VALUES WITH (MODULUS 3, REMAINDER ${i})`,
      ),
    });

  return { shape, schema: shape.schema, tables, root: `${shape.schema}.tenants`, refusal: refusalsOf(shape)[0] };
}

export function tableSpec(schema: CaseSchema, name: string): TableSpec {
  const t = schema.tables.find((x) => x.name === name);
  if (!t) throw new Error(`no table ${name} in the generated schema`);
  return t;
}

/** The schema as SQL: CREATE SCHEMA, the trigger function, every table, its FKs, indexes, triggers and partitions. */
export function schemaSql(schema: CaseSchema): string {
  const s = q(schema.schema);
  const lines = [`CREATE SCHEMA ${s};`];
  if (schema.shape.triggers)
    lines.push(
      `CREATE FUNCTION ${s}.touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.updated_at := now(); RETURN NEW; END $$;`,
    );
  for (const t of schema.tables) {
    const cols = t.columns.map(
      (c) => `  ${q(c.name)} ${c.type}${c.notNull ? ' NOT NULL' : ''}${c.extra ? ` ${c.extra}` : ''}`,
    );
    cols.push(`  PRIMARY KEY (${t.primaryKey.map(q).join(', ')})`);
    lines.push(
      `CREATE TABLE ${s}.${q(t.name)} (\n${cols.join(',\n')}\n)${t.partitionBy ? ` PARTITION BY ${t.partitionBy}` : ''};`,
    );
  }
  for (const t of schema.tables) {
    for (const f of t.foreignKeys.filter((x) => !x.logical))
      lines.push(
        `ALTER TABLE ${s}.${q(t.name)} ADD CONSTRAINT ${q(f.name)} FOREIGN KEY (${f.columns.map(q).join(', ')}) REFERENCES ${s}.${q(f.to)} (${f.refColumns.map(q).join(', ')})${f.deferrable ? ' DEFERRABLE INITIALLY IMMEDIATE' : ''};`,
      );
    for (const a of t.after) lines.push(`${a};`);
  }
  return `${lines.join('\n')}\n`;
}

/** The restore config: the logical FKs and the excluded tables (and chunkRows, given by the case). */
export function restoreConfig(schema: CaseSchema, chunkRows?: number): Record<string, unknown> {
  const name = (t: string) => `${schema.schema}.${t}`;
  const logical = schema.tables.flatMap((t) =>
    t.foreignKeys
      .filter((f) => f.logical)
      .map((f) => ({ from: name(t.name), columns: f.columns, to: name(f.to), referencedColumns: f.refColumns })),
  );
  const excluded = schema.tables.filter((t) => t.excluded).map((t) => name(t.name));
  return {
    ...(logical.length ? { logicalForeignKeys: logical } : {}),
    ...(excluded.length ? { excludeTables: excluded } : {}),
    ...(chunkRows ? { chunkRows } : {}),
  };
}
