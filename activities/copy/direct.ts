/**
 * The direct path: each owned table's rows are piped from scratch straight into the target, `COPY (SELECT ... WHERE
 * <ownership>) TO STDOUT` into `COPY <target> (...) FROM STDIN`, inside the unit's one transaction, with no staging
 * table, no `INSERT ... ON CONFLICT` and no savepoint. COPY only inserts: when it succeeds, live held none of the rows'
 * unique keys, so no other tenant's row shares one and nothing of theirs was touched (I1, the same proof as the staged
 * path's "the insert inserted every staged row"). Any unique or exclusion violation, or a table that refuses a COPY
 * (row-level security), aborts the whole transaction with DirectCopyRefused, and the driver runs the unit again through
 * the staged path, which handles conflicts under the policy. Shared tables keep the staged merge (their parent closure
 * is `ON CONFLICT DO NOTHING`), inside the same transaction.
 *
 * What the merge's statements did is taken from the stream itself, in Node, as the rows pass (RowTap): the keys of the
 * rows inserted into each parent table, the references of each FK, and the largest value of each sequence's column.
 * With FK triggers suspended (replica), a reference to a row this transaction inserted needs no probe and no lock:
 * that row is invisible to every other session until COMMIT, so nobody can delete it first, and after COMMIT
 * PostgreSQL's own FK triggers protect it. Every other reference (shared tables, other tenants, tables outside the
 * plan or copied staged) is probed in live and its parent locked FOR KEY SHARE, one statement per FK, as
 * PostgreSQL's own check would; one that finds nothing aborts with DanglingReferenceError, nothing committed.
 */
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { copyFrom, copyTo, type PoolClient } from '../db';
import { isPgError } from '../errors';
import type { Pacer } from '../live-pressure';
import { qualify, type Plan, type PlanTable } from '../plan';
import type { RenderContext } from '../plan/ownership';
import { danglingReference, externalOrphanCount } from '../sql/orphans';
import { advanceSequenceTo } from '../sql/sequences';
import { copyOut, stagingName } from '../sql/stage';
import { columnList, writtenNames } from '../sql/index';
import { addOutcome, checkAbort, emptyTotals, tooLarge, TooLargeForOneTransaction, type CopyTotals } from './common';
import type { CopyTenantInput } from './index';
import { finishStaged, merge, stage, type StagedTable } from './staged';
import { liveTransaction } from './transaction';
import { RowTap } from './row-tap';
import { StreamFacts } from './stream-facts';
export * from './row-tap';

/**
 * The direct path could not take the unit: live already holds one of its keys (23505, 23P01), or a table refuses a
 * COPY (0A000: row-level security applies to the role). The transaction is rolled back, nothing committed; the driver
 * re-runs the whole unit staged.
 */
export class DirectCopyRefused extends Error {
  override name = 'DirectCopyRefused';
  constructor(readonly reason: string) {
    super(`direct copy refused: ${reason}`);
  }
}

/** How often the direct copy asks the between-statement throttle (LivePressure) whether live is busy. */
const yieldEveryMs = 250;

/** SQLSTATEs that send a unit to the staged path: unique violation, exclusion violation, COPY refused under RLS. */
const stagedOnlyCodes = new Set(['23505', '23P01', '0A000']);

/** An error of the direct transaction (at a COPY or at its COMMIT: a deferred unique key) that the staged path handles. */
export function refusedByDirect(error: unknown): DirectCopyRefused | undefined {
  if (error instanceof DirectCopyRefused) return error;
  if (isPgError(error) && stagedOnlyCodes.has(error.code))
    return new DirectCopyRefused(`${error.code}${error.constraint ? ` on ${error.constraint}` : ''}`);
  return undefined;
}

/**
 * Whether a table can take a direct COPY. Shared tables receive only the parents live lacks (a merge). With FK
 * triggers on (`constraints`), PostgreSQL checks each row at the end of the COPY, so FK columns of a cycle must still
 * go in NULL (null-then-update: staged), and user triggers fire and may change the rows (the staged path's checks
 * cover that). With FK triggers suspended (`replica`), the engine checks every reference before COMMIT, so order
 * inside the transaction does not matter; a FK column that is not written (generated) could not be read off the
 * stream, so such a table goes staged.
 */
export function directEligible(plan: Pick<Plan, 'fkEnforcement'>, table: PlanTable): boolean {
  if (table.role === 'shared') return false;
  if (plan.fkEnforcement === 'constraints') return table.nullThenUpdate.length === 0 && table.userTriggers.length === 0;
  const written = new Set(writtenNames(table));
  return table.foreignKeys.every((fk) => fk.columns.every((c) => written.has(c)));
}

/** The tenants' rows of every table in one transaction: owned tables directly, shared tables staged. */
export async function copyDirect(
  input: CopyTenantInput,
  scratch: PoolClient,
  ctx: RenderContext,
  chunkRows?: number,
): Promise<CopyTotals | typeof tooLarge> {
  const { plan, tenantIds, conflict, signal } = input;
  const totals = emptyTotals(plan);
  try {
    return await liveTransaction(input, async (live, staging) => {
      const seen = new StreamFacts(plan);
      const staged: StagedTable[] = [];
      let yieldedAt = 0;
      for (const [i, table] of plan.tables.entries()) {
        checkAbort(signal);
        // The between-statement throttle probes live before a table, at most every `yieldEveryMs`: on a schema of 121
        // small tables a probe per table was most of the copy's waiting (0.9 s of the wide bench's 4.8 s).
        if (performance.now() - yieldedAt >= yieldEveryMs) {
          await input.yieldToLive?.(live, signal);
          yieldedAt = performance.now();
        }
        const cap = chunkRows === undefined ? undefined : chunkRows + 1;
        if (!directEligible(plan, table)) {
          const name = stagingName(`tr_stage_${i}`, table, { kind: 'rows' });
          const n = await stage(scratch, live, plan, ctx, table, name, { signal, cap, analyze: 'later' });
          if (chunkRows !== undefined && n > chunkRows) throw new TooLargeForOneTransaction();
          const written = table.nullThenUpdate.length && n > 0 ? `tr_written_${i}` : null;
          const outcome = await merge(live, staging, plan, ctx, table, name, n, conflict, tenantIds, written);
          addOutcome(totals, table, outcome);
          staged.push({ table, name, written, allWritten: outcome.written === n });
          continue;
        }
        const n = await copyTable(scratch, live, plan, ctx, table, seen.tap(table), {
          cap,
          signal,
          pacer: input.pacer,
        });
        if (chunkRows !== undefined && n > chunkRows) throw new TooLargeForOneTransaction();
        addOutcome(totals, table, { staged: n, written: n, kept: 0, conflicts: 0 });
      }
      await finishStaged(live, staging, plan, staged, tenantIds, signal);
      for (const { sequence, max } of seen.sequenceMaxima()) await live.query(advanceSequenceTo(sequence, max));
      if (plan.fkEnforcement === 'replica') {
        for (const { table, fk, values } of seen.externalReferences()) {
          checkAbort(signal);
          const { rows } = await live.query<{ n: string }>(externalOrphanCount(plan, table, fk, values));
          const n = Number(rows[0]!.n);
          if (n > 0) throw danglingReference(table.key, [{ constraint: fk.constraint, rows: n }], tenantIds);
        }
      }
      return totals;
    });
  } catch (error) {
    if (error instanceof TooLargeForOneTransaction) return tooLarge;
    throw refusedByDirect(error) ?? error;
  }
}

/** Pipes the tenants' rows of `table` from scratch into the target; returns the rows COPY inserted. */
async function copyTable(
  scratch: PoolClient,
  live: PoolClient,
  plan: Plan,
  ctx: RenderContext,
  table: PlanTable,
  tap: RowTap | undefined,
  options: { cap?: number; signal?: AbortSignal; pacer?: Pacer },
): Promise<number> {
  const source = scratch.query(copyTo(copyOut(plan, ctx, table, { kind: 'rows' }, undefined, options.cap).text));
  const sink = live.query(copyFrom(`COPY ${qualify(plan, table.key)} (${columnList(writtenNames(table))}) FROM STDIN`));
  try {
    // The stream goes through the tap (references read off it) and the pacer (live's latency budget) when there are.
    const through = [tap, options.pacer?.pipe()].filter((t): t is Transform => t !== undefined);
    await pipeline([source, ...through, sink], { signal: options.signal });
  } catch (error) {
    throw refusedByDirect(error) ?? error;
  }
  return sink.rowCount;
}
