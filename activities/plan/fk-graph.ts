/**
 * The FK graph the plan is built on: declared FKs of the backup and of live (a constraint added in live since the
 * backup still orders the inserts), plus logical FKs from the config file. Edges point from the referencing (child)
 * table to the referenced (parent) table. Excluded tables are removed with their edges.
 */
import { InvalidConfigError } from '../errors';
import type { RestoreConfig } from '../restore-types';
import { compareText, type Catalog, type CatalogForeignKey } from './catalog';

export interface FkEdge extends CatalogForeignKey {
  /** Every referencing column is nullable in live, so the FK may be inserted as NULL and set afterwards. */
  nullable: boolean;
}

export interface FkGraph {
  tables: string[];
  edges: FkEdge[];
}

function edgeId(fk: { from: string; columns: string[]; to: string; referencedColumns: string[] }): string {
  return `${fk.from}(${fk.columns.join()})->${fk.to}(${fk.referencedColumns.join()})`;
}

/** Checks logical FKs against the catalog, so that a typo in the config is reported and not silently ignored. */
export function logicalForeignKeys(catalog: Catalog, config: RestoreConfig): CatalogForeignKey[] {
  const problems: string[] = [];
  const result: CatalogForeignKey[] = [];
  (config.logicalForeignKeys ?? []).forEach((fk, i) => {
    const from = catalog.tables[fk.from];
    const to = catalog.tables[fk.to];
    if (!from) problems.push(`logicalForeignKeys[${i}].from: table ${fk.from} does not exist`);
    if (!to) problems.push(`logicalForeignKeys[${i}].to: table ${fk.to} does not exist`);
    if (!from || !to) return;
    for (const c of fk.columns)
      if (!from.columns.some((col) => col.name === c))
        problems.push(`logicalForeignKeys[${i}].columns: ${fk.from} has no column ${c}`);
    for (const c of fk.referencedColumns)
      if (!to.columns.some((col) => col.name === c))
        problems.push(`logicalForeignKeys[${i}].referencedColumns: ${fk.to} has no column ${c}`);
    if (
      !to.uniqueKeys.some(
        (k) => k.length === fk.referencedColumns.length && k.every((c) => fk.referencedColumns.includes(c)),
      )
    ) {
      problems.push(
        `logicalForeignKeys[${i}].referencedColumns: (${fk.referencedColumns.join(', ')}) is not a unique key of ${fk.to}`,
      );
    }
    result.push({
      name: `logical:${fk.from}(${fk.columns.join(',')})->${fk.to}`,
      from: fk.from,
      columns: fk.columns,
      to: fk.to,
      referencedColumns: fk.referencedColumns,
      deferrable: false,
      logical: true,
    });
  });
  if (problems.length)
    throw new InvalidConfigError(
      `the config's logical foreign keys do not match the backup's schema:\n  - ${problems.join('\n  - ')}`,
    );
  return result;
}

export function buildFkGraph(scratch: Catalog, live: Catalog, config: RestoreConfig): FkGraph {
  const excluded = new Set(config.excludeTables ?? []);
  const tables = Object.keys(scratch.tables)
    .filter((t) => !excluded.has(t))
    .sort(compareText);
  const present = new Set(tables);
  const edges = new Map<string, FkEdge>();
  const nullable = (fk: CatalogForeignKey) => {
    const table = live.tables[fk.from] ?? scratch.tables[fk.from]!;
    return fk.columns.every((c) => table.columns.find((col) => col.name === c)?.notNull === false);
  };
  for (const fk of [...scratch.foreignKeys, ...live.foreignKeys, ...logicalForeignKeys(scratch, config)]) {
    if (!present.has(fk.from) || !present.has(fk.to)) continue;
    const id = edgeId(fk);
    const existing = edges.get(id);
    // The live declaration wins over the backup's: it is the one PostgreSQL enforces while we insert.
    if (existing && !live.foreignKeys.includes(fk)) continue;
    edges.set(id, { ...fk, nullable: nullable(fk) });
  }
  return { tables, edges: [...edges.values()].sort((a, b) => compareText(edgeId(a), edgeId(b))) };
}
