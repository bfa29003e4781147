// The agent's view (messages / prompt with a history window) and the helper-model actions against a local
// fake OpenAI-compatible server.
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Episode } from '../src/episode/episode.js';
import { chatComplete } from '../src/helper-llm/client.js';
import { unifiedDiff } from '../src/helper-llm/diff.js';
import { SnapshotStore } from '../src/snapshots/store.js';
import { makeFixtureTask, respond, trainScript, type Fixture } from './episode-fixture.js';

interface Request {
  model: string;
  messages: { role: string; content: string }[];
}

/** A fake chat server: `reply` answers each request; `failFirst` requests get HTTP 503 first. */
function fakeServer(reply: (req: Request) => string, failFirst = 0) {
  const requests: Request[] = [];
  let failures = 0;
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      if (req.url !== '/v1/chat/completions') {
        res.writeHead(404).end('not found');
        return;
      }
      if (failures < failFirst) {
        failures++;
        res.writeHead(503).end('busy');
        return;
      }
      const r = JSON.parse(body) as Request;
      requests.push(r);
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ choices: [{ message: { role: 'assistant', content: reply(r) } }] }));
    });
  });
  return {
    requests,
    server,
    async url(): Promise<string> {
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      return `http://127.0.0.1:${(server.address() as { port: number }).port}`;
    },
  };
}

let fx: Fixture;
let store: SnapshotStore;
beforeAll(() => {
  fx = makeFixtureTask();
  store = new SnapshotStore(path.join(fx.root, 'store'));
});
afterAll(() => fx.cleanup());

describe('the agent view', () => {
  it('messages(): system with the actions, the task, then response/observation turns; older steps in brief', async () => {
    const ep = await Episode.start(fx.task, { store, workRoot: path.join(fx.root, 'ws'), historyWindow: 2 });
    let m = ep.messages();
    expect(m.map((t) => t.role)).toEqual(['system', 'user']);
    expect(m[0].content).toContain('- Edit Script Lines:');
    expect(m[0].content).not.toContain('- Edit Script (AI):');
    expect(m[0].content).toContain('Action Input:');
    expect(m[1].content).toMatch(/^Research Problem: Predict y/);
    expect(m[1].content).toMatch(/15 steps/);
    expect(m[1].content).toMatch(/Begin with step 1\.$/);
    const responses = [
      respond('List Files', { dir_path: '.' }),
      respond('Inspect Script Lines', { script_name: 'train.py', start_line_number: 1, end_line_number: 2 }),
      respond('Execute Script', { script_name: 'train.py' }),
    ];
    for (const r of responses) await ep.step(r);
    m = ep.messages();
    expect(m.map((t) => t.role)).toEqual(['system', 'user', 'assistant', 'user', 'assistant', 'user']);
    expect(m[1].content).toContain('Earlier steps, in brief:\nStep 1: List Files {"dir_path":"."} -> none');
    expect(m[2].content).toBe(responses[1]);
    expect(m[3].content).toMatch(/^Observation:\n```\nHere are the lines/);
    expect(m[5].content).toBe('Observation:\n```\nThe script has been executed. Here is the output:\nloaded 2 rows\ndone\n\n```');
    const p = ep.prompt();
    expect(p.startsWith(m[0].content)).toBe(true);
    expect(p).toContain(`Step 2:\n${responses[1]}\n\nObservation:`);
    expect(p).not.toContain('Step 1:\n');
    expect(p.endsWith('Step 4:')).toBe(true);
    await ep.close();
  });
});

describe('helper model actions', () => {
  it('Understand File, Edit Script (AI), Edit Script Segment (AI) and Reflection call the helper', async () => {
    const fake = fakeServer((req) => {
      const text = req.messages[0].content;
      if (text.includes('Report on the following')) return 'Line 4 sets the constant prediction.';
      if (text.includes('Edit it following this instruction')) {
        if (text.includes('```python\npred = 0\n```')) return 'Sure:\n```python\npred = 0.5\n```\nDone.';
        return '```python\n' + trainScript(2) + '```';
      }
      if (text.includes('Reflect on the following')) return 'Try a better constant.';
      return 'unexpected';
    });
    const helperLlm = { baseUrl: await fake.url(), model: 'helper-1' };
    const ep = await Episode.start(fx.task, { store, workRoot: path.join(fx.root, 'ws'), helperLlm });
    expect(ep.messages()[0].content).toContain('- Edit Script (AI):');
    const u = await ep.step(respond('Understand File', { file_name: 'train.py', things_to_look_for: 'the prediction' }));
    expect(u).toMatchObject({ outcome: 'none', observation: 'Line 4 sets the constant prediction.' });
    expect(fake.requests[0].model).toBe('helper-1');
    expect(fake.requests[0].messages[0].content).toContain("4: pred = 0");
    const e = await ep.step(respond('Edit Script (AI)', { script_name: 'train.py', edit_instruction: 'predict 2', save_name: 'train2.py' }));
    expect(e.outcome).toBe('none');
    expect(e.feedback.isEdit).toBe(true);
    expect(readFileSync(path.join(ep.workspace, 'train2.py'), 'utf8')).toBe(trainScript(2));
    expect(e.observation).toBe(
      'The edited file is saved to train2.py. Here is the diff, please check if the edit is correct and desirable:\n\n' +
        unifiedDiff(trainScript(0), trainScript(2), 'train2.py'),
    );
    const s = await ep.step(
      respond('Edit Script Segment (AI)', { script_name: 'train.py', start_line_number: 4, end_line_number: 4, edit_instruction: 'halve', save_name: 'train.py' }),
    );
    expect(s.outcome).toBe('none');
    expect(readFileSync(path.join(ep.workspace, 'train.py'), 'utf8')).toBe(trainScript(0.5));
    expect(s.observation).toContain('-pred = 0\n+pred = 0.5\n');
    const r = await ep.step(respond('Reflection', { things_to_reflect_on: 'what next' }));
    expect(r.observation).toBe('Try a better constant.');
    expect(fake.requests.at(-1)!.messages[0].content).toContain('Step 3: Edit Script Segment (AI)');
    const undo = await ep.step(respond('Undo Edit Script', { script_name: 'train.py' }));
    expect(undo.outcome).toBe('none');
    expect(readFileSync(path.join(ep.workspace, 'train.py'), 'utf8')).toBe(trainScript(0));
    fake.server.close();
    await ep.close();
  });

  it('Understand File reads a long file in blocks, at most 8, then merges the findings', async () => {
    const fake = fakeServer((req) => (req.messages[0].content.startsWith('These are reports') ? 'merged report' : 'block report'));
    const ep = await Episode.start(fx.task, { store, workRoot: path.join(fx.root, 'ws'), helperLlm: { baseUrl: await fake.url(), model: 'm' } });
    const lines = Array.from({ length: 2000 }, (_, i) => `row ${i} ${'x'.repeat(95)}`);
    writeFileSync(path.join(ep.workspace, 'long.txt'), lines.join('\n') + '\n');
    const r = await ep.step(respond('Understand File', { file_name: 'long.txt', things_to_look_for: 'rows' }));
    expect(fake.requests.length).toBe(9);
    expect(fake.requests[0].messages[0].content).toContain('(lines 1 to ');
    expect(r.observation).toMatch(/^merged report\n\n\(Only lines 1 to \d+ of long.txt were read; the file is longer.\)$/);
    fake.server.close();
    await ep.close();
  });

  it('retries a busy server, and turns an unreachable one into an EnvError observation', async () => {
    const fake = fakeServer(() => 'ok after retries', 2);
    const url = await fake.url();
    expect(await chatComplete({ baseUrl: `${url}/v1/`, model: 'm', attempts: 3 }, [{ role: 'user', content: 'hi' }])).toBe('ok after retries');
    fake.server.close();
    const dead = { baseUrl: 'http://127.0.0.1:9', model: 'm', attempts: 2, timeoutMs: 2000 };
    const ep = await Episode.start(fx.task, { store, workRoot: path.join(fx.root, 'ws'), helperLlm: dead });
    const r = await ep.step(respond('Understand File', { file_name: 'train.py', things_to_look_for: 'x' }));
    expect(r.outcome).toBe('action-error');
    expect(r.observation).toMatch(/^EnvError: the helper model gave no usable answer after 2 attempts \(request failed/);
    await ep.close();
  }, 20_000);
});

describe('unifiedDiff', () => {
  it('shows hunks with context and line numbers', () => {
    const a = 'a\nb\nc\nd\ne\nf\ng\nh\n';
    const b = 'a\nB\nc\nd\ne\nf\ng\nh\ni\n';
    expect(unifiedDiff(a, b, 'x.py', 1)).toBe('--- x.py\n+++ x.py\n@@ -1,3 +1,3 @@\n a\n-b\n+B\n c\n@@ -8,1 +8,2 @@\n h\n+i\n');
    expect(unifiedDiff(a, a, 'x.py')).toBe('');
    expect(unifiedDiff('', 'new\n', 'n.py')).toBe('--- n.py\n+++ n.py\n@@ -0,0 +1,1 @@\n+new\n');
  });
});

describe('scoring edits (runEditedScripts)', () => {
  const edit = (content: string) => respond('Edit Script Lines', { script_name: 'train.py', start_line_number: 4, end_line_number: 4, new_content: content });

  it('runs the edited script, so the edit step carries its outcome and metric', async () => {
    const ep = await Episode.start(fx.task, { store, workRoot: path.join(fx.root, 'ws'), runEditedScripts: true });
    const r = await ep.step(edit('pred = 1'));
    expect(r.feedback).toMatchObject({ formatValid: true, isEdit: true, outcome: 'ok', metric: 0, previousMetric: 1, milestones: { submissionWritten: true } });
    expect(r.outcome).toBe('ok');
    expect(r.observation).toContain('The edited script train.py was run to score the edit. The script has been executed.');
    expect(ep.currentMetric).toBe(0);
    const broken = await ep.step(edit('pred = (1'));
    expect(broken.feedback).toMatchObject({ isEdit: true, outcome: 'error', previousMetric: 0 });
    // A non-script edit and a non-edit action run nothing.
    const notes = await ep.step(respond('Write File', { file_name: 'notes.txt', content: 'x' }));
    expect(notes.feedback.outcome).toBeUndefined();
    const listed = await ep.step(respond('List Files', { dir_path: '.' }));
    expect(listed.feedback.outcome).toBeUndefined();
    await ep.close();
  });

  it('is off by default: an edit only edits', async () => {
    const ep = await Episode.start(fx.task, { store, workRoot: path.join(fx.root, 'ws') });
    const r = await ep.step(edit('pred = 1'));
    expect(r.feedback).toEqual({ formatValid: true, isEdit: true, previousMetric: 1, durationSec: r.durationSec });
    expect(r.outcome).toBe('none');
    expect(r.metric).toBeNull();
    await ep.close();
  });
});

describe('snapshotSteps: false', () => {
  it('saves no state per step (RL samples), while the steps, their metric and Undo work as usual', async () => {
    const own = new SnapshotStore(path.join(fx.root, 'no-snap-store'));
    const start = await Episode.start(fx.task, { store: own, workRoot: path.join(fx.root, 'ws') });
    const from = await start.snapshot();
    await start.close();
    const states = () => readdirSync(path.join(own.dir, 'states')).length;
    const before = states();
    const ep = await Episode.start(fx.task, { store: own, workRoot: path.join(fx.root, 'ws'), fromSnapshot: from, snapshotSteps: false, runEditedScripts: true });
    const edit = await ep.step(respond('Edit Script Lines', { script_name: 'train.py', start_line_number: 4, end_line_number: 4, new_content: 'pred = 1' }));
    expect(edit).toMatchObject({ outcome: 'ok', metric: 0, snapshotId: null });
    const undo = await ep.step(respond('Undo Edit Script', { script_name: 'train.py' }));
    expect(undo).toMatchObject({ outcome: 'ok', metric: 1, snapshotId: null }); // Undo is an edit: the script ran again
    expect(readFileSync(path.join(ep.workspace, 'train.py'), 'utf8')).toBe(trainScript(0));
    expect(states()).toBe(before);
    await ep.close();
    // The control: the same steps in a saving episode add a state each.
    const saving = await Episode.start(fx.task, { store: own, workRoot: path.join(fx.root, 'ws'), fromSnapshot: from, runEditedScripts: true });
    expect((await saving.step(respond('List Files', { dir_path: '.' }))).snapshotId).toMatch(/^[0-9a-f]{64}$/);
    expect(states()).toBe(before + 1);
    await saving.close();
  });
});
