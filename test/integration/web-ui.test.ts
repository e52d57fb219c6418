/**
 * The Temporal Web UI, in a real browser: Debian's headless Chromium driven by playwright-core (no browser download).
 * While a bulk restore is running (held at its approval gate), the UI must find it by its RestoreId search attribute,
 * list its child tenant workflows, and answer its progress query. Screenshots go to test/artifacts/.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createActivities } from '../../activities';
import { Pools } from '../../activities/db';
import { createS3Client } from '../../activities/s3';
import { projectRoot } from '../../scripts/stack';
import { takeBackup } from '../../scripts/workload/backup';
import { generateWorkload } from '../../scripts/workload/generate';
import { purgeTenants } from '../../scripts/workload/incident';
import {
  approveSignal,
  bulkWorkflowId,
  progressQuery,
  tenantWorkflowId,
  type BulkRestoreInput,
  type BulkRestoreResult,
} from '../../workflows/definitions';
import { startWorker, temporalClient, uniqueName, useFreshDatabases, useStackEnv } from '../helpers/stack';

const chromiumPath = '/usr/bin/chromium';
const env = useStackEnv();
const { fresh } = useFreshDatabases();
const artifacts = join(projectRoot, 'test', 'artifacts');

/**
 * Reloads until the page shows `text` (visibility is eventually consistent); the test timeout is the only bound. A
 * refused connection is retried too: other test files restart the shared dev server on purpose (chaos tests).
 */
async function reloadUntilVisible(page: Page, text: string): Promise<void> {
  for (;;) {
    // Give each load a while to render (the machine may be busy), then reload to pick up newer visibility.
    const shown = await page
      .getByText(text, { exact: true })
      .first()
      .waitFor({ timeout: 15_000 })
      .then(
        () => true,
        () => false,
      );
    if (shown) return;
    await page.reload({ waitUntil: 'load' }).catch(() => undefined);
  }
}

async function gotoRetrying(page: Page, url: string): Promise<void> {
  for (;;) {
    // 'load', not 'networkidle': the UI polls the server for as long as the page is open.
    const ok = await page.goto(url, { waitUntil: 'load' }).then(
      () => true,
      () => false,
    );
    if (ok) return;
    await page.waitForTimeout(500);
  }
}

describe('Temporal Web UI in headless Chromium', () => {
  const pools = new Pools();
  const s3 = createS3Client();
  const taskQueue = uniqueName('tq_webui');
  const restoreId = uniqueName('webui').replace(/_/g, '-');
  const victims = ['100002', '100004', '100005'];
  let worker: Awaited<ReturnType<typeof startWorker>>;
  let temporal: Awaited<ReturnType<typeof temporalClient>>;
  let browser: BrowserContext | undefined;
  let userDataDir: string;

  beforeAll(async () => {
    if (!existsSync(chromiumPath)) {
      throw new Error(
        `Chromium is not installed at ${chromiumPath}. Install Debian's package (as root): apt-get update && apt-get install -y chromium\n` +
          '(or run: node scripts/ensure-chromium.cjs)',
      );
    }
    mkdirSync(artifacts, { recursive: true });
    const live = await fresh('webui_live');
    await generateWorkload(live.url, { tenants: 6, rowsTarget: 2_000, seed: 4 });
    const backup = await takeBackup({
      url: live.url,
      s3,
      bucket: env.STACK_S3_BUCKET,
      key: `test/${restoreId}/live.dump`,
      retentionDays: 1,
    });
    await purgeTenants(live.url, victims);
    worker = await startWorker({ taskQueue, activities: createActivities({ pools, s3 }) });
    temporal = await temporalClient();
    // The approval gate keeps the restore running (every tenant waits for `approve`) while the browser looks at it.
    const input: BulkRestoreInput = {
      restoreId,
      // The stack's scratch cluster: a worker refuses to load a backup on live's server (issue 23, item 8).
      source: { kind: 'backup', backup: backup.url, scratchServer: env.TENANT_RESTORE_SCRATCH_SERVER },
      live: live.url,
      tenantRoot: 'app.tenants',
      tenants: victims,
      conflict: 'skip',
      concurrency: 3,
      config: {
        actions: [
          {
            name: 'reactivate-billing',
            type: 'sql',
            requiresApproval: true,
            sql: 'UPDATE app.billing_accounts SET active = true WHERE tenant_id = $1::bigint AND NOT active',
          },
        ],
      },
      artifacts: { bucket: env.STACK_S3_BUCKET, prefix: `test/${restoreId}/artifacts/` },
    };
    const handle = await temporal.client.workflow.start('bulkRestore', {
      taskQueue,
      workflowId: bulkWorkflowId(restoreId),
      args: [input],
    });
    for (;;) {
      const progress = await handle.query(progressQuery).catch(() => undefined);
      if (progress && progress.counts['awaiting-approval'] === victims.length) break;
      if (progress && progress.counts.failed > 0)
        throw new Error(`the restore failed before the UI check: ${JSON.stringify(progress.failures)}`);
      await new Promise((r) => setTimeout(r, 300));
    }
    userDataDir = mkdtempSync(join(tmpdir(), 'chromium-profile-'));
    // A fresh profile each run (playwright passes it as --user-data-dir).
    browser = await chromium.launchPersistentContext(userDataDir, {
      executablePath: chromiumPath,
      headless: true,
      viewport: { width: 1600, height: 1000 },
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
  });

  afterAll(async () => {
    await browser?.close();
    if (userDataDir) rmSync(userDataDir, { recursive: true, force: true });
    if (temporal) {
      // Let the restore finish (approve), so that it cleans up its scratch.
      const handle = temporal.client.workflow.getHandle(bulkWorkflowId(restoreId));
      await handle.signal(approveSignal, {}).catch(() => undefined);
      await handle.result().catch(() => undefined);
      await temporal.close();
    }
    await worker?.stop();
    await pools.closeAll();
    s3.destroy();
  });

  it('finds the running bulk restore by RestoreId, lists its child tenant workflows, and answers the progress query', async () => {
    const page = await browser!.newPage();
    const ui = `${env.TEMPORAL_UI_URL}/namespaces/${env.TEMPORAL_NAMESPACE}`;

    // (a) and (b): the visibility query RestoreId="<id>" lists the parent and its children, all running.
    await gotoRetrying(page, `${ui}/workflows?query=${encodeURIComponent(`RestoreId="${restoreId}"`)}`);
    await reloadUntilVisible(page, bulkWorkflowId(restoreId));
    for (const tenant of victims) await reloadUntilVisible(page, tenantWorkflowId(restoreId, tenant));
    const listed = await page.locator('body').innerText();
    expect(listed).toContain(bulkWorkflowId(restoreId));
    for (const tenant of victims) expect(listed).toContain(tenantWorkflowId(restoreId, tenant));
    expect(listed).toMatch(/Running/);
    expect(listed).toContain('bulkRestore');
    expect(listed).toContain('restoreUnit');
    const listShot = join(artifacts, `web-ui-restore-${restoreId}.png`);
    await page.screenshot({ path: listShot, fullPage: false });

    // (c): the progress query, through the UI's Queries tab of the parent workflow. "progress" is its only query type,
    // so the UI preselects it; the answer's fields (restoreId, counts by phase) are those of RestoreProgress.
    const handle = temporal.client.workflow.getHandle(bulkWorkflowId(restoreId));
    const { runId } = await handle.describe();
    await gotoRetrying(page, `${ui}/workflows/${encodeURIComponent(bulkWorkflowId(restoreId))}/${runId}/query`);
    const run = page.getByRole('button', { name: /^(Run|Refresh) Query$/ });
    await run.waitFor({ timeout: 0 });
    await run.click();
    await page.getByText('"awaiting-approval": 3').first().waitFor({ timeout: 0 });
    const queried = await page.locator('body').innerText();
    expect(queried).toContain('"awaiting-approval": 3');
    expect(queried).toContain(`"restoreId": "${restoreId}"`);
    await page.screenshot({ path: join(artifacts, `web-ui-progress-${restoreId}.png`), fullPage: false });
    // The same answer through the client.
    const progress = await handle.query(progressQuery);
    expect(progress.counts['awaiting-approval']).toBe(3);
    expect(progress.total).toBe(3);
    await page.close();

    // Approve: the restore then completes, and the UI's status follows.
    await handle.signal(approveSignal, {});
    const result = (await handle.result()) as BulkRestoreResult;
    expect(result.status).toBe('succeeded');
    expect(result.restored).toBe(3);
  });
});
