/**
 * workflows/admission.ts: which tenants of a unit go on after preflight (issue 11, item 1). Pure logic.
 */
import { describe, expect, it } from 'vitest';
import type { PreflightResult } from '../../activities/restore-types';
import { admitTenants, mustReshape } from '../../workflows/admission';

const preflight = (tenants: PreflightResult['tenants']): PreflightResult => ({
  tenantId: '1',
  liveState: 'absent',
  tenants,
  rowsInBackup: {},
  conflicts: {},
});
const states = preflight({
  '1': { state: 'absent' },
  '2': { state: 'present', missing: {} },
  '3': { state: 'partial', missing: { 'app.comments': 2, 'app.issues': 1 } },
});

describe('admitTenants', () => {
  it('refuses present and partial tenants by default, with their class and counts', () => {
    const a = admitTenants(states, ['1', '2', '3'], {});
    expect(a.absent).toEqual(['1']);
    expect(a.partial).toEqual([]);
    expect(a.refused.map((r) => [r.tenantId, r.state])).toEqual([
      ['2', 'present'],
      ['3', 'partial'],
    ]);
    expect(a.refused[0]!.message).toMatch(
      /Tenant 2 is present in live.*Nothing of it was written.*remove it from the tenant list/,
    );
    expect(a.refused[1]!.message).toMatch(
      /3 row\(s\) of the backup are missing \(app.comments: 2, app.issues: 1\).*--allow-partial/,
    );
    expect(a.refused[1]!.missing).toEqual({ 'app.comments': 2, 'app.issues': 1 });
    expect(mustReshape(a, false)).toBe(true);
  });

  it('lets partial tenants through with allowPartial, each to go alone; present ones stay refused', () => {
    const a = admitTenants(states, ['1', '2', '3'], { allowPartial: true });
    expect(a.absent).toEqual(['1']);
    expect(a.partial).toEqual(['3']);
    expect(a.refused.map((r) => r.tenantId)).toEqual(['2']);
    // A partial tenant alone is its own unit: nothing to reshape for it.
    expect(mustReshape(admitTenants(states, ['3'], { allowPartial: true }), true)).toBe(false);
    expect(mustReshape(admitTenants(states, ['3'], { allowPartial: true }), false)).toBe(true);
  });

  it('never refuses a tenant this restore already admitted (its own copy made it present)', () => {
    const a = admitTenants(states, ['1', '2'], { admitted: ['2'] });
    expect(a.absent).toEqual(['1', '2']);
    expect(a.refused).toEqual([]);
    expect(mustReshape(a, false)).toBe(false);
  });

  it('takes a preflight result of an earlier release (no per-tenant states) as absent, as it was restored then', () => {
    const a = admitTenants(preflight(undefined), ['1', '2'], {});
    expect(a.absent).toEqual(['1', '2']);
    expect(mustReshape(a, false)).toBe(false);
  });

  describe('in an incident window (issue 26)', () => {
    const withFour = preflight({
      '1': { state: 'absent' },
      '2': { state: 'present', missing: {} },
      '3': { state: 'partial', missing: { 'app.comments': 2 } },
      '4': { state: 'present', missing: {} },
    });

    it('admits a touched tenant whose root stayed (present or partial) as partial, alone; refuses an untouched one', () => {
      const a = admitTenants(withFour, ['1', '2', '3', '4'], {
        window: { touched: ['1', '2', '3'], conflicted: [], refuseConflicts: true },
      });
      expect(a.absent).toEqual(['1']);
      expect(a.partial).toEqual(['2', '3']);
      expect(a.refused.map((r) => [r.tenantId, r.type])).toEqual([['4', 'NotInWindow']]);
      expect(a.refused[0]!.message).toMatch(/window deleted and changed nothing of it.*Nothing of it was written/);
    });

    it('refuses a tenant with conflicts unless the operator said --conflicts report', () => {
      const window = { touched: ['1', '2', '3'], conflicted: ['2'], refuseConflicts: true };
      const refused = admitTenants(withFour, ['1', '2', '3'], { window });
      expect(refused.refused.map((r) => [r.tenantId, r.type])).toEqual([['2', 'WindowConflict']]);
      expect(refused.refused[0]!.message).toMatch(/--conflicts report/);
      const reported = admitTenants(withFour, ['1', '2', '3'], { window: { ...window, refuseConflicts: false } });
      expect(reported.refused).toEqual([]);
      expect(reported.partial).toEqual(['2', '3']);
    });

    it('does not refuse again a tenant this restore already wrote (admitted on evidence)', () => {
      const a = admitTenants(withFour, ['2'], {
        admitted: ['2'],
        window: { touched: ['2'], conflicted: ['2'], refuseConflicts: true },
      });
      expect(a.absent).toEqual(['2']);
      expect(a.refused).toEqual([]);
    });
  });
});
