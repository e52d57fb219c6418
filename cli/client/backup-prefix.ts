/**
 * `--backup-prefix s3://bucket/prefix/ [--at <time>]`: the pg_dump archive to restore from, picked in S3 among those
 * under the prefix (activities/backups.ts), resolved into --backup before sourceFromFlags (source.ts) reads the flags.
 */
import { age, NoBackupFoundError, pickBackup, type PickedBackup } from '../../activities/backups';
import { createS3Client, S3UrlError } from '../../activities/s3';
import { s3Unavailable } from './connection';
import { UsageError } from './input';
import { instantFromFlag, isPointInTime, refuseWindowWithoutArchive, type SourceFlags } from './source';

/**
 * The newest pg_dump archive under the prefix, or the newest taken before `--at` (the moment of the incident), by its
 * manifest's createdAt. Returns the flags with `backup` set to it, and what was picked, for the operator to see.
 * Without --backup-prefix: the flags as given.
 */
export async function resolveBackupPrefix<T extends SourceFlags>(
  flags: T,
  now = new Date(),
): Promise<{ flags: T; picked?: PickedBackup & { age: string; at?: string } }> {
  const prefix = flags['backup-prefix'];
  // --backup pgbackrest:<stanza> --at: the moment goes to the recovery itself (sourceFromFlags checks it).
  if (isPointInTime(flags.backup)) return { flags };
  refuseWindowWithoutArchive(flags);
  if (flags.at !== undefined && !prefix)
    throw new UsageError(
      '--at needs a source to go back in: --backup pgbackrest:<stanza> (point-in-time recovery from the WAL archive), or --backup-prefix s3://<bucket>/<prefix>/ (the newest pg_dump archive taken before that moment).',
    );
  if (!prefix) return { flags };
  if (flags.backup || flags.scratch) throw new UsageError('give one of --backup, --backup-prefix or --scratch.');
  const at = flags.at !== undefined ? instantFromFlag(flags.at, now) : undefined;
  const s3 = createS3Client();
  try {
    const picked = await pickBackup(s3, prefix, at);
    return {
      flags: { ...flags, backup: picked.backup },
      picked: { ...picked, age: age(picked.takenAt, at ?? now), ...(at ? { at: at.toISOString() } : {}) },
    };
  } catch (error) {
    if (error instanceof NoBackupFoundError || error instanceof S3UrlError)
      throw new UsageError(`--backup-prefix: ${error.message}`);
    s3Unavailable(error);
  } finally {
    s3.destroy();
  }
}

/**
 * The flags as the checks that need no service see them before --backup-prefix is resolved: a stand-in archive under
 * the prefix (its bucket is the default artifacts bucket), so that a wrong --live or --id is reported (exit 2) before
 * S3 is listed.
 */
export function withBackupStandIn<T extends SourceFlags>(flags: T): T {
  const prefix = flags['backup-prefix'];
  if (!prefix || flags.backup || flags.scratch) return flags;
  return { ...flags, backup: `${prefix.endsWith('/') ? prefix : `${prefix}/`}(newest).dump` };
}

/** The line that says which archive --backup-prefix picked and how old it is. */
export function pickedBackupLine(
  picked: NonNullable<Awaited<ReturnType<typeof resolveBackupPrefix>>['picked']>,
): string {
  return `using backup ${picked.backup}, taken ${picked.takenAt} (by its ${picked.takenBy}), ${picked.age} before ${picked.at ? `--at ${picked.at}` : 'now'}`;
}
