import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: { include: ['test/**/*.test.ts'], globalSetup: ['../../tools/vitest/private-tmpdir.ts'] },
});
