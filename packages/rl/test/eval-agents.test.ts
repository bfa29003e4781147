// The other agents end to end on a real task: a tiny random policy (batched generation on lavapipe; its outputs
// are not actions, which the format-error rate must show) and an OpenAI-compatible endpoint served by node:http
// (scripted answers, one malformed, one flaky request, a refusing model, and a slow one against the time budget).
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { prepareTask, type PreparedTask } from '@mlagent/env';
import type { QwenModel, QwenTokenizer } from '@mlagent/policy';
import { endpointAgent, type AgentRequest } from '../src/eval/agent.js';
import { evaluate, type EvalStepRecord } from '../src/eval/evaluate.js';
import { policyAgent } from '../src/eval/policy-agent.js';
import { tinyModel, type TinyModel } from './tiny-model.js';

let task: PreparedTask;
const dirs: string[] = [];
const newDir = () => {
  const d = mkdtempSync(path.join(tmpdir(), 'rl-eval-agents-'));
  dirs.push(d);
  return d;
};
const stepsOf = (out: string) => readFileSync(path.join(out, 'eval-steps.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as EvalStepRecord);

beforeAll(async () => {
  task = await prepareTask('house-prices');
}, 120_000);

afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('the policy agent', () => {
  let tiny: TinyModel;
  let model: QwenModel;
  let tokenizer: QwenTokenizer;

  beforeAll(async () => {
    tiny = await tinyModel('rl-eval-agents-model-');
    ({ model, tokenizer } = tiny);
  }, 120_000);

  afterAll(() => tiny?.close());

  it("plays full episodes in batched rounds; a random model's answers are all format errors", async () => {
    const out = newDir();
    const agent = policyAgent({ model, tokenizer, name: 'tiny', maxNewTokens: 3, temperature: 1 });
    const result = await evaluate({ tasks: [task], agent, trajectories: 2, maxSteps: 2, timeBudgetSec: 600, concurrency: 2, seed: 5, out, progress: false });
    expect(agent.stats.responses).toBe(4);
    expect(agent.stats.generatedTokens).toBeGreaterThanOrEqual(4);
    expect(agent.stats.generatedTokens).toBeLessThanOrEqual(12);
    const [row] = result.rows;
    expect(row).toMatchObject({ agent: 'tiny', task: 'house-prices', trajectories: 2, meanSteps: 2, formatErrorRate: 1, submitted: 0, successRate: 0 });
    // No valid submission: both trajectories score the baseline.
    expect(row.avg).toBe(task.spec.baseline);
    expect(row.best).toBe(task.spec.baseline);
    expect(row.avgGain).toBe(0);
    const steps = stepsOf(out);
    expect(steps).toHaveLength(4);
    for (const s of steps) expect(s).toMatchObject({ formatValid: false, outcome: 'parse-error', action: null });
    expect(result.agents[0].notes).toMatch(/^4 responses, /);
    expect(result.agents[0].temperature).toBe(1);
  }, 120_000);

  it('samples reproducibly from the round seed, and cuts prompts longer than the context from the front', async () => {
    const requestFor = async (index: number): Promise<AgentRequest> => {
      const { Episode, SnapshotStore } = await import('@mlagent/env');
      const ep = await Episode.start(task, { store: new SnapshotStore(path.join(newDir(), 's')), maxSteps: 3 });
      const r = { id: `house-prices/${index}`, task, index, turn: { messages: ep.messages(), stepsLeft: 3 }, prompt: ep.prompt() };
      await ep.close();
      return r;
    };
    const requests = [await requestFor(0), await requestFor(1)];
    const agent = policyAgent({ model, tokenizer, maxNewTokens: 2, temperature: 1, promptFormat: 'prompt' });
    const once = await agent.respond(requests, { seed: 11 });
    expect(await agent.respond(requests, { seed: 11 })).toEqual(once);
    expect(once.every((t) => typeof t === 'string')).toBe(true);
    expect(agent.stats.truncatedPrompts).toBe(0);
    // A tight context keeps the end of the prompt and counts the cut.
    const tight = policyAgent({ model, tokenizer, maxNewTokens: 2, temperature: 0, maxContext: 64 });
    await tight.respond(requests.slice(0, 1), { seed: 0 });
    expect(tight.stats.truncatedPrompts).toBe(1);
    // batchFor sizes the generate() calls from the round's prompts: one a call samples what maxBatch 1 does.
    const seen: number[][] = [];
    const byPlan = policyAgent({ model, tokenizer, maxNewTokens: 2, temperature: 1, promptFormat: 'prompt', batchFor: (p) => (seen.push(p.map((x) => x.length)), 1) });
    const oneByOne = policyAgent({ model, tokenizer, maxNewTokens: 2, temperature: 1, promptFormat: 'prompt', maxBatch: 1 });
    expect(await byPlan.respond(requests, { seed: 11 })).toEqual(await oneByOne.respond(requests, { seed: 11 }));
    expect(seen).toHaveLength(1);
    expect(seen[0]).toHaveLength(2);
    const broken = policyAgent({ model, tokenizer, maxNewTokens: 2, batchFor: () => 0 });
    await expect(broken.respond(requests, { seed: 1 })).rejects.toThrow(/batchFor must give a positive integer, got 0/);
  }, 90_000);
});

// A fake OpenAI-compatible server: answers by the number of assistant turns in the chat it is sent.
const ANSWERS = [
  'Thought: look around\nAction: List Files\nAction Input: {"dir_path": "."}',
  'I am not sure what to do next.',
  'Thought: run the baseline\nAction: Execute Script\nAction Input: {"script_name": "train.py"}\nObservation: (made up by the model, cut off)',
  'Action: Final Answer\nAction Input: {"final_answer": "ran the baseline"}',
];

interface Served {
  url: string;
  bodies: { model: string; messages: { role: string; content: string }[] }[];
  server: Server;
}

async function fakeEndpoint(opts: { delayMs?: number; failFirst?: boolean } = {}): Promise<Served> {
  const bodies: Served['bodies'] = [];
  let failed = !opts.failFirst;
  const read = (req: IncomingMessage) =>
    new Promise<string>((resolve) => {
      let s = '';
      req.on('data', (c) => (s += c));
      req.on('end', () => resolve(s));
    });
  const server = createServer(async (req, res) => {
    const body = JSON.parse(await read(req));
    if (!failed) {
      failed = true;
      res.writeHead(503, { 'retry-after': '0' }).end('busy');
      return;
    }
    if (body.model === 'missing') {
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"error": {"message": "no such model"}}');
      return;
    }
    bodies.push(body);
    const turn = body.messages.filter((m: { role: string }) => m.role === 'assistant').length;
    const content = opts.delayMs ? ANSWERS[0] : ANSWERS[Math.min(turn, ANSWERS.length - 1)];
    setTimeout(() => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ choices: [{ message: { role: 'assistant', content } }] })), opts.delayMs ?? 0);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`, bodies, server };
}

describe('the endpoint agent', () => {
  const servers: Server[] = [];
  afterAll(() => servers.forEach((s) => s.close()));

  it("sends the episode's chat, retries a busy server, cuts the invented observation and counts the malformed answer", async () => {
    const ep = await fakeEndpoint({ failFirst: true });
    servers.push(ep.server);
    const out = newDir();
    const agent = endpointAgent({ url: ep.url, model: 'fake', temperature: 0, baseDelayMs: 1, maxAttempts: 3 });
    const result = await evaluate({ tasks: [task], agent, trajectories: 1, maxSteps: 6, timeBudgetSec: 600, out, progress: false });
    const steps = stepsOf(out);
    expect(steps.map((s) => s.action)).toEqual(['List Files', null, 'Execute Script', 'Final Answer']);
    expect(steps[2].response).toBe(ANSWERS[2].slice(0, ANSWERS[2].indexOf('\nObservation:')));
    expect(ep.bodies[0].messages.map((m) => m.role)).toEqual(['system', 'user']);
    expect(ep.bodies[0].messages[1].content).toContain('Research Problem');
    const [t] = result.trajectories;
    expect(t).toMatchObject({ agent: 'endpoint:fake', steps: 4, formatErrors: 1, submitted: true, finalAnswer: true, timedOut: false, error: null });
    expect(t.bestMetric).toBe(steps[2].metric);
    // The baseline script reproduces task.json's baseline score.
    expect(Math.abs(t.score - task.spec.baseline!) / task.spec.baseline!).toBeLessThan(0.01);
    expect(result.rows[0].formatErrorRate).toBe(0.25);
  }, 90_000);

  it('records an agent that fails for good as a failed trajectory', async () => {
    const ep = await fakeEndpoint();
    servers.push(ep.server);
    const result = await evaluate({ tasks: [task], agent: endpointAgent({ url: ep.url, model: 'missing' }), trajectories: 1, maxSteps: 3, timeBudgetSec: 60, progress: false });
    expect(result.trajectories[0]).toMatchObject({ steps: 0, submitted: false, score: task.spec.baseline });
    expect(result.trajectories[0].error).toMatch(/the agent failed: .*HTTP 404/);
    expect(result.rows[0].failed).toBe(1);
  }, 30_000);

  it('stops a trajectory at its time budget', async () => {
    const ep = await fakeEndpoint({ delayMs: 400 });
    servers.push(ep.server);
    const result = await evaluate({ tasks: [task], agent: endpointAgent({ url: ep.url, model: 'slow' }), trajectories: 1, maxSteps: 20, timeBudgetSec: 1, progress: false });
    const [t] = result.trajectories;
    expect(t.timedOut).toBe(true);
    expect(t.steps).toBeGreaterThanOrEqual(1);
    expect(t.steps).toBeLessThanOrEqual(3);
    expect(t.durationSec).toBeGreaterThanOrEqual(1);
    expect(result.rows[0].timedOut).toBe(1);
  }, 30_000);

  it('rejects a bad URL or a missing model name at once', () => {
    expect(() => endpointAgent({ url: 'localhost:8000', model: 'x' })).toThrow(/is not a URL|must be http/);
    expect(() => endpointAgent({ url: 'http://localhost:8000', model: '' })).toThrow(/needs a model name/);
  });
});
