// collect and eval with --redis: the same scripted runs, once locally and once through a real redis-server and
// one `mlagent worker`, give the same records step by step (all but wall times and the state ids that hold them).
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { prepareTask } from '@mlagent/env';
import { collectionEnv, evaluate, remoteEpisodes, type AgentRequest, type EvalAgent, type PoolState } from '@mlagent/rl';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bin, mlagent } from './run-cli.js';

const home = mkdtempSync(path.join(tmpdir(), 'mlagent-cli-redis-'));
const children: ChildProcess[] = [];
let url = '';
const workerLog: string[] = [];

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

beforeAll(async () => {
  const port = await freePort();
  url = `redis://127.0.0.1:${port}`;
  children.push(spawn('/usr/bin/redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--dir', home, '--save', '', '--appendonly', 'no'], { stdio: 'ignore' }));
  const worker = spawn(process.execPath, [bin, 'worker', '--redis', url, '--queue', 'redis-cli-q', '--store', path.join(home, 'worker-states')], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  children.push(worker);
  worker.stderr!.setEncoding('utf8').on('data', (t: string) => workerLog.push(...t.split('\n').filter(Boolean)));
  const t0 = Date.now();
  while (!workerLog.some((l) => l.includes('waiting for jobs'))) {
    if (Date.now() - t0 > 30_000) throw new Error(`the worker did not start:\n${workerLog.join('\n')}`);
    await new Promise((r) => setTimeout(r, 100));
  }
});

afterAll(async () => {
  for (const c of children) c.kill('SIGKILL');
  await new Promise((r) => setTimeout(r, 300));
  rmSync(home, { recursive: true, force: true });
});

/** A JSON value without the fields that record wall time or name states (whose manifests hold wall times). */
function timeless(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(timeless);
  if (value === null || typeof value !== 'object') return value;
  const WALL = new Set(['durationSec', 'stateBefore', 'stateAfter', 'snapshotId', 'createdAt', 'startedAt', 'finishedAt', 'wallSec', 'elapsedSec']);
  return Object.fromEntries(Object.entries(value).filter(([k]) => !WALL.has(k)).map(([k, v]) => [k, timeless(v)]));
}

/** Steps the worker has finished so far. */
const workerJobs = () => workerLog.filter((l) => / done in [\d.]+ s: step \d+ /.test(l)).length;

/** Step records by trajectory, then step. */
function inOrder(records: Record<string, unknown>[]): Record<string, unknown>[] {
  const key = (r: Record<string, unknown>) => `${String(r.trajectory)}#${String(r.step).padStart(6, '0')}`;
  return [...records].sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
}

function jsonl(file: string): Record<string, unknown>[] {
  return readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
}

describe('--redis URL', () => {
  it('rejects a bad --redis and a --queue without it', async () => {
    let r = await mlagent('collect', '--tasks', 'house-prices', '--expert', 'scripted', '--trajectories', '1', '--ideas', '2', '--out', home, '--redis', 'localhost:6379');
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/--redis must be a redis:\/\/ or rediss:\/\/ URL, got 'localhost:6379'/);
    r = await mlagent('eval', '--expert', 'scripted', '--tasks', 'house-prices', '--queue', 'q');
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/--queue goes with --redis URL/);
    r = await mlagent('train', '--preset', 'tiny', '--out', path.join(home, 'train'), '--redis', 'http://127.0.0.1:6379');
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/train: --redis must be a redis:\/\/ or rediss:\/\/ URL, got 'http:\/\/127.0.0.1:6379'/);
  });

  it('collect: the same steps through a worker as locally', async () => {
    const args = (out: string) => ['collect', '--tasks', 'house-prices', '--expert', 'scripted', '--trajectories', '1', '--ideas', '2', '--max-steps', '8', '--out', out];
    const local = path.join(home, 'collect-local');
    const remote = path.join(home, 'collect-remote');
    const [a, b] = await Promise.all([mlagent(...args(local)), mlagent(...args(remote), '--redis', url, '--queue', 'redis-cli-q')]);
    expect(a.code, a.stderr).toBe(0);
    expect(b.code, b.stderr).toBe(0);
    const here = jsonl(path.join(local, 'steps.jsonl'));
    const there = jsonl(path.join(remote, 'steps.jsonl'));
    // The run must exercise a graded edit, or the comparison would say little.
    expect(here.filter((r) => r.outcome === 'ok').map((r) => r.metric)).toHaveLength(2);
    expect(here.some((r) => r.action === 'Edit Script Lines' || r.action === 'Edit Script (AI)')).toBe(true);
    expect(there.map(timeless)).toEqual(here.map(timeless));
    // Every step ran on the worker, and every state it produced came back into the client's store.
    const steps = there.filter((r) => r.type === 'step');
    expect(workerJobs()).toBeGreaterThanOrEqual(steps.length);
    for (const s of steps) expect(existsSync(path.join(remote, 'snapshots', 'states', `${String(s.stateAfter)}.json`)), String(s.stateAfter)).toBe(true);
  }, 90_000);

  it('eval: the same results through a worker as locally', async () => {
    const args = (out: string) => ['eval', '--expert', 'scripted', '--tasks', 'house-prices', '--trajectories', '1', '--ideas', '2', '--max-steps', '8', '--out', out, '--json'];
    const jobsBefore = workerJobs();
    const local = path.join(home, 'eval-local');
    const remote = path.join(home, 'eval-remote');
    const [a, b] = await Promise.all([mlagent(...args(local)), mlagent(...args(remote), '--redis', url, '--queue', 'redis-cli-q')]);
    expect(a.code, a.stderr).toBe(0);
    expect(b.code, b.stderr).toBe(0);
    const here = jsonl(path.join(local, 'eval-steps.jsonl'));
    expect(here.filter((r) => r.outcome === 'ok')).toHaveLength(2);
    expect(inOrder(jsonl(path.join(remote, 'eval-steps.jsonl'))).map(timeless)).toEqual(inOrder(here).map(timeless));
    expect(workerJobs() - jobsBefore).toBeGreaterThanOrEqual(here.length);
    const result = (dir: string) => JSON.parse(readFileSync(path.join(dir, 'eval.json'), 'utf8')) as { rows: unknown[]; trajectories: unknown[] };
    const [x, y] = [result(local), result(remote)];
    expect(x.rows).toHaveLength(1);
    expect(x.trajectories).toHaveLength(1);
    expect(timeless(y.rows)).toEqual(timeless(x.rows));
    expect(timeless(y.trajectories)).toEqual(timeless(x.trajectories));
  }, 90_000);

  it('eval: trajectories that share steps fork from a state the worker saved, as locally', async () => {
    // Both trajectories insert a line; then trajectory 1 runs the script in a fork and shows the line there.
    const act = (name: string, input: object) => `Action: ${name}\nAction Input: ${JSON.stringify(input)}`;
    const turn = (r: AgentRequest) => r.turn.messages.filter((m) => m.role === 'assistant').length;
    const respond = (r: AgentRequest): string => {
      const step = turn(r);
      // One call in two wordings: trajectory 1 forks from a reworded copy, which the worker gets uploaded.
      if (step === 0) return `Thought: ${r.index === 0 ? 'add a line' : 'insert a comment'}\n${act('Edit Script Lines', { script_name: 'train.py', start_line_number: 1, end_line_number: 0, new_content: '# inserted by both' })}`;
      if (step === 1 && r.index === 1) return act('Execute Script', { script_name: 'train.py' });
      if (step === 2 && r.index === 1) return act('Inspect Script Lines', { script_name: 'train.py', start_line_number: 1, end_line_number: 1 });
      return act('Final Answer', { final_answer: 'done' });
    };
    const agent: EvalAgent = { name: 'plan', kind: 'test', detail: '', temperature: null, respond: async (rs) => rs.map(respond) };
    const task = await prepareTask('house-prices');
    const remote = remoteEpisodes({ redis: url, queue: 'redis-cli-q' });
    const run = (out: string, startEpisode?: Parameters<typeof evaluate>[0]['startEpisode']) =>
      evaluate({ tasks: [task], agent, trajectories: 2, maxSteps: 5, timeBudgetSec: 300, concurrency: 2, out: path.join(home, out), progress: false, startEpisode });
    try {
      const jobsBefore = workerJobs();
      await run('eval-fork-local');
      await run('eval-fork-remote', (t, o) => remote.start(t, o));
      const steps = (dir: string) => jsonl(path.join(home, dir, 'eval-steps.jsonl'));
      const here = steps('eval-fork-local');
      // The file holds steps in the order they finished, which for concurrent trajectories is the workers' timing.
      expect(inOrder(steps('eval-fork-remote')).map(timeless)).toEqual(inOrder(here).map(timeless));
      expect(here.filter((r) => r.shared).map((r) => `${r.trajectory}#${r.step}`)).toEqual(['house-prices/0001#1']);
      const forked = here.filter((r) => r.trajectory === 'house-prices/0001');
      expect(forked[1]).toMatchObject({ action: 'Execute Script', outcome: 'ok' });
      expect(String(forked[2].observation)).toContain('# inserted by both');
      // The shared edit and the two trajectories' own steps ran once each: 1 + 2 + 2.
      expect(workerJobs() - jobsBefore).toBe(5);
    } finally {
      await remote.close();
    }
  }, 90_000);

  it('train: the PPO env restores collected states and steps them on the worker as locally', async () => {
    // The collection of the collect test; the step that ran train.py after the edit is the one to replay.
    const collection = path.join(home, 'collect-remote');
    const records = jsonl(path.join(collection, 'steps.jsonl')).filter((r) => r.type === 'step' && r.outcome === 'ok');
    const replayed = records[records.length - 1]!;
    const state = { task: 'house-prices', snapshotId: String(replayed.stateBefore) } as PoolState;
    const options = { maxSteps: 8, historyWindow: 5, maxObservationChars: 10_000, concurrency: 1 };
    const remote = remoteEpisodes({ redis: url, queue: 'redis-cli-q' });
    const [here, there] = [await collectionEnv(collection, ['house-prices'], options), await collectionEnv(collection, ['house-prices'], { ...options, remote })];
    try {
      const jobsBefore = workerJobs();
      const [a, b] = [await here.restore(state), await there.restore(state)];
      expect(b.messages()).toEqual(a.messages());
      // The local step is scored and dropped: it saves no state into the collection's store.
      const states = () => readdirSync(path.join(collection, 'snapshots', 'states')).length;
      const before = states();
      const ra = await a.step(String(replayed.response));
      expect(ra.snapshotId).toBeNull();
      expect(states()).toBe(before);
      const rb = await b.step(String(replayed.response));
      expect(timeless(rb)).toEqual(timeless(ra));
      expect(rb).toMatchObject({ outcome: 'ok', metric: replayed.metric });
      expect(b.currentMetric).toBe(a.currentMetric);
      expect(workerJobs() - jobsBefore).toBe(1);
      await Promise.all([a.close(), b.close()]);
    } finally {
      await Promise.all([here.close(), there.close(), remote.close()]);
    }
  }, 60_000);
});
