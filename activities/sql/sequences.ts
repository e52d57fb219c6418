/**
 * Sequences move forward past the restored ids, never backwards: a concurrent `nextval` of another tenant may be
 * ahead already, and moving it back would hand out an id twice.
 */
import { escapeIdentifier as q } from '../db';
import type { PlanTable } from '../plan';
import type { Sql } from './index';

/**
 * One statement per sequence of the table: `setval` to the largest staged value, only when that is past the
 * sequence's last value. The sequence's name comes from live's catalog, schema-qualified and quoted (plan/catalog.ts):
 * it is read as a relation in FROM, and passed as `$1` to the regclass cast.
 */
export function advanceSequences(table: PlanTable, staging: string): Sql[] {
  return table.sequences.map(({ column, sequence }) => ({
    text: `SELECT setval($1::regclass, x.m, true) FROM (SELECT max(${q(column)})::bigint AS m FROM ${staging}) x, ${sequence} seq
       WHERE x.m IS NOT NULL AND (x.m > seq.last_value OR (x.m = seq.last_value AND NOT seq.is_called))`,
    values: [sequence],
  }));
}

/** `setval` of one sequence to `max` (a restored column's largest value, read off the copy's stream), forward only. */
export function advanceSequenceTo(sequence: string, max: string): Sql {
  return {
    text: `SELECT setval($1::regclass, $2::bigint, true) FROM ${sequence} seq
       WHERE $2::bigint > seq.last_value OR ($2::bigint = seq.last_value AND NOT seq.is_called)`,
    values: [sequence, max],
  };
}
