/**
 * The CLI contract on bad input, through the real `bin/tenant-restore`: exit 2 with a message that says what to fix,
 * and nothing written (no workflow, no S3 object); exit 3 when Temporal cannot be reached; help documents the codes.
 */
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import { WorkflowNotFoundError } from '@temporalio/client';
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createS3Client } from '../../activities/s3';
import { bulkWorkflowId } from '../../workflows/definitions';
import { serverUrl, temporalClient, uniqueName, useStackEnv } from '../helpers/stack';
import { productEnv, runCli } from '../helpers/product';

const env = useStackEnv();
const password = new URL(env.STACK_PG_URL).password;

describe('tenant-restore start: input checked before anything is written', () => {
  const s3 = createS3Client();
  afterAll(() => s3.destroy());
  const artifacts = `s3://${env.STACK_S3_BUCKET}/test-cli/`;
  const good = (id: string) => [
    'start',
    '--backup',
    `s3://${env.STACK_S3_BUCKET}/test-cli/absent.dump`,
    '--live',
    serverUrl('postgres'),
    '--tenant-root',
    'app.tenants',
    '--id',
    id,
    '--artifacts',
    artifacts,
  ];

  async function nothingWritten(id: string): Promise<void> {
    const { client, close } = await temporalClient();
    try {
      await expect(client.workflow.getHandle(bulkWorkflowId(id)).describe()).rejects.toBeInstanceOf(
        WorkflowNotFoundError,
      );
    } finally {
      await close();
    }
    const listed = await s3.send(new ListObjectsV2Command({ Bucket: env.STACK_S3_BUCKET, Prefix: `test-cli/${id}/` }));
    expect(listed.KeyCount ?? 0).toBe(0);
  }

  it.each([
    [
      'a password in --live',
      (id: string) => [...good(id).map((a) => (a === serverUrl('postgres') ? env.STACK_PG_URL : a)), '--tenants', '1'],
      /carries a password.*PGPASSFILE/s,
    ],
    ['duplicate tenant ids', (id: string) => [...good(id), '--tenants', '1,2,1'], /tenant 1 is already listed/],
    ['an empty tenant id', (id: string) => [...good(id), '--tenants', '1,,2'], /entry 2 is empty/],
    [
      'a bad conflict policy',
      (id: string) => [...good(id), '--tenants', '1', '--conflict', 'merge'],
      /skip, overwrite, fail/,
    ],
    [
      'a bad URL',
      (id: string) => [...good(id).map((a) => (a === serverUrl('postgres') ? 'mysql://x/y' : a)), '--tenants', '1'],
      /neither a postgres/,
    ],
    ['a backup that does not exist', (id: string) => [...good(id), '--tenants', '1'], /does not exist/],
    ['an unknown flag', (id: string) => [...good(id), '--tenants', '1', '--bogus'], /Unknown option/],
    [
      '--group-size and --unit-rows together',
      (id: string) => [...good(id), '--tenants', '1', '--group-size', '5', '--unit-rows', '1000'],
      /--group-size and --unit-rows both size the units/,
    ],
    [
      'a --unit-rows that is not a count',
      (id: string) => [...good(id), '--tenants', '1', '--unit-rows', '0'],
      /--unit-rows.*an integer from 1 to 100000000/,
    ],
  ])('refuses %s with exit 2', async (_name, args, message) => {
    const id = uniqueName('cli').replace(/_/g, '-');
    const run = await runCli(args(id));
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(message);
    expect(run.stderr + run.stdout).not.toContain(password);
    await nothingWritten(id);
  });

  it('refuses junk lines in a tenants file, naming the line', async () => {
    const id = uniqueName('cli').replace(/_/g, '-');
    const file = join(tmpdir(), `${id}.tenants`);
    writeFileSync(file, '# victims\n1\n2\nDROP TABLE app.tenants;\n');
    const run = await runCli([...good(id), '--tenants-file', file]);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/line 4/);
    await nothingWritten(id);
  });

  it('exits 3 when Temporal cannot be reached', async () => {
    const run = await runCli(['status', 'whatever'], productEnv({ TEMPORAL_ADDRESS: '127.0.0.1:1' }));
    expect(run.code).toBe(3);
    expect(run.stderr).toMatch(/not reachable/);
  });

  it('exits 2 for an unknown restore, and documents exit codes in --help', async () => {
    expect((await runCli(['status', uniqueName('nope')])).code).toBe(2);
    const help = await runCli(['start', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/exit codes: 0 [\s\S]* 1 [\s\S]* 2 [\s\S]* 3 service unreachable/);
  });
});
