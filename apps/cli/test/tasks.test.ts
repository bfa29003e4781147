import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { removeTree } from '@mlagent/env';
import { afterAll, describe, expect, it } from 'vitest';

const bin = fileURLToPath(new URL('../bin/mlagent.js', import.meta.url));
const home = mkdtempSync(path.join(tmpdir(), 'mlagent-cli-tasks-'));
afterAll(() => removeTree(home));

function mlagent(...args: string[]) {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 240_000, env: { ...process.env, MLAGENT_HOME: home } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function write(file: string, text: string) {
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, text);
}

describe('mlagent tasks', () => {
  it('list --json shows the built-in tabular tasks with their metrics', () => {
    const r = mlagent('tasks', 'list', '--json');
    expect(r.code).toBe(0);
    const rows = JSON.parse(r.stdout) as Record<string, unknown>[];
    const house = rows.find((t) => t.name === 'house-prices');
    expect(house).toMatchObject({ split: 'held-in', modality: 'tabular-regression', metric: 'mae', direction: 'minimize', origin: 'built-in' });
    expect(typeof house!.baseline).toBe('number');
    expect(rows.find((t) => t.name === 'patent-phrase-matching')).toMatchObject({ split: 'held-out', metric: 'pcc', direction: 'maximize' });
    expect(mlagent('tasks', 'list').stdout).toMatch(/^name\s+split\s+modality\s+metric\s+direction\s+baseline\s+best/);
  });

  it('show prints metadata, problem and ideas', () => {
    const r = mlagent('tasks', 'show', 'spaceship-titanic');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/metric\s+accuracy \(maximize\)/);
    expect(r.stdout).toMatch(/budgets\s+\d+ s wall, \d+ MiB, \d+ CPU-s, \d+ processes, 2048 MiB of workspace disk/);
    expect(r.stdout).toMatch(/Research problem:\n.*spacetime anomaly/);
    expect(r.stdout).toMatch(/Ideas \(\d+\):\n {2}1\. /);
  });

  it('baseline --json prints exactly task, metric, direction, score, outcome, seconds, error', () => {
    const r = mlagent('tasks', 'baseline', 'house-prices', '--json');
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout);
    expect(Object.keys(report)).toEqual(['task', 'metric', 'direction', 'score', 'outcome', 'seconds', 'error']);
    // The whole report in the message: a failed run says why in its error.
    expect(report, r.stdout).toMatchObject({ task: 'house-prices', metric: 'mae', direction: 'minimize', outcome: 'ok', error: null });
    expect(report.score).toBeCloseTo(3554.84, 1);
    expect(report.seconds).toBeGreaterThan(0);
  });

  it('imports an MLE-bench competition and lists it as a user task', () => {
    const src = path.join(home, 'src', 'tiny-comp');
    write(path.join(src, 'description.md'), '# Tiny competition\n');
    write(path.join(src, 'public', 'test.csv'), 'id\n1\n2\n');
    write(path.join(src, 'public', 'sample_submission.csv'), 'id,y\n1,0\n2,0\n');
    write(path.join(src, 'private', 'answers.csv'), 'id,y\n1,0\n2,1\n');
    write(path.join(src, 'grade.py'), "def grade(submission, answers):\n    return float((submission['y'] == answers['y']).mean())\n");
    expect(mlagent('tasks', 'import', src, '--metric', 'accuracy').stderr).toMatch(/pass --metric NAME --direction max\|min/);
    expect(mlagent('tasks', 'import', src, '--metric', 'accuracy', '--direction', 'up').stderr).toMatch(/--direction must be max or min, got 'up'/);
    // A built-in task's name would be shadowed, and the messages say "import" once.
    const taken = mlagent('tasks', 'import', src, '--metric', 'accuracy', '--direction', 'max', '--name', 'house-prices');
    expect(taken.code).toBe(2);
    expect(taken.stderr).toContain("mlagent tasks import: 'house-prices' is the name of a built-in task; pass another --name");
    expect(existsSync(path.join(home, 'tasks', 'house-prices'))).toBe(false);
    const r = mlagent('tasks', 'import', src, '--metric', 'accuracy', '--direction', 'max');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/imported mlebench task 'tiny-comp'/);
    const rows = JSON.parse(mlagent('tasks', 'list', '--json').stdout) as Record<string, unknown>[];
    expect(rows.find((t) => t.name === 'tiny-comp')).toMatchObject({ origin: 'user', metric: 'accuracy', baseline: null });
    const b = JSON.parse(mlagent('tasks', 'baseline', 'tiny-comp', '--json').stdout);
    expect(b).toMatchObject({ outcome: 'ok', score: 0.5 });

    // A train.py that crashes: exit 1, and the JSON carries the traceback's last line.
    const train = path.join(home, 'tasks', 'tiny-comp', 'env', 'train.py');
    writeFileSync(train, "raise ValueError('no features today')\n");
    const failed = mlagent('tasks', 'baseline', 'tiny-comp', '--json');
    expect(failed.code, failed.stderr).toBe(1);
    expect(JSON.parse(failed.stdout)).toMatchObject({ outcome: 'error', score: null, error: expect.stringMatching(/ValueError: no features today/) });

    // An imported MLAgentBench task whose env/ has no data cannot be prepared: one line, no stack trace.
    const mab = path.join(home, 'src', 'no-data');
    write(path.join(mab, 'env', 'train.py'), 'print(1)\n');
    write(path.join(mab, 'scripts', 'research_problem.txt'), 'Predict y.\n');
    write(path.join(mab, 'scripts', 'eval.py'), 'def get_score(submission_folder="."):\n    return 1.0\n');
    expect(mlagent('tasks', 'import', mab, '--metric', 'rmse', '--direction', 'min').code).toBe(0);
    const empty = mlagent('tasks', 'baseline', 'no-data');
    expect(empty.code).toBe(2);
    expect(empty.stderr).toMatch(/\nmlagent tasks baseline: prepare.py of task 'no-data' wrote nothing into --public/);
    expect(empty.stderr).not.toMatch(/\n\s+at /);
  });

  it('rejects unknown tasks and subcommands with usage errors', () => {
    const r = mlagent('tasks', 'show', 'no-such-task');
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/unknown task 'no-such-task' \(known: .*house-prices/);
    expect(mlagent('tasks', 'frobnicate').stderr).toMatch(/unknown subcommand 'frobnicate'/);
    expect(mlagent('tasks', 'baseline').stderr).toMatch(/expected exactly one task name, got none/);
    expect(mlagent('tasks', 'list', '--bogus').code).toBe(2);
  });
});
