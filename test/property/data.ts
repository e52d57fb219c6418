/**
 * The property suite's data generator: tenants of skewed sizes filling a generated schema (./schema.ts), every row
 * tagged with the tenant it belongs to, so that the oracle knows ownership without asking the product. Values come
 * from palettes of the shapes that break text and binary round trips: quotes, backslashes, tabs, newlines, the COPY
 * null marker as text, unicode, NaN and infinities, empty arrays, JSON null beside SQL NULL, and NULL in every column
 * that allows it.
 */
import pg from 'pg';
import { prng } from '../../scripts/workload/prng';
import { q, type CaseSchema, type ColumnSpec, type TableSpec } from './schema';

export interface Population {
  /** Each tenant's size: 0 = only its root row, 3 = the most rows per table. */
  sizes: Array<0 | 1 | 2 | 3>;
  /** Tenant 0 gets more rows in c0_1 than chunkRows: its copy goes in chunks. */
  large: boolean;
  seed: number;
}

/** Rows per table above which a tenant is copied in chunks, in every case (the large tenant has 3× as many). */
export const chunkRows = 12;

export interface Row {
  table: string;
  /** The primary key's values as text, joined by '|' (what `concat_ws('|', pk::text...)` gives). */
  key: string;
  /** The tenant the row belongs to; null for a shared row. */
  tenant: string | null;
  /** SQL literals by column (generated columns absent). */
  values: Record<string, string>;
  /** Rows it references (declared and logical FKs alike). */
  refs: Array<{ table: string; key: string }>;
}

export interface Dataset {
  tenantKeys: string[];
  rows: Row[];
}

const oddTexts = [
  "it's",
  'back\\slash',
  'tab\there',
  'new\nline',
  'quote"d',
  'ünïcødé ✓ 日本語',
  'crab 🦀',
  '',
  ' leading space',
  '\\N',
  'NULL',
  ',;|{}',
  'cr\r\nlf',
];
const jsons = [
  '{}',
  '[]',
  'null',
  '"str"',
  '12.5',
  '{"a":[1,2,{"b":null}]}',
  '{"k":"it\'s \\"q\\" \\\\ \\n"}',
  '{"ü":"✓"}',
];
const numerics = ['0', '-1.5000', '12345678.1234', 'NaN', '0.0001'];
const times = [
  '2020-01-01 00:00:00+00',
  'infinity',
  '-infinity',
  '1999-12-31 23:59:59.999999+05:30',
  '2026-02-28 12:00:00.5-08',
];
const floats = ['0', '-0', '1e-300', 'NaN', 'Infinity', '-Infinity', '0.1', '123456789.123456789'];
const textArrays = [
  "'{}'::text[]",
  "ARRAY['a,b', NULL, '{x}', 'q\"t', '']::text[]",
  "ARRAY['one']::text[]",
  "ARRAY['back\\\\slash', 'ü']::text[]",
];
const intArrays = ["'{}'::int[]", 'ARRAY[1, NULL, -3]::int[]', 'ARRAY[2147483647]::int[]'];
const byteas = ["'\\x'::bytea", "'\\x00ff10'::bytea", "'\\x5c4e'::bytea"];

function tenantKeyOf(schema: CaseSchema, i: number, random: () => number): string {
  if (schema.shape.rootKey === 'bigint') return String(i === 1 ? 9_007_199_254 : 1000 + i * 7);
  if (schema.shape.rootKey === 'text') return `t-${i}${i === 1 ? '-Acme' : ''}`;
  const hex = Array.from({ length: 32 }, () => Math.floor(random() * 16).toString(16)).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-a${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
}

export function buildData(schema: CaseSchema, population: Population): Dataset {
  const random = prng(population.seed);
  const pick = <T>(list: readonly T[]): T => list[Math.floor(random() * list.length)]!;
  const chance = (p: number) => random() < p;
  const has = (name: string) => schema.tables.some((t) => t.name === name);
  const rows: Row[] = [];
  const byTenant = new Map<string, Map<string, Row[]>>();
  const ids = new Map<string, number>();
  const nextId = (table: string) => {
    const base = table === 'c0_1' ? 5_000_000_000 : 1;
    const n = (ids.get(table) ?? base - 1) + 1;
    ids.set(table, n);
    return n;
  };
  const tenantKeys = population.sizes.map((_, i) => tenantKeyOf(schema, i, random));

  const literal = (column: ColumnSpec): string => {
    if (!column.notNull && chance(0.2)) return 'NULL';
    switch (column.values) {
      case 'text':
        return pg.escapeLiteral(chance(0.5) ? pick(oddTexts) : `v${Math.floor(random() * 1e6)}`);
      case 'numeric':
        return `${pg.escapeLiteral(pick(numerics))}::numeric`;
      case 'timestamptz':
        return `${pg.escapeLiteral(pick(times))}::timestamptz`;
      case 'text[]':
        return pick(textArrays);
      case 'int[]':
        return pick(intArrays);
      case 'jsonb':
        return `${pg.escapeLiteral(pick(jsons))}::jsonb`;
      case 'bytea':
        return pick(byteas);
      case 'boolean':
        return pick(['true', 'false']);
      case 'float8':
        return `${pg.escapeLiteral(pick(floats))}::float8`;
      default:
        throw new Error(`column ${column.name}: no literal for ${column.values}`);
    }
  };
  const keyText = (spec: TableSpec, values: Record<string, unknown>) =>
    spec.primaryKey.map((c) => String(values[c])).join('|');

  /** Adds a row: `set` holds the key, tenant and reference columns as JS values (null = NULL); the rest is drawn. */
  const add = (
    table: string,
    tenant: string | null,
    set: Record<string, string | number | boolean | null>,
    refs: Row['refs'] = [],
  ): Row => {
    const spec = schema.tables.find((t) => t.name === table)!;
    const values: Record<string, string> = {};
    for (const c of spec.columns) {
      if (c.generated) continue;
      if (c.name in set) {
        const v = set[c.name];
        values[c.name] =
          v === null
            ? 'NULL'
            : typeof v === 'string'
              ? `${pg.escapeLiteral(v)}::${c.type.replace(/\(.*\)/, '')}`
              : String(v);
      } else values[c.name] = literal(c);
    }
    const row: Row = { table, key: keyText(spec, set), tenant, values, refs: refs.filter((r) => r.key !== 'null') };
    rows.push(row);
    if (tenant !== null) {
      const tables = byTenant.get(tenant) ?? new Map<string, Row[]>();
      byTenant.set(tenant, tables);
      tables.set(table, [...(tables.get(table) ?? []), row]);
    }
    return row;
  };
  const of = (tenant: string, table: string) => byTenant.get(tenant)?.get(table) ?? [];
  const idOf = (row: Row) => Number(row.key);

  const lookupCodes = ['basic', 'pro', "it's"];
  if (has('lookup')) {
    for (const code of lookupCodes) add('lookup', null, { code });
    // A lookup row used by one tenant only: the incident may take it with the tenant (then the parent closure).
    tenantKeys.forEach((_, i) => add('lookup', null, { code: `own-${i}` }));
  }

  population.sizes.forEach((size, i) => {
    const tenant = tenantKeys[i]!;
    const count = (scale = 1) => (size === 0 ? 0 : 1 + Math.floor(random() * 2 * size * scale));
    const planCode = has('lookup') && chance(0.8) ? pick(lookupCodes) : null;
    add(
      'tenants',
      tenant,
      { id: tenant, ...(has('lookup') ? { plan_code: planCode } : {}) },
      planCode === null ? [] : [{ table: 'lookup', key: planCode }],
    );
    const root = { table: 'tenants', key: tenant };
    if (has('sessions'))
      for (let j = count(); j > 0; j--) add('sessions', tenant, { id: nextId('sessions'), tenant_id: tenant }, [root]);
    schema.shape.chains.forEach((length, chain) => {
      for (let depth = 1; depth <= length; depth++) {
        const table = `c${chain}_${depth}`;
        const n = chain === 0 && depth === 1 && population.large && i === 0 ? 3 * chunkRows + 5 : count();
        for (let j = 0; j < n; j++) {
          const id = nextId(table);
          if (depth === 1) {
            const set: Record<string, string | number | null> = { id, tenant_id: tenant };
            const refs = [root];
            if (table === 'c0_1' && has('lookup')) {
              set.kind_code = chance(0.3) ? `own-${i}` : chance(0.5) ? pick(lookupCodes) : null;
              if (set.kind_code !== null) refs.push({ table: 'lookup', key: String(set.kind_code) });
            }
            if (table === 'c0_1' && schema.shape.excluded === 'parent') {
              const session = of(tenant, 'sessions');
              set.session_id = session.length && chance(0.6) ? idOf(pick(session)) : null;
              if (set.session_id !== null) refs.push({ table: 'sessions', key: String(set.session_id) });
            }
            add(table, tenant, set, refs);
          } else {
            const parents = of(tenant, `c${chain}_${depth - 1}`);
            if (!parents.length) break;
            const parent = pick(parents);
            const set: Record<string, number | null> = { id, parent_id: idOf(parent) };
            const refs = [{ table: parent.table, key: parent.key }];
            if (schema.shape.nullableFks) {
              const alt = chance(0.5) ? pick(of(tenant, `c${chain}_1`)) : undefined;
              set.alt_id = alt ? idOf(alt) : null;
              if (alt) refs.push({ table: alt.table, key: alt.key });
            }
            add(table, tenant, set, refs);
          }
        }
      }
    });
    if (has('cp')) {
      const n = count();
      for (let k = 1; k <= n; k++) add('cp', tenant, { tenant_id: tenant, n: k }, [root]);
      for (let m = count(); m > 0; m--) {
        const parent = pick(of(tenant, 'cp'));
        const nValue = Number(parent.key.split('|')[1]);
        add('cc', tenant, { tenant_id: tenant, n: nValue, m }, [{ table: 'cp', key: parent.key }]);
      }
    }
    if (has('tree'))
      for (let j = count(); j > 0; j--) {
        const earlier = of(tenant, 'tree');
        const parent = earlier.length && chance(0.7) ? pick(earlier) : undefined;
        add('tree', tenant, { id: nextId('tree'), tenant_id: tenant, parent_id: parent ? idOf(parent) : null }, [
          root,
          ...(parent ? [{ table: 'tree', key: parent.key }] : []),
        ]);
      }
    if (schema.shape.cycle) {
      const names = ['cy_a', 'cy_b', 'cy_c'].slice(0, schema.shape.cycle.size);
      const n = count();
      const idsOf = names.map((name) => Array.from({ length: n }, () => nextId(name)));
      names.forEach((name, t) => {
        const next = names[(t + 1) % names.length]!;
        const closing = t === names.length - 1;
        for (let j = 0; j < n; j++) {
          const target = idsOf[(t + 1) % names.length]![Math.floor(random() * n)]!;
          const nulled = closing && schema.shape.cycle!.closedBy === 'nullable' && chance(0.3);
          add(name, tenant, { id: idsOf[t]![j]!, tenant_id: tenant, next_id: nulled ? null : target }, [
            root,
            ...(nulled ? [] : [{ table: next, key: String(target) }]),
          ]);
        }
      });
    }
    if (has('tags'))
      for (let j = count(); j > 0; j--) {
        const archived = chance(0.3);
        // Archived rows repeat their slug across tenants: the partial unique index allows it, and so must the guard.
        add(
          'tags',
          tenant,
          {
            id: nextId('tags'),
            tenant_id: tenant,
            label: `label-${j}`,
            slug: archived ? `archived-${j}` : `${tenant}-s${j}`,
            archived,
          },
          [root],
        );
      }
    if (has('jn')) {
      const cs = of(tenant, 'c0_1');
      const tags = of(tenant, 'tags');
      const seen = new Set<string>();
      for (let j = count(); j > 0 && cs.length && tags.length; j--) {
        const c = pick(cs);
        const t = pick(tags);
        if (seen.has(`${c.key}|${t.key}`)) continue;
        seen.add(`${c.key}|${t.key}`);
        add('jn', tenant, { c_id: idOf(c), tag_id: idOf(t) }, [
          { table: 'c0_1', key: c.key },
          { table: 'tags', key: t.key },
        ]);
      }
    }
    if (has('audit_trail'))
      for (let j = count(); j > 0; j--)
        add('audit_trail', tenant, { id: nextId('audit_trail'), tenant_ref: tenant }, [root]);
    if (has('pe')) for (let j = count(); j > 0; j--) add('pe', tenant, { tenant_id: tenant, id: nextId('pe') }, [root]);
  });
  return { tenantKeys, rows };
}

/** The data as SQL: one INSERT per table (FK checks off for the load, as pg_restore does), sequences set after. */
export function dataSql(schema: CaseSchema, data: Dataset): string {
  const s = q(schema.schema);
  const lines = ['SET session_replication_role = replica;'];
  for (const t of schema.tables) {
    const rows = data.rows.filter((r) => r.table === t.name);
    if (!rows.length) continue;
    const columns = t.columns.filter((c) => !c.generated).map((c) => c.name);
    lines.push(
      `INSERT INTO ${s}.${q(t.name)} (${columns.map(q).join(', ')})${t.identity === 'always' ? ' OVERRIDING SYSTEM VALUE' : ''} VALUES\n${rows
        .map((r) => `  (${columns.map((c) => r.values[c]).join(', ')})`)
        .join(',\n')};`,
    );
    if (t.identity)
      lines.push(
        `SELECT setval(pg_get_serial_sequence(${pg.escapeLiteral(`${s}.${q(t.name)}`)}, 'id'), (SELECT max(id) FROM ${s}.${q(t.name)}));`,
      );
  }
  lines.push('SET session_replication_role = origin;');
  return `${lines.join('\n')}\n`;
}
