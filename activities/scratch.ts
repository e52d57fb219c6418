/**
 * Scratch from S3: stream a pg_dump archive out of S3 into a temporary file while hashing it, check it against its
 * manifest (`<key>.manifest.json`: { sha256, size }) or the object's metadata, and pg_restore it into a fresh
 * database named after the restore. The backup is data, never code: only pg_dump custom-format archives (magic
 * `PGDMP`) are accepted, and only pg_restore reads them; a plain SQL file (or tar, gzip, anything else) is refused
 * before a database is created, and never run. A backup without a checksum to verify is refused unless the operator
 * allowed it (`--allow-unverified-backup`).
 *
 * A scratch belongs to one restore (or one discover, or one drill: its kind). Its name carries a hash of the kind and
 * the exact id, and its marker (a COMMENT ON DATABASE, JSON) names the kind, the id and the archive: written as `loading` right after CREATE DATABASE, and as
 * `loaded` once pg_restore and ANALYZE are done. A scratch whose `loaded` marker names this restore and this archive is
 * reused; one whose marker names this restore but is not loaded is rebuilt; any other database of that name (another
 * restore's, or not ours at all) is never dropped: the restore is refused and says what to do.
 *
 * Scratch is only ever read. It needs no FK validation: FK constraints are added NOT VALID (still in pg_constraint,
 * so the plan sees them, but no full-table check), and every other post-data object (indexes the ownership
 * predicates use, primary keys) is restored as usual, in parallel (`pg_restore -j`).
 *
 * Nor does it need WAL: it is a copy of a backup, rebuilt from the archive whenever in doubt. So its tables are made
 * UNLOGGED between the pre-data section (empty tables, no FK yet) and the data section: the load writes no WAL, so
 * nothing is archived or replicated for it, and on live's server it does not compete with the writers' commits. The
 * price: crash recovery (a crash, a kill, an immediate shutdown; not a clean shutdown) empties every unlogged table.
 * So the load ends by setting an unlogged sentinel (activities/scratch-alive.ts), which crash recovery resets with the
 * tables, and the `loaded` marker records each table's row count: a scratch is reused only when its sentinel is still
 * set and every table that held rows still has pages; a reset one is loaded again, never reused. Steps that read
 * scratch check the sentinel (assertScratchAlive) and fail with ScratchResetError, not with a misleading answer.
 */
import { activityInfo, cancellationSignal, heartbeat, log } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import type { S3Client } from '@aws-sdk/client-s3';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  databaseName,
  dropOwnedDatabase,
  escapeIdentifier,
  escapeLiteral,
  libpqTarget,
  resolveConnectionString,
  withDatabase,
  type DatabaseRef,
  type PoolClient,
  type Pools,
} from './db';
import { s3BytesRead } from './metrics';
import { reduceToolStderr } from './errors';
import { getJson, getStream, head, parseS3Url, type S3Location } from './s3';
import type { ScratchInfo } from './restore-types';
import {
  BackupKeyError,
  backupPublicKeys,
  judgeManifest,
  publicKeyVariable,
  type ManifestClaims,
} from './backup-trust';
import { sentinelSchema, sentinelState, setSentinelSql, type SentinelState } from './scratch-alive';
import { checkScratchServer, type ScratchRisk } from './scratch-server';
import { scratchKinds, type ScratchKind } from './input-contract';

/** The workers' public keys for backup manifests; a setting that cannot be used stops the load (non-retryable). */
function workerPublicKeys() {
  try {
    return backupPublicKeys();
  } catch (error) {
    if (error instanceof BackupKeyError) throw ApplicationFailure.nonRetryable(error.message, 'BackupKeyInvalid');
    throw error;
  }
}

// What a scratch is for (restore, discover, drill): one list, in the input contract.
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

/** Archive format versions (the 3 bytes after `PGDMP`) and the first pg_dump release that writes each. */
const archiveVersions: Array<{ version: string; pgDump: string }> = [
  { version: '1.12', pgDump: '9.0' },
  { version: '1.13', pgDump: '11 (and 9.3.22, 9.4.17, 9.5.12, 9.6.8, 10.3)' },
  { version: '1.14', pgDump: '12' },
  { version: '1.15', pgDump: '16' },
  { version: '1.16', pgDump: '17' },
];
/** The newest archive format each pg_restore major version reads (its K_VERS_MAX). */
const newestReadable: Record<number, string> = {
  10: '1.13',
  11: '1.13',
  12: '1.14',
  13: '1.14',
  14: '1.14',
  15: '1.14',
  16: '1.15',
  17: '1.16',
};

export interface ArchiveHeader {
  /** Archive format version, `major.minor.rev`. */
  version: [number, number, number];
  /** 1 custom, 3 tar, 5 directory (pg_dump's ArchiveFormat). */
  format: number;
  /** The pg_dump that wrote it (`17.2 (Debian ...)`), when the header is readable that far. */
  dumpVersion?: string;
  /** The server it was dumped from. */
  serverVersion?: string;
}

const compareVersions = (a: number[], b: number[]): number => {
  for (let i = 0; i < Math.max(a.length, b.length); i++)
    if ((a[i] ?? 0) !== (b[i] ?? 0)) return (a[i] ?? 0) - (b[i] ?? 0);
  return 0;
};

/**
 * Reads a custom-format archive's header: `PGDMP`, version (3 bytes), int size, offset size, format, then the
 * compression (an int before 1.15, a byte since), the creation time (7 ints), the database name, and since 1.10 the
 * server's and pg_dump's version strings. Ints are a sign byte then `intSize` bytes, least significant first.
 */
export function parseArchiveHeader(bytes: Buffer): ArchiveHeader | undefined {
  if (bytes.length < 11 || bytes.subarray(0, 5).toString('latin1') !== 'PGDMP') return undefined;
  const version: [number, number, number] = [bytes[5], bytes[6], bytes[7]];
  const intSize = bytes[8];
  const header: ArchiveHeader = { version, format: bytes[10] };
  if (intSize < 1 || intSize > 8) return header;
  let at = 11;
  const readInt = (): number | undefined => {
    if (at + 1 + intSize > bytes.length) return undefined;
    const negative = bytes[at] !== 0;
    let value = 0;
    for (let i = 0; i < intSize; i++) value += bytes[at + 1 + i] * 2 ** (8 * i);
    at += 1 + intSize;
    return negative ? -value : value;
  };
  const readStr = (): string | undefined => {
    const length = readInt();
    if (length === undefined || length < 0 || length > 4096 || at + length > bytes.length) return undefined;
    const text = bytes.subarray(at, at + length).toString('utf8');
    at += length;
    return text;
  };
  if (compareVersions(version, [1, 15]) >= 0) at += 1;
  else if (readInt() === undefined) return header;
  for (let i = 0; i < 7; i++) if (readInt() === undefined) return header;
  if (readStr() === undefined) return header; // database name: not needed
  if (compareVersions(version, [1, 10]) < 0) return header;
  // Only what reads as a version: a damaged header must not put arbitrary bytes into a message.
  const asVersion = (text: string | undefined) =>
    text !== undefined && /^\d+(\.\d+)*[\w .()+~-]*$/.test(text) ? text : undefined;
  header.serverVersion = asVersion(readStr());
  header.dumpVersion = header.serverVersion === undefined ? undefined : asVersion(readStr());
  return header;
}

/** A human name for the first bytes of something that is not a custom-format archive. */
export function describeBackupBytes(bytes: Buffer, totalSize: number): string {
  if (totalSize === 0 || bytes.length === 0) return 'an empty file';
  const starts = (...b: number[]) => b.every((x, i) => bytes[i] === x);
  if (starts(0x1f, 0x8b))
    return 'a gzip file (a compressed plain SQL dump? pg_dump -Fc output is never gzipped as a whole)';
  if (starts(0x50, 0x4b, 0x03, 0x04)) return 'a zip file';
  if (starts(0x28, 0xb5, 0x2f, 0xfd)) return 'a zstd file';
  if (starts(0x04, 0x22, 0x4d, 0x18)) return 'an lz4 file';
  if (starts(0x42, 0x5a, 0x68)) return 'a bzip2 file';
  if (starts(0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00)) return 'an xz file';
  if (bytes.length >= 262 && bytes.subarray(257, 262).toString('latin1') === 'ustar') {
    return bytes.subarray(0, 7).toString('latin1') === 'toc.dat' ? 'a pg_dump tar archive (pg_dump -Ft)' : 'a tar file';
  }
  const sample = bytes.subarray(0, Math.min(bytes.length, 512));
  const printable = sample.every((b) => b === 0x09 || b === 0x0a || b === 0x0d || (b >= 0x20 && b !== 0x7f));
  if (printable) return 'text (a plain SQL dump, pg_dump -Fp, or a .sql file?)';
  // Only the file's magic number: never more of its content.
  return `unknown binary data (first bytes ${bytes.subarray(0, 4).toString('hex')})`;
}

/** The message for an archive newer than this pg_restore reads, or undefined when it can read it (or cannot tell). */
export function newerArchiveProblem(header: ArchiveHeader, pgRestoreVersion: string): string | undefined {
  const major = Number(/(\d+)(\.\d+)?/.exec(pgRestoreVersion)?.[1]);
  const newest = newestReadable[major];
  if (!newest || compareVersions(header.version, newest.split('.').map(Number)) <= 0) return undefined;
  return newerArchiveMessage(header, pgRestoreVersion, newest);
}

export function newerArchiveMessage(header: ArchiveHeader, pgRestoreVersion: string, newest?: string): string {
  const format = header.version.join('.');
  const short = `${header.version[0]}.${header.version[1]}`;
  const release = archiveVersions.find((v) => v.version === short)?.pgDump;
  const writer = header.dumpVersion
    ? `pg_dump ${header.dumpVersion}`
    : release
      ? `pg_dump ${release} or later`
      : 'a pg_dump newer than 17';
  return (
    `it was written by ${writer} (archive format ${format}), and this worker has ${pgRestoreVersion.trim()}` +
    `${newest ? `, which reads archive formats up to ${newest}` : ''}. It is not corrupt: install a pg_restore at least as new as that pg_dump on the workers (the PostgreSQL client package of that major version), then start the restore again.`
  );
}

export interface PrepareScratchInput {
  /** Whose scratch: part of its name and marker, so that a discover and a restore with one id never share it. */
  kind: ScratchKind;
  /** The restore's, discover's or drill's id. */
  restoreId: string;
  /** s3://bucket/key of the pg_dump archive. */
  backup: string;
  /** The server to create scratch on (alias or URL without password); scratch is created next to this database. */
  server: DatabaseRef;
  /** The operator's explicit `--allow-unverified-backup`: load a backup that has no sha256 to check against. */
  allowUnverifiedBackup?: boolean;
  /** Live: the scratch server must not be its server, nor its role (activities/scratch-server.ts). */
  live?: DatabaseRef;
  /** The risks the operator accepted by their flags (`--unsafe-scratch-on-live-server`, ...). */
  unsafeScratch?: ScratchRisk[];
}

export function runTool(
  command: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  signal: AbortSignal,
  stdoutToString = false,
): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let err = '';
    let cut = false;
    child.stdout.on('data', (chunk: Buffer) => {
      if (stdoutToString) out.push(chunk);
    });
    child.stderr.on('data', (chunk: Buffer) => {
      err += chunk.toString();
      if (err.length > 65_536) {
        err = err.slice(-65_536);
        cut = true;
      }
    });
    // The server's CONTEXT and DETAIL lines carry row data (`COPY t, line 3, column x: "<value>"`): only the error
    // lines are kept (activities/errors.ts reduceToolStderr); a line cut by the bound above is dropped whole.
    const reducedStderr = () => reduceToolStderr(cut ? err.slice(err.indexOf('\n') + 1) : err).slice(-4000);
    const abort = () => child.kill('SIGTERM');
    signal.addEventListener('abort', abort, { once: true });
    child.on('error', reject);
    child.on('close', (code) => {
      signal.removeEventListener('abort', abort);
      if (signal.aborted) reject(signal.reason ?? new Error(`${command} cancelled`));
      else if (code === 0) resolve(Buffer.concat(out).toString('utf8'));
      // Passwords never reach these messages: they are not on the command line, and libpq does not print them.
      else reject(new Error(`${command} exited with ${code}: ${reducedStderr()}`));
    });
  });
}

/** Heartbeats every `ms` while `work` runs, so a long pg_restore is not taken for a dead worker. */
async function withHeartbeats<T>(details: () => unknown, work: Promise<T>, ms = 2000): Promise<T> {
  const timer = setInterval(() => heartbeat(details()), ms);
  try {
    return await work;
  } finally {
    clearInterval(timer);
  }
}

async function readManifest(
  s3: S3Client,
  location: S3Location,
): Promise<{ sha256?: string; size?: number } | undefined> {
  try {
    return await getJson<{ sha256?: string; size?: number }>(s3, {
      bucket: location.bucket,
      key: `${location.key}.manifest.json`,
    });
  } catch (error) {
    const e = error as { name?: string; $metadata?: { httpStatusCode?: number } };
    if (e.name === 'NoSuchKey' || e.$metadata?.httpStatusCode === 404) return undefined;
    throw error;
  }
}

/** pg_restore's words for an archive that is cut short or damaged (not for a database problem). */
const corruptArchive =
  /could not read from input file|unexpected end of file|did not find magic string|could not find block ID|input file is too short|corrupt|unsupported version .* in file header|could not uncompress data/i;

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
const scratchTableSizesSql = `
  SELECT ${tableKey('c', 'n')} AS key, pg_relation_size(c.oid) AS bytes,
         greatest(ceil(greatest(c.reltuples, 0)), CASE WHEN pg_relation_size(c.oid) > 0 THEN 1 ELSE 0 END)::bigint AS rows
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE c.relkind = 'r' AND ${userSchemas}`;

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

/** How a load went, pass by pass (logged; durations in ms). */
interface LoadPasses {
  preDataMs: number;
  unloggedMs: number;
  mainMs: number;
  foreignKeysMs: number;
  /** Tables made UNLOGGED. */
  unlogged: number;
  /** Tables left logged, and why. */
  logged: Array<{ table: string; why: string }>;
}

export function createScratchActivities({ pools, s3 }: { pools: Pools; s3: S3Client }) {
  /** The database named `name` on `server`, with its scratch marker, or `{ exists: false }`. */
  const inspect = (server: DatabaseRef, name: string) => inspectDatabase(pools, server, name, parseScratchMarker);

  async function writeMarker(server: DatabaseRef, name: string, marker: ScratchMarker): Promise<void> {
    await pools
      .get(server)
      .query(`COMMENT ON DATABASE ${escapeIdentifier(name)} IS ${escapeLiteral(JSON.stringify(marker))}`);
  }

  let pgRestoreVersion: string | undefined;
  async function localPgRestoreVersion(signal: AbortSignal): Promise<string> {
    pgRestoreVersion ??= (await runTool('pg_restore', ['--version'], process.env, signal, true)).trim();
    return pgRestoreVersion;
  }

  return {
    /**
     * Loads the backup into this restore's scratch (`scratchDatabaseName(restoreId, kind)`) on `server`, or reuses it when
     * its marker says it is this restore's, loaded from the same archive. Refused, non-retryable, before any database
     * is created: a backup with no checksum to verify (unless allowed), a checksum or size mismatch, anything that is
     * not a pg_dump custom-format archive, an archive newer than the worker's pg_restore, and a database of that name
     * that is not this restore's.
     */
    async prepareScratch(input: PrepareScratchInput): Promise<ScratchInfo> {
      const started = Date.now();
      const signal = cancellationSignal();
      const kind = scratchKindOf(input);
      const name = scratchDatabaseName(input.restoreId, kind);
      const ref = databaseOnServer(input.server, name);
      const location = parseS3Url(input.backup);
      // A backup is code for the role that loads it: never on live's server, as live's role, or as a role that reaches
      // the host, unless the operator accepted that risk (activities/scratch-server.ts). Checked before anything exists.
      const placement = await checkScratchServer(pools, input);
      if (placement.accepted.length)
        log.warn('scratch loaded where the operator accepted the risk', {
          risks: placement.accepted.map((p) => p.risk),
        });
      const object = await head(s3, location).catch(
        (error: { name?: string; $metadata?: { httpStatusCode?: number } }) => {
          if (error.name === 'NotFound' || error.$metadata?.httpStatusCode === 404) {
            throw ApplicationFailure.nonRetryable(`Backup ${input.backup} does not exist.`, 'BackupNotFound');
          }
          throw error;
        },
      );
      const manifest = await readManifest(s3, location);
      // The digest counts only from where the backup's writer cannot write: a manifest signed by the backup job's key
      // (activities/backup-trust.ts). Anything else is loaded only with --allow-unverified-backup.
      const trust = judgeManifest(location.key, manifest as ManifestClaims | undefined, workerPublicKeys());
      let expectedSha: string | undefined;
      let expectedSize: number | undefined;
      let verifiedBy: ScratchInfo['verifiedBy'];
      if (trust.verified) {
        expectedSha = trust.sha256;
        expectedSize = trust.size;
        verifiedBy = 'signature';
      } else {
        if (!input.allowUnverifiedBackup)
          throw ApplicationFailure.nonRetryable(
            `Backup ${input.backup} cannot be verified: ${trust.why}, so nothing proves it is the archive the backup job wrote (and a backup is code for the role that loads it). Have the backup job sign its manifest with its Ed25519 key and give the workers the public key (${publicKeyVariable}; README, Trust), or, if you accept an unverified backup, start again with --allow-unverified-backup (drills: --allow-unverified-backup).`,
            trust.forged ? 'BackupSignatureInvalid' : 'BackupUnverified',
          );
        // Unsigned numbers catch a damaged transfer, not a hostile writer: checked all the same.
        expectedSha = manifest?.sha256 ?? object.metadata.sha256;
        expectedSize = manifest?.size ?? (object.metadata.size ? Number(object.metadata.size) : undefined);
        // 'size-only': no sha256 anywhere, loaded only because the operator passed --allow-unverified-backup.
        verifiedBy = manifest?.sha256 ? 'manifest' : object.metadata.sha256 ? 'metadata' : 'size-only';
        log.warn('backup loaded unverified (--allow-unverified-backup)', { backup: input.backup, why: trust.why });
      }
      if (expectedSize !== undefined && object.size !== undefined && expectedSize !== object.size) {
        throw ApplicationFailure.nonRetryable(
          `Backup ${input.backup} is ${object.size} bytes, its manifest says ${expectedSize}.`,
          'BackupSizeMismatch',
        );
      }

      // One loader per scratch at a time: a retry that overlaps a slow attempt waits instead of racing it.
      const lockClient = await pools.get(input.server, { max: 4, applicationName: 'tenant-restore-scratch' }).connect();
      let broken = false;
      /** Set once the database of this name is known to be this restore's: only then may a failure drop it. */
      let ours = false;
      try {
        await withHeartbeats(
          () => ({ stage: 'lock' }),
          lockClient.query('SELECT pg_advisory_lock(hashtext($1))', [`tenant-restore:scratch:${name}`]),
        );
        const inspected = await inspect(input.server, name);
        // A scratch of this restore marked loaded is looked into: crash recovery may have emptied it since.
        const contents =
          inspected.exists &&
          inspected.marker?.state === 'loaded' &&
          markerNames(inspected.marker, kind, input.restoreId)
            ? await withHeartbeats(() => ({ stage: 'inspect' }), contentsOf(ref))
            : undefined;
        const existing = inspected.exists ? { ...inspected, contents } : inspected;
        const decision = scratchOwnership(existing, {
          kind,
          restoreId: input.restoreId,
          backup: input.backup,
          size: object.size,
          sha256: expectedSha,
        });
        const emptied =
          decision === 'rebuild' && contents && inspected.exists && scratchEmptied(inspected.marker!, contents);
        if (emptied)
          log.warn('scratch of this restore was loaded, but does not hold it now: loaded again', {
            database: name,
            why: emptied,
          });
        if (decision === 'foreign') {
          const whose = markerOwner(existing.exists ? existing.marker : null);
          throw ApplicationFailure.nonRetryable(
            `Database ${name} on the scratch server already exists and is ${whose}, not a scratch of ${kind} '${input.restoreId}': it was not touched. If it is no longer needed, drop it yourself (DROP DATABASE ${escapeIdentifier(name)}), or start this ${kind} with another --id or another --scratch-server.`,
            'ScratchNotOwned',
          );
        }
        ours = decision !== 'absent';
        if (decision === 'reuse' && existing.exists && existing.marker) {
          const marker = existing.marker;
          log.info('scratch already loaded from this archive by this restore: reused', { database: name });
          return {
            ref,
            server: input.server,
            owned: true,
            reused: true,
            backup: input.backup,
            bytes: marker.size,
            sha256: marker.sha256,
            verifiedBy,
            durationMs: Date.now() - started,
          };
        }

        const dir = await mkdtemp(join(tmpdir(), `tenant-restore-${name}-`));
        try {
          // Stream to a local file while hashing: pg_restore -j needs a seekable file.
          const file = join(dir, 'backup.dump');
          const hash = createHash('sha256');
          let bytes = 0;
          const { body } = await getStream(s3, location, signal);
          const hashing = new Transform({
            transform(chunk: Buffer, _encoding, callback) {
              hash.update(chunk);
              bytes += chunk.length;
              callback(null, chunk);
            },
          });
          await withHeartbeats(
            () => ({ stage: 'download', bytes }),
            pipeline(body, hashing, createWriteStream(file), { signal }),
          );
          const sha256 = hash.digest('hex');
          if (object.size !== undefined && bytes !== object.size) {
            throw ApplicationFailure.retryable(
              `Downloaded ${bytes} bytes of ${input.backup}, expected ${object.size}.`,
              'BackupTruncated',
            );
          }
          if (expectedSha && expectedSha !== sha256) {
            throw ApplicationFailure.nonRetryable(
              `Backup ${input.backup} has sha256 ${sha256}, its ${verifiedBy === 'metadata' ? 'metadata' : 'manifest'} says ${expectedSha}.`,
              'BackupChecksumMismatch',
            );
          }
          // What it is, from its first bytes: only a custom-format archive goes on, and only to pg_restore.
          const first = Buffer.alloc(4096);
          const fd = await open(file, 'r');
          const { bytesRead } = await fd.read(first, 0, first.length, 0).finally(() => fd.close());
          const header = parseArchiveHeader(first.subarray(0, bytesRead));
          if (!header || header.format !== 1) {
            const found = header
              ? `a pg_dump archive in format ${header.format} (not custom)`
              : describeBackupBytes(first.subarray(0, bytesRead), bytes);
            throw ApplicationFailure.nonRetryable(
              `Backup ${input.backup} is ${found}, not a pg_dump custom-format archive: it was not loaded, and nothing in it was run. tenant-restore reads backups only with pg_restore, never with psql; take the backup with pg_dump -Fc (custom format) and start again.`,
              'UnsupportedBackupFormat',
            );
          }
          const pgRestore = await localPgRestoreVersion(signal);
          const newer = newerArchiveProblem(header, pgRestore);
          if (newer)
            throw ApplicationFailure.nonRetryable(
              `Backup ${input.backup} cannot be read by this worker's pg_restore: ${newer}`,
              'BackupFromNewerPgDump',
            );

          // Ours (or absent): from here on it is rebuilt, and marked as this restore's from the moment it exists.
          ours = true;
          await pools.close(ref);
          await dropOwnedDatabase(pools.get(input.server), name);
          await pools
            .get(input.server)
            .query(`CREATE DATABASE ${escapeIdentifier(name)}`)
            .catch((error: { code?: string }) => {
              if (error.code === '42501') {
                throw ApplicationFailure.nonRetryable(
                  `The role of the scratch server (${input.server}) may not create databases. Scratch needs a role with CREATEDB; the least-privilege live role of scripts/grants.sql has none, by design. Start again with --scratch-server postgres://<scratch role>@<host>/postgres (a role with CREATEDB, on a server that is not live if you can), or --scratch <url> of a database you restored yourself.`,
                  'ScratchServerNotAllowed',
                );
              }
              throw error;
            });
          const createdAt = new Date().toISOString();
          const loading: ScratchMarker = {
            tool: 'tenant-restore',
            kind,
            restoreId: input.restoreId,
            state: 'loading',
            backup: input.backup,
            size: bytes,
            sha256,
            createdAt,
          };
          await writeMarker(input.server, name, loading);

          // Unlogged where the server has unlogged sequences for the sentinel (PostgreSQL 15+); logged, as before, elsewhere.
          const { rows: version } = await pools
            .get(input.server)
            .query<{ n: number }>(`SELECT current_setting('server_version_num')::int AS n`);
          const unlogged = version[0]!.n >= 150000;
          const restoreStarted = Date.now();
          const passes = await withHeartbeats(
            () => ({ stage: 'pg_restore', bytes }),
            restoreArchive(file, dir, ref, signal, unlogged),
          ).catch((error: Error) => {
            if (/unsupported version .* in file header/i.test(error.message)) {
              throw ApplicationFailure.nonRetryable(
                `Backup ${input.backup} cannot be read by this worker's pg_restore: ${newerArchiveMessage(header, pgRestore)}`,
                'BackupFromNewerPgDump',
              );
            }
            // A truncated or corrupted archive fails the same way on every attempt: say so, and do not retry.
            if (corruptArchive.test(error.message)) {
              throw ApplicationFailure.nonRetryable(
                `Backup ${input.backup} is not a valid pg_dump archive (it is truncated or corrupted): ${error.message.slice(0, 500)}`,
                'BackupCorrupt',
              );
            }
            throw error;
          });
          const restoreMs = Date.now() - restoreStarted;
          // Statistics for the ownership predicates' plans; cheap (sampled). Its row counts go into the marker.
          const scratchPool = pools.get(ref, { max: 2 });
          await withHeartbeats(() => ({ stage: 'analyze' }), scratchPool.query('ANALYZE'));
          const { rows: sizes } = await scratchPool.query<{ key: string; rows: string }>(scratchTableSizesSql);
          // The load's last step: crash recovery from here on resets the sentinel with the tables.
          if (unlogged) await scratchPool.query(setSentinelSql);
          await pools.close(ref);

          // Written last: `loaded` means "completely loaded and verified, by this restore, from this archive".
          await writeMarker(input.server, name, {
            ...loading,
            state: 'loaded',
            loadedAt: new Date().toISOString(),
            unlogged,
            rows: Object.fromEntries(sizes.map((r) => [r.key, Number(r.rows)])),
          });
          log.info('scratch loaded', {
            database: name,
            bytes,
            restoreMs,
            ...passes,
            logged: passes.logged.slice(0, 20),
            attempt: activityInfo().attempt,
          });
          s3BytesRead(bytes);
          return {
            ref,
            server: input.server,
            owned: true,
            reused: false,
            backup: input.backup,
            bytes,
            sha256,
            verifiedBy,
            durationMs: Date.now() - started,
          };
        } finally {
          await rm(dir, { recursive: true, force: true });
        }
      } catch (error) {
        if ((error as { code?: string }).code?.startsWith('08')) broken = true;
        // A final failure (bad checksum, corrupt archive) leaves no half-loaded scratch of this restore behind; a
        // retryable one is rebuilt by the next attempt anyway. A database that is not this restore's is never dropped.
        if (ours && error instanceof ApplicationFailure && error.nonRetryable) {
          await pools.close(ref);
          const now = await inspect(input.server, name).catch(() => undefined);
          if (now?.exists && (markerNames(now.marker, kind, input.restoreId) || (!now.marker && now.empty))) {
            await dropOwnedDatabase(pools.get(input.server), name).catch(() => undefined);
          }
        }
        throw error;
      } finally {
        await lockClient.query('SELECT pg_advisory_unlock_all()').catch(() => {
          broken = true;
        });
        lockClient.release(broken);
      }
    },

    /**
     * Drops the scratch this restore created: only when its name is this restore's and its marker names this restore
     * (kind and id). A `--scratch <url>` given by the operator (owned: false) is never dropped, nor is anything else.
     */
    async dropScratch(input: {
      kind: ScratchKind;
      restoreId: string;
      scratch: ScratchInfo;
    }): Promise<{ dropped: boolean; reason?: string }> {
      const { scratch } = input;
      const kind = scratchKindOf(input);
      if (!scratch.owned || !scratch.server) return { dropped: false, reason: 'not created by this restore' };
      const name = scratchDatabaseName(input.restoreId, kind);
      const target = databaseName(resolveConnectionString(scratch.ref));
      if (target !== name) {
        log.warn("scratch not dropped: its name is not this restore's", { database: target, expected: name });
        return { dropped: false, reason: `'${target}' is not this restore's scratch '${name}'` };
      }
      const existing = await inspect(scratch.server, name);
      if (!existing.exists) return { dropped: false, reason: 'already gone' };
      if (!markerNames(existing.marker, kind, input.restoreId)) {
        log.warn('scratch not dropped: its marker does not name this restore', {
          database: name,
          marker: existing.marker?.restoreId ?? null,
          kind: existing.marker?.kind ?? null,
        });
        return {
          dropped: false,
          reason: `it is ${markerOwner(existing.marker)}, not the scratch of ${kind} '${input.restoreId}'`,
        };
      }
      await pools.close(scratch.ref);
      await dropOwnedDatabase(pools.get(scratch.server), name);
      return { dropped: true };
    },

    /** For `--scratch <url>`: checks that the database answers, and names it in the report. */
    async checkScratch(input: { scratch: DatabaseRef }): Promise<ScratchInfo> {
      const started = Date.now();
      await pools.get(input.scratch).query('SELECT 1');
      return { ref: input.scratch, owned: false, reused: true, durationMs: Date.now() - started };
    },
  };

  /**
   * pg_restore into `ref`, in passes: pre-data (schemas, types, functions, empty tables); then, when `unlogged`, every
   * table PostgreSQL allows is made UNLOGGED, while it is empty and no FK exists yet (tablesToUnlog); then data and
   * post-data together in parallel (`-j`: a table's indexes are built as soon as its rows are in), all but FK
   * constraints; then FK constraints, NOT VALID.
   */
  async function restoreArchive(
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
  async function contentsOf(ref: DatabaseRef): Promise<ScratchContents> {
    try {
      const pool = pools.get(ref, { max: 1 });
      const sentinel = await sentinelState(pool);
      const { rows } = await pool.query<{ key: string; bytes: string }>(scratchTableSizesSql);
      return { sentinel, bytes: Object.fromEntries(rows.map((r) => [r.key, Number(r.bytes)])) };
    } finally {
      await pools.close(ref);
    }
  }
}
