import { defineConfig } from 'vitest/config';

/**
 * `npm run test:property`: the property suite's long mode (test/property/long.property.ts), as many cases as asked,
 * or the replay of one saved case. scripts/property.cjs turns its flags into the PROPERTY_* variables read there.
 */
export default defineConfig({
  test: {
    include: ['test/property/**/*.property.ts'],
    globalSetup: ['test/global-setup.ts'],
    pool: 'forks',
    maxWorkers: 1,
    // Safety nets against a hung service, not performance bounds: a long run takes hours.
    testTimeout: 24 * 3_600_000,
    hookTimeout: 600_000,
    reporters: ['default'],
  },
});
