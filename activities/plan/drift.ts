/**
 * Schema drift between the backup (scratch) and live, per table. The restore writes live's shape:
 * - a column only in live is left out of the insert, so it gets its default (an error if it is NOT NULL without one);
 * - a column only in the backup is dropped, and reported;
 * - a column whose type changed is written through a cast to live's type; when no cast exists, SchemaDriftError;
 * - generated columns are never written: live computes them.
 */
import type { Pool } from '../db';
import { SchemaDriftError } from '../errors';
import type { CatalogTable } from './catalog';

export interface WrittenColumn {
  name: string;
  /** live's type; staging uses it, so the COPY text of the backup is parsed by live's input function. */
  type: string;
  /** The backup's type, when it differs. */
  backupType?: string;
}

export interface TableDrift {
  table: string;
  /** Only in live: they get live's default. */
  defaulted: string[];
  /** Only in the backup: not restored. */
  dropped: string[];
  /** Type differs, a cast exists. */
  retyped: Array<{ column: string; backup: string; live: string }>;
  /** What a restore would refuse (recorded only when tolerated: discover). */
  problems?: string[];
}

export type Castable = (from: string, to: string) => boolean;

export function diffTable(
  backup: CatalogTable,
  live: CatalogTable,
  castable: Castable,
  /** Record what a restore would refuse (discover), instead of throwing SchemaDriftError. */
  tolerate = false,
): { written: WrittenColumn[]; drift: TableDrift } {
  const drift: TableDrift = { table: live.key, defaulted: [], dropped: [], retyped: [] };
  const written: WrittenColumn[] = [];
  const problems: string[] = [];
  for (const col of live.columns) {
    if (col.generated) continue;
    const source = backup.columns.find((c) => c.name === col.name);
    if (!source || source.generated) {
      if (col.notNull && col.default === null && col.identity === '') {
        problems.push(
          `${live.key}.${col.name} exists only in live, is NOT NULL and has no default: give it a default in live (ALTER TABLE ... ALTER COLUMN ... SET DEFAULT ...), then plan again`,
        );
      }
      drift.defaulted.push(col.name);
      continue;
    }
    if (source.type !== col.type) {
      if (!castable(source.type, col.type)) {
        problems.push(
          `${live.key}.${col.name} is ${source.type} in the backup but ${col.type} in live, and PostgreSQL has no cast between them: add a cast or restore from a backup with live's schema`,
        );
        continue;
      }
      drift.retyped.push({ column: col.name, backup: source.type, live: col.type });
      written.push({ name: col.name, type: col.type, backupType: source.type });
    } else {
      written.push({ name: col.name, type: col.type });
    }
  }
  for (const col of backup.columns) {
    if (!col.generated && !live.columns.some((c) => c.name === col.name)) drift.dropped.push(col.name);
  }
  if (problems.length && tolerate) drift.problems = problems;
  else if (problems.length)
    throw new SchemaDriftError(`Schema drift between backup and live:\n  - ${problems.join('\n  - ')}`, {
      table: live.key,
      problems,
    });
  return { written, drift };
}

/**
 * Asks live which (backup type, live type) pairs can be converted: an explicit cast in pg_cast, the same base type
 * (a typmod change), or a string target (any text is accepted). Rows travel as COPY text, so this is the question.
 */
export async function castabilityOf(live: Pool, pairs: Array<[string, string]>): Promise<Castable> {
  const unique = [...new Map(pairs.map((p) => [p.join('\u0000'), p])).values()];
  const ok = new Set<string>();
  if (unique.length) {
    const { rows } = await live.query<{ s: string; t: string; ok: boolean }>(
      `SELECT p.s, p.t,
              coalesce(src.oid = dst.oid
                OR EXISTS (SELECT 1 FROM pg_cast c WHERE c.castsource = src.oid AND c.casttarget = dst.oid)
                OR EXISTS (SELECT 1 FROM pg_type t WHERE t.oid = dst.oid AND t.typcategory = 'S'), false) AS ok
       FROM unnest($1::text[], $2::text[]) AS p(s, t)
       LEFT JOIN pg_type src ON src.oid = to_regtype(p.s)
       LEFT JOIN pg_type dst ON dst.oid = to_regtype(p.t)`,
      [unique.map((p) => p[0]), unique.map((p) => p[1])],
    );
    for (const r of rows) if (r.ok) ok.add(`${r.s}\u0000${r.t}`);
  }
  return (from, to) => from === to || ok.has(`${from}\u0000${to}`);
}
