import { BaseSequencer, type TestSpecification } from 'vitest/node';
import { defineConfig } from 'vitest/config';

/**
 * The default order (slowest first by the last run's timings, else largest file first) would put the property suite,
 * a small file that runs for minutes, last on a fresh clone, with the other slot idle: it goes first instead.
 */
class PropertySuiteFirst extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const sorted = await super.sort(files);
    const first = (f: TestSpecification) => (f.moduleId.includes('/test/property/') ? 0 : 1);
    return [...sorted].sort((a, b) => first(a) - first(b));
  }
}

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    // Integration tests share one stack and a 2-core machine: two files at a time is the sweet spot.
    pool: 'forks',
    maxWorkers: 2,
    sequence: { sequencer: PropertySuiteFirst },
    // Safety nets against a hung service, not performance bounds.
    testTimeout: 600_000,
    hookTimeout: 600_000,
    reporters: ['default'],
  },
});
