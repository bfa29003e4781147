import { defineConfig } from 'vitest/config';

// One test file at a time. Two at once took 139 s instead of 170 (session 21), but these tests run sandboxed Python
// under time limits and GPU work next to each other; 30 s of CI are not worth a flaky landing. (The one flake seen
// then, a profile-ranking check in bench-policy.test.ts, now checks the JSON profile instead.)
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['../../tools/vitest/private-tmpdir.ts'],
    pool: 'forks',
    fileParallelism: false,
    testTimeout: 300_000,
    // Set-up hooks start redis-server and workers and build models; they wait on their own terms.
    hookTimeout: 120_000,
  },
});
