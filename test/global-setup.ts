/**
 * Brings the real dev stack up once for the whole test run (Temporal, PostgreSQL, MinIO) and bundles the workflow
 * code once, so that each test file can start its own worker quickly. A stack that was already up is left up;
 * a stack this run started is stopped at the end.
 */
import { bundleWorkflowCode } from '@temporalio/worker';
import { mkdirSync, writeFileSync } from 'node:fs';
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

const quietLogger = {
  log: () => undefined,
  trace: () => undefined,
  debug: () => undefined,
  info: () => undefined,
  warn: (message: string) => process.stderr.write(`[bundle] ${message}\n`),
  error: (message: string) => process.stderr.write(`[bundle] ${message}\n`),
};
