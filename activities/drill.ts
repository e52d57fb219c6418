/**
 * Activities of the restore drill (workflows/restore-drill.ts): find the latest backup under a prefix, sample tenants
 * from it, create a disposable drill database with live's schema, check what the drill restored, record the result,
 * and drop the drill database.
 *
 * Live is only ever read, by `pg_dump --schema-only`. The drill database is created on live's server (or another
 * server given by the caller) under the drill's own name (`drill_<id>_<hash of the exact id>`, as scratches are named),
 * and marked as this drill's (COMMENT ON DATABASE) right after CREATE DATABASE. It is dropped only when its marker names
 * this drill; a database of that name that is someone else's is never dropped nor reused: the drill stops and says so.
 */
import type { S3Client } from '@aws-sdk/client-s3';
import { NoBackupFoundError, pickBackup } from './backups';
import { cancellationSignal, heartbeat } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import {
  databaseName,
  dropOwnedDatabase,
  escapeIdentifier,
  escapeLiteral,
  resolveConnectionString,
  type DatabaseRef,
  type Pools,
} from './db';
import { drillRecorded } from './metrics';
import { formatS3Url, getJson, parseS3Url, putJson } from './s3';
import { databaseOnServer, inspectDatabase, markerNames, parseScratchMarker, scratchDatabaseName } from './scratch';
import type { RestoreReport } from './report';
import type { TenantId } from './restore-types';
import {
  DrillDatabaseMarker,
  copySchema,
  drillDatabaseIsOwn,
  drillDatabaseName,
  notOwnDrillDatabase,
  parseDrillDatabaseMarker,
  qualified,
  sibling,
} from './drill-database';
export * from './drill-database';

/** What a drill leaves in S3 at `drills/<drillId>.json`, and returns as its result. */
export interface DrillRecord {
  drillId: string;
  status: 'passed' | 'failed';
  startedAt: string;
  finishedAt: string;
  backup?: string;
  backupCreatedAt?: string;
  tenants: TenantId[];
  restored: number;
  failed: number;
  rows: number;
  /** From the start of the restore (scratch load included) until every sampled tenant is validated. */
  timeToRestoreMs: number;
  /** Of timeToRestoreMs, loading the backup into scratch (download and pg_restore). */
  timeToScratchMs?: number;
  rowsPerSecond: number;
  /** The drill database held exactly the rows the report says were restored. */
  rowCheck?: { ok: boolean; tables: number; mismatches: Array<{ table: string; expected: number; found: number }> };
  restoreId: string;
  report?: string;
  failures: Array<{ tenantId?: TenantId; reason: string }>;
  error?: string;
}

export function createDrillActivities({ pools, s3 }: { pools: Pools; s3: S3Client }) {
  return {
    /** The newest pg_dump archive under `s3://bucket/prefix` (manifests and other JSON are skipped). */
    async findLatestBackup(input: {
      backupPrefix: string;
    }): Promise<{ backup: string; lastModified: string; size: number }> {
      try {
        const picked = await pickBackup(s3, input.backupPrefix, undefined, () => heartbeat());
        return { backup: picked.backup, lastModified: picked.lastModified, size: picked.size };
      } catch (error) {
        if (error instanceof NoBackupFoundError) throw ApplicationFailure.nonRetryable(error.message, 'NoBackupFound');
        throw error;
      }
    },

    /** K tenant ids of the backup's tenant root, a deterministic sample for the drill id (so a retry picks the same). */
    async sampleTenants(input: {
      scratch: DatabaseRef;
      tenantRoot: string;
      sample: number;
      drillId: string;
    }): Promise<TenantId[]> {
      const { rows } = await pools
        .get(input.scratch)
        .query<{ id: string }>(
          `SELECT k.id::text AS id FROM ${qualified(input.tenantRoot)} k ORDER BY md5(k.id::text || $1), k.id LIMIT $2`,
          [input.drillId, input.sample],
        );
      if (rows.length === 0)
        throw ApplicationFailure.nonRetryable(`The backup holds no tenant in ${input.tenantRoot}.`, 'NoTenantInBackup');
      return rows.map((r) => r.id).sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
    },

    /**
     * Creates this drill's database (drillDatabaseName) next to `server`, marks it as this drill's at once, and loads
     * live's schema into it (pg_dump --schema-only of live: read-only). Idempotent: a half-made drill database of an
     * earlier attempt (its marker names this drill) is dropped and made again; a database of that name that is not
     * this drill's is refused (NotOwnDrillDatabase), never dropped.
     */
    async createDrillDatabase(input: {
      drillId: string;
      live: DatabaseRef;
      server?: DatabaseRef;
    }): Promise<{ drill: DatabaseRef }> {
      const name = drillDatabaseName(input.drillId);
      const server = sibling(input.server ?? input.live, 'postgres');
      const drill = sibling(input.server ?? input.live, name);
      if (databaseName(resolveConnectionString(drill)) === databaseName(resolveConnectionString(input.live))) {
        throw ApplicationFailure.nonRetryable('The drill database would be live itself.', 'InvalidInput');
      }
      const existing = await inspectDatabase(pools, server, name, parseDrillDatabaseMarker);
      if (existing.exists) {
        if (!drillDatabaseIsOwn(existing, input.drillId))
          throw notOwnDrillDatabase(name, input.drillId, existing.comment, 'use');
        await pools.close(drill);
        await dropOwnedDatabase(pools.get(server), name);
      }
      await pools.get(server).query(`CREATE DATABASE ${escapeIdentifier(name)}`);
      const marker: DrillDatabaseMarker = {
        tool: 'tenant-restore',
        kind: 'drill-database',
        drillId: input.drillId,
        state: 'creating',
        createdAt: new Date().toISOString(),
      };
      const mark = (m: DrillDatabaseMarker) =>
        pools.get(server).query(`COMMENT ON DATABASE ${escapeIdentifier(name)} IS ${escapeLiteral(JSON.stringify(m))}`);
      await mark(marker);
      const beat = setInterval(() => heartbeat({ stage: 'schema' }), 5000);
      try {
        // pg_dump without --create carries no COMMENT ON DATABASE: the marker stays this drill's.
        await copySchema(input.live, drill, cancellationSignal());
      } finally {
        clearInterval(beat);
      }
      await mark({ ...marker, state: 'ready' });
      return { drill };
    },

    /** Counts every table of the drill database and compares it with the rows the restore report says it wrote. */
    async checkDrillDatabase(input: {
      drill: DatabaseRef;
      report: string;
    }): Promise<NonNullable<DrillRecord['rowCheck']> & { rows: number }> {
      const report = await getJson<RestoreReport>(s3, parseS3Url(input.report));
      // The report's totals count each unit's evidence once: its tenants' rows, and the shared parents they needed.
      const expected: Record<string, number> = { ...report.totals.rows };
      for (const [table, n] of Object.entries(report.totals.parentClosure))
        expected[table] = (expected[table] ?? 0) + n;
      const db = pools.get(input.drill);
      const { rows: tables } = await db.query<{ schema: string; name: string }>(`
        SELECT n.nspname AS schema, c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'
        ORDER BY 1, 2`);
      const mismatches: Array<{ table: string; expected: number; found: number }> = [];
      let total = 0;
      for (const t of tables) {
        const key = `${t.schema}.${t.name}`;
        const { rows } = await db.query<{ n: string }>(
          `SELECT count(*) AS n FROM ${escapeIdentifier(t.schema)}.${escapeIdentifier(t.name)}`,
        );
        const found = Number(rows[0].n);
        total += found;
        if (found !== (expected[key] ?? 0)) mismatches.push({ table: key, expected: expected[key] ?? 0, found });
        heartbeat();
      }
      return { ok: mismatches.length === 0, tables: tables.length, mismatches, rows: total };
    },

    /** Drops this drill's database: only by this drill's name, and only when its marker names this drill. */
    async dropDrillDatabase(input: {
      drillId: string;
      drill: DatabaseRef;
      server?: DatabaseRef;
      live: DatabaseRef;
    }): Promise<{ dropped: boolean }> {
      const name = drillDatabaseName(input.drillId);
      const target = databaseName(resolveConnectionString(input.drill));
      if (target !== name)
        throw ApplicationFailure.nonRetryable(
          `Refusing to drop '${target}': not this drill's database '${name}'.`,
          'NotOwnDrillDatabase',
        );
      const server = sibling(input.server ?? input.live, 'postgres');
      const existing = await inspectDatabase(pools, server, name, parseDrillDatabaseMarker);
      if (!existing.exists) return { dropped: false };
      if (!drillDatabaseIsOwn(existing, input.drillId))
        throw notOwnDrillDatabase(name, input.drillId, existing.comment, 'drop');
      await pools.close(input.drill);
      await dropOwnedDatabase(pools.get(server), name);
      return { dropped: true };
    },

    /**
     * Drops the drill's scratch by its name, for when prepareScratch failed half-way (no ScratchInfo came back, but a
     * database may have been created). Only the scratch of a drill restore id is ever dropped, and only when its marker
     * names that restore (prepareScratch marks it as soon as it creates it).
     */
    async dropDrillScratch(input: { restoreId: string; server: DatabaseRef }): Promise<{ dropped: boolean }> {
      if (!input.restoreId.startsWith('drill-'))
        throw ApplicationFailure.nonRetryable(`'${input.restoreId}' is not a drill's restore id.`, 'InvalidInput');
      const name = scratchDatabaseName(input.restoreId, 'drill');
      await pools.close(databaseOnServer(input.server, name));
      const result = await pools
        .get(sibling(input.server, 'postgres'))
        .query<{ comment: string | null }>(
          `SELECT shobj_description(oid, 'pg_database') AS comment FROM pg_database WHERE datname = $1`,
          [name],
        );
      if (result.rowCount === 0) return { dropped: false };
      if (!markerNames(parseScratchMarker(result.rows[0].comment), 'drill', input.restoreId)) return { dropped: false };
      await dropOwnedDatabase(pools.get(sibling(input.server, 'postgres')), name);
      return { dropped: true };
    },

    async recordDrill(input: { bucket: string; record: DrillRecord }): Promise<string> {
      const location = { bucket: input.bucket, key: `drills/${input.record.drillId}.json` };
      await putJson(s3, location, input.record);
      drillRecorded(input.record.status === 'passed', input.record.timeToRestoreMs, input.record.finishedAt);
      return formatS3Url(location);
    },
  };
}
