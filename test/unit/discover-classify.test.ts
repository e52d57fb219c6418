/**
 * Discover's pure half (activities/discover.ts): `classify` turns the per-table comparisons into one class per tenant,
 * `summarize` counts the classes, ranks the tables most affected and raises the loud warnings. Hand-made comparisons,
 * no database: the integration suite (test/integration/discover.test.ts) runs the SQL that produces them.
 */
import { describe, expect, it } from 'vitest';
import { classify, summarize, tenantClasses, type TableComparison } from '../../activities/discover';

const root = 'app.tenants';
const plan = { tenantRoot: root };

type Difference = TableComparison['differences'][number];
/** [tenant, rows in backup, rows in live, missing, added, changed] */
const d = (tenant: string, inBackup: number, inLive: number, missing = 0, added = 0, changed = 0): Difference => [
  tenant,
  inBackup,
  inLive,
  missing,
  added,
  changed,
];

function comparison(table: string, differences: Difference[], totals: Partial<TableComparison> = {}): TableComparison {
  return {
    table,
    role: table === root ? 'root' : 'owned',
    rowsInBackup: 0,
    rowsInLive: 0,
    tenantsInBackup: 0,
    tenantsInLive: 0,
    differences,
    ...totals,
  };
}

/**
 * 20 tenants in the backup (1..20), 19 in live: 1 deleted (absent), 21 created in live only (new); 2, 3 and 4 lost
 * rows of child tables (partial); 5 changed content; 6 only grew; 7 changed its root row; the others are intact.
 */
function incident(): TableComparison[] {
  return [
    comparison(root, [d('1', 1, 0, 1), d('21', 0, 1, 0, 1), d('7', 1, 1, 0, 0, 1)], {
      tenantsInBackup: 20,
      tenantsInLive: 20,
      rowsInBackup: 20,
      rowsInLive: 20,
    }),
    comparison('app.users', [
      d('1', 3, 0, 3),
      d('2', 3, 0, 3),
      d('21', 0, 2, 0, 2),
      d('5', 3, 3, 0, 0, 2),
      d('6', 3, 4, 0, 1),
    ]),
    comparison('app.comments', [d('1', 12, 0, 12), d('3', 12, 10, 2), d('4', 12, 11, 1, 0, 0), d('6', 12, 14, 0, 2)]),
    comparison('app.billing_accounts', [d('1', 1, 0, 1), d('4', 1, 0, 1), d('21', 0, 1, 0, 1)]),
  ];
}

const byId = (tenants: ReturnType<typeof classify>['tenants']) => new Map(tenants.map((t) => [t.tenantId, t]));

describe('classify', () => {
  it('absent: the root row is missing in live, whatever else differs; its missing rows per table are kept', () => {
    const t = byId(classify(plan, incident()).tenants).get('1')!;
    expect(t.class).toBe('absent');
    expect(t.missing).toEqual({ [root]: 1, 'app.users': 3, 'app.comments': 12, 'app.billing_accounts': 1 });
  });

  it('new: a root row only live has, and its rows in other tables are counted as added', () => {
    const t = byId(classify(plan, incident()).tenants).get('21')!;
    expect(t.class).toBe('new');
    expect(t.added).toEqual({ [root]: 1, 'app.users': 2, 'app.billing_accounts': 1 });
    expect(t.missing).toBeUndefined();
  });

  it('partial: root present, rows missing in some other table (all of a table, or a few rows)', () => {
    const tenants = byId(classify(plan, incident()).tenants);
    expect(tenants.get('2')).toMatchObject({ class: 'partial', missing: { 'app.users': 3 } });
    expect(tenants.get('3')).toMatchObject({ class: 'partial', missing: { 'app.comments': 2 } });
    expect(tenants.get('4')).toMatchObject({
      class: 'partial',
      missing: { 'app.comments': 1, 'app.billing_accounts': 1 },
    });
  });

  it('partial wins over changed and grown: a missing row is what a restore brings back', () => {
    const tenants = byId(
      classify(plan, [
        comparison(root, [d('9', 1, 1, 0, 0, 1)], { tenantsInBackup: 10, tenantsInLive: 10 }),
        comparison('app.users', [d('9', 3, 3, 1, 1, 1)]),
      ]).tenants,
    );
    expect(tenants.get('9')).toMatchObject({
      class: 'partial',
      missing: { 'app.users': 1 },
      added: { 'app.users': 1 },
      changed: { [root]: 1, 'app.users': 1 },
    });
  });

  it('changed: the same keys with other content (in a child table, or the root row itself)', () => {
    const tenants = byId(classify(plan, incident()).tenants);
    expect(tenants.get('5')).toMatchObject({ class: 'changed', changed: { 'app.users': 2 } });
    expect(tenants.get('5')!.missing).toBeUndefined();
    expect(tenants.get('7')).toMatchObject({ class: 'changed', changed: { [root]: 1 } });
  });

  it('changed wins over grown', () => {
    const tenants = byId(
      classify(plan, [
        comparison(root, [], { tenantsInBackup: 10, tenantsInLive: 10 }),
        comparison('app.users', [d('8', 3, 4, 0, 1)]),
        comparison('app.comments', [d('8', 5, 5, 0, 0, 1)]),
      ]).tenants,
    );
    expect(tenants.get('8')).toMatchObject({
      class: 'changed',
      added: { 'app.users': 1 },
      changed: { 'app.comments': 1 },
    });
  });

  it('grown: only rows added since the backup', () => {
    const t = byId(classify(plan, incident()).tenants).get('6')!;
    expect(t).toMatchObject({ class: 'grown', added: { 'app.users': 1, 'app.comments': 2 } });
    expect(t.missing).toBeUndefined();
    expect(t.changed).toBeUndefined();
  });

  it('lists only tenants with a difference; the totals come from the root table', () => {
    const result = classify(plan, incident());
    expect(result.tenants.map((t) => t.tenantId).sort()).toEqual(['1', '2', '21', '3', '4', '5', '6', '7']);
    expect(result.tenantsInBackup).toBe(20);
    expect(result.tenantsInLive).toBe(20);
  });

  it('an id with rows but no root row in the backup, and not created in live, is an orphan: reported, not classified', () => {
    const comparisons = [
      comparison(root, [d('21', 0, 1, 0, 1)], { tenantsInBackup: 20, tenantsInLive: 21 }),
      // 99: rows linked to a tenant only in code, whose root is gone on both sides; 21 is new, its rows are its own.
      { ...comparison('app.users', [d('99', 2, 0, 2), d('21', 0, 1, 0, 1)]), unrooted: ['99', '21'] },
    ];
    const classified = classify(plan, comparisons);
    expect(classified.orphans).toEqual(['99']);
    expect(classified.tenants.map((t) => [t.tenantId, t.class])).toEqual([['21', 'new']]);
    const summary = summarize(comparisons, classified);
    expect(summary.counts.partial).toBe(0);
    expect(summary.counts.intact).toBe(20);
    expect(summary.warnings.join()).toMatch(
      /rows of 1 id\(s\) with no root row in the backup or in live differ \(99\)/,
    );
  });

  it('refuses comparisons without the tenant root', () => {
    expect(() => classify(plan, [comparison('app.users', [d('1', 1, 0, 1)])])).toThrow(/tenant root app\.tenants/);
  });
});

describe('summarize', () => {
  it('counts each class; intact is the backup tenants with no difference', () => {
    const comparisons = incident();
    const s = summarize(comparisons, classify(plan, comparisons));
    expect(s.counts).toEqual({ absent: 1, partial: 3, changed: 2, grown: 1, intact: 13, new: 1 });
    expect(Object.keys(s.counts).sort()).toEqual([...tenantClasses].sort());
    expect(s.tenantsInBackup).toBe(20);
    expect(s.tenantsInLive).toBe(20);
    expect(s.warnings).toEqual([]);
  });

  it('mostAffected: tables by rows missing from live, most first, with the tenants that lack rows; none missing: left out', () => {
    const comparisons = incident();
    const s = summarize(comparisons, classify(plan, comparisons));
    expect(s.mostAffected).toEqual([
      { table: 'app.comments', missingRows: 15, tenants: 3 },
      { table: 'app.users', missingRows: 6, tenants: 2 },
      { table: 'app.billing_accounts', missingRows: 2, tenants: 2 },
      { table: root, missingRows: 1, tenants: 1 },
    ]);
  });

  it('mostAffected keeps at most 10 tables', () => {
    const comparisons = [
      comparison(root, [], { tenantsInBackup: 5, tenantsInLive: 5 }),
      ...Array.from({ length: 14 }, (_, i) => comparison(`app.t${i}`, [d('2', 20, 20 - i - 1, i + 1)])),
    ];
    const s = summarize(comparisons, classify(plan, comparisons));
    expect(s.mostAffected).toHaveLength(10);
    expect(s.mostAffected.map((m) => m.missingRows)).toEqual([14, 13, 12, 11, 10, 9, 8, 7, 6, 5]);
  });

  it('an empty live: every backup tenant absent, and a warning that says to check --live', () => {
    const ids = Array.from({ length: 30 }, (_, i) => String(i + 1));
    const comparisons = [
      comparison(
        root,
        ids.map((id) => d(id, 1, 0, 1)),
        { tenantsInBackup: 30, tenantsInLive: 0 },
      ),
      comparison(
        'app.users',
        ids.map((id) => d(id, 2, 0, 2)),
      ),
    ];
    const s = summarize(comparisons, classify(plan, comparisons));
    expect(s.counts.absent).toBe(30);
    expect(s.counts.intact).toBe(0);
    expect(s.warnings).toHaveLength(1);
    expect(s.warnings[0]).toMatch(/live has no tenant at all/);
    expect(s.warnings[0]).toContain('Check --live');
  });

  it('an empty backup: every tenant of live new, and a warning that says to check --backup', () => {
    const comparisons = [comparison(root, [d('1', 0, 1, 0, 1), d('2', 0, 1, 0, 1)], { tenantsInLive: 2 })];
    const summary = summarize(comparisons, classify(plan, comparisons));
    expect(summary.counts.new).toBe(2);
    expect(summary.warnings.join()).toContain('the backup has no tenant at all');
    expect(summary.warnings.join()).toContain('Check --backup');
  });

  it('a live that looks like another database: more than 90% of the tenants absent or new', () => {
    // 20 in the backup, 19 absent; live holds 1 of them and 10 of its own: (19 + 10) / (20 + 10) = 97%.
    const comparisons = [
      comparison(
        root,
        [
          ...Array.from({ length: 19 }, (_, i) => d(String(i + 1), 1, 0, 1)),
          ...Array.from({ length: 10 }, (_, i) => d(String(100 + i), 0, 1, 0, 1)),
        ],
        { tenantsInBackup: 20, tenantsInLive: 11 },
      ),
    ];
    const s = summarize(comparisons, classify(plan, comparisons));
    expect(s.counts).toMatchObject({ absent: 19, new: 10, intact: 1 });
    expect(s.warnings).toHaveLength(1);
    expect(s.warnings[0]).toMatch(/19 of 20 tenants of the backup are absent from live and 10 of live's are not/);
    expect(s.warnings[0]).toContain('Check --live');
  });

  it('no warning at 90% or less: a large incident is not a wrong database', () => {
    // (18 absent + 0 new) / 20 = 90%: not above the threshold.
    const comparisons = [
      comparison(
        root,
        Array.from({ length: 18 }, (_, i) => d(String(i + 1), 1, 0, 1)),
        { tenantsInBackup: 20, tenantsInLive: 2 },
      ),
    ];
    const s = summarize(comparisons, classify(plan, comparisons));
    expect(s.counts.absent).toBe(18);
    expect(s.warnings).toEqual([]);
  });

  it('one more absent tenant crosses the threshold', () => {
    const comparisons = [
      comparison(
        root,
        Array.from({ length: 19 }, (_, i) => d(String(i + 1), 1, 0, 1)),
        { tenantsInBackup: 20, tenantsInLive: 1 },
      ),
    ];
    expect(summarize(comparisons, classify(plan, comparisons)).warnings).toHaveLength(1);
  });

  it('nothing differs: every tenant intact, nothing affected, no warning', () => {
    const comparisons = [comparison(root, [], { tenantsInBackup: 60, tenantsInLive: 60 }), comparison('app.users', [])];
    const s = summarize(comparisons, classify(plan, comparisons));
    expect(s.counts).toEqual({ absent: 0, partial: 0, changed: 0, grown: 0, intact: 60, new: 0 });
    expect(s.mostAffected).toEqual([]);
    expect(s.warnings).toEqual([]);
  });
});
