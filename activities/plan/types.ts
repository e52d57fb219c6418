/**
 * The plan's shapes (its tables, FKs, unique indexes), how FKs are checked during a copy, and the plan's digest,
 * qualified names and SQL rendering context.
 */
import { createHash } from 'node:crypto';
import { escapeIdentifier, type Pool } from '../db';
import { PlanMismatchError } from '../errors';
import type { PlannedTableSummary, PlanSummary, RestoreConfig, TenantId } from '../restore-types';
import { type TableDrift, type WrittenColumn } from './drift';
import { type PlanCycle } from './order';
import { type OwnershipPath, type PathStep, type RenderContext } from './ownership';

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
