/**
 * Discover's shapes, and every tenant classified from the tables' comparisons (absent, partial, changed, grown, intact,
 * new), with the counts, the tables most affected and the warnings. Pure: unit-tested on its own.
 */
import type { Plan } from './plan';
import type { ArtifactsRef, PlanRef, RecoveryTarget, TenantId } from './restore-types';

export type TenantClass = 'absent' | 'partial' | 'changed' | 'grown' | 'intact' | 'new';
export const tenantClasses: readonly TenantClass[] = ['absent', 'partial', 'changed', 'grown', 'intact', 'new'];

/** One table's comparison: its totals, and the tenants with any difference. */
export interface TableComparison {
  table: string;
  role: string;
  rowsInBackup: number;
  rowsInLive: number;
  tenantsInBackup: number;
  tenantsInLive: number;
  /** [tenant, rows in backup, rows in live, missing, added, changed] */
  differences: Array<[TenantId, number, number, number, number, number]>;
  /** Ids with differences here but no root row in the backup (orphans, or tenants created since: see classify). */
  unrooted?: TenantId[];
}

export interface DiscoveredTenant {
  tenantId: TenantId;
  class: TenantClass;
  /** Per table: backup rows whose key live lacks (absent and partial tenants). */
  missing?: Record<string, number>;
  changed?: Record<string, number>;
  added?: Record<string, number>;
}

export interface DiscoverSummary {
  discoverId: string;
  tenantRoot: string;
  tenantsInBackup: number;
  tenantsInLive: number;
  counts: Record<TenantClass, number>;
  /** Tables by rows missing from live, most first (at most 10). */
  mostAffected: Array<{ table: string; missingRows: number; tenants: number }>;
  /** Loud warnings: a live that looks like another database, an empty live, drift. */
  warnings: string[];
  drift: Plan['drift'];
  tables: number;
  /**
   * An incident window (`--from T0 --to T1`): the backup side is the database at T0, the live side the database at T1,
   * so every difference is what the window did (the incident, and whatever else committed inside it).
   */
  window?: { from: RecoveryTarget; to: RecoveryTarget };
  /** The scratch compared against (set by the workflow): kept with --keep-scratch, for `start --scratch <ref>`. */
  scratch?: { ref: string; dropped: boolean };
  /** Where the result is: discover.json, discover.md, restore-list.txt (absent), restore-list-partial.txt (absent + partial). */
  artifacts: { json: string; markdown: string; list: string; listWithPartial: string };
}

export interface DiscoverTablesInput {
  discoverId: string;
  scratch: string;
  live: string;
  plan: PlanRef;
  /** Indexes into plan.tables (owned tables only). */
  tables: number[];
  artifacts: ArtifactsRef;
}

/** Classifies every tenant from the tables' comparisons. Pure: unit-tested on its own. */
export function classify(
  plan: Pick<Plan, 'tenantRoot'>,
  comparisons: TableComparison[],
): { tenants: DiscoveredTenant[]; orphans: TenantId[]; tenantsInBackup: number; tenantsInLive: number } {
  const root = comparisons.find((c) => c.table === plan.tenantRoot);
  if (!root) throw new Error(`no comparison of the tenant root ${plan.tenantRoot}`);
  const byTenant = new Map<TenantId, DiscoveredTenant>();
  const get = (id: TenantId) => {
    let t = byTenant.get(id);
    if (!t) byTenant.set(id, (t = { tenantId: id, class: 'intact' }));
    return t;
  };
  const absent = new Set<TenantId>();
  const created = new Set<TenantId>();
  for (const [id, , , missing, added] of root.differences) {
    if (missing > 0) absent.add(id);
    if (added > 0) created.add(id);
  }
  for (const c of comparisons)
    for (const [id, , , missing, added, changed] of c.differences) {
      const t = get(id);
      if (missing) (t.missing ??= {})[c.table] = missing;
      if (added) (t.added ??= {})[c.table] = added;
      if (changed) (t.changed ??= {})[c.table] = changed;
    }
  // An id with rows but no root row in the backup, and none created in live, is not a tenant: rows linked to a root
  // only in code (a logical FK) whose root is gone on both sides. Reported, never classified or listed.
  const unrooted = new Set(comparisons.flatMap((c) => c.unrooted ?? []));
  const orphans: TenantId[] = [];
  for (const id of [...byTenant.keys()])
    if (unrooted.has(id) && !created.has(id)) {
      byTenant.delete(id);
      orphans.push(id);
    }
  for (const t of byTenant.values()) {
    t.class = absent.has(t.tenantId)
      ? 'absent'
      : created.has(t.tenantId)
        ? 'new'
        : t.missing
          ? 'partial'
          : t.changed
            ? 'changed'
            : t.added
              ? 'grown'
              : 'intact';
  }
  return {
    tenants: [...byTenant.values()],
    orphans,
    tenantsInBackup: root.tenantsInBackup,
    tenantsInLive: root.tenantsInLive,
  };
}

/** The class counts, the tables most affected, and the warnings an operator must not miss. */
export function summarize(
  comparisons: TableComparison[],
  classified: ReturnType<typeof classify>,
): Pick<DiscoverSummary, 'counts' | 'mostAffected' | 'warnings' | 'tenantsInBackup' | 'tenantsInLive'> {
  const counts = Object.fromEntries(tenantClasses.map((c) => [c, 0])) as Record<TenantClass, number>;
  for (const t of classified.tenants) counts[t.class] += 1;
  // Tenants of the backup with no difference at all are intact.
  counts.intact = classified.tenantsInBackup - counts.absent - counts.partial - counts.changed - counts.grown;
  const mostAffected = comparisons
    .map((c) => ({
      table: c.table,
      missingRows: c.differences.reduce((s, d) => s + d[3], 0),
      tenants: c.differences.filter((d) => d[3] > 0).length,
    }))
    .filter((m) => m.missingRows > 0)
    .sort((a, b) => b.missingRows - a.missingRows)
    .slice(0, 10);
  const warnings: string[] = [];
  const { tenantsInBackup, tenantsInLive } = classified;
  if (classified.orphans.length)
    warnings.push(
      `rows of ${classified.orphans.length} id(s) with no root row in the backup or in live differ (${classified.orphans.slice(0, 5).join(', ')}${classified.orphans.length > 5 ? ', ...' : ''}): rows linked to a tenant only in code whose tenant is gone on both sides; not classified, not listed`,
    );
  if (tenantsInBackup === 0 && tenantsInLive > 0)
    warnings.push(
      `the backup has no tenant at all (its tenant root is empty): every tenant of live is 'new'. Check --backup: is it a backup of this database?`,
    );
  if (tenantsInLive === 0)
    warnings.push(
      `live has no tenant at all (its tenant root is empty): every tenant of the backup is 'absent'. Check --live: is it the production database?`,
    );
  else if (tenantsInBackup > 0 && (counts.absent + counts.new) / (tenantsInBackup + counts.new) > 0.9)
    warnings.push(
      `${counts.absent} of ${tenantsInBackup} tenants of the backup are absent from live and ${counts.new} of live's are not in the backup: live looks like another database, or the backup like another database's. Check --live and --backup before restoring anything.`,
    );
  return { counts, mostAffected, warnings, tenantsInBackup, tenantsInLive };
}
