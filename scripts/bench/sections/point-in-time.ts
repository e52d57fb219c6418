import { join } from 'node:path';
import type { MainDataset } from '../dataset';
import { millis, seconds } from '../format';
import { pointInTimeIncident, writesAfterBackupInLive } from '../point-in-time';
import { toMicros } from '../../../activities/point-in-time';
import { createDatabase, dbUrl, dropDatabase, say } from '../pg';
import { scratchDatabaseName } from '../../../activities/scratch';
import { WorkerProcess } from '../worker-process';
import type { Options } from '../options';
import type { ProductRun, BenchResults, PointInTimeResult } from '../results';
import { runTag, logsDir, type BenchContext } from '../context';
import { productRun, strip } from '../product-run';

/**
 * 8. Point in time: the main dataset's victims, restored from the stack's pgBackRest WAL archive to a moment before
 * their deletion (bench/point-in-time.ts stages the incident), by `start --backup pgbackrest:<stanza>/<db> --at`, on a
 * worker of its own. Beside it: the dump path's scratch and wall time (the main product run's, or a dump restore of
 * the same victims run here when that was skipped), and the ideal of section 1.
 */
async function pointInTimeSection(
  dataset: MainDataset,
  options: Options,
  results: BenchResults,
): Promise<PointInTimeResult> {
  const result: PointInTimeResult = { status: 'ok', victims: dataset.victims.length };
  const live = `bench_pitr_live_${runTag}`;
  const worker = new WorkerProcess(`bench-${runTag}-pitr`, join(logsDir, 'worker-pitr.log'));
  const dumpLive = `bench_pitr_dump_live_${runTag}`;
  try {
    const incident = await pointInTimeIncident({
      source: dataset.source,
      live,
      victims: dataset.victims,
      pauseMs: 200,
    });
    Object.assign(result, {
      stanza: incident.stanza,
      database: live,
      victimRows: incident.rowsAtTargetTotal,
      quiesceMs: incident.quiesceMs,
      backupMs: incident.backupMs,
      writtenAfterBackup: incident.writtenAfterBackup,
      target: incident.at,
      archiveMs: incident.archiveMs,
    });
    await worker.start();
    const r = await productRun('pitr', {
      taskQueue: worker.taskQueue,
      source: { backup: `pgbackrest:${incident.stanza}/${live}` },
      at: incident.at,
      live: dbUrl(live),
      tenants: dataset.victims,
      concurrency: options.concurrency,
      groupSize: options.groupSize,
      timeoutMinutes: options.pitrTimeoutMinutes,
      verify: { database: live, expectedRows: incident.rowsAtTargetTotal },
    });
    result.product = strip(r);
    if (r.status === 'ok') result.writesAfterBackupRestored = await writesAfterBackupInLive(live, dataset.victims);
    const pit = r.pointInTime;
    const target = toMicros(incident.at);
    result.recoveryPoint = {
      gapMs: pit?.gapMs,
      lastTransaction: pit?.lastTransaction,
      stopped: pit?.stopped,
      walSegmentsRestored: pit?.walSegmentsRestored,
      lastWriteGapMs: {
        min: (target - toMicros(incident.lastWrite.after)) / 1000,
        max: (target - toMicros(incident.lastWrite.before)) / 1000,
      },
      lastWriteCommit: incident.lastWrite,
    };
    if (r.status !== 'ok') Object.assign(result, { status: r.status, reason: r.reason });
    else if (
      result.writesAfterBackupRestored &&
      (result.writesAfterBackupRestored.renamedTenants !== dataset.victims.length ||
        result.writesAfterBackupRestored.issues !== incident.writtenAfterBackup)
    )
      Object.assign(result, {
        status: 'failed',
        reason: `the writes after the base backup are not all back: ${JSON.stringify(result.writesAfterBackupRestored)} of ${dataset.victims.length} renamed tenants and ${incident.writtenAfterBackup} issues`,
      });

    // The dump path, for the same victims: the main product run's, else a dump restore of its own here.
    let dump: ProductRun | undefined = results.product?.status === 'ok' ? results.product : undefined;
    let dumpFrom: NonNullable<PointInTimeResult['scratch']>['dumpFrom'] = 'main product run';
    if (!dump || dump.scratchMs === undefined) {
      await dropDatabase(dumpLive);
      await createDatabase(dumpLive, dataset.postDeletion);
      const d = await productRun('pitr-dump', {
        taskQueue: worker.taskQueue,
        source: { backup: dataset.backupUrl },
        live: dbUrl(dumpLive),
        tenants: dataset.victims,
        concurrency: options.concurrency,
        groupSize: options.groupSize,
        timeoutMinutes: options.pitrTimeoutMinutes,
        verify: { database: dumpLive, expectedRows: dataset.victimRowsTotal },
      });
      if (!options.keep) await dropDatabase(scratchDatabaseName(d.restoreId!)).catch(() => undefined);
      dump = d.status === 'ok' ? strip(d) : undefined;
      dumpFrom = 'own dump restore';
      if (d.status !== 'ok' && result.status === 'ok')
        Object.assign(result, { status: d.status, reason: `the dump restore beside it: ${d.reason}` });
    }
    result.scratch = {
      pitrMs: r.scratchMs,
      dumpMs: dump?.scratchMs,
      dumpFrom: dump ? dumpFrom : undefined,
      dumpRestoreId: dump?.restoreId,
      ratio: r.scratchMs !== undefined && dump?.scratchMs ? r.scratchMs / dump.scratchMs : undefined,
    };
    const idealMs = results.ideal?.status === 'ok' ? results.ideal.totalMs : undefined;
    const pitrWallMs = r.status === 'ok' ? r.wallMs : undefined;
    result.endToEnd = {
      pitrWallMs,
      dumpWallMs: dump?.wallMs,
      idealMs,
      pitrRatio: idealMs && pitrWallMs ? pitrWallMs / idealMs : undefined,
      dumpRatio: idealMs && dump?.wallMs ? dump.wallMs / idealMs : undefined,
    };
  } catch (error) {
    Object.assign(result, { status: 'failed', reason: (error as Error).message });
  } finally {
    await worker.stop();
    if (!options.keep) {
      await dropDatabase(live).catch(() => undefined);
      await dropDatabase(dumpLive).catch(() => undefined);
    }
  }
  return result;
}

/** 8. Point in time: the same victims from the stack's WAL archive, beside the dump path and the ideal. */
export async function pointInTimeSections({ options, results, dataset, problems }: BenchContext): Promise<void> {
  if (options.skip.pitr) results.pointInTime = { status: 'skipped' };
  else if (!results.productReadiness.ready)
    results.pointInTime = { status: 'not-available', reason: 'the product is not complete' };
  else {
    results.pointInTime = await pointInTimeSection(dataset, options, results);
    const pit = results.pointInTime;
    if (pit.status !== 'ok') problems.push(`point in time: ${pit.reason}`);
    else
      say(
        `point in time: ${seconds(pit.endToEnd?.pitrWallMs)} (scratch ${seconds(pit.scratch?.pitrMs)} against the dump's ${seconds(pit.scratch?.dumpMs)}), recovery point ${millis(pit.recoveryPoint?.gapMs)} before the target`,
      );
  }
}
