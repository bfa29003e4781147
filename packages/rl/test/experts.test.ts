import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ACTION_NAMES, parseResponse } from '@mlagent/env';
import { SeededRng } from '@mlagent/core-kernels';
import { EndpointError, EndpointExpert, chatCompletionsUrl, checkEndpoint } from '../src/experts/endpoint.js';
import { applyLineEdit, lineEditBetween } from '../src/experts/line-edit.js';
import { RetriesExhaustedError, RetryableError, backoffDelay, withRetry } from '../src/experts/retry.js';
import { ScriptedExpert } from '../src/experts/scripted.js';
import type { ExpertObservation } from '../src/experts/types.js';
import { FAKE_SCRIPT, FakeWorkspace, fakeScore, fakeTask } from './fake-task.js';

async function play(ideas: number[], maxSteps = 30) {
  const task = fakeTask();
  const ws = new FakeWorkspace();
  const te = new ScriptedExpert().begin(task, { candidates: [], ideas });
  const responses: string[] = [];
  let last: ExpertObservation | undefined;
  for (let step = 0; step < maxSteps; step++) {
    const r = await te.respond({ messages: [{ role: 'user', content: 'prompt' }], last, stepsLeft: maxSteps - step });
    responses.push(r);
    const o = ws.step(r);
    last = o;
    if (o.done) break;
  }
  return { ws, responses, actions: responses.map((r) => (parseResponse(r) as { action: string }).action) };
}

describe('line edits', () => {
  it('finds the smallest line range for replacements, insertions, deletions and blank lines', () => {
    const a = 'a\nb\nc\nd\n';
    for (const b of ['a\nB\nc\nd\n', 'a\nb\nx\ny\nc\nd\n', 'a\nd\n', 'a\n\nc\nd\n', '\nb\nc\nd\n', 'z\na\nb\nc\nd\n', 'a\nb\nc\nd\ne\n']) {
      const e = lineEditBetween(a, b);
      expect(e, b).toBeDefined();
      expect(applyLineEdit(a, e!), JSON.stringify(b)).toBe(b);
    }
    expect(lineEditBetween('a\nb\n', 'a\nx\ny\n')).toEqual({ start_line_number: 2, end_line_number: 2, new_content: 'x\ny' });
    expect(lineEditBetween('a\nc\n', 'a\nb\nc\n')).toEqual({ start_line_number: 2, end_line_number: 1, new_content: 'b' });
    expect(lineEditBetween('a\n', 'a')).toBeUndefined();
  });
});

describe('scripted expert', () => {
  it('plays list, inspect, baseline, then edit+run per idea, and every response parses', async () => {
    const { ws, responses, actions } = await play([0, 1]);
    for (const r of responses) {
      const p = parseResponse(r);
      expect(p.ok, r).toBe(true);
      expect(p.fields.reflection && p.fields.researchPlanAndStatus && p.fields.factCheck && p.fields.thought).toBeTruthy();
    }
    expect(actions).toEqual([
      'List Files', 'Inspect Script Lines', 'Execute Script',
      'Edit Script Lines', 'Execute Script',
      'Edit Script Lines', 'Execute Script',
      'Final Answer',
    ]);
    expect(ws.metric).toBeCloseTo(0.65, 10);
    expect(ws.script).toContain('Boosting()');
    expect(ws.script).toContain('standardise(x)');
    const final = parseResponse(responses.at(-1)!);
    expect(final.ok && final.action === 'Final Answer' && final.args.final_answer).toMatch(/0\.5.*Kept: Use gradient boosting.*0\.65/s);
  });

  it('undoes a crashing or worse edit, skips a conflicting idea, and ends on the best script', async () => {
    const { ws, responses, actions } = await play([3, 0, 4, 2, 5]);
    expect(actions).toEqual([
      'List Files', 'Inspect Script Lines', 'Execute Script',
      'Edit Script Lines', 'Execute Script', 'Undo Edit Script', // 3 crashes
      'Edit Script Lines', 'Execute Script', // 0 improves
      'Edit Script Lines', 'Execute Script', 'Undo Edit Script', // 4 is worse
      // 2 rewrites the line 0 changed: skipped without an action
      'Edit Script Lines', 'Execute Script', // 5 (two edits -> one line range) improves
      'Final Answer',
    ]);
    expect(ws.script).toBe(FAKE_SCRIPT.replace('Linear()', 'Boosting()  # +0.10').replace('evaluate()', 'evaluate()  # +0.02').replace('model.write', 'print(score)\nmodel.write'));
    expect(fakeScore(ws.script)).toBeCloseTo(0.62, 10);
    const plan = parseResponse(responses.at(-1)!).fields.researchPlanAndStatus!;
    expect(plan).toMatch(/Add a broken feature step.*\[reverted: the run failed/);
    expect(plan).toMatch(/Use a random forest.*\[skipped: it conflicts/);
    expect(plan).toMatch(/Drop half.*\[reverted: accuracy = 0\.4 is not better than 0\.6\]/);
  });

  it('runs the best version again when the last run was of a reverted edit, so the final submission is the best', async () => {
    const { ws, actions } = await play([0, 4]);
    expect(actions.slice(3)).toEqual(['Edit Script Lines', 'Execute Script', 'Edit Script Lines', 'Execute Script', 'Undo Edit Script', 'Execute Script', 'Final Answer']);
    expect(ws.metric).toBeCloseTo(0.6, 10);
  });

  it('keeps within the step budget and always ends with a Final Answer', async () => {
    for (const maxSteps of [1, 2, 4, 6, 9]) {
      const { actions } = await play([0, 1, 5], maxSteps);
      expect(actions.length).toBeLessThanOrEqual(maxSteps);
      expect(actions.at(-1)).toBe('Final Answer');
    }
  });

  it('refuses seed ideas that the task does not have', () => {
    expect(() => new ScriptedExpert().begin(fakeTask(), { candidates: [], ideas: [9] })).toThrow(/seed idea 9 is not an index of the 6 ideas/);
  });

  it('uses only actions the env knows', async () => {
    const { actions } = await play([0, 3, 4]);
    for (const a of actions) expect(ACTION_NAMES).toContain(a);
  });
});

describe('retry', () => {
  it('backs off exponentially with full jitter under a cap', () => {
    expect(backoffDelay(1, 100, 1000, () => 0.999)).toBe(99);
    expect(backoffDelay(3, 100, 1000, () => 0.5)).toBe(200);
    expect(backoffDelay(10, 100, 1000, () => 0.5)).toBe(500);
  });

  it('retries retryable errors only, honours Retry-After, and gives up after maxAttempts', async () => {
    const waits: number[] = [];
    const sleep = async (ms: number) => void waits.push(ms);
    let n = 0;
    const v = await withRetry(async () => {
      n++;
      if (n < 3) throw new RetryableError('busy', n === 2 ? 250 : undefined);
      return 'ok';
    }, { baseDelayMs: 10, random: () => 0, sleep });
    expect(v).toBe('ok');
    expect(waits).toEqual([0, 250]);
    await expect(withRetry(async () => { throw new Error('fatal'); }, { sleep })).rejects.toThrow('fatal');
    const err = await withRetry(async () => { throw new RetryableError('still busy'); }, { maxAttempts: 4, sleep }).catch((e) => e);
    expect(err).toBeInstanceOf(RetriesExhaustedError);
    expect(err.message).toMatch(/gave up after 4 attempts: still busy/);
  });
});

describe('endpoint expert', () => {
  // A chat server that fails on a seeded schedule: 500s, 429s, hangs past the client's timeout, cut-off JSON.
  let server: Server;
  let url: string;
  let requests = 0;
  const seen: unknown[] = [];
  const rng = new SeededRng(11);
  beforeAll(async () => {
    server = createServer((req, res) => {
      let body = '';
      req.on('data', (c) => (body += c));
      req.on('end', () => {
        requests++;
        if (req.url !== '/v1/chat/completions') {
          res.writeHead(404).end('no such route');
          return;
        }
        const parsed = JSON.parse(body);
        if (parsed.model === 'forbidden') {
          res.writeHead(401).end('bad key');
          return;
        }
        const roll = rng.uniform();
        if (roll < 0.2) res.writeHead(500).end('internal error');
        else if (roll < 0.35) res.writeHead(429, { 'retry-after': '0' }).end('slow down');
        else if (roll < 0.45) setTimeout(() => res.writeHead(200).end('{}'), 400); // past the 150 ms timeout
        else if (roll < 0.55) res.writeHead(200, { 'content-type': 'application/json' }).end('{"choices": [{"mess');
        else {
          seen.push(parsed);
          const reply = `Reflection: ok\nResearch Plan and Status: none\nFact Check: none\nThought: look\nAction: List Files\nAction Input: {"dir_path": "."}`;
          res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ choices: [{ message: { role: 'assistant', content: reply } }] }));
        }
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  it('gets 20 whole answers from a server that fails about half the time', async () => {
    const retries: string[] = [];
    const expert = new EndpointExpert({
      url, model: 'm', apiKey: 'k', timeoutMs: 150, baseDelayMs: 1, maxDelayMs: 5, maxAttempts: 30,
      onRetry: ({ error }) => void retries.push(error.message),
    });
    const te = expert.begin(fakeTask(), { candidates: [{ id: 'c1', ideas: [0], text: 'Use gradient boosting.' }], ideas: [0] });
    for (let i = 0; i < 20; i++) {
      const r = await te.respond({ messages: [{ role: 'system', content: 'sys' }, { role: 'user', content: `prompt ${i}` }], stepsLeft: 5 });
      expect(parseResponse(r).ok).toBe(true);
    }
    expect(requests).toBeGreaterThan(25);
    expect(retries.some((m) => /HTTP 500/.test(m))).toBe(true);
    expect(retries.some((m) => /HTTP 429/.test(m))).toBe(true);
    expect(retries.some((m) => /within 150 ms/.test(m))).toBe(true);
    expect(retries.some((m) => /not JSON/.test(m))).toBe(true);
    // The seed ideas reach the expert inside the last user message only.
    const msgs = (seen[0] as { messages: { role: string; content: string }[] }).messages;
    expect(msgs[0]).toEqual({ role: 'system', content: 'sys' });
    expect(msgs[1].content).toMatch(/^prompt 0\n\nIdeas worth trying.*\n1\. Use gradient boosting\./s);
  });

  it('does not retry a refused request, and fails cleanly when attempts run out', async () => {
    const te = new EndpointExpert({ url, model: 'forbidden', baseDelayMs: 1 }).begin(fakeTask(), { candidates: [], ideas: [] });
    const before = requests;
    await expect(te.respond({ messages: [{ role: 'user', content: 'x' }], stepsLeft: 1 })).rejects.toThrow(EndpointError);
    expect(requests - before).toBe(1);
    const dead = new EndpointExpert({ url: 'http://127.0.0.1:9', model: 'm', maxAttempts: 3, baseDelayMs: 1 }).begin(fakeTask(), { candidates: [], ideas: [] });
    await expect(dead.respond({ messages: [{ role: 'user', content: 'x' }], stepsLeft: 1 })).rejects.toThrow(/gave up after 3 attempts: request to .* failed/);
  });

  it('checks an endpoint with one small request before a run: retried through failures, refused or unreachable fail fast', async () => {
    const before = requests;
    await checkEndpoint({ url, model: 'm', timeoutMs: 150, baseDelayMs: 1, maxDelayMs: 5, maxAttempts: 30 });
    const last = seen[seen.length - 1] as { max_tokens: number; messages: unknown[] };
    expect(last.max_tokens).toBe(16);
    expect(last.messages).toHaveLength(1);
    expect(requests).toBeGreaterThan(before);
    const refused = requests;
    await expect(checkEndpoint({ url, model: 'forbidden', baseDelayMs: 1 })).rejects.toThrow(/HTTP 401 \(not retried\): bad key/);
    expect(requests - refused).toBe(1);
    // Three attempts by default, not chatWithRetry's six.
    await expect(checkEndpoint({ url: 'http://127.0.0.1:9', model: 'm', baseDelayMs: 1 })).rejects.toThrow(/gave up after 3 attempts/);
    await expect(checkEndpoint({ url: `${url}/elsewhere`, model: 'm', baseDelayMs: 1 })).rejects.toThrow(/HTTP 404/);
  });

  it('normalises endpoint URLs and rejects bad ones', () => {
    expect(chatCompletionsUrl('http://h:8000')).toBe('http://h:8000/v1/chat/completions');
    expect(chatCompletionsUrl('https://api.x.com/v1/')).toBe('https://api.x.com/v1/chat/completions');
    expect(chatCompletionsUrl('http://h/v1/chat/completions')).toBe('http://h/v1/chat/completions');
    expect(() => chatCompletionsUrl('localhost:8000')).toThrow(/must be http/);
    expect(() => chatCompletionsUrl('not a url')).toThrow(/is not a URL/);
    expect(() => new EndpointExpert({ url: 'http://h', model: '' })).toThrow(/needs a model name/);
  });
});
