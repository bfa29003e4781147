import { defineConfig } from 'vitest/config';

// One GPU device per process; lavapipe is CPU-bound, so test files run one at a time.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['../../tools/vitest/private-tmpdir.ts'],
    pool: 'forks',
    poolOptions: { forks: { singleFork: true } },
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 120_000,
  },
});
