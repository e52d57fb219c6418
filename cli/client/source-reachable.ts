/**
 * What `start` and `discover` check with the services before they start a workflow: live (and scratch, or its
 * server) answers, the backup exists and may be read, the point-in-time moment is inside what the archive can recover.
 */
import { spawnSync } from 'node:child_process';
import { archiveRange, describeTarget, targetOutsideRange, type RecoveryTarget } from '../../activities/point-in-time';
import { createS3Client, head, parseS3Url } from '../../activities/s3';
import type { BulkRestoreInput } from '../../workflows/definitions';
import { checkReachable, isNotFound, s3Unavailable } from './connection';
import { UsageError } from './input';

/**
 * Before a point-in-time restore starts: the moment is inside what the stanza can recover, when this machine can ask
 * pgBackRest (`pgbackrest info`, with PGBACKREST_CONFIG). A machine without pgbackrest leaves the check to the worker,
 * which refuses the same way before it restores anything. Returns the line that says what will be recovered.
 */
export async function checkPointInTime(
  source: { stanza: string; target: RecoveryTarget },
  flag = 'at',
): Promise<string | undefined> {
  if (spawnSync('pgbackrest', ['version']).status !== 0) return undefined;
  let range;
  try {
    range = await archiveRange(source.stanza, AbortSignal.timeout(120_000));
  } catch (error) {
    // This machine cannot read the repository (no configuration, no access): the worker checks the same before it
    // restores anything.
    process.stderr.write(
      `warning: could not check --${flag} against stanza ${source.stanza} here (pgbackrest info: ${(error as Error).message.slice(0, 300)}); the worker will check it\n`,
    );
    return undefined;
  }
  const outside = targetOutsideRange(range, source.target);
  if (outside) throw new UsageError(`--${flag}: ${outside}`);
  return `recovering stanza ${source.stanza} to ${describeTarget(source.target)} (it can recover from ${range.from!.time}${range.to?.lastCommit ? ` to ${range.to.lastCommit}` : ''})`;
}

/**
 * Runs checks at once and reports as if they had run one after another: the error of the first failing check in the
 * order given, as soon as every check before it has passed. The checks after a failure are left to end on their own.
 */
export async function inOrder(checks: Array<Promise<unknown>>): Promise<void> {
  // Each outcome is caught as it comes, so that a later check failing first is not an unhandled rejection.
  const outcomes = checks.map((check) =>
    check.then(
      () => undefined,
      (error: unknown) => ({ error }),
    ),
  );
  for (const outcome of outcomes) {
    const failed = await outcome;
    if (failed) throw failed.error;
  }
}

/**
 * What `start` and `discover` check before they start a workflow: live (and scratch, or its server) answers, and the
 * backup exists and may be read. UsageError for a missing or forbidden backup, ServiceUnavailable (exit 3) otherwise.
 * The checks run at once; the error reported is the first in this order: live, scratch (or its server), the
 * point-in-time range (asked only once live answers, as before), the backup.
 */
export async function checkSourceReachable(input: Pick<BulkRestoreInput, 'source' | 'live'>): Promise<void> {
  const { source } = input;
  const live = checkReachable('live', input.live);
  await inOrder(
    [
      live,
      source.kind === 'backup' && source.scratchServer
        ? checkReachable('scratch-server', source.scratchServer)
        : undefined,
      source.kind === 'scratch' ? checkReachable('scratch', source.scratch) : undefined,
      source.kind === 'point-in-time'
        ? live.then(async () => {
            const line = await checkPointInTime(source, source.until ? 'from' : 'at');
            if (line) process.stderr.write(`${line}\n`);
          })
        : undefined,
      source.kind === 'backup' ? checkBackupReadable(source.backup) : undefined,
    ].filter((check): check is Promise<void> => check !== undefined),
  );
}

/** The backup object exists and may be read. */
async function checkBackupReadable(backup: string): Promise<void> {
  const location = parseS3Url(backup);
  const s3 = createS3Client();
  try {
    await head(s3, location);
  } catch (error) {
    if (isNotFound(error)) throw new UsageError(`--backup ${backup} does not exist.`);
    if ((error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 403)
      throw new UsageError(`--backup ${backup}: access denied.`);
    s3Unavailable(error);
  } finally {
    s3.destroy();
  }
}
