// Bad inputs and damaged stores through the public API: each case failed (cryptic TypeError, hang, silently wrong
// result, or a left-over half state) before its fix.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  ACTION_NAMES,
  Episode,
  gradeSubmission,
  importTask,
  listTasks,
  mlagentHome,
  parseResponse,
  prepareTask,
  removeTree,
  replay,
  resolveTask,
  SnapshotStore,
  taskSandboxEnv,
  TaskFormatError,
  validateTaskSpec,
  type ActionName,
  type StateManifest,
  type StateMeta,
} from '../src/index.js';
import { makeFixtureTask, type Fixture } from './episode-fixture.js';
import { tempDir, toySpec, writeToyTask } from './tasks-fixture.js';

const envRoot = path.resolve(import.meta.dirname, '..');
const LIST = 'Action: List Files\nAction Input: {"dir_path": "."}';

let scratch: string;
beforeEach(() => {
  scratch = tempDir('api-audit');
});
afterEach(() => removeTree(scratch));

describe('parseResponse options', () => {
  it('throws a TypeError naming options.actions for a name that is no action, instead of blaming the agent', () => {
    expect(() => parseResponse('Action: Foo\nAction Input: {}', { actions: ['Foo' as ActionName] })).toThrow(
      /parseResponse: options\.actions holds "Foo", which is not an action/,
    );
    expect(() => parseResponse(LIST, { actions: 'List Files' as unknown as ActionName[] })).toThrow(TypeError);
    expect(() => parseResponse(LIST, null as unknown as object)).toThrow(/options must be an object/);
    // The response's own problems still never throw.
    expect(parseResponse(42 as unknown as string, { actions: ACTION_NAMES }).ok).toBe(false);
    expect(parseResponse(LIST, { actions: ['List Files'] }).ok).toBe(true);
  });
});

describe('task registry', () => {
  it('resolveTask and prepareTask name a missing task argument instead of crashing on it', async () => {
    expect(() => resolveTask(undefined as unknown as string)).toThrow(/resolveTask: the task must be a task name or a task directory, got undefined/);
    expect(() => resolveTask(7 as unknown as string)).toThrow(TypeError);
    await expect(prepareTask(undefined as unknown as string, { home: scratch })).rejects.toThrow(/must be a task name/);
  });

  it('listTasks reports a dangling link in the task store as invalid instead of throwing', () => {
    const home = path.join(scratch, 'home');
    writeToyTask(path.join(home, 'tasks'), 'good');
    symlinkSync(path.join(scratch, 'moved-away'), path.join(home, 'tasks', 'broken'));
    const list = listTasks({ home });
    expect(list.tasks.map((t) => t.spec.name)).toContain('good');
    expect(list.invalid).toEqual([{ dir: path.join(home, 'tasks', 'broken'), error: expect.stringMatching(/cannot read the task directory: ENOENT/) }]);
    expect(() => resolveTask('nope', { home })).toThrow(/unknown task 'nope'/);
  });

  it('listTasks reports a task store that is not a directory as invalid instead of throwing', () => {
    const home = path.join(scratch, 'home');
    mkdirSync(home);
    writeFileSync(path.join(home, 'tasks'), 'not a directory');
    const list = listTasks({ home });
    expect(list.tasks.length).toBeGreaterThan(0); // the built-in ones
    expect(list.invalid).toEqual([{ dir: path.join(home, 'tasks'), error: expect.stringMatching(/ENOTDIR/) }]);
  });

  it('resolveTask names what a half-copied user task lacks instead of calling it unknown', () => {
    const home = path.join(scratch, 'home');
    const dir = writeToyTask(path.join(home, 'tasks'), 'half');
    rmSync(path.join(dir, 'task.json'));
    rmSync(path.join(dir, 'grade.py'));
    expect(() => resolveTask('half', { home })).toThrow(TaskFormatError);
    expect(() => resolveTask('half', { home })).toThrow(/missing task\.json[\s\S]*missing grade\.py/);
  });

  it('an empty MLAGENT_HOME means unset, and an empty home option is refused, not the working directory', () => {
    const saved = process.env.MLAGENT_HOME;
    try {
      process.env.MLAGENT_HOME = '';
      expect(mlagentHome()).toBe(path.join(homedir(), '.mlagent'));
      expect(() => mlagentHome('')).toThrow(/home option .* must be a non-empty path, got ""/);
      expect(() => listTasks({ home: '  ' })).toThrow(TypeError);
    } finally {
      if (saved === undefined) delete process.env.MLAGENT_HOME;
      else process.env.MLAGENT_HOME = saved;
    }
  });
});

describe('task specs and imports', () => {
  it('a NaN or Infinity in a spec is shown as such, not as the null JSON.stringify writes', () => {
    const spec = toySpec('x', { baseline: NaN, budgets: { timeoutSec: Infinity, memoryMb: 1, cpuSec: 1, maxProcs: 1 } });
    expect(() => validateTaskSpec(spec)).toThrow(/'baseline' must be a finite number or null, got NaN[\s\S]*'budgets\.timeoutSec' must be a positive integer, got Infinity/);
  });

  it('importTask names a task name that is not a string instead of crashing in path.join', () => {
    const src = path.join(scratch, 'comp');
    mkdirSync(src);
    writeFileSync(path.join(src, 'description.md'), '# Comp\n');
    expect(() => importTask(src, { name: 5 as unknown as string, home: path.join(scratch, 'home'), metric: 'mae', direction: 'minimize' })).toThrow(
      /import: invalid task name '5'/,
    );
  });
});

describe('prepareTask options', () => {
  it('refuses a seed that is not a non-negative integer, or an empty python, before running prepare.py', async () => {
    const dir = writeToyTask(path.join(scratch, 'src'));
    const counter = path.join(scratch, 'counter');
    process.env.TOY_COUNTER = counter;
    try {
      for (const seed of [NaN, -1, 1.5]) {
        await expect(prepareTask(dir, { home: path.join(scratch, 'home'), seed })).rejects.toThrow(
          new RangeError(`prepareTask: seed must be a non-negative integer, got ${seed}`),
        );
      }
      await expect(prepareTask(dir, { home: path.join(scratch, 'home'), python: '' })).rejects.toThrow(/prepareTask: python must be the path of a Python interpreter, got ""/);
      expect(existsSync(counter)).toBe(false);
    } finally {
      delete process.env.TOY_COUNTER;
    }
  });

  it('an Infinity time limit means none, and NaN, 0 or a negative one is refused, instead of timing out at once', async () => {
    const dir = writeToyTask(path.join(scratch, 'src'));
    const home = path.join(scratch, 'home');
    for (const bad of [NaN, 0, -5]) {
      await expect(prepareTask(dir, { home, prepareTimeoutMs: bad })).rejects.toThrow(/prepareTimeoutMs must be a positive number of milliseconds/);
      await expect(prepareTask(dir, { home, gradeTimeoutMs: bad })).rejects.toThrow(/gradeTimeoutMs must be a positive number/);
    }
    const task = await prepareTask(dir, { home, prepareTimeoutMs: Infinity, gradeTimeoutMs: Infinity });
    const sub = path.join(scratch, 'submission.csv');
    writeFileSync(sub, 'id,y\n10,20\n11,22\n12,24\n13,26\n14,28\n');
    expect(await task.grade(sub)).toEqual({ ok: true, score: 0 });
    await expect(gradeSubmission(task.dir, task.privateDir, sub, { timeoutMs: NaN })).rejects.toThrow(/timeoutMs must be a positive number/);
  });

  it('says which part of a damaged cache entry is missing instead of handing out a task without data', async () => {
    const dir = writeToyTask(path.join(scratch, 'src'));
    const home = path.join(scratch, 'home');
    const task = await prepareTask(dir, { home });
    removeTree(task.publicDir); // as an interrupted removeTree of the cache leaves it
    await expect(prepareTask(dir, { home })).rejects.toThrow(/prepared data of task 'toy' at .* is incomplete \(public\/ is missing\)/);
  });
});

describe('threads', () => {
  let fx: Fixture;
  beforeEach(() => {
    fx = makeFixtureTask();
  });
  afterEach(() => fx.cleanup());

  it('taskSandboxEnv refuses NaN and Infinity instead of writing OMP_NUM_THREADS=NaN', () => {
    expect(() => taskSandboxEnv(NaN)).toThrow(new RangeError('threads must be a finite number >= 1, got NaN'));
    expect(() => taskSandboxEnv(Infinity)).toThrow(RangeError);
    expect(taskSandboxEnv(2).OMP_NUM_THREADS).toBe('2');
  });

  it('Episode.start refuses a bad threads option and leaves no workspace behind', async () => {
    const store = new SnapshotStore(path.join(fx.root, 'store'));
    const workRoot = path.join(fx.root, 'ws');
    for (const threads of [NaN, 0, 1.5]) {
      await expect(Episode.start(fx.task, { store, workRoot, threads })).rejects.toThrow(`Episode: option 'threads' must be an integer >= 1, got ${threads}`);
    }
    expect(readdirSync(workRoot)).toEqual([]);
  });
});

describe('replay', () => {
  it('refuses a lone response string instead of playing it one character per step', async () => {
    const fx = makeFixtureTask();
    try {
      const store = new SnapshotStore(path.join(fx.root, 'store'));
      const workRoot = path.join(fx.root, 'ws');
      await expect(replay(fx.task, LIST as unknown as string[], { store, workRoot })).rejects.toThrow(
        new TypeError('replay: responses must be an array of response texts, got string'),
      );
    } finally {
      fx.cleanup();
    }
  });
});

describe('snapshot restore', () => {
  const meta: StateMeta = { task: 't', parent: null, step: 0, done: false, metric: null, undo: {}, steps: [] };
  let store: SnapshotStore;
  let id: string;
  beforeEach(async () => {
    store = new SnapshotStore(path.join(scratch, 'store'));
    const ws = path.join(scratch, 'ws');
    mkdirSync(path.join(ws, 'd'), { recursive: true });
    writeFileSync(path.join(ws, 'a.txt'), 'hello');
    writeFileSync(path.join(ws, 'd', 'b.txt'), 'world');
    id = await store.capture(ws, path.join(scratch, 'public'), meta);
  });

  it('a missing blob leaves no half-restored workspace, so the restore can be tried again', async () => {
    const m = await store.load(id);
    const blob = store.blobPath(m.files.find((f) => f.path === 'd/b.txt')!.hash);
    const saved = readFileSync(blob);
    rmSync(blob);
    const target = path.join(scratch, 'restore');
    await expect(store.materialize(m, target, '/x')).rejects.toThrow(/cannot restore d\/b\.txt from blob/);
    expect(existsSync(target)).toBe(false);
    const empty = path.join(scratch, 'empty');
    mkdirSync(empty);
    await expect(store.materialize(m, empty, '/x')).rejects.toThrow(/cannot restore d\/b\.txt/);
    expect(readdirSync(empty)).toEqual([]); // the caller's directory stays, emptied again
    await store.putBlob(saved);
    await store.materialize(m, target, '/x');
    expect(readFileSync(path.join(target, 'd', 'b.txt'), 'utf8')).toBe('world');
  });

  it('refuses a manifest whose paths leave the target, before writing anything', async () => {
    const m = await store.load(id);
    const outside = path.join(scratch, 'outside.txt');
    const target = path.join(scratch, 'sub', 'restore');
    const evil: StateManifest = { ...m, files: [{ ...m.files[0], path: '../../outside.txt' }] };
    // Saved and loaded back, as a state pulled from a shared Redis would be: its id matches, its paths do not.
    const loaded = await store.load(await store.save(evil));
    await expect(store.materialize(loaded, target, '/x')).rejects.toThrow(
      /malformed state: files\[0\]\.path "\.\.\/\.\.\/outside\.txt" is not a path inside the workspace/,
    );
    expect(existsSync(outside)).toBe(false);
    expect(existsSync(target)).toBe(false);
    const badHash: StateManifest = { ...m, files: [{ ...m.files[0], hash: '../../../../../etc/hostname' }] };
    await expect(store.materialize(badHash, target, '/x')).rejects.toThrow(/files\[0\]\.hash .* is not a blob hash/);
    const badLink: StateManifest = { ...m, links: [{ path: '/abs', target: 'x' }] };
    await expect(store.materialize(badLink, target, '/x')).rejects.toThrow(/links\[0\]\.path "\/abs"/);
  });

  it('a truncated blob fails the restore instead of silently restoring other content', async () => {
    const m = await store.load(id);
    const blob = store.blobPath(m.files.find((f) => f.path === 'a.txt')!.hash);
    rmSync(blob);
    writeFileSync(blob, 'he');
    await expect(store.materialize(m, path.join(scratch, 'restore'), '/x')).rejects.toThrow(/cannot restore a\.txt: blob [0-9a-f]{64} is corrupt \(2 bytes, the state's file has 5\)/);
    expect(existsSync(path.join(scratch, 'restore'))).toBe(false);
  });
});

// Node's recursive mkdir never returns where mkdir gives ENOENT under an existing parent, as under /proc.
describe('directories under /proc fail instead of hanging', () => {
  it('SnapshotStore and Episode.start', { timeout: 10_000 }, async () => {
    const store = new SnapshotStore('/proc/1/mlagent-audit-store');
    await expect(store.putBlob('x')).rejects.toMatchObject({ code: 'ENOENT', syscall: 'mkdir' });
    const fx = makeFixtureTask();
    try {
      const ok = new SnapshotStore(path.join(fx.root, 'store'));
      await expect(Episode.start(fx.task, { store: ok, workRoot: '/proc/1/mlagent-audit-ws' })).rejects.toMatchObject({ code: 'ENOENT', syscall: 'mkdir' });
    } finally {
      fx.cleanup();
    }
  });

  // These mkdirs are synchronous: a hang would block this worker, so they run in a child with a time limit.
  it('prepareTask and importTask with MLAGENT_HOME under /proc', { timeout: 30_000 }, () => {
    const src = path.join(scratch, 'mlab');
    mkdirSync(path.join(src, 'env'), { recursive: true });
    mkdirSync(path.join(src, 'scripts'));
    const code = `
      const m = await import(${JSON.stringify(path.join(envRoot, 'src', 'index.ts'))});
      const home = '/proc/1/mlagent-audit-home';
      for (const f of [() => m.prepareTask('house-prices', { home }), () => m.importTask(${JSON.stringify(src)}, { home, metric: 'mae', direction: 'minimize' })]) {
        try { await f(); console.log('no error'); } catch (e) { console.log(e.code, e.syscall, e.path); }
      }`;
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { cwd: envRoot, encoding: 'utf8', timeout: 20_000 });
    expect(r.signal, r.stderr).toBeNull();
    expect(r.stdout.trim().split('\n')).toEqual(['ENOENT mkdir /proc/1/mlagent-audit-home', 'ENOENT mkdir /proc/1/mlagent-audit-home']);
  });
});
