/**
 * Node 22 is the floor: package.json's `engines` says so, and bin/tenant-restore (the CLI and, through its `worker`
 * command, the worker) refuses an older Node before loading anything, saying what to do. The older Node is played by
 * this test's own Node with `process.versions.node` redefined before the real launcher runs, so the test needs no
 * second Node installed.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const root = join(__dirname, '..', '..');
const bin = join(root, 'bin', 'tenant-restore');

function launchAs(version: string, args: string[]) {
  const preamble =
    `Object.defineProperty(process.versions, 'node', { value: ${JSON.stringify(version)} });` +
    `process.argv = [process.argv[0], ${JSON.stringify(bin)}, ...${JSON.stringify(args)}];` +
    `require(${JSON.stringify(bin)});`;
  return spawnSync(process.execPath, ['-e', preamble], { cwd: root, encoding: 'utf8' });
}

describe('the Node floor', () => {
  it('package.json engines asks for Node 22 or newer', () => {
    const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { engines: { node: string } };
    expect(pkg.engines.node).toBe('>=22');
  });

  it.each([
    ['20.19.0', ['--help']],
    ['18.20.4', ['worker']],
  ])('refuses Node %s (%j) with exit 2, naming the floor and what to install; runs nothing', (version, args) => {
    const run = launchAs(version, args);
    expect(run.status).toBe(2);
    expect(run.stderr).toContain(`Node 22 or newer is required; this is Node ${version}`);
    expect(run.stderr).toMatch(/Install Node 22 or 24 .*node-[a-z0-9]+-[a-z0-9]+@22/);
    expect(run.stderr).toContain('Nothing was done.');
    expect(run.stdout).toBe('');
  });

  it('lets Node 22 through to the command line', () => {
    const run = launchAs('22.0.0', ['--help']);
    expect(run.stderr).not.toContain('is required');
    expect(run.status).toBe(0);
    expect(run.stdout).toContain('usage: tenant-restore <command>');
  });
});
