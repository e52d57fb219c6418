/**
 * pg_restore into an owned scratch in passes (pre-data; tables made UNLOGGED where PostgreSQL allows; data and
 * post-data in parallel; FK constraints NOT VALID), with the catalog reads those passes need, and what a scratch holds
 * now (its sentinel and the size of each table).
 */
import { log } from '@temporalio/activity';
import { writeFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { libpqTarget, type DatabaseRef, type PoolClient, type Pools } from '../db';
import { sentinelSchema, sentinelState } from '../scratch-alive';
import { runTool } from '../tools';
import type { ScratchContents } from './owned-database';

/** FK statements from pg_restore's script, turned into NOT VALID where Postgres allows it. */
export function splitStatements(script: string): string[] {
  return (
    script
      .split(/;\s*\n/)
      // Comments, and psql meta-commands: pg_restore 15.14+ wraps its script in \restrict/\unrestrict (CVE-2025-8714),
      // which the server would read as a syntax error at the start of the first statement.
      .map((s) =>
        s
          .split('\n')
          .filter((line) => !line.startsWith('--') && !line.startsWith('\\'))
          .join('\n')
          .trim(),
      )
      .filter((s) => s.length > 0)
  );
}

/** A table of scratch after pre-data, as tablesToUnlog needs it. */
export interface ScratchTable {
  /** `schema.table`, quoted where needed. */
  key: string;
  /** `r` an ordinary table or a partition, `p` a partitioned table (no storage of its own). */
  kind: 'r' | 'p';
  /** `p` permanent, `u` unlogged (already so in the backup). */
  persistence: string;
  /** A member of an extension: left as its extension made it. */
  extension: boolean;
}

/**
 * Which tables to make UNLOGGED, and which stay logged and why. PostgreSQL refuses an FK of a permanent table that
 * references an unlogged one (checked on the constraint itself, not on the partitions it is cloned to), and a
 * partitioned table cannot be made unlogged (PostgreSQL 15: SET UNLOGGED on it changes nothing). So every ordinary
 * table is made unlogged except an extension's and those an FK of a table that stays permanent references, and so on
 * (such a table's own FKs keep their targets permanent too). `edges` are the FK constraints, `from` the referencing
 * table, as declared (not their clones on partitions). Partitions are ordinary tables: made unlogged like any other.
 */
export function tablesToUnlog(
  tables: ScratchTable[],
  edges: Array<{ from: string; to: string }>,
): { unlog: string[]; logged: Array<{ table: string; why: string }> } {
  const permanent = new Map<string, string>();
  for (const t of tables) {
    if (t.kind === 'p') permanent.set(t.key, 'partitioned');
    else if (t.extension && t.persistence === 'p') permanent.set(t.key, 'belongs to an extension');
  }
  const candidates = new Set(tables.filter((t) => t.kind === 'r' && t.persistence === 'p').map((t) => t.key));
  for (let changed = true; changed;) {
    changed = false;
    for (const { from, to } of edges) {
      if (permanent.has(from) && candidates.has(to) && !permanent.has(to)) {
        permanent.set(to, `referenced by an FK of ${from}, which stays logged`);
        changed = true;
      }
    }
  }
  const unlog = [...candidates].filter((t) => !permanent.has(t)).sort();
  const logged = [...candidates]
    .filter((t) => permanent.has(t))
    .sort()
    .map((table) => ({ table, why: permanent.get(table)! }));
  return { unlog, logged };
}

/** Schemas that hold no table of the backup. */
const userSchemas = `n.nspname NOT IN ('pg_catalog', 'information_schema', '${sentinelSchema}') AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'`;
const tableKey = (c: string, n: string) => `quote_ident(${n}.nspname) || '.' || quote_ident(${c}.relname)`;

/** The backup's tables after pre-data (tablesToUnlog). */
const scratchTablesSql = `
  SELECT ${tableKey('c', 'n')} AS key, c.relkind AS kind, c.relpersistence AS persistence,
         EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e') AS extension
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE c.relkind IN ('r', 'p') AND ${userSchemas}`;

/** An identifier as pg_dump writes it: quoted (a `""` inside is one `"`), or bare. */
const identifier = String.raw`(?:"(?:[^"]|"")*"|[A-Za-z_\u0080-\uffff][\w$\u0080-\uffff]*)`;
const qualifiedName = `${identifier}(?:\\.${identifier})?`;
const fkHead = new RegExp(
  `^ALTER\\s+TABLE\\s+(?:ONLY\\s+)?(${qualifiedName})\\s+ADD\\s+CONSTRAINT\\s+${identifier}\\s+FOREIGN\\s+KEY\\s*\\(`,
  'i',
);
const fkTarget = new RegExp(`^\\s*REFERENCES\\s+(${qualifiedName})\\s*\\(`, 'i');

/**
 * The referencing and the referenced table of an FK statement as pg_restore writes it (`ALTER TABLE [ONLY] a.t ADD
 * CONSTRAINT c FOREIGN KEY (cols) REFERENCES b.u(cols) ...`), names as written; undefined for anything else. The column
 * list is skipped with its quoted names, whatever they hold.
 */
export function foreignKeyTables(statement: string): { from: string; to: string } | undefined {
  const head = fkHead.exec(statement.trim());
  if (!head) return undefined;
  const rest = statement.trim().slice(head[0].length);
  let quoted = false;
  for (let i = 0; i < rest.length; i++) {
    if (rest[i] === '"') quoted = !quoted;
    else if (rest[i] === ')' && !quoted) {
      const target = fkTarget.exec(rest.slice(i + 1));
      return target ? { from: head[1]!, to: target[1]! } : undefined;
    }
  }
  return undefined;
}

/** Names as pg_restore writes them, resolved to scratch's tables, keyed as scratchTablesSql keys them. */
const resolveTablesSql = `
  SELECT name, (SELECT ${tableKey('c', 'n')} FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE c.oid = to_regclass(name)) AS key
  FROM unnest($1::text[]) AS name`;

/**
 * Every ordinary table of scratch (partitions included) with its size, and its rows as ANALYZE counted them: at least
 * 1 when it has pages, so that "held rows" and "had pages" agree whatever ANALYZE estimated.
 */
export const scratchTableSizesSql = `
  SELECT ${tableKey('c', 'n')} AS key, pg_relation_size(c.oid) AS bytes,
         greatest(ceil(greatest(c.reltuples, 0)), CASE WHEN pg_relation_size(c.oid) > 0 THEN 1 ELSE 0 END)::bigint AS rows
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE c.relkind = 'r' AND ${userSchemas}`;

/** How a load went, pass by pass (logged; durations in ms). */
export interface LoadPasses {
  preDataMs: number;
  unloggedMs: number;
  mainMs: number;
  foreignKeysMs: number;
  /** Tables made UNLOGGED. */
  unlogged: number;
  /** Tables left logged, and why. */
  logged: Array<{ table: string; why: string }>;
}

/**
 * pg_restore into `ref`, in passes: pre-data (schemas, types, functions, empty tables); then, when `unlogged`, every
 * table PostgreSQL allows is made UNLOGGED, while it is empty and no FK exists yet (tablesToUnlog); then data and
 * post-data together in parallel (`-j`: a table's indexes are built as soon as its rows are in), all but FK
 * constraints; then FK constraints, NOT VALID.
 */
export async function restoreArchive(
  pools: Pools,
  file: string,
  dir: string,
  ref: DatabaseRef,
  signal: AbortSignal,
  unlogged: boolean,
): Promise<LoadPasses> {
  const { url, env } = libpqTarget(ref);
  const passes: LoadPasses = { preDataMs: 0, unloggedMs: 0, mainMs: 0, foreignKeysMs: 0, unlogged: 0, logged: [] };
  // Only ever pg_restore, and only of a file whose header prepareScratch has read as a custom-format archive.
  const toc = await runTool('pg_restore', ['-l', file], env, signal, true);
  const lines = toc.split('\n');
  const isFk = (line: string) => / FK CONSTRAINT /.test(line) && !line.startsWith(';');
  const mainList = join(dir, 'main.list');
  const fkList = join(dir, 'fk.list');
  await writeFile(mainList, lines.map((l) => (isFk(l) ? `;${l}` : l)).join('\n'));
  const fkLines = lines.filter(isFk);
  let fkStatements: string[] = [];
  if (fkLines.length) {
    await writeFile(fkList, fkLines.join('\n'));
    const script = await runTool(
      'pg_restore',
      ['--no-owner', '--no-privileges', '-L', fkList, '-f', '-', file],
      env,
      signal,
      true,
    );
    fkStatements = splitStatements(script);
  }
  // No publications: scratch is never replicated, and PostgreSQL refuses unlogged tables in one.
  const common = ['--no-owner', '--no-privileges', '--no-publications', '--exit-on-error', '-L', mainList, '-d', url];
  let t0 = Date.now();
  await runTool('pg_restore', [...common, '--section=pre-data', file], env, signal);
  passes.preDataMs = Date.now() - t0;

  const client = await pools.get(ref, { max: 2 }).connect();
  let broken = false;
  try {
    if (unlogged) {
      t0 = Date.now();
      const { rows: tables } = await client.query<ScratchTable>(scratchTablesSql);
      // Which table an FK will reference is read off the archive's FK statements (made only after the data), when
      // some table stays permanent whatever happens (a partitioned one, an extension's): what it references must too.
      const mayStayLogged = tables.some((t) => t.kind === 'p' || (t.extension && t.persistence === 'p'));
      const edges = mayStayLogged ? await foreignKeyEdges(client, fkStatements) : [];
      const { unlog, logged } = edges
        ? tablesToUnlog(tables, edges)
        : { unlog: [], logged: [{ table: '*', why: 'an FK statement of the archive could not be read' }] };
      // In batches: one transaction per batch, so that thousands of tables do not fill the lock table.
      for (let i = 0; i < unlog.length; i += 200) {
        await client.query(
          unlog
            .slice(i, i + 200)
            .map((t) => `ALTER TABLE ${t} SET UNLOGGED`)
            .join('; '),
        );
      }
      passes.unlogged = unlog.length;
      passes.logged = logged;
      passes.unloggedMs = Date.now() - t0;
    }

    t0 = Date.now();
    const jobs = Math.max(1, Math.min(availableParallelism(), 4));
    await runTool(
      'pg_restore',
      [...common, '--section=data', '--section=post-data', '-j', String(jobs), file],
      env,
      signal,
    );
    passes.mainMs = Date.now() - t0;

    t0 = Date.now();
    for (const statement of fkStatements) {
      if (!/FOREIGN KEY/i.test(statement)) {
        await client.query(statement);
        continue;
      }
      try {
        // NOT VALID skips the full-table check scratch does not need; partitioned tables refuse it (PG15).
        await client.query(`${statement} NOT VALID`);
      } catch {
        await client.query(statement);
      }
    }
    passes.foreignKeysMs = Date.now() - t0;
    return passes;
  } catch (error) {
    broken = true;
    throw error;
  } finally {
    client.release(broken);
  }
}

/**
 * The FK constraints of `statements` as `{ from, to }`, keyed as scratch's tables are: read off the statements (the
 * FKs cannot be made yet: the keys they reference come in post-data), resolved in scratch's catalog. Undefined when
 * one of them cannot be read or resolved: then no table can be known safe to make unlogged.
 */
async function foreignKeyEdges(
  client: PoolClient,
  statements: string[],
): Promise<Array<{ from: string; to: string }> | undefined> {
  const named: Array<{ from: string; to: string }> = [];
  for (const statement of statements.filter((s) => /FOREIGN\s+KEY/i.test(s))) {
    const edge = foreignKeyTables(statement);
    if (!edge) {
      log.warn('scratch stays logged: an FK statement of the archive was not understood', {
        statement: statement.slice(0, 200),
      });
      return undefined;
    }
    named.push(edge);
  }
  const names = [...new Set(named.flatMap((e) => [e.from, e.to]))];
  const { rows } = await client.query<{ name: string; key: string | null }>(resolveTablesSql, [names]);
  const keys = new Map(rows.map((r) => [r.name, r.key]));
  const edges = named.map((e) => ({ from: keys.get(e.from), to: keys.get(e.to) }));
  if (edges.some((e) => !e.from || !e.to)) {
    log.warn('scratch stays logged: a table an FK statement of the archive names was not found', {
      tables: names.filter((n) => !keys.get(n)).slice(0, 10),
    });
    return undefined;
  }
  return edges as Array<{ from: string; to: string }>;
}

/** What a scratch holds now (scratchOwnership): its sentinel and the size of each table. */
export async function contentsOf(pools: Pools, ref: DatabaseRef): Promise<ScratchContents> {
  try {
    const pool = pools.get(ref, { max: 1 });
    const sentinel = await sentinelState(pool);
    const { rows } = await pool.query<{ key: string; bytes: string }>(scratchTableSizesSql);
    return { sentinel, bytes: Object.fromEntries(rows.map((r) => [r.key, Number(r.bytes)])) };
  } finally {
    await pools.close(ref);
  }
}
