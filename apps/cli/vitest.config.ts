import { defineConfig } from 'vitest/config';

// Two test files at once (forks, one GPU device each): the CLI tests wait on child processes and compile
// pipelines on one thread, so two use the 2-core VM better (170 s with one file at a time, 139 s with two).
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['../../tools/vitest/private-tmpdir.ts'],
    pool: 'forks',
    poolOptions: { forks: { minForks: 1, maxForks: 2 } },
    testTimeout: 300_000,
  },
});
