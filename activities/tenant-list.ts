/**
 * The tenant list of a restore lives in S3 (`<artifacts>/tenants.json`, a JSON array of ids), so that a list of any
 * length never enters workflow history whole: the parent reads it a page at a time, and carries only an index across
 * continue-as-new.
 */
import { ApplicationFailure } from '@temporalio/common';
import type { S3Client } from '@aws-sdk/client-s3';
import { getText, putText } from './s3';
import type { TenantId } from './restore-types';
import { normalizeTenantId, type ArtifactsRef, type ObjectRef } from './restore-types';
import { sameTenantKey, tenantIdPattern, tenantListProblems as listRule } from './input-contract';

export { tenantIdPattern };

export { sameTenantKey };

/** Checks a list of tenant ids (an S3 object's JSON array); returns the problems (empty when the list is good). */
export function tenantListProblems(ids: unknown[]): string[] {
  return listRule(ids.map((id, index) => ({ id, where: `entry ${index + 1}` }))).problems;
}

const listCache = new Map<string, Promise<TenantId[]>>();

export function createTenantListActivities({ s3 }: { s3: S3Client }) {
  function load(list: ObjectRef): Promise<TenantId[]> {
    const cacheKey = `${list.bucket}/${list.key}`;
    let ids = listCache.get(cacheKey);
    if (!ids) {
      ids = getText(s3, list).then((text) => (JSON.parse(text) as unknown[]).map(String));
      ids.catch(() => listCache.delete(cacheKey));
      listCache.set(cacheKey, ids);
      while (listCache.size > 8) listCache.delete(listCache.keys().next().value as string);
    }
    return ids;
  }

  return {
    /** Writes an inline list to `<artifacts>/tenants.json`, or checks a given object; returns where it is and its length. */
    async stageTenantList(input: {
      artifacts: ArtifactsRef;
      tenants?: TenantId[];
      tenantsObject?: ObjectRef;
    }): Promise<ObjectRef & { count: number }> {
      let ids: unknown[];
      let ref: ObjectRef;
      if (input.tenants) {
        ids = input.tenants;
        ref = { bucket: input.artifacts.bucket, key: `${input.artifacts.prefix}tenants.json` };
      } else if (input.tenantsObject) {
        ref = input.tenantsObject;
        try {
          ids = JSON.parse(await getText(s3, ref)) as unknown[];
        } catch (error) {
          if ((error as Error).name === 'SyntaxError')
            throw ApplicationFailure.nonRetryable(
              `s3://${ref.bucket}/${ref.key} is not a JSON array of tenant ids.`,
              'InvalidTenantList',
            );
          throw error;
        }
        if (!Array.isArray(ids))
          throw ApplicationFailure.nonRetryable(
            `s3://${ref.bucket}/${ref.key} is not a JSON array of tenant ids.`,
            'InvalidTenantList',
          );
      } else {
        throw ApplicationFailure.nonRetryable('A restore needs tenants or tenantsObject.', 'InvalidTenantList');
      }
      const problems = tenantListProblems(ids);
      if (problems.length)
        throw ApplicationFailure.nonRetryable(
          `Bad tenant list: ${problems.slice(0, 5).join('; ')}${problems.length > 5 ? ` (+${problems.length - 5} more)` : ''}.`,
          'InvalidTenantList',
        );
      if (input.tenants) await putText(s3, ref, JSON.stringify(ids.map(String)), 'application/json');
      return { ...ref, count: ids.length };
    },

    /** A page of the list: the ids at [offset, offset + limit), uuids in PostgreSQL's text form when the root key is a uuid. */
    async readTenantPage(input: {
      list: ObjectRef;
      offset: number;
      limit: number;
      rootKeyType?: string;
    }): Promise<TenantId[]> {
      const ids = await load(input.list);
      return ids.slice(input.offset, input.offset + input.limit).map((id) => normalizeTenantId(id, input.rootKeyType));
    },
  };
}
