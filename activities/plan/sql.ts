/**
 * Small SQL fragments shared by preflight, copy and validate. Identifiers come only from the plan (read from the
 * catalog) and are always quoted; nothing here takes a value.
 */
import { escapeIdentifier as q } from '../db';
import type { PlanTable } from './index';

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

/** `(t.x, t.y) > (($2::text[])[1]::int, ...)`-style keyset bound over a text[] setting. */
export function keysetAfter(table: PlanTable, alias: string, setting: string): string {
  const types = new Map(table.columns.map((c) => [c.name, c.type]));
  const bound = table.primaryKey.map((c, i) => `(current_setting('${setting}')::text[])[${i + 1}]::${types.get(c)}`);
  return `(${columnList(table.primaryKey, alias)}) > (${bound.join(', ')})`;
}

/** Session settings that make row text identical on two servers, so that hashes of rows can be compared. */
export const canonicalTextSettingsSql =
  "SET LOCAL TimeZone = 'UTC'; SET LOCAL DateStyle = 'ISO, YMD'; SET LOCAL extra_float_digits = 3; SET LOCAL bytea_output = 'hex'; SET LOCAL IntervalStyle = 'postgres'";
