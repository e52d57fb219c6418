/**
 * buildPlan: reads both catalogs and decides everything a restore needs before a row moves: which tables, in which
 * order, how each row is tied to its tenant, how FK cycles are broken, how backup and live differ. The plan is plain
 * JSON, holds no row data, and is deterministic: the same catalogs give the same plan and the same digest, whatever
 * tenants it was estimated for (row estimates are left out of the digest).
 */
import { InvalidConfigError, MissingPrimaryKeyError, SchemaDriftError } from '../errors';
import type { PlannedTableSummary } from '../restore-types';
import { assertSameEncoding } from '../sql/session';
import { compareText, readCatalog, type CatalogTable } from './catalog';
import { castabilityOf, diffTable, type TableDrift } from './drift';
import { buildFkGraph } from './fk-graph';
import { orderTables } from './order';
import { ownershipPaths, sharedAncestors, type PathStep } from './ownership';
import { BuildPlanInput, Plan, PlanTable, planDigest } from './types';
import {
  fkCheckWarnings,
  refuseExcludedParents,
  refuseExclusionConstraints,
  refuseUnmergeableKeys,
  resolveRoot,
} from './refusals';
import { estimateRows } from './units';

export type { PlanCycle, CycleStrategy } from './order';
export type { OwnershipPath, PathStep } from './ownership';
export type { TableDrift, WrittenColumn } from './drift';
export * from './types';
export * from './units';

function requirePrimaryKey(table: CatalogTable, where: string): string[] {
  if (!table.primaryKey) {
    throw new MissingPrimaryKeyError(
      `${table.key} has no primary key in ${where}; the restore needs one to match, merge and resume rows idempotently. ` +
        `Add a primary key, or list the table in the config's excludeTables if it need not be restored.`,
      { table: table.key },
    );
  }
  return table.primaryKey;
}

export async function buildPlan(input: BuildPlanInput): Promise<Plan> {
  const config = input.config ?? {};
  // Before anything else: a scratch in another encoding than live's cannot give live its rows as they were.
  await assertSameEncoding(input.scratch, input.live);
  const [scratch, live] = await Promise.all([readCatalog(input.scratch), readCatalog(input.live)]);
  if (input.fkChecks === 'engine' && !live.canSetReplicationRole) {
    throw new InvalidConfigError(
      'FK checks by the engine were asked for (TENANT_RESTORE_FK_CHECKS=engine), but the live role may not set session_replication_role: GRANT SET ON PARAMETER session_replication_role to it (PostgreSQL 15+), or use FK checks by postgres.',
    );
  }
  const suspendFkChecks = input.fkChecks === 'postgres' ? false : live.canSetReplicationRole;
  const root = resolveRoot(input.tenantRoot, scratch, live);
  const graph = buildFkGraph(scratch, live, config);
  const { paths, truncated } = ownershipPaths(root.key, graph.edges);
  const owned = new Set(Object.keys(paths));
  const shared = sharedAncestors(owned, graph.edges);
  const planTables = [...owned, ...shared].sort(compareText);
  const inPlan = new Set(planTables);

  const { order, cycles } = orderTables({
    tables: planTables,
    edges: graph.edges.filter((e) => inPlan.has(e.from) && inPlan.has(e.to)),
    canSuspendFkChecks: suspendFkChecks,
  });

  // Drift, table by table, with the casts that live knows.
  const missing = planTables.filter((t) => !live.tables[t]);
  if (missing.length) {
    throw new SchemaDriftError(
      `Tables of the backup that the restore must write do not exist in live: ${missing.join(', ')}. Create them in live, or list them in the config's excludeTables.`,
      { tables: missing },
    );
  }
  const pairs: Array<[string, string]> = [];
  for (const t of planTables) {
    for (const c of live.tables[t]!.columns) {
      const b = scratch.tables[t]!.columns.find((x) => x.name === c.name);
      if (b && b.type !== c.type) pairs.push([b.type, c.type]);
    }
  }
  const castable = await castabilityOf(input.live, pairs);

  const nullThenUpdate = new Map<string, string[]>();
  for (const c of cycles)
    for (const e of c.edges)
      if (e.strategy === 'null-then-update')
        nullThenUpdate.set(e.from, [...(nullThenUpdate.get(e.from) ?? []), ...e.columns]);

  const warnings: string[] = [];
  const driftTables: TableDrift[] = [];
  const tables: PlanTable[] = order.map((key) => {
    const b = scratch.tables[key]!;
    const l = live.tables[key]!;
    requirePrimaryKey(b, 'the backup');
    const primaryKey = requirePrimaryKey(l, 'live');
    const { written, drift } = diffTable(b, l, castable, input.tolerateDrift);
    if (drift.defaulted.length || drift.dropped.length || drift.retyped.length) driftTables.push(drift);
    const missingKey = primaryKey.filter((k) => !written.some((w) => w.name === k));
    if (missingKey.length)
      throw new SchemaDriftError(
        `${key}: primary key column(s) ${missingKey.join(', ')} of live are not in the backup; rows cannot be matched. Restore from a backup with these columns.`,
        { table: key },
      );
    const role: PlannedTableSummary['role'] = key === root.key ? 'root' : owned.has(key) ? 'owned' : 'shared';
    for (const u of l.uniqueIndexes ?? []) {
      if (!u.plain && !u.columns.every((c) => written.some((w) => w.name === c))) {
        warnings.push(
          `${key}: unique index ${u.name} reads column(s) the backup does not have (${u.columns.filter((c) => !written.some((w) => w.name === c)).join(', ')}); the cross-tenant guard cannot evaluate it before the insert, so a key another tenant holds there fails the insert instead`,
        );
      }
    }
    if (l.userTriggers.length && !suspendFkChecks && role !== 'shared') {
      warnings.push(
        `${key}: user triggers (${l.userTriggers.join(', ')}) will fire on restored rows, because ${live.canSetReplicationRole ? 'FK checks are left to postgres (TENANT_RESTORE_FK_CHECKS=postgres)' : 'this role may not set session_replication_role'}`,
      );
    }
    return {
      key,
      schema: l.schema,
      name: l.name,
      role,
      columns: written,
      primaryKey,
      uniqueKeys: l.uniqueKeys.filter((k) => k.every((c) => written.some((w) => w.name === c))),
      uniqueIndexes: (l.uniqueIndexes ?? [])
        .filter((u) => !u.plain && u.columns.every((c) => written.some((w) => w.name === c)))
        .map((u) => ({ name: u.name, keys: u.keys, predicate: u.predicate, nullsNotDistinct: u.nullsNotDistinct })),
      overridingSystemValue: l.columns.some((c) => c.identity === 'a' && written.some((w) => w.name === c.name)),
      sequences: l.columns
        .filter((c) => c.sequence && written.some((w) => w.name === c.name))
        .map((c) => ({ column: c.name, sequence: c.sequence! })),
      paths: role === 'shared' ? [] : paths[key]!,
      foreignKeys: live.foreignKeys
        .filter((f) => f.from === key)
        .map((f) => ({
          constraint: f.name,
          columns: f.columns,
          to: f.to,
          referencedColumns: f.referencedColumns,
          toSchema: live.tables[f.to]!.schema,
          toName: live.tables[f.to]!.name,
          nullable: f.columns.every((c) => l.columns.find((x) => x.name === c)?.notNull === false),
        })),
      nullThenUpdate: nullThenUpdate.get(key) ?? [],
      userTriggers: l.userTriggers,
      indexedColumns: (b.indexedColumns ?? []).filter((c) => l.indexedColumns?.includes(c)),
    };
  });
  for (const t of truncated)
    warnings.push(`${t}: more than the maximum number of FK paths to the root; only the shortest are used`);
  refuseUnmergeableKeys(tables, live);
  // Discover (tolerateDrift) writes nothing: an exclusion constraint is refused only where rows will be written.
  if (!input.tolerateDrift) refuseExclusionConstraints(tables, live);
  refuseExcludedParents({ tables, scratch, live, config, root: root.key, inPlan });
  warnings.push(...fkCheckWarnings(tables, inPlan, suspendFkChecks, config));

  const closureEdges: PathStep[] = graph.edges
    .filter((e) => inPlan.has(e.from) && shared.includes(e.to) && !e.logical)
    .map((e) => ({
      constraint: e.name,
      from: e.from,
      columns: e.columns,
      to: e.to,
      referencedColumns: e.referencedColumns,
    }));

  const body: Omit<Plan, 'digest'> = {
    version: 1,
    tenantRoot: root.key,
    rootKey: { column: root.column, type: root.type },
    tables,
    cycles,
    closureEdges,
    fkEnforcement: suspendFkChecks ? 'replica' : 'constraints',
    drift: {
      tables: driftTables,
      onlyInLive: Object.keys(live.tables)
        .filter((t) => !scratch.tables[t])
        .sort(compareText),
      onlyInBackup: Object.keys(scratch.tables)
        .filter((t) => !live.tables[t])
        .sort(compareText),
    },
    excludedTables: [...(config.excludeTables ?? [])].sort(compareText),
    warnings,
  };
  const plan: Plan = { ...body, digest: planDigest(body) };
  if (input.tenantIds?.length) await estimateRows(input.scratch, plan, input.tenantIds);
  return plan;
}
