/**
 * The restore report: every child writes its TenantResult to `<artifacts>/tenants/<tenantId>.json`; at the end the
 * parent's report activity gathers them into `<artifacts>/report.json` and `report.md` (rows per table, conflicts,
 * checksums, durations, actions). The workflow result stays a small summary that points to them.
 */
import { createHash } from 'node:crypto';
import { ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { heartbeat } from '@temporalio/activity';
import { tenantEnded } from './metrics';
import { formatS3Url, getJson, putJson, putText } from './s3';
import type { TenantId } from './restore-types';
import type { ArtifactsRef, ObjectRef, TenantResult } from './restore-types';
import { normalizeTenantId } from './restore-types';
import { ReportTenant, RestoreReport, WriteReportInput } from './report-types';
import { WindowFile, add, renderMarkdown, tenantRow, windowCounts } from './report-render';
export * from './report-types';

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
