import { defineConfig } from 'vitest/config';

// Two test files at once, each in a process of its own (one GPU device each): on the 2-core VM the suite took
// 166 s one file at a time and 89 s two at once, 318 s and 216 s with a cold shader cache (session 37; much of it waits on sandboxed steps). Vitest's
// default on 2 cores is one.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['../../tools/vitest/private-tmpdir.ts'],
    pool: 'forks',
    poolOptions: { forks: { minForks: 1, maxForks: 2 } },
  },
});
