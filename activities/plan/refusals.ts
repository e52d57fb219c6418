/**
 * What a plan refuses to restore (exclusion constraints, keys no merge can use, parents excluded by the config) and the
 * warnings about FKs it cannot order by; the tenant root resolved in both catalogs.
 */
import {
  DeferrableUniqueKeyError,
  ExclusionConstraintError,
  ExcludedParentError,
  InvalidTenantRootError,
} from '../errors';
import type { RestoreConfig } from '../restore-types';
import { type Catalog } from './catalog';
import { buildFkGraph } from './fk-graph';
import { ownedTables } from './ownership';
import { PlanTable } from './types';

/**
 * An EXCLUDE constraint (`EXCLUDE USING gist (room WITH =, during WITH &&)`) is a key that another tenant's row can hold
 * just as well as a unique one, but the cross-tenant guard checks only unique keys, and ON CONFLICT DO NOTHING skips a
 * row that violates an exclusion silently: a restored tenant would miss rows, or another tenant's row would decide
 * what comes back. Checking every exclusion operator against live is not cheap to do right, so a table the restore
 * writes with one is refused here, before anything is written, naming the table and the constraint.
 */
export function refuseExclusionConstraints(tables: PlanTable[], live: Catalog): void {
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
export function refuseUnmergeableKeys(tables: PlanTable[], live: Catalog): void {
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
export function refuseExcludedParents(input: {
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
export function fkCheckWarnings(
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

export function resolveRoot(
  name: string,
  scratch: Catalog,
  live: Catalog,
): { key: string; column: string; type: string } {
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
