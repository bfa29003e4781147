// The env HTTP server on the tiny fixture task: an episode played over HTTP gives the observations, metric and
// reward the TypeScript API gives; every bad request is a JSON error; busy, done, idle and closed episodes; the
// README's Python client run against it with Debian's python3.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { connect } from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compactMessages } from '../src/actions/compact.js';
import { EnvServer } from '../src/server/env-server.js';
import { SnapshotStore } from '../src/snapshots/store.js';
import { makeFixtureTask, respond, trainScript, type Fixture } from './episode-fixture.js';

let fx: Fixture;
beforeAll(() => {
  fx = makeFixtureTask();
});
afterAll(() => fx.cleanup());

/** Runs `body` against a server opened with serve(extra), closed afterwards whatever happens; returns it closed. */
async function withServer(extra: Partial<Parameters<typeof EnvServer.listen>[0]>, body: (server: EnvServer) => Promise<void>): Promise<EnvServer> {
  const server = await serve(extra);
  try {
    await body(server);
  } finally {
    await server.close();
  }
  return server;
}

async function serve(extra: Partial<Parameters<typeof EnvServer.listen>[0]> = {}): Promise<EnvServer> {
  return EnvServer.listen({
    episode: { store: new SnapshotStore(path.join(fx.root, 'store')), workRoot: path.join(fx.root, 'ws') },
    prepare: async (name) => {
      if (name !== 'tiny') throw new Error(`no task named '${name}'`);
      return fx.task;
    },
    tasks: () => [fx.task.spec],
    ...extra,
  });
}

interface Answer {
  status: number;
  body: any; // eslint-disable-line @typescript-eslint/no-explicit-any -- the tests read whatever JSON came back
}

/** One request with a raw body (a string is sent as it is, anything else as JSON). */
function call(server: EnvServer, method: string, route: string, body?: unknown): Promise<Answer> {
  const text = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = request(`${server.url}${route}`, { method, headers: text === undefined ? {} : { 'content-type': 'application/json' } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const raw = Buffer.concat(chunks).toString('utf8');
        try {
          resolve({ status: res.statusCode ?? 0, body: JSON.parse(raw) });
        } catch {
          reject(new Error(`not JSON (${res.statusCode}): ${raw}`));
        }
      });
    });
    req.on('error', reject);
    req.end(text);
  });
}

describe('EnvServer', () => {
  it('plays an episode over HTTP: observations, metrics and rewards as the TypeScript API gives them', async () => {
    await withServer({}, async (server) => {
      expect((await call(server, 'GET', '/v1/tasks')).body.tasks).toEqual([{ name: 'tiny', title: 'Tiny', modality: 'tabular-regression', split: 'held-in', metric: { name: 'mae', direction: 'minimize' }, baseline: 1, best: 0 }]);
      const started = await call(server, 'POST', '/v1/episodes', { task: 'tiny', maxSteps: 4 });
      expect(started.status).toBe(201);
      const ep = started.body;
      expect(ep).toMatchObject({ task: 'tiny', step: 0, maxSteps: 4, done: false, metric: 1 });
      expect(ep.id).toMatch(/^[0-9a-f]{24}$/);
      expect(ep.messages[0].role).toBe('system');
      expect(ep.messages.at(-1).content).toContain('Predict y for every id');
      expect(typeof ep.prompt).toBe('string');

      const list = await call(server, 'POST', `/v1/episodes/${ep.id}/step`, { response: respond('List Files', { dir_path: '.' }) });
      expect(list.status).toBe(200);
      expect(list.body.result).toMatchObject({ step: 1, action: 'List Files', outcome: 'none', metric: null, done: false });
      expect(list.body.result.observation).toContain('train.py');
      expect(list.body.reward).toEqual({ reward: 0.5, reason: 'neutral' });
      expect(list.body.episode.messages.at(-1).content).toContain(list.body.result.observation.trim().split('\n')[0]);

      const garbage = await call(server, 'POST', `/v1/episodes/${ep.id}/step`, { response: 'I will think about it.' });
      expect(garbage.body.result.outcome).toBe('parse-error');
      expect(garbage.body.reward).toMatchObject({ reward: 0 });

      // Predicting 1 everywhere is exact: MAE 0 against the baseline 1, the best gain there is.
      await call(server, 'POST', `/v1/episodes/${ep.id}/step`, { response: respond('Write File', { file_name: 'train.py', content: trainScript(1) }) });
      const run = await call(server, 'POST', `/v1/episodes/${ep.id}/step`, { response: respond('Execute Script', { script_name: 'train.py' }) });
      expect(run.body.result).toMatchObject({ step: 4, outcome: 'ok', metric: 0, done: true });
      expect(run.body.reward.reason).toBe('metric-gain');
      expect(run.body.reward.reward).toBeCloseTo(1 / (1 + Math.exp(-100)), 12);
      expect(run.body.episode).toMatchObject({ step: 4, done: true, metric: 0 });

      const after = await call(server, 'POST', `/v1/episodes/${ep.id}/step`, { response: respond('List Files', { dir_path: '.' }) });
      expect(after.status).toBe(409);
      expect(after.body.error).toEqual({ type: 'episode_done', message: `episode ${ep.id} is done after 4 steps; DELETE it, or start another` });
      expect((await call(server, 'GET', `/v1/episodes/${ep.id}`)).body).toMatchObject({ step: 4, done: true, metric: 0 });
      const workspaces = () => (existsSync(path.join(fx.root, 'ws')) ? readdirSync(path.join(fx.root, 'ws')) : []);
      expect(workspaces()).toHaveLength(1);
      const deleted = await call(server, 'DELETE', `/v1/episodes/${ep.id}`);
      expect(deleted.body).toMatchObject({ id: ep.id, step: 4, done: true, metric: 0, closed: true });
      expect(workspaces()).toEqual([]);
      expect((await call(server, 'GET', `/v1/episodes/${ep.id}`)).body.error).toEqual({ type: 'episode_not_found', message: `episode ${ep.id} was deleted` });
    });
  }, 60_000);

  it('plays several episodes at once, each in its own workspace', async () => {
    const closed = await withServer({}, async (server) => {
      // Predictions 1, 2 and 3 against answers of 1: MAE 0, 1 and 2, if no episode sees another's train.py.
      const preds = [1, 2, 3];
      const metrics = await Promise.all(
        preds.map(async (pred) => {
          const ep = (await call(server, 'POST', '/v1/episodes', { task: 'tiny' })).body;
          await call(server, 'POST', `/v1/episodes/${ep.id}/step`, { response: respond('Write File', { file_name: 'train.py', content: trainScript(pred) }) });
          const run = await call(server, 'POST', `/v1/episodes/${ep.id}/step`, { response: respond('Execute Script', { script_name: 'train.py' }) });
          return run.body.result.metric as number;
        }),
      );
      expect(metrics).toEqual([0, 1, 2]);
      expect(server.openEpisodes).toBe(3);
    });
    expect(closed.openEpisodes).toBe(0);
  }, 60_000);

  it('scoreEdits: true runs an edited script at once, so the edit step gets the metric and the reward', async () => {
    await withServer({}, async (server) => {
      const ep = (await call(server, 'POST', '/v1/episodes', { task: 'tiny', scoreEdits: true })).body;
      const edit = await call(server, 'POST', `/v1/episodes/${ep.id}/step`, { response: respond('Write File', { file_name: 'train.py', content: trainScript(1) }) });
      expect(edit.body.result).toMatchObject({ action: 'Write File', metric: 0 });
      expect(edit.body.reward.reason).toBe('metric-gain');
      const plain = (await call(server, 'POST', '/v1/episodes', { task: 'tiny' })).body;
      const unscored = await call(server, 'POST', `/v1/episodes/${plain.id}/step`, { response: respond('Write File', { file_name: 'train.py', content: trainScript(1) }) });
      expect(unscored.body.result.metric).toBeNull();
      expect(unscored.body.reward).toEqual({ reward: 0.5, reason: 'neutral' });
    });
  }, 60_000);

  it("promptFormat 'compact' shows the messages as compact-trained policies saw them in training", async () => {
    await withServer({}, async (server) => {
      const full = (await call(server, 'POST', '/v1/episodes', { task: 'tiny' })).body;
      const compact = (await call(server, 'POST', '/v1/episodes', { task: 'tiny', promptFormat: 'compact' })).body;
      expect(full.messages[0].role).toBe('system');
      expect(compact.messages).toEqual(full.messages.slice(1));
      const response = respond('List Files', { dir_path: '.' }, 'look around first');
      const a = await call(server, 'POST', `/v1/episodes/${full.id}/step`, { response });
      const b = await call(server, 'POST', `/v1/episodes/${compact.id}/step`, { response });
      expect(a.body.episode.messages.find((m: { role: string }) => m.role === 'assistant').content).toBe(response);
      expect(b.body.episode.messages.find((m: { role: string }) => m.role === 'assistant').content).toBe('Action: List Files\nAction Input: {"dir_path":"."}');
      expect(b.body.episode.messages).toEqual(compactMessages(a.body.episode.messages));
    });
  }, 60_000);

  it("scores steps with the server's reward settings (v2: a neutral step is 0, a format error -1)", async () => {
    await withServer({ reward: { variant: 'v2' } }, async (server) => {
      const ep = (await call(server, 'POST', '/v1/episodes', { task: 'tiny' })).body;
      const list = await call(server, 'POST', `/v1/episodes/${ep.id}/step`, { response: respond('List Files', { dir_path: '.' }) });
      expect(list.body.reward).toEqual({ reward: 0, reason: 'neutral' });
      const bad = await call(server, 'POST', `/v1/episodes/${ep.id}/step`, { response: 'no action' });
      expect(bad.body.reward).toMatchObject({ reward: -1, reason: 'invalid-format' });
    });
  });

  it('saves a state and starts a new episode from it', async () => {
    await withServer({}, async (server) => {
      const ep = (await call(server, 'POST', '/v1/episodes', { task: 'tiny' })).body;
      await call(server, 'POST', `/v1/episodes/${ep.id}/step`, { response: respond('Write File', { file_name: 'notes.txt', content: 'kept' }) });
      const saved = await call(server, 'POST', `/v1/episodes/${ep.id}/snapshot`);
      expect(saved.body.state).toMatch(/^[0-9a-f]{64}$/);
      const resumed = (await call(server, 'POST', '/v1/episodes', { task: 'tiny', state: saved.body.state.slice(0, 12), snapshotSteps: false })).body;
      expect(resumed).toMatchObject({ step: 1, done: false });
      const read = await call(server, 'POST', `/v1/episodes/${resumed.id}/step`, { response: respond('Read File', { file_name: 'notes.txt' }) });
      expect(read.body.result.observation).toContain('kept');
      // snapshotSteps: false saves no state per step (the first episode's steps did).
      expect(read.body.result.snapshotId).toBeNull();
      expect(saved.body.state).not.toBeNull();
      expect((await call(server, 'GET', '/v1/episodes')).body.episodes.map((e: { id: string }) => e.id).sort()).toEqual([ep.id, resumed.id].sort());
    });
  }, 60_000);

  it('lists the store\'s states a page at a time, for a client to start episodes from; maxSteps is capped by the server\'s', async () => {
    const store = new SnapshotStore(path.join(fx.root, 'store-listed'));
    let listings = 0;
    const list = store.list.bind(store);
    store.list = (o) => (listings++, list(o));
    await withServer({ episode: { store, workRoot: path.join(fx.root, 'ws'), maxSteps: 3 } }, async (server) => {
      expect((await call(server, 'GET', '/v1/states')).body).toEqual({ total: 0, offset: 0, states: [] });
      expect(listings).toBe(1);
      const ep = (await call(server, 'POST', '/v1/episodes', { task: 'tiny' })).body;
      expect(ep.maxSteps).toBe(3);
      for (const name of ['a.txt', 'b.txt']) await call(server, 'POST', `/v1/episodes/${ep.id}/step`, { response: respond('Write File', { file_name: name, content: name }) });
      const all = (await call(server, 'GET', '/v1/states')).body;
      expect(all).toEqual({ total: all.states.length, offset: 0, states: await list() });
      expect(all.states.map((s: { step: number }) => s.step).sort()).toEqual([0, 1, 2]); // its start, and each step
      expect(all.states[0]).toMatchObject({ task: 'tiny', done: false });
      expect(listings).toBe(2); // the steps' saves made the first listing stale
      const page = (await call(server, 'GET', '/v1/states?task=tiny&limit=1&offset=1')).body;
      expect(page).toEqual({ total: 3, offset: 1, states: [all.states[1]] });
      // Paging reads the store once: the next page reuses the listing.
      expect((await call(server, 'GET', '/v1/states?task=tiny&limit=1&offset=2')).body.states).toEqual([all.states[2]]);
      expect(listings).toBe(3);
      expect((await call(server, 'GET', '/v1/states?task=other')).body).toEqual({ total: 0, offset: 0, states: [] });
      const second = all.states.find((s: { step: number }) => s.step === 2).id;
      const from = (await call(server, 'POST', '/v1/episodes', { task: 'tiny', state: second, maxSteps: 3 })).body;
      expect(from).toMatchObject({ step: 2, maxSteps: 3, done: false });
      const over = await call(server, 'POST', '/v1/episodes', { task: 'tiny', maxSteps: 4 });
      expect([over.status, over.body.error.message]).toEqual([400, "'maxSteps' must be an integer from 1 to 3 (the server's --max-steps), got 4"]);
    });
  }, 60_000);

  it('answers every bad request with a JSON error naming what is wrong, and keeps serving', async () => {
    await withServer({ maxEpisodes: 1, maxBodyBytes: 1000 }, async (server) => {
      const cases: [string, string, unknown, number, string, RegExp][] = [
        ['POST', '/v1/episodes', '{"task": ', 400, 'invalid_json', /not JSON/],
        ['POST', '/v1/episodes', [1], 400, 'invalid_request', /must be a JSON object/],
        ['POST', '/v1/episodes', {}, 400, 'invalid_request', /'task' must name a task .*got nothing/],
        ['POST', '/v1/episodes', { task: 'tiny', max_steps: 3 }, 400, 'invalid_request', /unknown field 'max_steps' \(known: task, state, maxSteps, scoreEdits, snapshotSteps, promptFormat\)/],
        ['POST', '/v1/episodes', { task: 'tiny', promptFormat: 'prompt' }, 400, 'invalid_request', /'promptFormat' must be 'messages' or 'compact', got 'prompt'/],
        ['POST', '/v1/episodes', { task: 'tiny', snapshotSteps: 0 }, 400, 'invalid_request', /'snapshotSteps' must be true or false, got 0/],
        ['POST', '/v1/episodes', { task: 'tiny', maxSteps: 0 }, 400, 'invalid_request', /'maxSteps' must be an integer from 1 to 15 \(the server's --max-steps\), got 0/],
        ['POST', '/v1/episodes', { task: 'tiny', maxSteps: 16 }, 400, 'invalid_request', /'maxSteps' must be an integer from 1 to 15 .*got 16/],
        ['GET', '/v1/states?limit=0', undefined, 400, 'invalid_request', /'limit' must be an integer from 1 to 10000, got '0'/],
        ['GET', '/v1/states?offset=-1', undefined, 400, 'invalid_request', /'offset' must be an integer from 0 to 999999999, got '-1'/],
        ['GET', '/v1/states?task=', undefined, 400, 'invalid_request', /'task' must name a task/],
        ['GET', '/v1/states?tsk=tiny', undefined, 400, 'invalid_request', /unknown query parameter 'tsk' \(known: task, limit, offset\)/],
        ['POST', '/v1/states', {}, 405, 'method_not_allowed', /\/v1\/states takes GET, not POST/],
        ['POST', '/v1/episodes', { task: 'tiny', scoreEdits: 'yes' }, 400, 'invalid_request', /'scoreEdits' must be true or false/],
        ['POST', '/v1/episodes', { task: 'nope' }, 400, 'unknown_task', /cannot load task 'nope': no task named 'nope'/],
        ['POST', '/v1/episodes', { task: 'tiny', state: 'ffffffffffff' }, 400, 'invalid_request', /cannot start an episode of 'tiny' from state ffffffffffff/],
        ['POST', '/v1/episodes', { task: 'tiny', pad: 'x'.repeat(2000) }, 413, 'body_too_large', /limit is 1000/],
        ['GET', '/v1/episodes/0123', undefined, 404, 'episode_not_found', /no episode '0123'/],
        ['PUT', '/v1/tasks', undefined, 405, 'method_not_allowed', /\/v1\/tasks takes GET, not PUT/],
        ['GET', '/v2/whatever', undefined, 404, 'not_found', /no endpoint \/v2\/whatever/],
      ];
      for (const [method, route, body, status, type, message] of cases) {
        const r = await call(server, method, route, body);
        expect([r.status, r.body.error?.type], `${method} ${route} ${JSON.stringify(body)}`).toEqual([status, type]);
        expect(r.body.error.message).toMatch(message);
      }
      const ep = (await call(server, 'POST', '/v1/episodes', { task: 'tiny' })).body;
      const full = await call(server, 'POST', '/v1/episodes', { task: 'tiny' });
      expect([full.status, full.body.error.type]).toEqual([429, 'too_many_episodes']);
      for (const [body, message] of [
        [{}, /'response' must be the model's text \(a string\), got nothing/],
        [{ response: 3 }, /got 3/],
        [{ response: 'x', temperature: 1 }, /unknown field 'temperature' \(known: response\)/],
      ] as const) {
        const r = await call(server, 'POST', `/v1/episodes/${ep.id}/step`, body);
        expect(r.status).toBe(400);
        expect(r.body.error.message).toMatch(message);
      }
      // A request target the URL parser refuses (Node's HTTP parser lets it through).
      const port = Number(new URL(server.url).port);
      const raw = await new Promise<string>((resolve) => {
        const socket = connect(port, '127.0.0.1', () => socket.write('GET http://[ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'));
        let text = '';
        socket.on('data', (b: Buffer) => (text += b));
        socket.on('end', () => resolve(text));
      });
      expect(raw).toMatch(/^HTTP\/1\.1 400 [\s\S]*"type":"invalid_request","message":"cannot read the request's path/);
      expect((await call(server, 'GET', '/v1/health')).body).toEqual({ ok: true, episodes: 1, maxEpisodes: 1 });
    });
  }, 60_000);

  it("serves the registry's tasks by name only: a directory a client names is refused, its grader never run", async () => {
    const server = await EnvServer.listen({ episode: { store: new SnapshotStore(path.join(fx.root, 'store')), workRoot: path.join(fx.root, 'ws') } });
    try {
      const names = (await call(server, 'GET', '/v1/tasks')).body.tasks.map((t: { name: string }) => t.name);
      expect(names).toContain('house-prices');
      for (const task of [fx.task.dir, path.relative(process.cwd(), fx.task.dir), 'tiny']) {
        const r = await call(server, 'POST', '/v1/episodes', { task });
        expect([r.status, r.body.error.type]).toEqual([400, 'unknown_task']);
        expect(r.body.error.message).toMatch(/no such task \(the server's tasks: .*house-prices/);
      }
    } finally {
      await server.close();
    }
  });

  it('with a token, refuses every request without it (401), before reading anything', async () => {
    await withServer({ token: 's3cret' }, async (server) => {
      for (const headers of [{}, { authorization: 'Bearer wrong' }, { authorization: 's3cret' }] as Record<string, string>[]) {
        const r = await fetch(`${server.url}/v1/episodes`, { method: 'POST', headers, body: JSON.stringify({ task: 'tiny' }) });
        expect(r.status).toBe(401);
        expect(((await r.json()) as { error: { type: string } }).error.type).toBe('unauthorized');
      }
      expect(server.openEpisodes).toBe(0);
      const ok = await fetch(`${server.url}/v1/health`, { headers: { authorization: 'Bearer s3cret' } });
      expect(ok.status).toBe(200);
      await expect(EnvServer.listen({ episode: { store: new SnapshotStore(path.join(fx.root, 'store')) }, token: '' })).rejects.toThrow(/token must be a non-empty string/);
    });
  });

  it('refuses a second request while a step runs; an idle episode is closed; close() waits for the step', async () => {
    writeFileSync(path.join(fx.task.envDir, 'slow.py'), 'import time\ntime.sleep(1.5)\nprint("slept")\n');
    await withServer({ idleTimeoutSec: 0.4 }, async (server) => {
      const ep = (await call(server, 'POST', '/v1/episodes', { task: 'tiny' })).body;
      const slow = call(server, 'POST', `/v1/episodes/${ep.id}/step`, { response: respond('Execute Script', { script_name: 'slow.py' }) });
      await new Promise((r) => setTimeout(r, 300));
      const second = await call(server, 'POST', `/v1/episodes/${ep.id}/step`, { response: respond('List Files', { dir_path: '.' }) });
      expect([second.status, second.body.error.type]).toEqual([409, 'episode_busy']);
      expect((await call(server, 'DELETE', `/v1/episodes/${ep.id}`)).status).toBe(409);
      // The step outlasts the idle timeout: a running step keeps its episode open.
      const done = await slow;
      expect(done.body.result.observation).toContain('slept');
      await new Promise((r) => setTimeout(r, 1000));
      const gone = await call(server, 'GET', `/v1/episodes/${ep.id}`);
      expect(gone.body.error.message).toBe(`episode ${ep.id} was closed after 0.4 s without a request (--idle-timeout)`);
      expect(server.openEpisodes).toBe(0);

      const other = (await call(server, 'POST', '/v1/episodes', { task: 'tiny' })).body;
      const running = call(server, 'POST', `/v1/episodes/${other.id}/step`, { response: respond('Execute Script', { script_name: 'slow.py' }) });
      await new Promise((r) => setTimeout(r, 300));
      await server.close();
      expect((await running).body.result.observation).toContain('slept');
      expect(server.openEpisodes).toBe(0);
    });
  }, 60_000);

  it("runs the README's Python client against it with Debian's python3", async () => {
    const readme = readFileSync(path.join(import.meta.dirname, '..', 'README.md'), 'utf8');
    const block = /<!-- python-client-example -->\n```python\n([\s\S]*?)```/.exec(readme);
    expect(block, 'the README has its python-client-example block').not.toBeNull();
    const script = path.join(fx.root, 'client.py');
    writeFileSync(script, block![1]);
    await withServer({ token: 's3cret' }, async (server) => {
      const r = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
        const child = spawn('/usr/bin/python3', [script], { env: { ...process.env, MLAGENT_ENV_URL: server.url, MLAGENT_TASK: 'tiny', MLAGENT_ENV_TOKEN: 's3cret' } });
        let stdout = '';
        let stderr = '';
        child.stdout.on('data', (c: Buffer) => (stdout += c));
        child.stderr.on('data', (c: Buffer) => (stderr += c));
        child.on('close', (code) => resolve({ code, stdout, stderr }));
      });
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toBe('step 1: List Files -> none, reward 0.5\nstep 2: Final Answer -> none, reward 0.5\nmetric: 1\n');
      expect(server.openEpisodes).toBe(0);
    });
  }, 60_000);
});
