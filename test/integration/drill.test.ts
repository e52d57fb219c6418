/**
 * Restore drills against the real stack: a drill restores K tenants of the newest backup under a prefix into a
 * disposable database with live's schema, checks and records them, cleans up, never writes live; a drill that cannot
 * restore fails its workflow visibly; `drill schedule` creates a Temporal Schedule that runs the same drill.
 */
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { WorkflowFailedError } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createActivities } from '../../activities';
import { connect, Pools } from '../../activities/db';
import { drillDatabaseName, type DrillRecord } from '../../activities/drill';
import { createS3Client, getJson } from '../../activities/s3';
import { drillInputFromFlags, listDrills, runDrill, scheduleDrill } from '../../cli/client/drill';
import { diffChecksums, tenantChecksums } from '../../scripts/workload/checksums';
import { generateWorkload, type GenerateResult } from '../../scripts/workload/generate';
import { signedManifest, takeBackup } from '../../scripts/workload/backup';
import { scratchDatabaseName } from '../../activities/scratch';
import {
  scratchAdminQuery,
  startWorker,
  temporalClient,
  uniqueName,
  useFreshDatabases,
  useStackEnv,
} from '../helpers/stack';

const env = useStackEnv();
const { fresh } = useFreshDatabases();

async function query<T extends Record<string, unknown>>(url: string, sql: string, values?: unknown[]): Promise<T[]> {
  const client = await connect(url, 'drill-test');
  try {
    return (await client.query<T>(sql, values)).rows;
  } finally {
    await client.end();
  }
}

async function databasesLike(fragment: string): Promise<string[]> {
  const rows = await query<{ datname: string }>(
    withDb('postgres'),
    'SELECT datname FROM pg_database WHERE datname LIKE $1',
    [`%${fragment.toLowerCase().replace(/[^a-z0-9]/g, '_')}%`],
  );
  return rows.map((r) => r.datname);
}

let serverUrlBase = '';
const withDb = (name: string) => serverUrlBase.replace(/\/[^/]*$/, `/${name}`);

describe('restore drill', () => {
  const pools = new Pools();
  const s3 = createS3Client();
  const taskQueue = uniqueName('tq_drill');
  const prefix = `test/${uniqueName('drills')}/`;
  let live: { name: string; url: string };
  let generated: GenerateResult;
  let worker: Awaited<ReturnType<typeof startWorker>>;
  let temporal: Awaited<ReturnType<typeof temporalClient>>;
  let newest: string;

  beforeAll(async () => {
    live = await fresh('drill_live');
    serverUrlBase = live.url;
    // An older backup of a smaller database, then the newest one: the drill must pick the newest.
    const older = await fresh('drill_older');
    await generateWorkload(older.url, { tenants: 3, rowsTarget: 1_000, seed: 1 });
    await takeBackup({
      url: older.url,
      s3,
      bucket: env.STACK_S3_BUCKET,
      key: `${prefix}a-older.dump`,
      retentionDays: 1,
    });
    generated = await generateWorkload(live.url, { tenants: 12, rowsTarget: 6_000, seed: 2 });
    newest = (
      await takeBackup({
        url: live.url,
        s3,
        bucket: env.STACK_S3_BUCKET,
        key: `${prefix}b-newest.dump`,
        retentionDays: 1,
      })
    ).url;
    worker = await startWorker({ taskQueue, activities: createActivities({ pools, s3 }) });
    temporal = await temporalClient();
  });

  afterAll(async () => {
    await temporal?.close();
    await worker?.stop();
    await pools.closeAll();
    s3.destroy();
  });

  it('restores K tenants of the newest backup into a disposable database, records its figures, and never writes live', async () => {
    const liveBefore = await tenantChecksums(live.url, generated.tenantIds);
    const input = drillInputFromFlags(
      {
        'backup-prefix': `s3://${env.STACK_S3_BUCKET}/${prefix}`,
        live: live.url,
        'tenant-root': 'app.tenants',
        sample: '4',
        concurrency: '2',
        id: uniqueName('d').replace(/_/g, '-'),
      },
      true,
    );
    const outcome = await runDrill(temporal.client, input, { taskQueue, wait: true });
    expect(outcome.error).toBeUndefined();
    expect(outcome.failed).toBe(false);
    const record = outcome.record!;
    expect(record.status).toBe('passed');
    expect(record.backup).toBe(newest);
    expect(record.tenants).toHaveLength(4);
    for (const id of record.tenants) expect(generated.tenantIds).toContain(id);
    expect(record.restored).toBe(4);
    expect(record.failed).toBe(0);
    expect(record.rowCheck?.ok).toBe(true);
    expect(record.rowCheck?.mismatches).toEqual([]);

    // The drill database held exactly these tenants' rows plus the shared parents they need (plans, countries).
    const owned = await tenantChecksums(live.url, record.tenants);
    const ownedRows = Object.values(owned).reduce(
      (s, tables) => s + Object.values(tables).reduce((a, t) => a + t.rows, 0),
      0,
    );
    const [{ parents }] = await query<{ parents: string }>(
      live.url,
      `
      SELECT (SELECT count(DISTINCT plan_id) FROM (SELECT plan_id FROM app.tenants WHERE id = ANY($1::bigint[])
                UNION SELECT plan_id FROM app.billing_accounts WHERE tenant_id = ANY($1::bigint[])) p)
           + (SELECT count(DISTINCT code) FROM (SELECT country_code AS code FROM app.tenants WHERE id = ANY($1::bigint[])
                UNION SELECT country_code FROM app.billing_accounts WHERE tenant_id = ANY($1::bigint[])) c) AS parents`,
      [record.tenants],
    );
    expect(record.rows).toBe(ownedRows + Number(parents));
    expect(record.timeToRestoreMs).toBeGreaterThan(0);
    expect(record.rowsPerSecond).toBe(Math.round(record.rows / (record.timeToRestoreMs / 1000)));

    // Recorded in S3, listed by `drill list`.
    const stored = await getJson<DrillRecord>(s3, {
      bucket: env.STACK_S3_BUCKET,
      key: `drills/${record.drillId}.json`,
    });
    expect(stored).toEqual(record);
    expect((await listDrills(s3, env.STACK_S3_BUCKET, 1000)).map((r) => r.drillId)).toContain(record.drillId);

    // Its databases are gone, and live did not change at all.
    expect(await databasesLike(record.drillId)).toEqual([]);
    expect(diffChecksums(liveBefore, await tenantChecksums(live.url, generated.tenantIds))).toEqual([]);
  });

  it('fails its workflow visibly, records why and cleans up, when the newest backup does not match its manifest', async () => {
    const badPrefix = `test/${uniqueName('baddrill')}/`;
    const original = await s3.send(
      new GetObjectCommand({ Bucket: env.STACK_S3_BUCKET, Key: newest.replace(`s3://${env.STACK_S3_BUCKET}/`, '') }),
    );
    const bytes = Buffer.from(await original.Body!.transformToByteArray());
    await s3.send(new PutObjectCommand({ Bucket: env.STACK_S3_BUCKET, Key: `${badPrefix}x.dump`, Body: bytes }));
    await s3.send(
      new PutObjectCommand({
        Bucket: env.STACK_S3_BUCKET,
        Key: `${badPrefix}x.dump.manifest.json`,
        // Signed by the backup job (the stack's key), for bytes that are not these.
        Body: JSON.stringify(
          signedManifest(`${badPrefix}x.dump`, { sha256: '0'.repeat(64), size: bytes.length, sizeBytes: bytes.length }),
        ),
      }),
    );
    const drillId = uniqueName('bad').replace(/_/g, '-');
    const input = drillInputFromFlags(
      {
        'backup-prefix': `s3://${env.STACK_S3_BUCKET}/${badPrefix}`,
        live: live.url,
        'tenant-root': 'app.tenants',
        sample: '2',
        id: drillId,
      },
      true,
    );

    const handle = await temporal.client.workflow.start('restoreDrill', {
      taskQueue,
      workflowId: `drill/${drillId}`,
      args: [input],
    });
    const error = await handle.result().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(WorkflowFailedError);
    const cause = (error as WorkflowFailedError).cause as { type?: string; message?: string };
    expect(cause.type).toBe('DrillFailed');
    expect((await handle.describe()).status.name).toBe('FAILED');

    const stored = await getJson<DrillRecord>(s3, { bucket: env.STACK_S3_BUCKET, key: `drills/${drillId}.json` });
    expect(stored.status).toBe('failed');
    expect(stored.error).toMatch(/sha256|checksum/i);
    expect(stored.restored).toBe(0);
    expect(await databasesLike(drillId)).toEqual([]);
  });

  it("never drops nor reuses a database of its name that is not this drill's, and drops its own by its marker (N14)", async () => {
    // Drill databases go to the scratch server (`--server`, default TENANT_RESTORE_SCRATCH_SERVER: alias scratch).
    // Someone's database there with the drill database's name, owned by the role the drill uses (so nothing but the
    // drill's own check stops a DROP): it holds a table, and no drill marker.
    const drillId = uniqueName('own').replace(/_/g, '-');
    const name = drillDatabaseName(drillId);
    const server = 'scratch';
    const onServer = `${server}/${name}`;
    const comment = async () =>
      (
        await scratchAdminQuery(
          `SELECT shobj_description(oid, 'pg_database') AS comment FROM pg_database WHERE datname = $1`,
          [name],
        )
      ).rows as Array<{ comment: string | null }>;
    await pools.get(server).query(`CREATE DATABASE "${name}"`);
    try {
      await pools.get(onServer).query('CREATE TABLE keep_me (id int); INSERT INTO keep_me VALUES (42)');
      const input = drillInputFromFlags(
        {
          'backup-prefix': `s3://${env.STACK_S3_BUCKET}/${prefix}`,
          live: live.url,
          'tenant-root': 'app.tenants',
          sample: '2',
          id: drillId,
        },
        true,
      );
      expect(input.server).toBe(server);
      const handle = await temporal.client.workflow.start('restoreDrill', {
        taskQueue,
        workflowId: `drill/${drillId}`,
        args: [input],
      });
      const error = await handle.result().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(WorkflowFailedError);
      const stored = await getJson<DrillRecord>(s3, { bucket: env.STACK_S3_BUCKET, key: `drills/${drillId}.json` });
      expect(stored.status).toBe('failed');
      expect(stored.error).toContain(
        `Refusing to use database ${name}: it is not a drill database (no marker, and it holds objects), not the drill database of drill '${drillId}', and it was not touched.`,
      );
      // Untouched: its table, its rows, no comment.
      expect((await pools.get(onServer).query('SELECT id FROM keep_me')).rows).toEqual([{ id: 42 }]);
      expect(await comment()).toEqual([{ comment: null }]);
      // The drill's scratch was its own (kind drill), and is gone.
      const scratch = scratchDatabaseName(`drill-${drillId}`, 'drill');
      expect((await scratchAdminQuery('SELECT 1 FROM pg_database WHERE datname = $1', [scratch])).rows).toEqual([]);

      // The drop refuses it too, when asked directly (an input made by hand, a drill that lost a race).
      const activities = createActivities({ pools, s3 });
      await expect(activities.dropDrillDatabase({ drillId, drill: onServer, server, live: live.url })).rejects.toThrow(
        /Refusing to drop database .*, not the drill database of drill/,
      );
      expect((await pools.get(onServer).query('SELECT id FROM keep_me')).rows).toEqual([{ id: 42 }]);

      // Marked as this drill's, the same database is dropped.
      const marker = { tool: 'tenant-restore', kind: 'drill-database', drillId, state: 'ready', createdAt: '' };
      await pools.get(server).query(`COMMENT ON DATABASE "${name}" IS '${JSON.stringify(marker)}'`);
      expect(await activities.dropDrillDatabase({ drillId, drill: onServer, server, live: live.url })).toEqual({
        dropped: true,
      });
      expect(await comment()).toEqual([]);
    } finally {
      await pools.close(onServer);
      await scratchAdminQuery(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
    }
  });

  it('drill schedule creates a Temporal Schedule whose runs are drills', async () => {
    const id = uniqueName('sched').replace(/_/g, '-');
    const input = drillInputFromFlags({
      'backup-prefix': `s3://${env.STACK_S3_BUCKET}/${prefix}`,
      live: live.url,
      'tenant-root': 'app.tenants',
      sample: '2',
    });
    const created = await scheduleDrill(temporal.client, input, { id, cron: '0 3 * * 1', taskQueue });
    const handle = temporal.client.schedule.getHandle(created.scheduleId);
    try {
      const description = await handle.describe();
      expect(description.action.workflowType).toBe('restoreDrill');
      expect(description.action.taskQueue).toBe(taskQueue);
      expect(description.action.args).toEqual([input]);
      const next = description.info.nextActionTimes[0];
      expect([next.getUTCDay(), next.getUTCHours(), next.getUTCMinutes()]).toEqual([1, 3, 0]);

      // Trigger it now: the run it starts is a real drill that passes.
      await handle.trigger();
      let runId: string | undefined;
      let workflowId: string | undefined;
      while (!workflowId) {
        const recent = (await handle.describe()).info.recentActions;
        if (recent.length > 0) {
          workflowId = recent[0].action.workflow.workflowId;
          runId = recent[0].action.workflow.firstExecutionRunId;
        } else {
          await new Promise((r) => setTimeout(r, 200));
        }
      }
      const record = (await temporal.client.workflow.getHandle(workflowId, runId).result()) as DrillRecord;
      expect(record.status).toBe('passed');
      expect(record.restored).toBe(2);
      expect(record.backup).toBe(newest);
    } finally {
      await handle.delete();
    }
  });
});
