/** Pure plan logic on plain data: SCCs, order and cycle strategies, ownership paths, drift, config validation. */
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../activities/config';
import { InvalidConfigError, SchemaDriftError, UnbreakableCycleError } from '../../activities/errors';
import type { CatalogTable } from '../../activities/plan/catalog';
import { diffTable } from '../../activities/plan/drift';
import { orderTables, stronglyConnectedComponents, type OrderEdge } from '../../activities/plan/order';
import {
  otherOwnerPredicate,
  ownedPredicate,
  ownedTables,
  ownershipPaths,
  sharedAncestors,
  type OwnershipEdge,
  type RenderContext,
} from '../../activities/plan/ownership';

const edge = (from: string, to: string, extra: Partial<OrderEdge> = {}): OrderEdge => ({
  name: `${from}_${to}_fk`,
  from,
  to,
  columns: [`${to}_id`],
  deferrable: false,
  nullable: false,
  logical: false,
  ...extra,
});

describe('strongly connected components', () => {
  it('finds cycles, self-references and singletons, parents first', () => {
    const components = stronglyConnectedComponents(
      ['a', 'b', 'c', 'd', 'e'],
      [
        { from: 'b', to: 'a' },
        { from: 'c', to: 'b' },
        { from: 'b', to: 'c' },
        { from: 'd', to: 'd' },
        { from: 'e', to: 'c' },
      ],
    );
    expect(components).toEqual([['a'], ['b', 'c'], ['d'], ['e']]);
  });

  it('handles a long chain without recursion limits', () => {
    const n = 20000;
    const nodes = Array.from({ length: n }, (_, i) => `t${String(i).padStart(5, '0')}`);
    const edges = nodes.slice(1).map((t, i) => ({ from: t, to: nodes[i]! }));
    expect(stronglyConnectedComponents(nodes, edges)).toHaveLength(n);
  });
});

describe('orderTables', () => {
  it('puts parents first and breaks ties by name', () => {
    const { order, cycles } = orderTables({
      tables: ['c', 'b', 'a', 'z'],
      edges: [edge('c', 'b'), edge('b', 'a'), edge('z', 'a')],
      canSuspendFkChecks: false,
    });
    expect(order).toEqual(['a', 'b', 'c', 'z']);
    expect(cycles).toEqual([]);
  });

  it('defers a deferrable edge, nulls a nullable one, keeps a self-reference in one statement', () => {
    const { order, cycles } = orderTables({
      tables: ['tenants', 'users', 'projects', 'issues', 'comments'],
      edges: [
        edge('users', 'tenants'),
        edge('tenants', 'users', { deferrable: true }),
        edge('projects', 'tenants'),
        edge('issues', 'projects'),
        edge('projects', 'issues', { nullable: true }),
        edge('comments', 'issues'),
        edge('comments', 'comments', { nullable: true }),
      ],
      canSuspendFkChecks: false,
    });
    expect(order).toEqual(['tenants', 'users', 'projects', 'issues', 'comments']);
    expect(cycles.map((c) => c.edges.map((e) => `${e.from}->${e.to}:${e.strategy}`))).toEqual([
      ['comments->comments:single-statement'],
      ['projects->issues:null-then-update'],
      ['tenants->users:defer'],
    ]);
  });

  it('breaks only as many nullable edges as needed', () => {
    const { cycles } = orderTables({
      tables: ['a', 'b'],
      edges: [edge('a', 'b', { nullable: true }), edge('b', 'a', { nullable: true })],
      canSuspendFkChecks: false,
    });
    expect(cycles[0]!.edges).toHaveLength(1);
  });

  it('refuses a NOT NULL, non-deferrable cycle with an error that names it, unless FK checks can be suspended', () => {
    const input = { tables: ['a', 'b', 'root'], edges: [edge('a', 'root'), edge('a', 'b'), edge('b', 'a')] };
    expect(() => orderTables({ ...input, canSuspendFkChecks: false })).toThrow(UnbreakableCycleError);
    expect(() => orderTables({ ...input, canSuspendFkChecks: false })).toThrow(/a <-> b.*a_b_fk.*b_a_fk/);
    const { order, cycles } = orderTables({ ...input, canSuspendFkChecks: true });
    expect(order[0]).toBe('root');
    expect(cycles[0]!.edges.map((e) => e.strategy)).toEqual(['unchecked', 'unchecked']);
  });

  it('a logical FK never blocks an order', () => {
    const { cycles } = orderTables({
      tables: ['a', 'b'],
      edges: [edge('a', 'b'), edge('b', 'a', { logical: true })],
      canSuspendFkChecks: false,
    });
    expect(cycles[0]!.edges.map((e) => e.strategy)).toEqual(['logical']);
  });
});

const fk = (from: string, columns: string[], to: string, referencedColumns: string[]): OwnershipEdge => ({
  name: `${from}_${columns.join('_')}_fk`,
  from,
  columns,
  to,
  referencedColumns,
});

describe('ownership', () => {
  const edges = [
    fk('users', ['tenant_id'], 'tenants', ['id']),
    fk('projects', ['tenant_id'], 'tenants', ['id']),
    fk('issues', ['project_id'], 'projects', ['id']),
    fk('issues', ['reporter_id'], 'users', ['id']),
    fk('comments', ['issue_id'], 'issues', ['id']),
    fk('comments', ['parent_id'], 'comments', ['id']),
    fk('tenants', ['plan_id'], 'plans', ['id']),
    fk('plans', ['currency'], 'currencies', ['code']),
    fk('countries', ['currency'], 'currencies', ['code']),
  ];

  it('owned tables are the downward closure of the root; the rest is shared', () => {
    expect([...ownedTables('tenants', edges)].sort()).toEqual(['comments', 'issues', 'projects', 'tenants', 'users']);
    expect(sharedAncestors(ownedTables('tenants', edges), edges)).toEqual(['currencies', 'plans']);
  });

  it('keeps every simple path, shortest first, and ignores self-references', () => {
    const { paths } = ownershipPaths('tenants', edges);
    expect(paths.tenants).toEqual([[]]);
    expect(paths.users!.map((p) => p.map((s) => s.to))).toEqual([['tenants']]);
    expect(paths.comments!.map((p) => p.map((s) => s.to))).toEqual([
      ['issues', 'projects', 'tenants'],
      ['issues', 'users', 'tenants'],
    ]);
  });

  it('renders a direct predicate for tables with the root key and joins for deeper ones (ANY path)', () => {
    const { paths } = ownershipPaths('tenants', edges);
    const ctx: RenderContext = {
      qualify: (k) => `"app"."${k}"`,
      root: 'tenants',
      rootKey: 'id',
      rootKeyType: 'bigint',
      paths,
      closureEdges: [],
    };
    const ids = "current_setting('tenant_restore.tenant_ids')::bigint[]";
    expect(ownedPredicate('users', 't', ctx)).toBe(`(t."tenant_id" = ANY(${ids}))`);
    expect(ownedPredicate('tenants', 't', ctx)).toBe(`(t."id" = ANY(${ids}))`);
    const comments = ownedPredicate('comments', 't', ctx);
    // Both paths of comments go through issues: one key set of issues, and below it the two ways up from issues
    // (projects, users), each an InitPlan array matched through the FK column's index.
    expect(comments).toBe(
      `(t."issue_id" = ANY(ARRAY(SELECT t_0."id" FROM "app"."issues" t_0 WHERE (` +
        `t_0."project_id" = ANY(ARRAY(SELECT t_0_0."id" FROM "app"."projects" t_0_0 WHERE t_0_0."tenant_id" = ANY(${ids}))) OR ` +
        `t_0."reporter_id" = ANY(ARRAY(SELECT t_0_1."id" FROM "app"."users" t_0_1 WHERE t_0_1."tenant_id" = ANY(${ids})))))))`,
    );
    expect(comments.match(/"app"\."issues"/g)).toHaveLength(1);
    expect(comments).not.toContain('coalesce');

    // A column without an index is matched against a hashed key set (IN), not probed with an array.
    const unindexed = {
      ...ctx,
      indexed: (table: string, column: string) => !(table === 'issues' && column === 'reporter_id'),
    };
    expect(ownedPredicate('comments', 't', unindexed)).toBe(
      `(t."issue_id" = ANY(ARRAY(SELECT t_0."id" FROM "app"."issues" t_0 WHERE (` +
        `t_0."project_id" = ANY(ARRAY(SELECT t_0_0."id" FROM "app"."projects" t_0_0 WHERE t_0_0."tenant_id" = ANY(${ids}))) OR ` +
        `(t_0."reporter_id") IN (SELECT t_0_1."id" FROM "app"."users" t_0_1 WHERE t_0_1."tenant_id" = ANY(${ids}))))))`,
    );
  });

  it('tests another owner with a correlated EXISTS, which is never NULL and so safe under NOT', () => {
    const { paths } = ownershipPaths('tenants', edges);
    const ctx: RenderContext = {
      qualify: (k) => `"app"."${k}"`,
      root: 'tenants',
      rootKey: 'id',
      rootKeyType: 'bigint',
      paths,
      closureEdges: [],
    };
    const ids = "current_setting('tenant_restore.tenant_ids')::bigint[]";
    expect(otherOwnerPredicate('users', 't', ctx)).toBe(`(t."tenant_id" <> ALL(${ids}))`);
    const comments = otherOwnerPredicate('comments', 't', ctx);
    expect(comments).toContain(
      `EXISTS (SELECT 1 FROM "app"."issues" t_0_0, "app"."projects" t_0_1 WHERE t_0_0."id" = t."issue_id" AND t_0_1."id" = t_0_0."project_id" AND t_0_1."tenant_id" <> ALL(${ids}))`,
    );
    expect(comments).not.toContain(' IN (');
  });
});

const table = (
  key: string,
  columns: Array<Partial<CatalogTable['columns'][number]> & { name: string }>,
): CatalogTable => ({
  key,
  schema: key.split('.')[0]!,
  name: key.split('.')[1]!,
  partitioned: false,
  primaryKey: ['id'],
  uniqueKeys: [['id']],
  userTriggers: [],
  columns: columns.map((c) => ({
    type: 'integer',
    notNull: false,
    default: null,
    identity: '',
    generated: false,
    sequence: null,
    ...c,
  })),
});

describe('drift', () => {
  it('defaults live-only columns, drops backup-only ones, casts retyped ones, never writes generated ones', () => {
    const backup = table('app.t', [
      { name: 'id' },
      { name: 'old' },
      { name: 'n', type: 'integer' },
      { name: 'g', generated: true },
    ]);
    const live = table('app.t', [
      { name: 'id' },
      { name: 'n', type: 'bigint' },
      { name: 'added', notNull: true, default: "'x'::text" },
      { name: 'g', generated: true },
    ]);
    const { written, drift } = diffTable(backup, live, (from, to) => from === 'integer' && to === 'bigint');
    expect(written.map((w) => w.name)).toEqual(['id', 'n']);
    expect(drift).toEqual({
      table: 'app.t',
      defaulted: ['added'],
      dropped: ['old'],
      retyped: [{ column: 'n', backup: 'integer', live: 'bigint' }],
    });
  });

  it('refuses a type without a cast, and a NOT NULL live-only column without default', () => {
    const backup = table('app.t', [{ name: 'id' }, { name: 'n', type: 'text' }]);
    expect(() =>
      diffTable(backup, table('app.t', [{ name: 'id' }, { name: 'n', type: 'point' }]), () => false),
    ).toThrow(SchemaDriftError);
    expect(() =>
      diffTable(
        backup,
        table('app.t', [{ name: 'id' }, { name: 'n', type: 'text' }, { name: 'm', notNull: true }]),
        () => true,
      ),
    ).toThrow(/app\.t\.m/);
  });
});

describe('config', () => {
  it('accepts a full config and reports every problem of a bad one', () => {
    const ok = parseConfig(
      JSON.stringify({
        logicalForeignKeys: [{ from: 'app.a', columns: ['x'], to: 'app.b', referencedColumns: ['id'] }],
        excludeTables: ['app.sessions'],
        chunkRows: 50000,
        actions: [
          { name: 'billing', type: 'sql', sql: 'UPDATE billing SET active = true WHERE tenant_id = $1' },
          { name: 'hook', type: 'webhook', url: 'https://example.com/x' },
        ],
      }),
    );
    expect(ok.chunkRows).toBe(50000);
    expect(() => parseConfig('[]')).toThrow(InvalidConfigError);
    expect(() =>
      parseConfig(
        JSON.stringify({
          logicalForeignKeys: [{ from: 'a', columns: ['x', 'y'], to: 'app.b', referencedColumns: ['id'] }],
        }),
      ),
    ).toThrow(/from: must be 'schema.table'[\s\S]*same length/);
    expect(() => parseConfig(JSON.stringify({ actions: [{ name: 'x', type: 'ftp' }] }))).toThrow(/actions\[0\]\.type/);
  });
});
