/**
 * The merge: one set-based `INSERT ... SELECT FROM staging ON CONFLICT` per table under the conflict policy, and the
 * statements around it (the policy's conflicts counted first, the inserted keys tracked, FK columns inserted NULL set
 * afterwards). Never DELETE or TRUNCATE on live (DESIGN.md I2).
 */
import { escapeIdentifier as q } from '../db';
import { ConflictPolicyError } from '../errors';
import { qualify, type Plan, type PlanTable } from '../plan';
import { otherOwnerPredicate, type RenderContext } from '../plan/ownership';
import type { ConflictPolicy, TenantId } from '../restore-types';
import { columnList, keyAsText, keyMatch, rowText, writtenNames, type Sql } from './index';
import type { StagedContent } from './cross-tenant';

/** This transaction's id as `xid` (a row's xmin), on every supported PostgreSQL (pg_current_xact_id is 13+). */
const currentXid = '(txid_current() % 4294967296)::text::xid';

/**
 * Same-tenant keys already in live with other content: the policy's conflicts. An identical row is already restored
 * (a rerun or a resumed chunk) and is left as it is under every policy. Over whole staged rows, the columns inserted
 * NULL (null-then-update) are left out of the comparison: live holds them NULL until the fill.
 */
export function conflictCount(plan: Plan, table: PlanTable, staging: string, content: StagedContent): Sql {
  const target = qualify(plan, table.key);
  if (content === 'hashed') {
    return {
      text: `SELECT count(*) AS n FROM ${staging} s JOIN ${target} t ON ${keyMatch(table.primaryKey, 's', 't')} WHERE md5(${rowText(writtenNames(table), 't')}) <> s.tr_row`,
    };
  }
  const compared = writtenNames(table).filter((c) => !table.nullThenUpdate.includes(c));
  // Counted after the insert (skip, fail), a row this transaction inserted is not live's own: the xmin test leaves it
  // out, even when a trigger that fires in any session (ENABLE ALWAYS) changed it on insert. Validation counts on this
  // number (the rows kept, which may differ from the backup), so such a row must show there as a difference.
  return {
    text: `SELECT count(*) AS n FROM ${staging} s WHERE EXISTS (SELECT 1 FROM ${target} t WHERE ${keyMatch(table.primaryKey, 's', 't')} AND ${rowText(compared, 't')} IS DISTINCT FROM ${rowText(compared, 's')} AND NOT t.xmin = ${currentXid})`,
  };
}

/** The one refusal of policy `fail`: rows of the tenants that live holds with other content. */
export function conflictPolicyRefusal(table: string, n: number, tenantIds: TenantId[]): ConflictPolicyError {
  return new ConflictPolicyError(
    `${n} row(s) of ${table} of tenant(s) ${tenantIds.join(', ')} already exist in live with other content, and the conflict policy is 'fail'. ` +
      `Nothing was written. Rerun with --conflict skip (keep live's rows) or --conflict overwrite (take the backup's), or inspect the tenant first.`,
    { table, rows: n, tenantIds },
  );
}

/**
 * Staging into the target. Shared tables and policies skip/fail: `ON CONFLICT DO NOTHING` (live always wins; a shared
 * table only receives the parents it lacks). Overwrite: `DO UPDATE` whose WHERE repeats the ownership test on the row
 * being replaced, so that a row of another tenant is never overwritten, even one that changed hands after the
 * cross-tenant check, and an identical row is not rewritten. Columns inserted NULL (`nullThenUpdate`) are set later.
 * `OVERRIDING SYSTEM VALUE` keeps the backup's ids in a GENERATED ALWAYS identity column.
 */
export function insertStaged(
  plan: Plan,
  ctx: RenderContext,
  table: PlanTable,
  staging: string,
  policy: ConflictPolicy,
): Sql {
  const target = qualify(plan, table.key);
  const names = writtenNames(table);
  const overriding = table.overridingSystemValue ? ' OVERRIDING SYSTEM VALUE' : '';
  const selectList = names.map((c) => (table.nullThenUpdate.includes(c) ? 'NULL' : `s.${q(c)}`)).join(', ');
  if (table.role === 'shared' || policy !== 'overwrite') {
    return {
      text: `INSERT INTO ${target} (${columnList(names)})${overriding} SELECT ${selectList} FROM ${staging} s ON CONFLICT DO NOTHING`,
    };
  }
  const nonKey = names.filter((c) => !table.primaryKey.includes(c));
  const set = nonKey.length
    ? nonKey.map((c) => `${q(c)} = EXCLUDED.${q(c)}`).join(', ')
    : `${q(table.primaryKey[0]!)} = EXCLUDED.${q(table.primaryKey[0]!)}`;
  return {
    text: `INSERT INTO ${target} AS t (${columnList(names)})${overriding} SELECT ${selectList} FROM ${staging} s
      ON CONFLICT (${columnList(table.primaryKey)}) DO UPDATE SET ${set}
      WHERE NOT ${otherOwnerPredicate(table.key, 't', ctx)} AND ${rowText(names, 't')} IS DISTINCT FROM ${rowText(names, 'EXCLUDED')}`,
  };
}

/** An empty table of the target's primary-key columns, for the keys a merge inserts. */
export function createWrittenKeys(plan: Plan, table: PlanTable, name: string): Sql {
  return {
    text: `CREATE TEMP TABLE ${name} ON COMMIT DROP AS SELECT ${columnList(table.primaryKey)} FROM ${qualify(plan, table.key)} WITH NO DATA`,
  };
}

/** The insert, with the primary keys of the rows it inserted (or overwrote) kept in `written` (createWrittenKeys). */
export function insertTracked(insert: Sql, table: PlanTable, written: string): Sql {
  return {
    text: `WITH w AS (${insert.text} RETURNING ${columnList(table.primaryKey)}) INSERT INTO ${written} SELECT * FROM w`,
    values: insert.values,
  };
}

/** The tracked keys as text, in key order, at most `limit` (a partial tenant's report lists them). */
export function writtenKeys(table: PlanTable, written: string, limit: number): Sql {
  return {
    text: `SELECT ${keyAsText(table.primaryKey)} AS key FROM ${written} ORDER BY ${columnList(table.primaryKey)} LIMIT ${Math.floor(limit)}`,
  };
}

/**
 * Cycle strategy null-then-update, in one transaction: once every table of the tenant is in, the FK columns inserted
 * NULL are set from staging, on the rows this merge wrote (`written`) and no others.
 */
export function fillWrittenRows(plan: Plan, table: PlanTable, staging: string, written: string): Sql {
  const set = table.nullThenUpdate.map((c) => `${q(c)} = s.${q(c)}`).join(', ');
  return {
    text: `UPDATE ${qualify(plan, table.key)} t SET ${set} FROM ${staging} s JOIN ${written} w ON ${keyMatch(table.primaryKey, 's', 'w')}
     WHERE ${keyMatch(table.primaryKey, 't', 's')}`,
  };
}

/**
 * The fill pass of a chunked copy, chunk by chunk after every chunk of the unit committed: sets the FK columns inserted
 * NULL, from the backup, on the rows this copy wrote: live's columns all NULL, the rest of the row equal to the backup's
 * (a row that live kept under skip, with other content, is left alone), and no other tenant owning it. Idempotent.
 */
export function fillChunkRows(
  plan: Plan,
  ctx: RenderContext,
  table: PlanTable,
  columns: string[],
  staging: string,
): Sql {
  const rest = writtenNames(table).filter((c) => !columns.includes(c));
  return {
    text: `UPDATE ${qualify(plan, table.key)} t SET ${columns.map((c) => `${q(c)} = s.${q(c)}`).join(', ')} FROM ${staging} s
     WHERE ${keyMatch(table.primaryKey, 't', 's')} AND ${columns.map((c) => `t.${q(c)} IS NULL`).join(' AND ')}
       AND NOT (${columns.map((c) => `s.${q(c)} IS NULL`).join(' AND ')})
       AND ${rowText(rest, 't')} = ${rowText(rest, 's')} AND NOT ${otherOwnerPredicate(table.key, 't', ctx)}`,
  };
}
