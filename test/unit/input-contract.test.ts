/**
 * The input contract's pieces (activities/input-contract/): one rule each, shared by the command line, the config
 * file and the worker, so that what one accepts the others accept too (hardening, item 1).
 */
import { describe, expect, it } from 'vitest';
import { configProblems } from '../../activities/config';
import {
  bulkRestoreInput,
  databaseRefProblem,
  inputProblems,
  parseRecoveryTarget,
  qualifiedNamePattern,
  recoveryTarget,
} from '../../activities/input-contract';
import { checkTenantRoot } from '../../cli/client/input';

describe('the input contract', () => {
  it('has one schema.table rule: the command line and the config file agree on every name', () => {
    for (const name of ['public.tenants', 'App Data."Tenants"', 'données.clients', 'a.b c']) {
      expect(qualifiedNamePattern.test(name)).toBe(true);
      expect(checkTenantRoot(name)).toBe(name);
      expect(configProblems({ excludeTables: [name] })).toEqual([]);
    }
    for (const name of ['tenants', 'a.b.c', 'a.\nb', '.b', 'a.']) {
      expect(qualifiedNamePattern.test(name)).toBe(false);
      expect(() => checkTenantRoot(name)).toThrow(/schema\.table/);
      expect(configProblems({ excludeTables: [name] }).join()).toMatch(/schema\.table/);
    }
  });

  it('takes a recovery target only in the form it renders itself', () => {
    const parsed = parseRecoveryTarget('2026-12-02T08:03:00.5+01:00');
    expect(parsed).toEqual({ type: 'time', time: '2026-12-02T07:03:00.500Z' });
    expect(recoveryTarget.safeParse(parsed).success).toBe(true);
    for (const time of ['2026-12-02T08:03:00+01:00', "2026-12-02T07:03:00Z'\nrecovery_end_command='x'", 'soon', ''])
      expect(recoveryTarget.safeParse({ type: 'time', time }).success).toBe(false);
    expect(recoveryTarget.safeParse({ type: 'lsn', lsn: '0/3A000060' }).success).toBe(true);
    expect(recoveryTarget.safeParse({ type: 'lsn', lsn: '0/3a000060' }).success).toBe(false);
  });

  it('refuses a database reference with a password without echoing it, and names every bad field at once', () => {
    expect(databaseRefProblem('postgres://u:hunter2@db/live')).not.toContain('hunter2');
    expect(databaseRefProblem('live')).toBeUndefined();
    expect(databaseRefProblem('live/scratch_1')).toBeUndefined();
    const parsed = bulkRestoreInput.safeParse({
      restoreId: '../x',
      source: { kind: 'scratch', scratch: 'scratch' },
      live: 'postgres://u:hunter2@db/live',
      tenantRoot: 'tenants',
      tenants: ['1'],
      conflict: 'merge',
      concurrency: 1,
      artifacts: { bucket: 'tenant-restore', prefix: 'r/' },
    });
    expect(parsed.success).toBe(false);
    const problems = inputProblems(parsed.error!);
    expect(problems.map((p) => p.split(':')[0])).toEqual(['restoreId', 'live', 'tenantRoot', 'conflict']);
    expect(problems.join()).not.toContain('hunter2');
  });
});
