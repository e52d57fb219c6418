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
import {
  DiscoverSummary,
  DiscoverTablesInput,
  TableComparison,
  TenantClass,
  classify,
  summarize,
} from './discover-classify';
import { discoverMarkdown } from './discover-markdown';
export * from './discover-classify';

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
