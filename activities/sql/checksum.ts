/**
 * The checksum of a tenant's rows of one table, computed in SQL on scratch and on live alike (validate.ts): the row
 * count, and order-independent digests, the sum of a 64-bit hash of each row's text (`hashtextextended(ROW(...)::text,
 * 0)`), summed by sum(bigint), whose result is numeric, so that it cannot overflow. A sum does not depend on the order
 * rows are read in, so no sort is needed on either side. Both sessions must be in the canonical text settings
 * (session.ts) for the same row to give the same text on both servers. `rows` covers whole rows; `keys` only the
 * primary key (policy skip keeps live's content of existing rows, so only the keys must match there). On live, `withOrphans` adds in the same pass, per FK of
 * the table, the rows whose reference finds no parent (`o0`, `o1`, ... in the order of `table.foreignKeys`): one read of
 * the tenant's rows gives the table's whole evidence.
 */
import { qualify, type Plan, type PlanTable } from '../plan';
import { ownedPredicate, type RenderContext } from '../plan/ownership';
import { escapeIdentifier as q } from '../db';
import { keyMatch, rowText, writtenNames, type Sql } from './index';
import { danglingFk } from './orphans';

export function tableChecksum(plan: Plan, ctx: RenderContext, table: PlanTable, withOrphans = false): Sql {
  return { text: checksumSelect(plan, ctx, table, withOrphans) };
}

/**
 * The checksums of several tables in one statement (`UNION ALL`, one row per table, `i` its index in `tables`): on a
 * schema of 120 small tables, a statement per table per side was most of a unit's validation. On live the orphans
 * come as an array, one count per FK in the order of the table's `foreignKeys`.
 */
export function tablesChecksum(plan: Plan, ctx: RenderContext, tables: PlanTable[], withOrphans = false): Sql {
  return {
    text: tables
      .map(
        (table, i) =>
          `SELECT ${i} AS i, ${checksumSelect(plan, ctx, table, withOrphans, true).slice('SELECT '.length)}`,
      )
      .join('\nUNION ALL\n'),
  };
}

function checksumSelect(
  plan: Plan,
  ctx: RenderContext,
  table: PlanTable,
  withOrphans: boolean,
  asArray = false,
): string {
  // Tables with retyped columns (drift) also get `vals`, the checksum without them: the backup's text of a retyped value
  // is not live's (timestamp and timestamptz), though the cast keeps the value.
  const values =
    valueColumns(table).length < table.columns.length
      ? `,\n            coalesce(sum(hashtextextended(${rowText(valueColumns(table), 't')}, 0)), 0)::text AS vals`
      : '';
  const counts = table.foreignKeys.map((fk) => `count(*) FILTER (WHERE ${danglingFk(plan, fk, 't')})`);
  const orphans = !withOrphans
    ? ''
    : asArray
      ? `,\n            ${counts.length ? `ARRAY[${counts.join(', ')}]` : "'{}'"}::bigint[] AS orphans`
      : counts.map((c, i) => `,\n            ${c} AS o${i}`).join('');
  return `SELECT count(*) AS n,
            coalesce(sum(hashtextextended(${rowText(writtenNames(table), 't')}, 0)), 0)::text AS rows,
            coalesce(sum(hashtextextended(${rowText(table.primaryKey, 't')}, 0)), 0)::text AS keys${values}${orphans}
     FROM ${qualify(plan, table.key)} t WHERE ${ownedPredicate(table.key, 't', ctx)}`;
}

/**
 * The backup's rows of one table against live, row by row, after `stageRows` put each backup row's primary key and the
 * md5 of its text (shape `hashed`, computed on scratch in the canonical text settings) into `staging` on live:
 * `missing`, backup keys live lacks; `differing`, backup keys live holds with other values (md5 of live's row text,
 * same settings). Under policy skip these are the rows validation must explain: a row the copy kept (live won) differs
 * legitimately, any other was written by the restore and must be the backup's.
 */
export function backupRowsInLive(plan: Plan, table: PlanTable, staging: string): Sql {
  const first = q(table.primaryKey[0]!);
  return {
    text: `SELECT count(*) FILTER (WHERE t.${first} IS NULL) AS missing,
            count(*) FILTER (WHERE t.${first} IS NOT NULL AND md5(${rowText(valueColumns(table), 't')}) <> s.tr_row) AS differing
     FROM ${staging} s LEFT JOIN ${qualify(plan, table.key)} t ON ${keyMatch(table.primaryKey, 's', 't')}`,
  };
}

/** The columns whose values validation compares under skip: the written ones with the same type in backup and live. */
export function valueColumns(table: PlanTable): string[] {
  return table.columns.filter((c) => !c.backupType).map((c) => c.name);
}
