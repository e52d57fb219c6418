import { describe, expect, it } from 'vitest';
import {
  DatabaseRefError,
  hasPassword,
  isRetryableDbError,
  redactUrl,
  resolveConnectionString,
  withDatabase,
} from '../../activities/db';

describe('database references', () => {
  it('redacts passwords so that URLs can travel through workflow history', () => {
    expect(redactUrl('postgres://restore:s3cret@db.internal:5432/app')).toBe('postgres://restore@db.internal:5432/app');
    expect(redactUrl('postgres://restore@db.internal:5432/app')).toBe('postgres://restore@db.internal:5432/app');
    expect(hasPassword('postgres://restore:s3cret@db/app')).toBe(true);
    expect(hasPassword('postgres://restore@db/app')).toBe(false);
    expect(hasPassword('live')).toBe(false);
  });

  it('resolves an alias from the environment, and explains an unknown one', () => {
    expect(resolveConnectionString('live', { TENANT_RESTORE_DB_LIVE: 'postgres://a@b/c' })).toBe('postgres://a@b/c');
    expect(() => resolveConnectionString('live', {})).toThrow(/TENANT_RESTORE_DB_LIVE/);
    expect(() => resolveConnectionString('not a url', {})).toThrow(DatabaseRefError);
  });

  it('swaps the database of a URL', () => {
    expect(withDatabase('postgres://u@h:1/live', 'scratch_r1')).toBe('postgres://u@h:1/scratch_r1');
  });

  it('retries only SQLSTATEs meant to be retried', () => {
    expect(isRetryableDbError({ code: '40P01' })).toBe(true);
    expect(isRetryableDbError({ code: '57P03' })).toBe(true);
    expect(isRetryableDbError({ code: 'ECONNREFUSED' })).toBe(true);
    expect(isRetryableDbError({ code: '23505' })).toBe(false);
    expect(isRetryableDbError({ code: '42P01' })).toBe(false);
  });
});
