/**
 * The chunked direct path: a tenant too large for one transaction, with FK triggers suspended (replica). Each table is
 * read from scratch ONCE, by one `COPY (SELECT ... WHERE <ownership> ORDER BY <primary key>) TO STDOUT`, and Node cuts
 * the stream into chunks of `chunkRows` rows at row boundaries. Each chunk goes by `COPY <target> FROM STDIN` into live
 * in a transaction of its own, checked and committed before the next chunk is read: the scratch stream waits
 * meanwhile (backpressure), so no chunk is ever held in Node. The staged chunked path (chunked.ts) re-evaluates the
 * ownership predicate and re-sorts the tenant's slice for every chunk, stages every row, inserts it again, and sets
 * the deferred FK columns of every row in a second pass over the whole table.
 *
 * No chunk commits an orphan:
 * - a reference to a row of the same chunk needs nothing: the transaction inserted it, and nobody else can see it;
 * - every other reference (earlier chunks, earlier tables, shared tables, other tenants) is probed in live and its
 *   parent locked FOR KEY SHARE before COMMIT, one statement per FK and chunk;
 * - a reference to a row that a later chunk may bring goes in NULL and is set once the unit's tables are all in, by
 *   key (the fill): every FK column to a later table of the unit's cycle, and a self-reference whose key sorts after
 *   the row's own. Rows come in key order, so a smaller key is committed already or in this chunk. In data whose
 *   replies come after their parents, nothing goes in NULL. A row with one such column in NULL has all its deferred
 *   columns in NULL (an earlier self-reference too): the staged fill pass of a resumed or handed-over copy sets a row's
 *   deferred columns only where all of them are NULL in live.
 *
 * The fill's pairs (key, value) are kept in Node, up to `pendingFillLimit`. Past that limit, or when a key has several
 * columns, the copy hands over to the staged chunked path, whose fill pass sets the columns from scratch.
 *
 * A checkpoint after every chunk carries the rows committed of the table (its position in key order), never a key. A
 * resumed copy goes through the staged chunked path, whose fill pass sets the columns left NULL from scratch. A chunk
 * that meets a key already in live (DirectCopyRefused), like a fill kept out of Node, hands over with the last
 * checkpoint (HandOver): the driver goes on from there on the staged chunked path, nothing of the chunk committed.
 */
import { once } from 'node:events';
import type { Writable } from 'node:stream';
import { copyFrom, copyTo } from '../db';
import { qualify, type ChunkUnit, type Plan, type PlanForeignKey } from '../plan';
import { ownedPredicate } from '../plan/ownership';
import type { CopyCheckpoint } from '../restore-types';
import { columnList, writtenNames } from '../sql/index';
import { danglingReference, externalOrphanCount } from '../sql/orphans';
import { advanceSequenceTo } from '../sql/sequences';
import type { ChunkRun } from './chunked';
import { checkAbort } from './common';
import { DirectCopyRefused, lineFields, refusedByDirect, unescapeCopyText, withNullFields } from './direct';
import { liveTransaction } from './transaction';
import { LineReader, linesPerRead } from './line-reader';
import { Fill, FkRule, hasFill, pendingFillLimit, runFill } from './chunk-fills';

/**
 * The chunked direct path stops and the staged chunked path goes on from `checkpoint` (none: nothing committed yet).
 * Nothing of the chunk that met the reason was committed.
 */
export class HandOver extends Error {
  override name = 'HandOver';
  /** What the direct chunks committed, and the columns they left NULL: the staged path's failure message says it. */
  run?: Pick<ChunkRun, 'committed' | 'pendingNull'>;
  constructor(
    readonly reason: string,
    readonly checkpoint: CopyCheckpoint | undefined,
  ) {
    super(`chunked direct copy handed over to the staged path: ${reason}`);
  }
}

/** Whether a chunked copy of this plan can go direct: FK triggers suspended, every FK column written. */
export function chunkedDirectEligible(plan: Plan): boolean {
  if (plan.fkEnforcement !== 'replica') return false;
  return plan.tables.every((t) => {
    const written = new Set(writtenNames(t));
    return t.foreignKeys.every((fk) => fk.columns.every((c) => written.has(c)));
  });
}

/** How keys of a column of this type sort in PostgreSQL, when Node can tell from their text; else undefined. */
export function keyOrder(type: string): ((a: string, b: string) => number) | undefined {
  if (/^(smallint|integer|bigint)$/.test(type))
    return (a, b) => {
      const x = BigInt(a);
      const y = BigInt(b);
      return x < y ? -1 : x > y ? 1 : 0;
    };
  // uuid's text is lowercase hex, in the byte order PostgreSQL compares.
  if (type === 'uuid') return (a, b) => (a < b ? -1 : a > b ? 1 : 0);
  return undefined;
}

/** The last checkpoint this path wrote, to hand over from. */
const lastCheckpoint = new WeakMap<ChunkRun, CopyCheckpoint>();

async function checkpoint(run: ChunkRun, c: CopyCheckpoint): Promise<void> {
  lastCheckpoint.set(run, c);
  await run.input.onCheckpoint?.(c);
}

/** A unit of chunkUnits() in mode `chunks`, every table direct, then the fill of the columns that went in NULL. */
export async function copyUnitDirectInChunks(run: ChunkRun, unit: ChunkUnit): Promise<void> {
  try {
    const fills: Fill[] = [];
    for (let i = unit.start; i < unit.end; i++) fills.push(...(await copyTableInChunks(run, unit, i, fills)));
    for (const fill of fills) await runFill(run, fill);
    run.pendingNull = [];
    if (hasFill(unit)) await checkpoint(run, { tableIndex: unit.end, rows: { ...run.progress } });
  } catch (error) {
    const refused = refusedByDirect(error);
    const handOver =
      error instanceof HandOver ? error : refused ? new HandOver(refused.reason, lastCheckpoint.get(run)) : undefined;
    if (!handOver) throw error;
    handOver.run = { committed: run.committed, pendingNull: run.pendingNull };
    throw handOver;
  }
}

/**
 * Copies table `i` in chunks, direct. Returns the fills of the FK columns it wrote NULL. `fills` (the unit's so far)
 * counts toward pendingFillLimit.
 */
async function copyTableInChunks(run: ChunkRun, unit: ChunkUnit, i: number, fills: Fill[]): Promise<Fill[]> {
  const { plan, tenantIds, signal } = run.input;
  const table = plan.tables[i]!;
  const names = writtenNames(table);
  const fieldOf = (c: string) => names.indexOf(c);
  const pk = table.primaryKey.map(fieldOf);
  const pkType =
    table.primaryKey.length === 1 ? table.columns.find((c) => c.name === table.primaryKey[0])?.type : undefined;
  const order = pkType ? keyOrder(pkType) : undefined;
  const deferredColumns = unit.deferred[table.key] ?? [];
  const byKey = (fk: PlanForeignKey) =>
    fk.to === table.key && fk.referencedColumns.join('\0') === table.primaryKey.join('\0');
  const rules: FkRule[] = table.foreignKeys.map((fk) => {
    const deferred = fk.columns.every((c) => deferredColumns.includes(c));
    const mode = !deferred ? 'probe' : byKey(fk) && order && pk.length === 1 ? 'row-level' : 'null';
    return { fk, fields: fk.columns.map(fieldOf), mode, local: byKey(fk), pairs: mode === 'probe' ? null : [] };
  });
  for (const r of rules)
    if (r.mode !== 'probe' && (r.fk.columns.length !== 1 || pk.length !== 1))
      // A composite key or reference is set by the staged fill pass, from scratch.
      throw new HandOver(
        `${table.key}.${r.fk.constraint} would go in NULL over a composite key`,
        lastCheckpoint.get(run),
      );
  const sequences = table.sequences.filter((s) => fieldOf(s.column) >= 0);
  const wanted = [
    ...new Set([...pk, ...rules.flatMap((r) => r.fields), ...sequences.map((s) => fieldOf(s.column))]),
  ].sort((a, b) => a - b);
  const slot = new Map(wanted.map((f, k) => [f, k]));
  let pending = fills.reduce((n, f) => n + f.pairs.length, 0);
  let position = 0;

  const source = run.scratch.query(
    copyTo(
      `COPY (SELECT ${columnList(names, 't')} FROM ${qualify(plan, table.key)} t WHERE ${ownedPredicate(table.key, 't', run.ctx)} ORDER BY ${columnList(table.primaryKey, 't')}) TO STDOUT`,
    ),
  );
  const reader = new LineReader(source[Symbol.asyncIterator]() as AsyncIterator<Buffer>);
  try {
    for (;;) {
      checkAbort(signal);
      const copied = await liveTransaction(run.input, async (live) => {
        await run.input.yieldToLive?.(live, signal);
        let lines = await reader.next(Math.min(run.chunkRows, linesPerRead));
        if (!lines.length) return 0;
        const sink = live.query(
          copyFrom(`COPY ${qualify(plan, table.key)} (${columnList(names)}) FROM STDIN`),
        ) as unknown as Writable & { rowCount: number };
        const finished = once(sink, 'finish');
        // Live may refuse the COPY (a key it holds) while rows are still being written: then the wait for 'drain' or
        // for the next lines fails, and `finished` rejects with nobody awaiting it yet.
        finished.catch(() => undefined);
        // Live's refusal of the COPY (a key it holds), whenever it comes: the stream has no connection left then, so
        // neither a write nor destroy() (a CopyFail) may follow it; the copy stops with it, before any other write.
        let refusal: Error | undefined;
        sink.on('error', (e: Error) => (refusal ??= e));
        const keys = new Set<string>();
        const refs = rules.map(() => new Set<string>());
        const maxima = new Map<string, bigint>();
        let n = 0;
        try {
          while (lines.length) {
            const out: Buffer[] = [];
            for (const line of lines) {
              const v = lineFields(line, 0, line.length - 1, wanted);
              const value = (f: number) => v[slot.get(f)!]!;
              const key = pk.length === 1 ? value(pk[0]!) : pk.map(value).join('\t');
              if (key !== null) keys.add(key);
              let nulled: number[] | undefined;
              /** The row's deferred (row-level) references that sort before its key and go in as they are. */
              let kept: Array<[FkRule, string]> | undefined;
              const defer = (r: FkRule, v: string) => {
                (nulled ??= []).push(...r.fields);
                if (++pending > pendingFillLimit)
                  throw new HandOver(
                    `more than ${pendingFillLimit} FK values to set after the chunks`,
                    lastCheckpoint.get(run),
                  );
                r.pairs!.push([key!, v]);
              };
              rules.forEach((r, k) => {
                const parts = r.fields.map(value);
                if (parts.some((p) => p === null)) return;
                if (r.mode === 'probe' || (r.mode === 'row-level' && order!(parts[0]!, key!) <= 0)) {
                  refs[k]!.add(parts.join('\t'));
                  if (r.mode === 'row-level') (kept ??= []).push([r, parts[0]!]);
                  return;
                }
                defer(r, parts[0]!);
              });
              // A row's deferred columns go in NULL all together or not at all: the staged fill pass (a resumed or
              // handed-over copy) sets a row's deferred columns only where every one of them is NULL in live.
              if (nulled && kept) for (const [r, v] of kept) defer(r, v);
              out.push(
                nulled
                  ? withNullFields(
                      line,
                      [...new Set(nulled)].sort((a, b) => a - b),
                    )
                  : line,
              );
              for (const s of sequences) {
                const x = value(fieldOf(s.column));
                if (x === null) continue;
                let big: bigint;
                try {
                  big = BigInt(x);
                } catch {
                  throw new DirectCopyRefused(`${table.key}.${s.column} holds a value that is not an integer`);
                }
                const m = maxima.get(s.sequence);
                if (m === undefined || big > m) maxima.set(s.sequence, big);
              }
            }
            n += lines.length;
            const bytes = out.length === 1 ? out[0]! : Buffer.concat(out);
            await run.input.pacer?.pace(bytes.length);
            if (refusal) throw refusal;
            if (!sink.write(bytes)) await once(sink, 'drain');
            if (n >= run.chunkRows) break;
            lines = await reader.next(Math.min(run.chunkRows - n, linesPerRead));
          }
          if (refusal) throw refusal;
          sink.end();
          await finished;
        } catch (error) {
          // A failure of this side (the lines read, a check in Node) ends the COPY with a CopyFail.
          if (!refusal) sink.destroy();
          const cause = refusal ?? error;
          throw refusedByDirect(cause) ?? cause;
        }
        for (const [sequence, max] of maxima) await live.query(advanceSequenceTo(sequence, max.toString()));
        for (const [k, r] of rules.entries()) {
          checkAbort(signal);
          const columns: string[][] = r.fk.columns.map(() => []);
          for (const tuple of refs[k]!) {
            if (r.local && keys.has(tuple)) continue;
            tuple.split('\t').forEach((x, c) => columns[c]!.push(unescapeCopyText(x)));
          }
          if (!columns[0]!.length) continue;
          const { rows } = await live.query<{ n: string }>(externalOrphanCount(plan, table, r.fk, columns));
          const orphans = Number(rows[0]!.n);
          if (orphans > 0)
            throw danglingReference(table.key, [{ constraint: r.fk.constraint, rows: orphans }], tenantIds);
        }
        return n;
      });
      if (copied > 0) {
        position += copied;
        run.totals.rows[table.key] = (run.totals.rows[table.key] ?? 0) + copied;
        run.progress[table.key] = run.totals.rows[table.key]!;
        const c = run.committed.get(table.key) ?? { chunks: 0, rows: 0 };
        run.committed.set(table.key, { chunks: c.chunks + 1, rows: c.rows + copied });
        const nulls = rules.filter((r) => r.pairs?.length).flatMap((r) => r.fk.columns);
        const pendingName = `${table.key}(${nulls.join(', ')})`;
        if (nulls.length) {
          run.pendingNull = run.pendingNull.filter((p) => !p.startsWith(`${table.key}(`));
          run.pendingNull.push(pendingName);
        }
      }
      const done = copied < run.chunkRows;
      // While the unit has columns to fill, a checkpoint stays inside the unit: a resumed copy comes back to fill them.
      await checkpoint(
        run,
        done && !(hasFill(unit) && i === unit.end - 1)
          ? { tableIndex: i + 1, rows: { ...run.progress } }
          : { tableIndex: i, position, rows: { ...run.progress } },
      );
      if (done) break;
    }
  } finally {
    await reader.close().catch(() => undefined);
  }
  return rules.filter((r) => r.pairs?.length).map((r) => ({ table, fk: r.fk, pairs: r.pairs! }));
}
