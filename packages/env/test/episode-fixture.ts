// A tiny task for the episode tests: predict y for 4 ids (MAE, minimize); the baseline predicts 0 everywhere.
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { PreparedTask } from '../src/tasks/types.js';

const TRAIN = `import csv
rows = list(csv.DictReader(open('data/train.csv')))
print('loaded', len(rows), 'rows')
pred = PRED
with open('submission.csv', 'w') as f:
    f.write('id,y\\n')
    for i in range(4):
        f.write(f'{i},{pred}\\n')
print('done')
`;

/** train.py predicting the constant `pred` (0 in the shipped baseline). */
export function trainScript(pred: number | string): string {
  return TRAIN.replace('PRED', String(pred));
}

const GRADE = `import argparse, csv, json, sys
p = argparse.ArgumentParser()
p.add_argument('--submission'); p.add_argument('--answers')
a = p.parse_args()
try:
    sub = {r['id']: float(r['y']) for r in csv.DictReader(open(a.submission))}
except Exception as e:
    print(json.dumps({'error': f'cannot read the submission: {e}'})); sys.exit(2)
ans = {r['id']: float(r['y']) for r in csv.DictReader(open(a.answers + '/answers.csv'))}
if set(sub) != set(ans):
    print(json.dumps({'error': 'the ids do not match'})); sys.exit(2)
print(json.dumps({'score': sum(abs(sub[k] - ans[k]) for k in ans) / len(ans)}))
`;

export interface Fixture {
  root: string;
  task: PreparedTask;
  cleanup(): void;
}

/** Builds the task under a fresh temp dir: task dir (env/, grade.py), prepared public/ and private/ data. */
export function makeFixtureTask(budgets: Partial<PreparedTask['spec']['budgets']> = {}): Fixture {
  const root = mkdtempSync(path.join(os.tmpdir(), 'mlagent-ep-test-'));
  const dir = path.join(root, 'tasks', 'tiny');
  const envDir = path.join(dir, 'env');
  const publicDir = path.join(root, 'cache', 'tiny', 'public');
  const privateDir = path.join(root, 'cache', 'tiny', 'private');
  for (const d of [envDir, publicDir, privateDir]) mkdirSync(d, { recursive: true });
  writeFileSync(path.join(envDir, 'train.py'), trainScript(0));
  writeFileSync(path.join(dir, 'grade.py'), GRADE);
  writeFileSync(path.join(publicDir, 'train.csv'), 'id,x,y\n0,1,2\n1,2,4\n');
  writeFileSync(path.join(privateDir, 'answers.csv'), 'id,y\n0,1\n1,1\n2,1\n3,1\n');
  const task: PreparedTask = {
    spec: {
      name: 'tiny',
      title: 'Tiny',
      modality: 'tabular-regression',
      split: 'held-in',
      metric: { name: 'mae', direction: 'minimize' },
      baseline: 1,
      best: 0,
      budgets: { timeoutSec: 20, memoryMb: 512, cpuSec: 20, maxProcs: 64, ...budgets },
      seed: 0,
    },
    dir,
    researchProblem: 'Predict y for every id of the test set; write submission.csv with columns id,y.',
    dataDescription: 'train.csv: id, x, y.',
    envDir,
    publicDir,
    privateDir,
    ideas: [],
    grade: (submissionPath) =>
      new Promise((resolve) => {
        execFile('/usr/bin/python3', [path.join(dir, 'grade.py'), '--submission', submissionPath, '--answers', privateDir], (err, stdout) => {
          try {
            const j = JSON.parse(stdout.trim().split('\n').pop() ?? '') as { score?: number; error?: string };
            if (typeof j.score === 'number') resolve({ ok: true, score: j.score });
            else resolve({ ok: false, error: j.error ?? `grader failed: ${err?.message ?? 'no score'}` });
          } catch {
            resolve({ ok: false, error: `grader printed no JSON: ${stdout}` });
          }
        });
      }),
  };
  return { root, task, cleanup: () => rmSync(root, { recursive: true, force: true }) };
}

/** A response in the agent's format with the given action and input. */
export function respond(action: string, input: Record<string, unknown>, thought = 'next step'): string {
  return `Reflection: ok\nResearch Plan and Status: working\nFact Check: none\nThought: ${thought}\nAction: ${action}\nAction Input: ${JSON.stringify(input)}`;
}
