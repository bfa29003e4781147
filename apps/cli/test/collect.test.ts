// mlagent collect: argument errors, and a kill -9 in the middle of a real collection followed by a resume.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const bin = fileURLToPath(new URL('../bin/mlagent.js', import.meta.url));

function mlagent(...args: string[]) {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 240_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const ARGS = (out: string) => ['collect', '--tasks', 'house-prices', '--expert', 'scripted', '--trajectories', '2', '--ideas', '3', '--max-steps', '8', '--out', out];

function records(file: string): { type: string; trajectory: string; step?: number }[] {
  return readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
}

describe('mlagent collect', () => {
  it('names what is wrong with its arguments', () => {
    const out = mkdtempSync(path.join(tmpdir(), 'cli-collect-'));
    expect(mlagent('collect', '--tasks', 'house-prices', '--expert', 'scripted', '--trajectories', '1', '--ideas', '2').stderr).toMatch(/--out DIR is required/);
    expect(mlagent('collect', '--tasks', 'house-prices', '--expert', 'scripted', '--trajectories', '0', '--ideas', '2', '--out', out).stderr).toMatch(
      /--trajectories must be an integer >= 1, got '0'/,
    );
    expect(mlagent('collect', '--tasks', 'house-prices', '--expert', 'gpt', '--trajectories', '1', '--ideas', '2', '--out', out).stderr).toMatch(
      /--expert must be 'scripted' or an http\(s\) URL/,
    );
    expect(mlagent('collect', '--tasks', 'house-prices', '--expert', 'http://127.0.0.1:9', '--trajectories', '1', '--ideas', '2', '--out', out).stderr).toMatch(
      /needs --expert-model/,
    );
    const base = ['collect', '--tasks', 'house-prices', '--expert', 'scripted', '--trajectories', '1', '--out', out];
    expect(mlagent(...base, '--ideas', '5', '--candidates', '2').stderr).toMatch(/--ideas 5 keeps more ideas than the --candidates 2 it picks them from/);
    expect(mlagent(...base, '--ideas', '2', '--expert-model', 'gpt').stderr).toMatch(/the scripted expert takes none/);
    // Exports are written after the whole collection: their paths are checked before it starts.
    expect(mlagent(...base, '--ideas', '2', '--sharegpt', '/no/such/dir/sg.json').stderr).toMatch(/--sharegpt \/no\/such\/dir\/sg.json: the directory \/no\/such\/dir does not exist/);
    expect(mlagent(...base, '--ideas', '2', '--sft-steps', out).stderr).toMatch(/--sft-steps .* is a directory, not a file/);
    const r = mlagent('collect', '--tasks', 'no-such-task', '--expert', 'scripted', '--trajectories', '1', '--ideas', '2', '--out', out);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/cannot load task 'no-such-task'/);
  });

  it('resumes a collection killed with SIGKILL without duplicates, and exports ShareGPT', async () => {
    const out = mkdtempSync(path.join(tmpdir(), 'cli-collect-'));
    const steps = path.join(out, 'steps.jsonl');
    // Kill once the first trajectory has ended and the second has written a step.
    const child = spawn(process.execPath, [bin, ...ARGS(out)], { stdio: 'ignore' });
    const killedEarly = await new Promise<boolean>((resolve) => {
      const timer = setInterval(() => {
        const rs = existsSync(steps) ? readFileSync(steps, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l)) : [];
        if (rs.some((r) => r.type === 'end') && rs.some((r) => r.trajectory.endsWith('0001'))) {
          clearInterval(timer);
          child.kill('SIGKILL');
          resolve(true);
        }
      }, 100);
      child.on('exit', () => {
        clearInterval(timer);
        resolve(false);
      });
    });
    expect(killedEarly).toBe(true);
    if (child.exitCode === null && child.signalCode === null) await new Promise((r) => child.once('exit', r));
    const before = records(steps);
    expect(before.filter((r) => r.type === 'end')).toHaveLength(1);

    const r = mlagent(...ARGS(out), '--sharegpt', path.join(out, 'sft.json'));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/collected 1 trajectories \(1 already there\), 2\/2 done/);
    expect(r.stdout).toMatch(/dropped \d+ lines of incomplete trajectories/);
    expect(r.stdout).toMatch(/wrote 2 ShareGPT conversations/);
    const after = records(steps);
    const keys = after.map((x) => `${x.type} ${x.trajectory} ${x.step ?? ''}`);
    expect(new Set(keys).size).toBe(keys.length);
    expect(after.filter((x) => x.type === 'end').map((x) => x.trajectory).sort()).toEqual(['house-prices/0000', 'house-prices/0001']);
    // The first trajectory's lines are kept as they were.
    const first = (rs: typeof after) => rs.filter((x) => x.trajectory === 'house-prices/0000').map((x) => JSON.stringify(x));
    expect(first(after)).toEqual(first(before));
    expect(JSON.parse(readFileSync(path.join(out, 'sft.json'), 'utf8'))).toHaveLength(2);
    expect(existsSync(path.join(out, 'dataset_info.json'))).toBe(true);
    expect(existsSync(path.join(out, '.lock'))).toBe(false);
  }, 170_000);
});
