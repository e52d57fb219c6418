#!/usr/bin/env node
// Installs the npm dependencies when node_modules is missing or older than package-lock.json, so that
// `npm test` and `npm run demo` work from a fresh clone with nothing but Node and npm. A fresh clone (CI) gets
// `npm ci`: exactly the lockfile, which it checks against package.json (checked with npm 11 on Linux, @swc/core's
// platform packages included). An existing node_modules older than the lockfile (a pull that changed it) gets
// `npm install`, which keeps what is already there.
const { existsSync, statSync } = require('node:fs');
const { execSync } = require('node:child_process');
const { join } = require('node:path');

const root = join(__dirname, '..');
const marker = join(root, 'node_modules', '.package-lock.json');
const lock = join(root, 'package-lock.json');
const stale = !existsSync(marker) || (existsSync(lock) && statSync(lock).mtimeMs > statSync(marker).mtimeMs + 1000);
if (stale) {
  const command = existsSync(join(root, 'node_modules')) ? 'install' : 'ci';
  console.error(`[deps] node_modules is missing or stale: running npm ${command} (first run takes about a minute)`);
  execSync(`npm ${command} --no-audit --no-fund`, { cwd: root, stdio: 'inherit' });
}
