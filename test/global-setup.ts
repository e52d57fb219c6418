/**
 * Brings the real dev stack up once for the whole test run (Temporal, PostgreSQL, MinIO) and bundles the workflow
 * code once, so that each test file can start its own worker quickly. A stack that was already up is left up;
 * a stack this run started is stopped at the end. Tests that run bin/tenant-restore run the build in dist/ (`npm test`
 * builds it first): a run of single files says when dist/ is missing or older than the sources.
 */
import { bundleWorkflowCode } from '@temporalio/worker';
import { existsSync, mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { projectRoot, stackDir, stackStatus, stackUp } from '../scripts/stack';

declare module 'vitest' {
  export interface ProvidedContext {
    workflowBundlePath: string;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const wasUp = (await stackStatus()).every((s) => s.running && s.listening);
  try {
    await stackUp((m) => process.stderr.write(`[stack] ${m}\n`));
  } catch (error) {
    throw new Error(`The test stack could not start, so no integration test can run:\n${(error as Error).message}`);
  }
  const distNote = distStaleness();
  if (distNote) process.stderr.write(`[build] ${distNote}\n`);
  const { code } = await bundleWorkflowCode({
    workflowsPath: join(projectRoot, 'workflows', 'index.ts'),
    logger: quietLogger,
  });
  mkdirSync(join(stackDir, 'bundles'), { recursive: true });
  const bundlePath = join(stackDir, 'bundles', `workflows-${process.pid}.js`);
  writeFileSync(bundlePath, code);
  project.provide('workflowBundlePath', bundlePath);
  return async () => {
    if (!wasUp && !process.env.KEEP_STACK) {
      const { stackDown } = await import('../scripts/stack');
      await stackDown(() => undefined);
    }
  };
}

/** Why dist/ does not match the sources, or undefined when it does. */
function distStaleness(): string | undefined {
  const stamp = join(projectRoot, 'dist', 'build.json');
  if (!existsSync(stamp))
    return "no dist/: bin/tenant-restore runs the sources through tsx ('npm run build' makes the built product)";
  const built = statSync(stamp).mtimeMs;
  const newer = ['workflows', 'activities', 'workers', 'cli']
    .flatMap((dir) =>
      readdirSync(join(projectRoot, dir), { recursive: true, encoding: 'utf8' }).map((f) => join(dir, f)),
    )
    .find((file) => file.endsWith('.ts') && statSync(join(projectRoot, file)).mtimeMs > built);
  return newer
    ? `${newer} is newer than dist/: tests that run bin/tenant-restore run the last build ('npm run build')`
    : undefined;
}

const quietLogger = {
  log: () => undefined,
  trace: () => undefined,
  debug: () => undefined,
  info: () => undefined,
  warn: (message: string) => process.stderr.write(`[bundle] ${message}\n`),
  error: (message: string) => process.stderr.write(`[bundle] ${message}\n`),
};
