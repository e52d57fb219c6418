/**
 * The backup object, before a database exists: is it there, what proves it is the archive the backup job wrote (a
 * signed manifest; else, with --allow-unverified-backup only, the unsigned numbers), and then the download to a local
 * file, hashed on the way, checked against those numbers and read as a custom-format archive this pg_restore reads.
 */
import { heartbeat, log } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import type { S3Client } from '@aws-sdk/client-s3';
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { getStream, head, type S3Location } from '../s3';
import type { ScratchInfo } from '../restore-types';
import {
  BackupKeyError,
  backupPublicKeys,
  judgeManifest,
  publicKeyVariable,
  type ManifestClaims,
} from '../backup-trust';
import { localPgRestoreVersion } from '../tools';
import {
  describeBackupBytes,
  newerArchiveProblem,
  parseArchiveHeader,
  readManifest,
  type ArchiveHeader,
} from './archive';

/** The workers' public keys for backup manifests; a setting that cannot be used stops the load (non-retryable). */
function workerPublicKeys() {
  try {
    return backupPublicKeys();
  } catch (error) {
    if (error instanceof BackupKeyError) throw ApplicationFailure.nonRetryable(error.message, 'BackupKeyInvalid');
    throw error;
  }
}

// What a scratch is for (restore, discover, drill): one list, in the input contract.

/** Heartbeats every `ms` while `work` runs, so a long download or pg_restore is not taken for a dead worker. */
export async function withHeartbeats<T>(details: () => unknown, work: Promise<T>, ms = 2000): Promise<T> {
  const timer = setInterval(() => heartbeat(details()), ms);
  try {
    return await work;
  } finally {
    clearInterval(timer);
  }
}

/** What the backup object is and the numbers it must match; refused (non-retryable) when nothing may vouch for it. */
export interface JudgedBackup {
  object: Awaited<ReturnType<typeof head>>;
  expectedSha?: string;
  expectedSize?: number;
  verifiedBy: ScratchInfo['verifiedBy'];
}

export async function judgeBackup(
  s3: S3Client,
  input: { backup: string; allowUnverifiedBackup?: boolean },
  location: S3Location,
): Promise<JudgedBackup> {
  const object = await head(s3, location).catch((error: { name?: string; $metadata?: { httpStatusCode?: number } }) => {
    if (error.name === 'NotFound' || error.$metadata?.httpStatusCode === 404) {
      throw ApplicationFailure.nonRetryable(`Backup ${input.backup} does not exist.`, 'BackupNotFound');
    }
    throw error;
  });
  const manifest = await readManifest(s3, location);
  // The digest counts only from where the backup's writer cannot write: a manifest signed by the backup job's key
  // (activities/backup-trust.ts). Anything else is loaded only with --allow-unverified-backup.
  const trust = judgeManifest(location.key, manifest as ManifestClaims | undefined, workerPublicKeys());
  let expectedSha: string | undefined;
  let expectedSize: number | undefined;
  let verifiedBy: ScratchInfo['verifiedBy'];
  if (trust.verified) {
    expectedSha = trust.sha256;
    expectedSize = trust.size;
    verifiedBy = 'signature';
  } else {
    if (!input.allowUnverifiedBackup)
      throw ApplicationFailure.nonRetryable(
        `Backup ${input.backup} cannot be verified: ${trust.why}, so nothing proves it is the archive the backup job wrote (and a backup is code for the role that loads it). Have the backup job sign its manifest with its Ed25519 key and give the workers the public key (${publicKeyVariable}; README, Trust), or, if you accept an unverified backup, start again with --allow-unverified-backup (drills: --allow-unverified-backup).`,
        trust.forged ? 'BackupSignatureInvalid' : 'BackupUnverified',
      );
    // Unsigned numbers catch a damaged transfer, not a hostile writer: checked all the same.
    expectedSha = manifest?.sha256 ?? object.metadata.sha256;
    expectedSize = manifest?.size ?? (object.metadata.size ? Number(object.metadata.size) : undefined);
    // 'size-only': no sha256 anywhere, loaded only because the operator passed --allow-unverified-backup.
    verifiedBy = manifest?.sha256 ? 'manifest' : object.metadata.sha256 ? 'metadata' : 'size-only';
    log.warn('backup loaded unverified (--allow-unverified-backup)', { backup: input.backup, why: trust.why });
  }
  if (expectedSize !== undefined && object.size !== undefined && expectedSize !== object.size) {
    throw ApplicationFailure.nonRetryable(
      `Backup ${input.backup} is ${object.size} bytes, its manifest says ${expectedSize}.`,
      'BackupSizeMismatch',
    );
  }

  return { object, expectedSha, expectedSize, verifiedBy };
}

/** The archive downloaded into `dir`, checked: its bytes, its sha256, its header, and the pg_restore that reads it. */
export async function downloadBackup(
  s3: S3Client,
  input: { backup: string },
  location: S3Location,
  judged: JudgedBackup,
  dir: string,
  signal: AbortSignal,
): Promise<{ file: string; bytes: number; sha256: string; header: ArchiveHeader; pgRestore: string }> {
  const { object, expectedSha, verifiedBy } = judged;
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
  await withHeartbeats(
    () => ({ stage: 'download', bytes }),
    pipeline(body, hashing, createWriteStream(file), { signal }),
  );
  const sha256 = hash.digest('hex');
  if (object.size !== undefined && bytes !== object.size) {
    throw ApplicationFailure.retryable(
      `Downloaded ${bytes} bytes of ${input.backup}, expected ${object.size}.`,
      'BackupTruncated',
    );
  }
  if (expectedSha && expectedSha !== sha256) {
    throw ApplicationFailure.nonRetryable(
      `Backup ${input.backup} has sha256 ${sha256}, its ${verifiedBy === 'metadata' ? 'metadata' : 'manifest'} says ${expectedSha}.`,
      'BackupChecksumMismatch',
    );
  }
  // What it is, from its first bytes: only a custom-format archive goes on, and only to pg_restore.
  const first = Buffer.alloc(4096);
  const fd = await open(file, 'r');
  const { bytesRead } = await fd.read(first, 0, first.length, 0).finally(() => fd.close());
  const header = parseArchiveHeader(first.subarray(0, bytesRead));
  if (!header || header.format !== 1) {
    const found = header
      ? `a pg_dump archive in format ${header.format} (not custom)`
      : describeBackupBytes(first.subarray(0, bytesRead), bytes);
    throw ApplicationFailure.nonRetryable(
      `Backup ${input.backup} is ${found}, not a pg_dump custom-format archive: it was not loaded, and nothing in it was run. tenant-restore reads backups only with pg_restore, never with psql; take the backup with pg_dump -Fc (custom format) and start again.`,
      'UnsupportedBackupFormat',
    );
  }
  const pgRestore = await localPgRestoreVersion(signal);
  const newer = newerArchiveProblem(header, pgRestore);
  if (newer)
    throw ApplicationFailure.nonRetryable(
      `Backup ${input.backup} cannot be read by this worker's pg_restore: ${newer}`,
      'BackupFromNewerPgDump',
    );
  return { file, bytes, sha256, header, pgRestore };
}
