/**
 * The evidence a copy keeps in S3 so that a retry knows what an earlier attempt committed: each attempt's first
 * transaction id (written before its COMMIT), what a partial tenant's copy wrote, and the keys it restored.
 */
import { activityInfo, log } from '@temporalio/activity';
import type { S3Client } from '@aws-sdk/client-s3';
import { type CopyTotals } from './copy/common';
import { type Pools } from './db';
import type { CopyResult, TenantId } from './restore-types';
import { getText, putJson } from './s3';
import { restoredKeysObject, type TenantStepInput } from './step-input';

/** The copy's evidence in S3, for the workers' pools and S3 client. */
export function copyEvidenceStore({ pools, s3 }: { pools: Pools; s3: S3Client }) {
  /** Where a copy activity records the id of each attempt's first transaction, before committing it. */
  function copyCommitsObject(input: TenantStepInput): { bucket: string; key: string } | undefined {
    if (!input.artifacts) return undefined;
    const info = activityInfo();
    const execution = info.workflowExecution;
    if (!execution) return undefined;
    const unit = execution.workflowId.replace(/[^A-Za-z0-9._-]/g, '_');
    return {
      bucket: input.artifacts.bucket,
      key: `${input.artifacts.prefix}copies/${unit}-${info.activityId}-${execution.runId}.json`,
    };
  }

  async function readCommitEvidence(ref: { bucket: string; key: string }): Promise<string[]> {
    try {
      const ids = JSON.parse(await getText(s3, ref)) as unknown;
      return Array.isArray(ids) ? ids.filter((id): id is string => typeof id === 'string' && /^\d+$/.test(id)) : [];
    } catch (error) {
      if ((error as { name?: string }).name === 'NoSuchKey') return [];
      throw error;
    }
  }

  /** The transactions earlier attempts were about to commit that did commit. */
  async function committedEarlier(live: string, ref: { bucket: string; key: string }): Promise<string[]> {
    const ids = await readCommitEvidence(ref);
    if (!ids.length) return [];
    const { rows } = await pools
      .get(live)
      .query<{ id: string }>(`SELECT id FROM unnest($1::text[]) AS id WHERE pg_xact_status(id::xid8) = 'committed'`, [
        ids,
      ]);
    return rows.map((r) => r.id);
  }

  /** Where a partial tenant's copy records what a transaction wrote, before recording its id and committing it. */
  function writtenObject(evidence: { bucket: string; key: string }, transactionId: string) {
    return { bucket: evidence.bucket, key: evidence.key.replace(/\.json$/, `-written-${transactionId}.json`) };
  }

  /**
   * What the committed transactions of earlier attempts of a partial tenant's copy wrote. A record that is missing
   * (a worker of a release before this one committed it) is named in the log: the report then counts only this
   * attempt's inserts, as those releases did.
   */
  async function earlierWrites(
    evidence: { bucket: string; key: string },
    committed: string[],
    tenantId: TenantId,
  ): Promise<CopyTotals[]> {
    const found: CopyTotals[] = [];
    for (const id of committed) {
      const ref = writtenObject(evidence, id);
      try {
        found.push(JSON.parse(await getText(s3, ref)) as CopyTotals);
      } catch (error) {
        if ((error as { name?: string }).name !== 'NoSuchKey') throw error;
        log.warn('an earlier attempt committed without recording what it wrote; the report counts only this attempt', {
          tenantId,
          transactionId: id,
          object: `s3://${ref.bucket}/${ref.key}`,
        });
      }
    }
    return found;
  }

  async function storeRestoredKeys(input: TenantStepInput, result: CopyResult): Promise<CopyResult> {
    if (!input.artifacts || !result.restoredKeys) return result;
    const ref = restoredKeysObject(input.artifacts, input.tenantId);
    if (Object.values(result.restoredKeys).some((k) => k.total > 0)) await putJson(s3, ref, result.restoredKeys);
    const counts = Object.fromEntries(
      Object.entries(result.restoredKeys).map(([table, k]) => [table, { keys: [], total: k.total }]),
    );
    return { ...result, restoredKeys: counts, restoredKeysObject: ref };
  }

  return { copyCommitsObject, readCommitEvidence, committedEarlier, writtenObject, earlierWrites, storeRestoredKeys };
}
