/**
 * The restore report: every child writes its TenantResult to `<artifacts>/tenants/<tenantId>.json`; at the end the
 * parent's report activity gathers them into `<artifacts>/report.json` and `report.md` (rows per table, conflicts,
 * checksums, durations, actions). The workflow result stays a small summary that points to them.
 */
import { createHash } from 'node:crypto';
import { ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { heartbeat } from '@temporalio/activity';
import { tenantEnded } from './metrics';
import { describeTarget } from './point-in-time';
import { formatS3Url, getJson, putJson, putText } from './s3';
import type { TenantId } from './restore-types';
import type {
  ArtifactsRef,
  ObjectRef,
  PlanRef,
  PointInTimeScratch,
  RecoveryTarget,
  RestoreStatus,
  ScratchInfo,
  TenantResult,
} from './restore-types';
import { normalizeTenantId } from './restore-types';
import type { WindowConflict, WindowTenant } from './window';

export interface ReportTenant {
  tenantId: TenantId;
  status: TenantResult['status'] | 'not-started';
  error?: string;
  rows: Record<string, number>;
  skipped: Record<string, number>;
  conflicts: Record<string, number>;
  /** Its state in live at preflight: absent, partial or present (present and partial are refused unless allowed). */
  liveState?: string;
  /** For a tenant whose root row was in live: rows of the backup missing in live at preflight, per table. */
  missingAtPreflight?: Record<string, number>;
  /** A partial tenant restored with allowPartial: the primary keys of exactly the rows that came back, per table. */
  restoredKeys?: Record<string, { keys: string[][]; total: number }>;
  parentClosure: Array<{ table: string; rows: number }>;
  validation: Array<{ table: string; scratchCount: number; liveCount: number; checksum: string; match: boolean }>;
  orphans: Array<{ table: string; constraint: string; rows: number }>;
  actions: TenantResult['actions'];
  durations: TenantResult['durations'];
  /** Restored in a group: rows, conflicts, validation and durations above are the group's, shared by its tenants. */
  group?: { workflowId: string; tenants: number };
  /** Time its steps waited for a busy live (adaptive throttling). */
  throttledMs?: number;
  /**
   * An incident window's revert (activities/window.ts), per table: rows the window deleted, changed and added, rows set
   * back to T0 (`reverted`), and the conflicts left as they are (listed by key in window.json).
   */
  window?: {
    deleted: Record<string, number>;
    changed: Record<string, number>;
    added: Record<string, number>;
    reverted: Record<string, number>;
    conflicts: Record<string, number>;
  };
}

export interface RestoreReport {
  restoreId: string;
  status: RestoreStatus;
  startedAt: string;
  finishedAt: string;
  durationMs: number;
  live: string;
  tenantRoot: string;
  conflict: string;
  source: {
    backup?: string;
    scratch?: string;
    sha256?: string;
    bytes?: number;
    verifiedBy?: string;
    reused?: boolean;
    scratchMs?: number;
    /** A point-in-time scratch: the target, where recovery stopped, the last transaction replayed, the host. */
    pointInTime?: PointInTimeScratch;
  };
  /** An incident window's revert: its two moments, its row counts, and where its conflicts are listed by key. */
  window?: {
    from: RecoveryTarget;
    to: RecoveryTarget;
    deleted: number;
    changed: number;
    added: number;
    conflicts: number;
    object: string;
  };
  plan?: { digest: string; location: string; tables: number };
  totals: {
    tenants: number;
    restored: number;
    failed: number;
    cancelled: number;
    notStarted: number;
    rows: Record<string, number>;
    skipped: Record<string, number>;
    conflicts: Record<string, number>;
    /** Shared parents inserted for the restored rows, per table (each unit's once). */
    parentClosure: Record<string, number>;
  };
  timing: { copyMsTotal: number; tenantMsTotal: number; tenantMsMedian: number; tenantMsMax: number };
  error?: string;
  tenants: ReportTenant[];
}

export interface WriteReportInput {
  restoreId: string;
  artifacts: ArtifactsRef;
  status: RestoreStatus;
  startedAt: number;
  finishedAt: number;
  live: string;
  tenantRoot: string;
  conflict: string;
  backup?: string;
  scratch?: ScratchInfo;
  plan?: PlanRef;
  tenantList?: ObjectRef;
  error?: string;
  /** An incident window's revert: its window.json (activities/window.ts). */
  window?: ObjectRef;
}

const add = (into: Record<string, number>, from: Record<string, number> | undefined) => {
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
function windowSection(report: RestoreReport): string[] {
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
interface WindowFile {
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

export function createReportActivities({ s3 }: { s3: S3Client }) {
  /** The window's totals for the report, and each tenant's share set on its row. */
  async function windowOfReport(
    object: ObjectRef,
    tenants: ReportTenant[],
    results: Map<string, TenantResult>,
  ): Promise<RestoreReport['window']> {
    const file = await getJson<WindowFile>(s3, object);
    for (const t of tenants) t.window = windowCounts(t.tenantId, file, results.get(t.tenantId));
    return {
      from: file.from,
      to: file.to,
      deleted: file.deleted,
      changed: file.changed,
      added: file.added,
      conflicts: file.conflicts.length,
      object: formatS3Url(object),
    };
  }

  async function listKeys(bucket: string, prefix: string): Promise<string[]> {
    const keys: string[] = [];
    let token: string | undefined;
    do {
      const page = await s3.send(
        new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }),
      );
      for (const o of page.Contents ?? []) if (o.Key) keys.push(o.Key);
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
      heartbeat({ listed: keys.length });
    } while (token);
    return keys;
  }

  const activities = {
    /**
     * A unit's finished tenants: one file per tenant, each with the unit's evidence (`result`) and its own status,
     * error and actions, so the report has every tenant's evidence whatever the outcome. The report counts the rows
     * of a unit of several once.
     */
    async recordGroupResults(input: {
      artifacts: ArtifactsRef;
      result: TenantResult;
      tenants: Array<Pick<TenantResult, 'tenantId' | 'status' | 'error' | 'actions'>>;
    }): Promise<number> {
      // One object per call (a unit's tenants that finished together), not one per tenant: a restore of 10,000 small
      // tenants wrote 10,000 objects during its window and read them all back for its report. The key is a digest of
      // the call (restore, first finish, tenants), so a retried activity writes the same object again.
      await putJson(s3, unitRecordRef(input.artifacts, input.result, input.tenants), {
        version: 1,
        result: input.result,
        tenants: input.tenants,
      } satisfies UnitRecord);
      for (const t of input.tenants) tenantEnded(t.status);
      return input.tenants.length;
    },

    /** The same record for one tenant, as the previous release's per-tenant children call it. */
    async recordTenantResult(input: { artifacts: ArtifactsRef; result: TenantResult }): Promise<ObjectRef> {
      // The previous release's per-tenant children, replaying: the record where they wrote it.
      const ref = {
        bucket: input.artifacts.bucket,
        key: `${input.artifacts.prefix}tenants/${input.result.tenantId}.json`,
      };
      await putJson(s3, ref, input.result);
      tenantEnded(input.result.status);
      return ref;
    },

    async writeRestoreReport(input: WriteReportInput): Promise<{ json: string; markdown: string }> {
      const { bucket, prefix } = input.artifacts;
      // As the restore used them: uuids in PostgreSQL's text form (readTenantPage), so that results match the list.
      const ids: TenantId[] = input.tenantList
        ? (await getJson<string[]>(s3, input.tenantList)).map((id) =>
            normalizeTenantId(String(id), input.plan?.rootKeyType),
          )
        : [];
      // Each unit's record (units/), and the per-tenant records of restores started by earlier releases (tenants/). A
      // tenant recorded twice keeps its latest record.
      const results = new Map<string, TenantResult>();
      const keep = (r: TenantResult) => {
        if (r.restoreId !== input.restoreId) return;
        const known = results.get(r.tenantId);
        if (!known || (r.finishedAt ?? 0) >= (known.finishedAt ?? 0)) results.set(r.tenantId, r);
      };
      const keys = [...(await listKeys(bucket, `${prefix}tenants/`)), ...(await listKeys(bucket, `${prefix}units/`))];
      for (let i = 0; i < keys.length; i += 32) {
        const batch = await Promise.all(
          keys.slice(i, i + 32).map((key) => getJson<TenantResult | UnitRecord>(s3, { bucket, key })),
        );
        for (const r of batch) {
          if ('tenants' in r && 'result' in r) for (const t of r.tenants) keep({ ...r.result, ...t });
          else keep(r);
        }
        heartbeat({ read: i });
      }
      // A partial tenant's restored keys were stored by its copy activity, outside history: the report lists them.
      for (const r of results.values()) {
        if (!r.copy?.restoredKeysObject) continue;
        r.copy.restoredKeys = await getJson<NonNullable<typeof r.copy.restoredKeys>>(
          s3,
          r.copy.restoredKeysObject,
        ).catch(() => r.copy!.restoredKeys);
      }
      const tenants = ids.map((id) => tenantRow(id, results.get(id)));
      const window = input.window ? await windowOfReport(input.window, tenants, results) : undefined;
      const totals = {
        tenants: tenants.length,
        restored: 0,
        failed: 0,
        cancelled: 0,
        notStarted: 0,
        rows: {} as Record<string, number>,
        skipped: {} as Record<string, number>,
        conflicts: {} as Record<string, number>,
        parentClosure: {} as Record<string, number>,
      };
      const tenantMs: number[] = [];
      let copyMsTotal = 0;
      const groupsCounted = new Set<string>();
      for (const x of tenants) {
        if (x.status === 'restored') totals.restored++;
        else if (x.status === 'failed') totals.failed++;
        else if (x.status === 'cancelled') totals.cancelled++;
        else totals.notStarted++;
        if (x.durations.total !== undefined) tenantMs.push(x.durations.total);
        // The tenants of a group share one set of evidence: count it once.
        if (x.group) {
          if (groupsCounted.has(x.group.workflowId)) continue;
          groupsCounted.add(x.group.workflowId);
        }
        add(totals.rows, x.rows);
        add(totals.skipped, x.skipped);
        add(totals.conflicts, x.conflicts);
        add(totals.parentClosure, Object.fromEntries(x.parentClosure.map((p) => [p.table, p.rows])));
        copyMsTotal += x.durations.copy ?? 0;
      }
      tenantMs.sort((a, b) => a - b);
      const report: RestoreReport = {
        restoreId: input.restoreId,
        status: input.status,
        startedAt: new Date(input.startedAt).toISOString(),
        finishedAt: new Date(input.finishedAt).toISOString(),
        durationMs: input.finishedAt - input.startedAt,
        live: input.live,
        tenantRoot: input.tenantRoot,
        conflict: input.conflict,
        source: {
          backup: input.backup,
          scratch: input.scratch?.ref,
          sha256: input.scratch?.sha256,
          bytes: input.scratch?.bytes,
          verifiedBy: input.scratch?.verifiedBy,
          reused: input.scratch?.reused,
          scratchMs: input.scratch?.durationMs,
          ...(input.scratch?.pointInTime ? { pointInTime: input.scratch.pointInTime } : {}),
        },
        plan: input.plan
          ? { digest: input.plan.digest, location: formatS3Url(input.plan), tables: input.plan.tables }
          : undefined,
        totals,
        timing: {
          copyMsTotal,
          tenantMsTotal: tenantMs.reduce((a, b) => a + b, 0),
          tenantMsMedian: tenantMs.length ? tenantMs[Math.floor(tenantMs.length / 2)] : 0,
          tenantMsMax: tenantMs.length ? tenantMs[tenantMs.length - 1] : 0,
        },
        error: input.error,
        ...(window ? { window } : {}),
        tenants,
      };
      const json = { bucket, key: `${prefix}report.json` };
      const markdown = { bucket, key: `${prefix}report.md` };
      await putJson(s3, json, report);
      await putText(s3, markdown, renderMarkdown(report), 'text/markdown');
      return { json: formatS3Url(json), markdown: formatS3Url(markdown) };
    },
  };
  return activities;
}

/** A unit's record: the evidence its tenants share, and each tenant's status, error and actions. */
export interface UnitRecord {
  version: 1;
  result: TenantResult;
  tenants: Array<Pick<TenantResult, 'tenantId' | 'status' | 'error' | 'actions'>>;
}

/** Where a unit's record goes: `units/<digest of restore, start and tenants>.json` under the restore's prefix. */
export function unitRecordRef(
  artifacts: ArtifactsRef,
  result: Pick<TenantResult, 'restoreId' | 'startedAt'>,
  tenants: Array<Pick<TenantResult, 'tenantId'>>,
): ObjectRef {
  const digest = createHash('sha256')
    .update(JSON.stringify([result.restoreId, result.startedAt, tenants.map((t) => t.tenantId)]))
    .digest('hex')
    .slice(0, 32);
  return { bucket: artifacts.bucket, key: `${artifacts.prefix}units/${digest}.json` };
}
