/**
 * The foundation: the real services of the dev stack answer, and the tools the restore relies on work against them
 * (a workflow and an activity on the dev server, an object through MinIO, pg_dump/pg_restore, WAL archived by
 * pgBackRest into minio-wal).
 */
import { DeleteObjectCommand, GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createActivities } from '../../activities';
import { Pools } from '../../activities/db';
import { createS3Client } from '../../activities/s3';
import { pgbackrest, type PgbackrestInfo } from '../../scripts/stack';
import { stackCheck } from '../../workflows/stack-check';
import {
  adminQuery,
  temporalClient,
  uniqueName,
  useFreshDatabases,
  useStackEnv,
  startWorker,
  withClient,
} from '../helpers/stack';

const env = useStackEnv();
const { fresh } = useFreshDatabases();

describe('dev stack', () => {
  const pools = new Pools();
  const s3 = createS3Client();
  afterAll(async () => {
    await pools.closeAll();
    s3.destroy();
  });

  it('runs a workflow and its activity on the real Temporal dev server against the real PostgreSQL', async () => {
    const db = await fresh('stack_check');
    const taskQueue = uniqueName('tq_stack');
    const worker = await startWorker({ taskQueue, activities: createActivities({ pools, s3 }) });
    const { client, close } = await temporalClient();
    try {
      const result = await client.workflow.execute(stackCheck, {
        taskQueue,
        workflowId: uniqueName('stack-check'),
        args: [db.url],
      });
      expect(result.database).toBe(db.name);
      expect(result.serverVersion).toMatch(/^15\./);
      // The URL in the workflow input carries no password: the worker found it in PGPASSFILE.
      expect(db.url).not.toContain(new URL(env.STACK_PG_URL).password);
    } finally {
      await close();
      await worker.stop();
    }
  });

  it('round-trips an object through MinIO with @aws-sdk/client-s3', async () => {
    const key = `test/${uniqueName('object')}.bin`;
    const body = randomBytes(256 * 1024);
    await s3.send(new PutObjectCommand({ Bucket: env.STACK_S3_BUCKET, Key: key, Body: body }));
    const got = await s3.send(new GetObjectCommand({ Bucket: env.STACK_S3_BUCKET, Key: key }));
    const bytes = Buffer.from(await got.Body!.transformToByteArray());
    expect(createHash('sha256').update(bytes).digest('hex')).toBe(createHash('sha256').update(body).digest('hex'));
    await s3.send(new DeleteObjectCommand({ Bucket: env.STACK_S3_BUCKET, Key: key }));
  });

  describe('pg_dump -Fc and pg_restore between two databases', () => {
    let source: { name: string; url: string };
    let target: { name: string; url: string };
    beforeAll(async () => {
      source = await fresh('dump_src');
      target = await fresh('dump_dst');
      const client = new pg.Client({ connectionString: source.url });
      await client.connect();
      await client.query(`CREATE TABLE t (id bigint PRIMARY KEY, body text NOT NULL);
        INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 5000) g;`);
      await client.end();
    });

    it('restores the same rows', async () => {
      const archive = execFileSync('pg_dump', ['-Fc', '-d', source.url], { env: process.env, maxBuffer: 64 << 20 });
      expect(archive.subarray(0, 5).toString()).toBe('PGDMP');
      execFileSync('pg_restore', ['--no-owner', '-d', target.url], { input: archive, env: process.env });
      const checksum = async (url: string) => {
        const client = new pg.Client({ connectionString: url });
        await client.connect();
        const { rows } = await client.query(
          `SELECT count(*)::int AS n, md5(string_agg(id || ':' || body, ',' ORDER BY id)) AS sum FROM t`,
        );
        await client.end();
        return rows[0] as { n: number; sum: string };
      };
      const [before, after] = await Promise.all([checksum(source.url), checksum(target.url)]);
      expect(after.n).toBe(5000);
      expect(after).toEqual(before);
    });
  });

  it('archives WAL with pgBackRest into minio-wal, and the repository holds a backup', async () => {
    const stanza = env.STACK_PGBACKREST_STANZA;
    const archiver = async () =>
      (await adminQuery('SELECT last_archived_wal, failed_count::int AS failed FROM pg_stat_archiver')).rows[0] as {
        last_archived_wal: string | null;
        failed: number;
      };
    const before = await archiver();
    const db = await fresh('wal_probe');
    await withClient(db.url, (client) =>
      client.query('CREATE TABLE probe AS SELECT g FROM generate_series(1, 1000) g'),
    );
    // The segment holding that write, closed now: pg_walfile_name of the switch's end names the finished segment.
    const { rows } = await adminQuery('SELECT pg_walfile_name(pg_switch_wal()) AS segment');
    const segment = rows[0].segment as string;
    const segmentName = /^[0-9A-F]{24}$/;
    let now = before;
    const deadline = Date.now() + 60_000;
    while (!(now.last_archived_wal && segmentName.test(now.last_archived_wal) && now.last_archived_wal >= segment)) {
      if (Date.now() > deadline)
        throw new Error(`segment ${segment} not archived within 60 s: pg_stat_archiver says ${JSON.stringify(now)}`);
      await new Promise((r) => setTimeout(r, 500));
      now = await archiver();
    }
    expect(now.failed).toBe(before.failed);

    const info = pgbackrest([`--stanza=${stanza}`, 'info', '--output=json']);
    expect(info.status, info.output).toBe(0);
    const entry = (JSON.parse(info.stdout) as PgbackrestInfo[]).find((s) => s.name === stanza);
    expect(entry?.status.code, JSON.stringify(entry?.status)).toBe(0);
    expect(entry!.backup.length).toBeGreaterThanOrEqual(1);
    expect(entry!.archive.length).toBeGreaterThanOrEqual(1);
    const archive = entry!.archive[entry!.archive.length - 1];
    expect(archive.min).toMatch(segmentName);
    expect(archive.max! >= segment, `archive max ${archive.max} reaches ${segment}`).toBe(true);
  });
});
