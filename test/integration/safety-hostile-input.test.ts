/**
 * Hardening, items 1-2: a worker trusts nothing it did not check. Workflows started with @temporalio/client, not the
 * command line (anyone with access to the namespace can), with inputs the command line would never make: a restore id
 * holding `$(touch …)`, one holding `../..`, a recovery target holding a quote and a newline. The real worker (the
 * built product, as operators run it) refuses each at the workflow's first step, naming the field: no activity is
 * scheduled, no command runs, no directory outside the scratch area is touched.
 */
import { WorkflowFailedError, type Client } from '@temporalio/client';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BulkRestoreInput, DiscoverInput, RestoreUnitInput } from '../../workflows/definitions';
import type { RestoreDrillInput } from '../../workflows/restore-drill';
import { historyEvents } from '../helpers/history';
import { productEnv, projectRoot, startWorkerProcess, type WorkerProcess } from '../helpers/product';
import { temporalClient, uniqueName, useStackEnv } from '../helpers/stack';

const env = useStackEnv();
const run = uniqueName('hostile');
const taskQueue = `hostile-${run}`;
/** The worker's scratch area, two levels below a decoy directory that `../../decoy` would name. */
const sandbox = join(tmpdir(), run);
const scratchDir = join(sandbox, 'a', 'scratch');
const hostId = 'host-1';
const decoy = join(sandbox, 'a', 'decoy');
const pwned = 'PWNED-restoreId';

let client: Client;
let close: () => Promise<void>;
let worker: WorkerProcess;

beforeAll(async () => {
  mkdirSync(decoy, { recursive: true });
  writeFileSync(join(decoy, 'keep.txt'), 'still here');
  ({ client, close } = await temporalClient());
  worker = await startWorkerProcess({
    taskQueue,
    name: run,
    env: productEnv({ TENANT_RESTORE_HOST_ID: hostId, TENANT_RESTORE_SCRATCH_DIR: scratchDir }),
  });
}, 120_000);

afterAll(async () => {
  await worker?.stop();
  await close?.();
});

/** A moment inside any archive's range would do: the input is refused before the archive is asked. */
const validTime = '2026-12-01T10:00:00Z';

function bulkInput(overrides: Partial<BulkRestoreInput>): BulkRestoreInput {
  return {
    restoreId: uniqueName('ok').replace(/_/g, '-'),
    source: { kind: 'point-in-time', stanza: env.STACK_PGBACKREST_STANZA, target: { type: 'time', time: validTime } },
    live: 'postgres://postgres@127.0.0.1:54329/postgres',
    tenantRoot: 'app.tenants',
    tenants: ['1'],
    conflict: 'skip',
    concurrency: 1,
    groupSize: 1,
    artifacts: { bucket: env.STACK_S3_BUCKET, prefix: `test-hostile/${run}/` },
    ...overrides,
  };
}

/** Starts `type` with `input` under a fresh workflow id; returns the failure and the history's event types. */
async function refusal(
  type: string,
  input: unknown,
): Promise<{ message: string; failureType?: string; events: string[] }> {
  const workflowId = `hostile/${uniqueName(type)}`;
  const handle = await client.workflow.start(type, { taskQueue, workflowId, args: [input] });
  const error = await handle.result().then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error, `${type} completed with a hostile input`).toBeInstanceOf(WorkflowFailedError);
  const cause = (error as WorkflowFailedError).cause as { message: string; type?: string } | undefined;
  const events = historyEvents(await handle.fetchHistory()).map((e) => e.type);
  // The history was read (an empty one would make "no activity scheduled" say nothing): it ends in the failure.
  expect(events.at(-1)).toBe('workflowExecutionFailed');
  return { message: cause?.message ?? '', failureType: cause?.type, events };
}

/** Every file and directory under `dir`, for "nothing was created or removed". */
function tree(dir: string): string[] {
  return existsSync(dir) ? readdirSync(dir, { recursive: true, encoding: 'utf8' }).sort() : [];
}

describe('a workflow input from a client, not the command line, is checked by the worker (hardening 1-2)', () => {
  it('refuses a restore id holding $(touch …): no activity scheduled, no command run', async () => {
    const before = tree(sandbox);
    const { message, failureType, events } = await refusal(
      'bulkRestore',
      bulkInput({ restoreId: `pitr-$(touch\${IFS}${pwned})` }),
    );
    expect(failureType).toBe('InvalidInput');
    expect(message).toMatch(/^bulkRestore refused its input before doing anything: restoreId: a restore id:/);
    expect(events).not.toContain('activityTaskScheduled');
    expect(events).not.toContain('startChildWorkflowExecutionInitiated');
    for (const dir of [projectRoot, sandbox, scratchDir, tmpdir()]) expect(existsSync(join(dir, pwned))).toBe(false);
    expect(tree(sandbox)).toEqual(before);
  });

  it('refuses a restore id of ../../decoy: the directory above the scratch area is untouched', async () => {
    const { message, events } = await refusal('bulkRestore', bulkInput({ restoreId: '../../decoy' }));
    expect(message).toMatch(/restoreId: a restore id: letters, digits/);
    expect(events).not.toContain('activityTaskScheduled');
    expect(readFileSync(join(decoy, 'keep.txt'), 'utf8')).toBe('still here');
    expect(existsSync(scratchDir)).toBe(false);
  });

  it('refuses a recovery target holding a quote and a newline, and one that is no time at all, naming the field', async () => {
    const injected = `${validTime}'\nrecovery_end_command = 'touch /tmp/${run}-PWNED-target'\n#`;
    const quoted = await refusal(
      'bulkRestore',
      bulkInput({
        source: {
          kind: 'point-in-time',
          stanza: env.STACK_PGBACKREST_STANZA,
          target: { type: 'time', time: injected },
        },
      }),
    );
    expect(quoted.message).toMatch(/source\.target\.time: an RFC 3339 time/);
    expect(quoted.events).not.toContain('activityTaskScheduled');
    expect(existsSync(`/tmp/${run}-PWNED-target`)).toBe(false);
    // The NaN case: a text that is no time passed the range check before (every comparison with NaN is false).
    const nan = await refusal(
      'bulkRestore',
      bulkInput({
        source: { kind: 'point-in-time', stanza: env.STACK_PGBACKREST_STANZA, target: { type: 'time', time: 'soon' } },
      }),
    );
    expect(nan.message).toMatch(/source\.target\.time/);
    // A stanza and a database are argv only, but still checked.
    const stanza = await refusal(
      'bulkRestore',
      bulkInput({
        source: {
          kind: 'point-in-time',
          stanza: '--repo1-path=/',
          database: 'a b',
          target: { type: 'lsn', lsn: '0/3a000060' },
        },
      }),
    );
    expect(stanza.message).toMatch(/source\.stanza: a pgBackRest stanza/);
    expect(stanza.message).toMatch(/source\.database: a database name/);
    expect(stanza.message).toMatch(/source\.target\.lsn: a WAL position in upper case/);
  });

  it("refuses an incident window's hostile fields (issue 26): T1's target, the conflicts policy, a when's input", async () => {
    const injected = `${validTime}'\nrecovery_end_command = 'touch /tmp/${run}-PWNED-until'\n#`;
    const window = await refusal(
      'bulkRestore',
      bulkInput({
        source: {
          kind: 'point-in-time',
          stanza: env.STACK_PGBACKREST_STANZA,
          target: { type: 'time', time: validTime },
          until: { type: 'time', time: injected },
        },
        windowConflicts: 'overwrite-them' as never,
      }),
    );
    expect(window.message).toMatch(/source\.until\.time: an RFC 3339 time/);
    expect(window.message).toMatch(/windowConflicts:/);
    expect(window.events).not.toContain('activityTaskScheduled');
    expect(existsSync(`/tmp/${run}-PWNED-until`)).toBe(false);
    const when = await refusal('whenDeleted', {
      whenId: '../../decoy',
      stanza: env.STACK_PGBACKREST_STANZA,
      live: 'live',
      tenantRoot: 'app.tenants',
      tenants: ['1'],
      since: { type: 'time', time: injected },
    });
    expect(when.message).toMatch(/^whenDeleted refused its input before doing anything: /);
    expect(when.message).toMatch(/whenId: a when id/);
    expect(when.message).toMatch(/since\.time: an RFC 3339 time/);
    expect(when.events).not.toContain('activityTaskScheduled');
  });

  it('refuses every other field a restore would turn into SQL, a path or a connection, all at once', async () => {
    const { message, events } = await refusal(
      'bulkRestore',
      bulkInput({
        live: 'postgres://postgres:secret@db/live',
        tenantRoot: 'tenants',
        tenants: ['1', "1'; DROP TABLE app.tenants; --"],
        artifacts: { bucket: env.STACK_S3_BUCKET, prefix: '../other-restore/' },
        concurrency: 0,
      }),
    );
    expect(message).toContain('live: a database reference that carries a password');
    expect(message).not.toContain('secret');
    expect(message).toContain('tenantRoot: schema.table');
    expect(message).toContain('tenants.1: a tenant id');
    expect(message).toContain("artifacts.prefix: the prefix has a '.' or '..' segment");
    expect(message).toContain('concurrency:');
    expect(events).not.toContain('activityTaskScheduled');
  });

  it('checks discover, a restore unit started on its own, a drill and the previous release the same way', async () => {
    const discover: DiscoverInput = {
      discoverId: '../../decoy',
      source: { kind: 'scratch', scratch: 'postgres://postgres@127.0.0.1:54329/postgres' },
      live: 'live',
      tenantRoot: 'app.tenants',
      artifacts: { bucket: env.STACK_S3_BUCKET, prefix: 'x/' },
    };
    const d = await refusal('discover', discover);
    expect(d.message).toMatch(/^discover refused its input before doing anything: discoverId:/);
    expect(d.events).not.toContain('activityTaskScheduled');

    const unit: RestoreUnitInput = {
      restoreId: 'ok-unit',
      scratch: 'scratch',
      live: 'live',
      plan: { bucket: env.STACK_S3_BUCKET, key: 'p.json', digest: 'abcdef0123456789', tables: 1 },
      conflict: 'overwrite',
      actions: [],
      artifacts: { bucket: env.STACK_S3_BUCKET, prefix: 'x/' },
      tenantIds: ['$(reboot)'],
      approvedTenants: [],
    };
    const u = await refusal('restoreUnit', unit);
    expect(u.message).toMatch(/^restoreUnit refused its input before doing anything: tenantIds\.0: a tenant id/);
    expect(u.events).not.toContain('activityTaskScheduled');

    const drill: RestoreDrillInput = {
      backupPrefix: `s3://${env.STACK_S3_BUCKET}/backups/`,
      live: 'live',
      tenantRoot: 'app.tenants',
      sample: 1,
      drillId: '../x',
    };
    const r = await refusal('restoreDrill', drill);
    expect(r.message).toMatch(/^restoreDrill refused its input before doing anything: drillId: a drill id/);
    expect(r.events).not.toContain('activityTaskScheduled');
  });

  it('leaves the sandbox as it was: the decoy is intact and no scratch area was even created', () => {
    expect(readFileSync(join(decoy, 'keep.txt'), 'utf8')).toBe('still here');
    expect(existsSync(scratchDir)).toBe(false);
    expect(worker.log()).not.toMatch(/preparePointInTimeScratch|pgbackrest restore/);
  });
});
