/**
 * buildPlan: reads both catalogs and decides everything a restore needs before a row moves: which tables, in which
 * order, how each row is tied to its tenant, how FK cycles are broken, how backup and live differ. The plan is plain
 * JSON, holds no row data, and is deterministic: the same catalogs give the same plan and the same digest, whatever
 * tenants it was estimated for (row estimates are left out of the digest).
 */
import { createHash } from 'node:crypto';
import { escapeIdentifier, inTransaction, type Pool } from '../db';
import {
  DeferrableUniqueKeyError,
  ExclusionConstraintError,
  ExcludedParentError,
  InvalidConfigError,
  InvalidTenantRootError,
  MissingPrimaryKeyError,
  PlanMismatchError,
  SchemaDriftError,
} from '../errors';
import type { PlannedTableSummary, PlanSummary, RestoreConfig, TenantId } from '../restore-types';
import { assertSameEncoding } from '../sql/session';
import { compareText, readCatalog, type Catalog, type CatalogTable } from './catalog';
import { castabilityOf, diffTable, type TableDrift, type WrittenColumn } from './drift';
import { buildFkGraph } from './fk-graph';
import { orderTables, type PlanCycle } from './order';
import {
  describePath,
  ownedPredicate,
  ownedTables,
  ownershipPaths,
  setTenantIdsSql,
  sharedAncestors,
  type OwnershipPath,
  type PathStep,
  type RenderContext,
} from './ownership';

export type { PlanCycle, CycleStrategy } from './order';
export type { OwnershipPath, PathStep } from './ownership';
export type { TableDrift, WrittenColumn } from './drift';

export interface PlanForeignKey {
  constraint: string;
  columns: string[];
  to: string;
  referencedColumns: string[];
  /**
   * The referenced table's schema and name in live. `to` may be outside the plan (an excluded table, a table only in
   * live): the orphan scan still checks the FK, and needs the name to do so. Absent in plans of older versions.
   */
  toSchema?: string;
  toName?: string;
  /** Every referencing column is nullable in live: a chunked copy may insert it NULL and set it once its parent is in. */
  nullable?: boolean;
}

/** A partial or expression unique index of live (plain ones are in uniqueKeys), for the cross-tenant guard. */
export interface PlanUniqueIndex {
  name: string;
  /** Key items as SQL over the table's unqualified columns (from pg_get_indexdef, i.e. from live's catalog). */
  keys: string[];
  /** Predicate over unqualified columns, or null. */
  predicate: string | null;
  nullsNotDistinct: boolean;
}

export interface PlanTable extends PlannedTableSummary {
  /** Columns written to live (live's names and types; generated columns and columns only in the backup excluded). */
  columns: WrittenColumn[];
  primaryKey: string[];
  /** Unique keys of live (primary key first); a key the tenant writes must not belong to another tenant in any of them. */
  uniqueKeys: string[][];
  /** Partial and expression unique indexes of live: the same rule, evaluated on the index's expressions and predicate. */
  uniqueIndexes?: PlanUniqueIndex[];
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
  /**
   * Columns that lead an index in both the backup and live: an ownership predicate probes them with an array of keys,
   * and reads any other column against a hashed key set (plan/ownership.ts). Absent in plans of earlier releases.
   */
  indexedColumns?: string[];
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
  /**
   * Who checks FKs during the copy. `engine`: session_replication_role = replica inside the tenant's transaction (needs
   * `GRANT SET ON PARAMETER session_replication_role`), user triggers suspended, the engine's orphan scan before COMMIT.
   * `postgres`: PostgreSQL's own FK triggers, user triggers fire; needs no such grant. Default: engine when the role
   * may set the parameter, else postgres. Workers take it from TENANT_RESTORE_FK_CHECKS.
   */
  fkChecks?: FkChecks;
  /**
   * discover: drift that would stop a restore (a column only in live that is NOT NULL without a default, a type with no
   * cast) is recorded in the plan's drift instead of refused; discover compares the columns both sides share.
   */
  tolerateDrift?: boolean;
}

export type FkChecks = 'engine' | 'postgres';
export const fkChecksModes: readonly FkChecks[] = ['engine', 'postgres'];

/** TENANT_RESTORE_FK_CHECKS of the worker (and of `tenant-restore plan`): engine, postgres, or unset for automatic. */
export function fkChecksFromEnv(env: NodeJS.ProcessEnv = process.env): FkChecks | undefined {
  const value = env.TENANT_RESTORE_FK_CHECKS || undefined;
  if (value !== undefined && !fkChecksModes.includes(value as FkChecks)) {
    throw new Error(
      `TENANT_RESTORE_FK_CHECKS='${value}': use ${fkChecksModes.join(' or ')}, or leave it unset (engine when the live role may set session_replication_role).`,
    );
  }
  return value as FkChecks | undefined;
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
  return {
    qualify: (k) => qualify(plan, k),
    root: plan.tenantRoot,
    rootKey: plan.rootKey.column,
    rootKeyType: plan.rootKey.type,
    paths,
    closureEdges: plan.closureEdges,
    tenantIds,
    indexed: (table, column) => {
      const columns = plan.tables.find((t) => t.key === table)?.indexedColumns;
      return columns === undefined || columns.includes(column);
    },
  };
}

export function planDigest(plan: Omit<Plan, 'digest'> | Plan): string {
  const { digest: _digest, ...rest } = plan as Plan;
  const stable = { ...rest, tables: rest.tables.map(({ estimatedRows: _e, ...t }) => t) };
  return createHash('sha256').update(JSON.stringify(stable)).digest('hex');
}

/** Refuses a plan whose content does not match its digest (altered in transit, or from another version). */
export function assertPlan(plan: Plan): void {
  if (plan?.version !== 1 || planDigest(plan) !== plan.digest) {
    throw new PlanMismatchError(
      'The plan does not match its digest (altered, or built by another version): build the plan again with `tenant-restore plan`.',
    );
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

/**
 * An EXCLUDE constraint (`EXCLUDE USING gist (room WITH =, during WITH &&)`) is a key that another tenant's row can hold
 * just as well as a unique one, but the cross-tenant guard checks only unique keys, and ON CONFLICT DO NOTHING skips a
 * row that violates an exclusion silently: a restored tenant would miss rows, or another tenant's row would decide
 * what comes back. Checking every exclusion operator against live is not cheap to do right, so a table the restore
 * writes with one is refused here, before anything is written, naming the table and the constraint.
 */
function refuseExclusionConstraints(tables: PlanTable[], live: Catalog): void {
  const problems = tables.flatMap((t) =>
    (live.tables[t.key]!.exclusionConstraints ?? []).map((c) => ({
      table: t.key,
      constraint: c.name,
      definition: c.definition,
    })),
  );
  if (!problems.length) return;
  throw new ExclusionConstraintError(
    `The restore must write ${problems.map((p) => `${p.table} (constraint ${p.constraint}: ${p.definition})`).join(', ')}, which has an exclusion constraint in live. ` +
      `The restore checks unique keys against other tenants' rows before it writes, but not exclusion constraints: a restored row that overlaps another tenant's would be skipped without a word, or stop the tenant half-way. ` +
      `List the table in the config's excludeTables (and the tables that reference it) and restore its rows by hand, then plan again.`,
    { constraints: problems },
  );
}

/**
 * ON CONFLICT cannot use a DEFERRABLE unique constraint as an arbiter ("ON CONFLICT does not support deferrable unique
 * constraints"), and `ON CONFLICT DO NOTHING` takes every unique index as one: every merge of such a table would fail
 * the same way, forever. Refused here, before anything is written, rather than met as a retry loop at copy time.
 */
function refuseUnmergeableKeys(tables: PlanTable[], live: Catalog): void {
  const problems: Array<{ table: string; constraint: string }> = [];
  for (const t of tables)
    for (const u of live.tables[t.key]!.uniqueIndexes ?? [])
      if (u.deferrable) problems.push({ table: t.key, constraint: u.name });
  if (!problems.length) return;
  throw new DeferrableUniqueKeyError(
    `The restore must write ${problems.map((p) => `${p.table} (constraint ${p.constraint})`).join(', ')}, whose primary key or unique constraint is DEFERRABLE in live. ` +
      `PostgreSQL cannot use a deferrable constraint in INSERT ... ON CONFLICT, which the restore needs to merge rows idempotently, so every attempt would fail. ` +
      `Recreate the constraint as NOT DEFERRABLE in live (ALTER TABLE ... DROP CONSTRAINT ..., ADD CONSTRAINT ... PRIMARY KEY/UNIQUE (...)), ` +
      `or, if the table need not be restored, list it in the config's excludeTables; then plan again.`,
    { constraints: problems },
  );
}

/**
 * An FK from a restored table to a table the restore does not write is checked like any other (fkCheckWarnings says by
 * whom). But when that table holds tenant rows (it reaches the tenant root through FKs: excluded by the config, or a
 * table only in live), the tenant's rows in it went with the tenant and will not come back: restored rows would point
 * at nothing, and every restore would stop at the FK check. That is refused here, with the constraint named.
 */
function refuseExcludedParents(input: {
  tables: PlanTable[];
  scratch: Catalog;
  live: Catalog;
  config: RestoreConfig;
  root: string;
  inPlan: Set<string>;
}): void {
  const { tables, scratch, live, config, root, inPlan } = input;
  const excluded = new Set(config.excludeTables ?? []);
  const ownedWithoutExclusions = ownedTables(root, buildFkGraph(scratch, live, { ...config, excludeTables: [] }).edges);
  const ownedInLive = ownedTables(root, live.foreignKeys);
  const problems: string[] = [];
  const constraints: Array<{ table: string; constraint: string; references: string }> = [];
  for (const t of tables) {
    for (const fk of t.foreignKeys) {
      if (inPlan.has(fk.to)) continue;
      // A column the backup does not have gets live's default, not a restored value.
      if (!fk.columns.every((c) => t.columns.some((w) => w.name === c))) continue;
      const why =
        excluded.has(fk.to) && ownedWithoutExclusions.has(fk.to)
          ? `${fk.to} is excluded by the config, but its rows belong to tenants (it reaches ${root} through FKs)`
          : !scratch.tables[fk.to] && ownedInLive.has(fk.to)
            ? `${fk.to} exists only in live and its rows belong to tenants, so the backup cannot bring them back`
            : null;
      if (!why) continue;
      problems.push(`${t.key}.${fk.constraint} (${fk.columns.join(', ')}) references ${fk.to}: ${why}`);
      constraints.push({ table: t.key, constraint: fk.constraint, references: fk.to });
    }
  }
  if (!problems.length) return;
  throw new ExcludedParentError(
    `Restored rows would reference rows that are gone and that this restore does not bring back:\n  - ${problems.join('\n  - ')}\n` +
      `Remove the referenced table from the config's excludeTables (so its tenant rows are restored too), or also exclude the referencing table, then plan again.`,
    { constraints },
  );
}

/** What is really checked, and by whom, for FKs the plan cannot order by (outside the plan, or logical). */
function fkCheckWarnings(
  tables: PlanTable[],
  inPlan: Set<string>,
  suspendFkChecks: boolean,
  config: RestoreConfig,
): string[] {
  const warnings: string[] = [];
  const excluded = new Set(config.excludeTables ?? []);
  const checker = suspendFkChecks
    ? "checked by the engine's orphan scan before each COMMIT (FK triggers are suspended in the restore's transaction by session_replication_role = replica); a restored row whose parent is missing stops the tenant with DanglingReferenceError and nothing of that transaction is committed"
    : "checked by PostgreSQL's FK trigger as rows are written; a missing parent fails the tenant's transaction";
  for (const t of tables) {
    for (const fk of t.foreignKeys) {
      if (inPlan.has(fk.to)) continue;
      const where = excluded.has(fk.to) ? 'excluded by the config' : 'not in the backup';
      warnings.push(
        `${t.key}.${fk.constraint} (${fk.columns.join(', ')}) references ${fk.to}, which the restore does not write (${where}): ${checker}`,
      );
    }
  }
  for (const fk of config.logicalForeignKeys ?? []) {
    warnings.push(
      `logical FK ${fk.from}(${fk.columns.join(', ')}) -> ${fk.to}: used to find the tenant's rows and to order tables; neither PostgreSQL nor the engine checks it`,
    );
  }
  return warnings;
}

/** The referenced table of an FK, quoted: a plan table, or a table outside the plan (by the name the plan recorded). */
export function fkTarget(plan: Pick<Plan, 'tables'>, fk: PlanForeignKey): string {
  if (plan.tables.some((t) => t.key === fk.to)) return qualify(plan, fk.to);
  if (fk.toSchema !== undefined && fk.toName !== undefined)
    return `${escapeIdentifier(fk.toSchema)}.${escapeIdentifier(fk.toName)}`;
  // A plan of an older version: the key is schema.table as the catalog spells it.
  const dot = fk.to.indexOf('.');
  return `${escapeIdentifier(fk.to.slice(0, dot))}.${escapeIdentifier(fk.to.slice(dot + 1))}`;
}

/**
 * How a chunked copy (no chunk may commit an orphan) goes through the tables: in units of consecutive tables
 * of the order. A table outside FK cycles is a unit of its own. The tables of one FK cycle (a self-reference included)
 * form one unit, because their FKs point forward in the order or into the same table, to rows a later chunk brings:
 * - `chunks`: every such forward or self FK is nullable; the chunks insert those columns NULL (so every committed chunk
 *   satisfies every FK), and once every table of the unit is in, a fill pass sets them from the backup, in chunks
 *   too, each checked before COMMIT.
 * - `one-transaction`: some such FK is NOT NULL (tenants.owner_id -> users, deferred); the unit's tables go in one
 *   transaction per tenant, as an unchunked copy would, whatever chunkRows says.
 */
export interface ChunkUnit {
  /** Index of the unit's first table in plan.tables, and one past its last. */
  start: number;
  end: number;
  mode: 'chunks' | 'one-transaction';
  /** `chunks`: per table, the FK columns inserted NULL and set by the fill pass. */
  deferred: Record<string, string[]>;
  /** `one-transaction`: the FK that prevents chunking. */
  reason?: string;
}

export function chunkUnits(plan: Pick<Plan, 'tables' | 'cycles'>): ChunkUnit[] {
  const index = new Map(plan.tables.map((t, i) => [t.key, i]));
  const units: ChunkUnit[] = [];
  for (let i = 0; i < plan.tables.length;) {
    const cycle = plan.cycles.find((c) => c.tables.includes(plan.tables[i]!.key));
    const end = cycle ? Math.max(...cycle.tables.map((t) => index.get(t) ?? i)) + 1 : i + 1;
    const unit: ChunkUnit = { start: i, end, mode: 'chunks', deferred: {} };
    for (let j = i; j < end; j++) {
      const t = plan.tables[j]!;
      for (const fk of t.foreignKeys) {
        const k = index.get(fk.to);
        if (k === undefined || k < j || k >= end) continue;
        const written = fk.columns.every((c) => t.columns.some((w) => w.name === c));
        if (fk.nullable && written) {
          unit.deferred[t.key] = [...new Set([...(unit.deferred[t.key] ?? []), ...fk.columns])];
        } else if (written && unit.mode === 'chunks') {
          unit.mode = 'one-transaction';
          unit.reason = `${t.key}.${fk.constraint} (${fk.columns.join(', ')}) is NOT NULL and references ${fk.to === t.key ? 'the same table' : `${fk.to}, later in the order`}`;
        }
      }
    }
    if (unit.mode === 'one-transaction') unit.deferred = {};
    units.push(unit);
    i = end;
  }
  return units;
}

function resolveRoot(name: string, scratch: Catalog, live: Catalog): { key: string; column: string; type: string } {
  const b = scratch.tables[name];
  const l = live.tables[name];
  if (!b || !l) {
    throw new InvalidTenantRootError(
      `Tenant root ${name} is not a table in ${!b ? 'the backup' : 'live'}. Give --tenant-root as schema.table (for example public.tenants).`,
      { tenantRoot: name },
    );
  }
  const pk = b.primaryKey;
  if (!pk || pk.length !== 1 || l.primaryKey?.join() !== pk.join()) {
    throw new InvalidTenantRootError(
      `Tenant root ${name} must have a single-column primary key, the same in backup and live (it has ${pk ? `(${pk.join(', ')})` : 'none'}). Pick the table whose primary key is the tenant id.`,
      { tenantRoot: name },
    );
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
      const { rows } = await client.query<{ n: string }>(
        `SELECT count(*) AS n FROM ${qualify(plan, t.key)} t WHERE ${ownedPredicate(t.key, 't', ctx)}`,
      );
      t.estimatedRows = Number(rows[0]!.n);
    }
  });
}

/** A readable rendering of the plan for `tenant-restore plan`. */
export function describePlan(plan: Plan): string {
  const lines: string[] = [];
  lines.push(`tenant root: ${plan.tenantRoot} (key ${plan.rootKey.column} ${plan.rootKey.type})`);
  lines.push(
    `FK enforcement during copy: ${plan.fkEnforcement === 'replica' ? 'suspended in the tenant transaction (session_replication_role=replica), checked by the engine before COMMIT' : 'by PostgreSQL (user triggers fire)'}`,
  );
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
    for (const e of c.edges)
      lines.push(`    ${e.from}.${e.constraint} (${e.columns.join(', ')}) -> ${e.to}: ${e.strategy}`);
  }
  lines.push('', 'schema drift:');
  if (!plan.drift.tables.length && !plan.drift.onlyInBackup.length && !plan.drift.onlyInLive.length)
    lines.push('  none');
  for (const d of plan.drift.tables) {
    if (d.defaulted.length) lines.push(`  ${d.table}: only in live, get their default: ${d.defaulted.join(', ')}`);
    if (d.dropped.length) lines.push(`  ${d.table}: only in backup, not restored: ${d.dropped.join(', ')}`);
    for (const r of d.retyped) lines.push(`  ${d.table}.${r.column}: ${r.backup} -> ${r.live} (cast)`);
  }
  if (plan.drift.onlyInBackup.length) lines.push(`  tables only in backup: ${plan.drift.onlyInBackup.join(', ')}`);
  if (plan.drift.onlyInLive.length) lines.push(`  tables only in live: ${plan.drift.onlyInLive.join(', ')}`);
  const fks = plan.tables.flatMap((t) => t.foreignKeys);
  const outside = fks.filter((f) => !plan.tables.some((t) => t.key === f.to)).length;
  lines.push('', 'foreign keys of restored rows:');
  lines.push(
    `  ${fks.length} constraint(s) of live (${outside} referencing tables outside the plan), all checked before COMMIT by ${plan.fkEnforcement === 'replica' ? "the engine's orphan scan" : 'PostgreSQL'}`,
  );
  lines.push('', 'chunked copy (a tenant with more than chunkRows rows in a table):');
  for (const u of chunkUnits(plan)) {
    const names = plan.tables
      .slice(u.start, u.end)
      .map((t) => t.key)
      .join(', ');
    if (u.mode === 'one-transaction') lines.push(`  ${names}: one transaction per tenant, not chunked (${u.reason})`);
    else if (Object.keys(u.deferred).length)
      lines.push(
        `  ${names}: chunks; ${Object.entries(u.deferred)
          .map(([t, c]) => `${t}(${c.join(', ')})`)
          .join(', ')} inserted NULL, then set once the unit's rows are in`,
      );
  }
  if (plan.warnings.length) lines.push('', 'warnings:', ...plan.warnings.map((w) => `  ${w}`));
  return lines.join('\n');
}
