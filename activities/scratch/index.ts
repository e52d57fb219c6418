/**
 * The source of scratch, one home: a pg_dump archive from S3 loaded into an owned database (dump.ts, with the object's
 * checks in fetch-backup.ts and archive.ts, and pg_restore's passes in restore-archive.ts), a scratch the operator
 * gave (checkScratch), and the owned databases' names and markers (owned-database.ts) that restores, discovers and
 * drills share. A point-in-time scratch is recovered by activities/point-in-time/.
 */
import { log } from '@temporalio/activity';
import type { S3Client } from '@aws-sdk/client-s3';
import { databaseName, dropOwnedDatabase, resolveConnectionString, type DatabaseRef, type Pools } from '../db';
import type { ScratchInfo } from '../restore-types';
import { prepareScratch, type PrepareScratchInput } from './dump';
import {
  inspectScratch,
  markerNames,
  markerOwner,
  scratchDatabaseName,
  scratchKindOf,
  type ScratchKind,
} from './owned-database';

export * from './owned-database';
export * from './archive';
export { splitStatements, tablesToUnlog, foreignKeyTables, type ScratchTable } from './restore-archive';
export { runTool } from '../tools';
export type { PrepareScratchInput } from './dump';

export function createScratchActivities({ pools, s3 }: { pools: Pools; s3: S3Client }) {
  const inspect = (server: DatabaseRef, name: string) => inspectScratch(pools, server, name);
  return {
    /**
     * Loads the backup into this restore's scratch (`scratchDatabaseName(restoreId, kind)`) on `server`, or reuses it
     * when its marker says it is this restore's, loaded from the same archive (activities/scratch/dump.ts).
     */
    prepareScratch: (input: PrepareScratchInput): Promise<ScratchInfo> => prepareScratch(pools, s3, input),

    /**
     * Drops the scratch this restore created: only when its name is this restore's and its marker names this restore
     * (kind and id). A `--scratch <url>` given by the operator (owned: false) is never dropped, nor is anything else.
     */
    async dropScratch(input: {
      kind: ScratchKind;
      restoreId: string;
      scratch: ScratchInfo;
    }): Promise<{ dropped: boolean; reason?: string }> {
      const { scratch } = input;
      const kind = scratchKindOf(input);
      if (!scratch.owned || !scratch.server) return { dropped: false, reason: 'not created by this restore' };
      const name = scratchDatabaseName(input.restoreId, kind);
      const target = databaseName(resolveConnectionString(scratch.ref));
      if (target !== name) {
        log.warn("scratch not dropped: its name is not this restore's", { database: target, expected: name });
        return { dropped: false, reason: `'${target}' is not this restore's scratch '${name}'` };
      }
      const existing = await inspect(scratch.server, name);
      if (!existing.exists) return { dropped: false, reason: 'already gone' };
      if (!markerNames(existing.marker, kind, input.restoreId)) {
        log.warn('scratch not dropped: its marker does not name this restore', {
          database: name,
          marker: existing.marker?.restoreId ?? null,
          kind: existing.marker?.kind ?? null,
        });
        return {
          dropped: false,
          reason: `it is ${markerOwner(existing.marker)}, not the scratch of ${kind} '${input.restoreId}'`,
        };
      }
      await pools.close(scratch.ref);
      await dropOwnedDatabase(pools.get(scratch.server), name);
      return { dropped: true };
    },

    /** For `--scratch <url>`: checks that the database answers, and names it in the report. */
    async checkScratch(input: { scratch: DatabaseRef }): Promise<ScratchInfo> {
      const started = Date.now();
      await pools.get(input.scratch).query('SELECT 1');
      return { ref: input.scratch, owned: false, reused: true, durationMs: Date.now() - started };
    },
  };
}
