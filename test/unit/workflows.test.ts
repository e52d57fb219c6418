/**
 * The orchestration on its own: the real workflows (bulkRestore and its restore units) on a worker of the SDK's
 * TestWorkflowEnvironment, with in-memory activities (test/unit/workflow-activities.ts), no database and no S3.
 * Pinned here: the sliding window (concurrency bound, setConcurrency, pause, resume, cancel, the progress query),
 * continue-as-new, a group that splits into units of one when a data step fails, held actions that run in waves as
 * tenants are approved, and tenants still in live refused before anything of theirs is written.
 *
 * The server is the project's own Temporal CLI (.tools/bin/temporal, built by `npm run stack`) started by
 * TestWorkflowEnvironment.createLocal, not createTimeSkipping: the time-skipping server is a Java binary the SDK
 * downloads at run time from temporal.download, which this machine cannot reach (no network but the npm registry).
 * Nothing here waits on a workflow timer, so time skipping would not shorten it.
 */
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import type { WorkflowHandle, WorkflowHandleWithFirstExecutionRunId } from '@temporalio/client';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { bulkRestore } from '../../workflows';
import {
  approveSignal,
  bulkWorkflowId,
  cancelSignal,
  groupWorkflowId,
  pauseSignal,
  progressQuery,
  RestoreIdKey,
  RestoreKindKey,
  resumeSignal,
  setConcurrencySignal,
  TenantIdKey,
  tenantWorkflowId,
  type BulkRestoreInput,
  type RestoreProgress,
} from '../../workflows/definitions';
import { createMockActivities } from './workflow-activities';
import { createWorkflowTestEnvironment } from './workflow-env';

const taskQueue = 'workflows-unit';
/** The child workflow type of every unit, of one tenant or of several. */
const unitWorkflowType = 'restoreUnit';

const mocks = createMockActivities();
let env: TestWorkflowEnvironment;
let worker: Worker;
let running: Promise<void>;
let sequence = 0;

beforeAll(async () => {
  env = await createWorkflowTestEnvironment();
  worker = await Worker.create({
    connection: env.nativeConnection,
    taskQueue,
    // The worker bundles the workflows from source; Node's require.resolve does not resolve .ts files.
    workflowsPath: join(__dirname, '..', '..', 'workflows', 'index.ts'),
    activities: mocks.activities,
  });
  running = worker.run();
}, 180_000);

afterAll(async () => {
  mocks.releaseAll();
  if (worker?.getState() === 'RUNNING') worker.shutdown();
  await running;
  await env?.teardown();
});

function newRestoreId(name: string): string {
  sequence += 1;
  return `${name}-${sequence}-${Date.now().toString(36)}`;
}

function start(
  restoreId: string,
  tenants: string[],
  options: Partial<BulkRestoreInput> = {},
): Promise<WorkflowHandleWithFirstExecutionRunId<typeof bulkRestore>> {
  const input: BulkRestoreInput = {
    restoreId,
    source: { kind: 'scratch', scratch: 'scratch_unit' },
    live: 'live',
    tenantRoot: 'app.tenants',
    tenants,
    conflict: 'fail',
    concurrency: 2,
    artifacts: { bucket: 'unit', prefix: `restores/${restoreId}/` },
    ...options,
  };
  return env.client.workflow.start<typeof bulkRestore>('bulkRestore', {
    taskQueue,
    workflowId: bulkWorkflowId(restoreId),
    args: [input],
  });
}

/** Polls until `ok` holds: signals and child outcomes reach the parent asynchronously. */
async function waitFor<T>(
  what: string,
  probe: () => T | Promise<T>,
  ok: (value: T) => boolean,
  timeoutMs = 20_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: T;
  for (;;) {
    last = await probe();
    if (ok(last)) return last;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; last: ${JSON.stringify(last)}`);
    await sleep(50);
  }
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
/** Long enough for a wrongly started unit to reach its copy (a few activity round trips on a local server). */
const settle = () => sleep(750);

const progressOf = (handle: WorkflowHandle<typeof bulkRestore>) => () => handle.query(progressQuery);
const heldTenants = (restoreId: string) =>
  mocks
    .record(restoreId)
    .held.flatMap((h) => h.tenantIds)
    .sort();

describe('the sliding window', () => {
  it('bounds the units copying at once by the concurrency, which setConcurrency raises; pause holds new starts, resume and cancel', async () => {
    const restoreId = newRestoreId('window');
    const tenants = ['t0', 't1', 't2', 't3', 't4', 't5'];
    mocks.scenario(restoreId, { holdCopies: true });
    const record = mocks.record(restoreId);
    const handle = await start(restoreId, tenants, { concurrency: 2, groupSize: 1 });
    const progress = progressOf(handle);
    const counts = (p: RestoreProgress) => p.counts;

    await waitFor(
      'two copies',
      () => heldTenants(restoreId),
      (held) => held.length === 2,
    );
    await settle();
    expect(heldTenants(restoreId)).toEqual(['t0', 't1']);
    expect(record.maxCopying).toBe(2);
    let p = await waitFor('progress: 2 copying, 4 pending', progress, (q) => counts(q).copy === 2);
    expect(p).toMatchObject({ total: 6, started: 2, concurrency: 2, paused: false, phase: 'restoring' });
    expect(counts(p)).toMatchObject({ pending: 4, copy: 2, restored: 0, failed: 0, cancelled: 0 });

    // A finished unit frees its slot for the next tenant, never for two.
    expect(mocks.release(restoreId, 't0')).toBe(true);
    await waitFor(
      't2 copying',
      () => heldTenants(restoreId),
      (held) => held.includes('t2'),
    );
    await settle();
    expect(heldTenants(restoreId)).toEqual(['t1', 't2']);
    expect(record.maxCopying).toBe(2);
    p = await waitFor('progress: t0 restored', progress, (q) => counts(q).restored === 1 && counts(q).copy === 2);
    expect(counts(p)).toMatchObject({ pending: 3, restored: 1 });

    await handle.signal(setConcurrencySignal, 3);
    await waitFor(
      'three copies',
      () => heldTenants(restoreId),
      (held) => held.length === 3,
    );
    await settle();
    expect(heldTenants(restoreId)).toEqual(['t1', 't2', 't3']);
    expect(record.maxCopying).toBe(3);
    p = await waitFor('progress: 3 copying', progress, (q) => counts(q).copy === 3);
    expect(p.concurrency).toBe(3);
    expect(counts(p)).toMatchObject({ pending: 2, copy: 3, restored: 1 });

    // Paused: the running units finish, no new one starts.
    await handle.signal(pauseSignal);
    await waitFor('paused', progress, (q) => q.phase === 'paused' && q.paused);
    mocks.release(restoreId, 't1');
    p = await waitFor('progress: t1 restored while paused', progress, (q) => counts(q).restored === 2);
    await settle();
    expect(heldTenants(restoreId)).toEqual(['t2', 't3']);
    expect(record.copies).toHaveLength(4);
    p = await progress();
    expect(p).toMatchObject({ phase: 'paused', started: 4 });
    expect(counts(p)).toMatchObject({ pending: 2, copy: 2, restored: 2 });

    await handle.signal(resumeSignal);
    await waitFor(
      't4 copying after resume',
      () => heldTenants(restoreId),
      (held) => held.length === 3,
    );
    await settle();
    expect(heldTenants(restoreId)).toEqual(['t2', 't3', 't4']);
    expect(record.maxCopying).toBe(3);
    p = await waitFor('progress: restoring', progress, (q) => q.phase === 'restoring' && counts(q).copy === 3);
    expect(counts(p)).toMatchObject({ pending: 1, restored: 2 });

    // Cancel: the three running units are cancelled, t5 never starts; both count as cancelled.
    await handle.signal(cancelSignal);
    const result = await handle.result();
    expect(result).toMatchObject({ restoreId, status: 'cancelled', total: 6, restored: 2, failed: 0, cancelled: 4 });
    // Units of one, each copied once; t5 never.
    expect(record.copies.map((c) => c.tenantIds.join(',')).sort()).toEqual(['t0', 't1', 't2', 't3', 't4']);
    p = await progress();
    expect(p).toMatchObject({ phase: 'cancelled', cancelRequested: true });
    expect(counts(p)).toMatchObject({ pending: 0, copy: 0, restored: 2, failed: 0, cancelled: 4 });
    // A unit of one tenant is named by its tenant, and found by it.
    const child = await env.client.workflow.getHandle(tenantWorkflowId(restoreId, 't2')).describe();
    expect(child.type).toBe(unitWorkflowType);
    expect(child.status.name).not.toBe('RUNNING');
    expect(child.typedSearchAttributes.get(TenantIdKey)).toBe('t2');
    expect(child.typedSearchAttributes.get(RestoreKindKey)).toBe('tenant');
  });
});

describe('continue-as-new', () => {
  it('carries the restore across runs of at most maxChildrenPerRun children and finishes every tenant', async () => {
    const restoreId = newRestoreId('carry');
    const tenants = ['t0', 't1', 't2', 't3', 't4'];
    const handle = await start(restoreId, tenants, { concurrency: 2, groupSize: 1, maxChildrenPerRun: 2 });
    const result = await handle.result();
    expect(result).toMatchObject({ status: 'succeeded', total: 5, restored: 5, failed: 0, cancelled: 0 });
    expect(
      mocks
        .record(restoreId)
        .copies.map((c) => c.tenantIds[0])
        .sort(),
    ).toEqual(tenants);
    const p = await handle.query(progressQuery);
    expect(p.runs).toBe(3);
    expect(p.counts).toMatchObject({ pending: 0, restored: 5 });
    const first = await env.client.workflow.getHandle(bulkWorkflowId(restoreId), handle.firstExecutionRunId).describe();
    expect(first.status.name).toBe('CONTINUED_AS_NEW');
  });
});

describe('a group whose copy fails', () => {
  it('splits into units of one: only the tenant that fails alone is failed', async () => {
    const restoreId = newRestoreId('split');
    // b's key is held by another tenant: the copy fails for any unit with b in it, b's own included.
    mocks.scenario(restoreId, {
      copyFails: (ids) =>
        ids.includes('b')
          ? { type: 'CrossTenantConflictError', message: `a key of b is held by tenant z (${ids.length} tenants)` }
          : undefined,
    });
    const handle = await start(restoreId, ['a', 'b', 'c'], { groupSize: 3 });
    const result = await handle.result();
    expect(result).toMatchObject({ status: 'partial', total: 3, restored: 2, failed: 1, cancelled: 0 });
    expect(result.failures).toHaveLength(1);
    expect(result.failures[0]!.tenantId).toBe('b');
    expect(result.failures[0]!.reason).toMatch(
      /^copy: CrossTenantConflictError: a key of b is held by tenant z \(1 tenants\)/,
    );
    const record = mocks.record(restoreId);
    // The group once, then each tenant alone. The group's copy wrote nothing (it failed in its one transaction), so
    // each tenant is still checked again under the lock: nothing of this restore is in live for it (I7).
    expect(record.copies).toEqual([
      { tenantIds: ['a', 'b', 'c'], expectAbsent: ['a', 'b', 'c'] },
      { tenantIds: ['a'], expectAbsent: ['a'] },
      { tenantIds: ['b'], expectAbsent: ['b'] },
      { tenantIds: ['c'], expectAbsent: ['c'] },
    ]);
    expect(record.preflights).toEqual([['a', 'b', 'c'], ['a'], ['b'], ['c']]);
    const group = await env.client.workflow.getHandle(groupWorkflowId(restoreId, 0)).describe();
    expect(group.type).toBe(unitWorkflowType);
    expect(group.status.name).toBe('COMPLETED');
    expect(group.typedSearchAttributes.get(RestoreKindKey)).toBe('group');
    expect(group.typedSearchAttributes.get(RestoreIdKey)).toBe(restoreId);
  });
});

describe('one restore of a tenant at a time (I7)', () => {
  it('a group whose copy failed after committing rows restores its tenants again as its own', async () => {
    const restoreId = newRestoreId('split-committed');
    // The group's copy committed chunks, then failed for good: its tenants are in live now, by this restore's hand.
    mocks.scenario(restoreId, {
      presentFrom: { a: 2, b: 2, c: 2 },
      copyFails: (ids) =>
        ids.length > 1 ? { type: 'DanglingReferenceError', message: 'a chunk failed', committed: true } : undefined,
    });
    const result = await (await start(restoreId, ['a', 'b', 'c'], { groupSize: 3 })).result();
    expect(result).toMatchObject({ status: 'succeeded', total: 3, restored: 3, failed: 0 });
    expect(mocks.record(restoreId).copies).toEqual([
      { tenantIds: ['a', 'b', 'c'], expectAbsent: ['a', 'b', 'c'] },
      { tenantIds: ['a'] },
      { tenantIds: ['b'] },
      { tenantIds: ['c'] },
    ]);
  });

  it('a group whose copy failed having written nothing refuses a tenant that another restore brought back since', async () => {
    const restoreId = newRestoreId('split-stranger');
    mocks.scenario(restoreId, {
      presentFrom: { b: 2 },
      copyFails: (ids) => (ids.length > 1 ? { type: 'CrossTenantConflictError', message: 'a key is held' } : undefined),
    });
    const result = await (await start(restoreId, ['a', 'b', 'c'], { groupSize: 3 })).result();
    expect(result).toMatchObject({ status: 'partial', total: 3, restored: 2, failed: 1 });
    expect(result.failures[0]!.tenantId).toBe('b');
    expect(result.failures[0]!.reason).toMatch(/^preflight: TenantPresentError: Tenant b is present in live/);
    expect(mocks.record(restoreId).copies.map((c) => c.tenantIds)).toEqual([['a', 'b', 'c'], ['a'], ['c']]);
  });

  it('a unit reshaped after preflight classifies its tenants again: one that came back since is refused', async () => {
    const restoreId = newRestoreId('reshape');
    // p is present (the wrong-list case): the unit is reshaped; b is brought back by someone else in between.
    mocks.scenario(restoreId, { present: ['p'], presentFrom: { b: 2 } });
    const result = await (await start(restoreId, ['a', 'b', 'p'], { groupSize: 3 })).result();
    expect(result).toMatchObject({ status: 'partial', total: 3, restored: 1, failed: 2 });
    expect(result.failures.map((f) => f.tenantId).sort()).toEqual(['b', 'p']);
    expect(result.failures.find((f) => f.tenantId === 'b')!.reason).toMatch(
      /^preflight: TenantPresentError: Tenant b is present in live/,
    );
    expect(mocks.record(restoreId).copies).toEqual([{ tenantIds: ['a'], expectAbsent: ['a'] }]);
  });
});

describe('held actions', () => {
  it('run in waves as tenants are approved: none before approval, then the listed tenants, then the rest', async () => {
    const restoreId = newRestoreId('waves');
    const handle = await start(restoreId, ['a', 'b', 'c'], {
      groupSize: 3,
      config: {
        actions: [
          { name: 'apps', type: 'sql', sql: 'select 1' },
          { name: 'billing', type: 'sql', sql: 'select 2', requiresApproval: true },
        ],
      },
    });
    const progress = progressOf(handle);
    const record = mocks.record(restoreId);
    let p = await waitFor('all awaiting approval', progress, (q) => q.counts['awaiting-approval'] === 3);
    await settle();
    expect(record.actions).toEqual([{ action: 'apps', tenantIds: ['a', 'b', 'c'] }]);
    expect(p.counts).toMatchObject({ restored: 0, pending: 0 });

    await handle.signal(approveSignal, { tenantIds: ['a'] });
    p = await waitFor('a restored', progress, (q) => q.counts.restored === 1);
    await settle();
    expect(record.actions).toEqual([
      { action: 'apps', tenantIds: ['a', 'b', 'c'] },
      { action: 'billing', tenantIds: ['a'] },
    ]);
    expect((await progress()).counts).toMatchObject({ restored: 1, 'awaiting-approval': 2 });

    await handle.signal(approveSignal, {});
    const result = await handle.result();
    expect(result).toMatchObject({ status: 'succeeded', total: 3, restored: 3, failed: 0 });
    expect(record.actions).toEqual([
      { action: 'apps', tenantIds: ['a', 'b', 'c'] },
      { action: 'billing', tenantIds: ['a'] },
      { action: 'billing', tenantIds: ['b', 'c'] },
    ]);
    expect(record.copies).toEqual([{ tenantIds: ['a', 'b', 'c'], expectAbsent: ['a', 'b', 'c'] }]);
  });
});

describe('a tenant still in live', () => {
  it('is refused after preflight with TenantPresentError and nothing of it copied; the others restore', async () => {
    const restoreId = newRestoreId('refuse');
    mocks.scenario(restoreId, { present: ['b'] });
    const handle = await start(restoreId, ['a', 'b', 'c'], { groupSize: 3 });
    const result = await handle.result();
    expect(result).toMatchObject({ status: 'partial', total: 3, restored: 2, failed: 1 });
    expect(result.failures).toHaveLength(1);
    expect(result.failures[0]!.tenantId).toBe('b');
    expect(result.failures[0]!.reason).toMatch(/^preflight: TenantPresentError: Tenant b is present in live/);
    const record = mocks.record(restoreId);
    // The reshaped unit wrote nothing before: a and c are checked again under the tenant lock (I7).
    expect(record.copies).toEqual([{ tenantIds: ['a', 'c'], expectAbsent: ['a', 'c'] }]);
    expect(record.preflights).toEqual([
      ['a', 'b', 'c'],
      ['a', 'c'],
    ]);
  });
});
