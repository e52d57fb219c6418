/**
 * The checksum of a tenant's rows of one table, computed in SQL on scratch and on live alike (validate.ts): the row
 * count, and order-independent digests, the sum of a 64-bit hash of each row's text (`hashtextextended(ROW(...)::text,
 * 0)`), summed by sum(bigint), whose result is numeric, so that it cannot overflow. A sum does not depend on the order rows are read in, so no sort
 * is needed on either side. Both sessions must be in the canonical text settings (session.ts) for the same row to give
 * the same text on both servers. `rows` covers whole rows; `keys` only the primary key (policy skip keeps live's
 * content of existing rows, so only the keys must match there). On live, `withOrphans` adds in the same pass, per FK of
 * the table, the rows whose reference finds no parent (`o0`, `o1`, ... in the order of `table.foreignKeys`): one read of
 * the tenant's rows gives the table's whole evidence.
 */
import { qualify, type Plan, type PlanTable } from '../plan';
import { ownedPredicate, type RenderContext } from '../plan/ownership';
import { rowText, writtenNames, type Sql } from './index';
import { danglingFk } from './orphans';

export function tableChecksum(plan: Plan, ctx: RenderContext, table: PlanTable, withOrphans = false): Sql {
  const orphans = withOrphans
    ? table.foreignKeys
        .map((fk, i) => `,\n            count(*) FILTER (WHERE ${danglingFk(plan, fk, 't')}) AS o${i}`)
        .join('')
    : '';
  return {
    text: `SELECT count(*) AS n,
            coalesce(sum(hashtextextended(${rowText(writtenNames(table), 't')}, 0)), 0)::text AS rows,
            coalesce(sum(hashtextextended(${rowText(table.primaryKey, 't')}, 0)), 0)::text AS keys${orphans}
     FROM ${qualify(plan, table.key)} t WHERE ${ownedPredicate(table.key, 't', ctx)}`,
  };
}
