import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { applyIdea, DEFAULT_DISK_MB, listTasks, prepareTask, removeTree, resolveTask, runBaseline, taskSandboxLimits, TaskFormatError, validateIdeas, validateTaskSpec } from '../src/index.js';
import { tempDir, toySpec, writeToyTask } from './tasks-fixture.js';

describe('validateTaskSpec', () => {
  it('accepts a valid spec', () => {
    expect(validateTaskSpec(toySpec('toy')).name).toBe('toy');
  });

  it('names every bad field in one error', () => {
    const bad = {
      ...toySpec('Bad Name'),
      modality: 'tabular',
      split: 'train',
      metric: { name: '', direction: 'up' },
      baseline: 'high',
      budgets: { timeoutSec: 0, memoryMb: 1.5, cpuSec: 10, diskMb: 0 },
      seed: -1,
      colour: 'red',
    };
    let err: TaskFormatError | undefined;
    try {
      validateTaskSpec(bad, 'x/task.json');
    } catch (e) {
      err = e as TaskFormatError;
    }
    expect(err).toBeInstanceOf(TaskFormatError);
    const m = err!.message;
    for (const s of [
      "unknown field 'colour'",
      "'name' must be lowercase",
      "'modality' must be one of",
      "'split' must be 'held-in' or 'held-out'",
      "'metric.name' must be",
      "'metric.direction' must be 'maximize' or 'minimize'",
      "'baseline' must be a finite number or null",
      "'budgets.timeoutSec' must be a positive integer",
      "'budgets.memoryMb' must be a positive integer",
      "'budgets.maxProcs' must be a positive integer, got nothing",
      "'budgets.diskMb' must be a positive integer, got 0",
      "'seed' must be a non-negative integer",
    ]) {
      expect(m).toContain(s);
    }
    expect(m.startsWith('x/task.json')).toBe(true);
    expect(() => validateTaskSpec([])).toThrow(/must be a JSON object/);
    expect(() => validateTaskSpec({ ...toySpec('t'), baseline: 2, best: 2 })).toThrow(/best' equals 'baseline'/);
    // diskMb is optional (DEFAULT_DISK_MB), and a task may set it.
    const spec = toySpec('t');
    expect(validateTaskSpec({ ...spec, budgets: { ...spec.budgets, diskMb: 512 } }).budgets.diskMb).toBe(512);
    expect(validateTaskSpec(spec).budgets.diskMb).toBeUndefined();
    expect(taskSandboxLimits(spec.budgets).diskBytes).toBe(DEFAULT_DISK_MB * 2 ** 20);
    expect(taskSandboxLimits({ ...spec.budgets, diskMb: 512 }).diskBytes).toBe(512 * 2 ** 20);
  });

  it('checks ideas.json and applies ideas exactly once', () => {
    const src = 'a = 1\nb = 2\n';
    expect(() => validateIdeas({}, 'ideas.json')).toThrow(/must be a JSON array/);
    expect(() => validateIdeas([{ idea: 'x', edits: [{ find: 'c = 3', replace: '' }] }], 'ideas.json', src)).toThrow(/occurs 0 times/);
    expect(() => validateIdeas([{ idea: '', edits: [] }])).toThrow(/\[0\]\.idea must be a non-empty string/);
    const idea = { idea: 'b is 3', edits: [{ find: 'b = 2', replace: 'b = 3' }] };
    expect(applyIdea(src, idea)).toBe('a = 1\nb = 3\n');
    expect(() => applyIdea('b = 2\nb = 2\n', idea)).toThrow(/occurs 2 times/);
  });
});

describe('registry', () => {
  it('lists built-in and user tasks, reports broken ones, resolves by name or path', () => {
    const home = tempDir('home');
    writeToyTask(path.join(home, 'tasks'), 'toy');
    mkdirSync(path.join(home, 'tasks', 'broken'), { recursive: true });
    const { tasks, invalid } = listTasks({ home });
    expect(tasks.find((t) => t.spec.name === 'house-prices')?.origin).toBe('built-in');
    expect(tasks.find((t) => t.spec.name === 'toy')?.origin).toBe('user');
    expect(invalid.find((i) => i.dir.endsWith('broken'))?.error).toMatch(/missing task.json/);
    expect(resolveTask('toy', { home }).dir).toBe(path.join(home, 'tasks', 'toy'));
    expect(() => resolveTask('nope', { home })).toThrow(/unknown task 'nope' \(known: .*house-prices/);
    writeToyTask(home, 'misnamed', toySpec('other'));
    expect(() => resolveTask(path.join(home, 'misnamed'), { home })).toThrow(/'name' is "other" but the directory is named "misnamed"/);
  });
});

describe('prepareTask and grading', () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) removeTree(d);
    delete process.env.TOY_COUNTER;
    delete process.env.TOY_FAIL;
    delete process.env.TOY_RACE;
  });

  it('prepares once per (contents, seed), read-only, even for concurrent callers', async () => {
    const home = tempDir('home');
    dirs.push(home);
    const dir = writeToyTask(home, 'toy');
    process.env.TOY_COUNTER = path.join(home, 'count');
    const [a, b] = await Promise.all([prepareTask(dir, { home }), prepareTask(dir, { home })]);
    expect(a.publicDir).toBe(b.publicDir);
    expect(readFileSync(process.env.TOY_COUNTER, 'utf8')).toBe('run\n');
    expect(a.publicDir).toMatch(new RegExp(`cache/tasks/toy-[0-9a-f]{16}/public$`));
    expect(statSync(path.join(a.publicDir, 'train.csv')).mode & 0o777).toBe(0o444);
    expect(statSync(a.publicDir).mode & 0o777).toBe(0o555);
    expect(existsSync(path.join(a.privateDir, 'answers.csv'))).toBe(true);
    expect(statSync(a.privateDir).mode & 0o777).toBe(0o700); // no other uid may enter
    await prepareTask(dir, { home });
    expect(readFileSync(process.env.TOY_COUNTER, 'utf8')).toBe('run\n');
    // Another seed, or edited task contents, is another cache entry.
    const s1 = await prepareTask(dir, { home, seed: 1 });
    expect(s1.publicDir).not.toBe(a.publicDir);
    expect(s1.spec.seed).toBe(1);
    writeFileSync(path.join(dir, 'research_problem.md'), 'Predict y from x, please.\n');
    const edited = await prepareTask(dir, { home });
    expect(edited.publicDir).not.toBe(a.publicDir);
    expect(readFileSync(process.env.TOY_COUNTER, 'utf8')).toBe('run\nrun\nrun\n');
    expect(a.ideas).toHaveLength(1);
    expect(a.researchProblem).toMatch(/Predict y/);
  }, 60_000);

  it('leaves nothing behind when prepare.py fails, and clears temp dirs of dead runs', async () => {
    const home = tempDir('home');
    dirs.push(home);
    const dir = writeToyTask(home, 'toy');
    process.env.TOY_FAIL = '1';
    await expect(prepareTask(dir, { home })).rejects.toThrow(/prepare.py of task 'toy' failed \(exit 1\):\ntoy prepare failed on purpose/);
    const cache = path.join(home, 'cache', 'tasks');
    expect(readdirSync(cache)).toEqual([]);
    delete process.env.TOY_FAIL;
    const ok = await prepareTask(dir, { home });
    const key = path.basename(path.dirname(ok.publicDir));
    // A run killed mid-way (pid 999999 is not alive) left a half-written temp dir.
    removeTree(path.dirname(ok.publicDir));
    mkdirSync(path.join(cache, `.tmp-${key}-999999-dead`, 'public'), { recursive: true });
    await prepareTask(dir, { home });
    expect(readdirSync(cache)).toEqual([key]);
  }, 60_000);

  it('keeps the entry of another process that finished first and removes its own temp dir', async () => {
    const home = tempDir('home');
    dirs.push(home);
    process.env.TOY_RACE = '1';
    const task = await prepareTask(writeToyTask(home, 'toy'), { home });
    expect(readFileSync(path.join(task.publicDir, 'winner.txt'), 'utf8')).toBe('other process');
    expect(existsSync(path.join(task.publicDir, 'train.csv'))).toBe(false);
    expect(readdirSync(path.join(home, 'cache', 'tasks'))).toEqual([path.basename(path.dirname(task.publicDir))]);
  }, 60_000);

  it('grades valid and invalid submissions without throwing', async () => {
    const home = tempDir('home');
    dirs.push(home);
    const task = await prepareTask(writeToyTask(home, 'toy'), { home });
    const sub = path.join(home, 'sub.csv');
    writeFileSync(sub, 'id,y\n10,20\n11,22\n12,24\n13,26\n14,29\n');
    expect(await task.grade(sub)).toEqual({ ok: true, score: 0.2 });
    writeFileSync(sub, 'id,y\n10,20\n');
    expect(await task.grade(sub)).toEqual({ ok: false, error: "expected ids ['10', '11', '12', '13', '14']" });
    writeFileSync(sub, 'id,y\n10,twenty\n');
    expect(await task.grade(sub)).toMatchObject({ ok: false, error: expect.stringMatching(/unreadable submission/) });
    expect(await task.grade(path.join(home, 'missing.csv'))).toEqual({ ok: false, error: 'no submission file: missing.csv was not written' });
    // Python's json writes an infinite or NaN score bare: the submission's fault, not a grader crash.
    writeFileSync(sub, 'id,y\n10,inf\n11,22\n12,24\n13,26\n14,29\n');
    expect(await task.grade(sub)).toEqual({ ok: false, error: 'the submission scores an infinite value: its predictions hold values too extreme to grade' });
    writeFileSync(sub, 'id,y\n10,nan\n11,22\n12,24\n13,26\n14,29\n');
    expect(await task.grade(sub)).toEqual({ ok: false, error: 'the submission scores NaN: its predictions hold values too extreme to grade' });
  }, 60_000);

  it('runs a baseline and an idea in the sandbox and grades them', async () => {
    const home = tempDir('home');
    dirs.push(home);
    const dir = writeToyTask(home, 'toy');
    const base = await runBaseline(dir, { home });
    expect(base).toMatchObject({ task: 'toy', metric: 'mae', direction: 'minimize', outcome: 'ok', score: 1 });
    const task = await prepareTask(dir, { home });
    const improved = await runBaseline(dir, { home, trainPy: applyIdea(readFileSync(path.join(dir, 'env', 'train.py'), 'utf8'), task.ideas[0]) });
    expect(improved.score).toBe(0);
    const broken = await runBaseline(dir, { home, trainPy: 'open("submission.csv", "w").write("nonsense")\n' });
    expect(broken).toMatchObject({ outcome: 'invalid-submission', score: null });
    const crashed = await runBaseline(dir, { home, trainPy: 'raise ValueError("boom")\n' });
    expect(crashed).toMatchObject({ outcome: 'error', score: null, error: expect.stringMatching(/ValueError: boom/) });
  }, 60_000);
});
