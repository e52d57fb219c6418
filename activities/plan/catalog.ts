/**
 * Reads what the plan needs from pg_catalog (never information_schema alone: it hides partitions, identity details,
 * deferrability and constraints on tables the role does not own). A partitioned table is read through its top-level
 * parent: partitions are not tables of the plan, and FKs declared on partitions (Pagila's payment) are lifted to the
 * parent and deduplicated.
 */
import type { Pool } from '../db';

export interface CatalogColumn {
  name: string;
  /** format_type() of the column, e.g. `integer`, `character varying(50)`, `public.mpaa_rating`. */
  type: string;
  notNull: boolean;
  /** Default expression as text, or null. */
  default: string | null;
  /** '' (none), 'a' (GENERATED ALWAYS AS IDENTITY) or 'd' (BY DEFAULT). */
  identity: '' | 'a' | 'd';
  /** A stored generated column: never written, PostgreSQL computes it. */
  generated: boolean;
  /** The sequence that feeds this column (serial, identity or `DEFAULT nextval(...)`), schema-qualified and quoted. */
  sequence: string | null;
}

export interface CatalogTable {
  /** `schema.table` */
  key: string;
  schema: string;
  name: string;
  partitioned: boolean;
  columns: CatalogColumn[];
  primaryKey: string[] | null;
  /** Every unique key without predicate or expression, the primary key first. */
  uniqueKeys: string[][];
  /**
   * Every unique index (plain, partial and expression ones), with what ON CONFLICT and the cross-tenant guard need:
   * each key item as SQL text over the table's unqualified columns, the predicate, and whether it is DEFERRABLE.
   */
  uniqueIndexes?: CatalogUniqueIndex[];
  /** Non-internal triggers (on the table or its partitions), for the report. */
  userTriggers: string[];
  /** Columns that lead an index of the table or of its partitions (any index without a predicate, unique or not). */
  indexedColumns?: string[];
  /** EXCLUDE constraints of the table or of its partitions: name and definition (pg_get_constraintdef). */
  exclusionConstraints?: Array<{ name: string; definition: string }>;
}

export interface CatalogUniqueIndex {
  /** The index's name (for a constraint, also the constraint's name). */
  name: string;
  primary: boolean;
  /** No predicate and no expression: the columns in `uniqueKeys`. */
  plain: boolean;
  /** Key items, as pg_get_indexdef() prints them: a quoted column name, or an expression over unqualified columns. */
  keys: string[];
  /** The partial index's predicate over unqualified columns (pg_get_expr), or null. */
  predicate: string | null;
  /** Every column the keys and the predicate read. */
  columns: string[];
  /** A DEFERRABLE primary key or unique constraint (PostgreSQL refuses it as an ON CONFLICT arbiter). */
  deferrable: boolean;
  /** NULLS NOT DISTINCT (PostgreSQL 15+): two NULL keys collide. */
  nullsNotDistinct: boolean;
}

export interface CatalogForeignKey {
  name: string;
  from: string;
  columns: string[];
  to: string;
  referencedColumns: string[];
  deferrable: boolean;
  /** Declared in the config file, not in the schema. */
  logical: boolean;
}

export interface Catalog {
  tables: Record<string, CatalogTable>;
  foreignKeys: CatalogForeignKey[];
  /** May this role `SET session_replication_role` (superuser, or `GRANT SET ON PARAMETER` on PostgreSQL 15+)? */
  canSetReplicationRole: boolean;
  serverVersionNum: number;
}

// Top-level user tables: ordinary ('r') and partitioned ('p'), partitions excluded (they are read through their parent).
const tablesSql = `
  SELECT c.oid::int AS oid, n.nspname::text AS schema, c.relname::text AS name, c.relkind = 'p' AS partitioned
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
    AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
  ORDER BY 2, 3`;

// The sequence of a column comes from pg_depend: an identity or OWNED BY sequence depends on the column ('a'/'i'),
// and a `DEFAULT nextval('s')` expression depends on its sequence (pg_attrdef -> pg_class 'n'), even when not owned.
const columnsSql = `
  SELECT a.attrelid::int AS oid, a.attname::text AS name, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull AS "notNull",
         pg_get_expr(d.adbin, d.adrelid) AS "default", a.attidentity AS identity, a.attgenerated = 's' AS generated,
         coalesce(
           (SELECT quote_ident(sn.nspname) || '.' || quote_ident(s.relname) FROM pg_depend dep
              JOIN pg_class s ON s.oid = dep.objid AND s.relkind = 'S' JOIN pg_namespace sn ON sn.oid = s.relnamespace
             WHERE dep.classid = 'pg_class'::regclass AND dep.refclassid = 'pg_class'::regclass
               AND dep.refobjid = a.attrelid AND dep.refobjsubid = a.attnum AND dep.deptype IN ('a', 'i') LIMIT 1),
           (SELECT quote_ident(sn.nspname) || '.' || quote_ident(s.relname) FROM pg_depend dep
              JOIN pg_class s ON s.oid = dep.refobjid AND s.relkind = 'S' JOIN pg_namespace sn ON sn.oid = s.relnamespace
             WHERE dep.classid = 'pg_attrdef'::regclass AND dep.objid = d.oid AND dep.refclassid = 'pg_class'::regclass LIMIT 1)
         ) AS sequence
  FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
  WHERE a.attrelid = ANY($1::oid[]) AND a.attnum > 0 AND NOT a.attisdropped
  ORDER BY a.attrelid, a.attnum`;

// Every unique index, partial and expression ones included: a partial or expression unique index (lower(email) WHERE
// deleted_at IS NULL) is a key another tenant can hold just as well. The columns an expression or a predicate reads
// come from pg_depend (PostgreSQL records them there); indimmediate is false for a DEFERRABLE constraint.
// indnullsnotdistinct is read through to_jsonb so that the query also runs on servers before 15.
const uniqueKeysSql = `
  SELECT i.indrelid::int AS oid, i.indisprimary AS primary, c.relname::text AS name,
         i.indpred IS NULL AND i.indexprs IS NULL AS plain, NOT i.indimmediate AS deferrable,
         coalesce((to_jsonb(i) ->> 'indnullsnotdistinct')::boolean, false) AS "nullsNotDistinct",
         pg_get_expr(i.indpred, i.indrelid, true) AS predicate,
         ARRAY(SELECT pg_get_indexdef(i.indexrelid, k, true) FROM generate_series(1, i.indnkeyatts::int) k ORDER BY k) AS keys,
         ARRAY(SELECT a.attname::text FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, ord)
               JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum WHERE k.ord <= i.indnkeyatts ORDER BY k.ord) AS columns,
         ARRAY(SELECT DISTINCT a.attname::text FROM pg_attribute a
               WHERE a.attrelid = i.indrelid AND a.attnum > 0 AND (a.attnum = ANY(i.indkey::int2[]) OR EXISTS (
                 SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = i.indexrelid
                   AND d.refclassid = 'pg_class'::regclass AND d.refobjid = i.indrelid AND d.refobjsubid = a.attnum))
               ORDER BY 1) AS "readColumns"
  FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
  WHERE i.indrelid = ANY($1::oid[]) AND i.indisunique
  ORDER BY i.indrelid, NOT i.indisprimary, i.indexrelid::regclass::text`;

// The first column of every btree or hash index that an ownership predicate (`col = ANY(...)`) can use: no predicate,
// or only `col IS NOT NULL` (which that comparison implies). Partitions' indexes are lifted to their root, with attnums
// resolved on the relation the index is on. Such a column is probed with an array of keys.
const indexedColumnsSql = `
  SELECT coalesce(pg_partition_root(i.indrelid), i.indrelid)::int AS oid, array_agg(DISTINCT a.attname::text) AS columns
  FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
  JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_am am ON am.oid = ic.relam
  WHERE i.indkey[0] <> 0 AND am.amname IN ('btree', 'hash')
    AND (i.indpred IS NULL OR pg_get_expr(i.indpred, i.indrelid) = '(' || quote_ident(a.attname) || ' IS NOT NULL)')
  GROUP BY 1`;

// FKs on a partition are lifted to the partition root on both sides; attnums are resolved to names on the relation
// that declares them (a partition's attnums may differ from its parent's), and duplicates are removed by the caller.
const foreignKeysSql = `
  SELECT con.conname::text AS name,
         coalesce(pg_partition_root(con.conrelid), con.conrelid)::int AS "fromOid",
         coalesce(pg_partition_root(con.confrelid), con.confrelid)::int AS "toOid",
         ARRAY(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY k(attnum, ord)
               JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum ORDER BY k.ord) AS columns,
         ARRAY(SELECT a.attname::text FROM unnest(con.confkey) WITH ORDINALITY k(attnum, ord)
               JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.attnum ORDER BY k.ord) AS "referencedColumns",
         con.condeferrable AS deferrable, con.conparentid <> 0 AS inherited
  FROM pg_constraint con
  WHERE con.contype = 'f'
  ORDER BY con.conname`;

// Exclusion constraints (contype 'x'), lifted from partitions to their root like FKs.
const exclusionSql = `
  SELECT coalesce(pg_partition_root(con.conrelid), con.conrelid)::int AS oid, con.conname::text AS name,
         pg_get_constraintdef(con.oid) AS definition
  FROM pg_constraint con WHERE con.contype = 'x' ORDER BY 2`;

const triggersSql = `
  SELECT coalesce(pg_partition_root(t.tgrelid), t.tgrelid)::int AS oid, t.tgname::text AS name
  FROM pg_trigger t WHERE NOT t.tgisinternal ORDER BY 2`;

const privilegeSql = `SELECT has_parameter_privilege('session_replication_role', 'SET') AS "canSet",
  current_setting('server_version_num')::int AS version`;

export async function readCatalog(pool: Pool): Promise<Catalog> {
  const tableRows = (await pool.query<{ oid: number; schema: string; name: string; partitioned: boolean }>(tablesSql))
    .rows;
  const oids = tableRows.map((t) => t.oid);
  // One after the other: these are quick, and a catalog read should not take five connections of live's pool.
  const columns = await pool.query<CatalogColumn & { oid: number }>(columnsSql, [oids]);
  const uniques = await pool.query<{
    oid: number;
    primary: boolean;
    name: string;
    plain: boolean;
    deferrable: boolean;
    nullsNotDistinct: boolean;
    predicate: string | null;
    keys: string[];
    columns: string[];
    readColumns: string[];
  }>(uniqueKeysSql, [oids]);
  const fks = await pool.query<{
    name: string;
    fromOid: number;
    toOid: number;
    columns: string[];
    referencedColumns: string[];
    deferrable: boolean;
    inherited: boolean;
  }>(foreignKeysSql);
  const triggers = await pool.query<{ oid: number; name: string }>(triggersSql);
  const indexed = await pool.query<{ oid: number; columns: string[] }>(indexedColumnsSql);
  const exclusions = await pool.query<{ oid: number; name: string; definition: string }>(exclusionSql);
  const privilege = await pool.query<{ canSet: boolean; version: number }>(privilegeSql);

  const byOid = new Map<number, CatalogTable>();
  const tables: Record<string, CatalogTable> = {};
  for (const t of tableRows) {
    const table: CatalogTable = {
      key: `${t.schema}.${t.name}`,
      schema: t.schema,
      name: t.name,
      partitioned: t.partitioned,
      columns: [],
      primaryKey: null,
      uniqueKeys: [],
      userTriggers: [],
    };
    byOid.set(t.oid, table);
    tables[table.key] = table;
  }
  for (const { oid, ...c } of columns.rows) {
    byOid.get(oid)?.columns.push({ ...c, identity: (c.identity || '') as CatalogColumn['identity'] });
  }
  for (const u of uniques.rows) {
    const table = byOid.get(u.oid);
    if (!table) continue;
    (table.uniqueIndexes ??= []).push({
      name: u.name,
      primary: u.primary,
      plain: u.plain,
      keys: u.keys,
      predicate: u.predicate,
      columns: u.readColumns,
      deferrable: u.deferrable,
      nullsNotDistinct: u.nullsNotDistinct,
    });
    if (!u.plain) continue;
    if (u.primary) table.primaryKey = u.columns;
    if (!table.uniqueKeys.some((k) => k.join() === u.columns.join())) table.uniqueKeys.push(u.columns);
  }
  for (const t of triggers.rows) {
    const table = byOid.get(t.oid);
    if (table && !table.userTriggers.includes(t.name)) table.userTriggers.push(t.name);
  }
  for (const x of exclusions.rows) {
    const table = byOid.get(x.oid);
    if (table && !table.exclusionConstraints?.some((c) => c.name === x.name))
      (table.exclusionConstraints ??= []).push({ name: x.name, definition: x.definition });
  }
  for (const i of indexed.rows) {
    const table = byOid.get(i.oid);
    if (table) table.indexedColumns = [...new Set([...(table.indexedColumns ?? []), ...i.columns])].sort();
  }

  // One FK per (from, columns, to, referenced columns): the clones PostgreSQL makes on each partition (and the
  // per-partition FKs of a schema like Pagila's) collapse into one edge between partition roots.
  const seen = new Map<string, { fk: CatalogForeignKey; rank: string }>();
  for (const fk of fks.rows) {
    const from = byOid.get(fk.fromOid);
    const to = byOid.get(fk.toOid);
    if (!from || !to) continue;
    const id = `${from.key}(${fk.columns.join()})->${to.key}(${fk.referencedColumns.join()})`;
    // Keep the parent constraint's name when there is one; otherwise the smallest name, so the plan is deterministic.
    const rank = `${fk.inherited ? 1 : 0}${fk.name}`;
    const existing = seen.get(id);
    if (existing && existing.rank <= rank) continue;
    seen.set(id, {
      rank,
      fk: {
        name: fk.name,
        from: from.key,
        columns: fk.columns,
        to: to.key,
        referencedColumns: fk.referencedColumns,
        deferrable: fk.deferrable,
        logical: false,
      },
    });
  }
  const foreignKeys = [...seen.values()]
    .map((s) => s.fk)
    .sort((a, b) => compareText(`${a.from} ${a.name}`, `${b.from} ${b.name}`));
  return {
    tables,
    foreignKeys,
    canSetReplicationRole: privilege.rows[0]!.canSet,
    serverVersionNum: privilege.rows[0]!.version,
  };
}

/** Byte-order comparison: the plan must not depend on the locale of the machine that builds it. */
export function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
