/**
 * Issue 11, items 3 and 4, the pure parts: a scratch name is the restore's own, a scratch is reused or rebuilt only
 * when its marker names the restore, and a backup is read from its first bytes (never run) and its header versions.
 * Issue 25 step 3: an unlogged scratch is reused only while it still holds what was loaded (its sentinel set, every
 * table that held rows still with pages), and which tables may be made unlogged.
 */
import { describe, expect, it } from 'vitest';
import {
  describeBackupBytes,
  foreignKeyTables,
  newerArchiveMessage,
  newerArchiveProblem,
  parseArchiveHeader,
  parseScratchMarker,
  scratchDatabaseName,
  scratchKinds,
  scratchEmptied,
  scratchOwnership,
  tablesToUnlog,
  type ScratchContents,
  type ScratchMarker,
  type ScratchTable,
} from '../../activities/scratch';
import { buildStartRequest } from '../../cli/client/start';
import { scratchOnLiveWarning } from '../../cli/client/scratch-placement';

const range = (n: number) => Array.from({ length: n }, (_, i) => i);

/** A custom-format archive header as pg_dump writes it (intSize 4): magic, version, sizes, format, compression, time, names. */
function archiveHeader(version: [number, number, number], dumpVersion: string, serverVersion = dumpVersion): Buffer {
  const int = (n: number) => Buffer.from([n < 0 ? 1 : 0, Math.abs(n) & 0xff, (Math.abs(n) >> 8) & 0xff, 0, 0]);
  const str = (s: string) => Buffer.concat([int(Buffer.byteLength(s)), Buffer.from(s)]);
  const compression = version[1] >= 15 ? Buffer.from([0]) : int(-1);
  return Buffer.concat([
    Buffer.from('PGDMP', 'latin1'),
    Buffer.from([...version, 4, 8, 1]),
    compression,
    ...[12, 34, 5, 30, 10, 126, 0].map(int),
    str('prod'),
    str(serverVersion),
    str(dumpVersion),
    Buffer.alloc(64),
  ]);
}

describe('scratch names', () => {
  it('never maps two restore ids to one name, however they sanitize, and stays within 63 bytes', () => {
    // These two shared scratch_incident_4711 before: one restore could drop the other's scratch while it ran.
    expect(scratchDatabaseName('Incident-4711')).not.toBe(scratchDatabaseName('incident.4711'));
    expect(scratchDatabaseName('Incident-4711')).toMatch(/^scratch_incident_4711_[0-9a-f]{12}$/);
    expect(scratchDatabaseName('Incident-4711')).toBe(scratchDatabaseName('Incident-4711'));
    const ids = [
      'a',
      'A',
      'a.b',
      'a-b',
      'a_b',
      'A_b',
      `${'x'.repeat(62)}1`,
      `${'x'.repeat(62)}2`,
      `${'X'.repeat(62)}1`,
    ];
    const names = ids.flatMap((id) => scratchKinds.map((kind) => scratchDatabaseName(id, kind)));
    expect(new Set(names).size).toBe(ids.length * scratchKinds.length);
    for (const name of names) expect(Buffer.byteLength(name)).toBeLessThanOrEqual(63);
  });

  it('gives a discover, a restore, a drill (and a window end, a when) with the same id a scratch each (issue 23, N5)', () => {
    const names = scratchKinds.map((kind) => scratchDatabaseName('inc-42', kind));
    expect(scratchKinds.length).toBe(5);
    expect(new Set(names).size).toBe(scratchKinds.length);
    expect(scratchDatabaseName('inc-42', 'discover')).toMatch(/^scratch_discover_inc_42_[0-9a-f]{12}$/);
    expect(scratchDatabaseName('inc-42')).toBe(scratchDatabaseName('inc-42', 'restore'));
    // The hash is of kind and id: a restore whose id reads like a discover's name is still not the discover's.
    expect(scratchDatabaseName('discover_inc-42', 'restore')).not.toBe(scratchDatabaseName('inc-42', 'discover'));
  });
});

describe('scratch markers', () => {
  const want = {
    kind: 'restore' as const,
    restoreId: 'r-1',
    backup: 's3://bkt/k.dump',
    size: 100,
    sha256: 'a'.repeat(64),
  };
  const loaded: ScratchMarker = {
    tool: 'tenant-restore',
    kind: 'restore',
    restoreId: 'r-1',
    state: 'loaded',
    backup: want.backup,
    size: 100,
    sha256: want.sha256,
    unlogged: true,
    rows: { 'app.tenants': 6, 'app.users': 18, 'app.empty': 0 },
  };
  /** What that scratch holds while nothing has emptied it. */
  const intact: ScratchContents = {
    sentinel: 'set',
    bytes: { 'app.tenants': 8192, 'app.users': 8192, 'app.empty': 0 },
  };

  it('reuses only a loaded scratch of the same restore and archive; rebuilds its own; never takes another one', () => {
    const db = (marker: ScratchMarker | null, empty = false) => ({
      exists: true as const,
      marker,
      empty,
      contents: intact,
    });
    expect(scratchOwnership({ exists: false }, want)).toBe('absent');
    expect(scratchOwnership(db(loaded), want)).toBe('reuse');
    expect(scratchOwnership(db({ ...loaded, state: 'loading' }), want)).toBe('rebuild');
    expect(scratchOwnership(db({ ...loaded, sha256: 'b'.repeat(64) }), want)).toBe('rebuild');
    expect(scratchOwnership(db({ ...loaded, backup: 's3://bkt/other.dump' }), want)).toBe('rebuild');
    expect(scratchOwnership(db({ ...loaded, restoreId: 'r-2' }), want)).toBe('foreign');
    expect(scratchOwnership(db({ ...loaded, restoreId: 'r-2', state: 'loading' }), want)).toBe('foreign');
    // The same id, another kind: a discover's scratch is never reused, rebuilt or dropped by the restore, nor the reverse.
    expect(scratchOwnership(db({ ...loaded, kind: 'discover' }), want)).toBe('foreign');
    expect(scratchOwnership(db({ ...loaded, kind: 'discover', state: 'loading' }), want)).toBe('foreign');
    expect(scratchOwnership(db(loaded), { ...want, kind: 'discover' })).toBe('foreign');
    expect(scratchOwnership(db({ ...loaded, kind: 'discover' }), { ...want, kind: 'discover' })).toBe('reuse');
    // A marker without a kind (0.1.0): nobody's now.
    expect(scratchOwnership(db({ ...loaded, kind: undefined }), want)).toBe('foreign');
    // A marker from before markers named their restore: not ours, whatever archive it names.
    expect(
      scratchOwnership(db({ tool: 'tenant-restore', backup: want.backup, size: 100, sha256: want.sha256 }), want),
    ).toBe('foreign');
    // No marker: someone's database, unless it is empty (a crash between CREATE DATABASE and the first marker).
    expect(scratchOwnership(db(null, false), want)).toBe('foreign');
    expect(scratchOwnership(db(null, true), want)).toBe('rebuild');
  });

  it('reuses a loaded scratch only while it holds what was loaded: a reset sentinel or an emptied table rebuilds it (step 3)', () => {
    const db = (contents: ScratchContents | undefined, marker: ScratchMarker = loaded) => ({
      exists: true as const,
      marker,
      empty: false,
      contents,
    });
    expect(scratchEmptied(loaded, intact)).toBeUndefined();
    expect(scratchOwnership(db(intact), want)).toBe('reuse');
    // Crash recovery: the sentinel is reset with the tables (an immediate shutdown, a kill, a crash).
    const crashed: ScratchContents = { sentinel: 'reset', bytes: { 'app.tenants': 0, 'app.users': 0, 'app.empty': 0 } };
    expect(scratchOwnership(db(crashed), want)).toBe('rebuild');
    expect(scratchEmptied(loaded, crashed)).toMatch(/sentinel was reset.*crash recovery/);
    // The sentinel alone reset (or gone) is enough; so is one table that held rows and has no pages now.
    expect(scratchOwnership(db({ ...intact, sentinel: 'reset' }), want)).toBe('rebuild');
    expect(scratchOwnership(db({ ...intact, sentinel: 'absent' }), want)).toBe('rebuild');
    expect(scratchEmptied(loaded, { ...intact, sentinel: 'absent' })).toMatch(/sentinel is gone/);
    const truncated = { ...intact, bytes: { ...intact.bytes, 'app.users': 0 } };
    expect(scratchOwnership(db(truncated), want)).toBe('rebuild');
    expect(scratchEmptied(loaded, truncated)).toBe(
      'tables that held rows are empty: app.users (18 rows when loaded, empty now)',
    );
    const { 'app.tenants': _gone, ...rest } = intact.bytes;
    expect(scratchEmptied(loaded, { ...intact, bytes: rest })).toMatch(/app\.tenants \(6 rows when loaded, gone\)/);
    // A table that was empty when loaded may be empty now; a table the marker does not know is not looked at.
    expect(scratchOwnership(db({ ...intact, bytes: { ...intact.bytes, 'app.extra': 0 } }), want)).toBe('reuse');
    // Many emptied tables: a few are named.
    const many: ScratchMarker = { ...loaded, rows: Object.fromEntries(range(5).map((i) => [`app.t${i}`, 1])) };
    expect(scratchEmptied(many, { sentinel: 'set', bytes: {} })).toMatch(
      /app\.t0 .*app\.t2 \(1 rows when loaded, gone\) and 2 more$/,
    );
    // Contents not read, or a marker without row counts (loaded before scratches were unlogged): loaded again.
    expect(scratchOwnership(db(undefined), want)).toBe('rebuild');
    const { rows: _rows, unlogged: _unlogged, ...older } = loaded;
    expect(scratchOwnership(db(intact, older), want)).toBe('rebuild');
    expect(scratchEmptied(older, intact)).toMatch(/no row counts/);
    // A logged scratch (a server without unlogged sequences) has no sentinel: its tables are checked all the same.
    const logged: ScratchMarker = { ...loaded, unlogged: false };
    expect(scratchOwnership(db({ ...intact, sentinel: 'absent' }, logged), want)).toBe('reuse');
    expect(scratchOwnership(db({ ...truncated, sentinel: 'absent' }, logged), want)).toBe('rebuild');
    // What it holds never makes another restore's scratch ours.
    expect(scratchOwnership(db(crashed, { ...loaded, restoreId: 'r-2' }), want)).toBe('foreign');
  });

  it('reads only tenant-restore JSON as a marker', () => {
    expect(parseScratchMarker(JSON.stringify(loaded))).toEqual(loaded);
    expect(parseScratchMarker('production database, do not drop')).toBeNull();
    expect(parseScratchMarker(JSON.stringify({ tool: 'other', restoreId: 'r-1' }))).toBeNull();
    expect(parseScratchMarker(null)).toBeNull();
  });
});

describe('unlogged scratch: which tables (step 3)', () => {
  const table = (key: string, kind: 'r' | 'p' = 'r', extra: Partial<ScratchTable> = {}): ScratchTable => ({
    key,
    kind,
    persistence: 'p',
    extension: false,
    ...extra,
  });

  it('makes every ordinary table unlogged, partitions included, when nothing permanent references them', () => {
    const tables = [table('app.tenants'), table('app.users'), table('app.plans'), table('"Odd"."T 1"')];
    const edges = [
      { from: 'app.tenants', to: 'app.plans' },
      { from: 'app.users', to: 'app.tenants' },
      // A cycle between unlogged tables is no obstacle.
      { from: 'app.plans', to: 'app.users' },
    ];
    expect(tablesToUnlog(tables, edges)).toEqual({
      unlog: ['"Odd"."T 1"', 'app.plans', 'app.tenants', 'app.users'],
      logged: [],
    });
  });

  it("keeps logged what a partitioned table's FK references, and what those reference in turn; never an extension's table", () => {
    const tables = [
      table('app.events', 'p'),
      table('app.events_1'),
      table('app.events_2'),
      table('app.tenants'),
      table('app.plans'),
      table('app.countries'),
      table('app.comments'),
      table('app.items', 'p'),
      table('app.items_1'),
      table('public.spatial_ref_sys', 'r', { extension: true }),
      table('app.cache', 'r', { persistence: 'u' }),
      table('app.zones'),
    ];
    const edges = [
      // PostgreSQL checks the FK as declared, on the partitioned table (permanent): tenants must stay permanent...
      { from: 'app.events', to: 'app.tenants' },
      // ...and so must what tenants references, transitively.
      { from: 'app.tenants', to: 'app.plans' },
      { from: 'app.plans', to: 'app.countries' },
      // An unlogged table may reference a permanent one, or a partitioned one.
      { from: 'app.comments', to: 'app.events' },
      { from: 'app.comments', to: 'app.tenants' },
      // A partitioned table referencing a partitioned table: both stay permanent, their partitions do not matter.
      { from: 'app.events', to: 'app.items' },
      // An extension's table stays as its extension made it, and keeps what it references permanent.
      { from: 'public.spatial_ref_sys', to: 'app.zones' },
    ];
    const { unlog, logged } = tablesToUnlog(tables, edges);
    expect(unlog).toEqual(['app.comments', 'app.events_1', 'app.events_2', 'app.items_1']);
    expect(logged).toEqual([
      { table: 'app.countries', why: 'referenced by an FK of app.plans, which stays logged' },
      { table: 'app.plans', why: 'referenced by an FK of app.tenants, which stays logged' },
      { table: 'app.tenants', why: 'referenced by an FK of app.events, which stays logged' },
      { table: 'app.zones', why: 'referenced by an FK of public.spatial_ref_sys, which stays logged' },
      { table: 'public.spatial_ref_sys', why: 'belongs to an extension' },
    ]);
    // Already unlogged in the backup: left alone, listed nowhere.
    expect([...unlog, ...logged.map((l) => l.table)]).not.toContain('app.cache');
  });
});

describe('unlogged scratch: the FKs of the archive (step 3)', () => {
  it("reads the referencing and the referenced table off pg_restore's FK statements, quoted names included", () => {
    expect(
      foreignKeyTables(
        'ALTER TABLE ONLY app.comments\n    ADD CONSTRAINT comments_author_fk FOREIGN KEY (author_id) REFERENCES app.users(id)',
      ),
    ).toEqual({ from: 'app.comments', to: 'app.users' });
    // A partitioned table's FK: no ONLY.
    expect(
      foreignKeyTables(
        'ALTER TABLE app.events\n    ADD CONSTRAINT events_tenant_fk FOREIGN KEY (tenant_id, x) REFERENCES app.tenants(id, x) ON DELETE CASCADE DEFERRABLE',
      ),
    ).toEqual({ from: 'app.events', to: 'app.tenants' });
    // Quoted names, with quotes, dots, parentheses and the word REFERENCES inside them.
    expect(
      foreignKeyTables(
        'ALTER TABLE ONLY "My App"."Odd ""T"""\n    ADD CONSTRAINT "x.y" FOREIGN KEY ("a) REFERENCES b.c(", b) REFERENCES "Other".t2(id, "K")',
      ),
    ).toEqual({ from: '"My App"."Odd ""T"""', to: '"Other".t2' });
    expect(foreignKeyTables('SET client_min_messages = warning')).toBeUndefined();
    expect(foreignKeyTables('ALTER TABLE ONLY app.t ADD CONSTRAINT c CHECK (x > 0)')).toBeUndefined();
  });
});

describe('what a backup is', () => {
  it('names what it found in anything that is not a custom-format archive', () => {
    const sql = Buffer.from('--\n-- PostgreSQL database dump\n--\nCREATE TABLE pwned (id int);\n');
    expect(parseArchiveHeader(sql)).toBeUndefined();
    expect(describeBackupBytes(sql, sql.length)).toMatch(/plain SQL/);
    expect(describeBackupBytes(Buffer.alloc(0), 0)).toBe('an empty file');
    expect(describeBackupBytes(Buffer.from([0x1f, 0x8b, 8, 0]), 100)).toMatch(/gzip/);
    expect(describeBackupBytes(Buffer.from('PK\x03\x04rest', 'latin1'), 100)).toMatch(/zip/);
    const tar = Buffer.alloc(512);
    tar.write('toc.dat', 0, 'latin1');
    tar.write('ustar', 257, 'latin1');
    expect(describeBackupBytes(tar, 512)).toMatch(/pg_dump tar archive/);
    expect(describeBackupBytes(Buffer.from([0, 1, 2, 3, 4]), 5)).toMatch(
      /unknown binary data \(first bytes 00010203\)/,
    );
  });

  it('reads the header of a custom-format archive: format version, pg_dump and server versions', () => {
    expect(parseArchiveHeader(archiveHeader([1, 14, 0], '15.20 (Debian 15.20-0+deb12u1)'))).toEqual({
      version: [1, 14, 0],
      format: 1,
      dumpVersion: '15.20 (Debian 15.20-0+deb12u1)',
      serverVersion: '15.20 (Debian 15.20-0+deb12u1)',
    });
    // 1.15 and later: the compression is one byte, not an int.
    expect(parseArchiveHeader(archiveHeader([1, 16, 0], '17.2', '17.1'))).toMatchObject({
      version: [1, 16, 0],
      dumpVersion: '17.2',
      serverVersion: '17.1',
    });
  });

  it('explains an archive from a newer pg_dump with both versions, not as corrupt', () => {
    const header = parseArchiveHeader(archiveHeader([1, 16, 0], '17.2'))!;
    const problem = newerArchiveProblem(header, 'pg_restore (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)');
    expect(problem).toMatch(/pg_dump 17\.2 \(archive format 1\.16\.0\)/);
    expect(problem).toMatch(/pg_restore \(PostgreSQL\) 15\.20/);
    expect(problem).toMatch(/reads archive formats up to 1\.14/);
    expect(problem).not.toMatch(/truncated or corrupted/);
    expect(newerArchiveProblem(header, 'pg_restore (PostgreSQL) 17.4')).toBeUndefined();
    expect(
      newerArchiveProblem(parseArchiveHeader(archiveHeader([1, 14, 0], '15.2'))!, 'pg_restore (PostgreSQL) 15.20'),
    ).toBeUndefined();
    // A header cut before its version strings: the release is named from the format version.
    expect(newerArchiveMessage({ version: [1, 15, 0], format: 1 }, 'pg_restore (PostgreSQL) 15.20', '1.14')).toMatch(
      /pg_dump 16 or later \(archive format 1\.15\.0\)/,
    );
  });
});

describe('start: scratch next to live', () => {
  const base = {
    backup: 's3://bkt/k.dump',
    live: 'postgres://restore@db.internal:5432/prod',
    'tenant-root': 'app.tenants',
    tenants: '1',
    artifacts: 's3://bkt/r/',
  };

  it("refuses scratch on live's server or as live's role unless each risk is accepted by its flag, and then warns (issue 23, item 8)", () => {
    const refusal = (flags: Record<string, unknown>, env: NodeJS.ProcessEnv = {}) => {
      try {
        buildStartRequest({ ...base, ...flags }, env);
        return undefined;
      } catch (error) {
        return (error as Error).message;
      }
    };
    // No scratch server at all: live's server, as live's role; both flags named.
    expect(refusal({})).toMatch(
      /on live's server \(no --scratch-server was given, and TENANT_RESTORE_SCRATCH_SERVER is not set\) and as live's role 'restore'.*--unsafe-scratch-on-live-server --unsafe-scratch-as-live-role\. Nothing was started\./,
    );
    expect(refusal({ 'unsafe-scratch-on-live-server': true })).toMatch(/add --unsafe-scratch-as-live-role\./);
    const accepted = { 'unsafe-scratch-on-live-server': true, 'unsafe-scratch-as-live-role': true };
    const both = buildStartRequest({ ...base, ...accepted }, {});
    expect(both.input.unsafeScratch).toEqual(['on-live-server', 'as-live-role']);
    expect(both.warnings.join('\n')).toMatch(/LIVE's server \(no --scratch-server was given\)/);
    // The same host and port (loopback names are one host), another role: only the server risk.
    expect(refusal({ 'scratch-server': 'postgres://scratch@db.internal/postgres' })).toMatch(
      /on live's server \(--scratch-server .* and --live are both db\.internal:5432\).*add --unsafe-scratch-on-live-server\./,
    );
    expect(
      refusal(
        { live: 'postgres://restore@127.0.0.1:5432/prod', 'scratch-server': 'postgres://scratch@localhost/postgres' },
        {},
      ),
    ).toMatch(/both localhost:5432/);
    expect(
      buildStartRequest(
        { ...base, 'scratch-server': 'postgres://scratch@db.internal/postgres', 'unsafe-scratch-on-live-server': true },
        {},
      ).warnings,
    ).toHaveLength(1);
    // An alias that this process resolves to live's server is live's server.
    expect(
      refusal(
        { 'scratch-server': 'sneaky' },
        { TENANT_RESTORE_DB_SNEAKY: 'postgres://scratch@db.internal:5432/postgres' },
      ),
    ).toMatch(/on live's server/);
    // Another server with live's user: live's role.
    expect(refusal({ 'scratch-server': 'postgres://restore@scratch.internal/postgres' })).toMatch(
      /as live's role 'restore' \(the same user in both references\).*add --unsafe-scratch-as-live-role\./,
    );
    // Another server, another role: no refusal, no warning; the default comes from TENANT_RESTORE_SCRATCH_SERVER.
    expect(
      buildStartRequest({ ...base, 'scratch-server': 'postgres://scratch@scratch.internal:5432/postgres' }, {})
        .warnings,
    ).toEqual([]);
    const configured = buildStartRequest(base, { TENANT_RESTORE_SCRATCH_SERVER: 'scratch' });
    expect(configured.input.source).toEqual({ kind: 'backup', backup: 's3://bkt/k.dump', scratchServer: 'scratch' });
    expect(configured.input.unsafeScratch).toBeUndefined();
    // The flags only go with --backup.
    expect(refusal({ backup: undefined, scratch: 'postgres://x@h/s', 'unsafe-scratch-as-superuser': true })).toMatch(
      /--unsafe-scratch-as-superuser only goes with --backup/,
    );
    expect(
      scratchOnLiveWarning({ live: 'prod', source: { kind: 'scratch', scratch: 'postgres://x@h/s' } }),
    ).toBeUndefined();
    expect(scratchOnLiveWarning({ live: 'prod', source: { kind: 'backup', backup: 's3://bkt/k' } })).toMatch(
      /LIVE's server/,
    );
  });

  it('carries --allow-unverified-backup into the workflow input, only with --backup', () => {
    const env = { TENANT_RESTORE_SCRATCH_SERVER: 'scratch' };
    expect(buildStartRequest(base, env).input.allowUnverifiedBackup).toBeUndefined();
    expect(buildStartRequest({ ...base, 'allow-unverified-backup': true }, env).input.allowUnverifiedBackup).toBe(true);
    expect(() =>
      buildStartRequest(
        { ...base, backup: undefined, scratch: 'postgres://x@h/s', 'allow-unverified-backup': true },
        {},
      ),
    ).toThrow(/only goes with --backup/);
  });
});
