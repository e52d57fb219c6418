/**
 * Issue 11, items 3 and 4, the pure parts: a scratch name is the restore's own, a scratch is reused or rebuilt only
 * when its marker names the restore, and a backup is read from its first bytes (never run) and its header versions.
 */
import { describe, expect, it } from 'vitest';
import {
  describeBackupBytes,
  newerArchiveMessage,
  newerArchiveProblem,
  parseArchiveHeader,
  parseScratchMarker,
  scratchDatabaseName,
  scratchKinds,
  scratchOwnership,
  type ScratchMarker,
} from '../../activities/scratch';
import { buildStartRequest, scratchOnLiveWarning } from '../../cli/client/start';

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

  it('gives a discover, a restore and a drill with the same id three scratches (issue 23, N5)', () => {
    const names = scratchKinds.map((kind) => scratchDatabaseName('inc-42', kind));
    expect(new Set(names).size).toBe(3);
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
  };

  it('reuses only a loaded scratch of the same restore and archive; rebuilds its own; never takes another one', () => {
    const db = (marker: ScratchMarker | null, empty = false) => ({ exists: true as const, marker, empty });
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

  it('reads only tenant-restore JSON as a marker', () => {
    expect(parseScratchMarker(JSON.stringify(loaded))).toEqual(loaded);
    expect(parseScratchMarker('production database, do not drop')).toBeNull();
    expect(parseScratchMarker(JSON.stringify({ tool: 'other', restoreId: 'r-1' }))).toBeNull();
    expect(parseScratchMarker(null)).toBeNull();
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
