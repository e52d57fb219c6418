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
import { qualifiedNamePattern } from './input-contract';
import { NoBackupFoundError, pickBackup } from './backups';
import { cancellationSignal, heartbeat } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { spawn } from 'node:child_process';
import {
  databaseName,
  dropOwnedDatabase,
  escapeIdentifier,
  escapeLiteral,
  libpqTarget,
  resolveConnectionString,
  withDatabase,
  type DatabaseRef,
  type Pools,
} from './db';
import { drillRecorded } from './metrics';
import { formatS3Url, getJson, parseS3Url, putJson } from './s3';
import {
  databaseOnServer,
  inspectDatabase,
  markerNames,
  ownedDatabaseName,
  parseScratchMarker,
  scratchDatabaseName,
} from './scratch';
import type { RestoreReport } from './report';
import type { TenantId } from './restore-types';

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

/**
 * `drill_<readable id>_<12 hex of sha256('drill-database:<exact id>')>`: drill ids that differ only in case or
 * punctuation (`Weekly.1`, `weekly-1`) get two databases, as restore ids get two scratches.
 */
export const drillDatabaseName = (drillId: string): string => ownedDatabaseName('drill', 'drill-database', drillId);

/** The COMMENT ON DATABASE of a drill database: whose it is, and whether live's schema is in yet. */
export interface DrillDatabaseMarker {
  tool: 'tenant-restore';
  kind: 'drill-database';
  drillId: string;
  state: 'creating' | 'ready';
  createdAt: string;
}

/** A database comment read as a drill database's marker: null when it is absent, not JSON, or anything else's. */
export function parseDrillDatabaseMarker(comment: string | null | undefined): DrillDatabaseMarker | null {
  if (!comment) return null;
  try {
    const marker = JSON.parse(comment) as DrillDatabaseMarker;
    return marker && typeof marker === 'object' && marker.tool === 'tenant-restore' && marker.kind === 'drill-database'
      ? marker
      : null;
  } catch {
    return null;
  }
}

/**
 * May this drill drop (and make again) the database of its name? Only when the marker names this drill, or when the
 * database has no comment at all and holds nothing (a crash between CREATE DATABASE and its COMMENT leaves exactly
 * that, and dropping an empty database loses nothing).
 */
export function drillDatabaseIsOwn(
  existing: { comment: string | null; marker: DrillDatabaseMarker | null; empty: boolean },
  drillId: string,
): boolean {
  if (existing.marker) return existing.marker.drillId === drillId;
  return existing.comment === null && existing.empty;
}

function notOwnDrillDatabase(name: string, drillId: string, comment: string | null, doing: string): ApplicationFailure {
  const marker = parseDrillDatabaseMarker(comment);
  const whose = marker
    ? `the drill database of drill '${marker.drillId}'`
    : comment === null
      ? 'not a drill database (no marker, and it holds objects)'
      : parseScratchMarker(comment)
        ? 'a tenant-restore scratch, not a drill database'
        : 'not a drill database (its comment is no drill marker)';
  return ApplicationFailure.nonRetryable(
    `Refusing to ${doing} database ${name}: it is ${whose}, not the drill database of drill '${drillId}', and it was not touched. If it is no longer needed, drop it yourself (DROP DATABASE ${escapeIdentifier(name)}), or run the drill with another --id or another --server.`,
    'NotOwnDrillDatabase',
  );
}

/** A database on the same server as `ref`: for an alias `alias/db`, for a URL the same URL with another path. */
function sibling(ref: DatabaseRef, database: string): DatabaseRef {
  return /^postgres(ql)?:\/\//.test(ref) ? withDatabase(ref, database) : `${ref.split('/')[0]}/${database}`;
}

/** `schema.table` by the input contract's one rule (a name may hold any character but a dot), each part quoted. */
function qualified(name: string): string {
  if (!qualifiedNamePattern.test(name))
    throw ApplicationFailure.nonRetryable(`Tenant root '${name}' is not schema.table.`, 'InvalidInput');
  const [schema, table] = name.split('.') as [string, string];
  return `${escapeIdentifier(schema)}.${escapeIdentifier(table)}`;
}

/** pg_dump --schema-only of `from` piped into pg_restore of `to`; stderr of both is kept for the error message. */
function copySchema(from: DatabaseRef, to: DatabaseRef, signal: AbortSignal): Promise<void> {
  const source = libpqTarget(from);
  const target = libpqTarget(to);
  return new Promise((resolve, reject) => {
    const dump = spawn(
      'pg_dump',
      ['-Fc', '--schema-only', '--no-owner', '--no-privileges', '--no-password', '-d', source.url],
      { env: source.env, signal, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const restore = spawn(
      'pg_restore',
      ['--no-owner', '--no-privileges', '--exit-on-error', '--no-password', '-d', target.url],
      { env: target.env, signal, stdio: ['pipe', 'ignore', 'pipe'] },
    );
    let errors = '';
    dump.stderr.on('data', (c: Buffer) => (errors += c.toString()));
    restore.stderr.on('data', (c: Buffer) => (errors += c.toString()));
    dump.stdout.pipe(restore.stdin);
    let pending = 2;
    let failed = false;
    const done = (tool: string) => (code: number | null) => {
      if (code !== 0 && !failed) {
        failed = true;
        reject(new Error(`${tool} exited with ${code}: ${errors.trim().slice(0, 2000)}`));
      }
      if (--pending === 0 && !failed) resolve();
    };
    dump.on('error', reject);
    restore.on('error', reject);
    dump.on('close', done('pg_dump --schema-only'));
    restore.on('close', done('pg_restore'));
  });
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
