import { defineConfig } from 'vitest/config';

// One GPU device per process (forks). Two test files run at once: with a cold shader cache, as in CI, the tests
// spend most of their time compiling pipelines, and lavapipe compiles each on one thread (389 s with one file at
// a time, 271 s with two, on the 2-core VM).
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['../../tools/vitest/private-tmpdir.ts'],
    pool: 'forks',
    poolOptions: { forks: { minForks: 1, maxForks: 2 } },
    testTimeout: 120_000,
    hookTimeout: 120_000,
  },
});
