/**
 * `list` and `describe`: what restores and drills exist, from Temporal's visibility store (search attributes), and one
 * restore whole: what it was asked to do, where it is, what failed, where its report and its Web UI page are.
 */
import type { Client, WorkflowExecutionInfo } from '@temporalio/client';
import {
  RestoreIdKey,
  RestoreKindKey,
  RestorePhaseKey,
  TenantsFailedKey,
  TenantsRestoredKey,
  TenantsTotalKey,
  type BulkRestoreInput,
} from '../../workflows/definitions';
import { webUiLink } from './connection';
import { UsageError } from './input';
import { getRestoreStatus, restoreInput, type RestoreStatus } from './restore';

/** `--status` values, and the ExecutionStatus each selects. */
export const listStatuses: Record<string, string> = {
  running: 'Running',
  completed: 'Completed',
  failed: 'Failed',
  cancelled: 'Canceled',
  terminated: 'Terminated',
  'timed-out': 'TimedOut',
};

export interface ListedRestore {
  id: string;
  kind: 'restore' | 'drill' | 'discover';
  workflowId: string;
  status: string;
  startedAt: string;
  closedAt?: string;
  phase?: string;
  tenants?: { total?: number; restored?: number; failed?: number };
}

/** Restores, drills and discovers, newest first; a restore that continued-as-new is listed once, as its latest run. */
export async function listRestores(
  client: Client,
  options: { status?: string; kind?: 'restore' | 'drill' | 'discover'; limit: number },
): Promise<ListedRestore[]> {
  const kinds = options.kind
    ? `"${{ drill: 'drill', restore: 'bulk', discover: 'discover' }[options.kind]}"`
    : '"bulk", "drill", "discover"';
  const clauses = [`RestoreKind IN (${kinds})`];
  if (options.status) {
    const status = listStatuses[options.status];
    if (!status) throw new UsageError(`--status '${options.status}': one of ${Object.keys(listStatuses).join(', ')}.`);
    clauses.push(`ExecutionStatus = "${status}"`);
  } else clauses.push('ExecutionStatus != "ContinuedAsNew"');
  const found = new Map<string, WorkflowExecutionInfo>();
  // Visibility returns newest first; enough are read to fill the page after dropping older runs of the same id.
  for await (const w of client.workflow.list({ query: clauses.join(' AND ') })) {
    const previous = found.get(w.workflowId);
    if (!previous || w.startTime > previous.startTime) found.set(w.workflowId, w);
    if (found.size >= options.limit * 2) break;
  }
  return [...found.values()]
    .sort((a, b) => b.startTime.getTime() - a.startTime.getTime())
    .slice(0, options.limit)
    .map((w) => {
      const a = w.typedSearchAttributes;
      const kind = a.get(RestoreKindKey);
      return {
        id: a.get(RestoreIdKey) ?? w.workflowId,
        kind: kind === 'drill' ? 'drill' : kind === 'discover' ? 'discover' : 'restore',
        workflowId: w.workflowId,
        status: w.status.name.toLowerCase(),
        startedAt: w.startTime.toISOString(),
        ...(w.closeTime ? { closedAt: w.closeTime.toISOString() } : {}),
        phase: a.get(RestorePhaseKey),
        tenants: {
          total: a.get(TenantsTotalKey),
          restored: a.get(TenantsRestoredKey),
          failed: a.get(TenantsFailedKey),
        },
      };
    });
}

export function formatListed(r: ListedRestore): string {
  const t = r.tenants;
  const counts = t?.total !== undefined ? `${t.restored ?? 0}/${t.total} restored, ${t.failed ?? 0} failed` : '';
  return [
    r.startedAt.replace('T', ' ').slice(0, 19),
    r.kind.padEnd(7),
    r.status.padEnd(10),
    r.id,
    counts,
    r.phase && r.status === 'running' ? `phase ${r.phase}` : '',
  ]
    .filter(Boolean)
    .join('  ');
}

export interface RestoreDescription extends RestoreStatus {
  input?: Pick<
    BulkRestoreInput,
    | 'source'
    | 'live'
    | 'tenantRoot'
    | 'conflict'
    | 'concurrency'
    | 'groupSize'
    | 'unitRows'
    | 'allowPartial'
    | 'keepScratch'
  > & { tenants: number | 'in S3' };
  report?: string;
}

/** One restore whole: its input (from its first history event), its status, its report's location, its Web UI link. */
export async function describeRestore(client: Client, restoreId: string): Promise<RestoreDescription> {
  const status = await getRestoreStatus(client, restoreId);
  const input = await restoreInput(client, restoreId);
  return {
    ...status,
    ...(input
      ? {
          input: {
            source: input.source,
            live: input.live,
            tenantRoot: input.tenantRoot,
            conflict: input.conflict,
            concurrency: input.concurrency,
            groupSize: input.groupSize,
            ...(input.unitRows ? { unitRows: input.unitRows } : {}),
            allowPartial: input.allowPartial,
            keepScratch: input.keepScratch,
            tenants: input.tenants?.length ?? 'in S3',
          },
        }
      : {}),
    ...(status.artifacts ? { report: `${status.artifacts}report.md` } : {}),
    webUi: webUiLink(restoreId),
  };
}
