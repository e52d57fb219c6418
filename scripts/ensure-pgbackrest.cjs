#!/usr/bin/env node
// The dev stack archives PostgreSQL's WAL with Debian's pgBackRest (`pgbackrest` on PATH; 2.45 on bookworm).
// When it is missing and this runs as root, installs it with apt-get (and says so); otherwise prints the command
// and leaves `npm run stack -- up` to fail with the same message. Never fails by itself: `npm test` goes on.
const { existsSync } = require('node:fs');
const { spawnSync } = require('node:child_process');

const command = 'apt-get update && apt-get install -y pgbackrest';
const found = () => spawnSync('sh', ['-c', 'command -v pgbackrest'], { stdio: 'ignore' }).status === 0;

if (!found()) {
  if (process.getuid && process.getuid() === 0 && existsSync('/usr/bin/apt-get')) {
    console.error(`[pgbackrest] pgbackrest is not on PATH: running '${command}' (about a minute)`);
    const result = spawnSync('sh', ['-c', command], {
      stdio: ['ignore', 'inherit', 'inherit'],
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
    });
    if (result.status !== 0 || !found())
      console.error(
        `[pgbackrest] install failed (exit ${result.status}); 'npm run stack -- up' will fail until it is installed`,
      );
    else console.error('[pgbackrest] installed pgbackrest');
  } else {
    console.error(
      `[pgbackrest] pgbackrest is not on PATH and this is not root: install it with  sudo sh -c '${command}'  ('npm run stack -- up' fails until then)`,
    );
  }
}
