/**
 * Issue 23 item 5, without services: `--allow-partial` parses bare, `=<n>` and `<n>`; a count is a whole number; with
 * an explicit list a count is refused (nothing could check it); with a discover, the count must be the number of
 * partial tenants of its list, else the refusal names that number and the ten with the most rows that would come back.
 * The CLI path, against the real stack, is in test/integration/discover.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { checkPartialCount, type PartialTenant } from '../../cli/client/discover';
import { buildStartRequest, parseAllowPartial } from '../../cli/client/start';
import { parseFlags } from '../../cli/commands/common';
import { bareAllowPartial, startCommand } from '../../cli/commands/start';

// A scratch given, not a backup to load: what this file checks does not depend on where a backup would load.
const base = {
  scratch: 'postgres://restore@scratch:5432/app',
  artifacts: 's3://artifacts-bucket/restores/',
  live: 'postgres://restore@db:5432/app',
  'tenant-root': 'app.tenants',
  id: 'r1',
};

const parse = (argv: string[]) =>
  parseFlags(bareAllowPartial(argv), startCommand.flags, startCommand.usage).values['allow-partial'];

describe('--allow-partial on the command line', () => {
  it('the bare flag, anywhere, is the empty value; =<n> and <n> are the count', () => {
    expect(parse(['--allow-partial'])).toBe('');
    expect(parse(['--allow-partial', '--wait'])).toBe('');
    expect(parse(['--wait', '--allow-partial', '--json'])).toBe('');
    expect(parse(['--allow-partial=16', '--wait'])).toBe('16');
    expect(parse(['--allow-partial', '16', '--wait'])).toBe('16');
    expect(parse(['--wait'])).toBeUndefined();
    // After '--' nothing is a flag: left alone (start then refuses the positional).
    expect(bareAllowPartial(['--', '--allow-partial'])).toEqual(['--', '--allow-partial']);
  });

  it('a count is a whole number; anything else is refused with how to say it', () => {
    expect(parseAllowPartial(undefined)).toBeUndefined();
    expect(parseAllowPartial('')).toEqual({});
    expect(parseAllowPartial('0')).toEqual({ count: 0 });
    expect(parseAllowPartial('16')).toEqual({ count: 16 });
    for (const bad of ['yes', '1e1', ' 5', '-1', '2.5', '0x10'])
      expect(() => parseAllowPartial(bad), bad).toThrow(
        `--allow-partial '${bad}': give the number of partial tenants to restore (--allow-partial=<n>)`,
      );
  });

  it('with an explicit list: the bare flag as before, a count refused (nothing could check it before the start)', () => {
    expect(buildStartRequest({ ...base, tenants: '1,2', 'allow-partial': '' }, {}).input.allowPartial).toBe(true);
    expect(buildStartRequest({ ...base, tenants: '1,2' }, {}).input.allowPartial).toBeUndefined();
    expect(() => buildStartRequest({ ...base, tenants: '1,2', 'allow-partial': '2' }, {})).toThrow(
      /^--allow-partial=2: a count is checked against a discover's partial tenants \(--from-discover\)/,
    );
    // From a discover, the count was checked by the command before (checkPartialCount).
    expect(
      buildStartRequest({ ...base, 'allow-partial': '2' }, {}, { discoverId: 'd1', text: '1\n2\n' }).input.allowPartial,
    ).toBe(true);
  });
});

describe('checkPartialCount', () => {
  const tenant = (id: number, missing: Record<string, number>): PartialTenant => ({
    tenantId: String(id),
    rows: Object.values(missing).reduce((s, n) => s + n, 0),
    missing,
  });
  // 12 partial tenants: tenant i misses i comments, tenant 5 also 20 issues; 3 and 4 tie with 11 and 12 below them.
  const partial = Array.from({ length: 12 }, (_, i) =>
    tenant(i + 1, i + 1 === 5 ? { 'app.comments': 5, 'app.issues': 20 } : { 'app.comments': i + 1 }),
  );
  const found = { partial, absent: 7, markdown: 's3://b/p/d1/discover.md' };
  const refusal = (count?: number) => {
    try {
      checkPartialCount('d1', count === undefined ? {} : { count }, found);
    } catch (error) {
      return (error as Error).message;
    }
    throw new Error('not refused');
  };

  it('the right count passes', () => {
    expect(() => checkPartialCount('d1', { count: 12 }, found)).not.toThrow();
  });

  it('the bare flag: refused with the count, the ten with the most rows, and how to say it back', () => {
    const message = refusal();
    expect(message.split('\n')).toEqual([
      "--allow-partial needs the number of partial tenants said back (--allow-partial=<n>): discover d1 found 12 partial tenant(s), whose root row is in live while rows of the backup are missing: damage, or their own users' deletions since the backup, which a restore brings back too.",
      'The 10 with the most rows that would come back (98 row(s) in all):',
      '  tenant 5: 25 row(s) (app.issues 20, app.comments 5)',
      '  tenant 12: 12 row(s) (app.comments 12)',
      '  tenant 11: 11 row(s) (app.comments 11)',
      '  tenant 10: 10 row(s) (app.comments 10)',
      '  tenant 9: 9 row(s) (app.comments 9)',
      '  tenant 8: 8 row(s) (app.comments 8)',
      '  tenant 7: 7 row(s) (app.comments 7)',
      '  tenant 6: 6 row(s) (app.comments 6)',
      '  tenant 4: 4 row(s) (app.comments 4)',
      '  tenant 3: 3 row(s) (app.comments 3)',
      'Read every one in s3://b/p/d1/discover.md. If they are all to come back, start again with --allow-partial=12; without --allow-partial, only the 7 absent tenant(s) (root row gone: purged, or an account closed) are restored. Nothing was started.',
    ]);
  });

  it('a wrong count: refused the same way, naming the number given', () => {
    for (const wrong of [0, 11, 13]) {
      const message = refusal(wrong);
      expect(message).toMatch(new RegExp(`^--allow-partial=${wrong} does not match: discover d1 found 12 partial`));
      expect(message).toContain('start again with --allow-partial=12;');
    }
  });

  it('no partial tenant: the bare flag is refused too, and 0 is the count', () => {
    const none = { partial: [], absent: 3, markdown: 's3://b/p/d1/discover.md' };
    expect(() => checkPartialCount('d1', {}, none)).toThrow(
      /found 0 partial tenant\(s\)[\s\S]*Leave --allow-partial out \(or say --allow-partial=0\) to restore its 3 absent tenant\(s\)\. Nothing was started\.$/,
    );
    expect(() => checkPartialCount('d1', { count: 0 }, none)).not.toThrow();
  });
});
