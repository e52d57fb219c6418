/**
 * Units sized by rows (issue 25): the next unit's tenant count from the rows per tenant the finished units copied.
 */
import { describe, expect, it } from 'vitest';
import { unitSize } from '../../workflows/units';

describe('unitSize', () => {
  it('takes the group size while no unit has finished, or when units are sized in tenants', () => {
    expect(unitSize({ unitRows: 100_000 }, {}, 20)).toBe(20);
    expect(unitSize({ unitRows: 100_000 }, { rowsSeen: { rows: 0, tenants: 0 } }, 20)).toBe(20);
    expect(unitSize({}, { rowsSeen: { rows: 1_000, tenants: 10 } }, 20)).toBe(20);
  });

  it('fits unitRows at the rows per tenant seen, at least one tenant and at most a page', () => {
    expect(unitSize({ unitRows: 100_000 }, { rowsSeen: { rows: 39_000, tenants: 20 } }, 20)).toBe(51);
    expect(unitSize({ unitRows: 100_000 }, { rowsSeen: { rows: 380, tenants: 20 } }, 20)).toBe(500);
    expect(unitSize({ unitRows: 100_000 }, { rowsSeen: { rows: 5_000_000, tenants: 1 } }, 20)).toBe(1);
    // Empty tenants (a root row each, or nothing): as many as a page holds.
    expect(unitSize({ unitRows: 100_000 }, { rowsSeen: { rows: 0, tenants: 40 } }, 20)).toBe(500);
  });
});
