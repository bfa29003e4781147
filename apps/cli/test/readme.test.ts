import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { checkReadmeExamples, readmeExamples } from './readme-examples.js';

const bin = fileURLToPath(new URL('../bin/mlagent.js', import.meta.url));
const readme = fileURLToPath(new URL('../README.md', import.meta.url));
const root = fileURLToPath(new URL('../../..', import.meta.url));

describe('apps/cli README', () => {
  it('carries the current `mlagent --help` (regenerate with: npm run readme -w @mlagent/cli)', () => {
    const help = spawnSync(process.execPath, [bin, '--help'], { encoding: 'utf8' }).stdout.trimEnd();
    const text = readFileSync(readme, 'utf8');
    const block = /<!-- usage:start[^>]*-->\n```text\n([\s\S]*?)\n```\n<!-- usage:end -->/.exec(text);
    expect(block, 'usage markers with a text block between them').not.toBeNull();
    expect(block![1]).toBe(help);
  });
});

// The packages' READMEs show their APIs in TypeScript; each example must compile against the built packages (this
// app depends on all of them, so its tests run after their builds).
describe('package README examples', () => {
  for (const pkg of ['core-kernels', 'policy', 'env', 'reward', 'rl']) {
    it(`packages/${pkg}/README.md type-checks`, () => {
      const path = `${root}packages/${pkg}/README.md`;
      expect(readmeExamples(readFileSync(path, 'utf8')).length).toBeGreaterThan(0);
      expect(checkReadmeExamples(path, root)).toEqual([]);
    }, 60_000);
  }

  it('finds blocks and their preludes, and reports errors at README lines', () => {
    const md = ['# t', '<!-- example-prelude: declare const n: number; -->', '```ts', 'const s: string = n;', '```', '', '```ts', "import { nope } from '@mlagent/reward';", '```'].join('\n');
    expect(readmeExamples(md)).toEqual([
      { line: 4, code: 'const s: string = n;', prelude: 'declare const n: number;' },
      { line: 8, code: "import { nope } from '@mlagent/reward';", prelude: '' },
    ]);
    const errors = checkReadmeExamples(`${root}packages/reward/README.md`, root, md);
    expect(errors).toHaveLength(2);
    expect(errors[0]).toMatch(/^README\.md:4: Type 'number' is not assignable to type 'string'/);
    expect(errors[1]).toMatch(/^README\.md:8: .*has no exported member .*'nope'/);
  }, 60_000);
});
