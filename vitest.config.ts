import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    // Integration tests share one stack and a 2-core machine: two files at a time is the sweet spot.
    pool: 'forks',
    maxWorkers: 2,
    // Safety nets against a hung service, not performance bounds.
    testTimeout: 600_000,
    hookTimeout: 600_000,
    reporters: ['default'],
  },
});
