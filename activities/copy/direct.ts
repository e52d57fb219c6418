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
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { copyFrom, copyTo, type PoolClient } from '../db';
import { isPgError } from '../errors';
import type { Pacer } from '../live-pressure';
import { qualify, type Plan, type PlanForeignKey, type PlanTable } from '../plan';
import type { RenderContext } from '../plan/ownership';
import { danglingReference, externalOrphanCount } from '../sql/orphans';
import { advanceSequenceTo } from '../sql/sequences';
import { copyOut, stagingName } from '../sql/stage';
import { columnList, writtenNames } from '../sql/index';
import { addOutcome, checkAbort, emptyTotals, tooLarge, TooLargeForOneTransaction, type CopyTotals } from './common';
import type { CopyTenantInput } from './index';
import { finishStaged, merge, stage, type StagedTable } from './staged';
import { liveTransaction } from './transaction';

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

/**
 * The fields of a COPY text stream that the direct path reads as the rows pass: one line per row (COPY escapes
 * newlines and tabs inside values), fields separated by tabs, `\N` for NULL. Values are kept in their escaped form:
 * two fields hold the same value exactly when their escaped texts are equal (the same session wrote both). The bytes
 * pass through unchanged.
 */
export class RowTap extends Transform {
  private rest: Buffer | null = null;
  constructor(
    private readonly fields: number[],
    private readonly onRow: (values: Array<string | null>) => void,
  ) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    try {
      let start = 0;
      if (this.rest) {
        const newline = chunk.indexOf(10);
        if (newline < 0) {
          this.rest = Buffer.concat([this.rest, chunk]);
          return done(null, chunk);
        }
        const line = Buffer.concat([this.rest, chunk.subarray(0, newline)]);
        this.rest = null;
        this.line(line, 0, line.length);
        start = newline + 1;
      }
      for (let newline = chunk.indexOf(10, start); newline >= 0; newline = chunk.indexOf(10, start)) {
        this.line(chunk, start, newline);
        start = newline + 1;
      }
      if (start < chunk.length) this.rest = Buffer.from(chunk.subarray(start));
      done(null, chunk);
    } catch (error) {
      done(error as Error);
    }
  }

  override _flush(done: TransformCallback): void {
    done(this.rest?.length ? new Error('COPY stream ended inside a row') : null);
  }

  private line(buffer: Buffer, start: number, end: number): void {
    this.onRow(lineFields(buffer, start, end, this.fields));
  }
}

/**
 * Calls `visit(from, to)` with the span of each field of `fields` (ascending indexes) of the COPY text row in `buffer`
 * from `start` to `end` (its newline, excluded). A row with fewer fields is refused: the next tab would be the next
 * row's.
 */
function eachField(
  buffer: Buffer,
  start: number,
  end: number,
  fields: number[],
  visit: (from: number, to: number) => void,
): void {
  let field = 0;
  let position = start;
  for (const wanted of fields) {
    for (; field < wanted; field++) {
      const tab = buffer.indexOf(9, position);
      if (tab < 0 || tab >= end) throw new Error(`COPY row has fewer fields than expected (${wanted + 1})`);
      position = tab + 1;
    }
    if (position > end) throw new Error(`COPY row has fewer fields than expected (${wanted + 1})`);
    let tab = buffer.indexOf(9, position);
    if (tab < 0 || tab > end) tab = end;
    visit(position, tab);
    field++;
    position = tab + 1;
  }
}

/**
 * The fields `fields` (ascending indexes) of the COPY text row in `buffer` from `start` to `end` (its newline, excluded),
 * in their escaped form, null for `\N`.
 */
export function lineFields(buffer: Buffer, start: number, end: number, fields: number[]): Array<string | null> {
  const values: Array<string | null> = [];
  eachField(buffer, start, end, fields, (from, to) => {
    const isNull = to - from === 2 && buffer[from] === 92 && buffer[from + 1] === 78;
    values.push(isNull ? null : buffer.toString('utf8', from, to));
  });
  return values;
}

/** The COPY text row `line` (with its newline) with the fields `fields` (ascending indexes) set to NULL (`\N`). */
export function withNullFields(line: Buffer, fields: number[]): Buffer {
  const parts: Buffer[] = [];
  let kept = 0;
  eachField(line, 0, line.length - 1, fields, (from, to) => {
    parts.push(line.subarray(kept, from), nullText);
    kept = to;
  });
  parts.push(line.subarray(kept));
  return Buffer.concat(parts);
}

const nullText = Buffer.from('\\N');

/** A value of a COPY text stream as it was before escaping (COPY TO escapes backslash and the control characters). */
export function unescapeCopyText(text: string): string {
  if (!text.includes('\\')) return text;
  const escapes: Record<string, string> = { b: '\b', f: '\f', n: '\n', r: '\r', t: '\t', v: '\v' };
  return text.replace(/\\(.)/gs, (_, c: string) => escapes[c] ?? c);
}

/**
 * What the streams of one transaction said: the keys inserted into each table (for the FKs that reference it), the
 * distinct references of each FK of the tables copied directly, and the largest value of each sequence's column.
 */
class StreamFacts {
  /** keyName(table, columns) → the escaped key tuples this transaction inserted. */
  private readonly inserted = new Map<string, Set<string>>();
  private readonly references: Array<{ table: PlanTable; fk: PlanForeignKey; values: Set<string> }> = [];
  private readonly maxima = new Map<string, bigint>();
  /** The keys (keyName) that some FK of a directly copied table references. */
  private readonly referenced: Set<string>;

  constructor(private readonly plan: Plan) {
    this.referenced = new Set(
      plan.fkEnforcement === 'replica'
        ? plan.tables
            .filter((t) => directEligible(plan, t))
            .flatMap((t) => t.foreignKeys.map((fk) => keyName(fk.to, fk.referencedColumns)))
        : [],
    );
  }

  /** The tap of `table`'s stream, or none when nothing of it is needed. */
  tap(table: PlanTable): RowTap | undefined {
    const names = writtenNames(table);
    const fields: number[] = [];
    const at = (column: string) => {
      const i = names.indexOf(column);
      if (i >= 0 && !fields.includes(i)) fields.push(i);
      return i;
    };
    const written = (columns: string[]) => columns.every((c) => names.includes(c));
    const readers: Array<(value: (field: number) => string | null) => void> = [];
    // A key with a column that is not written is not read off the stream: references to it are probed in live.
    for (const key of this.keysOf(table).filter(written)) {
      const set = new Set<string>();
      this.inserted.set(keyName(table.key, key), set);
      const idx = key.map(at);
      readers.push((value) => {
        const tuple = tupleOf(idx, value);
        if (tuple !== null) set.add(tuple);
      });
    }
    if (this.plan.fkEnforcement === 'replica') {
      for (const fk of table.foreignKeys) {
        const values = new Set<string>();
        this.references.push({ table, fk, values });
        const idx = fk.columns.map(at);
        readers.push((value) => {
          const tuple = tupleOf(idx, value);
          if (tuple !== null) values.add(tuple);
        });
      }
    }
    for (const { column, sequence } of table.sequences.filter((s) => written([s.column]))) {
      const i = at(column);
      readers.push((value) => {
        const v = value(i);
        if (v === null) return;
        let n: bigint;
        try {
          n = BigInt(v);
        } catch {
          throw new DirectCopyRefused(`${table.key}.${column} holds a value that is not an integer (${sequence})`);
        }
        const max = this.maxima.get(sequence);
        if (max === undefined || n > max) this.maxima.set(sequence, n);
      });
    }
    if (!readers.length) return undefined;
    const sorted = [...fields].sort((a, b) => a - b);
    const slot = new Map(sorted.map((f, k) => [f, k]));
    return new RowTap(sorted, (values) => {
      const value = (field: number) => values[slot.get(field)!]!;
      for (const read of readers) read(value);
    });
  }

  /** The key column lists of `table` that a directly copied table's FK references. */
  private keysOf(table: PlanTable): string[][] {
    return [...this.referenced]
      .map((name) => JSON.parse(name) as [string, string[]])
      .filter(([key]) => key === table.key)
      .map(([, columns]) => columns);
  }

  sequenceMaxima(): Array<{ sequence: string; max: string }> {
    return [...this.maxima].map(([sequence, max]) => ({ sequence, max: max.toString() }));
  }

  /** Per FK, the distinct references that are not rows this transaction inserted, unescaped, one array per column. */
  externalReferences(): Array<{ table: PlanTable; fk: PlanForeignKey; values: string[][] }> {
    const out: Array<{ table: PlanTable; fk: PlanForeignKey; values: string[][] }> = [];
    for (const { table, fk, values } of this.references) {
      const inserted = this.inserted.get(keyName(fk.to, fk.referencedColumns));
      const columns: string[][] = fk.columns.map(() => []);
      for (const tuple of values) {
        if (inserted?.has(tuple)) continue;
        tuple.split('\t').forEach((v, k) => columns[k]!.push(unescapeCopyText(v)));
      }
      if (columns[0]!.length) out.push({ table, fk, values: columns });
    }
    return out;
  }
}

/** A referenced key of a table as a map key (JSON: names may hold any character). */
function keyName(table: string, columns: string[]): string {
  return JSON.stringify([table, columns]);
}

/** The escaped values of `fields` joined by tabs (no escaped value holds a tab), or null when one is NULL. */
function tupleOf(fields: number[], value: (field: number) => string | null): string | null {
  if (fields.length === 1) return value(fields[0]!);
  const parts: string[] = [];
  for (const f of fields) {
    const v = value(f);
    if (v === null) return null;
    parts.push(v);
  }
  return parts.join('\t');
}
