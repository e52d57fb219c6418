/**
 * The FK columns the chunked direct path wrote NULL, set afterwards by key (the fills), and how each FK of a table is
 * checked in a chunk.
 */
import { escapeIdentifier as q } from '../db';
import { qualify, type ChunkUnit, type Plan, type PlanForeignKey, type PlanTable } from '../plan';
import { type Sql } from '../sql/index';
import { danglingReference, externalOrphanCount } from '../sql/orphans';
import type { ChunkRun } from './chunked';
import { checkAbort } from './common';
import { unescapeCopyText } from './direct';
import { liveTransaction } from './transaction';

/** Pairs (key, value) of columns left NULL kept in Node for the fill; past it, the staged fill reads scratch again. */
export const pendingFillLimit = 2_000_000;
/** Pairs set per fill transaction. */
const fillBatch = 50_000;

export interface Fill {
  table: PlanTable;
  fk: PlanForeignKey;
  pairs: Array<[string, string]>;
}

/** How each FK of a table is checked in a chunk. */
export interface FkRule {
  fk: PlanForeignKey;
  fields: number[];
  /**
   * probe: every reference not in this chunk is probed (`local`: a self-reference by the primary key, whose values in
   * this chunk need nothing); row-level: a self-reference whose later keys go in NULL and earlier ones are probed as
   * `local`; null: every reference goes in NULL (a later table of the cycle).
   */
  mode: 'probe' | 'row-level' | 'null';
  local: boolean;
  pairs: Array<[string, string]> | null;
}

/**
 * Sets the FK column `fill.fk` of the rows that went in NULL, by key, in transactions of `fillBatch` rows: only where
 * live still holds NULL (a row its users changed since is left alone), every value probed in live and its parent
 * locked FOR KEY SHARE before COMMIT, as any other reference.
 */
export async function runFill(run: ChunkRun, fill: Fill): Promise<void> {
  const { plan, tenantIds, signal } = run.input;
  for (let at = 0; at < fill.pairs.length; at += fillBatch) {
    checkAbort(signal);
    const batch = fill.pairs.slice(at, at + fillBatch);
    await liveTransaction(run.input, async (live) => {
      await run.input.yieldToLive?.(live, signal);
      const keys = batch.map(([k]) => unescapeCopyText(k));
      const values = batch.map(([, v]) => unescapeCopyText(v));
      await live.query(fillByKey(plan, fill.table, fill.fk, keys, values));
      const { rows } = await live.query<{ n: string }>(
        externalOrphanCount(plan, fill.table, fill.fk, [[...new Set(values)]]),
      );
      const orphans = Number(rows[0]!.n);
      if (orphans > 0)
        throw danglingReference(fill.table.key, [{ constraint: fill.fk.constraint, rows: orphans }], tenantIds);
    });
  }
}

/** `UPDATE ... SET fk = value` for the keys given, where live still holds NULL. */
function fillByKey(plan: Plan, table: PlanTable, fk: PlanForeignKey, keys: string[], values: string[]): Sql {
  const types = new Map(table.columns.map((c) => [c.name, c.type]));
  const key = table.primaryKey[0]!;
  const column = fk.columns[0]!;
  return {
    text: `UPDATE ${qualify(plan, table.key)} t SET ${q(column)} = v.value::${types.get(column)}
     FROM unnest($1::text[], $2::text[]) AS v(key, value)
     WHERE t.${q(key)} = v.key::${types.get(key)} AND t.${q(column)} IS NULL`,
    values: [keys, values],
  };
}

export function hasFill(unit: ChunkUnit): boolean {
  return Object.keys(unit.deferred).length > 0;
}
