/**
 * Issue 14's failures, each through the real `bin/tenant-restore` as an operator meets it:
 * - Temporal down: every command that needs it exits 3 and names the address it tried and the variable to set;
 * - no worker polling the restore's task queue: `start` says so, `start --wait` warns while it waits, `status` answers
 *   from the search attributes instead of hanging on a query;
 * - bad settings and input exit 2 with what to fix: a cron, an unknown alias, a missing tenants file, a webhook URL,
 *   LOG_LEVEL, missing AWS credentials, a TLS file that is not there, a Temporal profile that is not in its file;
 * - `drill schedule` with a bad definition leaves the existing schedule as it was;
 * - `approve` of a tenant the restore does not hold is refused, nothing sent.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bulkWorkflowId } from '../../workflows/definitions';
import { bin, productEnv, projectRoot, runCli } from '../helpers/product';
import { serverUrl, temporalClient, uniqueName, useStackEnv } from '../helpers/stack';

const env = useStackEnv();
const down = productEnv({ TEMPORAL_ADDRESS: '127.0.0.1:1' });
const artifacts = `s3://${env.STACK_S3_BUCKET}/test-operator/`;

/** A restore of `--scratch` (no S3 archive needed) into the stack's server, on `taskQueue`. */
const startArgs = (id: string, taskQueue: string, tenants = '1,2,3') => [
  'start',
  '--scratch',
  serverUrl('postgres'),
  '--live',
  serverUrl('postgres'),
  '--tenant-root',
  'app.tenants',
  '--tenants',
  tenants,
  '--id',
  id,
  '--artifacts',
  artifacts,
  '--task-queue',
  taskQueue,
];

const started: string[] = [];
afterAll(async () => {
  const { client, close } = await temporalClient();
  try {
    for (const id of started)
      await client.workflow
        .getHandle(bulkWorkflowId(id))
        .terminate('test cleanup')
        .catch(() => undefined);
    await client.schedule
      .getHandle('drill/operator-test')
      .delete()
      .catch(() => undefined);
  } finally {
    await close();
  }
});

describe('Temporal down: exit 3, the address tried and the variable to set', () => {
  const cases: Array<[string, string[]]> = [
    ['status', ['status', 'some-restore']],
    ['pause', ['pause', 'some-restore']],
    ['report', ['report', 'some-restore']],
    ['start', startArgs('never-started', 'nowhere')],
    [
      'drill run',
      [
        'drill',
        'run',
        '--backup-prefix',
        `s3://${env.STACK_S3_BUCKET}/x/`,
        '--live',
        serverUrl('postgres'),
        '--tenant-root',
        'app.tenants',
        '--sample',
        '1',
      ],
    ],
    ['worker', ['worker', '--task-queue', 'nowhere']],
  ];
  it.each(cases)('%s', async (_name, args) => {
    const run = await runCli(args, down);
    expect(run.code, run.stderr).toBe(3);
    expect(run.stderr).toContain('Temporal is not reachable at 127.0.0.1:1 (TEMPORAL_ADDRESS)');
    expect(run.stderr).toMatch(/set TEMPORAL_ADDRESS/);
  });
});

describe('bad settings and input: exit 2, saying what to fix', () => {
  it('LOG_LEVEL that is not a level (worker)', async () => {
    const run = await runCli(['worker', '--task-queue', uniqueName('q')], productEnv({ LOG_LEVEL: 'verbose' }));
    expect(run.code, run.stderr).toBe(2);
    expect(run.stderr).toMatch(/LOG_LEVEL=verbose is not a log level: use one of fatal, error, warn, info/);
  });

  it('a TLS file that is not there, or half of a pair', async () => {
    const missing = await runCli(
      ['status', 'x'],
      productEnv({ TEMPORAL_TLS_CERT: '/nonexistent/client.pem', TEMPORAL_TLS_KEY: '/nonexistent/client.key' }),
    );
    expect(missing.code, missing.stderr).toBe(2);
    expect(missing.stderr).toContain('TEMPORAL_TLS_CERT=/nonexistent/client.pem cannot be read (ENOENT)');
    const half = await runCli(['status', 'x'], productEnv({ TEMPORAL_TLS_CERT: '/nonexistent/client.pem' }));
    expect(half.code, half.stderr).toBe(2);
    expect(half.stderr).toMatch(/TEMPORAL_TLS_CERT is set without TEMPORAL_TLS_KEY/);
  });

  it('a Temporal CLI profile (TEMPORAL_CONFIG_FILE, TEMPORAL_PROFILE) is used, and named when it is wrong', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'tr-profile-')), 'temporal.toml');
    writeFileSync(
      file,
      `[profile.stack]\naddress = "${env.TEMPORAL_ADDRESS}"\nnamespace = "${env.TEMPORAL_NAMESPACE}"\n\n[profile.broken]\naddress = "127.0.0.1:1"\n`,
    );
    const withProfile = (profile: string) => {
      const e = productEnv({ TEMPORAL_CONFIG_FILE: file, TEMPORAL_PROFILE: profile });
      delete e.TEMPORAL_ADDRESS;
      delete e.TEMPORAL_NAMESPACE;
      return e;
    };
    const ok = await runCli(['list', '--limit', '1', '--json'], withProfile('stack'));
    expect(ok.code, ok.stderr).toBe(0);
    const broken = await runCli(['status', 'x'], withProfile('broken'));
    expect(broken.code, broken.stderr).toBe(3);
    expect(broken.stderr).toContain(`Temporal is not reachable at 127.0.0.1:1 (profile 'broken' of ${file})`);
    const unknown = await runCli(['status', 'x'], withProfile('nope'));
    expect(unknown.code, unknown.stderr).toBe(2);
    expect(unknown.stderr).toContain(`the Temporal profile 'nope' of ${file} cannot be loaded`);
    const ca = await runCli(['status', 'x'], productEnv({ TEMPORAL_TLS_SERVER_CA_CERT_PATH: '/nonexistent/ca.pem' }));
    expect(ca.code, ca.stderr).toBe(2);
    expect(ca.stderr).toContain('TEMPORAL_TLS_SERVER_CA_CERT_PATH=/nonexistent/ca.pem cannot be read (ENOENT)');
  });

  it('no AWS credentials at all', async () => {
    const run = await runCli(
      [
        'start',
        '--backup',
        `s3://${env.STACK_S3_BUCKET}/test-operator/some.dump`,
        '--live',
        serverUrl('postgres'),
        '--tenant-root',
        'app.tenants',
        '--tenants',
        '1',
        '--id',
        uniqueName('nocreds').replace(/_/g, '-'),
      ],
      productEnv({
        AWS_ACCESS_KEY_ID: '',
        AWS_SECRET_ACCESS_KEY: '',
        AWS_PROFILE: '',
        AWS_SHARED_CREDENTIALS_FILE: '/nonexistent',
        AWS_CONFIG_FILE: '/nonexistent',
        AWS_EC2_METADATA_DISABLED: 'true',
      }),
    );
    expect(run.code, run.stderr).toBe(2);
    expect(run.stderr).toMatch(/no AWS credentials were found .*set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY/);
  });

  it('plan: an alias nobody defined, a tenants file that is not there', async () => {
    const alias = await runCli([
      'plan',
      '--scratch',
      'nosuchalias',
      '--live',
      serverUrl('postgres'),
      '--tenant-root',
      'app.tenants',
    ]);
    expect(alias.code, alias.stderr).toBe(2);
    expect(alias.stderr).toMatch(/TENANT_RESTORE_DB_NOSUCHALIAS/);
    const file = await runCli([
      'plan',
      '--scratch',
      serverUrl('postgres'),
      '--live',
      serverUrl('postgres'),
      '--tenant-root',
      'app.tenants',
      '--tenants-file',
      '/nonexistent/tenants.txt',
    ]);
    expect(file.code, file.stderr).toBe(2);
    expect(file.stderr).toMatch(/cannot read --tenants-file \/nonexistent\/tenants.txt/);
  });

  it('a webhook action whose URL is not http(s)', async () => {
    const config = join(tmpdir(), `${uniqueName('webhook')}.json`);
    writeFileSync(
      config,
      JSON.stringify({ actions: [{ name: 'notify', type: 'webhook', url: 'ftp://billing.internal/enable' }] }),
    );
    const run = await runCli([...startArgs(uniqueName('hook').replace(/_/g, '-'), 'nowhere'), '--config', config]);
    expect(run.code, run.stderr).toBe(2);
    expect(run.stderr).toMatch(
      /--config: .* is not a valid restore config:\n {2}- actions\[0\].url: must be an http\(s\) URL/,
    );
  });
});

describe('flags', () => {
  it('a flag given twice is refused, not silently the last one', async () => {
    const run = await runCli([...startArgs(uniqueName('twice').replace(/_/g, '-'), 'nowhere'), '--live', 'other']);
    expect(run.code, run.stderr).toBe(2);
    expect(run.stderr).toMatch(/--live is given 2 times \('postgres:.*', 'other'\): give it once/);
  });
  it('list: an unknown status or kind is bad input', async () => {
    expect((await runCli(['list', '--status', 'sleeping'])).code).toBe(2);
    expect((await runCli(['list', '--kind', 'tenant'])).code).toBe(2);
  });
});

describe('drill schedule: a refused definition leaves the existing schedule', () => {
  const drillArgs = (cron: string, id = 'operator-test', sub = 'schedule') => [
    'drill',
    sub,
    '--backup-prefix',
    `s3://${env.STACK_S3_BUCKET}/test-operator/`,
    '--live',
    serverUrl('postgres'),
    '--tenant-root',
    'app.tenants',
    '--sample',
    '1',
    '--id',
    id,
    '--cron',
    cron,
    '--task-queue',
    'nowhere',
  ];

  it('an invalid cron is refused (exit 2) before anything changes; a valid one updates in place', async () => {
    const created = await runCli([...drillArgs('0 3 * * 1'), '--json']);
    expect(created.code, created.stderr).toBe(0);
    for (const cron of ['61 3 * * 1', 'every monday', '0 3 * *']) {
      const bad = await runCli(drillArgs(cron));
      expect(bad.code, bad.stderr).toBe(2);
      expect(bad.stderr).toMatch(/--cron .*(field|expected 5 fields)/);
    }
    const { client, close } = await temporalClient();
    try {
      const spec = (await client.schedule.getHandle('drill/operator-test').describe()).spec;
      expect(JSON.stringify(spec)).toMatch(/"hour":\[\{"start":3/);
    } finally {
      await close();
    }
    const updated = await runCli([...drillArgs('30 4 * * 2'), '--json']);
    expect(updated.code, updated.stderr).toBe(0);
    expect((updated.json as { updated: boolean }).updated).toBe(true);
  });

  it('update refuses an unknown id; pause (with a note), unpause and delete act on the schedule', async () => {
    const update = await runCli(drillArgs('0 3 * * 1', 'typo-drill', 'update'));
    expect(update.code, update.stderr).toBe(2);
    expect(update.stderr).toMatch(/no drill schedule 'typo-drill'/);

    const paused = await runCli(['drill', 'pause', '--id', 'operator-test', '--note', 'maintenance window']);
    expect(paused.code, paused.stderr).toBe(0);
    const schedules = await runCli(['drill', 'schedules', '--json']);
    expect(
      (schedules.json as Array<{ scheduleId: string }>).find((d) => d.scheduleId === 'drill/operator-test'),
    ).toMatchObject({
      paused: true,
      note: 'maintenance window',
      cron: ['minute 30, hour 4, dayOfWeek TUESDAY'],
    });
    expect((await runCli(['drill', 'unpause', '--id', 'operator-test'])).code).toBe(0);
    expect((await runCli(['drill', 'delete', '--id', 'operator-test'])).code).toBe(0);
    const gone = await runCli(['drill', 'pause', '--id', 'operator-test']);
    expect(gone.code).toBe(2);
    expect(gone.stderr).toMatch(/no drill schedule 'operator-test'/);
  });
});

describe('no worker polling the task queue', () => {
  const taskQueue = uniqueName('no-worker');
  const id = uniqueName('noworker').replace(/_/g, '-');
  beforeAll(() => started.push(id));

  it('start says so; status answers from the search attributes; approve refuses a tenant outside the restore', async () => {
    const run = await runCli(startArgs(id, taskQueue));
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toContain(`no worker is polling task queue '${taskQueue}'`);
    expect(run.stderr).toContain(`tenant-restore worker --task-queue ${taskQueue}`);

    const status = await runCli(['status', id]);
    expect(status.code, status.stderr).toBe(0);
    expect(status.stdout).toContain(`no worker is polling task queue '${taskQueue}'`);
    expect(status.stdout).toMatch(/from the search attributes/);
    const json = await runCli(['status', id, '--json']);
    expect((json.json as { noWorker?: string; searchAttributes?: unknown }).searchAttributes).toBeDefined();

    const outside = await runCli(['approve', id, '--tenants', '99']);
    expect(outside.code, outside.stderr).toBe(2);
    expect(outside.stderr).toMatch(/tenant\(s\) 99 are not in restore .* \(3 tenants\): nothing was sent/);
    const inside = await runCli(['approve', id, '--tenants', '2']);
    expect(inside.code, inside.stderr).toBe(0);
    // No worker can answer an update: it goes as a signal, and the output says it was not acknowledged and why.
    expect(inside.stdout).toMatch(
      /approve: sent to restore .* for tenants 2\. \(sent as a signal: the restore does not acknowledge it\)/,
    );
    expect(inside.stdout).toContain(`Note: no worker is polling task queue '${taskQueue}'`);
    expect((await runCli(['pause', id, '--json'])).json).toMatchObject({ control: 'pause', delivery: 'signal' });

    // list and describe work without a worker too.
    const list = await runCli(['list', '--status', 'running', '--kind', 'restore', '--json']);
    expect(list.code, list.stderr).toBe(0);
    const listed = list.json as Array<{ id: string; kind: string; status: string }>;
    expect(listed.find((r) => r.id === id)).toMatchObject({ kind: 'restore', status: 'running' });
    const described = await runCli(['describe', id, '--json']);
    expect(described.code, described.stderr).toBe(0);
    expect(described.json).toMatchObject({
      restoreId: id,
      workflowStatus: 'RUNNING',
      input: { tenantRoot: 'app.tenants', tenants: 3, conflict: 'skip' },
      report: `${artifacts}${id}/report.md`,
    });
    const text = await runCli(['describe', id]);
    expect(text.stdout).toMatch(/live: .*tenant root app\.tenants, 3 tenants, conflict skip/);
    expect(text.stdout).toContain('web UI: http');
  });

  it('start --wait warns while no worker polls, and keeps waiting', async () => {
    const waitId = uniqueName('noworker-wait').replace(/_/g, '-');
    started.push(waitId);
    const child = spawn(process.execPath, [bin, ...startArgs(waitId, taskQueue), '--wait'], {
      env: productEnv(),
      cwd: projectRoot,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    const warned = new Promise<void>((resolve) =>
      child.stderr.on('data', (c: Buffer) => {
        stderr += c.toString();
        if (stderr.includes('no worker is polling')) resolve();
      }),
    );
    const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    await Promise.race([warned, exited]);
    expect(stderr).toContain(`no worker is polling task queue '${taskQueue}'`);
    expect(child.exitCode).toBeNull();
    child.kill('SIGTERM');
    await exited;
  });
});
