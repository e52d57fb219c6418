/**
 * buildPlan: reads both catalogs and decides everything a restore needs before a row moves: which tables, in which
 * order, how each row is tied to its tenant, how FK cycles are broken, how backup and live differ. The plan is plain
 * JSON, holds no row data, and is deterministic: the same catalogs give the same plan and the same digest, whatever
 * tenants it was estimated for (row estimates are left out of the digest).
 */
import { createHash } from 'node:crypto';
import { escapeIdentifier, inTransaction, type Pool } from '../db';
import { InvalidTenantRootError, MissingPrimaryKeyError, PlanMismatchError, SchemaDriftError } from '../errors';
import type { PlannedTableSummary, PlanSummary, RestoreConfig, TenantId } from '../restore-types';
import { compareText, readCatalog, type Catalog, type CatalogTable } from './catalog';
import { castabilityOf, diffTable, type TableDrift, type WrittenColumn } from './drift';
import { buildFkGraph } from './fk-graph';
import { orderTables, type PlanCycle } from './order';
import { describePath, ownedPredicate, ownershipPaths, setTenantIdsSql, sharedAncestors, type OwnershipPath, type PathStep, type RenderContext } from './ownership';

export type { PlanCycle, CycleStrategy } from './order';
export type { OwnershipPath, PathStep } from './ownership';
export type { TableDrift, WrittenColumn } from './drift';

export interface PlanForeignKey {
  constraint: string;
  columns: string[];
  to: string;
  referencedColumns: string[];
}

export interface PlanTable extends PlannedTableSummary {
  /** Columns written to live (live's names and types; generated columns and columns only in the backup excluded). */
  columns: WrittenColumn[];
  primaryKey: string[];
  /** Unique keys of live (primary key first); a key the tenant writes must not belong to another tenant in any of them. */
  uniqueKeys: string[][];
  /** Live has a GENERATED ALWAYS identity column: inserts need OVERRIDING SYSTEM VALUE to keep the backup's ids. */
  overridingSystemValue: boolean;
  /** Sequences to advance past the restored ids. */
  sequences: Array<{ column: string; sequence: string }>;
  /** Ownership paths up to the root (owned tables; `[[]]` for the root); empty for shared tables. */
  paths: OwnershipPath[];
  /** FKs declared in live on this table, checked by the orphan scan. */
  foreignKeys: PlanForeignKey[];
  /** FK columns inserted as NULL and set afterwards (cycle strategy null-then-update). */
  nullThenUpdate: string[];
  userTriggers: string[];
}

export interface Plan extends PlanSummary {
  version: 1;
  tenantRoot: string;
  rootKey: { column: string; type: string };
  tables: PlanTable[];
  cycles: PlanCycle[];
  /** Edges from plan tables into shared tables: the parent closure follows them. */
  closureEdges: PathStep[];
  /**
   * replica: inside the tenant's transaction `session_replication_role = replica` suspends FK and user triggers for
   * this session only; the engine checks every FK of the written rows itself before COMMIT.
   * constraints: the role may not do that; PostgreSQL checks FKs, and user triggers fire (listed in warnings).
   */
  fkEnforcement: 'replica' | 'constraints';
  drift: { tables: TableDrift[]; onlyInLive: string[]; onlyInBackup: string[] };
  excludedTables: string[];
  warnings: string[];
  digest: string;
}

export interface BuildPlanInput {
  scratch: Pool;
  live: Pool;
  /** `schema.table` */
  tenantRoot: string;
  /** For row estimates; optional. */
  tenantIds?: TenantId[];
  config?: RestoreConfig;
}

export function qualify(plan: Pick<Plan, 'tables'>, key: string): string {
  const t = plan.tables.find((x) => x.key === key);
  if (!t) throw new PlanMismatchError(`table ${key} is not in the plan; rebuild the plan`);
  return `${escapeIdentifier(t.schema)}.${escapeIdentifier(t.name)}`;
}

/** How SQL is rendered for this plan; with `tenantIds`, the tenants are constants in the SQL (see RenderContext). */
export function renderContext(plan: Plan, tenantIds?: string[]): RenderContext {
  const paths: Record<string, OwnershipPath[]> = {};
  for (const t of plan.tables) if (t.role !== 'shared') paths[t.key] = t.paths;
  return { qualify: (k) => qualify(plan, k), root: plan.tenantRoot, rootKey: plan.rootKey.column, rootKeyType: plan.rootKey.type, paths, closureEdges: plan.closureEdges, tenantIds };
}

export function planDigest(plan: Omit<Plan, 'digest'> | Plan): string {
  const { digest: _digest, ...rest } = plan as Plan;
  const stable = { ...rest, tables: rest.tables.map(({ estimatedRows: _e, ...t }) => t) };
  return createHash('sha256').update(JSON.stringify(stable)).digest('hex');
}

/** Refuses a plan whose content does not match its digest (altered in transit, or from another version). */
export function assertPlan(plan: Plan): void {
  if (plan?.version !== 1 || planDigest(plan) !== plan.digest) {
    throw new PlanMismatchError('The plan does not match its digest (altered, or built by another version): build the plan again with `tenant-restore plan`.');
  }
}

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
  const [scratch, live] = await Promise.all([readCatalog(input.scratch), readCatalog(input.live)]);
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
    canSuspendFkChecks: live.canSetReplicationRole,
  });

  // Drift, table by table, with the casts that live knows.
  const missing = planTables.filter((t) => !live.tables[t]);
  if (missing.length) {
    throw new SchemaDriftError(`Tables of the backup that the restore must write do not exist in live: ${missing.join(', ')}. Create them in live, or list them in the config's excludeTables.`, { tables: missing });
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
  for (const c of cycles) for (const e of c.edges) if (e.strategy === 'null-then-update') nullThenUpdate.set(e.from, [...(nullThenUpdate.get(e.from) ?? []), ...e.columns]);

  const warnings: string[] = [];
  const driftTables: TableDrift[] = [];
  const tables: PlanTable[] = order.map((key) => {
    const b = scratch.tables[key]!;
    const l = live.tables[key]!;
    requirePrimaryKey(b, 'the backup');
    const primaryKey = requirePrimaryKey(l, 'live');
    const { written, drift } = diffTable(b, l, castable);
    if (drift.defaulted.length || drift.dropped.length || drift.retyped.length) driftTables.push(drift);
    const missingKey = primaryKey.filter((k) => !written.some((w) => w.name === k));
    if (missingKey.length) throw new SchemaDriftError(`${key}: primary key column(s) ${missingKey.join(', ')} of live are not in the backup; rows cannot be matched. Restore from a backup with these columns.`, { table: key });
    const role: PlannedTableSummary['role'] = key === root.key ? 'root' : owned.has(key) ? 'owned' : 'shared';
    if (l.userTriggers.length && !live.canSetReplicationRole && role !== 'shared') {
      warnings.push(`${key}: user triggers (${l.userTriggers.join(', ')}) will fire on restored rows, because this role may not set session_replication_role`);
    }
    return {
      key,
      schema: l.schema,
      name: l.name,
      role,
      columns: written,
      primaryKey,
      uniqueKeys: l.uniqueKeys.filter((k) => k.every((c) => written.some((w) => w.name === c))),
      overridingSystemValue: l.columns.some((c) => c.identity === 'a' && written.some((w) => w.name === c.name)),
      sequences: l.columns.filter((c) => c.sequence && written.some((w) => w.name === c.name)).map((c) => ({ column: c.name, sequence: c.sequence! })),
      paths: role === 'shared' ? [] : paths[key]!,
      foreignKeys: live.foreignKeys.filter((f) => f.from === key).map((f) => ({ constraint: f.name, columns: f.columns, to: f.to, referencedColumns: f.referencedColumns })),
      nullThenUpdate: nullThenUpdate.get(key) ?? [],
      userTriggers: l.userTriggers,
    };
  });
  for (const t of truncated) warnings.push(`${t}: more than the maximum number of FK paths to the root; only the shortest are used`);
  for (const t of tables) {
    for (const fk of t.foreignKeys) {
      if (!inPlan.has(fk.to)) warnings.push(`${t.key}.${fk.constraint} references ${fk.to}, which is excluded: the orphan scan will still check it`);
    }
  }

  const closureEdges: PathStep[] = graph.edges
    .filter((e) => inPlan.has(e.from) && shared.includes(e.to) && !e.logical)
    .map((e) => ({ constraint: e.name, from: e.from, columns: e.columns, to: e.to, referencedColumns: e.referencedColumns }));

  const body: Omit<Plan, 'digest'> = {
    version: 1,
    tenantRoot: root.key,
    rootKey: { column: root.column, type: root.type },
    tables,
    cycles,
    closureEdges,
    fkEnforcement: live.canSetReplicationRole ? 'replica' : 'constraints',
    drift: {
      tables: driftTables,
      onlyInLive: Object.keys(live.tables).filter((t) => !scratch.tables[t]).sort(compareText),
      onlyInBackup: Object.keys(scratch.tables).filter((t) => !live.tables[t]).sort(compareText),
    },
    excludedTables: [...(config.excludeTables ?? [])].sort(compareText),
    warnings,
  };
  const plan: Plan = { ...body, digest: planDigest(body) };
  if (input.tenantIds?.length) await estimateRows(input.scratch, plan, input.tenantIds);
  return plan;
}

function resolveRoot(name: string, scratch: Catalog, live: Catalog): { key: string; column: string; type: string } {
  const b = scratch.tables[name];
  const l = live.tables[name];
  if (!b || !l) {
    throw new InvalidTenantRootError(`Tenant root ${name} is not a table in ${!b ? 'the backup' : 'live'}. Give --tenant-root as schema.table (for example public.tenants).`, { tenantRoot: name });
  }
  const pk = b.primaryKey;
  if (!pk || pk.length !== 1 || l.primaryKey?.join() !== pk.join()) {
    throw new InvalidTenantRootError(`Tenant root ${name} must have a single-column primary key, the same in backup and live (it has ${pk ? `(${pk.join(', ')})` : 'none'}). Pick the table whose primary key is the tenant id.`, { tenantRoot: name });
  }
  const type = l.columns.find((c) => c.name === pk[0])!.type;
  return { key: name, column: pk[0]!, type };
}

/** Exact row counts of the given tenants in the backup, per table (shared tables: the rows restored rows reference). */
export async function estimateRows(scratch: Pool, plan: Plan, tenantIds: TenantId[]): Promise<void> {
  const ctx = renderContext(plan);
  await inTransaction(scratch, async (client) => {
    await client.query('SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY');
    await client.query(setTenantIdsSql, [tenantIds]);
    for (const t of plan.tables) {
      const { rows } = await client.query<{ n: string }>(`SELECT count(*) AS n FROM ${qualify(plan, t.key)} t WHERE ${ownedPredicate(t.key, 't', ctx)}`);
      t.estimatedRows = Number(rows[0]!.n);
    }
  });
}

/** A readable rendering of the plan for `tenant-restore plan`. */
export function describePlan(plan: Plan): string {
  const lines: string[] = [];
  lines.push(`tenant root: ${plan.tenantRoot} (key ${plan.rootKey.column} ${plan.rootKey.type})`);
  lines.push(`FK enforcement during copy: ${plan.fkEnforcement === 'replica' ? 'suspended in the tenant transaction (session_replication_role=replica), checked by the engine before COMMIT' : 'by PostgreSQL (user triggers fire)'}`);
  lines.push(`digest: ${plan.digest}`, '', 'restore order (parents first):');
  plan.tables.forEach((t, i) => {
    const est = t.estimatedRows === undefined ? '' : `  ~${t.estimatedRows} rows`;
    lines.push(`  ${String(i + 1).padStart(2)}. ${t.key} [${t.role}]${est}`);
    if (t.role === 'owned') for (const p of t.paths) lines.push(`        via ${describePath(p)}`);
    if (t.role === 'shared') {
      const via = plan.closureEdges.filter((e) => e.to === t.key).map((e) => `${e.from}(${e.columns.join(',')})`);
      lines.push(`        parent closure: rows referenced by ${via.join(', ')}`);
    }
  });
  lines.push('', 'cycles:');
  if (!plan.cycles.length) lines.push('  none');
  for (const c of plan.cycles) {
    lines.push(`  ${c.tables.join(' <-> ')}`);
    for (const e of c.edges) lines.push(`    ${e.from}.${e.constraint} (${e.columns.join(', ')}) -> ${e.to}: ${e.strategy}`);
  }
  lines.push('', 'schema drift:');
  if (!plan.drift.tables.length && !plan.drift.onlyInBackup.length && !plan.drift.onlyInLive.length) lines.push('  none');
  for (const d of plan.drift.tables) {
    if (d.defaulted.length) lines.push(`  ${d.table}: only in live, get their default: ${d.defaulted.join(', ')}`);
    if (d.dropped.length) lines.push(`  ${d.table}: only in backup, not restored: ${d.dropped.join(', ')}`);
    for (const r of d.retyped) lines.push(`  ${d.table}.${r.column}: ${r.backup} -> ${r.live} (cast)`);
  }
  if (plan.drift.onlyInBackup.length) lines.push(`  tables only in backup: ${plan.drift.onlyInBackup.join(', ')}`);
  if (plan.drift.onlyInLive.length) lines.push(`  tables only in live: ${plan.drift.onlyInLive.join(', ')}`);
  if (plan.warnings.length) lines.push('', 'warnings:', ...plan.warnings.map((w) => `  ${w}`));
  return lines.join('\n');
}
