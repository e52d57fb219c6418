/**
 * Issue 11, items 5 (database part) and 6, against the real stack, through the real CLI and a real worker process:
 *
 * - A password in a database reference is refused by the CLI (exit 2, live untouched) and by the worker, for a
 *   workflow input that did not go through the CLI.
 * - A restore that fails on database errors whose raw form carries row values (a data error whose message quotes the
 *   value, a CHECK violation whose detail holds the failing row) leaves neither value nor password in any history
 *   (parent and every child), the worker's log, the CLI output or the report files; the errors are named
 *   (DataError, ConstraintViolationError) and not retried.
 * - A read-only live (a standby, `default_transaction_read_only`) fails on the first attempt with LiveReadOnlyError.
 * - Every session has a lock_timeout: a copy that meets a migration's ACCESS EXCLUSIVE lock fails with SQLSTATE 55P03,
 *   classified retryable, instead of hanging; through a worker it is retried with backoff and the restore succeeds
 *   once the lock is released.
 */
import { ApplicationFailure } from '@temporalio/common';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Pools } from '../../activities/db';
import { copyTenant } from '../../activities/copy';
import { buildPlan } from '../../activities/plan';
import { toActivityFailure } from '../../activities/restore-activities';
import { scratchDatabaseName } from '../../activities/scratch';
import { createS3Client } from '../../activities/s3';
import { takeBackup } from '../../scripts/workload/backup';
import { generateWorkload } from '../../scripts/workload/generate';
import { purgeTenants } from '../../scripts/workload/incident';
import { bulkWorkflowId, type BulkRestoreInput, type BulkRestoreResult } from '../../workflows/definitions';
import { s3Texts, scanForNeedles, type Needle } from '../helpers/audit';
import { sleep } from '../helpers/chaos';
import { failedActivities, historiesText, restoreHistoriesText, restoreWorkflowIds } from '../helpers/history';
import { logDir, productEnv, runCli, WorkerProcess, type CliResult } from '../helpers/product';
import {
  dropDatabase,
  serverUrl,
  temporalClient,
  uniqueName,
  useFreshDatabases,
  useStackEnv,
  withClient,
} from '../helpers/stack';

const env = useStackEnv();
const { fresh } = useFreshDatabases();
const s3 = createS3Client();
const run = uniqueName('safety');
const taskQueue = `safety-${run}`;
/** Row values seeded into the backup: if one shows up in a history, a log or a report, row data leaked. */
const secretValue = `SECRET-ROW-VALUE-42-${randomBytes(4).toString('hex')}`;
const forbiddenValue = `FORBIDDEN-ROW-${randomBytes(4).toString('hex')}`;
const mailValue = `SECRET-MAIL-${randomBytes(4).toString('hex')}`;
const superuserPassword = decodeURIComponent(new URL(env.STACK_PG_URL).password);

/** Byte-for-byte fingerprint of every app table (count and md5 of the sorted row texts). */
async function fingerprint(url: string): Promise<Record<string, string>> {
  return withClient(url, async (client) => {
    const { rows: tables } = await client.query<{
      t: string;
    }>(`SELECT format('%I.%I', n.nspname, c.relname) AS t FROM pg_class c
      JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r' AND n.nspname = 'app' ORDER BY 1`);
    const out: Record<string, string> = {};
    for (const { t } of tables) {
      const { rows } = await client.query<{ n: string; h: string | null }>(
        `SELECT count(*) AS n, md5(string_agg(x::text, E'\\n' ORDER BY x::text)) AS h FROM ${t} x`,
      );
      out[t] = `${rows[0]!.n}:${rows[0]!.h ?? '-'}`;
    }
    return out;
  });
}

type StartJson = {
  status: string;
  tenants: Array<{ tenantId: string; status: string; error?: string }>;
  error?: string;
};

describe('safety: secrets and row data stay out, errors that will fail again are not retried', () => {
  let source: { name: string; url: string };
  let live: { name: string; url: string };
  let backup: string;
  let victims: string[];
  let worker: WorkerProcess;
  let cliEnv: NodeJS.ProcessEnv;
  let temporal: Awaited<ReturnType<typeof temporalClient>>;
  const restoreIds: string[] = [];
  const cliOutputs = new Map<string, string>();

  const start = async (liveUrl: string, args: string[]): Promise<{ id: string; result: CliResult }> => {
    const id = uniqueName('safe').replace(/_/g, '-');
    restoreIds.push(id);
    const result = await runCli(
      [
        'start',
        '--backup',
        backup,
        '--live',
        liveUrl,
        '--tenant-root',
        'app.tenants',
        '--task-queue',
        taskQueue,
        '--id',
        id,
        '--json',
        ...args,
      ],
      cliEnv,
    );
    cliOutputs.set(`start ${id}`, result.stdout + result.stderr);
    return { id, result };
  };

  beforeAll(async () => {
    // The source holds every tenant; the backup is taken from it; live is the source after the incident.
    source = await fresh('safety_src');
    const generated = await generateWorkload(source.url, { tenants: 10, rowsTarget: 2_000, seed: 11 });
    victims = generated.tenantIds.slice(1, 7);
    await withClient(source.url, async (c) => {
      await c.query('UPDATE app.tenants SET name = $1 WHERE id = $2', [secretValue, victims[0]]);
      await c.query('UPDATE app.tenants SET name = $1 WHERE id = $2', [forbiddenValue, victims[1]]);
      const billing = await c.query('UPDATE app.billing_accounts SET billing_email = $1 WHERE tenant_id = $2', [
        mailValue,
        victims[2],
      ]);
      expect(billing.rowCount).toBeGreaterThan(0);
    });
    ({ url: backup } = await takeBackup({
      url: source.url,
      s3,
      bucket: env.STACK_S3_BUCKET,
      key: `safety/${run}/backup.dump`,
      retentionDays: 1,
    }));
    live = await fresh('safety_live', source.name);
    await purgeTenants(live.url, victims);
    // The worker as operators run it (bin/tenant-restore worker), with a short lock timeout for the lock test.
    cliEnv = productEnv({ TENANT_RESTORE_LOCK_TIMEOUT: '1s' });
    worker = new WorkerProcess({ taskQueue, env: cliEnv, name: run });
    await worker.start();
    temporal = await temporalClient();
  });

  afterAll(async () => {
    await worker?.stop();
    await temporal?.close();
    s3.destroy();
    for (const id of restoreIds) await dropDatabase(scratchDatabaseName(id));
  });

  it('a password in a database reference is refused by the CLI in every form: exit 2, nothing started, live untouched', async () => {
    const before = await fingerprint(live.url);
    const base = new URL(serverUrl(live.name));
    const inUserPart = new URL(base);
    inUserPart.password = superuserPassword;
    const forms = [
      inUserPart.toString(),
      `${serverUrl(live.name)}?password=${encodeURIComponent(superuserPassword)}`,
      `${serverUrl(live.name)}?sslmode=disable&sslpassword=${encodeURIComponent(superuserPassword)}`,
      `postgres://127.0.0.1:${base.port}${base.pathname}?user=postgres:${encodeURIComponent(superuserPassword)}`,
    ];
    for (const form of forms) {
      const { id, result } = await start(form, ['--tenants', victims[5]!, '--wait']);
      expect(result.code, result.stdout + result.stderr).toBe(2);
      expect(result.stderr).toMatch(/--live carries a password.*PGPASSFILE.*TENANT_RESTORE_DB_<ALIAS>/s);
      expect(result.stdout + result.stderr).not.toContain(superuserPassword);
      // Nothing was started: no workflow of that id exists.
      await expect(temporal.client.workflow.getHandle(bulkWorkflowId(id)).describe()).rejects.toThrow();
    }
    const plan = await runCli(
      ['plan', '--scratch', serverUrl(source.name), '--live', forms[1]!, '--tenant-root', 'app.tenants'],
      cliEnv,
    );
    expect(plan.code, plan.stderr).toBe(2);
    expect(plan.stderr).toMatch(/--live carries a password/);
    const drill = await runCli(
      [
        'drill',
        'run',
        '--backup-prefix',
        `s3://${env.STACK_S3_BUCKET}/safety/${run}/`,
        '--live',
        forms[2]!,
        '--tenant-root',
        'app.tenants',
        '--sample',
        '1',
        '--task-queue',
        taskQueue,
      ],
      cliEnv,
    );
    expect(drill.code, drill.stderr).toBe(2);
    expect(drill.stderr).toMatch(/--live carries a password/);
    expect(await fingerprint(live.url)).toEqual(before);
  });

  it('the worker refuses a workflow input whose database reference carries a password (not started by the CLI)', async () => {
    const id = uniqueName('safe-raw').replace(/_/g, '-');
    restoreIds.push(id);
    const input: BulkRestoreInput = {
      restoreId: id,
      source: { kind: 'scratch', scratch: serverUrl(source.name) },
      live: `${serverUrl(live.name)}?password=${encodeURIComponent(superuserPassword)}`,
      tenantRoot: 'app.tenants',
      tenants: [victims[5]!],
      conflict: 'skip',
      concurrency: 1,
      artifacts: { bucket: env.STACK_S3_BUCKET, prefix: `restores/${id}/` },
    };
    const before = await fingerprint(live.url);
    const result = await temporal.client.workflow
      .execute<(i: BulkRestoreInput) => Promise<BulkRestoreResult>>('bulkRestore', {
        workflowId: bulkWorkflowId(id),
        taskQueue,
        args: [input],
      })
      .catch(
        (error: Error) =>
          ({
            status: 'failed',
            error: `${error.message} ${(error.cause as Error | undefined)?.message ?? ''}`,
          }) as BulkRestoreResult,
      );
    expect(result.status).toBe('failed');
    // Refused by the workflow's first step (the input contract), before any activity could open a connection with it:
    // the failure names the field and says where the password belongs, without echoing it.
    expect(result.error).toMatch(
      /bulkRestore refused its input before doing anything: live: a database reference that carries a password.*PGPASSFILE/s,
    );
    expect(result.error).not.toContain(superuserPassword);
    const failures = await failedActivities(temporal.client, await restoreWorkflowIds(temporal.client, id));
    expect(failures).toEqual([]);
    expect(await fingerprint(live.url)).toEqual(before);
  });

  it('a restore that fails on database errors carrying row values: named, not retried, and no value or password in histories, logs or reports', async () => {
    const checked = await fresh('safety_check', live.name);
    await withClient(checked.url, (c) =>
      c.query(`
      ALTER TABLE app.tenants ADD CONSTRAINT tenants_secret_names_are_numbers CHECK (name NOT LIKE 'SECRET-%' OR name::numeric > 0) NOT VALID;
      ALTER TABLE app.tenants ADD CONSTRAINT tenants_name_not_forbidden CHECK (name NOT LIKE 'FORBIDDEN-%') NOT VALID`),
    );
    // The raw errors do carry the values: in the message (data error) and in the detail (the failing row).
    const raw = await withClient(checked.url, async (c) => {
      const out: Array<{ code?: string; message: string; detail?: string }> = [];
      for (const value of [secretValue, forbiddenValue]) {
        await c.query('BEGIN');
        await c
          .query('UPDATE app.tenants SET name = $1 WHERE id = (SELECT min(id) FROM app.tenants)', [value])
          .catch((e: pg.DatabaseError) => out.push({ code: e.code, message: e.message, detail: e.detail }));
        await c.query('ROLLBACK');
      }
      return out;
    });
    expect(raw[0]!.code).toBe('22P02');
    expect(raw[0]!.message).toContain(secretValue);
    expect(raw[1]!.code).toBe('23514');
    expect(raw[1]!.detail).toContain(forbiddenValue);

    const before = await fingerprint(checked.url);
    // A re-enable action (SQL) that meets a data error carrying a row value: the third tenant's billing e-mail.
    const configFile = join(logDir(run), 'config.json');
    writeFileSync(
      configFile,
      JSON.stringify({
        actions: [
          {
            name: 'charge-from-mail',
            type: 'sql',
            sql: 'UPDATE app.billing_accounts SET balance_cents = billing_email::bigint WHERE tenant_id = $1::bigint',
          },
        ],
      }),
    );
    // Three tenants in one group (the default path): the group fails, splits, and each tenant goes alone.
    const { id, result } = await start(serverUrl(checked.name), [
      '--tenants',
      victims.slice(0, 3).join(','),
      '--config',
      configFile,
      '--wait',
    ]);
    expect(result.code, result.stdout + result.stderr).toBe(1);
    const json = result.json as StartJson;
    const byTenant = new Map(json.tenants.map((t) => [t.tenantId, t]));
    expect(byTenant.get(victims[0]!)).toMatchObject({ status: 'failed' });
    expect(byTenant.get(victims[0]!)!.error).toMatch(/DataError.*tenants_secret_names_are_numbers|DataError.*22P02/s);
    expect(byTenant.get(victims[1]!)).toMatchObject({ status: 'failed' });
    expect(byTenant.get(victims[1]!)!.error).toMatch(/ConstraintViolationError.*tenants_name_not_forbidden/s);
    // The third tenant's rows came back; its action failed once, named, and was not retried.
    expect(byTenant.get(victims[2]!)).toMatchObject({ status: 'failed' });
    expect(byTenant.get(victims[2]!)!.error).toMatch(
      /charge-from-mail failed: .*SQLSTATE 22P02.*Retrying will not help: fix the action's SQL/s,
    );
    // Nothing of the failed tenants was written.
    const after = await withClient(checked.url, (c) =>
      c.query<{ n: number }>('SELECT count(*)::int AS n FROM app.tenants WHERE id = ANY($1::bigint[])', [
        victims.slice(0, 2),
      ]),
    );
    expect(after.rows[0]!.n).toBe(0);
    expect(
      (await withClient(checked.url, (c) => c.query('SELECT 1 FROM app.tenants WHERE id = $1', [victims[2]]))).rowCount,
    ).toBe(1);
    expect(await fingerprint(checked.url)).not.toEqual(before);

    // Not retried: each failed activity failed on its first attempt, non-retryable, with its name.
    const workflowIds = await restoreWorkflowIds(temporal.client, id);
    // The parent and the group (which splits itself: its tenants go alone inside it).
    expect(workflowIds.filter((w) => w.includes('/group/')).length).toBe(1);
    const failures = await failedActivities(temporal.client, workflowIds);
    const types = new Set(failures.map((f) => f.type));
    expect(types).toContain('DataError');
    expect(types).toContain('ConstraintViolationError');
    for (const f of failures) {
      expect(f.attempt, JSON.stringify(f)).toBe(1);
      expect(f.nonRetryable, JSON.stringify(f)).toBe(true);
      expect(f.message).toMatch(/SQLSTATE (22P02|23514)/);
    }

    // I5 over a failed restore: every history (parent, group, tenants), the worker's log, the CLI output, the report.
    const texts = await restoreHistoriesText(temporal.client, id);
    expect(texts.size).toBe(workflowIds.length);
    // The worker logged those failures (the SDK serializes the thrown error's own fields: a raw database error's
    // `detail` and `where` would be there), so the scan of its log can see them.
    expect(worker.log()).toMatch(/"sqlState":"23514"/);
    texts.set('worker log', worker.log());
    for (const [name, text] of cliOutputs) texts.set(`cli ${name}`, text);
    const artifacts = await s3Texts(s3, env.STACK_S3_BUCKET, `restores/${id}/`);
    expect([...artifacts.keys()].some((k) => k.endsWith('report.json'))).toBe(true);
    for (const [key, text] of artifacts) texts.set(`s3 ${key}`, text);
    // The report says what failed, by name and SQLSTATE.
    expect(artifacts.get(`restores/${id}/report.json`)).toMatch(/ConstraintViolationError/);
    const needles: Needle[] = [
      { label: 'seeded row value (data error)', value: secretValue },
      { label: 'seeded row value (check violation)', value: forbiddenValue },
      { label: 'seeded row value (re-enable action)', value: mailValue },
      { label: 'postgres superuser password', value: superuserPassword },
      { label: 'S3 secret key', value: env.AWS_SECRET_ACCESS_KEY },
    ];
    expect(scanForNeedles(texts, needles)).toEqual([]);
    // The scan can see: the same needles are found in a text that holds them.
    expect(scanForNeedles(new Map([['raw', JSON.stringify(raw)]]), needles).map((f) => f.needle)).toEqual([
      'seeded row value (data error)',
      'seeded row value (check violation)',
    ]);
  });

  it('a read-only live (a standby): LiveReadOnlyError on the first attempt, the tenant reported failed with what to do', async () => {
    const readOnly = await fresh('safety_ro', live.name);
    await withClient(serverUrl('postgres'), (c) =>
      c.query(`ALTER DATABASE ${pg.escapeIdentifier(readOnly.name)} SET default_transaction_read_only = on`),
    );
    const before = await fingerprint(readOnly.url);
    const { id, result } = await start(serverUrl(readOnly.name), [
      '--tenants',
      victims[3]!,
      '--group-size',
      '1',
      '--wait',
    ]);
    expect(result.code, result.stdout + result.stderr).toBe(1);
    const tenant = (result.json as StartJson).tenants.find((t) => t.tenantId === victims[3]);
    expect(tenant?.status).toBe('failed');
    expect(tenant?.error).toMatch(/LiveReadOnlyError.*read-only.*primary/s);
    const failures = await failedActivities(temporal.client, await restoreWorkflowIds(temporal.client, id));
    expect(failures.filter((f) => f.type === 'LiveReadOnlyError').length).toBeGreaterThan(0);
    for (const f of failures)
      expect(f, JSON.stringify(f)).toMatchObject({ type: 'LiveReadOnlyError', attempt: 1, nonRetryable: true });
    expect(await fingerprint(readOnly.url)).toEqual(before);
  });

  it("a copy that meets a migration's ACCESS EXCLUSIVE lock fails with a lock timeout (55P03, retryable) instead of hanging; after the lock is released it succeeds", async () => {
    const locked = await fresh('safety_lock', live.name);
    const pools = new Pools({ ...process.env, TENANT_RESTORE_LOCK_TIMEOUT: '1s' });
    const migration = new pg.Client({ connectionString: locked.url });
    await migration.connect();
    try {
      const plan = await buildPlan({
        scratch: pools.get(source.url),
        live: pools.get(locked.url),
        tenantRoot: 'app.tenants',
      });
      await migration.query('BEGIN');
      await migration.query('LOCK TABLE app.labels IN ACCESS EXCLUSIVE MODE');
      const error = await copyTenant({
        scratch: pools.get(source.url),
        live: pools.get(locked.url),
        plan,
        tenantIds: [victims[4]!],
        conflict: 'skip',
      }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeDefined();
      expect((error as { code?: string }).code).toBe('55P03');
      const failure = toActivityFailure(error) as ApplicationFailure;
      expect(failure).toBeInstanceOf(ApplicationFailure);
      expect(failure.type).toBe('LockTimeoutError');
      expect(failure.nonRetryable).toBe(false);
      expect(failure.message).toMatch(/TENANT_RESTORE_LOCK_TIMEOUT.*SQLSTATE 55P03 lock_not_available/);
      // Nothing of the tenant was written.
      const root = await withClient(locked.url, (c) =>
        c.query('SELECT 1 FROM app.tenants WHERE id = $1', [victims[4]]),
      );
      expect(root.rowCount).toBe(0);
      await migration.query('COMMIT');
      const copied = await copyTenant({
        scratch: pools.get(source.url),
        live: pools.get(locked.url),
        plan,
        tenantIds: [victims[4]!],
        conflict: 'skip',
      });
      expect(Object.values(copied.rows).reduce((a, b) => a + b, 0)).toBeGreaterThan(1);
      expect(
        (await withClient(locked.url, (c) => c.query('SELECT 1 FROM app.tenants WHERE id = $1', [victims[4]])))
          .rowCount,
      ).toBe(1);
    } finally {
      await migration.end();
      await pools.closeAll();
    }
  });

  it('through a worker, a lock timeout is retried with backoff until the migration lets go, then the tenant is restored', async () => {
    const locked = await fresh('safety_lock_wf', live.name);
    const migration = new pg.Client({ connectionString: locked.url });
    await migration.connect();
    let released = false;
    try {
      await migration.query('BEGIN');
      await migration.query('LOCK TABLE app.labels IN ACCESS EXCLUSIVE MODE');
      const { id, result } = await start(serverUrl(locked.name), ['--tenants', victims[5]!, '--group-size', '1']);
      expect(result.code, result.stdout + result.stderr).toBe(0);
      // Wait until some activity of the restore has failed on the lock at least twice (retried, with backoff).
      let seen: { activity: string; attempt: number; type?: string | null; message?: string | null } | undefined;
      while (!seen) {
        for (const workflowId of await restoreWorkflowIds(temporal.client, id)) {
          const d = await temporal.client.workflow.getHandle(workflowId).describe();
          for (const p of d.raw.pendingActivities ?? []) {
            if ((p.attempt ?? 0) >= 3 && p.lastFailure?.applicationFailureInfo?.type === 'LockTimeoutError') {
              seen = {
                activity: p.activityType?.name ?? '?',
                attempt: p.attempt ?? 0,
                type: p.lastFailure.applicationFailureInfo.type,
                message: p.lastFailure.message,
              };
            }
          }
          expect(d.status.name).toBe('RUNNING');
        }
        if (!seen) await sleep(500);
      }
      expect(seen.message).toMatch(/SQLSTATE 55P03/);
      await migration.query('COMMIT');
      released = true;
      const outcome = (await temporal.client.workflow.getHandle(bulkWorkflowId(id)).result()) as BulkRestoreResult;
      expect(outcome).toMatchObject({ status: 'succeeded', restored: 1, failed: 0 });
      expect(
        (await withClient(locked.url, (c) => c.query('SELECT 1 FROM app.tenants WHERE id = $1', [victims[5]])))
          .rowCount,
      ).toBe(1);
      // The retried failures left no secret behind either.
      expect(
        scanForNeedles(await historiesText(temporal.client, await restoreWorkflowIds(temporal.client, id)), [
          { label: 'password', value: superuserPassword },
        ]),
      ).toEqual([]);
    } finally {
      if (!released) await migration.query('ROLLBACK').catch(() => undefined);
      await migration.end();
    }
  });
});
