/**
 * `--backup-prefix s3://bucket/prefix/ [--at <time>]` (issue 16, item 3): the newest pg_dump archive under a prefix,
 * or the newest taken before the moment of the incident, by its manifest's createdAt (else its upload time), through
 * the real CLI against the stack's MinIO. The archives here are stand-ins (a few bytes each): what is under test is
 * the choice, which start prints before it goes on; live is unreachable on purpose, so nothing starts (exit 3).
 */
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { beforeAll, describe, expect, it } from 'vitest';
import { pickBackup } from '../../activities/backups';
import { createS3Client } from '../../activities/s3';
import { runCli } from '../helpers/product';
import { uniqueName, useStackEnv } from '../helpers/stack';

const env = useStackEnv();
const prefix = `test/${uniqueName('pick')}/`;
const url = `s3://${env.STACK_S3_BUCKET}/${prefix}`;
const hours = (n: number) => new Date(Date.now() - n * 3_600_000);
const minutes = (n: number) => new Date(Date.now() - n * 60_000);

// nightly-1..3 were taken 3, 2 and 1 hours ago; `late` began 10 minutes ago and was uploaded just now (after a moment
// 5 minutes ago, but taken before it); `bare` has no manifest, so its upload time (now) is when it was taken.
const archives: Array<{ name: string; createdAt?: Date }> = [
  { name: 'nightly-1.dump', createdAt: hours(3) },
  { name: 'nightly-2.dump', createdAt: hours(2) },
  { name: 'nightly-3.dump', createdAt: hours(1) },
  { name: 'late.dump', createdAt: minutes(10) },
  { name: 'bare.dump' },
];

const startWith = (extra: string[]) =>
  runCli([
    'start',
    ...extra,
    '--live',
    'postgres://nobody@127.0.0.1:1/live',
    '--tenant-root',
    'app.tenants',
    '--tenants',
    '1',
    '--artifacts',
    `s3://${env.STACK_S3_BUCKET}/test-pick/`,
  ]);

describe('--backup-prefix and --at pick the archive to restore from', () => {
  beforeAll(async () => {
    const s3 = createS3Client();
    try {
      for (const a of archives) {
        await s3.send(new PutObjectCommand({ Bucket: env.STACK_S3_BUCKET, Key: `${prefix}${a.name}`, Body: 'PGDMP' }));
        if (a.createdAt)
          await s3.send(
            new PutObjectCommand({
              Bucket: env.STACK_S3_BUCKET,
              Key: `${prefix}${a.name}.manifest.json`,
              Body: JSON.stringify({ sha256: '0'.repeat(64), size: 5, createdAt: a.createdAt.toISOString() }),
            }),
          );
      }
    } finally {
      s3.destroy();
    }
  });

  it('the newest taken before --at, by its manifest; one that began before the moment counts even if uploaded after', async () => {
    const s3 = createS3Client();
    try {
      expect((await pickBackup(s3, url, minutes(90))).backup).toBe(`${url}nightly-2.dump`);
      const late = await pickBackup(s3, url, minutes(5));
      expect(late).toMatchObject({ backup: `${url}late.dump`, takenBy: 'manifest' });
      // Without a moment: the newest upload, taken when it was uploaded (no manifest).
      expect(await pickBackup(s3, url)).toMatchObject({ backup: `${url}bare.dump`, takenBy: 'upload time' });
    } finally {
      s3.destroy();
    }
  });

  it('start says which archive it picked and how old it is, before anything else', async () => {
    const at = minutes(90).toISOString();
    const run = await startWith(['--backup-prefix', url, '--at', at]);
    expect(run.stderr).toMatch(
      new RegExp(`using backup ${url}nightly-2\\.dump, taken \\S+ \\(by its manifest\\), 30 min before --at ${at}`),
    );
    expect(run.code, run.stderr).toBe(3); // live is unreachable: nothing started
  });

  it('refuses, exit 2 and with the range there is, a moment before every archive; and a bad or future --at', async () => {
    const before = await startWith(['--backup-prefix', url, '--at', hours(5).toISOString()]);
    expect(before.code, before.stderr).toBe(2);
    expect(before.stderr).toContain(`the oldest of its 5 is ${url}nightly-1.dump`);
    const future = await startWith(['--backup-prefix', url, '--at', new Date(Date.now() + 3_600_000).toISOString()]);
    expect(future.code).toBe(2);
    expect(future.stderr).toContain('is in the future');
    const noZone = await startWith(['--backup-prefix', url, '--at', '2026-12-02 07:03']);
    expect(noZone.code).toBe(2);
    expect(noZone.stderr).toContain('is not an RFC 3339 time with its zone');
    const alone = await startWith(['--backup', `${url}nightly-1.dump`, '--at', hours(1).toISOString()]);
    expect(alone.code).toBe(2);
    expect(alone.stderr).toContain(
      '--at needs a source to go back in: --backup pgbackrest:<stanza> (point-in-time recovery from the WAL archive), or --backup-prefix',
    );
    const empty = await startWith(['--backup-prefix', `s3://${env.STACK_S3_BUCKET}/${prefix}nothing-here/`]);
    expect(empty.code).toBe(2);
    expect(empty.stderr).toContain('No backup under');
  });
});
