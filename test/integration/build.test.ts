/**
 * The built product (`npm run build`, which `npm test` runs first): bin/tenant-restore runs the compiled CLI in dist/,
 * a worker run from dist loads the workflow bundle made at build time instead of bundling at start, and `npm pack`
 * ships only what runs. `npm run test:node24` runs this file under Node 24 too.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { stackCheck } from '../../workflows/stack-check';
import { projectRoot, runCli, startWorkerProcess } from '../helpers/product';
import { temporalClient, uniqueName, useFreshDatabases } from '../helpers/stack';

const { fresh } = useFreshDatabases();
const dist = join(projectRoot, 'dist');
const missing = "dist/ is missing: 'npm test' builds it first; to run this file alone, run 'npm run build' before";

describe('the built product', () => {
  it('bin/tenant-restore runs the compiled CLI, which finds its package.json from dist/', async () => {
    expect(existsSync(join(dist, 'cli', 'main.js')), missing).toBe(true);
    const { version } = JSON.parse(readFileSync(join(projectRoot, 'package.json'), 'utf8')) as { version: string };
    const run = await runCli(['--version']);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout.trim()).toBe(version);
  });

  it('a worker run from dist loads the prebuilt workflow bundle and runs a workflow and its activity with it', async () => {
    expect(existsSync(join(dist, 'workflow-bundle.js')), missing).toBe(true);
    const db = await fresh('build_check');
    const taskQueue = uniqueName('tq_build');
    const worker = await startWorkerProcess({ taskQueue });
    const { client, close } = await temporalClient();
    try {
      expect(worker.log()).toContain('workflows from the prebuilt bundle');
      expect(worker.log()).toContain(join(dist, 'workflow-bundle.js'));
      const result = await client.workflow.execute(stackCheck, {
        taskQueue,
        workflowId: uniqueName('build-check'),
        args: [db.url],
      });
      expect(result.database).toBe(db.name);
    } finally {
      await close();
      await worker.stop();
    }
  });

  it('npm pack ships dist, bin, the README and the operator files, and no TypeScript source', () => {
    // --ignore-scripts: prepack would build again, under the feet of the other test files that run bin/tenant-restore.
    const [pack] = JSON.parse(
      execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: projectRoot, encoding: 'utf8' }),
    ) as Array<{ files: Array<{ path: string }> }>;
    const files = pack!.files.map((f) => f.path);
    expect([...new Set(files.map((p) => p.split('/')[0]))].sort()).toEqual([
      'README.md',
      'bin',
      'dist',
      'docs',
      'package.json',
      'scripts',
    ]);
    for (const file of [
      'bin/tenant-restore',
      'dist/cli/main.js',
      'dist/workers/worker.js',
      'dist/workflow-bundle.js',
      'scripts/grants.sql',
      'docs/alerts.yml',
    ])
      expect(files).toContain(file);
    expect(files.filter((p) => p.startsWith('scripts/'))).toEqual(['scripts/grants.sql']);
    expect(files.filter((p) => p.endsWith('.ts'))).toEqual([]);
  });
});
