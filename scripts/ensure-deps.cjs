#!/usr/bin/env node
// `npm ci` is not used: npm 11 rejects this lockfile's platform-optional deps of @swc/core as "missing".
// Installs the npm dependencies when node_modules is missing or older than package-lock.json, so that
// `npm test` and `npm run demo` work from a fresh clone with nothing but Node and npm.
const { existsSync, statSync } = require('node:fs');
const { execSync } = require('node:child_process');
const { join } = require('node:path');

const root = join(__dirname, '..');
const marker = join(root, 'node_modules', '.package-lock.json');
const lock = join(root, 'package-lock.json');
const stale = !existsSync(marker) || (existsSync(lock) && statSync(lock).mtimeMs > statSync(marker).mtimeMs + 1000);
if (stale) {
  console.error('[deps] node_modules is missing or stale: running npm install (first run takes about a minute)');
  execSync('npm install --no-audit --no-fund', { cwd: root, stdio: 'inherit' });
}
