/**
 * Scratch from S3: stream a pg_dump archive out of S3 into a temporary file while hashing it, check it against its
 * manifest (`<key>.manifest.json`: { sha256, size }) or the object's metadata, and pg_restore it into a fresh
 * database named after the restore. The backup is data, never code: only pg_dump custom-format archives (magic
 * `PGDMP`) are accepted, and only pg_restore reads them; a plain SQL file (or tar, gzip, anything else) is refused
 * before a database is created, and never run. A backup without a checksum to verify is refused unless the operator
 * allowed it (`--allow-unverified-backup`).
 *
 * A scratch belongs to one restore (or one discover, or one drill: its kind). Its name carries a hash of the kind and
 * the exact id, and its marker (a COMMENT ON DATABASE, JSON) names the kind, the id and the archive: written as `loading` right after CREATE DATABASE, and as
 * `loaded` once pg_restore and ANALYZE are done. A scratch whose `loaded` marker names this restore and this archive is
 * reused; one whose marker names this restore but is not loaded is rebuilt; any other database of that name (another
 * restore's, or not ours at all) is never dropped: the restore is refused and says what to do.
 *
 * Scratch is only ever read. It needs no FK validation: FK constraints are added NOT VALID (still in pg_constraint,
 * so the plan sees them, but no full-table check), and every other post-data object (indexes the ownership
 * predicates use, primary keys) is restored as usual, in parallel (`pg_restore -j`).
 *
 * Nor does it need WAL: it is a copy of a backup, rebuilt from the archive whenever in doubt. So its tables are made
 * UNLOGGED between the pre-data section (empty tables, no FK yet) and the data section: the load writes no WAL, so
 * nothing is archived or replicated for it, and on live's server it does not compete with the writers' commits. The
 * price: crash recovery (a crash, a kill, an immediate shutdown; not a clean shutdown) empties every unlogged table.
 * So the load ends by setting an unlogged sentinel (activities/scratch-alive.ts), which crash recovery resets with the
 * tables, and the `loaded` marker records each table's row count: a scratch is reused only when its sentinel is still
 * set and every table that held rows still has pages; a reset one is loaded again, never reused. Steps that read
 * scratch check the sentinel (assertScratchAlive) and fail with ScratchResetError, not with a misleading answer.
 */
import { activityInfo, cancellationSignal, log } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import type { S3Client } from '@aws-sdk/client-s3';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { dropOwnedDatabase, escapeIdentifier, type DatabaseRef, type Pools } from '../db';
import { s3BytesRead } from '../metrics';
import { parseS3Url } from '../s3';
import type { ScratchInfo } from '../restore-types';
import { setSentinelSql } from '../scratch-alive';
import { checkScratchServer, type ScratchRisk } from '../scratch-server';
import { corruptArchive, newerArchiveMessage } from './archive';
import { downloadBackup, judgeBackup, withHeartbeats } from './fetch-backup';
import {
  databaseOnServer,
  inspectScratch,
  markerNames,
  markerOwner,
  scratchDatabaseName,
  scratchEmptied,
  scratchKindOf,
  scratchOwnership,
  writeScratchMarker,
  type ScratchKind,
  type ScratchMarker,
} from './owned-database';
import { contentsOf, restoreArchive, scratchTableSizesSql } from './restore-archive';

export interface PrepareScratchInput {
  /** Whose scratch: part of its name and marker, so that a discover and a restore with one id never share it. */
  kind: ScratchKind;
  /** The restore's, discover's or drill's id. */
  restoreId: string;
  /** s3://bucket/key of the pg_dump archive. */
  backup: string;
  /** The server to create scratch on (alias or URL without password); scratch is created next to this database. */
  server: DatabaseRef;
  /** The operator's explicit `--allow-unverified-backup`: load a backup that has no sha256 to check against. */
  allowUnverifiedBackup?: boolean;
  /** Live: the scratch server must not be its server, nor its role (activities/scratch-server.ts). */
  live?: DatabaseRef;
  /** The risks the operator accepted by their flags (`--unsafe-scratch-on-live-server`, ...). */
  unsafeScratch?: ScratchRisk[];
}

/**
 * Loads the backup into this restore's scratch (`scratchDatabaseName(restoreId, kind)`) on `server`, or reuses it when
 * its marker says it is this restore's, loaded from the same archive. Refused, non-retryable, before any database
 * is created: a backup with no checksum to verify (unless allowed), a checksum or size mismatch, anything that is
 * not a pg_dump custom-format archive, an archive newer than the worker's pg_restore, and a database of that name
 * that is not this restore's.
 */
export async function prepareScratch(pools: Pools, s3: S3Client, input: PrepareScratchInput): Promise<ScratchInfo> {
  const started = Date.now();
  const signal = cancellationSignal();
  const kind = scratchKindOf(input);
  const name = scratchDatabaseName(input.restoreId, kind);
  const ref = databaseOnServer(input.server, name);
  const location = parseS3Url(input.backup);
  // A backup is code for the role that loads it: never on live's server, as live's role, or as a role that reaches
  // the host, unless the operator accepted that risk (activities/scratch-server.ts). Checked before anything exists.
  const placement = await checkScratchServer(pools, input);
  if (placement.accepted.length)
    log.warn('scratch loaded where the operator accepted the risk', {
      risks: placement.accepted.map((p) => p.risk),
    });
  const judged = await judgeBackup(s3, input, location);
  const { object, expectedSha, verifiedBy } = judged;

  // One loader per scratch at a time: a retry that overlaps a slow attempt waits instead of racing it.
  const lockClient = await pools.get(input.server, { max: 4, applicationName: 'tenant-restore-scratch' }).connect();
  let broken = false;
  /** Set once the database of this name is known to be this restore's: only then may a failure drop it. */
  let ours = false;
  try {
    await withHeartbeats(
      () => ({ stage: 'lock' }),
      lockClient.query('SELECT pg_advisory_lock(hashtext($1))', [`tenant-restore:scratch:${name}`]),
    );
    const inspected = await inspectScratch(pools, input.server, name);
    // A scratch of this restore marked loaded is looked into: crash recovery may have emptied it since.
    const contents =
      inspected.exists && inspected.marker?.state === 'loaded' && markerNames(inspected.marker, kind, input.restoreId)
        ? await withHeartbeats(() => ({ stage: 'inspect' }), contentsOf(pools, ref))
        : undefined;
    const existing = inspected.exists ? { ...inspected, contents } : inspected;
    const decision = scratchOwnership(existing, {
      kind,
      restoreId: input.restoreId,
      backup: input.backup,
      size: object.size,
      sha256: expectedSha,
    });
    const emptied =
      decision === 'rebuild' && contents && inspected.exists && scratchEmptied(inspected.marker!, contents);
    if (emptied)
      log.warn('scratch of this restore was loaded, but does not hold it now: loaded again', {
        database: name,
        why: emptied,
      });
    if (decision === 'foreign') {
      const whose = markerOwner(existing.exists ? existing.marker : null);
      throw ApplicationFailure.nonRetryable(
        `Database ${name} on the scratch server already exists and is ${whose}, not a scratch of ${kind} '${input.restoreId}': it was not touched. If it is no longer needed, drop it yourself (DROP DATABASE ${escapeIdentifier(name)}), or start this ${kind} with another --id or another --scratch-server.`,
        'ScratchNotOwned',
      );
    }
    ours = decision !== 'absent';
    if (decision === 'reuse' && existing.exists && existing.marker) {
      const marker = existing.marker;
      log.info('scratch already loaded from this archive by this restore: reused', { database: name });
      return {
        ref,
        server: input.server,
        owned: true,
        reused: true,
        backup: input.backup,
        bytes: marker.size,
        sha256: marker.sha256,
        verifiedBy,
        durationMs: Date.now() - started,
      };
    }

    const dir = await mkdtemp(join(tmpdir(), `tenant-restore-${name}-`));
    try {
      const { file, bytes, sha256, header, pgRestore } = await downloadBackup(s3, input, location, judged, dir, signal);

      // Ours (or absent): from here on it is rebuilt, and marked as this restore's from the moment it exists.
      ours = true;
      await pools.close(ref);
      await dropOwnedDatabase(pools.get(input.server), name);
      await pools
        .get(input.server)
        .query(`CREATE DATABASE ${escapeIdentifier(name)}`)
        .catch((error: { code?: string }) => {
          if (error.code === '42501') {
            throw ApplicationFailure.nonRetryable(
              `The role of the scratch server (${input.server}) may not create databases. Scratch needs a role with CREATEDB; the least-privilege live role of scripts/grants.sql has none, by design. Start again with --scratch-server postgres://<scratch role>@<host>/postgres (a role with CREATEDB, on a server that is not live if you can), or --scratch <url> of a database you restored yourself.`,
              'ScratchServerNotAllowed',
            );
          }
          throw error;
        });
      const createdAt = new Date().toISOString();
      const loading: ScratchMarker = {
        tool: 'tenant-restore',
        kind,
        restoreId: input.restoreId,
        state: 'loading',
        backup: input.backup,
        size: bytes,
        sha256,
        createdAt,
      };
      await writeScratchMarker(pools, input.server, name, loading);

      // Unlogged where the server has unlogged sequences for the sentinel (PostgreSQL 15+); logged, as before, elsewhere.
      const { rows: version } = await pools
        .get(input.server)
        .query<{ n: number }>(`SELECT current_setting('server_version_num')::int AS n`);
      const unlogged = version[0]!.n >= 150000;
      const restoreStarted = Date.now();
      const passes = await withHeartbeats(
        () => ({ stage: 'pg_restore', bytes }),
        restoreArchive(pools, file, dir, ref, signal, unlogged),
      ).catch((error: Error) => {
        if (/unsupported version .* in file header/i.test(error.message)) {
          throw ApplicationFailure.nonRetryable(
            `Backup ${input.backup} cannot be read by this worker's pg_restore: ${newerArchiveMessage(header, pgRestore)}`,
            'BackupFromNewerPgDump',
          );
        }
        // A truncated or corrupted archive fails the same way on every attempt: say so, and do not retry.
        if (corruptArchive.test(error.message)) {
          throw ApplicationFailure.nonRetryable(
            `Backup ${input.backup} is not a valid pg_dump archive (it is truncated or corrupted): ${error.message.slice(0, 500)}`,
            'BackupCorrupt',
          );
        }
        throw error;
      });
      const restoreMs = Date.now() - restoreStarted;
      // Statistics for the ownership predicates' plans; cheap (sampled). Its row counts go into the marker.
      const scratchPool = pools.get(ref, { max: 2 });
      await withHeartbeats(() => ({ stage: 'analyze' }), scratchPool.query('ANALYZE'));
      const { rows: sizes } = await scratchPool.query<{ key: string; rows: string }>(scratchTableSizesSql);
      // The load's last step: crash recovery from here on resets the sentinel with the tables.
      if (unlogged) await scratchPool.query(setSentinelSql);
      await pools.close(ref);

      // Written last: `loaded` means "completely loaded and verified, by this restore, from this archive".
      await writeScratchMarker(pools, input.server, name, {
        ...loading,
        state: 'loaded',
        loadedAt: new Date().toISOString(),
        unlogged,
        rows: Object.fromEntries(sizes.map((r) => [r.key, Number(r.rows)])),
      });
      log.info('scratch loaded', {
        database: name,
        bytes,
        restoreMs,
        ...passes,
        logged: passes.logged.slice(0, 20),
        attempt: activityInfo().attempt,
      });
      s3BytesRead(bytes);
      return {
        ref,
        server: input.server,
        owned: true,
        reused: false,
        backup: input.backup,
        bytes,
        sha256,
        verifiedBy,
        durationMs: Date.now() - started,
      };
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  } catch (error) {
    if ((error as { code?: string }).code?.startsWith('08')) broken = true;
    // A final failure (bad checksum, corrupt archive) leaves no half-loaded scratch of this restore behind; a
    // retryable one is rebuilt by the next attempt anyway. A database that is not this restore's is never dropped.
    if (ours && error instanceof ApplicationFailure && error.nonRetryable) {
      await pools.close(ref);
      const now = await inspectScratch(pools, input.server, name).catch(() => undefined);
      if (now?.exists && (markerNames(now.marker, kind, input.restoreId) || (!now.marker && now.empty))) {
        await dropOwnedDatabase(pools.get(input.server), name).catch(() => undefined);
      }
    }
    throw error;
  } finally {
    await lockClient.query('SELECT pg_advisory_unlock_all()').catch(() => {
      broken = true;
    });
    lockClient.release(broken);
  }
}
