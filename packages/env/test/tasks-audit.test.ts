// Audit of task specs, imports, preparation and grading against malformed or hostile input.
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { appendFileSync, chmodSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { createWorkspace, importTask, listTasks, loadTaskSpec, prepareTask, removeTree, runBaseline, TaskFormatError, validateTaskSpec } from '../src/index.js';
import { hashDirectory } from '../src/tasks/hash.js';
import { tempDir, toySpec, writeToyTask } from './tasks-fixture.js';

const roots: string[] = [];
const children: ChildProcess[] = [];
afterAll(() => roots.forEach(removeTree));
afterEach(() => {
  for (const c of children.splice(0)) if (c.exitCode === null) c.kill('SIGKILL');
});

function scratch(): string {
  roots.push(tempDir('tasks-audit'));
  return roots[roots.length - 1];
}

function write(file: string, text: string) {
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, text);
}

function errorOf(f: () => unknown): Error {
  try {
    f();
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected a throw');
}

/**
 * Makes `file` a FIFO. A reader blocks in open() until a writer comes: a helper opens it for writing after 3 s, so
 * code that wrongly reads it returns (late, with empty content) instead of hanging the test run for ever.
 */
function fifo(file: string): void {
  execFileSync('mkfifo', [file]);
  children.push(spawn('sh', ['-c', 'sleep 3; : > "$0"', file], { stdio: 'ignore' }));
}

/** A minimal MLE-bench competition; `grader` is the body of grade(submission, answers). */
function fakeMleBench(root: string, grader = "    return float((submission['y'] == answers['y']).mean())\n"): string {
  const src = path.join(root, 'comp');
  write(path.join(src, 'description.md'), '# Comp\n\nPredict y.\n');
  write(path.join(src, 'public', 'train.csv'), 'id,y\n1,0\n2,1\n');
  write(path.join(src, 'public', 'sample_submission.csv'), 'id,y\n3,1\n4,1\n');
  write(path.join(src, 'private', 'answers.csv'), 'id,y\n3,0\n4,1\n');
  write(path.join(src, 'grade.py'), `import sys\nfrom mlebench.grade_helpers import InvalidSubmissionError\n\ndef grade(submission, answers):\n${grader}`);
  return src;
}

/** A minimal MLAgentBench task whose get_score body is `body`. */
function fakeMlAgentBench(root: string, body = "    return 1.5\n"): string {
  const src = path.join(root, 'mlab');
  write(path.join(src, 'env', 'train.py'), "open('submission.csv', 'w').write('id,y\\n')\n");
  write(path.join(src, 'env', 'train.csv'), 'id,y\n1,2\n');
  write(path.join(src, 'scripts', 'research_problem.txt'), 'Predict y.\n');
  write(path.join(src, 'scripts', 'eval.py'), `import sys\n\ndef get_score(submission_folder='../env'):\n${body}`);
  return src;
}

describe('task.json values', () => {
  it('refuses budgets the sandbox cannot apply and seeds numpy cannot take, naming the field', () => {
    const spec = toySpec('t');
    // timeoutSec * 1000 past setTimeout's 2^31-1 ms made every run of the task "time out" after 1 ms.
    expect(() => validateTaskSpec({ ...spec, budgets: { ...spec.budgets, timeoutSec: 3_000_000 } })).toThrow(/'budgets\.timeoutSec' must be .* at most/);
    // 1e15 MiB is 1e21 bytes: written as "1.048576e+21" to prlimit and memory.max.
    expect(() => validateTaskSpec({ ...spec, budgets: { ...spec.budgets, memoryMb: 1e15 } })).toThrow(/'budgets\.memoryMb'/);
    expect(() => validateTaskSpec({ ...spec, budgets: { ...spec.budgets, cpuSec: 1e300, maxProcs: 2 ** 40, diskMb: 1e20 } })).toThrow(
      /budgets\.cpuSec[\s\S]*budgets\.maxProcs[\s\S]*budgets\.diskMb/,
    );
    // String(1e21) is "1e+21", which prepare.py's int argument refuses; numpy/sklearn seeds stop at 2^32 - 1.
    expect(() => validateTaskSpec({ ...spec, seed: 1e21 })).toThrow(/'seed' must be/);
    expect(() => validateTaskSpec({ ...spec, seed: 2 ** 32 })).toThrow(/'seed' must be/);
    expect(validateTaskSpec({ ...spec, seed: 2 ** 32 - 1, budgets: { ...spec.budgets, timeoutSec: 86_400 } }).seed).toBe(2 ** 32 - 1);
  });

  it('refuses a prepareTask seed numpy cannot take before running prepare.py', async () => {
    const root = scratch();
    const dir = writeToyTask(root);
    await expect(prepareTask(dir, { home: path.join(root, 'home'), seed: 2 ** 40 })).rejects.toThrow(RangeError);
    expect(existsSync(path.join(root, 'home', 'cache'))).toBe(false);
  });

  it('refuses a task name too long for its cache entry, instead of failing in mkdir', async () => {
    const root = scratch();
    const name = 'a'.repeat(240); // a valid directory name; "<name>-<hash>" and its temp dir are not
    const dir = writeToyTask(root, name);
    const e = await prepareTask(dir, { home: path.join(root, 'home') }).catch((x: unknown) => x as Error);
    expect(e).toBeInstanceOf(TaskFormatError);
    expect((e as Error).message).toMatch(/'name' must be at most 100 characters/);
  });

  it('a deeply nested or huge value gives a short TaskFormatError naming the file and the field', () => {
    const root = scratch();
    const dir = writeToyTask(root);
    const spec = JSON.stringify(toySpec('toy'));
    // JSON.parse takes 100k levels; JSON.stringify of them for the message overflowed the stack (a bare RangeError).
    writeFileSync(path.join(dir, 'task.json'), spec.replace('"title":"Toy regression"', `"title":${'['.repeat(100_000)}${']'.repeat(100_000)}`));
    const deep = errorOf(() => loadTaskSpec(dir));
    expect(deep).toBeInstanceOf(TaskFormatError);
    expect(deep.message).toContain(path.join(dir, 'task.json'));
    expect(deep.message).toContain("'title' must be a non-empty string");
    // A 1 MB value was copied whole into the message (and into `mlagent tasks list`).
    writeFileSync(path.join(dir, 'task.json'), spec.replace('"baseline":1', `"baseline":"${'x'.repeat(1_000_000)}"`));
    const huge = errorOf(() => loadTaskSpec(dir));
    expect(huge.message).toContain("'baseline' must be a finite number or null");
    expect(huge.message.length).toBeLessThan(1000);
  });

  it('a task.json with thousands of unknown or huge keys gives a message of bounded size, keeping every problem', () => {
    const many = Object.fromEntries(Array.from({ length: 10_000 }, (_, i) => [`k${i}`, 1]));
    const e = errorOf(() => validateTaskSpec({ ['z'.repeat(100_000)]: 1, ...many, ...toySpec('t') }, 'x/task.json')) as TaskFormatError;
    expect(e).toBeInstanceOf(TaskFormatError);
    expect(e.problems).toHaveLength(10_001);
    // It was 1.4 MB: listTasks keeps one such message per broken task, and the CLI prints them.
    expect(e.message.length).toBeLessThan(10_000);
    expect(e.message).toContain("unknown field 'zzzz");
    expect(e.message).toContain("unknown field 'k0'");
    expect(e.message).toContain('... and 9981 more problems');
  });
});

describe('task files that are not regular files', () => {
  it('a task.json that is a FIFO or a directory is reported as such, not read (a FIFO blocked listTasks)', { timeout: 15_000 }, () => {
    const home = path.join(scratch(), 'home');
    const a = writeToyTask(path.join(home, 'tasks'), 'fifo-spec');
    rmSync(path.join(a, 'task.json'));
    fifo(path.join(a, 'task.json'));
    const b = writeToyTask(path.join(home, 'tasks'), 'dir-problem');
    rmSync(path.join(b, 'research_problem.md'));
    mkdirSync(path.join(b, 'research_problem.md'));
    const started = Date.now();
    const { invalid } = listTasks({ home });
    expect(Date.now() - started).toBeLessThan(2500);
    expect(invalid.find((x) => x.dir === a)?.error).toMatch(/task\.json is not a regular file/);
    expect(invalid.find((x) => x.dir === b)?.error).toMatch(/research_problem\.md is not a regular file/);
  });
});

describe('task directory hashing', () => {
  it('a file name that is not UTF-8 neither breaks preparation nor collides in the cache key', async () => {
    const root = scratch();
    const one = writeToyTask(path.join(root, 'one'));
    const two = writeToyTask(path.join(root, 'two'));
    // readdirSync decoded 0xff and 0xfe both as U+FFFD: lstat of that name failed with ENOENT.
    writeFileSync(Buffer.concat([Buffer.from(one + '/notes-'), Buffer.from([0xff])]), 'a');
    writeFileSync(Buffer.concat([Buffer.from(two + '/notes-'), Buffer.from([0xfe])]), 'a');
    expect(hashDirectory(one)).not.toBe(hashDirectory(two));
    const task = await prepareTask(one, { home: path.join(root, 'home') });
    expect(readFileSync(path.join(task.publicDir, 'train.csv'), 'utf8')).toContain('id,x,y');
    // removeTree (clearing the cache) read names as strings too and failed on it.
    removeTree(one);
    expect(existsSync(one)).toBe(false);
  }, 30_000);
});

describe('importing hostile directories', () => {
  it('refuses links out of the source, to devices, and FIFOs, naming the path, before reading anything', { timeout: 15_000 }, () => {
    const root = scratch();
    const home = path.join(root, 'home');
    const comp = fakeMleBench(root);
    // The link's target (a host file) would have been copied into the agent's public data by prepare.py.
    symlinkSync('/etc/hostname', path.join(comp, 'public', 'extra.csv'));
    expect(() => importTask(comp, { home, metric: 'accuracy', direction: 'maximize' })).toThrow(/public\/extra\.csv is a link to \/etc\/hostname, outside/);
    rmSync(path.join(comp, 'public', 'extra.csv'));
    // shutil.copy2 of a link to /dev/zero in prepare.py never ends: it fills the disk.
    const mlab = fakeMlAgentBench(root);
    symlinkSync('/dev/zero', path.join(mlab, 'env', 'big.csv'));
    expect(() => importTask(mlab, { home, metric: 'mae', direction: 'minimize' })).toThrow(/env\/big\.csv is a link to \/dev\/zero/);
    // Followed, a link to a directory above it never ends; a name that is not UTF-8 failed the copy with ENOENT.
    symlinkSync('..', path.join(comp, 'public', 'loop'));
    expect(() => importTask(comp, { home, metric: 'accuracy', direction: 'maximize' })).toThrow(/public\/loop is a link to a directory above it/);
    rmSync(path.join(comp, 'public', 'loop'));
    const odd = Buffer.concat([Buffer.from(path.join(comp, 'private', 'notes-')), Buffer.from([0xff])]);
    writeFileSync(odd, 'x');
    expect(() => importTask(comp, { home, metric: 'accuracy', direction: 'maximize' })).toThrow(/private\/notes-.* has a name that is not UTF-8/);
    rmSync(odd);
    // Reading a FIFO blocks until a writer comes.
    rmSync(path.join(comp, 'description.md'));
    fifo(path.join(comp, 'description.md'));
    const started = Date.now();
    expect(() => importTask(comp, { home, metric: 'accuracy', direction: 'maximize' })).toThrow(/description\.md is not a regular file/);
    expect(Date.now() - started).toBeLessThan(2500);
    expect(existsSync(path.join(home, 'tasks', 'comp'))).toBe(false);
  });

  it('keeps terminal escapes of a source out of the title the CLI prints', () => {
    const root = scratch();
    const comp = fakeMleBench(root);
    writeFileSync(path.join(comp, 'description.md'), '# Comp \u001b]0;owned\u0007\u001b[2J\n\nPredict y.\n');
    const entry = importTask(comp, { home: path.join(root, 'home'), metric: 'accuracy', direction: 'maximize' });
    expect([...entry.spec.title].some((c) => c.charCodeAt(0) < 0x20)).toBe(false);
    expect(entry.spec.title.startsWith('Comp')).toBe(true);
    expect(() => validateTaskSpec({ ...toySpec('t'), title: 'Toy\u001b[2J' })).toThrow(/'title' must be one line without control characters/);
  });

  it('a sample submission whose name holds a quote still makes a working baseline', async () => {
    const root = scratch();
    const home = path.join(root, 'home');
    const comp = fakeMleBench(root);
    rmSync(path.join(comp, 'public', 'sample_submission.csv'));
    write(path.join(comp, 'public', "sample_submission_'v2'.csv"), 'id,y\n3,1\n4,1\n');
    importTask(comp, { home, metric: 'accuracy', direction: 'maximize' });
    // The name was pasted between single quotes in train.py: a SyntaxError.
    const r = await runBaseline('comp', { home });
    expect(r).toMatchObject({ outcome: 'ok', score: 0.5 });
  }, 60_000);

  it('an empty research problem is named as such, not as an empty title the user never wrote', () => {
    const root = scratch();
    const mlab = fakeMlAgentBench(root);
    writeFileSync(path.join(mlab, 'scripts', 'research_problem.txt'), '  \n');
    expect(() => importTask(mlab, { home: path.join(root, 'home'), metric: 'mae', direction: 'minimize' })).toThrow(/scripts\/research_problem\.txt is empty/);
  });

  it('copies what links inside the source point to, so the import does not depend on the source', () => {
    const root = scratch();
    const home = path.join(root, 'home');
    const comp = fakeMleBench(root);
    write(path.join(comp, 'raw-data', 'test.csv'), 'id\n3\n4\n');
    symlinkSync('../raw-data/test.csv', path.join(comp, 'public', 'test.csv'));
    const entry = importTask(comp, { home, metric: 'accuracy', direction: 'maximize' });
    // cpSync had made it an absolute link into the source clone: deleting the clone broke the task.
    const copied = path.join(entry.dir, 'source', 'public', 'test.csv');
    expect(lstatSync(copied).isFile()).toBe(true);
    expect(readFileSync(copied, 'utf8')).toBe('id\n3\n4\n');
  });

  it('removes what an import killed midway left in the task store', () => {
    const root = scratch();
    const home = path.join(root, 'home');
    const dead = spawnSync('true').pid!;
    const stale = path.join(home, 'tasks', `.import-big-comp-${dead}`);
    write(path.join(stale, 'source', 'public', 'train.csv'), 'x'.repeat(1000));
    const live = path.join(home, 'tasks', `.import-other-${process.ppid}`); // a running import elsewhere
    mkdirSync(live);
    importTask(fakeMleBench(root), { home, metric: 'accuracy', direction: 'maximize' });
    expect(existsSync(stale)).toBe(false);
    expect(existsSync(live)).toBe(true);
  });
});

describe('graders of imported tasks', () => {
  it("the grader's own output on stdout, even without a newline, does not hide the score", async () => {
    const root = scratch();
    const home = path.join(root, 'home');
    importTask(fakeMleBench(root, "    print('checking rows...', end='')\n    return float((submission['y'] == answers['y']).mean())\n"), {
      home,
      metric: 'accuracy',
      direction: 'maximize',
    });
    const comp = await prepareTask('comp', { home });
    const sub = path.join(root, 'sub.csv');
    writeFileSync(sub, 'id,y\n3,0\n4,1\n');
    expect(await comp.grade(sub)).toEqual({ ok: true, score: 1 });
    importTask(fakeMlAgentBench(root, "    sys.stdout.write('scoring ')\n    return 1.5\n"), { home, metric: 'mae', direction: 'minimize' });
    const mlab = await prepareTask('mlab', { home });
    expect(await mlab.grade(sub)).toEqual({ ok: true, score: 1.5 });
  }, 30_000);

  it('a rejection with a huge message is an invalid submission with a short error, not a grader crash', async () => {
    const root = scratch();
    const home = path.join(root, 'home');
    // Graders listing every missing id: the {"error"} line outgrew the 64 KB of stdout kept and could not be parsed.
    importTask(fakeMleBench(root, "    raise InvalidSubmissionError('missing ids: ' + ','.join(str(i) for i in range(30000)))\n"), {
      home,
      metric: 'accuracy',
      direction: 'maximize',
    });
    const task = await prepareTask('comp', { home });
    const sub = path.join(root, 'sub.csv');
    writeFileSync(sub, 'id,y\n3,0\n');
    const g = await task.grade(sub);
    expect(g.ok).toBe(false);
    const error = (g as { error: string }).error;
    expect(error.startsWith('InvalidSubmissionError: missing ids: 0,1,2,')).toBe(true);
    expect(error.length).toBeLessThan(2100);
  }, 30_000);
});

describe('native graders', () => {
  it("a long {\"error\"} is cut for the agent, and a misbehaving grader's output is cut in the thrown message", async () => {
    const root = scratch();
    const dir = writeToyTask(root);
    const grade = path.join(dir, 'grade.py');
    writeFileSync(grade, "import json, sys\nprint(json.dumps({'error': 'bad rows: ' + 'x' * 20000}))\nsys.exit(2)\n");
    const task = await prepareTask(dir, { home: path.join(root, 'home') });
    const sub = path.join(root, 'sub.csv');
    writeFileSync(sub, 'id,y\n');
    const g = await task.grade(sub);
    expect(g.ok).toBe(false);
    expect((g as { error: string }).error).toMatch(/^bad rows: x+ \[\.\.\. \d+ characters cut \.\.\.\] x+$/);
    expect((g as { error: string }).error.length).toBeLessThanOrEqual(2000);
    // A task bug: the message (logged by the trainer) named 50 KB of the grader's output.
    writeFileSync(grade, "print('y' * 50000)\n");
    const e = await task.grade(sub).catch((x: unknown) => x as Error);
    expect((e as Error).message).toMatch(/grade\.py of toy misbehaved/);
    expect((e as Error).message.length).toBeLessThan(5000);
  }, 30_000);
});

describe('graders that leave processes behind', () => {
  it('a grader whose detached child keeps its stdout open is graded at its exit, without crashing the trainer', async () => {
    const root = scratch();
    const dir = writeToyTask(root);
    const pidFile = path.join(root, 'child.pid');
    // The child leaves the grader's process group: the timeout's kill(-pid) then threw ESRCH in a timer (uncaught).
    writeFileSync(
      path.join(dir, 'grade.py'),
      `import json, subprocess\np = subprocess.Popen(['sleep', '30'], start_new_session=True)\nopen(${JSON.stringify(pidFile)}, 'w').write(str(p.pid))\nprint(json.dumps({'score': 0.25}))\n`,
    );
    const task = await prepareTask(dir, { home: path.join(root, 'home'), gradeTimeoutMs: 4000 });
    const sub = path.join(root, 'sub.csv');
    writeFileSync(sub, 'id,y\n');
    try {
      const started = Date.now();
      expect(await task.grade(sub)).toEqual({ ok: true, score: 0.25 });
      expect(Date.now() - started).toBeLessThan(3500);
    } finally {
      if (existsSync(pidFile)) {
        try {
          process.kill(Number(readFileSync(pidFile, 'utf8')), 'SIGKILL');
        } catch {
          /* gone */
        }
      }
    }
  }, 20_000);
});

describe('preparation and workspaces', () => {
  it('a name prepare.py writes that is not UTF-8 does not fail the preparation', async () => {
    const root = scratch();
    const dir = writeToyTask(root);
    appendFileSync(path.join(dir, 'prepare.py'), "open(os.path.join(os.fsencode(a.public), b'notes-\\xff.txt'), 'w').write('x')\n");
    const task = await prepareTask(dir, { home: path.join(root, 'home') });
    const odd = readdirSync(task.publicDir, { encoding: 'buffer' }).find((b) => b.includes(0xff));
    expect(odd).toBeDefined();
    expect(lstatSync(Buffer.concat([Buffer.from(task.publicDir + '/'), odd!])).mode & 0o777).toBe(0o444);
  }, 30_000);

  it('removes temp dirs of killed preparations of every cache key, not only the current one', async () => {
    const root = scratch();
    const home = path.join(root, 'home');
    const dir = writeToyTask(root);
    const dead = spawnSync('true').pid!;
    // Left by a preparation of an earlier version of the task (another key), killed after making public/ read-only.
    const stale = path.join(home, 'cache', 'tasks', `.tmp-toy-0123456789abcdef-${dead}-1a2b3c4d`);
    write(path.join(stale, 'public', 'train.csv'), 'x'.repeat(1000));
    chmodSync(path.join(stale, 'public'), 0o555);
    await prepareTask(dir, { home });
    expect(existsSync(stale)).toBe(false);
  }, 30_000);

  it('an env/data link that dangles is refused by name, not with an EEXIST from symlink', async () => {
    const root = scratch();
    const dir = writeToyTask(root);
    symlinkSync('/nonexistent-mlagent-audit', path.join(dir, 'env', 'data'));
    const task = await prepareTask(dir, { home: path.join(root, 'home') });
    expect(() => createWorkspace(task, path.join(root, 'ws'))).toThrow(/env\/ must not contain 'data'/);
  }, 30_000);

  it('runBaseline does not grade a submission.csv that links to the hidden answers', async () => {
    const root = scratch();
    const home = path.join(root, 'home');
    const dir = writeToyTask(root);
    const answers = path.join((await prepareTask(dir, { home })).privateDir, 'answers.csv');
    // The sandbox hides the answers but a link to them can still be made; the grader, outside, followed it: MAE 0.
    const r = await runBaseline(dir, { home, trainPy: `import os\nos.symlink(${JSON.stringify(answers)}, 'submission.csv')\n` });
    expect(r).toMatchObject({ outcome: 'invalid-submission', score: null });
    expect(r.error).toMatch(/regular file/);
  }, 60_000);
});
