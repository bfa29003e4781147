import { execFileSync } from 'node:child_process';
import { existsSync, lstatSync, mkdtempSync, readFileSync, realpathSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Episode } from '../src/episode/episode.js';
import { hideWorkspacePath } from '../src/episode/execute.js';
import { SandboxPool } from '../src/sandbox/pool.js';
import { cpuKernelPins } from '../src/tasks/workspace.js';
import { SnapshotStore } from '../src/snapshots/store.js';
import { makeFixtureTask, respond, trainScript, type Fixture } from './episode-fixture.js';

let fx: Fixture;
let store: SnapshotStore;
const start = (extra: Partial<Parameters<typeof Episode.start>[1]> = {}) =>
  Episode.start(fx.task, { store, workRoot: path.join(fx.root, 'ws'), maxSteps: 40, ...extra });

beforeAll(() => {
  fx = makeFixtureTask();
  store = new SnapshotStore(path.join(fx.root, 'store'));
});
afterAll(() => fx.cleanup());

describe('Episode actions', () => {
  it('builds the workspace: env/ files, data_description.txt, read-only data/ link', async () => {
    const ep = await start();
    const r = await ep.step(respond('List Files', { dir_path: '.' }));
    expect(r.outcome).toBe('none');
    expect(r.observation).toBe('data/\ndata_description.txt\ntrain.py\n');
    expect(r.feedback).toMatchObject({ formatValid: true, isEdit: false, previousMetric: 1 });
    expect(r.feedback.outcome).toBeUndefined();
    expect((await ep.step(respond('List Files', { dir_path: 'data' }))).observation).toBe('train.csv\n');
    expect((await ep.step(respond('Read File', { file_name: 'data_description.txt' }))).observation).toBe('train.csv: id, x, y.');
    const bad = await ep.step(respond('List Files', { dir_path: 'nope' }));
    expect(bad.outcome).toBe('action-error');
    expect(bad.observation).toMatch(/^EnvError: dir_path "nope" does not exist/);
    await ep.close();
    expect(existsSync(ep.workspace)).toBe(false);
  });

  it('Inspect Script Lines numbers the lines and refuses more than 100', async () => {
    const ep = await start();
    const r = await ep.step(respond('Inspect Script Lines', { script_name: 'train.py', start_line_number: 2, end_line_number: 3 }));
    expect(r.observation).toBe(
      "Here are the lines (the file ends at line 9):\n\n2: rows = list(csv.DictReader(open('data/train.csv')))\n3: print('loaded', len(rows), 'rows')",
    );
    const many = await ep.step(respond('Inspect Script Lines', { script_name: 'train.py', start_line_number: 1, end_line_number: 101 }));
    expect(many.outcome).toBe('action-error');
    expect(many.observation).toMatch(/limited to 100/);
    await ep.close();
  });

  it('Edit Script Lines replaces, inserts and deletes; Undo restores each previous content', async () => {
    const ep = await start();
    const ws = ep.workspace;
    const original = readFileSync(path.join(ws, 'train.py'), 'utf8');
    const r = await ep.step(respond('Edit Script Lines', { script_name: 'train.py', start_line_number: 4, end_line_number: 4, new_content: 'pred = 1' }));
    expect(r.outcome).toBe('none');
    expect(r.feedback.isEdit).toBe(true);
    expect(r.observation).toContain('The edited file is saved to train.py.');
    expect(r.observation).toContain('-pred = PRED'.replace('PRED', '0'));
    expect(r.observation).toContain('+pred = 1');
    const edited = readFileSync(path.join(ws, 'train.py'), 'utf8');
    expect(edited).toBe(trainScript(1));
    await ep.step(respond('Edit Script Lines', { script_name: 'train.py', start_line_number: 1, end_line_number: 0, new_content: '# header\n' }));
    expect(readFileSync(path.join(ws, 'train.py'), 'utf8')).toBe('# header\n' + trainScript(1));
    await ep.step(respond('Edit Script Lines', { script_name: 'train.py', start_line_number: 1, end_line_number: 1, new_content: '' }));
    expect(readFileSync(path.join(ws, 'train.py'), 'utf8')).toBe(trainScript(1));
    const badRange = await ep.step(respond('Edit Script Lines', { script_name: 'train.py', start_line_number: 50, end_line_number: 50, new_content: 'x' }));
    expect(badRange.observation).toMatch(/^EnvError: start_line_number must be between 1 and 10/);
    expect(badRange.feedback.isEdit).toBe(false);
    for (let i = 0; i < 3; i++) {
      const u = await ep.step(respond('Undo Edit Script', { script_name: 'train.py' }));
      expect(u.outcome).toBe('none');
      expect(u.feedback.isEdit).toBe(true);
    }
    expect(readFileSync(path.join(ws, 'train.py'), 'utf8')).toBe(original);
    const none = await ep.step(respond('Undo Edit Script', { script_name: 'train.py' }));
    expect(none.observation).toBe('EnvError: There is no change to undo for train.py.');
    await ep.close();
  });

  it('Write File and Copy File create files (Undo removes a created file); data/ is read-only', async () => {
    const ep = await start();
    const ws = ep.workspace;
    const w = await ep.step(respond('Write File', { file_name: 'lib/util.py', content: 'X = 1\n' }));
    expect(w.observation).toBe('File lib/util.py written successfully.');
    expect(w.feedback.isEdit).toBe(true);
    expect(readFileSync(path.join(ws, 'lib/util.py'), 'utf8')).toBe('X = 1\n');
    const c = await ep.step(respond('Copy File', { source: 'train.py', destination: 'backup.py' }));
    expect(c.observation).toBe('File train.py copied to backup.py.');
    expect(c.feedback.isEdit).toBe(true);
    const notScript = await ep.step(respond('Copy File', { source: 'data/train.csv', destination: 'copy.csv' }));
    expect(notScript.outcome).toBe('none');
    expect(notScript.feedback.isEdit).toBe(false);
    expect(readFileSync(path.join(ws, 'copy.csv'), 'utf8')).toBe(readFileSync(path.join(fx.task.publicDir, 'train.csv'), 'utf8'));
    const u = await ep.step(respond('Undo Edit Script', { script_name: 'backup.py' }));
    expect(u.observation).toMatch(/removed backup.py/);
    expect(existsSync(path.join(ws, 'backup.py'))).toBe(false);
    for (const [action, input] of [
      ['Write File', { file_name: 'data/x.csv', content: 'a' }],
      ['Copy File', { source: 'train.py', destination: 'data/train.csv' }],
      ['Edit Script Lines', { script_name: 'data/train.csv', start_line_number: 1, end_line_number: 1, new_content: 'a' }],
    ] as const) {
      const r = await ep.step(respond(action, input));
      expect(r.outcome).toBe('action-error');
      expect(r.observation).toMatch(/is in data\/, which is read-only/);
    }
    expect(readFileSync(path.join(fx.task.publicDir, 'train.csv'), 'utf8')).toBe('id,x,y\n0,1,2\n1,2,4\n');
    await ep.close();
  });

  it('confines every path: no absolute paths, no "..", no symlink escapes', async () => {
    const ep = await start();
    const secret = path.join(fx.task.privateDir, 'answers.csv');
    symlinkSync(secret, path.join(ep.workspace, 'leak.csv'));
    symlinkSync(fx.task.privateDir, path.join(ep.workspace, 'leakdir'));
    const cases: [string, Record<string, unknown>, RegExp][] = [
      ['Read File', { file_name: secret }, /absolute path/],
      ['Read File', { file_name: '../../cache/tiny/private/answers.csv' }, /leaves the workspace/],
      ['Read File', { file_name: 'leak.csv' }, /points outside the workspace/],
      ['List Files', { dir_path: 'leakdir' }, /points outside the workspace/],
      ['Copy File', { source: 'leak.csv', destination: 'a.csv' }, /points outside the workspace/],
      ['Write File', { file_name: 'leakdir/x.py', content: 'a' }, /points outside the workspace/],
      ['Write File', { file_name: 'leak.csv', content: 'a' }, /symbolic link that points outside/],
      ['Inspect Script Lines', { script_name: '/etc/passwd', start_line_number: 1, end_line_number: 2 }, /absolute path/],
      ['Execute Script', { script_name: '../grade.py' }, /leaves the workspace/],
    ];
    for (const [action, input, re] of cases) {
      const r = await ep.step(respond(action, input));
      expect(r.outcome, `${action} ${JSON.stringify(input)}`).toBe('action-error');
      expect(r.observation).toMatch(/^EnvError: /);
      expect(r.observation).toMatch(re);
    }
    // A FIFO would block a host-side read forever.
    execFileSync('mkfifo', [path.join(ep.workspace, 'pipe.py')]);
    for (const [action, input] of [
      ['Read File', { file_name: 'pipe.py' }],
      ['Inspect Script Lines', { script_name: 'pipe.py', start_line_number: 1, end_line_number: 2 }],
      ['Edit Script Lines', { script_name: 'pipe.py', start_line_number: 1, end_line_number: 0, new_content: 'x' }],
      ['Copy File', { source: 'pipe.py', destination: 'p2.py' }],
    ] as const) {
      const r = await ep.step(respond(action, input));
      expect(r.observation, action).toMatch(/^EnvError: .*"pipe.py" is not a regular file/);
    }
    expect(readFileSync(secret, 'utf8')).toBe('id,y\n0,1\n1,1\n2,1\n3,1\n');
    expect(lstatSync(path.join(ep.workspace, 'leak.csv')).isSymbolicLink()).toBe(true);
    await ep.close();
  });

  it('close() removes a workspace deeper than PATH_MAX, and a state leaves out what it cannot name', async () => {
    const ep = await start();
    // Written behind the sandbox's back (its disk guard removes such paths after every run).
    const deep = 'import os\nfd = os.open(".", os.O_RDONLY)\nfor i in range(20):\n    os.mkdir("d" * 250, dir_fd=fd)\n    nfd = os.open("d" * 250, os.O_RDONLY, dir_fd=fd)\n    os.close(fd)\n    fd = nfd\nopen(os.open("f", os.O_WRONLY | os.O_CREAT, dir_fd=fd), "w").write("x")\nopen(b"bad\\xffname.txt", "w").write("x")\n';
    execFileSync('/usr/bin/python3', ['-c', deep], { cwd: ep.workspace });
    const manifest = await store.load(await ep.snapshot());
    expect(manifest.omitted.map((o) => o.reason)).toContain('a name that is not UTF-8 or a path too long to save');
    await ep.close();
    expect(existsSync(ep.workspace)).toBe(false);
  });

  it("stops a script that fills the workspace with more files than a state should hash (the task's file limit)", async () => {
    const ep = await start();
    writeFileSync(path.join(ep.workspace, 'many.py'), "import os\nos.mkdir('parts')\nfor i in range(30000):\n    open(f'parts/{i}', 'w').close()\n");
    const r = await ep.step(respond('Execute Script', { script_name: 'many.py' }));
    expect(r.outcome).toBe('resource-limit');
    expect(r.observation).toContain('created more than 20000 files in the workspace');
    expect(existsSync(path.join(ep.workspace, 'parts'))).toBe(false);
    await ep.close();
  }, 60_000);

  it('a grader that crashes gives the agent an invalid submission, not its output or the host paths in it', async () => {
    const secretPath = path.join(fx.task.privateDir, 'answers.csv');
    const crashing = { ...fx.task, grade: () => Promise.reject(new Error(`grade.py misbehaved; stderr: Traceback ... open('${secretPath}')`)) };
    const ep = await Episode.start(crashing, { store, workRoot: path.join(fx.root, 'ws'), maxSteps: 40 });
    const warn = console.warn;
    const warned: string[] = [];
    console.warn = (m: string) => warned.push(m);
    try {
      const r = await ep.step(respond('Execute Script', { script_name: 'train.py' }));
      expect(r.outcome).toBe('invalid-submission');
      expect(r.observation).toMatch(/EnvError: submission.csv is not a valid submission: the grader failed on this submission \(a task error, logged by the trainer\)$/);
      expect(r.observation).not.toContain(secretPath);
      expect(warned.join('\n')).toContain(secretPath);
    } finally {
      console.warn = warn;
      await ep.close();
    }
  });

  it('Execute Script runs, grades submission.csv outside the sandbox and updates the metric', async () => {
    const ep = await start();
    expect(ep.currentMetric).toBe(1);
    const run = await ep.step(respond('Execute Script', { script_name: 'train.py' }));
    expect(run.outcome).toBe('ok');
    expect(run.observation).toBe('The script has been executed. Here is the output:\nloaded 2 rows\ndone\n');
    expect(run.metric).toBe(1);
    expect(run.feedback).toMatchObject({ formatValid: true, isEdit: false, outcome: 'ok', metric: 1, previousMetric: 1 });
    expect(run.feedback.milestones).toEqual({ dataLoaded: true, modelTrained: false, submissionWritten: true });
    await ep.step(respond('Edit Script Lines', { script_name: 'train.py', start_line_number: 4, end_line_number: 4, new_content: 'pred = 0.5' }));
    const better = await ep.step(respond('Execute Script', { script_name: 'train.py' }));
    expect(better.metric).toBe(0.5);
    expect(ep.currentMetric).toBe(0.5);
    // A run that writes no submission keeps the state's metric. Math libraries get one thread, as for the baseline,
    // and on AVX2 hosts their AVX2 kernels (the same scores on every host).
    writeFileSync(path.join(ep.workspace, 'hello.py'), 'import os\nprint("hi", os.environ.get("OMP_NUM_THREADS"), os.environ.get("OPENBLAS_CORETYPE"))\n');
    const hello = await ep.step(respond('Execute Script', { script_name: 'hello.py' }));
    const coretype = cpuKernelPins().OPENBLAS_CORETYPE ?? 'None';
    expect(hello).toMatchObject({ outcome: 'ok', metric: null, observation: `The script has been executed. Here is the output:\nhi 1 ${coretype}\n` });
    expect(hello.feedback).toMatchObject({ outcome: 'ok', metric: null, previousMetric: 0.5 });
    expect(ep.currentMetric).toBe(0.5);
    // An error shows the traceback.
    writeFileSync(path.join(ep.workspace, 'bad.py'), 'import nosuchmodule\n');
    const bad = await ep.step(respond('Execute Script', { script_name: 'bad.py' }));
    expect(bad.outcome).toBe('error');
    expect(bad.observation).toMatch(/^The script has been executed. Here is the output:\n[\s\S]*ModuleNotFoundError: No module named 'nosuchmodule'/);
    expect(bad.feedback.outcome).toBe('error');
    expect(bad.feedback.milestones).toEqual({ dataLoaded: false, modelTrained: false, submissionWritten: false });
    // Milestones of a failed run: the data was read and a model fitted before the crash. A milestones file the
    // agent planted beforehand does not count, and none is left behind.
    writeFileSync(path.join(ep.workspace, '.mlagent-milestones'), 'dataLoaded\nmodelTrained\n');
    writeFileSync(path.join(ep.workspace, 'crash.py'), 'raise SystemExit("crash before anything")\n');
    const crash = await ep.step(respond('Execute Script', { script_name: 'crash.py' }));
    expect(crash.feedback).toMatchObject({ outcome: 'error', milestones: { dataLoaded: false, modelTrained: false, submissionWritten: false } });
    writeFileSync(
      path.join(ep.workspace, 'fit.py'),
      "import pandas as pd\nfrom sklearn.linear_model import LinearRegression\ndf = pd.read_csv('data/train.csv')\nm = LinearRegression().fit(df[['x']], df['y'])\nraise ValueError('after fitting')\n",
    );
    const fit = await ep.step(respond('Execute Script', { script_name: 'fit.py' }));
    expect(fit.feedback).toMatchObject({ outcome: 'error', milestones: { dataLoaded: true, modelTrained: true, submissionWritten: false } });
    expect(existsSync(path.join(ep.workspace, '.mlagent-milestones'))).toBe(false);
    // A script that writes the milestones file itself, and a huge one: ignored, not read into the trainer, removed.
    writeFileSync(path.join(ep.workspace, 'forge.py'), "open('.mlagent-milestones', 'w').write('dataLoaded\\nmodelTrained\\n' * 500000)\n");
    const forged = await ep.step(respond('Execute Script', { script_name: 'forge.py' }));
    expect(forged.feedback).toMatchObject({ outcome: 'ok', milestones: { dataLoaded: false, modelTrained: false } });
    expect(existsSync(path.join(ep.workspace, '.mlagent-milestones'))).toBe(false);
    // A link planted there is not followed: not to a FIFO, whose open would block the trainer for good, nor to a host
    // file, whose lines would answer the agent's questions about it.
    const hostFile = path.join(mkdtempSync(path.join(tmpdir(), 'mlagent-milestones-')), 'host.txt');
    writeFileSync(hostFile, 'dataLoaded\nmodelTrained\n');
    writeFileSync(path.join(ep.workspace, 'fifo.py'), "import os\nos.mkfifo('pipe')\nos.symlink('pipe', '.mlagent-milestones')\n");
    writeFileSync(path.join(ep.workspace, 'link.py'), `import os\nos.symlink(${JSON.stringify(hostFile)}, '.mlagent-milestones')\n`);
    for (const script of ['fifo.py', 'link.py']) {
      const planted = await ep.step(respond('Execute Script', { script_name: script }));
      expect(planted.feedback, script).toMatchObject({ outcome: 'ok', milestones: { dataLoaded: false, modelTrained: false } });
      expect(lstatSync(path.join(ep.workspace, '.mlagent-milestones'), { throwIfNoEntry: false }), script).toBeUndefined();
    }
    // The workspace's absolute path (output directory, random name) is not shown: tracebacks name ./script.py.
    writeFileSync(path.join(ep.workspace, 'where.py'), "import os\nprint(os.getcwd(), os.path.abspath('data'))\nraise ValueError('where')\n");
    const where = await ep.step(respond('Execute Script', { script_name: 'where.py' }));
    expect(where.observation).toContain('\n. data\n');
    expect(where.observation).toContain('File "./where.py", line 3');
    expect(where.observation).not.toContain(realpathSync(ep.workspace));
    const missing = await ep.step(respond('Execute Script', { script_name: 'nope.py' }));
    expect(missing.outcome).toBe('action-error');
    expect(missing.feedback.outcome).toBeUndefined();
    await ep.close();
  }, 30_000);

  it('reports an invalid submission, and refuses a submission.csv that links elsewhere', async () => {
    const ep = await start();
    writeFileSync(path.join(ep.workspace, 'wrong.py'), "open('submission.csv','w').write('id,y\\n9,1\\n')\n");
    const r = await ep.step(respond('Execute Script', { script_name: 'wrong.py' }));
    expect(r.outcome).toBe('invalid-submission');
    expect(r.observation).toMatch(/EnvError: submission.csv is not a valid submission: the ids do not match/);
    expect(r.feedback).toMatchObject({ outcome: 'invalid-submission', metric: null });
    expect(ep.currentMetric).toBe(1);
    // The hidden answers would score perfectly if the grader followed a link to them.
    writeFileSync(
      path.join(ep.workspace, 'link.py'),
      `import os\nos.remove('submission.csv')\nos.symlink(${JSON.stringify(path.join(fx.task.privateDir, 'answers.csv'))}, 'submission.csv')\n`,
    );
    const l = await ep.step(respond('Execute Script', { script_name: 'link.py' }));
    expect(l.outcome).toBe('invalid-submission');
    expect(l.observation).toMatch(/must be a regular file/);
    expect(l.metric).toBeNull();
    // The grader runs unsandboxed: a submission far larger than the answers (37 bytes here) never reaches it.
    writeFileSync(path.join(ep.workspace, 'huge.py'), "import os\nos.remove('submission.csv')\nopen('submission.csv', 'w').write('id,y\\n' + '0,1\\n' * 300000)\n");
    const h = await ep.step(respond('Execute Script', { script_name: 'huge.py' }));
    expect(h.outcome).toBe('invalid-submission');
    expect(h.observation).toMatch(/submission.csv is 1\.1 MiB; a submission for this task may be at most 1\.0 MiB \(16 times the size of its answers, plus 1 MiB\)/);
    await ep.close();
  }, 30_000);

  it('Execute Script runs through the shared pool, one at a time with concurrency 1', async () => {
    const pool = new SandboxPool(1);
    let calls = 0;
    const run = pool.run.bind(pool);
    pool.run = (o) => {
      calls++;
      return run(o);
    };
    const eps = await Promise.all([start({ pool }), start({ pool })]);
    const code = 'import time\nprint("start", time.time())\ntime.sleep(0.5)\nprint("end", time.time())\n';
    const runs = await Promise.all(
      eps.map(async (ep) => {
        await ep.step(respond('Write File', { file_name: 'sleep.py', content: code }));
        const r = await ep.step(respond('Execute Script', { script_name: 'sleep.py' }));
        await ep.close();
        const [, t0, t1] = /start ([\d.]+)\nend ([\d.]+)/.exec(r.observation)!.map(Number);
        return [t0, t1];
      }),
    );
    expect(calls).toBe(2);
    const [a, b] = runs.sort((x, y) => x[0] - y[0]);
    expect(b[0]).toBeGreaterThanOrEqual(a[1]);
  }, 30_000);

  it('turns bad responses into observations and counts steps to the limit', async () => {
    const ep = await start({ maxSteps: 4 });
    const noAction = await ep.step('I think we should train a model.');
    expect(noAction.outcome).toBe('parse-error');
    expect(noAction.observation).toMatch(/^Invalid response format/);
    expect(noAction.feedback).toMatchObject({ formatValid: false, isEdit: false });
    const unknown = await ep.step(respond('Train Model', {}));
    expect(unknown.observation).toMatch(/^Invalid action: Train Model/);
    const args = await ep.step(respond('Inspect Script Lines', { script_name: 'train.py' }));
    expect(args.action).toBe('Inspect Script Lines');
    expect(args.observation).toMatch(/^ActionInputParsingError: /);
    expect(args.done).toBe(false);
    const last = await ep.step(respond('List Files', { dir_path: '.' }));
    expect(last.step).toBe(4);
    expect(last.done).toBe(true);
    await expect(ep.step(respond('List Files', { dir_path: '.' }))).rejects.toThrow(/the episode is done/);

    // A state not done, at or past a lower limit, still takes one step (step-wise RL steps from any pooled state).
    const third = await store.load(args.snapshotId!);
    expect([third.step, third.done]).toEqual([3, false]);
    const again = await start({ maxSteps: 2, fromSnapshot: args.snapshotId! });
    expect([again.stepIndex, again.done]).toEqual([3, false]);
    const one = await again.step(respond('List Files', { dir_path: '.' }));
    expect([one.step, one.done]).toEqual([4, true]);
    await again.close();
    await ep.close();
  });

  it('Final Answer ends the episode; helper actions explain themselves when the helper is off', async () => {
    const ep = await start();
    const u = await ep.step(respond('Understand File', { file_name: 'train.py', things_to_look_for: 'the model' }));
    expect(u.outcome).toBe('action-error');
    expect(u.observation).toMatch(/^EnvError: Understand File needs the helper model, which is switched off.*Read File/);
    const e = await ep.step(respond('Edit Script (AI)', { script_name: 'train.py', edit_instruction: 'x', save_name: 'train.py' }));
    expect(e.observation).toMatch(/Edit Script Lines/);
    const s = await ep.step(
      respond('Edit Script Segment (AI)', { script_name: 'train.py', start_line_number: 1, end_line_number: 2, edit_instruction: 'x', save_name: 'a.py' }),
    );
    expect(s.observation).toMatch(/Edit Script Lines/);
    const r = await ep.step(respond('Reflection', { things_to_reflect_on: 'what next?' }));
    expect(r.outcome).toBe('none');
    expect(r.observation).toMatch(/what next\?$/);
    const f = await ep.step(respond('Final Answer', { final_answer: 'done' }));
    expect(f.done).toBe(true);
    expect(ep.done).toBe(true);
    await ep.close();
  });
});

describe('hideWorkspacePath', () => {
  it('makes the workspace path relative, and leaves longer paths that begin or end with it alone', () => {
    const ws = '/tmp/run (1)/work/house-prices-aB3.x';
    const text = [`File "${ws}/./train.py", line 2`, `cwd ${ws}`, `${ws}:`, `${ws}-old/train.py`, `${ws}x`, `/other${ws}/y`].join('\n');
    expect(hideWorkspacePath(text, ws).split('\n')).toEqual(['File "./train.py", line 2', 'cwd .', '.:', `${ws}-old/train.py`, `${ws}x`, `/other${ws}/y`]);
  });
});
