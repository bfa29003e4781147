import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const bin = fileURLToPath(new URL('../bin/mlagent.js', import.meta.url));

let root: string;
let taskDir: string;
let env: NodeJS.ProcessEnv;

function mlagent(args: string[], input?: string) {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 60_000, env, input });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const line = (action: string, input: object) => JSON.stringify({ response: `Thought: go\nAction: ${action}\nAction Input: ${JSON.stringify(input)}` });

/** A native-format task: predict y = 1 for 3 ids (MAE); the baseline predicts 0. */
function writeTask(dir: string): void {
  mkdirSync(path.join(dir, 'env'), { recursive: true });
  const spec = {
    name: 'tiny-cli',
    title: 'Tiny CLI task',
    modality: 'tabular-regression',
    split: 'held-in',
    metric: { name: 'mae', direction: 'minimize' },
    baseline: 1,
    best: 0,
    budgets: { timeoutSec: 20, memoryMb: 512, cpuSec: 20, maxProcs: 64 },
    seed: 0,
  };
  writeFileSync(path.join(dir, 'task.json'), JSON.stringify(spec));
  writeFileSync(path.join(dir, 'research_problem.md'), 'Predict y for each id; write submission.csv (id,y).\n');
  writeFileSync(path.join(dir, 'data_description.md'), 'test.csv: id\n');
  writeFileSync(
    path.join(dir, 'prepare.py'),
    [
      'import argparse, os',
      'p = argparse.ArgumentParser()',
      "for a in ['--public', '--private', '--seed', '--source']: p.add_argument(a)",
      'a = p.parse_args()',
      "open(os.path.join(a.public, 'test.csv'), 'w').write('id\\n0\\n1\\n2\\n')",
      "open(os.path.join(a.private, 'answers.csv'), 'w').write('id,y\\n0,1\\n1,1\\n2,1\\n')",
    ].join('\n'),
  );
  writeFileSync(
    path.join(dir, 'grade.py'),
    [
      'import argparse, csv, json, sys',
      'p = argparse.ArgumentParser(); p.add_argument("--submission"); p.add_argument("--answers"); a = p.parse_args()',
      'sub = {r["id"]: float(r["y"]) for r in csv.DictReader(open(a.submission))}',
      'ans = {r["id"]: float(r["y"]) for r in csv.DictReader(open(a.answers + "/answers.csv"))}',
      'if set(sub) != set(ans): print(json.dumps({"error": "ids differ"})); sys.exit(2)',
      'print(json.dumps({"score": sum(abs(sub[k] - ans[k]) for k in ans) / len(ans)}))',
    ].join('\n'),
  );
  writeFileSync(
    path.join(dir, 'env', 'train.py'),
    "ids = open('data/test.csv').read().split()[1:]\npred = 0\nopen('submission.csv', 'w').write('id,y\\n' + ''.join(f'{i},{pred}\\n' for i in ids))\nprint('wrote', len(ids))\n",
  );
}

beforeAll(() => {
  root = mkdtempSync(path.join(os.tmpdir(), 'mlagent-cli-env-'));
  taskDir = path.join(root, 'tiny-cli');
  writeTask(taskDir);
  // The same task in the user's task store, to be found by name.
  writeTask(path.join(root, 'home', 'tasks', 'tiny-cli'));
  env = { ...process.env, MLAGENT_HOME: path.join(root, 'home') };
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('mlagent env', () => {
  it('run --json plays a trajectory from a task directory, then continues from a saved state', () => {
    const file = path.join(root, 'traj.jsonl');
    writeFileSync(
      file,
      [
        line('List Files', { dir_path: '.' }),
        '',
        line('Edit Script Lines', { script_name: 'train.py', start_line_number: 2, end_line_number: 2, new_content: 'pred = 0.5' }),
        line('Execute Script', { script_name: 'train.py' }),
        JSON.stringify({ response: 'no action here' }),
      ].join('\n'),
    );
    const r = mlagent(['env', 'run', '--task', taskDir, '--responses', file, '--json']);
    expect(r.stderr).toMatch(/final state: [0-9a-f]{64}/);
    expect(r.code).toBe(0);
    const steps = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(steps.map((s) => [s.step, s.action, s.outcome])).toEqual([
      [1, 'List Files', 'none'],
      [2, 'Edit Script Lines', 'none'],
      [3, 'Execute Script', 'ok'],
      [4, null, 'parse-error'],
    ]);
    expect(steps[0].observation).toBe('data/\ndata_description.txt\ntrain.py\n');
    expect(steps[2].metric).toBe(0.5);
    expect(steps[2].feedback).toMatchObject({ formatValid: true, isEdit: false, outcome: 'ok', metric: 0.5, previousMetric: 1 });
    expect(steps[1].feedback.isEdit).toBe(true);
    expect(steps[3].feedback.formatValid).toBe(false);

    // Continue from the state after the edit: the next run is graded with the edited script.
    const more = path.join(root, 'more.jsonl');
    writeFileSync(more, line('Execute Script', { script_name: 'train.py' }) + '\n');
    const c = mlagent(['env', 'run', '--task', taskDir, '--responses', more, '--json', '--state', steps[1].snapshotId.slice(0, 12)]);
    expect(c.code).toBe(0);
    const next = JSON.parse(c.stdout.trim());
    expect(next).toMatchObject({ step: 3, action: 'Execute Script', outcome: 'ok', metric: 0.5 });

    // Counted from the responses this run played, not the state's step; a state that ends its episode is refused.
    writeFileSync(more, [1, 2, 3].map(() => line('List Files', { dir_path: '.' })).join('\n') + '\n');
    const last = mlagent(['env', 'run', '--task', taskDir, '--responses', more, '--json', '--max-steps', '3', '--state', steps[1].snapshotId.slice(0, 12)]);
    expect(last.code).toBe(0);
    expect(last.stderr).toContain('env run: the episode ended; 2 of 3 responses left unplayed');
    const final = /final state: ([0-9a-f]{64})/.exec(last.stderr)![1];
    const none = mlagent(['env', 'run', '--task', taskDir, '--responses', more, '--max-steps', '3', '--state', final]);
    expect(none.code).toBe(2);
    expect(none.stderr).toContain(`env run: state ${final} ends its episode (after step 3); nothing can be played from it`);
  }, 60_000);

  it('run --store-max-size bounds the store: a script’s junk past it is left out of the saved state, with a warning', async () => {
    const file = path.join(root, 'junk.jsonl');
    const script = "open('junk.bin', 'wb').write(b'j' * 200000)\nprint('junk written')\n";
    writeFileSync(file, [line('Write File', { file_name: 'junk.py', content: script }), line('Execute Script', { script_name: 'junk.py' })].join('\n'));
    const store = path.join(root, 'small-store');
    const r = mlagent(['env', 'run', '--task', taskDir, '--responses', file, '--json', '--store', store, '--store-max-size', '64K']);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/the snapshot store is full \(\d+ of its 65536 bytes used\) at .*small-store: new file contents are left out/);
    const steps = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(steps[1].observation).toContain('junk written');
    const { SnapshotStore } = await import('@mlagent/env');
    const state = await new SnapshotStore(store).load(steps[1].snapshotId);
    expect(state.omitted.map((o) => o.path)).toEqual(['junk.bin']);
    expect(state.files.map((f) => f.path)).toContain('junk.py');

    for (const bad of ['0', '12 apples', '-5G', '1e3', '']) {
      const b = mlagent(['env', 'run', '--task', taskDir, '--responses', file, `--store-max-size=${bad}`]);
      expect(b.stderr, bad).toContain(`env: --store-max-size must be a size such as 500M, 20G or 1T, got '${bad}'`);
      expect(b.code, bad).toBe(2);
    }
    const s = mlagent(['env', 'serve', '--port', '0', '--store-max-size', '2X']);
    expect(s.stderr).toContain("env serve: --store-max-size must be a size such as 500M, 20G or 1T, got '2X'");
    expect(s.code).toBe(2);
  }, 60_000);

  it('shell finds a task by name and plays typed responses (shorthand or fields), printing observations', () => {
    const input = ['List Files {"dir_path": "data"}', '', 'Action: Read File', 'Action Input: {"file_name": "data_description.txt"}', '', ':state', ':quit', ''].join('\n');
    const r = mlagent(['env', 'shell', '--task', 'tiny-cli'], input);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^Research Problem: Predict y/);
    expect(r.stdout).toContain('--- step 1: List Files -> none\ntest.csv\n');
    expect(r.stdout).toContain('--- step 2: Read File -> none\ntest.csv: id\n');
    expect(r.stdout).toMatch(/state [0-9a-f]{64}, step 2, metric 1/);
  }, 60_000);

  it('rejects bad usage and bad input files with clear messages', () => {
    expect(mlagent(['env']).stderr).toMatch(/env: expected 'run', 'shell', 'serve', 'states' or 'prune', got nothing/);
    expect(mlagent(['env', 'run', '--responses', 'x.jsonl']).stderr).toMatch(/--task NAME\|DIR is required/);
    expect(mlagent(['env', 'run', '--task', taskDir]).stderr).toMatch(/--responses FILE.jsonl is required/);
    const bad = path.join(root, 'bad.jsonl');
    writeFileSync(bad, line('List Files', { dir_path: '.' }) + '\n{"resp": 1}\n');
    const r = mlagent(['env', 'run', '--task', taskDir, '--responses', bad]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/bad.jsonl line 2 must be \{"response": "<model text>"\}/);
    const good = path.join(root, 'good.jsonl');
    writeFileSync(good, line('List Files', { dir_path: '.' }) + '\n');
    expect(mlagent(['env', 'run', '--task', taskDir, '--responses', good, '--max-steps', '0']).stderr).toMatch(/--max-steps must be a positive integer/);
    expect(mlagent(['env', 'shell', '--task', taskDir, '--state', 'nothex']).stderr).toMatch(/not a state id/);
    const empty = path.join(root, 'empty.jsonl');
    writeFileSync(empty, '\n');
    expect(mlagent(['env', 'run', '--task', taskDir, '--responses', empty]).stderr).toContain(`env run: ${empty} holds no responses`);
  }, 60_000);
});
