#!/usr/bin/env node
// `npm run build`: the shipped product in dist/, so that nothing compiles TypeScript at run time.
//   dist/{workflows,activities,workers,cli}/  tsc's output of the runtime code (tsconfig.build.json)
//   dist/workflow-bundle.js                   the workflow code bundled once, here, with the SDK's bundleWorkflowCode;
//                                             a worker run from dist loads it instead of bundling at start
//   dist/build.json                           when the sources were read; bin/tenant-restore warns in a dev checkout
//                                             when a source file is newer
// It builds into .tools/ and then swaps the folder in, so that a bin/tenant-restore started meanwhile (another test
// run, a worker) finds either the old dist or the new one, never half of one, and no file of a deleted module stays.
const { spawnSync } = require('node:child_process');
const { existsSync, renameSync, rmSync, mkdirSync, writeFileSync, utimesSync } = require('node:fs');
const { join } = require('node:path');

const root = join(__dirname, '..');
const dist = join(root, 'dist');
const staging = join(root, '.tools', `dist-${process.pid}`);
const started = Date.now();

async function main() {
  rmSync(staging, { recursive: true, force: true });
  mkdirSync(join(root, '.tools'), { recursive: true });
  try {
    const tsc = spawnSync(
      process.execPath,
      [require.resolve('typescript/bin/tsc'), '-p', 'tsconfig.build.json', '--outDir', staging],
      { cwd: root, stdio: 'inherit' },
    );
    if (tsc.status !== 0) throw new Error(`tsc -p tsconfig.build.json failed (exit ${tsc.status ?? tsc.signal})`);

    // The SDK bundles the TypeScript sources (webpack + swc), as the test setup does, so that a workflow's stack
    // trace names the .ts lines.
    const { bundleWorkflowCode } = require('@temporalio/worker');
    const { code } = await bundleWorkflowCode({
      workflowsPath: join(root, 'workflows', 'index.ts'),
      logger: quietLogger,
    });
    writeFileSync(join(staging, 'workflow-bundle.js'), code);

    const stamp = join(staging, 'build.json');
    writeFileSync(stamp, `${JSON.stringify({ sourcesReadAt: new Date(started).toISOString() }, null, 2)}\n`);
    // The stamp's mtime is when tsc started reading: a source saved during the build counts as newer than dist.
    utimesSync(stamp, started / 1000, started / 1000);

    const old = join(root, '.tools', `dist-old-${process.pid}`);
    if (existsSync(dist)) renameSync(dist, old);
    renameSync(staging, dist);
    rmSync(old, { recursive: true, force: true });
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
  process.stderr.write(`[build] dist/ in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
}

const quietLogger = {
  log: () => undefined,
  trace: () => undefined,
  debug: () => undefined,
  info: () => undefined,
  warn: (message) => process.stderr.write(`[build] ${message}\n`),
  error: (message) => process.stderr.write(`[build] ${message}\n`),
};

main().catch((error) => {
  process.stderr.write(`[build] ${error.message}\n`);
  process.exitCode = 1;
});
