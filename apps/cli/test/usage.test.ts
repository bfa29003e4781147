import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const bin = fileURLToPath(new URL('../bin/mlagent.js', import.meta.url));
const root = mkdtempSync(path.join(tmpdir(), 'mlagent-usage-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

function mlagent(args: string[], env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 120_000, env: { ...process.env, ...env } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('mlagent usage errors', () => {
  it('suggests the option an unknown one was probably meant to be', () => {
    const r = mlagent(['env', 'run', '--task', 'house-prices', '--response', 'x.jsonl']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/Unknown option '--response'.* \(did you mean --responses\?\)/);
    expect(mlagent(['report', 'x', '--titel', 'T']).stderr).toContain('(did you mean --title?)');
    expect(mlagent(['tasks', 'list', '--jsno']).stderr).toContain('(did you mean --json?)');
    // Nothing close: no guess.
    expect(mlagent(['env', 'run', '--frobnicate']).stderr).not.toContain('did you mean');
  });

  it('an --out under /proc fails at once, where mkdir -p in Node would spin forever', () => {
    for (const args of [
      ['train', '--preset', 'tiny', '--out', '/proc/self/mlagent-x/run'],
      ['eval', '--expert', 'scripted', '--tasks', 'house-prices', '--trajectories', '1', '--out', '/proc/self/mlagent-x/eval'],
    ]) {
      const r = mlagent(args);
      expect(r.code, `${args[0]}: ${r.stderr}`).toBe(1);
      expect(r.stderr).toMatch(new RegExp(`^mlagent ${args[0]}: ENOENT: no such file or directory, mkdir '/proc/self/mlagent-x'`, 'm'));
    }
  });

  it('names a missing bench target and an unknown help topic', () => {
    const bench = mlagent(['bench']);
    expect(bench.code).toBe(2);
    expect(bench.stderr).toMatch(/^mlagent bench: missing target: kernels or policy/);
    const help = mlagent(['help', 'nosuch']);
    expect(help.code).toBe(2);
    expect(help.stderr).toMatch(/^mlagent help: unknown command 'nosuch' \(.*train/);
  });

  it('doctor exits 1 when the sandbox cannot run the tasks\u2019 Python, after printing its report', () => {
    const file = path.join(root, 'afile');
    writeFileSync(file, 'x');
    const r = mlagent(['doctor'], { MLAGENT_HOME: file });
    expect(r.stdout).toMatch(/^adapter /);
    expect(r.stdout).toMatch(/sandbox .*: error/);
    expect(r.code).toBe(1);
  });
});
