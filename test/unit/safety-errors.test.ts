/**
 * Issue 11, items 5 and 6 (pure logic): passwords in database references, the reduction of database errors and of
 * pg_restore's stderr, and the classification of PostgreSQL errors into transient and named non-retryable ones.
 */
import { ApplicationFailure } from '@temporalio/common';
import { describe, expect, it } from 'vitest';
import {
  DatabaseRefError,
  hasPassword,
  isRetryableDbError,
  Pools,
  resolveConnectionString,
  sessionTimeouts,
} from '../../activities/db';
import {
  classifyDbError,
  ConstraintViolationError,
  DataError,
  InsufficientPrivilegeError,
  LiveReadOnlyError,
  nonRetryableErrorTypes,
  reduceDbError,
  reduceToolStderr,
  StatementTimeoutError,
  UndefinedObjectError,
  UnexpectedDatabaseError,
} from '../../activities/errors';
import { toActivityFailure } from '../../activities/restore-activities';
import { checkDatabaseRef } from '../../cli/client/input';

/** What node-postgres' DatabaseError carries (pg-protocol parses every field of the server's ErrorResponse). */
function pgError(fields: Record<string, string | undefined>): Error {
  return Object.assign(new Error(fields.message ?? 'x'), { severity: 'ERROR', routine: 'r', ...fields });
}

const secret = 'SECRET-ROW-VALUE-42';

describe('a password in a database reference is refused in every form', () => {
  const withPassword = [
    ['user part', 'postgres://restore:s3cret@db:5432/app'],
    ['user part, postgresql scheme', 'postgresql://restore:s3cret@db/app'],
    ['empty user, password', 'postgres://:s3cret@db/app'],
    ['?password=', 'postgres://restore@db/app?password=s3cret'],
    ['?password= after another parameter', 'postgres://restore@db/app?sslmode=require&password=s3cret'],
    ['?sslpassword=', 'postgres://restore@db/app?sslpassword=s3cret'],
    ['percent-encoded parameter name', 'postgres://restore@db/app?pass%77ord=s3cret'],
    ['another spelling (libpq ignores it, node-postgres reads any key)', 'postgres://restore@db/app?Password=s3cret'],
    ['user= with a password after a colon', 'postgres://db/app?user=restore:s3cret'],
    ['user part with an encoded colon', 'postgres://restore%3As3cret@db/app'],
    [
      'a parameter that is itself a URL with a password',
      'postgres://db/app?dbname=postgres%3A%2F%2Fu%3As3cret%40db%2Fapp',
    ],
    ['database name that is a keyword string with a password', 'postgres://db/host%3Ddb%20password%3Ds3cret'],
    ['multi-host URL (does not parse as a URL)', 'postgres://restore:s3cret@db1:5432,db2:5432/app'],
    ['keyword/value string', 'host=db user=restore password=s3cret dbname=app'],
    ['keyword/value string, spaces around =', 'host=db password = s3cret'],
  ] as const;
  it.each(withPassword)('%s', (_name, ref) => {
    expect(hasPassword(ref)).toBe(true);
    // The CLI refuses it (exit 2) and its message says where the password goes, without echoing it.
    let message = '';
    try {
      checkDatabaseRef('live', ref);
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message).toMatch(/--live carries a password.*PGPASSFILE.*TENANT_RESTORE_DB_<ALIAS>/s);
    expect(message).not.toContain('s3cret');
  });

  it.each([
    ['alias', 'live'],
    ['alias/database', 'live/scratch_x'],
    ['URL without password', 'postgres://restore@db:5432/app'],
    [
      'URL with harmless parameters',
      'postgres://restore@db/app?sslmode=verify-full&application_name=x&passfile=/etc/pgpass',
    ],
    ['user= without password', 'postgres://db/app?user=restore'],
  ])('no password: %s', (_name, ref) => {
    expect(hasPassword(ref)).toBe(false);
    expect(checkDatabaseRef('live', ref)).toBe(ref);
  });

  it('the worker refuses a reference with a password from a workflow input, but resolves its own aliases', () => {
    const env = { TENANT_RESTORE_DB_LIVE: 'postgres://restore:from-env@db/app' };
    const pools = new Pools(env, { refuseInlinePasswords: true });
    expect(() => pools.get('postgres://restore@db/app?password=s3cret')).toThrow(DatabaseRefError);
    expect(() => pools.get('postgres://restore@db/app?password=s3cret')).toThrow(/carries a password.*PGPASSFILE/s);
    expect(nonRetryableErrorTypes).toContain('DatabaseRefError');
    // An alias may hold a password: it lives in the worker's environment, not in history.
    expect(resolveConnectionString('live', env)).toBe(env.TENANT_RESTORE_DB_LIVE);
    void pools.closeAll();
  });

  it('a reference that is neither URL nor alias is not echoed when it carries a password', () => {
    expect(() => resolveConnectionString('host=db password=s3cret')).toThrow(/carries a password/);
    try {
      resolveConnectionString('host=db password=s3cret');
    } catch (error) {
      expect((error as Error).message).not.toContain('s3cret');
    }
  });
});

describe('database errors are reduced before they go anywhere', () => {
  it('a data error keeps its SQLSTATE and drops the value from its message', () => {
    const error = pgError({
      code: '22P02',
      message: `invalid input syntax for type integer: "${secret}"`,
      where: `COPY labels, line 1, column id: "${secret}"`,
      schema: 'app',
      table: 'labels',
      column: 'id',
    });
    const reduced = reduceDbError(error as never);
    expect(reduced).toMatchObject({
      sqlState: '22P02',
      condition: 'invalid_text_representation',
      schema: 'app',
      table: 'labels',
      column: 'id',
    });
    expect(JSON.stringify(reduced)).not.toContain(secret);
    expect(reduced.message).toBe(
      'invalid text representation (SQLSTATE 22P02 invalid_text_representation; table app.labels, column id)',
    );
  });

  it('a unique violation keeps the constraint, drops the key in detail', () => {
    const error = pgError({
      code: '23505',
      message: 'duplicate key value violates unique constraint "labels_pkey"',
      detail: `Key (id)=(${secret}) already exists.`,
      schema: 'app',
      table: 'labels',
      constraint: 'labels_pkey',
    });
    const failure = toActivityFailure(error) as ApplicationFailure;
    expect(failure).toBeInstanceOf(ApplicationFailure);
    expect(failure.type).toBe('ConstraintViolationError');
    expect(failure.nonRetryable).toBe(true);
    expect(failure.cause).toBeUndefined();
    expect(failure.message).toContain('labels_pkey');
    expect(failure.message).toContain('app.labels');
    expect(failure.details).toEqual([
      {
        sqlState: '23505',
        condition: 'unique_violation',
        schema: 'app',
        table: 'labels',
        column: undefined,
        constraint: 'labels_pkey',
      },
    ]);
    expect(JSON.stringify({ m: failure.message, d: failure.details, s: failure.stack })).not.toContain(secret);
  });

  it('a RAISE in a trigger (class P0) and an internal error keep no server message at all', () => {
    for (const code of ['P0001', 'XX000']) {
      const failure = toActivityFailure(
        pgError({ code, message: `row ${secret} refused`, hint: `try ${secret}`, internalQuery: `SELECT '${secret}'` }),
      ) as ApplicationFailure;
      expect(failure.message).not.toContain(secret);
      expect(failure.type).toBe('UnexpectedDatabaseError');
      expect(failure.nonRetryable).toBe(true);
    }
  });

  it('a class whose messages name only objects keeps the message (which grant is missing)', () => {
    const error = pgError({ code: '42501', message: 'permission denied for table labels' });
    const named = classifyDbError(error as never);
    expect(named).toBeInstanceOf(InsufficientPrivilegeError);
    expect(named!.message).toMatch(/permission denied for table labels.*grants\.sql.*README: Grants/);
  });

  it('an error that wraps a database error is reduced too (Temporal would serialize its cause)', () => {
    const wrapped = new Error('copy failed', {
      cause: pgError({
        code: '23514',
        message: 'new row violates check constraint "c"',
        detail: `Failing row contains (${secret}).`,
        table: 't',
        constraint: 'c',
      }),
    });
    const failure = toActivityFailure(wrapped) as ApplicationFailure;
    expect(failure.type).toBe('ConstraintViolationError');
    expect(failure.cause).toBeUndefined();
    expect(failure.message).not.toContain(secret);
  });

  it("pg_restore's stderr keeps the error lines and drops CONTEXT, DETAIL and commands with data", () => {
    const stderr = [
      'pg_restore: while PROCESSING TOC:',
      'pg_restore: from TOC entry 3401; 0 16390 TABLE DATA labels postgres',
      `pg_restore: error: COPY failed for table "labels": ERROR:  invalid input syntax for type integer: "${secret}"`,
      `CONTEXT:  COPY labels, line 1, column id: "${secret}"`,
      'pg_restore: error: could not execute query: ERROR:  duplicate key value violates unique constraint "labels_pkey"',
      `DETAIL:  Key (id)=(${secret}) already exists.`,
      `Command was: INSERT INTO app.labels VALUES (1, '${secret}');`,
      `   continued '${secret}'`,
      `pg_restore: error: value "${secret}" is out of range for type integer`,
      'pg_restore: warning: errors ignored on restore: 3',
    ].join('\n');
    const reduced = reduceToolStderr(stderr);
    expect(reduced).not.toContain(secret);
    expect(reduced).toContain('COPY failed for table "labels": ERROR:  invalid input syntax for type integer: "…"');
    expect(reduced).toContain('duplicate key value violates unique constraint "labels_pkey"');
    expect(reduced).toContain('value "…" is out of range');
    expect(reduced).toContain('errors ignored on restore: 3');
  });
});

describe('only transient database errors are retried', () => {
  it.each(['40001', '40P01', '08006', '08000', '57P01', '57P02', '57P03', '55P03'])(
    '%s is retried (reduced, typed)',
    (code) => {
      const failure = toActivityFailure(
        pgError({ code, message: 'canceling statement due to lock timeout', detail: `Process holds ${secret}` }),
      ) as ApplicationFailure;
      expect(failure).toBeInstanceOf(ApplicationFailure);
      expect(failure.nonRetryable).toBe(false);
      expect(failure.type).toBe(code === '55P03' ? 'LockTimeoutError' : 'TransientDatabaseError');
      expect(failure.message).not.toContain(secret);
      expect(isRetryableDbError(pgError({ code }))).toBe(true);
      expect(classifyDbError(pgError({ code }) as never)).toBeUndefined();
    },
  );

  it.each([
    ['25006', LiveReadOnlyError, /read-only.*standby.*primary/],
    ['42501', InsufficientPrivilegeError, /privilege.*grants\.sql/],
    ['23505', ConstraintViolationError, /constraint/],
    ['23514', ConstraintViolationError, /constraint/],
    ['23503', ConstraintViolationError, /constraint/],
    ['22001', DataError, /does not fit live/],
    ['22P02', DataError, /does not fit live/],
    ['42P01', UndefinedObjectError, /schema changed.*Plan again/],
    ['42703', UndefinedObjectError, /schema changed.*Plan again/],
    ['57014', StatementTimeoutError, /TENANT_RESTORE_STATEMENT_TIMEOUT/],
    ['53100', UnexpectedDatabaseError, /SQLSTATE 53100 disk_full.*will not help/],
  ] as const)('%s becomes a named non-retryable error', (code, type, message) => {
    const named = classifyDbError(pgError({ code, message: 'm' }) as never);
    expect(named).toBeInstanceOf(type);
    expect(named!.message).toMatch(message);
    expect(nonRetryableErrorTypes).toContain(named!.name);
    const failure = toActivityFailure(pgError({ code, message: 'm' })) as ApplicationFailure;
    expect(failure.nonRetryable).toBe(true);
    expect(failure.type).toBe(named!.name);
    expect(isRetryableDbError(pgError({ code }))).toBe(false);
  });

  it('connection loss without a SQLSTATE stays retryable, and other errors pass through', () => {
    expect(isRetryableDbError(Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }))).toBe(true);
    expect(isRetryableDbError(new Error('Connection terminated unexpectedly'))).toBe(true);
    const plain = new Error('Connection terminated unexpectedly');
    expect(toActivityFailure(plain)).toBe(plain);
  });
});

describe('session timeouts', () => {
  it('defaults: a few seconds for locks, an hour for a statement', () => {
    expect(sessionTimeouts({})).toEqual({ lockTimeoutMs: 5_000, statementTimeoutMs: 3_600_000 });
  });
  it('read from the environment, with units', () => {
    expect(sessionTimeouts({ TENANT_RESTORE_LOCK_TIMEOUT: '750', TENANT_RESTORE_STATEMENT_TIMEOUT: '2h' })).toEqual({
      lockTimeoutMs: 750,
      statementTimeoutMs: 7_200_000,
    });
    expect(sessionTimeouts({ TENANT_RESTORE_LOCK_TIMEOUT: '30s', TENANT_RESTORE_STATEMENT_TIMEOUT: '0' })).toEqual({
      lockTimeoutMs: 30_000,
      statementTimeoutMs: 0,
    });
    expect(sessionTimeouts({ TENANT_RESTORE_LOCK_TIMEOUT: '2min' }).lockTimeoutMs).toBe(120_000);
  });
  it('a value that is not a duration is refused with what to write', () => {
    expect(() => sessionTimeouts({ TENANT_RESTORE_LOCK_TIMEOUT: 'soon' })).toThrow(
      /TENANT_RESTORE_LOCK_TIMEOUT='soon' is not a duration.*5s/,
    );
  });
});
