import { defineConfig } from 'vitest/config';

// Two test files at once, each in a process of its own (one GPU device each): with a cold shader cache, as in CI,
// lavapipe compiles each pipeline on one thread (147 s with one file at a time, 110 s with two, on the 2-core VM).
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['../../tools/vitest/private-tmpdir.ts'],
    testTimeout: 120_000,
    // Set-up hooks load models and compile their shaders; with two files at once on 2 cores, 10 s is not enough.
    hookTimeout: 120_000,
    pool: 'forks',
    poolOptions: { forks: { minForks: 1, maxForks: 2 } },
  },
});
