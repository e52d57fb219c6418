/**
 * Does scratch still hold what was loaded into it? A scratch loaded by prepareScratch has UNLOGGED tables
 * (activities/scratch/dump.ts): no WAL for the load, but PostgreSQL resets every unlogged relation to empty during crash
 * recovery (after a crash, a kill or an immediate shutdown; a clean shutdown keeps them). An emptied scratch must never
 * be read as the backup: every tenant would look "not in the backup", every validation would compare live with nothing.
 *
 * So the load's very last step sets a sentinel: an UNLOGGED sequence, `tenant_restore_scratch.loaded`, set to 1.
 * Crash recovery resets it together with the tables, to its initial state, never called (`pg_sequence_last_value` is
 * then NULL). A sequence, not a table, so that the plan, which reads the backup's tables from the catalog, never sees it.
 *
 * `assertScratchAlive` is the cheap check for a step that reads scratch: one catalog lookup by name and one read of the
 * sequence's single tuple, inside the step's own snapshot session. A database without the sentinel (a `--scratch <url>`
 * the operator restored, a point-in-time scratch, a scratch loaded before scratches were unlogged) is logged, so it
 * cannot be reset: it passes.
 */
import type { PoolClient } from './db';
import { ScratchResetError } from './errors';

/** The sentinel's schema and name in every scratch that prepareScratch loads UNLOGGED. Constants, not input. */
export const sentinelSchema = 'tenant_restore_scratch';
export const sentinelName = 'loaded';

/** Set by the load's last step (`reset` after crash recovery; `absent` in a database that was not loaded unlogged). */
export type SentinelState = 'set' | 'reset' | 'absent';

/** The sentinel, created and set: the last statements of a load, run on scratch after ANALYZE. */
export const setSentinelSql = [
  `CREATE SCHEMA IF NOT EXISTS ${sentinelSchema}`,
  `CREATE UNLOGGED SEQUENCE ${sentinelSchema}.${sentinelName}`,
  `SELECT pg_catalog.setval('${sentinelSchema}.${sentinelName}', 1, true)`,
].join('; ');

/**
 * One row when the sentinel exists (`alive`: it was set and not reset since), none otherwise. The name is looked up in
 * the catalog, not written into the query as a relation, so that a database without it reads no error.
 */
export const sentinelStateSql = `
  SELECT pg_catalog.pg_sequence_last_value(c.oid) IS NOT NULL AS alive
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  WHERE n.nspname = '${sentinelSchema}' AND c.relname = '${sentinelName}' AND c.relkind = 'S'`;

export async function sentinelState(client: Pick<PoolClient, 'query'>): Promise<SentinelState> {
  const { rows } = await client.query<{ alive: boolean }>(sentinelStateSql);
  if (rows.length === 0) return 'absent';
  return rows[0]!.alive ? 'set' : 'reset';
}

export const scratchResetMessage =
  'Scratch was emptied after it was loaded: its tables are UNLOGGED, and its server went through crash recovery since (a crash, a kill or an immediate shutdown), which empties unlogged tables. Nothing was read from it as the backup, and this step wrote nothing to live. Scratch must be loaded again from the backup (prepareScratch rebuilds it: its sentinel was reset), then this step runs again.';

/**
 * Throws ScratchResetError when scratch was loaded unlogged and crash recovery has emptied it since. Call it on the
 * scratch session a step reads from, inside its snapshot, before the first read of the backup's rows.
 */
export async function assertScratchAlive(client: Pick<PoolClient, 'query'>): Promise<void> {
  if ((await sentinelState(client)) === 'reset')
    throw new ScratchResetError(scratchResetMessage, { sentinel: `${sentinelSchema}.${sentinelName}` });
}
