/**
 * The activities' checked inputs, and the private server's start and the archive's range as pgBackRest reports them.
 */
import { z } from 'zod';
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, openSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { type DatabaseRef } from '../db';
import {
  databaseName as databaseNameSchema,
  databaseRef,
  invalidInput,
  operationId,
  recoveryTarget,
  scratchKind,
  stanzaName,
} from '../input-contract';
import type { RecoveryTarget } from '../restore-types';
import type { ScratchKind } from '../scratch';
import { ArchiveRange, archiveRangeFromInfo, pgTimeToIso, previousWalSegment } from './target';
import {
  commandFor,
  ensureScratchBase,
  ownForServer,
  pgbackrestCommand,
  postgresBin,
  scratchBase,
  scratchPaths,
  serverArguments,
  serverEnvironment,
  underBase,
} from './host';

export interface PreparePointInTimeInput {
  restoreId: string;
  /** Which command's scratch (default restore): a discover and a restore with one id get two. */
  kind?: ScratchKind;
  stanza: string;
  target: RecoveryTarget;
  /** The database to read from the recovered cluster; default: live's database name. */
  database?: string;
  live: DatabaseRef;
}

/** The activity's own check of its input: what becomes a path, a process argument or a connection. */
export const preparePointInTimeInput = z.strictObject({
  restoreId: operationId('a restore or discover id'),
  kind: scratchKind.optional(),
  stanza: stanzaName,
  target: recoveryTarget,
  database: databaseNameSchema.optional(),
  live: databaseRef,
});

export function refuseActivityInput(activity: string) {
  return (problems: string[], fields: string[]) =>
    invalidInput(`${activity} refused its input: ${problems.join('; ')}`, fields);
}

export const stopPointInTimeInput = z.object({
  restoreId: operationId('a restore or discover id'),
  kind: scratchKind.optional(),
});

/**
 * Starts the recovered PostgreSQL as a process of its own (detached: it outlives an attempt, as a recovery may be
 * long), from an argument list: no shell reads any of it (`pg_ctl start` runs the postmaster through /bin/sh). Its
 * output goes to the log file that recovery is verified from, and its environment is serverEnvironment's.
 */
export function startServer(paths: ReturnType<typeof scratchPaths>): { exited: () => string | undefined } {
  const log = openSync(paths.logFile, 'a', 0o600);
  let exited: string | undefined;
  try {
    const { command, args } = commandFor(join(postgresBin(), 'postgres'), serverArguments(scratchPort, paths));
    const child = spawn(command, args, { detached: true, stdio: ['ignore', log, log], env: serverEnvironment() });
    child.on(
      'exit',
      (code, signal) => (exited = `the server stopped during recovery (${signal ?? `exit code ${code}`})`),
    );
    child.on('error', (error) => (exited = `the server could not be started: ${error.message}`));
    child.unref();
  } finally {
    closeSync(log);
  }
  return { exited: () => exited };
}

/** The port names the socket file only (no TCP): any fixed number works. */
export const scratchPort = 5432;

/** `pgbackrest info`, and the newest commit in the last archived segments (pg_waldump), for the range check. */
export async function archiveRange(stanza: string, signal: AbortSignal): Promise<ArchiveRange> {
  const json = await pgbackrestCommand([`--stanza=${stanza}`, 'info', '--output=json'], signal, true);
  const range = archiveRangeFromInfo(json, stanza);
  if (!range.to) return range;
  // Unread (no pg_waldump here, say), the end is left to the recovery itself, which refuses a target beyond it.
  const lastCommit = await newestArchivedCommit(stanza, range.to.walSegment, signal).catch(() => undefined);
  return lastCommit ? { ...range, to: { ...range.to, lastCommit } } : range;
}

/** The newest COMMIT record's time among the last few archived segments (a segment after a switch may hold none). */
async function newestArchivedCommit(stanza: string, max: string, signal: AbortSignal): Promise<string | undefined> {
  // Its own directory in the private scratch area, 0700 and the server user's (archive-get runs as that user): no
  // other local user can plant a symlink named after the segment it fetches.
  const base = scratchBase();
  await ensureScratchBase(base);
  const workDir = underBase(base, join(base, `wal-${process.pid}-${Date.now()}`));
  await mkdir(workDir, { mode: 0o700 });
  await ownForServer(base, workDir);
  try {
    let segment: string | undefined = max;
    for (let i = 0; i < 4 && segment; i += 1, segment = previousWalSegment(segment)) {
      const file = join(workDir, segment);
      await pgbackrestCommand([`--stanza=${stanza}`, 'archive-get', segment, file], signal).catch(() => undefined);
      if (!existsSync(file)) continue;
      // pg_waldump stops with an error at the end of a switched segment; what it printed before is what we need.
      const dump = spawnSync(join(postgresBin(), 'pg_waldump'), [file], { encoding: 'utf8', maxBuffer: 1 << 28 });
      const commits = [...(dump.stdout ?? '').matchAll(/COMMIT (\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(?:\.\d+)? \w+)/g)];
      if (commits.length) {
        const text = commits.at(-1)![1].replace(/ UTC$/, '+00');
        return pgTimeToIso(text);
      }
    }
    return undefined;
  } finally {
    await rm(workDir, { recursive: true, force: true });
  }
}
