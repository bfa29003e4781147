// A task whose steps cost only the env's fixed overheads: y = 2x on two rows, train.py writes the exact answer
// (MAE 0) without training. Shared by the `mlagent worker` CLI test and tools/bench/bench-queue.ts.
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';

/** Writes `<home>/tasks/<name>` (a user task for MLAGENT_HOME=home); `envFiles` adds scripts to env/. */
export function writeQueueToyTask(home: string, name: string, envFiles: Record<string, string> = {}): string {
  const dir = path.join(home, 'tasks', name);
  mkdirSync(path.join(dir, 'env'), { recursive: true });
  const spec = { name, title: 'Queue toy', modality: 'tabular-regression', split: 'held-in', metric: { name: 'mae', direction: 'minimize' }, baseline: 1, best: 0, budgets: { timeoutSec: 60, memoryMb: 1024, cpuSec: 60, maxProcs: 32 }, seed: 0 };
  const files: Record<string, string> = {
    'task.json': JSON.stringify(spec),
    'research_problem.md': 'Predict y = 2x.\n',
    'data_description.md': 'test.csv: id,x\n',
    'ideas.json': '[]',
    'prepare.py': `import argparse, os\np = argparse.ArgumentParser()\nfor a in ('--public', '--private', '--source', '--seed'): p.add_argument(a)\na = p.parse_args()\nopen(os.path.join(a.public, 'test.csv'), 'w').write('id,x\\n1,1\\n2,2\\n')\nopen(os.path.join(a.private, 'answers.csv'), 'w').write('id,y\\n1,2\\n2,4\\n')\n`,
    'grade.py': `import argparse, csv, json, os\np = argparse.ArgumentParser(); p.add_argument('--submission'); p.add_argument('--answers')\na = p.parse_args()\nt = {r['id']: float(r['y']) for r in csv.DictReader(open(os.path.join(a.answers, 'answers.csv')))}\ns = {r['id']: float(r['y']) for r in csv.DictReader(open(a.submission))}\nprint(json.dumps({'score': sum(abs(s[k] - t[k]) for k in t) / len(t)}))\n`,
    'env/train.py': `open('submission.csv', 'w').write('id,y\\n1,2\\n2,4\\n')\nprint('trained')\n`,
  };
  for (const [file, text] of Object.entries(files)) writeFileSync(path.join(dir, file), text);
  for (const [file, text] of Object.entries(envFiles)) writeFileSync(path.join(dir, 'env', file), text);
  return dir;
}
