/**
 * Scratch by point-in-time recovery from a pgBackRest WAL archive (`start --backup pgbackrest:<stanza> --at <moment>`):
 * `pgbackrest restore --type=time|lsn` into a fresh data directory on the worker's host, a private PostgreSQL started
 * on it (unix socket only, in that directory: nothing outside the host can reach the copy of every tenant's data),
 * recovery awaited and verified from the server's own log (where it stopped, the last transaction it replayed), and
 * its URL handed to the plan and the copy like any other scratch.
 *
 * The server lives on one host, so every activity that reads it runs on that host's own task queue
 * (`<task queue>@<host id>`, polled by each worker besides the shared one). The prepare itself runs on the shared
 * queue: whichever worker takes it becomes the scratch host, and a retry after its death prepares on another.
 */
import { cancellationSignal, heartbeat } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { databaseName, resolveConnectionString, type Pools } from '../db';
import { checkInput, toMicros } from '../input-contract';
import type { ScratchInfo } from '../restore-types';
import type { ScratchKind } from '../scratch';
import {
  ArchiveRange,
  RecoveryOutcome,
  describeTarget,
  invalidPagesOutside,
  parseRecoveryLog,
  pgbackrestTime,
  recoveryProblem,
  targetOutsideRange,
} from './target';
import {
  Marker,
  ScratchHost,
  ensureScratchBase,
  ownForServer,
  pgbackrestCommand,
  scratchPaths,
  stopServer,
} from './host';
import {
  PreparePointInTimeInput,
  archiveRange,
  preparePointInTimeInput,
  refuseActivityInput,
  scratchPort,
  startServer,
  stopPointInTimeInput,
} from './server';
export * from './target';
export * from './host';
export * from './server';

export function createPointInTimeActivities({ pools, host }: { pools: Pools; host?: ScratchHost }) {
  return {
    /** The range a stanza can recover, for `start` to check --at against before anything runs. */
    async pointInTimeRange(input: { stanza: string }): Promise<ArchiveRange> {
      return archiveRange(input.stanza, cancellationSignal());
    },

    /**
     * Recovers the stanza to the target into this host's scratch directory for the restore, starts it, waits for the
     * promotion and checks where recovery stopped. Non-retryable refusals: a target outside the archive, a recovery
     * that ended before the target, a recovery that stopped elsewhere. An earlier attempt's server and directory on
     * this host are stopped and removed first.
     */
    async preparePointInTimeScratch(raw: PreparePointInTimeInput): Promise<ScratchInfo> {
      const input = checkInput(preparePointInTimeInput, raw, refuseActivityInput('preparePointInTimeScratch'));
      if (!host) throw new Error('this worker has no scratch host task queue (workers/worker.ts sets one)');
      const started = Date.now();
      const signal = cancellationSignal();
      const kind = input.kind ?? 'restore';
      const paths = scratchPaths(input.restoreId, host.id, process.env, kind);
      const database = input.database ?? databaseName(resolveConnectionString(input.live));
      let phase = 'checking the archive';
      let serverStarted = false;
      let segments = 0;
      const beat = setInterval(() => heartbeat({ phase, walSegmentsRestored: segments }), 2000);
      try {
        const range = await archiveRange(input.stanza, signal);
        const outside = targetOutsideRange(range, input.target);
        if (outside)
          throw ApplicationFailure.nonRetryable(`Cannot recover to --at: ${outside}`, 'PointInTimeOutOfRange');

        phase = 'restoring the base backup';
        await ensureScratchBase(paths.base);
        stopServer(paths.dataDir, 'immediate');
        await rm(paths.root, { recursive: true, force: true });
        await rm(paths.socketDir, { recursive: true, force: true });
        await mkdir(paths.root, { mode: 0o700 });
        await mkdir(paths.dataDir, { mode: 0o700 });
        await mkdir(paths.tablespaces, { mode: 0o700 });
        await mkdir(paths.socketDir, { mode: 0o700 });
        await writeFile(
          paths.marker,
          JSON.stringify({
            restoreId: input.restoreId,
            kind,
            target: input.target,
            stanza: input.stanza,
          } satisfies Marker),
        );
        await ownForServer(paths.base, paths.root);
        await ownForServer(paths.base, paths.socketDir);
        const targetArgs =
          input.target.type === 'time'
            ? ['--type=time', `--target=${pgbackrestTime(input.target.time)}`]
            : ['--type=lsn', `--target=${input.target.lsn}`];
        await pgbackrestCommand(
          [
            `--stanza=${input.stanza}`,
            `--pg1-path=${paths.dataDir}`,
            ...targetArgs,
            '--target-action=promote',
            '--archive-mode=off',
            // Tablespaces go under this scratch's directory, never back to the production paths the backup names.
            `--tablespace-map-all=${paths.tablespaces}`,
            // Only the restored database's files (and the system ones): the others in a shared cluster stay sparse.
            `--db-include=${database}`,
            '--process-max=2',
            'restore',
          ],
          signal,
        ).catch((error: Error) => {
          // Only a network or storage hiccup is worth another attempt; a refusal (an option, a backup set, the
          // repository's contents) would be refused again.
          if (/connect|timed? ?out|network|resolve|TLS|SSL|temporarily/i.test(error.message)) throw error;
          const missing = /database to include '.*' does not exist/.test(error.message)
            ? ` The database '${database}' is not in the base backup pgBackRest picked for that moment (the newest that ended before it): it was created after that backup. Choose a later --at, or name the database: --backup pgbackrest:${input.stanza}/<database>.`
            : '';
          throw ApplicationFailure.nonRetryable(
            `pgbackrest restore of stanza '${input.stanza}' failed: ${error.message}${missing}`,
            'PointInTimeRecoveryFailed',
          );
        });

        phase = 'recovering to the target';
        // Production clusters often keep pg_hba.conf and postgresql.conf outside the data directory (Debian): ours.
        await writeFile(paths.hbaFile, 'local all all trust\n');
        if (!existsSync(join(paths.dataDir, 'postgresql.conf')))
          await writeFile(join(paths.dataDir, 'postgresql.conf'), '');
        await ownForServer(paths.base, paths.root);
        const server = startServer(paths);
        serverStarted = true;

        let outcome: RecoveryOutcome = { walSegmentsRestored: 0, ready: false };
        for (;;) {
          if (signal.aborted) throw signal.reason ?? new Error('cancelled');
          await new Promise((resolve) => setTimeout(resolve, 500));
          const text = await readFile(paths.logFile, 'utf8').catch(() => '');
          outcome = parseRecoveryLog(text);
          segments = outcome.walSegmentsRestored;
          if (outcome.ready) break;
          if (outcome.fatal || server.exited()) {
            const why = outcome.fatal ?? server.exited() ?? 'the server stopped during recovery';
            // "recovery ended before configured recovery target was reached": the archive does not reach the target.
            const beyond = /recovery ended before configured recovery target/.test(why);
            throw ApplicationFailure.nonRetryable(
              beyond
                ? `Cannot recover to ${describeTarget(input.target)}: the WAL archive of stanza '${input.stanza}' ends before it (${why}). Archive the WAL up to that moment (SELECT pg_switch_wal() on the source, or wait for its archive_timeout) or choose an earlier --at.`
                : `Point-in-time recovery of stanza '${input.stanza}' failed: ${why}. See ${paths.logFile} on host ${host.id}.`,
              beyond ? 'PointInTimeOutOfRange' : 'PointInTimeRecoveryFailed',
            );
          }
        }
        const problem = recoveryProblem(outcome, input.target);
        if (problem)
          throw ApplicationFailure.nonRetryable(
            `Recovery to ${describeTarget(input.target)} is not verified: ${problem}. See ${paths.logFile} on host ${host.id}.`,
            'PointInTimeRecoveryFailed',
          );

        phase = 'checking the recovered database';
        const url = `postgresql://${encodeURIComponent(process.env.TENANT_RESTORE_PITR_USER || 'postgres')}@localhost:${scratchPort}/${encodeURIComponent(database)}?host=${encodeURIComponent(paths.socketDir)}`;
        const pool = pools.get(url, { max: 1 });
        const { rows } = await pool.query<{ recovering: boolean; oid: string; replicationWorkers: string }>(
          `SELECT pg_is_in_recovery() AS recovering, (SELECT oid::text FROM pg_database WHERE datname = current_database()) AS oid,
                  (SELECT count(*) FROM pg_stat_activity
                    WHERE backend_type IN ('logical replication launcher', 'logical replication worker'))::text
                    AS "replicationWorkers"`,
        );
        if (rows[0].recovering)
          throw new Error('the recovered server is still in recovery after saying it accepts connections');
        await pools.close(url);
        if (rows[0].replicationWorkers !== '0')
          throw ApplicationFailure.nonRetryable(
            `The recovered server runs ${rows[0].replicationWorkers} logical replication process(es): it must be inert (it could take production's replication slot). See ${paths.logFile} on host ${host.id}.`,
            'PointInTimeRecoveryFailed',
          );
        // ignore_invalid_pages lets replay pass over the databases --db-include left as zeroed files; a page of this
        // database or of the shared catalogs among them would be real damage.
        const damaged = invalidPagesOutside(await readFile(paths.logFile, 'utf8'), rows[0].oid);
        if (damaged.length)
          throw ApplicationFailure.nonRetryable(
            `Recovery of '${database}' replayed WAL onto pages it does not have (${damaged.slice(0, 3).join('; ')}): the base backup or the archive is damaged for this database. See ${paths.logFile} on host ${host.id}.`,
            'PointInTimeRecoveryFailed',
          );
        const recoveredTo = outcome.lastTransaction;
        return {
          ref: url,
          owned: true,
          reused: false,
          backup: `pgbackrest:${input.stanza} at ${describeTarget(input.target)}`,
          durationMs: Date.now() - started,
          pointInTime: {
            stanza: input.stanza,
            target: input.target,
            database,
            stopped: outcome.stopped,
            ...(recoveredTo ? { lastTransaction: recoveredTo } : {}),
            ...(recoveredTo && input.target.type === 'time'
              ? { gapMs: (toMicros(input.target.time) - toMicros(recoveredTo)) / 1000 }
              : {}),
            walSegmentsRestored: outcome.walSegmentsRestored,
            host: host.id,
            taskQueue: host.taskQueue,
            dataDir: paths.dataDir,
          },
        };
      } catch (error) {
        // A server that failed its checks is stopped (a server left running would hold memory on the host until
        // someone noticed); its directory and log stay for a look, until a retry of this restore on this host.
        if (serverStarted) stopServer(paths.dataDir, 'fast');
        throw error;
      } finally {
        clearInterval(beat);
      }
    },

    /**
     * Stops this restore's point-in-time scratch server and removes its directory: only on its own host (this runs on
     * the host's task queue), and only a directory whose marker names this restore.
     */
    async stopPointInTimeScratch(input: {
      restoreId: string;
      kind?: ScratchKind;
      scratch: ScratchInfo;
    }): Promise<{ dropped: boolean; reason?: string }> {
      checkInput(stopPointInTimeInput, input, refuseActivityInput('stopPointInTimeScratch'));
      const pit = input.scratch.pointInTime;
      if (!pit || !input.scratch.owned)
        return { dropped: false, reason: 'not a point-in-time scratch of this restore' };
      if (!host || host.id !== pit.host) return { dropped: false, reason: `this worker is not on host ${pit.host}` };
      const kind = input.kind ?? 'restore';
      const paths = scratchPaths(input.restoreId, host.id, process.env, kind);
      const marker = await readFile(paths.marker, 'utf8')
        .then((t) => JSON.parse(t) as Marker)
        .catch(() => undefined);
      if (!marker) return { dropped: false, reason: 'already gone' };
      if (marker.restoreId !== input.restoreId || (marker.kind ?? 'restore') !== kind)
        return { dropped: false, reason: `its marker names ${marker.kind ?? 'restore'} '${marker.restoreId}'` };
      await pools.close(input.scratch.ref);
      stopServer(paths.dataDir, 'fast');
      await rm(paths.root, { recursive: true, force: true });
      await rm(paths.socketDir, { recursive: true, force: true });
      return { dropped: true };
    },
  };
}
