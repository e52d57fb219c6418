/**
 * Scratch from S3: stream a pg_dump archive out of S3 into a temporary file while hashing it, check it against its
 * manifest (`<key>.manifest.json`: { sha256, size }) or the object's metadata, and pg_restore it into a fresh
 * database named after the restore. Idempotent: the marker (a COMMENT ON DATABASE) is written last, so a scratch
 * with a marker for the same archive is loaded and verified and is reused; anything else is dropped and rebuilt.
 *
 * Scratch is only ever read. It needs no FK validation: FK constraints are added NOT VALID (still in pg_constraint,
 * so the plan sees them, but no full-table check), and every other post-data object (indexes the ownership
 * predicates use, primary keys) is restored as usual, in parallel (`pg_restore -j`).
 */
import { activityInfo, cancellationSignal, heartbeat, log } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import type { S3Client } from '@aws-sdk/client-s3';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { databaseName, escapeIdentifier, escapeLiteral, resolveConnectionString, withDatabase, type DatabaseRef, type Pools } from './db';
import { getJson, getStream, head, parseS3Url, type S3Location } from './s3';
import type { ScratchInfo } from '../workflows/definitions';

/** Postgres identifiers are at most 63 bytes: long restore ids keep a prefix and gain a short hash. */
export function scratchDatabaseName(restoreId: string): string {
  const clean = `scratch_${restoreId.toLowerCase().replace(/[^a-z0-9_]/g, '_')}`;
  if (clean.length <= 63) return clean;
  return `${clean.slice(0, 54)}_${createHash('sha256').update(restoreId).digest('hex').slice(0, 8)}`;
}

/** Another database on the server of `ref`, still without a password: a URL gets a new path, an alias becomes `alias/db`. */
export function databaseOnServer(ref: DatabaseRef, database: string): DatabaseRef {
  if (/^postgres(ql)?:\/\//.test(ref)) return withDatabase(ref, database);
  const alias = ref.split('/')[0];
  return `${alias}/${database}`;
}

interface Marker { tool: 'tenant-restore'; backup: string; size: number; sha256: string; loadedAt: string }

export interface PrepareScratchInput {
  restoreId: string;
  /** s3://bucket/key of the pg_dump archive. */
  backup: string;
  /** The server to create scratch on (alias or URL without password); scratch is created next to this database. */
  server: DatabaseRef;
}

/** Spawns a libpq tool with the password (if the resolved URL has one) in its environment, never on its command line. */
function libpqTarget(ref: DatabaseRef): { url: string; env: NodeJS.ProcessEnv } {
  const resolved = new URL(resolveConnectionString(ref));
  const env = { ...process.env };
  if (resolved.password) env.PGPASSWORD = decodeURIComponent(resolved.password);
  resolved.password = '';
  return { url: resolved.toString(), env };
}

function run(command: string, args: string[], env: NodeJS.ProcessEnv, signal: AbortSignal, stdoutToString = false): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let err = '';
    child.stdout.on('data', (chunk: Buffer) => { if (stdoutToString) out.push(chunk); });
    child.stderr.on('data', (chunk: Buffer) => { err = (err + chunk.toString()).slice(-4000); });
    const abort = () => child.kill('SIGTERM');
    signal.addEventListener('abort', abort, { once: true });
    child.on('error', reject);
    child.on('close', (code) => {
      signal.removeEventListener('abort', abort);
      if (signal.aborted) reject(signal.reason ?? new Error(`${command} cancelled`));
      else if (code === 0) resolve(Buffer.concat(out).toString('utf8'));
      // Passwords never reach these messages: they are not on the command line, and libpq does not print them.
      else reject(new Error(`${command} exited with ${code}: ${err.trim()}`));
    });
  });
}

/** Heartbeats every `ms` while `work` runs, so a long pg_restore is not taken for a dead worker. */
async function withHeartbeats<T>(details: () => unknown, work: Promise<T>, ms = 2000): Promise<T> {
  const timer = setInterval(() => heartbeat(details()), ms);
  try {
    return await work;
  } finally {
    clearInterval(timer);
  }
}

async function readManifest(s3: S3Client, location: S3Location): Promise<{ sha256?: string; size?: number } | undefined> {
  try {
    return await getJson<{ sha256?: string; size?: number }>(s3, { bucket: location.bucket, key: `${location.key}.manifest.json` });
  } catch (error) {
    const e = error as { name?: string; $metadata?: { httpStatusCode?: number } };
    if (e.name === 'NoSuchKey' || e.$metadata?.httpStatusCode === 404) return undefined;
    throw error;
  }
}

/** pg_restore's words for an archive that is cut short or damaged (not for a database problem). */
const corruptArchive = /could not read from input file|unexpected end of file|did not find magic string|could not find block ID|input file is too short|corrupt|unsupported version .* in file header|could not uncompress data/i;

/** FK statements from pg_restore's script, turned into NOT VALID where Postgres allows it. */
export function splitStatements(script: string): string[] {
  return script
    .split(/;\s*\n/)
    // Comments, and psql meta-commands: pg_restore 15.14+ wraps its script in \restrict/\unrestrict (CVE-2025-8714),
    // which the server would read as a syntax error at the start of the first statement.
    .map((s) => s.split('\n').filter((line) => !line.startsWith('--') && !line.startsWith('\\')).join('\n').trim())
    .filter((s) => s.length > 0);
}

export function createScratchActivities({ pools, s3 }: { pools: Pools; s3: S3Client }) {
  async function readMarker(server: DatabaseRef, name: string): Promise<Marker | undefined | null> {
    const { rows } = await pools.get(server).query<{ comment: string | null }>(
      `SELECT shobj_description(oid, 'pg_database') AS comment FROM pg_database WHERE datname = $1`, [name]);
    if (rows.length === 0) return undefined; // absent
    try {
      const marker = JSON.parse(rows[0].comment ?? '') as Marker;
      return marker.tool === 'tenant-restore' ? marker : null;
    } catch {
      return null; // present but not loaded (or not ours)
    }
  }

  return {
    /**
     * Loads the backup into `scratch_<restoreId>` on `server`, or reuses it when it is already loaded from the same
     * archive. Checksum or size mismatches are non-retryable: the archive is not the one its manifest describes.
     */
    async prepareScratch(input: PrepareScratchInput): Promise<ScratchInfo> {
      const started = Date.now();
      const signal = cancellationSignal();
      const name = scratchDatabaseName(input.restoreId);
      const ref = databaseOnServer(input.server, name);
      const location = parseS3Url(input.backup);
      const object = await head(s3, location).catch((error: { name?: string; $metadata?: { httpStatusCode?: number } }) => {
        if (error.name === 'NotFound' || error.$metadata?.httpStatusCode === 404) {
          throw ApplicationFailure.nonRetryable(`Backup ${input.backup} does not exist.`, 'BackupNotFound');
        }
        throw error;
      });
      const manifest = await readManifest(s3, location);
      const expectedSha = manifest?.sha256 ?? object.metadata.sha256;
      const expectedSize = manifest?.size ?? (object.metadata.size ? Number(object.metadata.size) : undefined);
      const verifiedBy: ScratchInfo['verifiedBy'] = manifest?.sha256 ? 'manifest' : object.metadata.sha256 ? 'metadata' : 'size-only';
      if (expectedSize !== undefined && object.size !== undefined && expectedSize !== object.size) {
        throw ApplicationFailure.nonRetryable(`Backup ${input.backup} is ${object.size} bytes, its manifest says ${expectedSize}.`, 'BackupSizeMismatch');
      }

      // One loader per scratch at a time: a retry that overlaps a slow attempt waits instead of racing it.
      const lockClient = await pools.get(input.server, { max: 4, applicationName: 'tenant-restore-scratch' }).connect();
      let broken = false;
      try {
        await withHeartbeats(() => ({ stage: 'lock' }), lockClient.query('SELECT pg_advisory_lock(hashtext($1))', [`tenant-restore:scratch:${name}`]));
        const marker = await readMarker(input.server, name);
        if (marker && marker.backup === input.backup && marker.size === object.size && (!expectedSha || marker.sha256 === expectedSha)) {
          log.info('scratch already loaded from this archive: reused', { database: name });
          return { ref, server: input.server, owned: true, reused: true, backup: input.backup, bytes: marker.size, sha256: marker.sha256, verifiedBy, durationMs: Date.now() - started };
        }
        if (marker !== undefined) log.info('scratch exists but is not a verified load of this archive: rebuilding', { database: name });
        await pools.close(ref);
        await pools.get(input.server).query(`DROP DATABASE IF EXISTS ${escapeIdentifier(name)} WITH (FORCE)`);
        await pools.get(input.server).query(`CREATE DATABASE ${escapeIdentifier(name)}`);

        const dir = await mkdtemp(join(tmpdir(), `tenant-restore-${name}-`));
        try {
          // Stream to a local file while hashing: pg_restore -j needs a seekable file.
          const file = join(dir, 'backup.dump');
          const hash = createHash('sha256');
          let bytes = 0;
          const { body } = await getStream(s3, location, signal);
          const hashing = new Transform({
            transform(chunk: Buffer, _encoding, callback) {
              hash.update(chunk);
              bytes += chunk.length;
              callback(null, chunk);
            },
          });
          await withHeartbeats(() => ({ stage: 'download', bytes }), pipeline(body, hashing, createWriteStream(file), { signal }));
          const sha256 = hash.digest('hex');
          if (object.size !== undefined && bytes !== object.size) {
            throw ApplicationFailure.retryable(`Downloaded ${bytes} bytes of ${input.backup}, expected ${object.size}.`, 'BackupTruncated');
          }
          if (expectedSha && expectedSha !== sha256) {
            throw ApplicationFailure.nonRetryable(`Backup ${input.backup} has sha256 ${sha256}, its ${verifiedBy} says ${expectedSha}.`, 'BackupChecksumMismatch');
          }

          const restoreStarted = Date.now();
          await withHeartbeats(() => ({ stage: 'pg_restore', bytes }), restoreArchive(file, dir, ref, signal)).catch((error: Error) => {
            // A truncated or corrupted archive fails the same way on every attempt: say so, and do not retry.
            if (corruptArchive.test(error.message)) {
              throw ApplicationFailure.nonRetryable(`Backup ${input.backup} is not a valid pg_dump archive (it is truncated or corrupted): ${error.message.slice(0, 500)}`, 'BackupCorrupt');
            }
            throw error;
          });
          const restoreMs = Date.now() - restoreStarted;
          // Statistics for the ownership predicates' plans; cheap (sampled).
          await withHeartbeats(() => ({ stage: 'analyze' }), pools.get(ref, { max: 2 }).query('ANALYZE'));
          await pools.close(ref);

          const loaded: Marker = { tool: 'tenant-restore', backup: input.backup, size: bytes, sha256, loadedAt: new Date().toISOString() };
          // Written last: its presence means "completely loaded and verified".
          await pools.get(input.server).query(`COMMENT ON DATABASE ${escapeIdentifier(name)} IS ${escapeLiteral(JSON.stringify(loaded))}`);
          log.info('scratch loaded', { database: name, bytes, restoreMs, attempt: activityInfo().attempt });
          return { ref, server: input.server, owned: true, reused: false, backup: input.backup, bytes, sha256, verifiedBy, durationMs: Date.now() - started };
        } finally {
          await rm(dir, { recursive: true, force: true });
        }
      } catch (error) {
        if ((error as { code?: string }).code?.startsWith('08')) broken = true;
        // A final failure (bad checksum, corrupt archive) leaves no half-loaded database behind; a retryable one is
        // rebuilt by the next attempt anyway.
        if (error instanceof ApplicationFailure && error.nonRetryable) {
          await pools.close(ref);
          await pools.get(input.server).query(`DROP DATABASE IF EXISTS ${escapeIdentifier(name)} WITH (FORCE)`).catch(() => undefined);
        }
        throw error;
      } finally {
        await lockClient.query('SELECT pg_advisory_unlock_all()').catch(() => { broken = true; });
        lockClient.release(broken);
      }
    },

    /** Drops a scratch this restore created. A `--scratch <url>` given by the operator is never dropped. */
    async dropScratch(input: { restoreId: string; scratch: ScratchInfo }): Promise<{ dropped: boolean }> {
      const { scratch } = input;
      if (!scratch.owned || !scratch.server) return { dropped: false };
      const name = scratchDatabaseName(input.restoreId);
      const target = databaseName(resolveConnectionString(scratch.ref));
      if (target !== name) throw ApplicationFailure.nonRetryable(`Refusing to drop '${target}': not this restore's scratch '${name}'.`, 'NotOwnScratch');
      await pools.close(scratch.ref);
      await pools.get(scratch.server).query(`DROP DATABASE IF EXISTS ${escapeIdentifier(name)} WITH (FORCE)`);
      return { dropped: true };
    },

    /** For `--scratch <url>`: checks that the database answers, and names it in the report. */
    async checkScratch(input: { scratch: DatabaseRef }): Promise<ScratchInfo> {
      const started = Date.now();
      await pools.get(input.scratch).query('SELECT 1');
      return { ref: input.scratch, owned: false, reused: true, durationMs: Date.now() - started };
    },
  };

  /** pg_restore into `ref`: everything but FK constraints in parallel, then FK constraints NOT VALID. */
  async function restoreArchive(file: string, dir: string, ref: DatabaseRef, signal: AbortSignal): Promise<void> {
    const { url, env } = libpqTarget(ref);
    const fd = await open(file, 'r');
    const magic = Buffer.alloc(5);
    await fd.read(magic, 0, 5, 0);
    await fd.close();
    if (magic.toString('latin1') !== 'PGDMP') {
      // A plain SQL dump: psql, single-threaded.
      await run('psql', ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', url, '-f', file], env, signal);
      return;
    }
    const toc = await run('pg_restore', ['-l', file], env, signal, true);
    const lines = toc.split('\n');
    const isFk = (line: string) => / FK CONSTRAINT /.test(line) && !line.startsWith(';');
    const mainList = join(dir, 'main.list');
    const fkList = join(dir, 'fk.list');
    await writeFile(mainList, lines.map((l) => (isFk(l) ? `;${l}` : l)).join('\n'));
    const jobs = Math.max(1, Math.min(availableParallelism(), 4));
    await run('pg_restore', ['--no-owner', '--no-privileges', '--exit-on-error', '-j', String(jobs), '-L', mainList, '-d', url, file], env, signal);
    const fkLines = lines.filter(isFk);
    if (fkLines.length === 0) return;
    await writeFile(fkList, fkLines.join('\n'));
    const script = await run('pg_restore', ['--no-owner', '--no-privileges', '-L', fkList, '-f', '-', file], env, signal, true);
    const client = await pools.get(ref, { max: 2 }).connect();
    try {
      for (const statement of splitStatements(script)) {
        if (/^(SET|SELECT pg_catalog\.set_config)/i.test(statement)) {
          await client.query(statement);
          continue;
        }
        if (!/FOREIGN KEY/i.test(statement)) {
          await client.query(statement);
          continue;
        }
        try {
          // NOT VALID skips the full-table check scratch does not need; partitioned tables refuse it (PG15).
          await client.query(`${statement} NOT VALID`);
        } catch {
          await client.query(statement);
        }
      }
    } finally {
      client.release();
    }
  }
}

/** Stream a local file's sha256 (used by tests and by the manifest writer). */
export async function sha256File(path: string): Promise<{ sha256: string; size: number }> {
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of createReadStream(path)) {
    hash.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { sha256: hash.digest('hex'), size };
}
