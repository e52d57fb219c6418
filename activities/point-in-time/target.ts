/**
 * The moment a point-in-time scratch is recovered to, and what the archive says about it: the target's forms,
 * the range an archive can recover to (pgbackrest info), the server log's verdict on where recovery stopped, and WAL
 * segment arithmetic. Pure functions, unit-tested without a server.
 */
import { isoFromMicros, parseRecoveryTarget, toMicros } from '../input-contract';
import type { RecoveryTarget } from '../restore-types';
import type { ScratchKind } from '../scratch';

export type { ScratchKind };

export type { RecoveryTarget };

// Parsed and rendered by the input contract, which workflow code shares: the worker re-checks what it is given.
export { isoFromMicros, parseRecoveryTarget, toMicros };

/** pgBackRest reads `YYYY-MM-DD HH:MM:SS[.mmm]+TZ`, not ISO 8601's T and Z. */
export function pgbackrestTime(iso: string): string {
  return `${iso.replace('T', ' ').replace(/Z$/, '')}+00`;
}

export function describeTarget(target: RecoveryTarget): string {
  return target.type === 'time' ? target.time : `LSN ${target.lsn}`;
}

/** `0/3A000060` → a number, for comparing positions (exact below 2^53: 8 PB of WAL). */
export function lsnValue(lsn: string): number {
  const [hi, lo] = lsn.split('/');
  return parseInt(hi, 16) * 2 ** 32 + parseInt(lo, 16);
}

/** What `pgbackrest info` says one stanza can restore: from the end of its oldest backup to the end of its archive. */
export interface ArchiveRange {
  stanza: string;
  /** The oldest moment a recovery can stop at: the end of the oldest backup (consistency is reached there). */
  from?: { time: string; lsn: string; backup: string };
  /** The last archived WAL segment; `lastCommit` is the newest commit found in it (pg_waldump), when read. */
  to?: { walSegment: string; lastCommit?: string };
  backups: number;
  status: string;
}

interface PgbackrestInfoJson {
  name: string;
  status?: { code: number; message: string };
  archive?: Array<{ min?: string | null; max?: string | null }>;
  backup?: Array<{ label: string; timestamp: { start: number; stop: number }; lsn?: { start: string; stop: string } }>;
}

/** The range of one stanza, from `pgbackrest info --output=json`. */
export function archiveRangeFromInfo(infoJson: string, stanza: string): ArchiveRange {
  const stanzas = JSON.parse(infoJson) as PgbackrestInfoJson[];
  const info = stanzas.find((s) => s.name === stanza);
  if (!info) return { stanza, backups: 0, status: 'missing stanza' };
  const backups = [...(info.backup ?? [])].sort((a, b) => a.timestamp.stop - b.timestamp.stop);
  const oldest = backups[0];
  const max = (info.archive ?? []).map((a) => a.max).filter((m): m is string => !!m);
  return {
    stanza,
    backups: backups.length,
    status: info.status?.message ?? 'unknown',
    ...(oldest
      ? {
          from: {
            time: new Date(oldest.timestamp.stop * 1000).toISOString(),
            lsn: oldest.lsn?.stop ?? '0/0',
            backup: oldest.label,
          },
        }
      : {}),
    ...(max.length ? { to: { walSegment: max.sort().at(-1)! } } : {}),
  };
}

/** Why the target cannot be recovered from this range, or undefined. The message gives the range there is. */
export function targetOutsideRange(range: ArchiveRange, target: RecoveryTarget): string | undefined {
  const available = `${range.from ? `from ${range.from.time} (end of backup ${range.from.backup}, LSN ${range.from.lsn})` : 'nothing'}${range.to ? ` to ${range.to.lastCommit ? `the last archived commit at ${range.to.lastCommit}` : `WAL segment ${range.to.walSegment}`}` : ''}`;
  if (range.backups === 0 || !range.from)
    return `stanza '${range.stanza}' has no backup to recover from (${range.status}). Take one: pgbackrest --stanza=${range.stanza} backup.`;
  if (target.type === 'time') {
    if (toMicros(target.time) < toMicros(range.from.time))
      return `${target.time} is before the oldest backup ended; stanza '${range.stanza}' can recover ${available}.`;
    if (range.to?.lastCommit && toMicros(target.time) >= toMicros(range.to.lastCommit))
      return `${target.time} is at or after the end of the WAL archive; stanza '${range.stanza}' can recover ${available}. Recovery stops at the first commit after the target, so one must be archived: wait for the source's archive_timeout, or run SELECT pg_switch_wal() on it, then retry; or choose an earlier --at.`;
  } else if (lsnValue(target.lsn) < lsnValue(range.from.lsn)) {
    return `LSN ${target.lsn} is before the oldest backup ended; stanza '${range.stanza}' can recover ${available}.`;
  }
  return undefined;
}

/** What the server's log says about the recovery it ran. */
export interface RecoveryOutcome {
  /** `before commit of transaction 1234, time …` or `after WAL location (LSN) "0/…"`. */
  stopped?: string;
  /** The commit time of the first transaction not replayed (a time target), for the check below. */
  stoppedBeforeTime?: string;
  /** The last transaction replayed: the recovery point achieved. */
  lastTransaction?: string;
  walSegmentsRestored: number;
  ready: boolean;
  /** A FATAL or PANIC line: the recovery failed. */
  fatal?: string;
}

/** PostgreSQL prints `2026-12-02 11:00:00.123+00` (lc_messages=C): to ISO 8601. */
export function pgTimeToIso(text: string): string {
  const us = toMicros(text);
  return Number.isNaN(us) ? text.trim() : isoFromMicros(us);
}

export function parseRecoveryLog(text: string): RecoveryOutcome {
  const stopped = /recovery stopping (before|after) (commit|abort) of transaction (\d+), time (.+)$/m.exec(text);
  const stoppedLsn = /recovery stopping (?:before|after) WAL location \(LSN\) "([0-9A-F/]+)"/m.exec(text);
  const last = /last completed transaction was at log time (.+)$/m.exec(text);
  const fatal = /(?:FATAL|PANIC):\s+(.+)$/m.exec(text);
  return {
    ...(stopped
      ? { stopped: `${stopped[1]} ${stopped[2]} of transaction ${stopped[3]}, time ${pgTimeToIso(stopped[4])}` }
      : stoppedLsn
        ? { stopped: `after WAL location ${stoppedLsn[1]}` }
        : {}),
    ...(stopped && stopped[1] === 'before' ? { stoppedBeforeTime: pgTimeToIso(stopped[4]) } : {}),
    ...(last ? { lastTransaction: pgTimeToIso(last[1]) } : {}),
    walSegmentsRestored: (text.match(/restored log file "[0-9A-F]{24}" from archive/g) ?? []).length,
    ready: /database system is ready to accept connections/.test(text),
    ...(fatal ? { fatal: fatal[1].trim() } : {}),
  };
}

/**
 * Whether the recovery stopped where it was asked to: for a time, at the first commit after the target, with the last
 * replayed transaction at or before it; for an LSN, at that position. The reason when it did not.
 */
export function recoveryProblem(outcome: RecoveryOutcome, target: RecoveryTarget): string | undefined {
  if (!outcome.stopped)
    return 'the server promoted without saying where recovery stopped (no "recovery stopping" line in its log)';
  if (target.type === 'lsn') return outcome.stopped.includes(target.lsn) ? undefined : `it stopped ${outcome.stopped}`;
  const at = toMicros(target.time);
  if (outcome.stoppedBeforeTime && toMicros(outcome.stoppedBeforeTime) <= at)
    return `it stopped before a commit at ${outcome.stoppedBeforeTime}, not after ${target.time}`;
  if (outcome.lastTransaction && toMicros(outcome.lastTransaction) > at)
    return `its last replayed transaction is at ${outcome.lastTransaction}, after ${target.time}`;
  return undefined;
}

/**
 * The invalid-page reports of a recovery (`page 12 of relation base/16384/16390 does not exist`) that concern the
 * restored database (`base/<its oid>/`, or `pg_tblspc/<spc>/PG_…/<its oid>/` for its relations in a tablespace) or
 * the shared catalogs (`global/`): the ones that are not the zeroed files of excluded databases.
 */
export function invalidPagesOutside(log: string, databaseOid: string): string[] {
  return [...log.matchAll(/page \d+ of relation (\S+) (?:does not exist|is uninitialized|was uninitialized)/g)]
    .filter(
      (m) =>
        m[1]!.startsWith(`base/${databaseOid}/`) ||
        m[1]!.startsWith('global/') ||
        // A relation of the restored database in a tablespace: pg_tblspc/<tablespace>/PG_<version>/<database>/...
        new RegExp(`^pg_tblspc/\\d+/[^/]+/${databaseOid}/`).test(m[1]!),
    )
    .map((m) => m[0]);
}

/** The previous WAL segment's name (same timeline), or undefined at the very first. */
export function previousWalSegment(segment: string): string | undefined {
  const timeline = segment.slice(0, 8);
  let log = parseInt(segment.slice(8, 16), 16);
  let seg = parseInt(segment.slice(16, 24), 16);
  if (seg > 0) seg -= 1;
  else if (log > 0) {
    log -= 1;
    seg = 0xff;
  } else return undefined;
  const hex = (n: number) => n.toString(16).toUpperCase().padStart(8, '0');
  return `${timeline}${hex(log)}${hex(seg)}`;
}

// ---------------------------------------------------------------------------------------------------------------
// the host side: processes and directories
