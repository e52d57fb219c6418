#!/usr/bin/env node
// `npm run test:node24`, and the last step of `npm test`: the second Node lane. The whole suite runs on Node 22, the
// floor (scripts/node-runtime.cjs); this runs the built product on Node 24 too: the built CLI's --help, then in one
// vitest run the unit tests, the quickest integration file that restores for real (a worker in the test process, the
// restore started with bin/tenant-restore start --wait), and build.test.ts (a worker process from dist with the
// prebuilt bundle, and npm pack's contents). Node 24's binary comes from the npm package node-<platform>-<arch>@24,
// installed once into the git-ignored .tools/node24.
//   node scripts/node-lane.cjs [major]   (24 unless given)
// Needs dist (npm run build) and the dev stack, which vitest's global setup brings up (and takes down again when it
// was not up before, unless KEEP_STACK is set).
const { existsSync } = require('node:fs');
const { spawnSync } = require('node:child_process');
const { join } = require('node:path');
const { envWith, nodeBinary } = require('./node-runtime.cjs');

const root = join(__dirname, '..');
const major = Number(process.argv[2] ?? 24);
/** The integration files run in this lane (about 14 s and 3 s on the 2-core machine). */
const integrationFiles = ['test/integration/orchestration-groups.test.ts', 'test/integration/build.test.ts'];
const started = Date.now();

function say(message) {
  process.stderr.write(`[node${major}] ${message}\n`);
}

function fail(message) {
  say(message);
  process.exit(1);
}

if (!Number.isInteger(major) || major < 22)
  fail(`usage: node scripts/node-lane.cjs [major ≥ 22], not ${process.argv[2]}`);
const node = nodeBinary(major);
const version = spawnSync(node, ['--version'], { encoding: 'utf8' }).stdout.trim();
if (!existsSync(join(root, 'dist', 'cli', 'main.js'))) fail("dist/ is missing: run 'npm run build' first");
say(`${version} (${node})`);

// Child processes that run `node` (and vitest's forks, which use process.execPath) get this Node too.
const env = envWith(node);
const bin = join(root, 'bin', 'tenant-restore');
for (const args of [['--help'], ['start', '--help']]) {
  const result = spawnSync(node, [bin, ...args], {
    cwd: root,
    env,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  if (result.status !== 0 || !/tenant-restore/.test(result.stdout ?? ''))
    fail(`bin/tenant-restore ${args.join(' ')} under ${version}: exit ${result.status}\n${result.stdout}`);
}
say('bin/tenant-restore --help and start --help: ok');

const vitest = spawnSync(
  node,
  [join(root, 'node_modules', 'vitest', 'vitest.mjs'), 'run', 'test/unit', ...integrationFiles],
  { cwd: root, env, stdio: 'inherit' },
);
if (vitest.status !== 0) fail(`vitest under ${version} failed (exit ${vitest.status ?? vitest.signal})`);
say(`passed under ${version} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
