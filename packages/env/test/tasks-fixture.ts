import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

/** A valid task.json for fixtures; override fields to make it invalid. */
export function toySpec(name: string, extra: Record<string, unknown> = {}) {
  return {
    name,
    title: 'Toy regression',
    modality: 'tabular-regression',
    split: 'held-in',
    metric: { name: 'mae', direction: 'minimize' },
    baseline: 1.0,
    best: 0.5,
    budgets: { timeoutSec: 60, memoryMb: 1024, cpuSec: 60, maxProcs: 32 },
    seed: 0,
    ...extra,
  };
}

/**
 * prepare.py: 10 rows y = 2x; appends a line to $TOY_COUNTER per run; fails when $TOY_FAIL is set; with
 * $TOY_RACE, plays another process that finishes the same cache entry first (writes it complete, with winner.txt).
 */
const PREPARE = `import argparse, os, sys
p = argparse.ArgumentParser()
for a in ('--public', '--private', '--source'): p.add_argument(a)
p.add_argument('--seed', type=int)
a = p.parse_args()
if os.environ.get('TOY_COUNTER'):
    open(os.environ['TOY_COUNTER'], 'a').write('run\\n')
open(os.path.join(a.public, 'train.csv'), 'w').write('id,x,y\\n' + ''.join(f'{i},{i},{2 * i + a.seed}\\n' for i in range(10)))
if os.environ.get('TOY_RACE'):
    tmp = os.path.dirname(os.path.abspath(a.public))
    final = os.path.join(os.path.dirname(tmp), os.path.basename(tmp)[len('.tmp-'):].rsplit('-', 2)[0])
    for d in ('public', 'private'):
        os.makedirs(os.path.join(final, d))
    open(os.path.join(final, 'public', 'winner.txt'), 'w').write('other process')
if os.environ.get('TOY_FAIL'):
    sys.exit('toy prepare failed on purpose')
open(os.path.join(a.public, 'test.csv'), 'w').write('id,x\\n' + ''.join(f'{i},{i}\\n' for i in range(10, 15)))
open(os.path.join(a.private, 'answers.csv'), 'w').write('id,y\\n' + ''.join(f'{i},{2 * i + a.seed}\\n' for i in range(10, 15)))
`;

const GRADE = `import argparse, csv, json, os, sys
p = argparse.ArgumentParser()
p.add_argument('--submission'); p.add_argument('--answers')
a = p.parse_args()
truth = {r['id']: float(r['y']) for r in csv.DictReader(open(os.path.join(a.answers, 'answers.csv')))}
try:
    rows = list(csv.DictReader(open(a.submission)))
    pred = {r['id']: float(r['y']) for r in rows}
except Exception as e:
    print(json.dumps({'error': f'unreadable submission: {e}'})); sys.exit(2)
if sorted(pred) != sorted(truth):
    print(json.dumps({'error': f'expected ids {sorted(truth)}'})); sys.exit(2)
print(json.dumps({'score': sum(abs(pred[k] - truth[k]) for k in truth) / len(truth)}))
`;

const TRAIN = `import csv
rows = list(csv.DictReader(open('data/test.csv')))
with open('submission.csv', 'w') as f:
    f.write('id,y\\n' + ''.join(f"{r['id']},{2 * int(r['x']) + 1}\\n" for r in rows))
print('wrote submission.csv')
`;

/** Writes a complete toy task directory `<root>/<name>` and returns its path. */
export function writeToyTask(root: string, name = 'toy', spec: Record<string, unknown> = toySpec(name)): string {
  const dir = path.join(root, name);
  mkdirSync(path.join(dir, 'env'), { recursive: true });
  writeFileSync(path.join(dir, 'task.json'), JSON.stringify(spec));
  writeFileSync(path.join(dir, 'research_problem.md'), 'Predict y from x.\n');
  writeFileSync(path.join(dir, 'data_description.md'), 'train.csv: id,x,y; test.csv: id,x\n');
  writeFileSync(path.join(dir, 'prepare.py'), PREPARE);
  writeFileSync(path.join(dir, 'grade.py'), GRADE);
  writeFileSync(path.join(dir, 'env', 'train.py'), TRAIN);
  writeFileSync(
    path.join(dir, 'ideas.json'),
    JSON.stringify([{ idea: 'Predict 2x exactly', edits: [{ find: "2 * int(r['x']) + 1", replace: "2 * int(r['x'])" }] }]),
  );
  return dir;
}

export function tempDir(prefix: string): string {
  return mkdtempSync(path.join(tmpdir(), `mlagent-${prefix}-`));
}
