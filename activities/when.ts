/**
 * `tenant-restore when` (issue 26, item 3): which commits deleted some tenants' root rows. On a point-in-time scratch
 * recovered at --since (workflows/when.ts), each tenant's root row is found (its ctid); then the archived WAL from the
 * point where that recovery stopped to the end of the archive is fetched (`pgbackrest archive-get`) and read with
 * pg_waldump, as a stream, following each row through its updates to the DELETE whose transaction committed
 * (activities/when-waldump.ts). Runs on the scratch's host (its task queue): the scratch listens on a unix socket
 * there only, and its timeline history file is read from its data directory.
 */
import { cancellationSignal, heartbeat } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { type Pools } from './db';
import { checkInput, invalidInput, sameTenantKey } from './input-contract';
import {
  archiveRange,
  ensureScratchBase,
  ownForServer,
  pgbackrestCommand,
  scratchBase,
  scratchPaths,
  scratchPort,
  underBase,
  type ScratchHost,
} from './point-in-time';
import {
  DeletionTracker,
  lsnNumber,
  nextWalSegment,
  parseCtid,
  parseWaldumpLine,
  timelineSwitch,
  walSegmentOf,
  type TenantDeletion,
} from './when-waldump';
import {
  findRootDeletionsInput,
  type FindRootDeletionsInput,
  type RootDeletions,
  type WhenTenant,
} from './when-contract';
import { readScratch, waldump, xidBefore } from './when-reading';

export function createWhenActivities({ pools, host }: { pools: Pools; host?: ScratchHost }) {
  return {
    /**
     * On this host's `when` scratch (recovered at input.since): where each tenant's root row is, then which committed
     * transaction deleted it, from the archived WAL after the recovery's stop point up to the end of the archive.
     * Refused (non-retryable): a root that is not a table with a single-column primary key, tenants not present at
     * --since (deleted before it).
     */
    async findRootDeletions(raw: FindRootDeletionsInput): Promise<RootDeletions> {
      const input = checkInput(findRootDeletionsInput, raw, (problems, fields) =>
        invalidInput(`findRootDeletions refused its input: ${problems.join('; ')}`, fields),
      );
      if (!host) throw new Error('this worker has no scratch host task queue (workers/worker.ts sets one)');
      const signal = cancellationSignal();
      // The scratch of this when on this host: its paths from the id (a digest), never from a path in the input.
      const paths = scratchPaths(input.whenId, host.id, process.env, 'when');
      if (!existsSync(paths.marker))
        throw new Error(`no scratch of when ${input.whenId} on host ${host.id}: it was recovered elsewhere`);
      const url = `postgresql://${encodeURIComponent(process.env.TENANT_RESTORE_PITR_USER || 'postgres')}@localhost:${scratchPort}/${encodeURIComponent(input.database)}?host=${encodeURIComponent(paths.socketDir)}`;
      let phase = 'reading the root rows at --since';
      let segments = 0;
      const beat = setInterval(() => heartbeat({ phase, walSegments: segments }), 2000);
      const base = scratchBase();
      const workDir = underBase(base, join(base, `when-wal-${process.pid}-${Date.now()}`));
      try {
        const facts = await readScratch(pools, url, input.tenantRoot, input.tenants);
        const found = new Map(facts.rows.map((r) => [sameTenantKey(r.id), r]));
        const missing = input.tenants.filter((t) => !found.has(sameTenantKey(t)));
        const range = await archiveRange(input.stanza, signal);
        if (missing.length)
          throw ApplicationFailure.nonRetryable(
            `${missing.length} tenant(s) have no root row in ${input.tenantRoot} at --since ${input.since.type === 'time' ? input.since.time : input.since.lsn} (${missing.slice(0, 10).join(', ')}${missing.length > 10 ? ', ...' : ''}): they were already gone before it. Give an earlier --since${range.from ? ` (stanza '${input.stanza}' can recover from ${range.from.time}, the end of backup ${range.from.backup})` : ''}, or leave them out.`,
            'TenantNotAtSince',
          );

        // Where replay stopped: the new timeline's switchpoint (the end of the last record replayed), from the history
        // file the promotion wrote; the WAL after it is on the parent timeline, the archive's.
        const historyFile = join(
          paths.dataDir,
          'pg_wal',
          `${facts.timeline.toString(16).toUpperCase().padStart(8, '0')}.history`,
        );
        const history = await readFile(historyFile, 'utf8').catch(() => '');
        const switched = timelineSwitch(history);
        if (!switched)
          throw ApplicationFailure.nonRetryable(
            `the recovered scratch has no timeline history (${historyFile}): where its replay stopped is unknown`,
            'PointInTimeRecoveryFailed',
          );
        const walFrom = switched.switchpoint;

        phase = 'fetching the archived WAL';
        const last = range.to?.walSegment;
        const first = walSegmentOf(walFrom, switched.parent, facts.segmentSize);
        await ensureScratchBase(base);
        await mkdir(workDir, { mode: 0o700 });
        await ownForServer(base, workDir);
        // Every segment from the stop point to the archive's newest: pg_waldump reads a record that crosses into the
        // next segment from that segment's file, so they are all fetched first (disk: the archive's size over the span).
        for (let segment = first; last && segment <= last; segment = nextWalSegment(segment, facts.segmentSize)) {
          const file = join(workDir, segment);
          const got = await pgbackrestCommand([`--stanza=${input.stanza}`, 'archive-get', segment, file], signal).then(
            () => true,
            () => false,
          );
          if (!got || !existsSync(file)) break;
          segments += 1;
        }
        if (segments === 0)
          throw ApplicationFailure.nonRetryable(
            `no archived WAL after the recovery point ${walFrom} (segment ${first}; the archive ends at ${last ?? 'nothing'})`,
            'WhenRefused',
          );

        phase = 'reading the WAL';
        const tracker = new DeletionTracker(
          facts.rel,
          facts.rows.map((r) => ({ tenantId: r.id, at: parseCtid(r.ctid) })),
        );
        let lines = 0;
        const stderr = await waldump(workDir, switched.parent, walFrom, signal, (line) => {
          lines += 1;
          const event = parseWaldumpLine(line);
          if (event) tracker.feed(event);
        });
        const { deletions, lastLsn } = tracker.result();
        if (!lastLsn)
          throw new Error(`pg_waldump read no record from ${walFrom}: ${stderr.slice(-500) || `${lines} lines`}`);

        // Report each tenant under the id it was asked for.
        const byKey = new Map(deletions.map((d) => [sameTenantKey(d.tenantId), d.deletion]));
        const tenants: WhenTenant[] = input.tenants.map((tenantId) => {
          const d = byKey.get(sameTenantKey(tenantId));
          return d
            ? {
                tenantId,
                deletedBy: d.deletedBy,
                commitTime: d.commitTime,
                commitLsn: d.commitLsn,
                firstLsn: d.firstLsn,
              }
            : { tenantId, notDeleted: true };
        });
        const done = deletions.map((d) => d.deletion).filter((d): d is TenantDeletion => !!d);
        const byFirst = [...done].sort((a, b) => (lsnNumber(a.firstLsn) < lsnNumber(b.firstLsn) ? -1 : 1))[0];
        const byCommit = [...done].sort((a, b) => (lsnNumber(a.commitLsn) < lsnNumber(b.commitLsn) ? -1 : 1)).at(-1);
        const warnings = [
          ...new Set(
            done
              .filter((d) => xidBefore(d.deletedBy, facts.nextXid))
              .map(
                (d) =>
                  `transaction ${d.deletedBy} was assigned before the --since point: its first record may be earlier than ${d.firstLsn} (then T0 is too late). Run when again with an earlier --since.`,
              ),
          ),
        ];
        return {
          database: input.database,
          walFrom,
          tenants,
          ...(byFirst
            ? {
                first: { xid: byFirst.deletedBy, firstLsn: byFirst.firstLsn, commitTime: byFirst.commitTime },
                last: { xid: byCommit!.deletedBy, commitLsn: byCommit!.commitLsn, commitTime: byCommit!.commitTime },
                window: { from: byFirst.firstLsn, to: byCommit!.commitLsn },
              }
            : {}),
          archive: {
            ...(range.from ? { from: range.from } : {}),
            ...(range.to ? { to: range.to } : {}),
            readTo: lastLsn,
            walSegments: segments,
          },
          warnings,
        };
      } finally {
        clearInterval(beat);
        await pools.close(url);
        await rm(workDir, { recursive: true, force: true });
      }
    },
  };
}
