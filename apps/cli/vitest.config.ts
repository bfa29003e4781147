import { defineConfig } from 'vitest/config';

// Two test files at once, each in a process of its own. Session 21 kept one at a time (139 s against 170 then) for
// fear of flaky time limits with sandboxed Python and GPU work side by side; in session 37 the suite took 176 and
// 184 s two at once against 273 s one at a time on the 2-core VM, passing every time, and CI was near 20 minutes.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['../../tools/vitest/private-tmpdir.ts'],
    pool: 'forks',
    poolOptions: { forks: { minForks: 1, maxForks: 2 } },
    testTimeout: 300_000,
    // Set-up hooks start redis-server and workers and build models; they wait on their own terms.
    hookTimeout: 120_000,
  },
});
