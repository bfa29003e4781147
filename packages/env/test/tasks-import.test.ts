import { existsSync, lstatSync, mkdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { importTask, prepareTask, removeTree, runBaseline } from '../src/index.js';
import { tempDir } from './tasks-fixture.js';

const roots: string[] = [];
afterAll(() => roots.forEach(removeTree));

function scratch(): string {
  roots.push(tempDir('import'));
  return roots[roots.length - 1];
}

function write(file: string, text: string) {
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, text);
}

/** A fake MLAgentBench task: prepare.py writes the data into ../env and the answers next to itself. */
function fakeMlAgentBench(root: string): string {
  const src = path.join(root, 'Toy-MLAB');
  write(path.join(src, 'env', 'train.py'), "import pandas as pd\nt = pd.read_csv('test.csv')\nt['y'] = 0\nt[['id', 'y']].to_csv('submission.csv', index=False)\n");
  write(path.join(src, 'env', 'data_description.txt'), 'train.csv and test.csv with id,x(,y)\n');
  write(path.join(src, 'env', 'notes.csv'), 'shipped,data\n1,2\n');
  write(path.join(src, 'scripts', 'research_problem.txt'), 'Predict y for test.csv and save submission.csv.\n');
  write(path.join(src, 'scripts', 'read_only_files.txt'), 'train.csv\ntest.csv\nnotes.csv\n');
  write(
    path.join(src, 'scripts', 'prepare.py'),
    "open('../env/train.csv', 'w').write('id,x,y\\n1,1,2\\n2,2,4\\n')\nopen('../env/test.csv', 'w').write('id,x\\n3,3\\n4,4\\n')\nopen('answer.csv', 'w').write('id,y\\n3,6\\n4,8\\n')\n",
  );
  write(
    path.join(src, 'scripts', 'eval.py'),
    [
      'import os',
      'import pandas as pd',
      '',
      'def get_score(submission_folder="../env"):',
      "    sub = pd.read_csv(os.path.join(submission_folder, 'submission.csv'))",
      "    ans = pd.read_csv('answer.csv')",
      "    if list(sub['id']) != list(ans['id']):",
      "        raise ValueError('ids do not match')",
      "    return float((sub['y'] - ans['y']).abs().mean())",
      '',
    ].join('\n'),
  );
  return src;
}

/** A fake MLE-bench competition: prepared public/ and private/ plus a grade(submission, answers). */
function fakeMleBench(root: string): string {
  const src = path.join(root, 'toy-comp');
  write(path.join(src, 'description.md'), '# Toy competition\n\nClassify rows as 0 or 1.\n');
  write(path.join(src, 'prepared', 'public', 'train.csv'), 'id,x,label\n1,0.1,0\n2,0.9,1\n');
  write(path.join(src, 'prepared', 'public', 'test.csv'), 'id,x\n3,0.2\n4,0.8\n5,0.7\n');
  write(path.join(src, 'prepared', 'public', 'sample_submission.csv'), 'id,label\n3,1\n4,1\n5,1\n');
  write(path.join(src, 'prepared', 'private', 'test.csv'), 'id,label\n3,0\n4,1\n5,1\n');
  write(
    path.join(src, 'grade.py'),
    [
      'from mlebench.grade_helpers import InvalidSubmissionError',
      '',
      'def grade(submission, answers):',
      '    if len(submission) != len(answers):',
      "        raise InvalidSubmissionError('wrong number of rows')",
      "    merged = submission.merge(answers, on='id', suffixes=('_p', '_t'))",
      "    return float((merged['label_p'] == merged['label_t']).mean())",
      '',
    ].join('\n'),
  );
  return src;
}

describe('importTask', () => {
  it('imports an MLAgentBench task: reruns its prepare step, serves data from data/, grades with eval.py', async () => {
    const root = scratch();
    const home = path.join(root, 'home');
    expect(() => importTask(fakeMlAgentBench(root), { home })).toThrow(/do not state their metric; pass --metric NAME --direction max\|min/);
    const entry = importTask(path.join(root, 'Toy-MLAB'), { home, metric: 'mae', direction: 'minimize' });
    expect(entry.format).toBe('mlagentbench');
    expect(entry.spec).toMatchObject({ name: 'toy-mlab', metric: { name: 'mae', direction: 'minimize' }, modality: 'tabular-regression', baseline: null });
    expect(entry.dir).toBe(path.join(home, 'tasks', 'toy-mlab'));
    // Data files become links into data/, so their train.py keeps reading ./train.csv.
    expect(lstatSync(path.join(entry.dir, 'env', 'train.csv')).isSymbolicLink()).toBe(true);
    expect(readlinkSync(path.join(entry.dir, 'env', 'notes.csv'))).toBe('data/notes.csv');
    expect(existsSync(path.join(entry.dir, 'env', 'train.py'))).toBe(true);
    const task = await prepareTask('toy-mlab', { home });
    expect(readFileSync(path.join(task.publicDir, 'test.csv'), 'utf8')).toContain('3,3');
    expect(existsSync(path.join(task.publicDir, 'train.py'))).toBe(false);
    expect(existsSync(path.join(task.privateDir, 'answer.csv'))).toBe(true);
    const r = await runBaseline('toy-mlab', { home });
    expect(r).toMatchObject({ outcome: 'ok', score: 7 });
    const bad = await runBaseline('toy-mlab', { home, trainPy: "open('submission.csv', 'w').write('id,y\\n9,1\\n')\n" });
    expect(bad).toMatchObject({ outcome: 'invalid-submission', error: 'ValueError: ids do not match' });
    expect(() => importTask(path.join(root, 'Toy-MLAB'), { home, metric: 'mae', direction: 'minimize' })).toThrow(/already exists/);
  }, 60_000);

  it('imports an MLE-bench competition: sample submission as baseline, their grade() as grader', async () => {
    const root = scratch();
    const home = path.join(root, 'home');
    const entry = importTask(fakeMleBench(root), { home, metric: 'accuracy', direction: 'maximize', name: 'toy-comp' });
    expect(entry.format).toBe('mlebench');
    expect(entry.spec).toMatchObject({ title: 'Toy competition', modality: 'tabular-classification', split: 'held-out' });
    const r = await runBaseline('toy-comp', { home });
    expect(r.outcome).toBe('ok');
    expect(r.score).toBeCloseTo(2 / 3, 6);
    const short = await runBaseline('toy-comp', { home, trainPy: "open('submission.csv', 'w').write('id,label\\n3,0\\n')\n" });
    expect(short).toMatchObject({ outcome: 'invalid-submission', error: 'InvalidSubmissionError: wrong number of rows' });
  }, 60_000);

  it('explains what it accepts', () => {
    const root = scratch();
    mkdirSync(path.join(root, 'nothing'));
    expect(() => importTask(path.join(root, 'nothing'), { metric: 'mae', direction: 'minimize' })).toThrow(/neither an MLAgentBench task .* nor an MLE-bench competition/);
    write(path.join(root, 'mlab', 'env', 'train.py'), '');
    mkdirSync(path.join(root, 'mlab', 'scripts'));
    expect(() => importTask(path.join(root, 'mlab'), { home: root, metric: 'mae', direction: 'minimize' })).toThrow(/missing scripts\/research_problem.txt/);
    write(path.join(root, 'comp', 'description.md'), '# C\n');
    expect(() => importTask(path.join(root, 'comp'), { home: root, metric: 'mae', direction: 'minimize' })).toThrow(/missing public\//);
    expect(existsSync(path.join(root, 'tasks', 'comp'))).toBe(false);
  });
});
