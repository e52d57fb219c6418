/**
 * The foundation: the three real services of the dev stack answer, and the tools the restore relies on work
 * against them (a workflow and an activity on the dev server, an object through MinIO, pg_dump/pg_restore).
 */
import { DeleteObjectCommand, GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createActivities } from '../../activities';
import { Pools } from '../../activities/db';
import { createS3Client } from '../../activities/s3';
import { stackCheck } from '../../workflows/stack-check';
import { temporalClient, uniqueName, useFreshDatabases, useStackEnv, startWorker } from '../helpers/stack';

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
});
