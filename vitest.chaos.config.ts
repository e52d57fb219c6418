import { defineConfig } from 'vitest/config';

/**
 * `npm run test:chaos`: the chaos run alone. It restarts the shared stack's PostgreSQL and Temporal, so it never runs
 * next to other test files.
 */
export default defineConfig({
  test: {
    include: ['test/chaos/**/*.chaos.ts'],
    globalSetup: ['test/global-setup.ts'],
    pool: 'forks',
    maxWorkers: 1,
    // Safety nets against a hung service, not performance bounds.
    testTimeout: 3_600_000,
    hookTimeout: 600_000,
    reporters: ['default'],
  },
});
