/**
 * The restore engine's SQL, one module per database operation (session, stage, merge, presence, cross-tenant, orphans,
 * checksum, sequences, lock). Each exports builders that return a statement as node-postgres takes it, `{ text, values }`,
 * so that a unit test can assert the SQL and the steps (preflight, copy, validate) run it unchanged.
 *
 * Identifiers come only from the plan (read from the catalog) and are always quoted with escapeIdentifier; values go in
 * as `$n` parameters. The fragments below take no value.
 */
import { escapeIdentifier as q } from '../db';
import type { PlanTable } from '../plan';

/** A statement: its text, and the values of its `$n` parameters. */
export type Sql = { text: string; values?: unknown[] };

/** `a.x, a.y` (or `x, y` without alias). */
export function columnList(columns: string[], alias?: string): string {
  return columns.map((c) => (alias ? `${alias}.${q(c)}` : q(c))).join(', ');
}

/** `a.x = b.x AND a.y = b.y` */
export function keyMatch(columns: string[], a: string, b: string): string {
  return columns.map((c) => `${a}.${q(c)} = ${b}.${q(c)}`).join(' AND ');
}

/** The written columns of a table, by name. */
export function writtenNames(table: PlanTable): string[] {
  return table.columns.map((c) => c.name);
}

/**
 * The text of a row over the given columns: `ROW(...)::text` is defined for every type (json has no equality
 * operator, text does), so it serves both to compare a live row with a backup row and to checksum rows.
 */
export function rowText(columns: string[], alias: string): string {
  return `ROW(${columnList(columns, alias)})::text`;
}

/** `ARRAY[x::text, y::text]`: a primary key as a text[] (a checkpoint's cursor, a recorded key). */
export function keyAsText(columns: string[]): string {
  return `ARRAY[${columns.map((c) => `${q(c)}::text`).join(', ')}]`;
}
