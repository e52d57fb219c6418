/**
 * Issue 23, item 7 ("smaller ones from the same review"), the pure parts: drill databases get owned names and a marker
 * of their own (N14); the metrics endpoint binds 127.0.0.1 unless an address is given (N10); `env:` webhook headers
 * read only TENANT_RESTORE_WEBHOOK_* variables, refused at config validation and by the worker (N11).
 */
import { describe, expect, it } from 'vitest';
import { envHeaderProblem, parseConfig, webhookEnvPrefix } from '../../activities/config';
import { drillDatabaseIsOwn, drillDatabaseName, parseDrillDatabaseMarker } from '../../activities/drill';
import { InvalidConfigError } from '../../activities/errors';
import { resolveHeaders } from '../../activities/reenable';
import { scratchDatabaseName } from '../../activities/scratch';
import { metricsBindAddress } from '../../workers/worker';

describe('drill databases are owned (N14)', () => {
  it('never maps two drill ids to one database, however they sanitize, and stays within 63 bytes', () => {
    // These two were both drill_weekly_1: one drill dropped the other's database WITH (FORCE).
    expect(drillDatabaseName('Weekly.1')).not.toBe(drillDatabaseName('weekly-1'));
    expect(drillDatabaseName('weekly-1')).toMatch(/^drill_weekly_1_[0-9a-f]{12}$/);
    expect(drillDatabaseName('weekly-1')).toBe(drillDatabaseName('weekly-1'));
    expect(Buffer.byteLength(drillDatabaseName('x'.repeat(57)))).toBeLessThanOrEqual(63);
    expect(drillDatabaseName(`${'x'.repeat(56)}1`)).not.toBe(drillDatabaseName(`${'x'.repeat(56)}2`));
    // Nor is it the drill's scratch (whose restore id is drill-<id>).
    expect(drillDatabaseName('weekly-1')).not.toBe(scratchDatabaseName('drill-weekly-1', 'drill'));
  });

  it('takes a database for its own only by its marker, or when it has no comment and holds nothing', () => {
    const marker = JSON.stringify({
      tool: 'tenant-restore',
      kind: 'drill-database',
      drillId: 'weekly-1',
      state: 'ready',
      createdAt: '2026-01-01T00:00:00Z',
    });
    const own = (comment: string | null, empty = false) =>
      drillDatabaseIsOwn({ comment, marker: parseDrillDatabaseMarker(comment), empty }, 'weekly-1');
    expect(own(marker)).toBe(true);
    expect(own(marker.replace('weekly-1', 'Weekly.1'))).toBe(false);
    expect(own(null, true)).toBe(true);
    expect(own(null, false)).toBe(false);
    // A scratch's marker, or any other comment, is not a drill database's, even on an empty database.
    expect(own(JSON.stringify({ tool: 'tenant-restore', kind: 'drill', restoreId: 'drill-weekly-1' }), true)).toBe(
      false,
    );
    expect(own('production, do not drop', true)).toBe(false);
  });
});

describe('the metrics endpoint binds 127.0.0.1 unless an address is given (N10)', () => {
  const bind = (value?: string) =>
    metricsBindAddress(value === undefined ? {} : { TENANT_RESTORE_METRICS_ADDRESS: value });

  it('serves nothing when unset, loopback for a port alone, and exactly the address given otherwise', () => {
    expect(bind()).toBeUndefined();
    expect(bind('')).toBeUndefined();
    expect(bind('9464')).toBe('127.0.0.1:9464');
    expect(bind(':9464')).toBe('127.0.0.1:9464');
    expect(bind('10.0.0.5:9464')).toBe('10.0.0.5:9464');
    expect(bind('[::1]:9464')).toBe('[::1]:9464');
  });

  it('refuses what is not a port or an <ip>:<port>, saying what to give', () => {
    for (const value of ['localhost:9464', '0.0.0.0', '9464x', '70000', '300.1.1.1:9464', 'http://0.0.0.0:9464']) {
      expect(() => bind(value), value).toThrow(
        /is not a port or an <ip>:<port>: give a port \(9464: served on 127\.0\.0\.1 only\)/,
      );
    }
  });
});

describe('env: webhook headers read only TENANT_RESTORE_WEBHOOK_* (N11)', () => {
  const problemsOf = (headers: Record<string, string>): string[] => {
    try {
      parseConfig(
        JSON.stringify({
          actions: [{ name: 'notify', type: 'webhook', url: 'https://hooks.example.com/x', headers }],
        }),
      );
    } catch (error) {
      expect(error).toBeInstanceOf(InvalidConfigError);
      return (error as Error).message.split('\n  - ').slice(1);
    }
    return [];
  };
  const refusal = (header: string, variable: string) =>
    `actions[0].headers.${header}: reads '${variable}' from the worker's environment, but a webhook header may only read variables named TENANT_RESTORE_WEBHOOK_<NAME> (the environment also holds database URLs and cloud keys): set TENANT_RESTORE_WEBHOOK_<NAME> on the workers to the value to send, and write 'env:TENANT_RESTORE_WEBHOOK_<NAME>' here`;

  it('refuses, at config validation, a header that would read the database URLs or cloud keys of the worker', () => {
    expect(webhookEnvPrefix).toBe('TENANT_RESTORE_WEBHOOK_');
    expect(problemsOf({ Authorization: 'env:TENANT_RESTORE_DB_LIVE' })).toEqual([
      refusal('Authorization', 'TENANT_RESTORE_DB_LIVE'),
    ]);
    expect(problemsOf({ 'X-Key': 'env:AWS_SECRET_ACCESS_KEY', 'X-Source': 'env:HOSTNAME' })).toEqual([
      refusal('X-Key', 'AWS_SECRET_ACCESS_KEY'),
      refusal('X-Source', 'HOSTNAME'),
    ]);
    // The prefix alone, another case, or something that is no variable name.
    for (const variable of ['TENANT_RESTORE_WEBHOOK_', 'tenant_restore_webhook_token', 'TENANT_RESTORE_WEBHOOK_A-B'])
      expect(envHeaderProblem(`env:${variable}`), variable).toBeDefined();
    expect(
      problemsOf({ Authorization: 'env:TENANT_RESTORE_WEBHOOK_APPS_TOKEN', 'X-Source': 'tenant-restore' }),
    ).toEqual([]);
  });

  it('the worker refuses it too, for an input that did not go through validation, and reads the prefixed ones', () => {
    const env = { TENANT_RESTORE_DB_LIVE: 'postgres://u:pw@h/db', TENANT_RESTORE_WEBHOOK_T: 'Bearer x' };
    expect(() => resolveHeaders({ 'X-Leak': 'env:TENANT_RESTORE_DB_LIVE' }, env)).toThrow(
      /Header X-Leak of a webhook reads 'TENANT_RESTORE_DB_LIVE' from the worker's environment, but a webhook header may only read variables named TENANT_RESTORE_WEBHOOK_<NAME>/,
    );
    expect(resolveHeaders({ Authorization: 'env:TENANT_RESTORE_WEBHOOK_T' }, env)).toEqual({
      Authorization: 'Bearer x',
    });
  });
});
