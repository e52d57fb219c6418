/**
 * The report rendered: a tenant's row from its unit's result, each tenant's share of an incident window, and the
 * Markdown report (report.md).
 */
import { describeTarget } from './point-in-time';
import type { TenantId } from './restore-types';
import type { RecoveryTarget, TenantResult } from './restore-types';
import type { WindowConflict, WindowTenant } from './window';
import { ReportTenant, RestoreReport } from './report-types';

export const add = (into: Record<string, number>, from: Record<string, number> | undefined) => {
  for (const [k, v] of Object.entries(from ?? {})) into[k] = (into[k] ?? 0) + v;
};

export function tenantRow(tenantId: TenantId, result: TenantResult | undefined): ReportTenant {
  if (!result)
    return {
      tenantId,
      status: 'not-started',
      rows: {},
      skipped: {},
      conflicts: {},
      parentClosure: [],
      validation: [],
      orphans: [],
      actions: [],
      durations: {},
    };
  return {
    tenantId,
    status: result.status,
    error: result.error ? `${result.error.type ? `${result.error.type}: ` : ''}${result.error.message}` : undefined,
    rows: result.copy?.rows ?? {},
    skipped: result.copy?.skipped ?? {},
    // A group's preflight leaves the key checks to its copy (PreflightResult.checks), which then reports the conflicts.
    conflicts: (result.preflight?.checks === 'state' ? result.copy?.conflicts : result.preflight?.conflicts) ?? {},
    liveState: result.preflight?.tenants?.[tenantId]?.state ?? result.preflight?.liveState,
    ...(result.preflight?.tenants?.[tenantId]?.missing
      ? { missingAtPreflight: result.preflight.tenants[tenantId]!.missing }
      : {}),
    ...(result.copy?.restoredKeys ? { restoredKeys: result.copy.restoredKeys } : {}),
    parentClosure: result.copy?.parentClosure ?? [],
    validation: (result.validation?.tables ?? []).map((t) => ({
      table: t.table,
      scratchCount: t.scratchCount,
      liveCount: t.liveCount,
      checksum: t.liveChecksum,
      match: t.match,
    })),
    orphans: result.validation?.orphans ?? [],
    actions: result.actions,
    durations: result.durations,
    ...(result.group ? { group: { workflowId: result.group.workflowId, tenants: result.group.tenantIds.length } } : {}),
    throttledMs:
      (result.preflight?.throttledMs ?? 0) + (result.copy?.throttledMs ?? 0) + (result.validation?.throttledMs ?? 0),
  };
}

export function renderMarkdown(report: RestoreReport): string {
  const t = report.totals;
  const lines = [
    `# Restore ${report.restoreId}: ${report.status}`,
    '',
    `- started ${report.startedAt}, finished ${report.finishedAt} (${(report.durationMs / 1000).toFixed(1)} s)`,
    `- live \`${report.live}\`, tenant root \`${report.tenantRoot}\`, conflict policy \`${report.conflict}\``,
    report.source.pointInTime
      ? `- point in time: stanza \`${report.source.pointInTime.stanza}\` recovered to ${report.source.pointInTime.target.type === 'time' ? report.source.pointInTime.target.time : `LSN ${report.source.pointInTime.target.lsn}`} on host ${report.source.pointInTime.host} in ${((report.source.scratchMs ?? 0) / 1000).toFixed(1)} s: stopped ${report.source.pointInTime.stopped ?? '?'}; last transaction replayed at ${report.source.pointInTime.lastTransaction ?? '?'}${report.source.pointInTime.gapMs !== undefined ? ` (${(report.source.pointInTime.gapMs / 1000).toFixed(3)} s before the target)` : ''}`
      : report.source.backup
        ? `- backup \`${report.source.backup}\` (${report.source.bytes ?? '?'} bytes, sha256 \`${report.source.sha256 ?? '?'}\`, verified by ${report.source.verifiedBy ?? '?'}${report.source.reused ? ', scratch reused' : ''})`
        : `- scratch \`${report.source.scratch}\``,
    report.plan
      ? `- plan digest \`${report.plan.digest}\` (${report.plan.tables} tables, ${report.plan.location})`
      : '- no plan',
    report.error ? `- **error**: ${report.error}` : '',
    '',
    `| tenants | restored | failed | cancelled | not started |`,
    `|---:|---:|---:|---:|---:|`,
    `| ${t.tenants} | ${t.restored} | ${t.failed} | ${t.cancelled} | ${t.notStarted} |`,
    '',
    '## Rows restored per table',
    '',
    '| table | rows | kept (skip) | conflicts |',
    '|---|---:|---:|---:|',
    ...Object.keys({ ...t.rows, ...t.skipped, ...t.conflicts })
      .sort()
      .map((k) => `| ${k} | ${t.rows[k] ?? 0} | ${t.skipped[k] ?? 0} | ${t.conflicts[k] ?? 0} |`),
    '',
    ...windowSection(report),
    ...refusedSection(report.tenants),
    ...partialSection(report.tenants),
    '## Tenants',
    '',
    '| tenant | status | rows | validated tables | actions | duration (ms) | error |',
    '|---|---|---:|---|---|---:|---|',
    ...report.tenants.map((x) => {
      const rows = Object.values(x.rows).reduce((a, b) => a + b, 0);
      const valid = x.validation.length ? `${x.validation.filter((v) => v.match).length}/${x.validation.length}` : '-';
      const actions = x.actions.map((a) => `${a.name}:${a.status}`).join(', ') || '-';
      return `| ${x.tenantId} | ${x.status} | ${x.group ? `${rows} (group of ${x.group.tenants})` : rows} | ${valid} | ${actions} | ${x.durations.total ?? '-'} | ${(x.error ?? '').replace(/\|/g, '\\|').slice(0, 200)} |`;
    }),
    '',
  ];
  return lines.filter((l, i) => l !== '' || lines[i - 1] !== '').join('\n');
}

/** An incident window's revert: what the window did, what came back, and the conflicts left as they are. */
export function windowSection(report: RestoreReport): string[] {
  const w = report.window;
  if (!w) return [];
  const sum = (m?: Record<string, number>) => Object.values(m ?? {}).reduce((a, b) => a + b, 0);
  return [
    `## The incident window: ${describeTarget(w.from)} to ${describeTarget(w.to)}`,
    '',
    `The window deleted ${w.deleted} row(s), changed ${w.changed} and added ${w.added}. Deleted rows are inserted again, changed rows set back to their T0 version where live still held what the window left; added rows are left (never deleted). ${w.conflicts} conflict(s): rows changed or deleted again since the window, or keys live holds with other content; they are left as they are, listed by key in ${w.object}. A tenant with conflicts was not written at all unless the restore said --conflicts report.`,
    '',
    '| tenant | status | deleted | changed | reverted | added | conflicts |',
    '|---|---|---:|---:|---:|---:|---:|',
    ...report.tenants.map(
      (x) =>
        `| ${x.tenantId} | ${x.status} | ${sum(x.window?.deleted)} | ${sum(x.window?.changed)} | ${sum(x.window?.reverted)} | ${sum(x.window?.added)} | ${sum(x.window?.conflicts)} |`,
    ),
    '',
  ];
}

/** Tenants refused because they are still in live: nothing of them was written. */
function refusedSection(tenants: ReportTenant[]): string[] {
  const refused = tenants.filter((x) => x.error?.startsWith('TenantPresentError'));
  if (!refused.length) return [];
  return [
    `## Refused: still in live (${refused.length})`,
    '',
    'Nothing of these tenants was written: no row, no sequence step, no re-enable action.',
    '',
    '| tenant | state | rows of the backup missing in live |',
    '|---|---|---|',
    ...refused.map(
      (x) =>
        `| ${x.tenantId} | ${x.liveState ?? '?'} | ${
          Object.entries(x.missingAtPreflight ?? {})
            .map(([t, n]) => `${t}: ${n}`)
            .join(', ') || 'none'
        } |`,
    ),
    '',
  ];
}

/** Partial tenants restored with allowPartial: which rows came back, by primary key (keys only, never row data). */
function partialSection(tenants: ReportTenant[]): string[] {
  const partial = tenants.filter((x) => x.restoredKeys);
  if (!partial.length) return [];
  const shown = 50;
  return [
    `## Partial tenants: the rows that came back (${partial.length})`,
    '',
    'Only rows missing in live were inserted; no existing row was updated. Keys are primary keys (report.json lists up to 1000 per table).',
    '',
    ...partial.flatMap((x) => [
      `### Tenant ${x.tenantId}`,
      '',
      ...Object.entries(x.restoredKeys!).map(
        ([table, k]) =>
          `- ${table}: ${k.total} row(s): ${k.keys
            .slice(0, shown)
            .map((key) => `(${key.join(', ')})`)
            .join(
              ' ',
            )}${k.total > Math.min(k.keys.length, shown) ? ` … and ${k.total - Math.min(k.keys.length, shown)} more` : ''}`,
      ),
      '',
    ]),
  ];
}

/** window.json as activities/window.ts writes it. */
export interface WindowFile {
  from: RecoveryTarget;
  to: RecoveryTarget;
  deleted: number;
  changed: number;
  added: number;
  conflicts: WindowConflict[];
  tenants: WindowTenant[];
}

/** Each tenant's share of an incident window: what the window did (window.json) and what its copy set back. */
export function windowCounts(
  tenant: TenantId,
  file: Pick<WindowFile, 'tenants'>,
  result: TenantResult | undefined,
): ReportTenant['window'] {
  const mine = file.tenants.find((t) => t.tenantId === tenant);
  return {
    deleted: mine?.deleted ?? {},
    changed: mine?.changed ?? {},
    added: mine?.added ?? {},
    reverted: result?.copy?.reverted ?? {},
    conflicts: mine?.conflicts ?? {},
  };
}
