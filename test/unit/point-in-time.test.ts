import { chmodSync, chownSync, mkdirSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  archiveRangeFromInfo,
  invalidPagesOutside,
  lsnValue,
  parseRecoveryLog,
  parseRecoveryTarget,
  previousWalSegment,
  recoveryProblem,
  scratchPaths,
  serverArguments,
  serverEnvironment,
  ensureScratchBase,
  targetOutsideRange,
} from '../../activities/point-in-time';
import { buildStartRequest } from '../../cli/client/start';
import { UsageError } from '../../cli/client/errors';

const info = JSON.stringify([
  {
    name: 'tenant-restore',
    status: { code: 0, message: 'ok' },
    archive: [{ min: '000000010000000000000001', max: '00000001000000000000002A' }],
    backup: [
      {
        label: '20261202-101500F',
        timestamp: { start: 1_796_206_500, stop: 1_796_206_510 },
        lsn: { start: '0/2000028', stop: '0/2000100' },
      },
      {
        label: '20261202-090000F',
        timestamp: { start: 1_796_202_000, stop: 1_796_202_012 },
        lsn: { start: '0/1000028', stop: '0/1000100' },
      },
    ],
  },
]);

describe('point in time: the target', () => {
  it('reads an RFC 3339 time with its zone, or an LSN, and nothing else', () => {
    expect(parseRecoveryTarget('2026-12-02T07:03:00+01:00')).toEqual({
      type: 'time',
      time: '2026-12-02T06:03:00.000Z',
    });
    expect(parseRecoveryTarget('0/3a000060')).toEqual({ type: 'lsn', lsn: '0/3A000060' });
    expect(parseRecoveryTarget('2026-12-02T07:03:00')).toBeUndefined();
    expect(parseRecoveryTarget('yesterday')).toBeUndefined();
    expect(lsnValue('1/0')).toBeGreaterThan(lsnValue('0/FFFFFFFF'));
  });

  it('compares times to the microsecond, as PostgreSQL keeps them: a commit in the target millisecond is after it', () => {
    expect(parseRecoveryTarget('2026-12-02T12:39:24.628123Z')).toEqual({
      type: 'time',
      time: '2026-12-02T12:39:24.628123Z',
    });
    const outcome = parseRecoveryLog(
      'LOG:  recovery stopping before commit of transaction 7, time 2026-12-02 12:39:24.628456+00\n' +
        'LOG:  last completed transaction was at log time 2026-12-02 12:39:24.627901+00\n',
    );
    expect(outcome.stoppedBeforeTime).toBe('2026-12-02T12:39:24.628456Z');
    expect(recoveryProblem(outcome, { type: 'time', time: '2026-12-02T12:39:24.628123Z' })).toBeUndefined();
    expect(recoveryProblem(outcome, { type: 'time', time: '2026-12-02T12:39:24.628456Z' })).toMatch(/stopped before/);
  });

  it('takes the range from pgbackrest info: the end of the oldest backup to the last archived segment', () => {
    const range = archiveRangeFromInfo(info, 'tenant-restore');
    expect(range.backups).toBe(2);
    expect(range.from).toEqual({
      time: new Date(1_796_202_012_000).toISOString(),
      lsn: '0/1000100',
      backup: '20261202-090000F',
    });
    expect(range.to).toEqual({ walSegment: '00000001000000000000002A' });
    expect(archiveRangeFromInfo(info, 'other')).toMatchObject({ backups: 0, status: 'missing stanza' });
  });

  it('refuses a moment before the oldest backup, after the last archived commit, or with no backup, naming the range', () => {
    const range = {
      ...archiveRangeFromInfo(info, 'tenant-restore'),
      to: { walSegment: '00000001000000000000002A', lastCommit: '2026-12-02T10:30:00.000Z' },
    };
    const before = targetOutsideRange(range, { type: 'time', time: '2026-12-01T00:00:00.000Z' });
    expect(before).toMatch(/before the oldest backup ended/);
    expect(before).toContain('20261202-090000F');
    expect(before).toContain('2026-12-02T10:30:00.000Z');
    expect(targetOutsideRange(range, { type: 'time', time: '2026-12-02T10:30:00.000Z' })).toMatch(
      /after the end of the WAL archive.*pg_switch_wal/,
    );
    expect(targetOutsideRange(range, { type: 'time', time: '2026-12-02T10:29:59.000Z' })).toBeUndefined();
    expect(targetOutsideRange(range, { type: 'lsn', lsn: '0/1000000' })).toMatch(/before the oldest backup/);
    expect(targetOutsideRange(range, { type: 'lsn', lsn: '0/5000000' })).toBeUndefined();
    expect(targetOutsideRange(archiveRangeFromInfo('[]', 's'), { type: 'lsn', lsn: '0/1' })).toMatch(/no backup/);
  });

  it('steps back through WAL segment names, across a log boundary', () => {
    expect(previousWalSegment('00000001000000000000002A')).toBe('000000010000000000000029');
    expect(previousWalSegment('000000010000000300000000')).toBe('0000000100000002000000FF');
    expect(previousWalSegment('000000010000000000000000')).toBeUndefined();
  });
});

describe('point in time: what the recovered server says', () => {
  const log = [
    '2026-12-02 10:40:01.100 UTC [901] LOG:  starting point-in-time recovery to 2026-12-02 10:30:00+00',
    '2026-12-02 10:40:01.300 UTC [901] LOG:  restored log file "000000010000000000000028" from archive',
    '2026-12-02 10:40:01.500 UTC [901] LOG:  restored log file "000000010000000000000029" from archive',
    '2026-12-02 10:40:02.000 UTC [901] LOG:  recovery stopping before commit of transaction 4242, time 2026-12-02 10:30:00.25+00',
    '2026-12-02 10:40:02.000 UTC [901] LOG:  redo done at 0/29000100',
    '2026-12-02 10:40:02.000 UTC [901] LOG:  last completed transaction was at log time 2026-12-02 10:29:59.875+00',
    '2026-12-02 10:40:02.100 UTC [901] LOG:  selected new timeline ID: 2',
    '2026-12-02 10:40:02.300 UTC [900] LOG:  database system is ready to accept connections',
  ].join('\n');

  it('finds where recovery stopped, the last transaction replayed and the segments read', () => {
    const outcome = parseRecoveryLog(log);
    expect(outcome).toMatchObject({
      stopped: 'before commit of transaction 4242, time 2026-12-02T10:30:00.250Z',
      stoppedBeforeTime: '2026-12-02T10:30:00.250Z',
      lastTransaction: '2026-12-02T10:29:59.875Z',
      walSegmentsRestored: 2,
      ready: true,
    });
    expect(outcome.fatal).toBeUndefined();
    expect(recoveryProblem(outcome, { type: 'time', time: '2026-12-02T10:30:00.000Z' })).toBeUndefined();
  });

  it('refuses a recovery that stopped elsewhere, or did not say where', () => {
    const outcome = parseRecoveryLog(log);
    // Asked for an earlier moment than the log shows: the last transaction replayed is after it.
    expect(recoveryProblem(outcome, { type: 'time', time: '2026-12-02T10:29:00.000Z' })).toMatch(/last replayed/);
    // Asked for a later one: it stopped before a commit that the target includes.
    expect(recoveryProblem(outcome, { type: 'time', time: '2026-12-02T10:31:00.000Z' })).toMatch(/stopped before/);
    expect(recoveryProblem(parseRecoveryLog('LOG:  database system is ready'), { type: 'lsn', lsn: '0/1' })).toMatch(
      /without saying where/,
    );
    const lsnLog = 'LOG:  recovery stopping after WAL location (LSN) "0/3000060"\n';
    expect(recoveryProblem(parseRecoveryLog(lsnLog), { type: 'lsn', lsn: '0/3000060' })).toBeUndefined();
  });

  it('counts as damage only the ignored invalid pages of the restored database or the shared catalogs', () => {
    const log = [
      'WARNING:  page 3 of relation base/16999/17001 does not exist',
      'WARNING:  page 0 of relation base/16384/2619 is uninitialized',
      'WARNING:  page 7 of relation global/1262 does not exist',
    ].join('\n');
    expect(invalidPagesOutside(log, '16384')).toEqual([
      'page 0 of relation base/16384/2619 is uninitialized',
      'page 7 of relation global/1262 does not exist',
    ]);
    expect(invalidPagesOutside(log.split('\n')[0], '16384')).toEqual([]);
  });

  it('reports a recovery that ended before the target as a FATAL line', () => {
    const outcome = parseRecoveryLog(
      '2026-12-02 10:40:02 UTC [901] FATAL:  recovery ended before configured recovery target was reached\n',
    );
    expect(outcome.fatal).toBe('recovery ended before configured recovery target was reached');
    expect(outcome.ready).toBe(false);
  });

  it('keeps the socket path of a long restore id under the 107 bytes a unix socket allows', () => {
    const paths = scratchPaths('r'.repeat(63), 'h'.repeat(60), {
      TENANT_RESTORE_SCRATCH_DIR: '/tmp/tenant-restore-scratch',
    });
    expect(`${paths.socketDir}/.s.PGSQL.5432`.length).toBeLessThan(107);
    // Named by a digest: the id never reaches a path.
    expect(paths.dataDir).not.toContain('r'.repeat(8));
  });

  it('names directories by a digest of kind, host and id, and never leaves the scratch area (hardening, item 2)', () => {
    const env = { TENANT_RESTORE_SCRATCH_DIR: '/srv/scratch' };
    for (const id of ['../../decoy', '$(touch PWNED)', '/etc', 'a/../../b', '..']) {
      const paths = scratchPaths(id, 'host-1', env);
      for (const path of [paths.root, paths.dataDir, paths.socketDir, paths.tablespaces, paths.marker])
        expect(path.startsWith('/srv/scratch/')).toBe(true);
      expect(paths.root).not.toContain(id);
    }
    // A restore and a discover with one id get two directories; so do two hosts.
    expect(scratchPaths('inc-42', 'h', env, 'restore').root).not.toBe(
      scratchPaths('inc-42', 'h', env, 'discover').root,
    );
    expect(scratchPaths('inc-42', 'h', env).socketDir).not.toBe(scratchPaths('inc-42', 'h2', env).socketDir);
  });

  it('starts the recovered server inert, from an argument list (hardening, items 2 and 3)', () => {
    const args = serverArguments(5432, { dataDir: '/s/d', socketDir: '/s/k', hbaFile: '/s/hba' });
    expect(args.slice(0, 2)).toEqual(['-D', '/s/d']);
    const settings = args.filter((_, i) => args[i - 1] === '-c');
    expect(settings).toEqual(
      expect.arrayContaining([
        'max_logical_replication_workers=0',
        'max_wal_senders=0',
        'shared_preload_libraries=',
        'recovery_end_command=',
        'archive_cleanup_command=',
        'archive_mode=off',
        'listen_addresses=',
      ]),
    );
    // Every setting is its own argument: nothing for a shell to split or expand.
    expect(args.length).toBe(2 + settings.length * 2);
  });
});

describe('point in time: start refuses what it cannot do', () => {
  const base = {
    live: 'live',
    'tenant-root': 'app.tenants',
    tenants: '1,2',
    artifacts: 's3://bucket/restores/',
    id: 'r-pitr-1',
  };
  const refusal = (flags: Record<string, unknown>) => {
    try {
      buildStartRequest({ ...base, ...flags } as never, {});
    } catch (error) {
      expect(error).toBeInstanceOf(UsageError);
      return (error as Error).message;
    }
    throw new Error('accepted');
  };

  it('builds a point-in-time source with the stanza, the target and the database', () => {
    const request = buildStartRequest(
      { ...base, backup: 'pgbackrest:main/app', at: '2026-12-02T07:03:00Z' } as never,
      {},
      undefined,
    );
    expect(request.input.source).toEqual({
      kind: 'point-in-time',
      stanza: 'main',
      target: { type: 'time', time: '2026-12-02T07:03:00.000Z' },
      database: 'app',
    });
  });

  it('says what is wrong and what to give', () => {
    expect(refusal({ backup: 'pgbackrest:main' })).toMatch(/give --at/);
    expect(refusal({ backup: 'pgbackrest:main', at: 'last tuesday' })).toMatch(/neither an RFC 3339 time/);
    expect(refusal({ backup: 'pgbackrest:main', at: '2999-01-01T00:00:00Z' })).toMatch(/in the future/);
    expect(refusal({ backup: 'pgbackrest:', at: '0/1' })).toMatch(/pgbackrest:<stanza>/);
    expect(refusal({ backup: 'pgbackrest:main', at: '0/1', 'scratch-server': 'x' })).toMatch(
      /--scratch-server does not go/,
    );
    expect(refusal({ backup: 'pgbackrest:main', at: '0/1', artifacts: undefined })).toMatch(/--artifacts/);
  });

  it('builds an incident window from --from and --to, with its conflicts policy (issue 26)', () => {
    const window = { backup: 'pgbackrest:main/app', from: '0/3A000060', to: '0/3A01F2D8' };
    const request = buildStartRequest({ ...base, ...window } as never, {}, undefined);
    expect(request.input.source).toEqual({
      kind: 'point-in-time',
      stanza: 'main',
      target: { type: 'lsn', lsn: '0/3A000060' },
      until: { type: 'lsn', lsn: '0/3A01F2D8' },
      database: 'app',
    });
    expect(request.input.windowConflicts).toBe('refuse');
    expect(request.input.conflict).toBe('skip');
    const reporting = buildStartRequest({ ...base, ...window, conflicts: 'report' } as never, {}, undefined);
    expect(reporting.input.windowConflicts).toBe('report');
  });

  it('refuses a window it cannot revert exactly, saying why (issue 26)', () => {
    const window = { backup: 'pgbackrest:main', from: '0/3A000060', to: '0/3A01F2D8' };
    expect(refusal({ backup: 'pgbackrest:main', from: '0/3A000060' })).toMatch(
      /needs both ends: --from <T0>.*--to <T1>/,
    );
    expect(refusal({ ...window, at: '0/1' })).toMatch(/--at and --from\/--to both say where to recover to/);
    expect(refusal({ ...window, from: '0/3A01F2D8', to: '0/3A000060' })).toMatch(/is not before --to/);
    expect(refusal({ ...window, from: '2026-12-02T07:00:00Z' })).toMatch(/both as times, or both as LSNs/);
    expect(refusal({ ...window, to: '2999-01-01T00:00:00Z', from: '2026-12-02T07:00:00Z' })).toMatch(
      /--to .* in the future/,
    );
    expect(refusal({ ...window, conflict: 'overwrite' })).toMatch(
      /--conflict overwrite does not go with an incident window/,
    );
    expect(refusal({ ...window, 'allow-partial': '' })).toMatch(/--allow-partial does not go with an incident window/);
    expect(refusal({ ...window, conflicts: 'maybe' })).toMatch(/--conflicts 'maybe': refuse .* or report/);
    expect(refusal({ backup: 'pgbackrest:main', at: '0/1', conflicts: 'report' })).toMatch(
      /--conflicts goes with an incident window/,
    );
    expect(refusal({ backup: 's3://bucket/backup.dump', from: '0/1', to: '0/2' })).toMatch(/need a WAL archive/);
  });
});

describe('the scratch area is the worker’s own (hardening, item 2)', () => {
  const base = () => join(tmpdir(), `scratch-area-${process.pid}-${Math.random().toString(36).slice(2)}`);
  const mode = process.getuid?.() === 0 ? 0o711 : 0o700;

  it('is created with no permission for anyone else, and accepted as it is afterwards', async () => {
    const dir = base();
    await ensureScratchBase(dir);
    expect(statSync(dir).mode & 0o777).toBe(mode);
    await ensureScratchBase(dir);
    rmSync(dir, { recursive: true });
  });

  it('refuses one that others can write to, a symbolic link, or one owned by another user', async () => {
    const wide = base();
    mkdirSync(wide, { mode: 0o777 });
    chmodSync(wide, 0o777);
    await expect(ensureScratchBase(wide)).rejects.toThrow(/cannot be trusted: its mode is 777, wider than 7[01][01]/);
    const link = base();
    symlinkSync(wide, link);
    await expect(ensureScratchBase(link)).rejects.toThrow(/it is a symbolic link/);
    if (process.getuid?.() === 0) {
      const foreign = base();
      mkdirSync(foreign, { mode: 0o700 });
      chownSync(foreign, 65534, 65534);
      await expect(ensureScratchBase(foreign)).rejects.toThrow(/owned by uid 65534, not this worker's uid 0/);
      rmSync(foreign, { recursive: true });
    }
    rmSync(link);
    rmSync(wide, { recursive: true });
  });

  it('starts the recovered server with none of the worker’s secrets in its environment', () => {
    const env = serverEnvironment({
      TENANT_RESTORE_DB_LIVE: 'postgres://u:pw@db/live',
      AWS_SECRET_ACCESS_KEY: 'x',
      PGBACKREST_CONFIG: '/etc/pgbackrest.conf',
      PGPASSWORD: 'pw',
    });
    expect(Object.keys(env).sort()).toEqual(['LANG', 'LC_ALL', 'PATH', 'PGBACKREST_CONFIG']);
  });
});
