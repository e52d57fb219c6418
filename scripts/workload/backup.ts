/**
 * Takes the kind of backup the product restores from: `pg_dump -Fc` of the whole database, streamed into S3 as a
 * multipart upload (nothing on local disk), with its sha256 and size computed on the way, plus a manifest object
 * `<key>.manifest.json`. Both objects are made immutable with an S3 Object Lock retention when the bucket has Object
 * Lock enabled; otherwise the bucket is put under versioning, so that an overwrite cannot lose the backup.
 *
 * The manifest is signed (Ed25519, activities/backup-trust.ts) with the backup job's private key: the stack's
 * `STACK_BACKUP_SIGNING_KEY` file, or `signingKey`. Workers trust a manifest only with a signature that verifies with
 * their public key, since whoever can write the bucket can write a manifest too.
 */
import {
  GetBucketVersioningCommand,
  GetObjectLockConfigurationCommand,
  PutBucketVersioningCommand,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { PassThrough } from 'node:stream';
import { signManifest, type ManifestSignature } from '../../activities/backup-trust';
import { databaseName, redactUrl } from '../../activities/db';

/**
 * The backup job's private key (PEM): `STACK_BACKUP_SIGNING_KEY` names its file (the stack makes it at `up`). Undefined
 * when there is none: the manifest then goes unsigned, and workers refuse it unless --allow-unverified-backup.
 */
export function backupSigningKey(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const file = env.STACK_BACKUP_SIGNING_KEY;
  return file && existsSync(file) ? readFileSync(file, 'utf8') : undefined;
}

/**
 * A manifest for the archive at `key`, signed with the backup job's key (or unsigned when there is none): for tests and
 * tools that write a manifest of their own (a corrupted archive's real manifest, say).
 */
export function signedManifest<T extends { sha256: string; size: number; createdAt?: string }>(
  key: string,
  manifest: T,
  privateKeyPem: string | undefined = backupSigningKey(),
): T & { signature?: ManifestSignature } {
  return privateKeyPem ? signManifest(key, manifest, privateKeyPem) : manifest;
}

export interface BackupManifest {
  sha256: string;
  sizeBytes: number;
  /** The same as sizeBytes, under the name the scratch loader reads. */
  size: number;
  durationMs: number;
  createdAt: string;
  /** Database name (no host, no credentials). */
  database: string;
  pgDumpVersion: string;
  format: 'custom';
  /** How the archive is protected against change: an Object Lock retention, or bucket versioning. */
  immutability:
    { mode: 'object-lock'; retainUntil: string; lockMode: 'GOVERNANCE' | 'COMPLIANCE' } | { mode: 'versioning' };
  versionId?: string;
  /** Ed25519 over the archive's key, sha256, size and createdAt (activities/backup-trust.ts manifestPayload). */
  signature?: ManifestSignature;
}

export interface TakeBackupOptions {
  /** Database to dump. May carry no password: pg_dump reads PGPASSFILE/PGPASSWORD. */
  url: string;
  s3: S3Client;
  bucket: string;
  key: string;
  /** Object Lock retention in days (default 7). GOVERNANCE mode: only a principal allowed to bypass may delete. */
  retentionDays?: number;
  lockMode?: 'GOVERNANCE' | 'COMPLIANCE';
  /** Called every few MB with bytes uploaded so far. */
  onProgress?: (bytes: number) => void;
  /** The private key (PEM) the manifest is signed with; default: backupSigningKey(); null: unsigned. */
  signingKey?: string | null;
}

export interface TakeBackupResult {
  url: string;
  manifestUrl: string;
  manifest: BackupManifest;
}

function pgDumpVersion(): string {
  return execFileSync('pg_dump', ['--version'], { encoding: 'utf8' }).trim();
}

/** Whether the bucket has Object Lock; if not, makes sure it is versioned (and says which). */
export async function ensureImmutability(s3: S3Client, bucket: string): Promise<'object-lock' | 'versioning'> {
  try {
    const lock = await s3.send(new GetObjectLockConfigurationCommand({ Bucket: bucket }));
    if (lock.ObjectLockConfiguration?.ObjectLockEnabled === 'Enabled') return 'object-lock';
  } catch (error) {
    // ObjectLockConfigurationNotFoundError: the bucket was created without Object Lock. Fall through to versioning.
    if ((error as Error).name !== 'ObjectLockConfigurationNotFoundError') throw error;
  }
  const versioning = await s3.send(new GetBucketVersioningCommand({ Bucket: bucket }));
  if (versioning.Status !== 'Enabled') {
    await s3.send(new PutBucketVersioningCommand({ Bucket: bucket, VersioningConfiguration: { Status: 'Enabled' } }));
  }
  return 'versioning';
}

export async function takeBackup(options: TakeBackupOptions): Promise<TakeBackupResult> {
  const { s3, bucket, key } = options;
  const started = Date.now();
  const mode = await ensureImmutability(s3, bucket);
  const lockMode = options.lockMode ?? 'GOVERNANCE';
  const retainUntil = new Date(started + (options.retentionDays ?? 7) * 86_400_000);
  const lockParams = mode === 'object-lock' ? { ObjectLockMode: lockMode, ObjectLockRetainUntilDate: retainUntil } : {};

  // --no-password: fail at once rather than prompt when no password is found in PGPASSFILE/PGPASSWORD.
  const dump = spawn('pg_dump', ['-Fc', '--no-password', '-d', options.url], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  dump.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<number>((resolve) => dump.on('close', (code) => resolve(code ?? 1)));

  const hash = createHash('sha256');
  let size = 0;
  let reported = 0;
  const body = new PassThrough({ highWaterMark: 8 * 1024 * 1024 });
  dump.stdout.on('data', (chunk: Buffer) => {
    hash.update(chunk);
    size += chunk.length;
    if (options.onProgress && size - reported >= 16 * 1024 * 1024) {
      reported = size;
      options.onProgress(size);
    }
  });
  dump.stdout.pipe(body);

  const upload = new Upload({
    client: s3,
    // 16 MB parts, two in flight: bounded memory whatever the dump size.
    partSize: 16 * 1024 * 1024,
    queueSize: 2,
    params: {
      Bucket: bucket,
      Key: key,
      Body: body,
      ContentType: 'application/octet-stream',
      ChecksumAlgorithm: 'SHA256',
      ...lockParams,
    },
  });
  let uploaded: Awaited<ReturnType<Upload['done']>>;
  try {
    [uploaded] = await Promise.all([
      upload.done(),
      exited.then((code) => {
        if (code !== 0) throw new Error(`pg_dump of ${redactUrl(options.url)} failed (exit ${code}): ${stderr.trim()}`);
      }),
    ]);
  } catch (error) {
    dump.kill();
    await upload.abort().catch(() => undefined);
    throw error;
  }
  options.onProgress?.(size);

  const unsigned: BackupManifest = {
    sha256: hash.digest('hex'),
    sizeBytes: size,
    size,
    durationMs: Date.now() - started,
    createdAt: new Date(started).toISOString(),
    database: databaseName(options.url),
    pgDumpVersion: pgDumpVersion(),
    format: 'custom',
    immutability: mode === 'object-lock' ? { mode, retainUntil: retainUntil.toISOString(), lockMode } : { mode },
    versionId: uploaded.VersionId,
  };
  const manifest: BackupManifest = signedManifest(
    key,
    unsigned,
    options.signingKey === null ? undefined : (options.signingKey ?? backupSigningKey()),
  );
  const manifestKey = `${key}.manifest.json`;
  await s3.send(
    new PutObjectCommand({
      Bucket: bucket,
      Key: manifestKey,
      Body: JSON.stringify(manifest, null, 2),
      ContentType: 'application/json',
      ChecksumAlgorithm: 'SHA256',
      ...lockParams,
    }),
  );
  return { url: `s3://${bucket}/${key}`, manifestUrl: `s3://${bucket}/${manifestKey}`, manifest };
}
