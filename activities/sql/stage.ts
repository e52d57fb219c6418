/**
 * Staging: a tenant's rows (or only their keys and a hash of each row) go from scratch into a temporary table of the
 * live session by `COPY ... TO STDOUT` piped into `COPY ... FROM STDIN`, never through Node arrays. Staging tables are
 * temporary, emptied at COMMIT (a rolled-back transaction takes its rows with it): nothing is ever written to a live
 * table here.
 *
 * COPY takes no parameters: the tenant ids come from the session setting (session.ts), the keyset cursor of a chunk
 * from another setting set with a `$1` parameter (setKeysetCursor).
 */
import { createHash } from 'node:crypto';
import { pipeline } from 'node:stream/promises';
import { copyFrom, copyTo, escapeIdentifier as q, type PoolClient } from '../db';
import { qualify, type Plan, type PlanTable } from '../plan';
import { ownedPredicate, type RenderContext } from '../plan/ownership';
import { columnList, keyAsText, rowText, writtenNames, type Sql } from './index';

/** The keyset cursor of a chunked copy: the last primary key of the previous chunk, as text[]. */
const keysetSetting = 'tenant_restore.after_key';

/**
 * What is staged of each row: `rows`, the written columns (the copy); `keys`, the given key columns alone (a tenant's
 * primary keys, to find what live lacks); `hashed`, the key columns and an md5 of the whole row in `tr_row` (preflight
 * compares keys and content across servers without moving the rows).
 */
export type StagedShape =
  | { kind: 'rows' }
  | { kind: 'keys'; columns: string[] }
  /** `hashColumns`: the md5 covers these columns only (default every written column; validation leaves retyped ones out). */
  | { kind: 'hashed'; columns: string[]; hashColumns?: string[] };

function stagedColumns(table: PlanTable, shape: StagedShape): string[] {
  return shape.kind === 'rows' ? writtenNames(table) : shape.columns;
}

/**
 * The name of a staging table: the caller's base name (unique within its transaction) and a digest of what it holds
 * (table, columns and their types, shape), so that a session's staging table is only ever reused for the same shape.
 */
export function stagingName(base: string, table: PlanTable, shape: StagedShape): string {
  const types = new Map(table.columns.map((c) => [c.name, c.type]));
  const columns = stagedColumns(table, shape).map((c) => `${c}:${types.get(c) ?? '?'}`);
  const digest = createHash('md5')
    .update(JSON.stringify([table.key, shape.kind, columns]))
    .digest('hex')
    .slice(0, 12);
  return `${base}_${digest}`;
}

/**
 * Staging takes live's column types (`WITH NO DATA` from the target), so a retyped column (drift) is parsed by live's
 * input function. A staging table lives as long as its session (a pooled connection), emptied at every COMMIT (`ON
 * COMMIT DELETE ROWS`; a rolled-back transaction's rows are gone with it): creating a temporary table costs ~3 ms of
 * catalog work in a restore session, which on a schema of 120 tables was 40% of a unit's copy. Its name carries the
 * digest of its shape (stagingName), so `IF NOT EXISTS` never finds one of another shape.
 */
export function createStaging(plan: Plan, table: PlanTable, name: string, shape: StagedShape): Sql {
  const hash = shape.kind === 'hashed' ? `, ''::text AS tr_row` : '';
  return {
    text: `CREATE TEMP TABLE IF NOT EXISTS ${name} ON COMMIT DELETE ROWS AS SELECT ${columnList(stagedColumns(table, shape))}${hash} FROM ${qualify(plan, table.key)} WITH NO DATA`,
  };
}

/**
 * The tenant's rows of `table` on scratch. A chunk (`limit`) is taken in primary-key order after the keyset cursor, so
 * that consecutive chunks cover the table exactly once.
 */
export function copyOut(
  plan: Plan,
  ctx: RenderContext,
  table: PlanTable,
  shape: StagedShape,
  chunk?: { limit: number; afterKey: boolean },
  cap?: number,
): Sql {
  const columns = stagedColumns(table, shape);
  const hash = shape.kind === 'hashed' ? `, md5(${rowText(shape.hashColumns ?? writtenNames(table), 't')})` : '';
  const where = [ownedPredicate(table.key, 't', ctx)];
  if (chunk?.afterKey) where.push(keysetAfter(table, 't'));
  const tail = chunk
    ? ` ORDER BY ${columnList(table.primaryKey, 't')} LIMIT ${Math.floor(chunk.limit)}`
    : cap
      ? ` LIMIT ${Math.floor(cap)}`
      : '';
  return {
    text: `COPY (SELECT ${columnList(columns, 't')}${hash} FROM ${qualify(plan, table.key)} t WHERE ${where.join(' AND ')}${tail}) TO STDOUT`,
  };
}

export function copyIn(table: PlanTable, name: string, shape: StagedShape): Sql {
  return {
    text: `COPY ${name} (${columnList(stagedColumns(table, shape))}${shape.kind === 'hashed' ? ', tr_row' : ''}) FROM STDIN`,
  };
}

/**
 * A temp table has no statistics until analyzed, so PostgreSQL guesses its size and joins it to the target with a
 * hash join over the whole target table (measured: ~300 ms per table for a tenant of 900 rows against 1.4M live
 * rows). Analyzed, the join is a nested loop over the target's unique index. ANALYZE samples at most 30k rows, so
 * it stays cheap for very large tenants too.
 */
export function analyzeStaging(name: string): Sql {
  return { text: `ANALYZE ${name}` };
}

/** `(t.x, t.y) > ((cursor)[1]::int, ...)`: the rows after the keyset cursor, each bound cast to its column's type. */
function keysetAfter(table: PlanTable, alias: string): string {
  const types = new Map(table.columns.map((c) => [c.name, c.type]));
  const bound = table.primaryKey.map(
    (c, i) => `(current_setting('${keysetSetting}')::text[])[${i + 1}]::${types.get(c)}`,
  );
  return `(${columnList(table.primaryKey, alias)}) > (${bound.join(', ')})`;
}

/**
 * The primary key of the tenant's `position`-th row of `table` on scratch, in the keyset order of the chunks (as text[]):
 * where a resumed chunked copy goes on. The checkpoint carries only the count (no key values in history); scratch is
 * only ever read, so the count names the same row on every attempt. One scan of `position` rows, once per resume.
 */
export function keysetCursorAt(plan: Plan, ctx: RenderContext, table: PlanTable, position: number): Sql {
  const key = `ARRAY[${table.primaryKey.map((c) => `t.${q(c)}::text`).join(', ')}]`;
  return {
    text: `SELECT ${key} AS key FROM ${qualify(plan, table.key)} t WHERE ${ownedPredicate(table.key, 't', ctx)} ORDER BY ${columnList(table.primaryKey, 't')} OFFSET $1 LIMIT 1`,
    values: [Math.floor(position) - 1],
  };
}

/** Sets the keyset cursor for the scratch session's next chunk (transaction-local). */
export function setKeysetCursor(lastKey: string[]): Sql {
  return { text: `SELECT set_config('${keysetSetting}', $1::text[]::text, true)`, values: [lastKey] };
}

/** The largest primary key of a staged chunk: the cursor after it. */
export function lastStagedKey(table: PlanTable, name: string): Sql {
  return {
    text: `SELECT ${keyAsText(table.primaryKey)} AS key FROM ${name} ORDER BY ${table.primaryKey.map((c) => `${q(c)} DESC`).join(', ')} LIMIT 1`,
  };
}

/**
 * Creates the staging table `name` on live and streams the tenant's rows of `table` into it from scratch (stream.pipeline:
 * no row is held in Node). Returns the staged row count; the table is analyzed when `analyze` says so.
 */
export async function stageRows(
  scratch: PoolClient,
  live: PoolClient,
  plan: Plan,
  ctx: RenderContext,
  table: PlanTable,
  name: string,
  shape: StagedShape,
  options: {
    chunk?: { limit: number; afterKey: boolean };
    /** At most this many rows, in no particular order (a copy that finds more goes in chunks instead). */
    cap?: number;
    signal?: AbortSignal;
    /** `later`: the caller analyzes it if and when a statement joins it to a big table (copy.ts). */
    analyze: 'always' | 'when-rows' | 'later';
  },
): Promise<number> {
  await live.query(createStaging(plan, table, name, shape));
  const source = scratch.query(copyTo(copyOut(plan, ctx, table, shape, options.chunk, options.cap).text));
  const sink = live.query(copyFrom(copyIn(table, name, shape).text));
  await pipeline(source, sink, { signal: options.signal });
  if (options.analyze === 'always' || (options.analyze === 'when-rows' && sink.rowCount > 0))
    await live.query(analyzeStaging(name));
  return sink.rowCount;
}
