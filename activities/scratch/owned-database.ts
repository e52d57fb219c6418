/**
 * Databases tenant-restore owns on a scratch server (scratches of restores, discovers and drills): their names, the
 * marker each carries (a COMMENT ON DATABASE, JSON, naming its kind and id), how a marker decides between reuse,
 * rebuild and refusal, and inspecting one before it is touched. A database whose marker does not name the caller is
 * never dropped.
 */
import { ApplicationFailure } from '@temporalio/common';
import { createHash } from 'node:crypto';
import { escapeIdentifier, escapeLiteral, withDatabase, type DatabaseRef, type Pools } from '../db';
import type { SentinelState } from '../scratch-alive';
import { scratchKinds, type ScratchKind } from '../input-contract';

export { scratchKinds, type ScratchKind };

/**
 * `<base>_<readable prefix>_<12 hex of sha256(<kind>:<exact id>)>`, at most 63 bytes (Postgres' identifier limit). The
 * prefix is only for people reading `\l`; the hash makes the name that kind's and that id's own: `Incident-4711` and
 * `incident.4711` sanitize to the same prefix but never share a database, nor do `restore:inc-42` and `discover:inc-42`.
 */
export function ownedDatabaseName(base: string, kind: string, id: string, readable: string = id): string {
  const hash = createHash('sha256').update(`${kind}:${id}`, 'utf8').digest('hex').slice(0, 12);
  const prefix = readable
    .toLowerCase()
    .replace(/[^a-z0-9_]/g, '_')
    .slice(0, 63 - base.length - 2 - hash.length);
  return `${base}_${prefix}_${hash}`;
}

/**
 * A scratch's name: `scratch_<id>_<hash>` for a restore's and a drill's (a drill's restore id reads `drill-...`),
 * `scratch_discover_<id>_<hash>` for a discover's; the hash is of `<kind>:<id>`.
 */
export function scratchDatabaseName(id: string, kind: ScratchKind = 'restore'): string {
  return ownedDatabaseName('scratch', kind, id, kind === 'discover' ? `discover_${id}` : id);
}

/** The activity input's kind, checked: a worker takes no scratch kind it does not know (nor none at all). */
export function scratchKindOf(input: { kind?: unknown }): ScratchKind {
  if (typeof input.kind === 'string' && (scratchKinds as readonly string[]).includes(input.kind))
    return input.kind as ScratchKind;
  throw ApplicationFailure.nonRetryable(
    `The scratch kind ${JSON.stringify(input.kind ?? null)} is not one of ${scratchKinds.join(', ')}: the scratch's name and marker depend on it.`,
    'InvalidInput',
  );
}

/** Another database on the server of `ref`, still without a password: a URL gets a new path, an alias becomes `alias/db`. */
export function databaseOnServer(ref: DatabaseRef, database: string): DatabaseRef {
  if (/^postgres(ql)?:\/\//.test(ref)) return withDatabase(ref, database);
  const alias = ref.split('/')[0];
  return `${alias}/${database}`;
}

/**
 * The COMMENT ON DATABASE of a scratch. `kind` and `restoreId` say whose it is; `state` says whether pg_restore finished.
 * Markers written before scratches belonged to one restore have neither field: they name no restore, so they are
 * never reused nor dropped by a restore.
 */
export interface ScratchMarker {
  tool: 'tenant-restore';
  /** Whose: a restore's, a discover's or a drill's scratch (markers of 0.1.0 have none; no scratch of it was kept). */
  kind?: ScratchKind;
  restoreId?: string;
  state?: 'loading' | 'loaded';
  backup: string;
  size?: number;
  sha256?: string;
  createdAt?: string;
  loadedAt?: string;
  /**
   * Written with `loaded`: the rows of each table (`schema.table`, quoted where needed) when the load finished, as
   * ANALYZE counted them (exact up to its sample of 30,000 rows, an estimate above; at least 1 for a table with pages).
   * Only whether a count is above 0 is relied on: such a table must still have pages for scratch to be reused. A
   * `loaded` marker without it (written before scratches were unlogged) is not reused: it is loaded again.
   */
  rows?: Record<string, number>;
  /**
   * The tables were made UNLOGGED where PostgreSQL allows it, and the sentinel was set last: reuse requires it still set.
   * False on a server without unlogged sequences (before PostgreSQL 15), where scratch stays logged.
   */
  unlogged?: boolean;
}

/** What a scratch holds now, read before it is reused: its sentinel, and the size in bytes of each of its tables. */
export interface ScratchContents {
  sentinel: SentinelState;
  bytes: Record<string, number>;
}

/** A database comment read as a marker: null when it is absent, not JSON, or not tenant-restore's. */
export function parseScratchMarker(comment: string | null | undefined): ScratchMarker | null {
  if (!comment) return null;
  try {
    const marker = JSON.parse(comment) as ScratchMarker;
    return marker && typeof marker === 'object' && marker.tool === 'tenant-restore' ? marker : null;
  } catch {
    return null;
  }
}

/**
 * What prepareScratch may do with the database that has this restore's scratch name ("this restore": this kind and id):
 * - `absent`: create it;
 * - `reuse`: its `loaded` marker names this restore, this archive and its checksum, and what it holds now (`contents`)
 *   is still what was loaded (scratchEmptied: its sentinel is set, and every table that held rows has pages);
 * - `rebuild`: its marker names this restore, but a load that did not finish, another archive, a marker without row
 *   counts, or a scratch emptied since (crash recovery empties unlogged tables): drop and load again;
 * - `foreign`: anything else (another restore's marker, a discover's or a drill's of the same id, an old marker that
 *   names no restore or no kind, no marker at all): never
 *   dropped. (An unmarked database that holds nothing at all is `rebuild`: a crash between CREATE DATABASE and its
 *   first COMMENT leaves exactly that, and dropping an empty database loses nothing.)
 */
export function scratchOwnership(
  existing:
    { exists: false } | { exists: true; marker: ScratchMarker | null; empty: boolean; contents?: ScratchContents },
  want: { kind: ScratchKind; restoreId: string; backup: string; size?: number; sha256?: string },
): 'absent' | 'reuse' | 'rebuild' | 'foreign' {
  if (!existing.exists) return 'absent';
  const { marker } = existing;
  if (!marker) return existing.empty ? 'rebuild' : 'foreign';
  if (!markerNames(marker, want.kind, want.restoreId)) return 'foreign';
  const loaded =
    marker.state === 'loaded' &&
    marker.backup === want.backup &&
    !!marker.sha256 &&
    (want.size === undefined || marker.size === want.size) &&
    (!want.sha256 || marker.sha256 === want.sha256);
  return loaded && scratchEmptied(marker, existing.contents) === undefined ? 'reuse' : 'rebuild';
}

/**
 * Why a scratch whose marker says `loaded` does not hold what was loaded, or undefined when it does: its contents were
 * not read, its marker has no row counts, its sentinel was reset or is gone (crash recovery), or a table that held rows
 * has no pages or is gone. The reason names at most a few tables.
 */
export function scratchEmptied(marker: ScratchMarker, contents: ScratchContents | undefined): string | undefined {
  if (!marker.rows) return 'its marker has no row counts (loaded by an earlier release)';
  if (!contents) return 'what it holds was not read';
  if (marker.unlogged && contents.sentinel !== 'set')
    return contents.sentinel === 'reset'
      ? 'its sentinel was reset: its server went through crash recovery, which empties unlogged tables'
      : 'its sentinel is gone';
  const emptied = Object.entries(marker.rows)
    .filter(([table, rows]) => rows > 0 && !(contents.bytes[table]! > 0))
    .map(([table, rows]) => `${table} (${rows} rows when loaded, ${table in contents.bytes ? 'empty now' : 'gone'})`);
  if (emptied.length === 0) return undefined;
  const more = emptied.length > 3 ? ` and ${emptied.length - 3} more` : '';
  return `tables that held rows are empty: ${emptied.slice(0, 3).join(', ')}${more}`;
}

/** Does this marker name this kind and id? Both must match: a marker without a kind names nobody's scratch now. */
export function markerNames(marker: ScratchMarker | null | undefined, kind: ScratchKind, id: string): boolean {
  return !!marker && marker.kind === kind && marker.restoreId === id;
}

/** Whose a marker says the database is, for messages: `the scratch of discover 'inc-42'`. */
export function markerOwner(marker: ScratchMarker | null): string {
  if (!marker) return 'not a tenant-restore scratch (no marker)';
  if (!marker.restoreId) return 'a scratch whose marker names no restore (made by an older tenant-restore)';
  return `the scratch of ${marker.kind ?? 'restore'} '${marker.restoreId}'${marker.kind ? '' : ' (made by an older tenant-restore: its marker names no kind)'}`;
}

// ---------------------------------------------------------------------------------------------------------------
// what the backup is: sniffed from its first bytes, never executed

/**
 * The database named `name` on `server`, with its comment read as a marker by `parse`, or `{ exists: false }`. An
 * unmarked one is looked into: only an empty database (a crash right after CREATE DATABASE, before its COMMENT) may be
 * taken for the caller's own. Scratches and drill databases both use it.
 */
export async function inspectDatabase<M>(
  pools: Pools,
  server: DatabaseRef,
  name: string,
  parse: (comment: string | null) => M | null,
): Promise<{ exists: false } | { exists: true; comment: string | null; marker: M | null; empty: boolean }> {
  const { rows } = await pools
    .get(server)
    .query<{ comment: string | null }>(
      `SELECT shobj_description(oid, 'pg_database') AS comment FROM pg_database WHERE datname = $1`,
      [name],
    );
  if (rows.length === 0) return { exists: false };
  const { comment } = rows[0];
  const marker = parse(comment);
  if (marker) return { exists: true, comment, marker, empty: false };
  const ref = databaseOnServer(server, name);
  try {
    const { rows: objects } = await pools.get(ref, { max: 1 }).query<{ n: string }>(`
      SELECT count(*) AS n FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'`);
    return { exists: true, comment, marker: null, empty: Number(objects[0].n) === 0 };
  } catch {
    return { exists: true, comment, marker: null, empty: false }; // cannot even look inside: certainly not ours to drop
  } finally {
    await pools.close(ref);
  }
}

/** The database named `name` on `server`, with its scratch marker, or `{ exists: false }`. */
export const inspectScratch = (pools: Pools, server: DatabaseRef, name: string) =>
  inspectDatabase(pools, server, name, parseScratchMarker);

/** Writes `marker` as the database's comment: `loading` right after CREATE DATABASE, `loaded` at the end. */
export async function writeScratchMarker(
  pools: Pools,
  server: DatabaseRef,
  name: string,
  marker: ScratchMarker,
): Promise<void> {
  await pools
    .get(server)
    .query(`COMMENT ON DATABASE ${escapeIdentifier(name)} IS ${escapeLiteral(JSON.stringify(marker))}`);
}
