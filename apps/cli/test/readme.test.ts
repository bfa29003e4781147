import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const bin = fileURLToPath(new URL('../bin/mlagent.js', import.meta.url));
const readme = fileURLToPath(new URL('../README.md', import.meta.url));

describe('apps/cli README', () => {
  it('carries the current `mlagent --help` (regenerate with: npm run readme -w @mlagent/cli)', () => {
    const help = spawnSync(process.execPath, [bin, '--help'], { encoding: 'utf8' }).stdout.trimEnd();
    const text = readFileSync(readme, 'utf8');
    const block = /<!-- usage:start[^>]*-->\n```text\n([\s\S]*?)\n```\n<!-- usage:end -->/.exec(text);
    expect(block, 'usage markers with a text block between them').not.toBeNull();
    expect(block![1]).toBe(help);
  });
});
