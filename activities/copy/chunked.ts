/**
 * The chunked path: a tenant too large for one transaction goes in chunks of `chunkRows` rows of one table, by
 * primary-key keyset, one staged transaction each, resumable from a checkpoint that carries counts only.
 */
import type { PoolClient } from '../db';
import { classifyDbError, InvalidCheckpointError, isPgError, RestoreError } from '../errors';
import { chunkUnits, type ChunkUnit, type PlanTable } from '../plan';
import type { RenderContext } from '../plan/ownership';
import { fillChunkRows } from '../sql/merge';
import { advanceSequences } from '../sql/sequences';
import { keysetCursorAt, lastStagedKey, setKeysetCursor, stagingName } from '../sql/stage';
import { addOutcome, checkAbort, emptyTotals, type CopyTotals, type TableOutcome } from './common';
import type { CopyTenantInput } from './index';
import { assertNoOrphans, finishStaged, merge, stage, type Staging, type StagedTable } from './staged';
import { copyUnitDirectInChunks } from './chunked-direct';
import { liveTransaction } from './transaction';

/**
 * Large tenants: chunks of `chunkRows` rows of one table, by primary-key keyset, each its own transaction, through the
 * units of chunkUnits() (plan/index.ts). Every committed chunk satisfies every FK of live: FK columns that
 * reference rows a later chunk brings (a self-reference, a cycle) go in NULL, and the unit's fill pass sets them once
 * every row of the unit is in; a cycle whose forward FK is NOT NULL goes in one transaction. Each transaction is checked
 * before its COMMIT, by the orphan scan (replica) or by PostgreSQL's own FK triggers. A failure says exactly what was
 * committed before it (chunks and rows per table, FK columns still NULL), never "nothing was written" unless true.
 */
export async function copyChunked(
  input: CopyTenantInput,
  scratch: PoolClient,
  ctx: RenderContext,
  chunkRows: number,
  direct = false,
  /** The chunked direct path handed over (from `input.resumeFrom`): what it committed, for a later failure's message. */
  handedOver?: Pick<ChunkRun, 'committed' | 'pendingNull'>,
): Promise<CopyTotals> {
  const { plan, resumeFrom } = input;
  if (
    resumeFrom &&
    (resumeFrom.tableIndex < 0 ||
      resumeFrom.tableIndex > plan.tables.length ||
      (resumeFrom.position !== undefined && !(Number.isInteger(resumeFrom.position) && resumeFrom.position >= 0)))
  ) {
    throw new InvalidCheckpointError(
      `The checkpoint (table ${resumeFrom.tableIndex}, position ${resumeFrom.position ?? 0}) does not fit this plan: start the copy over without a checkpoint.`,
    );
  }
  const run: ChunkRun = {
    input,
    scratch,
    ctx,
    chunkRows,
    totals: emptyTotals(plan, resumeFrom),
    progress: { ...(resumeFrom?.rows ?? {}) },
    committed: new Map(handedOver?.committed ?? []),
    pendingNull: [...(handedOver?.pendingNull ?? [])],
    handedOver: Boolean(handedOver),
  };
  const start = resumeFrom?.tableIndex ?? 0;
  try {
    for (const unit of chunkUnits(plan)) {
      if (unit.end <= start) continue;
      if (unit.mode === 'one-transaction') await copyUnitInOneTransaction(run, unit, start);
      // Shared tables take only the parents live lacks: a merge, staged.
      else if (direct && !resumeFrom && plan.tables.slice(unit.start, unit.end).every((t) => t.role !== 'shared'))
        await copyUnitDirectInChunks(run, unit);
      else await copyUnitInChunks(run, unit, start);
    }
  } catch (error) {
    throw explainCommitted(error, run);
  }
  return run.totals;
}

export interface ChunkRun {
  input: CopyTenantInput;
  scratch: PoolClient;
  ctx: RenderContext;
  chunkRows: number;
  totals: CopyTotals;
  progress: Record<string, number>;
  /** What this call committed, per table, for the message of a later failure. */
  committed: Map<string, { chunks: number; rows: number }>;
  /** `table(columns)` committed NULL whose fill pass has not run yet. */
  pendingNull: string[];
  /** This call began on the chunked direct path, which handed over: `committed` includes its chunks. */
  handedOver?: boolean;
}

function recordCommitted(run: ChunkRun, table: PlanTable, outcome: TableOutcome): void {
  addOutcome(run.totals, table, outcome, true);
  run.progress[table.key] =
    table.role === 'shared' ? (run.progress[table.key] ?? 0) + outcome.written : run.totals.rows[table.key]!;
  if (outcome.staged === 0) return;
  const c = run.committed.get(table.key) ?? { chunks: 0, rows: 0 };
  run.committed.set(table.key, { chunks: c.chunks + 1, rows: c.rows + outcome.written });
}

/**
 * One transaction on live for the chunk of `table` after `lastKey`: staged from scratch, `work` applied, every FK of
 * the chunk's rows checked, committed. Returns what `work` returned, the staged count and the chunk's last key.
 */
async function chunkTransaction<T>(
  run: ChunkRun,
  table: PlanTable,
  lastKey: string[] | undefined,
  work: (live: PoolClient, staging: Staging, name: string, staged: number) => Promise<T>,
): Promise<{ result: T; staged: number; lastKey: string[] | undefined }> {
  const { plan, tenantIds, signal } = run.input;
  checkAbort(signal);
  if (lastKey) await run.scratch.query(setKeysetCursor(lastKey));
  return liveTransaction(run.input, async (live, staging) => {
    await run.input.yieldToLive?.(live, signal);
    const name = stagingName('tr_stage_chunk', table, { kind: 'rows' });
    const staged = await stage(run.scratch, live, plan, run.ctx, table, name, {
      chunk: { limit: run.chunkRows, afterKey: Boolean(lastKey) },
      signal,
      analyze: 'always',
    });
    staging.markAnalyzed(name);
    const result = await work(live, staging, name, staged);
    if (plan.fkEnforcement === 'replica') await assertNoOrphans(live, plan, table, name, tenantIds);
    let next = lastKey;
    if (staged > 0) {
      const { rows } = await live.query<{ key: string[] }>(lastStagedKey(table, name));
      next = rows[0]!.key;
    }
    return { result, staged, lastKey: next };
  });
}

/** Where a resumed copy of `table` goes on: the key of its `position`-th row on scratch (the checkpoint's count). */
async function keysetCursor(run: ChunkRun, table: PlanTable, position: number): Promise<string[]> {
  const { rows } = await run.scratch.query<{ key: string[] }>(keysetCursorAt(run.input.plan, run.ctx, table, position));
  if (!rows[0])
    throw new InvalidCheckpointError(
      `The checkpoint says ${position} rows of ${table.key} were copied, but scratch holds fewer of these tenants: it is not the scratch the copy started from. Start the copy over without a checkpoint.`,
    );
  return rows[0].key;
}

/** A unit in chunks: each table's chunks with the unit's forward/self FK columns NULL, then the fill pass. */
async function copyUnitInChunks(run: ChunkRun, unit: ChunkUnit, start: number): Promise<void> {
  const { plan, tenantIds, conflict, resumeFrom, onCheckpoint } = run.input;
  const fills = Object.keys(unit.deferred).length > 0;
  for (let i = Math.max(unit.start, start); i < unit.end; i++) {
    const table = plan.tables[i]!;
    const nulls = unit.deferred[table.key] ?? [];
    // Rows of this table committed so far, in keyset order: the checkpoint carries this count, never a key.
    let position = i === resumeFrom?.tableIndex ? (resumeFrom.position ?? 0) : 0;
    let lastKey = position > 0 ? await keysetCursor(run, table, position) : undefined;
    for (;;) {
      const chunk = await chunkTransaction(run, table, lastKey, async (live, staging, name, staged) => {
        const outcome = await merge(
          live,
          staging,
          plan,
          run.ctx,
          { ...table, nullThenUpdate: nulls },
          name,
          staged,
          conflict,
          tenantIds,
          null,
        );
        for (const statement of advanceSequences(table, name)) await live.query(statement);
        return outcome;
      });
      lastKey = chunk.lastKey;
      position += chunk.staged;
      recordCommitted(run, table, chunk.result);
      const pending = `${table.key}(${nulls.join(', ')})`;
      if (nulls.length && chunk.staged > 0 && !run.pendingNull.includes(pending)) run.pendingNull.push(pending);
      const done = chunk.staged < run.chunkRows;
      // The unit is done when its fill pass is: until then, a resumed copy must come back into the unit.
      const unitDone = done && !(fills && i === unit.end - 1);
      await onCheckpoint?.(
        unitDone
          ? { tableIndex: i + 1, rows: { ...run.progress } }
          : { tableIndex: i, position, rows: { ...run.progress } },
      );
      if (done) break;
    }
  }
  if (!fills) return;
  // Fill pass: every row of the unit is in live now, so the parents of the NULL columns are there (or the chunk's
  // check says which are not, and that chunk is not committed). Idempotent, so a resumed copy simply runs it again.
  for (let i = unit.start; i < unit.end; i++) {
    const table = plan.tables[i]!;
    const columns = unit.deferred[table.key];
    if (!columns?.length) continue;
    let lastKey: string[] | undefined;
    for (;;) {
      const chunk = await chunkTransaction(
        run,
        table,
        lastKey,
        async (live, _staging, name) => void (await live.query(fillChunkRows(plan, run.ctx, table, columns, name))),
      );
      lastKey = chunk.lastKey;
      if (chunk.staged < run.chunkRows) break;
    }
    run.pendingNull = run.pendingNull.filter((p) => !p.startsWith(`${table.key}(`));
  }
  await onCheckpoint?.({ tableIndex: unit.end, rows: { ...run.progress } });
}

/** A unit whose forward FK is NOT NULL: all its tables' rows of the tenant in one transaction, as an unchunked copy. */
async function copyUnitInOneTransaction(run: ChunkRun, unit: ChunkUnit, start: number): Promise<void> {
  const { plan, tenantIds, conflict, signal, onCheckpoint } = run.input;
  // A checkpoint of an older version may point inside the unit: the unit is redone whole (idempotent), so the rows the
  // checkpoint counted for its first tables are counted again below, not twice.
  for (let i = unit.start; i < Math.min(start, unit.end); i++)
    if (plan.tables[i]!.role !== 'shared') run.totals.rows[plan.tables[i]!.key] = 0;
  const outcomes: Array<[PlanTable, TableOutcome]> = [];
  await liveTransaction(run.input, async (live, staging) => {
    const staged: StagedTable[] = [];
    for (let i = unit.start; i < unit.end; i++) {
      const table = plan.tables[i]!;
      checkAbort(signal);
      await run.input.yieldToLive?.(live, signal);
      const name = stagingName(`tr_stage_${i}`, table, { kind: 'rows' });
      const written = table.nullThenUpdate.length ? `tr_written_${i}` : null;
      const n = await stage(run.scratch, live, plan, run.ctx, table, name, { signal, analyze: 'later' });
      const outcome = await merge(live, staging, plan, run.ctx, table, name, n, conflict, tenantIds, written);
      outcomes.push([table, outcome]);
      staged.push({ table, name, written: n > 0 ? written : null, allWritten: outcome.written === n });
    }
    await finishStaged(live, staging, plan, staged, tenantIds, signal);
  });
  for (const [table, outcome] of outcomes) recordCommitted(run, table, outcome);
  await onCheckpoint?.({ tableIndex: unit.end, rows: { ...run.progress } });
}

/**
 * A chunked copy that fails has usually committed chunks before: the named error's "Nothing was written" would be
 * false. Its message is rewritten to say exactly what this attempt committed, and that no FK of it dangles.
 */
function explainCommitted(caught: unknown, run: ChunkRun): unknown {
  // A database error that will fail again is named here already (as the activity boundary would), so that its message
  // too can say what was committed; a transient one is retried as it is, and resumes from the checkpoint.
  const error = isPgError(caught) ? (classifyDbError(caught) ?? caught) : caught;
  if (!(error instanceof RestoreError)) return error;
  // Rows committed before the checkpoint this call resumed from, by earlier attempts (not by this call's direct chunks).
  const earlier = !run.handedOver && Object.values(run.input.resumeFrom?.rows ?? {}).some((n) => n > 0);
  const chunks = [...run.committed.entries()];
  if (!chunks.length && !earlier) return error;
  const total = chunks.reduce((n, [, c]) => n + c.chunks, 0);
  const what = chunks.length
    ? `${total} chunk(s) were committed before this failure (${chunks.map(([t, c]) => `${t}: ${c.chunks} chunk(s), ${c.rows} row(s) written`).join('; ')})`
    : 'this attempt committed nothing';
  const note =
    `The failing chunk was rolled back, but ${what}${earlier ? ', after what earlier attempts committed up to the checkpoint this one resumed from' : ''}. ` +
    `Every FK of the committed rows holds${run.pendingNull.length ? `; FK column(s) ${run.pendingNull.join(', ')} of committed rows are still NULL, and nothing sets them now (set them from the backup by hand, or a new restore with --allow-partial inserts the missing rows but does not update these)` : ''}. ` +
    // The failure is final for this restore; a restore id is used once, and the committed root row makes the tenant
    // 'partial' for the next restore, which refuses it unless the operator says --allow-partial.
    `Fix the cause, then restore the tenant again with a new restore and --allow-partial (its committed rows make it partial in live): ` +
    `the rows already committed are kept and only the missing ones are inserted.`;
  const claim = /Nothing was (written|committed)[^.]*\./;
  error.message = claim.test(error.message) ? error.message.replace(claim, note) : `${error.message} ${note}`;
  (error.details as Record<string, unknown>).committed = Object.fromEntries(chunks);
  return error;
}
