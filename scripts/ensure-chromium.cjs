#!/usr/bin/env node
// The Web UI test drives Debian's Chromium (/usr/bin/chromium) with playwright-core: no browser download.
// When it is missing and this runs as root, installs it with apt-get (and says so); otherwise prints the command
// and leaves the test to fail with the same message. Never fails by itself: `npm test` goes on.
const { existsSync } = require('node:fs');
const { spawnSync } = require('node:child_process');

const path = '/usr/bin/chromium';
const command = 'apt-get update && apt-get install -y chromium';

if (!existsSync(path)) {
  if (process.getuid && process.getuid() === 0 && existsSync('/usr/bin/apt-get')) {
    console.error(`[chromium] ${path} is missing: running '${command}' (about a minute)`);
    const result = spawnSync('sh', ['-c', command], {
      stdio: ['ignore', 'inherit', 'inherit'],
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
    });
    if (result.status !== 0 || !existsSync(path))
      console.error(
        `[chromium] install failed (exit ${result.status}); the Web UI test will fail until it is installed`,
      );
    else console.error(`[chromium] installed ${path}`);
  } else {
    console.error(
      `[chromium] ${path} is missing and this is not root: install it with  sudo sh -c '${command}'  (the Web UI test fails until then)`,
    );
  }
}
