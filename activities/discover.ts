/**
 * Discover: who was hit. For every tenant of the backup and every owned table of the plan, the rows on each side and
 * how they differ (sql/discover.ts), then one class per tenant:
 * - `absent`: its root row is gone from live;
 * - `partial`: root present, rows of the backup missing (per table: how many);
 * - `changed`: the same keys, other content (normal activity, or damage: reported, never restored);
 * - `grown`: only rows added since the backup (normal activity);
 * - `intact`: the same rows;
 * - `new`: in live only, created after the backup.
 * Each table's comparison is stored in S3 as it finishes (a retry after a crash skips the tables done); the summary
 * reads them back and writes discover.json, discover.md and the list to restore (the format of --tenants-file).
 * Live is only ever read, in a READ ONLY transaction.
 */
import { heartbeat, activityInfo, cancellationSignal } from '@temporalio/activity';
import type { S3Client } from '@aws-sdk/client-s3';
import { pipeline } from 'node:stream/promises';
import { copyFrom, copyTo, type Pools } from './db';
import type { Plan } from './plan';
import type { ArtifactsRef, ObjectRef, PlanRef, RecoveryTarget, TenantId } from './restore-types';
import { describeTarget } from './point-in-time';
import { heartbeating } from './boundary';
import { getJson, putJson, putText } from './s3';
import {
  compareSums,
  compareTriples,
  copyIntoLiveSums,
  copyIntoLiveTriples,
  copyLiveSums,
  copyLiveTriples,
  createLiveSums,
  createLiveTriples,
  liveTriples,
  setSuspects,
} from './sql/discover';
import { withComparedSessions } from './sql/session';

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

export const tableComparisonObject = (artifacts: ArtifactsRef, index: number): ObjectRef => ({
  bucket: artifacts.bucket,
  key: `${artifacts.prefix}discover/tables/${index}.json`,
});

const url = (artifacts: ArtifactsRef, name: string) => `s3://${artifacts.bucket}/${artifacts.prefix}${name}`;

/**
 * One table, in two phases (sql/discover.ts): per tenant a count and sums of hashes on each side, then the rows of the
 * tenants whose sums differ. Live's side is streamed into scratch (never into Node) and compared there.
 */
async function compareTable(
  pools: Pools,
  input: Pick<DiscoverTablesInput, 'scratch' | 'live'>,
  plan: Plan,
  index: number,
): Promise<TableComparison> {
  const table = plan.tables[index]!;
  // Live: READ ONLY, so no statement of discover can write to it; scratch: not READ ONLY (the temporary tables).
  return withComparedSessions(
    { scratch: pools.get(input.scratch), live: pools.get(input.live) },
    [],
    'snapshot',
    async (scratch, live) => {
      // Phase 1: a count and two sums of hashes per tenant, on each side; live's few rows per tenant go to scratch.
      await scratch.query(createLiveSums());
      await pipeline(
        live.query(copyTo(copyLiveSums(plan, table).text)),
        scratch.query(copyFrom(copyIntoLiveSums().text)),
        { signal: cancellationSignal() },
      );
      const { rows } = await scratch.query<{
        tenant: string | null;
        in_backup: string;
        in_live: string;
        rooted: boolean;
      }>(compareSums(plan, table));
      const [rowTotals, tenantTotals] = rows.filter((r) => r.tenant === null);
      const differing = rows.filter((r) => r.tenant !== null);
      const differences: TableComparison['differences'] = [];
      const suspects: TenantId[] = [];
      for (const r of differing) {
        const inBackup = Number(r.in_backup);
        const inLive = Number(r.in_live);
        // Rows on one side only: all missing, or all added; no row needs comparing.
        if (inLive === 0) differences.push([r.tenant!, inBackup, 0, inBackup, 0, 0]);
        else if (inBackup === 0) differences.push([r.tenant!, 0, inLive, 0, inLive, 0]);
        else suspects.push(r.tenant!);
      }
      // Phase 2, for tenants with rows on both sides whose sums differ: their rows compared key by key.
      if (suspects.length) {
        await scratch.query(setSuspects(suspects));
        await live.query(setSuspects(suspects));
        await scratch.query(createLiveTriples());
        await pipeline(
          live.query(copyTo(copyLiveTriples(plan, table).text)),
          scratch.query(copyFrom(copyIntoLiveTriples().text)),
          { signal: cancellationSignal() },
        );
        await scratch.query(`ANALYZE ${liveTriples}`);
        const compared = await scratch.query<{
          tenant: string;
          in_backup: string;
          in_live: string;
          missing: string;
          added: string;
          changed: string;
        }>(compareTriples(plan, table));
        for (const r of compared.rows)
          differences.push([
            r.tenant,
            Number(r.in_backup),
            Number(r.in_live),
            Number(r.missing),
            Number(r.added),
            Number(r.changed),
          ]);
      }
      return {
        table: table.key,
        role: table.role,
        rowsInBackup: Number(rowTotals!.in_backup),
        rowsInLive: Number(rowTotals!.in_live),
        tenantsInBackup: Number(tenantTotals!.in_backup),
        tenantsInLive: Number(tenantTotals!.in_live),
        unrooted: differing.filter((r) => !r.rooted).map((r) => r.tenant!),
        differences,
      };
    },
    'snapshot-temp',
  );
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

/**
 * discover.md of an incident window: the classes say what the window did, and what a revert of it does
 * (activities/window.ts).
 */
function windowMarkdown(summary: DiscoverSummary, tenants: DiscoveredTenant[]): string {
  const { from, to } = summary.window!;
  const touched = tenants.filter((t) => t.class === 'absent' || t.class === 'partial' || t.class === 'changed');
  const lines = [
    `# Discover ${summary.discoverId}: the incident window`,
    '',
    `The database at T0 (${describeTarget(from)}, just before the incident) compared with the database at T1 (${describeTarget(to)}, just after it), both recovered from the WAL archive. Every difference below is something that committed inside the window: the incident, and any user's own change in the same minutes. What users did before T0 or after T1 is not in it.`,
    '',
    ...summary.warnings.map((w) => `**WARNING: ${w}**\n`),
    '| class | tenants | what the window did | what `start --from T0 --to T1` does |',
    '|---|---|---|---|',
    `| absent | ${summary.counts.absent} | deleted the tenant's root row (and what hung under it) | brings every deleted row back as it was at T0 |`,
    `| partial | ${summary.counts.partial} | deleted some of its rows, the root stayed | brings those rows back, nothing else |`,
    `| changed | ${summary.counts.changed} | changed rows (an UPDATE) | sets each back to its T0 version where live still holds the T1 version; a row changed or deleted again since is a conflict, left as it is |`,
    `| grown | ${summary.counts.grown} | only added rows | reported, never deleted (the restore role has no DELETE) |`,
    `| intact | ${summary.counts.intact} | nothing | nothing |`,
    `| new | ${summary.counts.new} | created the tenant | nothing |`,
    '',
    'Conflicts are found at the restore, against live as it is then: a deleted row whose key live holds with other content, a changed row that was changed or deleted since T1. Without `--conflicts report` a tenant with conflicts is not written at all; with it, everything but those rows is reverted and the report lists them.',
    '',
  ];
  if (touched.length) {
    lines.push(
      '## Tenants the window touched',
      '',
      '| tenant | class | deleted rows per table | changed rows per table |',
      '|---|---|---|---|',
    );
    const perTable = (m?: Record<string, number>) =>
      Object.entries(m ?? {})
        .map(([table, n]) => `${table} ${n}`)
        .join(', ');
    for (const t of touched.slice(0, 1000))
      lines.push(`| ${t.tenantId} | ${t.class} | ${perTable(t.missing)} | ${perTable(t.changed)} |`);
    if (touched.length > 1000) lines.push(`| ... | | ${touched.length - 1000} more in discover.json | |`);
  }
  return `${lines.join('\n')}\n`;
}

export function discoverMarkdown(summary: DiscoverSummary, tenants: DiscoveredTenant[]): string {
  if (summary.window) return windowMarkdown(summary, tenants);
  const lines = [
    `# Discover ${summary.discoverId}`,
    '',
    `Tenant root ${summary.tenantRoot}: ${summary.tenantsInBackup} tenants in the backup, ${summary.tenantsInLive} in live; ${summary.tables} tables compared.`,
    '',
    ...summary.warnings.map((w) => `**WARNING: ${w}**\n`),
    '| class | tenants | what it means |',
    '|---|---|---|',
    `| absent | ${summary.counts.absent} | root row gone from live: purged, or its account closed (restored by default: check the list) |`,
    `| partial | ${summary.counts.partial} | root present, rows of the backup missing: damage, or its users' own deletions since the backup; restored only with --allow-partial=<this number> (inserts only the missing rows, deletions included) |`,
    `| changed | ${summary.counts.changed} | same keys, other content: normal activity or damage; never restored |`,
    `| grown | ${summary.counts.grown} | only rows added since the backup: normal |`,
    `| intact | ${summary.counts.intact} | the same rows |`,
    `| new | ${summary.counts.new} | in live only, created after the backup |`,
    '',
  ];
  if (summary.mostAffected.length) {
    lines.push('## Tables most affected', '', '| table | rows missing from live | tenants |', '|---|---|---|');
    for (const m of summary.mostAffected) lines.push(`| ${m.table} | ${m.missingRows} | ${m.tenants} |`);
    lines.push('');
  }
  const damaged = tenants.filter((t) => t.class === 'absent' || t.class === 'partial');
  if (damaged.length) {
    lines.push('## Tenants to restore', '', '| tenant | class | missing rows per table |', '|---|---|---|');
    for (const t of damaged.slice(0, 1000))
      lines.push(
        `| ${t.tenantId} | ${t.class} | ${Object.entries(t.missing ?? {})
          .map(([table, n]) => `${table} ${n}`)
          .join(', ')} |`,
      );
    if (damaged.length > 1000) lines.push(`| ... | | ${damaged.length - 1000} more in discover.json |`);
  }
  return `${lines.join('\n')}\n`;
}

export function createDiscoverActivities({
  pools,
  s3,
  loadPlan,
}: {
  pools: Pools;
  s3: S3Client;
  loadPlan: (ref: PlanRef) => Promise<Plan>;
}) {
  return {
    /** The tables discover compares: every owned table of the plan (the root first), not the shared ones. */
    async ownedTableIndexes(input: { plan: PlanRef }): Promise<number[]> {
      const plan = await loadPlan(input.plan);
      return plan.tables.flatMap((t, i) => (t.role === 'shared' ? [] : [i]));
    },

    /**
     * Compares tables of the plan, one after the other, each stored in S3 when done. A retry (another worker, after a
     * crash) starts after the last table its heartbeat recorded.
     */
    async discoverTables(
      input: DiscoverTablesInput,
    ): Promise<Array<{ table: string; rowsInBackup: number; rowsInLive: number; tenantsWithDifferences: number }>> {
      const plan = await loadPlan(input.plan);
      const done = new Set<number>((activityInfo().heartbeatDetails as { done?: number[] } | undefined)?.done ?? []);
      const out: Array<{ table: string; rowsInBackup: number; rowsInLive: number; tenantsWithDifferences: number }> =
        [];
      for (const index of input.tables) {
        let comparison: TableComparison;
        if (done.has(index))
          comparison = await getJson<TableComparison>(s3, tableComparisonObject(input.artifacts, index));
        else {
          const table = plan.tables[index]!.key;
          comparison = await heartbeating(
            () => ({ done: [...done], table }),
            () => compareTable(pools, input, plan, index),
          );
          await putJson(s3, tableComparisonObject(input.artifacts, index), comparison);
          done.add(index);
          heartbeat({ done: [...done] });
        }
        out.push({
          table: comparison.table,
          rowsInBackup: comparison.rowsInBackup,
          rowsInLive: comparison.rowsInLive,
          tenantsWithDifferences: comparison.differences.length,
        });
      }
      return out;
    },

    /** Reads the tables' comparisons back, classifies, writes discover.json, discover.md and the lists. */
    async summarizeDiscovery(input: {
      discoverId: string;
      plan: PlanRef;
      tables: number[];
      artifacts: ArtifactsRef;
      window?: { from: RecoveryTarget; to: RecoveryTarget };
    }): Promise<DiscoverSummary> {
      const plan = await loadPlan(input.plan);
      const comparisons: TableComparison[] = [];
      for (const index of input.tables)
        comparisons.push(await getJson<TableComparison>(s3, tableComparisonObject(input.artifacts, index)));
      const classified = classify(plan, comparisons);
      const summary: DiscoverSummary = {
        discoverId: input.discoverId,
        tenantRoot: plan.tenantRoot,
        ...summarize(comparisons, classified),
        drift: plan.drift,
        tables: comparisons.length,
        ...(input.window ? { window: input.window } : {}),
        artifacts: {
          json: url(input.artifacts, 'discover.json'),
          markdown: url(input.artifacts, 'discover.md'),
          list: url(input.artifacts, 'restore-list.txt'),
          listWithPartial: url(input.artifacts, 'restore-list-partial.txt'),
        },
      };
      const drifted = plan.drift.tables.filter((d) => d.defaulted.length || d.dropped.length || d.retyped.length);
      if (drifted.length || plan.drift.onlyInLive.length || plan.drift.onlyInBackup.length)
        summary.warnings.push(
          `the schemas differ (drift): ${[
            ...drifted.map(
              (d) =>
                `${d.table} (${[...d.defaulted.map((c) => `${c} live only`), ...d.dropped.map((c) => `${c} backup only`), ...d.retyped.map((r) => `${r.column} ${r.backup} -> ${r.live}`)].join(', ')})`,
            ),
            ...plan.drift.onlyInLive.map((t) => `${t} (live only)`),
            ...plan.drift.onlyInBackup.map((t) => `${t} (backup only)`),
          ].join(', ')}: tenants are classified on the columns both sides have`,
        );
      const sorted = classified.tenants.sort((a, b) => a.tenantId.localeCompare(b.tenantId, 'en', { numeric: true }));
      const at = (name: string) => ({ bucket: input.artifacts.bucket, key: `${input.artifacts.prefix}${name}` });
      await putJson(s3, at('discover.json'), { summary, tenants: sorted.filter((t) => t.class !== 'intact') });
      await putText(s3, at('discover.md'), discoverMarkdown(summary, sorted), 'text/markdown');
      const list = (classes: TenantClass[]) =>
        `# tenants to restore, from discover ${input.discoverId} (${classes.join(', ')})\n${sorted
          .filter((t) => classes.includes(t.class))
          .map((t) => t.tenantId)
          .join('\n')}\n`;
      // A window's list is every tenant it touched: its revert brings back exactly what the window deleted or changed.
      const toRestore: TenantClass[] = input.window ? ['absent', 'partial', 'changed'] : ['absent'];
      await putText(s3, at('restore-list.txt'), list(toRestore), 'text/plain');
      await putText(
        s3,
        at('restore-list-partial.txt'),
        list([...new Set([...toRestore, 'partial' as const])]),
        'text/plain',
      );
      return summary;
    },
  };
}
