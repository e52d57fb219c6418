/**
 * What the streams of one direct transaction said, checked before its COMMIT.
 */
import { type Plan, type PlanForeignKey, type PlanTable } from '../plan';
import { writtenNames } from '../sql/index';
import { RowTap, unescapeCopyText } from './row-tap';
import { DirectCopyRefused, directEligible } from './direct';

/**
 * What the streams of one transaction said: the keys inserted into each table (for the FKs that reference it), the
 * distinct references of each FK of the tables copied directly, and the largest value of each sequence's column.
 */
export class StreamFacts {
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
