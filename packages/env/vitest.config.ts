import { defineConfig } from 'vitest/config';

// Two test files at once, each in a process of its own: most of these tests wait on sandboxed Python and its
// time limits rather than use a core, so on the 2-core VM the suite took 180 s one file at a time and 84 s two at
// once (session 37). Vitest's default on 2 cores is one.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['../../tools/vitest/private-tmpdir.ts'],
    pool: 'forks',
    poolOptions: { forks: { minForks: 1, maxForks: 2 } },
  },
});
