import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const bin = fileURLToPath(new URL('../bin/mlagent.js', import.meta.url));
const root = mkdtempSync(path.join(tmpdir(), 'mlagent-report-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

function mlagent(...args: string[]) {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('mlagent report', () => {
  it('refuses an --sft that names no SFT output, warns of an unreadable eval*.json, and prefixes its errors', () => {
    const run = path.join(root, 'run');
    mkdirSync(run);
    writeFileSync(path.join(run, 'metrics.jsonl'), '{"step":1,"time":0,"loss":1}\n');
    const missing = mlagent('report', run, '--sft', path.join(root, 'nope'));
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain(`mlagent report: --sft ${path.join(root, 'nope')} is not a directory`);
    const empty = path.join(root, 'empty');
    mkdirSync(empty);
    expect(mlagent('report', run, '--sft', empty).stderr).toContain('holds no SFT output (metrics.jsonl, sft-summary.json or adapter/)');

    writeFileSync(path.join(run, 'eval-broken.json'), '{bad');
    const ok = mlagent('report', run);
    expect(ok.code).toBe(0);
    expect(ok.stderr).toMatch(/report: warning: .*eval-broken.json is not readable JSON/);

    const file = path.join(root, 'afile');
    writeFileSync(file, 'x');
    const notDir = mlagent('report', file);
    expect(notDir.code).toBe(2);
    expect(notDir.stderr).toMatch(/^mlagent report: /);
  });
});
