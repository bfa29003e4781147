// Scale-out through BullMQ: a real redis-server (AOF on) and worker processes; the same steps run through
// LocalExecutor give the same results. Faults: a worker SIGKILLed mid-job, a poisoned job, a Redis restart,
// job timeouts.
import { existsSync, rmSync } from 'node:fs';
import path from 'node:path';
import { Job, Queue, QueueEvents } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StepResult } from '../src/episode/types.js';
import { Episode } from '../src/episode/episode.js';
import { ExecutorEpisode } from '../src/queue/executor-episode.js';
import { executionJobId } from '../src/queue/job-id.js';
import { redisConnection } from '../src/queue/connection.js';
import { LocalExecutor } from '../src/queue/local-executor.js';
import { RedisStates } from '../src/queue/redis-states.js';
import { RemoteExecutionError, RemoteExecutor } from '../src/queue/remote-executor.js';
import { normalizeRequest } from '../src/queue/types.js';
import { SnapshotStore } from '../src/snapshots/store.js';
import { prepareTask, removeTree } from '../src/tasks/prepare.js';
import { respond } from './episode-fixture.js';
import { startRedis, writeQueueTask, WorkerSupervisor, type RedisServer } from './queue-fixture.js';
import { tempDir } from './tasks-fixture.js';

const EXACT = `import csv\nrows = list(csv.DictReader(open('data/test.csv')))\nwith open('submission.csv', 'w') as f:\n    f.write('id,y\\n' + ''.join(f"{r['id']},{2 * int(r['x'])}\\n" for r in rows))\n`;
const STEPS = [
  respond('Execute Script', { script_name: 'train.py' }),
  respond('Write File', { file_name: 'train.py', content: EXACT }),
  respond('Execute Script', { script_name: 'train.py' }),
];
const SLOW = respond('Execute Script', { script_name: 'slow.py' });
const POISON = 'POISON-PILL';

let redis: RedisServer;
let home: string;
let workers: WorkerSupervisor;
let client: RemoteExecutor;
let clientStore: SnapshotStore;
let events: QueueEvents;
let eventsConn: Redis;
const completedEvents = new Map<string, number>();

/** The result without what legitimately differs between two executions (wall times, and the ids they feed). */
function comparable(r: StepResult) {
  const { durationSec: _d, snapshotId: _s, feedback, ...rest } = r;
  const { durationSec: _fd, ...fb } = feedback;
  return { ...rest, feedback: fb };
}

async function play(executor: { execute: RemoteExecutor['execute'] }, from: string | null = null): Promise<StepResult[]> {
  const out: StepResult[] = [];
  for (const response of STEPS) {
    const r = await executor.execute({ task: 'qtoy', fromSnapshot: from, response });
    out.push(r);
    from = r.snapshotId;
  }
  return out;
}

beforeAll(async () => {
  redis = await startRedis();
  home = tempDir('queue');
  writeQueueTask(home);
  process.env.MLAGENT_HOME = home;
  await prepareTask('qtoy', { home }); // prepared once here; workers reuse the same cache
  workers = new WorkerSupervisor({ redis: redis.url, queue: 'q-main', home, crashOn: POISON }, 2);
  clientStore = new SnapshotStore(path.join(home, 'client-store'));
  client = new RemoteExecutor({ redis: redis.url, queue: 'q-main', store: clientStore, pollMs: 300 });
  eventsConn = redisConnection(redis.url);
  events = new QueueEvents('q-main', { connection: eventsConn });
  events.on('completed', ({ jobId }) => completedEvents.set(jobId, (completedEvents.get(jobId) ?? 0) + 1));
  await events.waitUntilReady();
  await workers.ready();
}, 60_000);

afterAll(async () => {
  await client?.close();
  await events?.close();
  eventsConn?.disconnect();
  await workers?.stop();
  await redis?.stop();
  if (home) removeTree(home);
});

describe('RemoteExecutor over BullMQ workers', () => {
  it('plays a trajectory with the same results as LocalExecutor, and the new states land in the client store', async () => {
    const remote = await play(client);
    const local = await play(new LocalExecutor({ store: new SnapshotStore(path.join(home, 'local-store')), prepare: (n) => prepareTask(n, { home }) }));
    expect(remote.map(comparable)).toEqual(local.map(comparable));
    expect(remote.map((r) => [r.outcome, r.metric])).toEqual([
      ['ok', 1],
      ['none', null],
      ['ok', 0],
    ]);
    const last = await clientStore.load(remote[2].snapshotId!);
    expect(last.steps.map((s) => s.response)).toEqual(STEPS);
    expect(last.metric).toBe(0);
    // The remote state continues locally from the client store.
    const next = await new LocalExecutor({ store: clientStore }).execute({ task: 'qtoy', fromSnapshot: remote[2].snapshotId, response: respond('List Files', { dir_path: '.' }) });
    expect(next.step).toBe(4);
    expect(next.observation).toMatch(/submission\.csv/);
  }, 60_000);

  it('ExecutorEpisode over the queue shows the agent the same chat as a local Episode', async () => {
    const task = await prepareTask('qtoy', { home });
    const remote = await ExecutorEpisode.start(client, task, { store: clientStore, maxSteps: 3, key: 'chat-test' });
    const local = await Episode.start(task, { store: new SnapshotStore(path.join(home, 'ep-store')), maxSteps: 3 });
    try {
      expect(remote.prompt()).toBe(local.prompt());
      for (const response of STEPS) {
        const [r, l] = await Promise.all([remote.step(response), local.step(response)]);
        expect(comparable(r)).toEqual(comparable(l));
        expect(remote.messages()).toEqual(local.messages());
        expect(remote.currentMetric).toBe(local.currentMetric);
      }
      expect(remote.done).toBe(true);
      await expect(remote.step(STEPS[0])).rejects.toThrow(/the episode is done/);
      // A state reached remotely resumes with its history.
      const resumed = await ExecutorEpisode.start(client, task, { store: clientStore, maxSteps: 5, fromSnapshot: await remote.snapshot() });
      expect(resumed.stepIndex).toBe(3);
      expect(resumed.prompt()).toContain('Step 4');
    } finally {
      await local.close();
    }
  }, 60_000);

  it('runs repeats with distinct keys as separate jobs and identical requests as one', async () => {
    const base = await client.execute({ task: 'qtoy', response: STEPS[1] });
    const reqs = [0, 1, 2, 3].map((i) => ({ task: 'qtoy', fromSnapshot: base.snapshotId, response: STEPS[2], key: `rollout-${i}` }));
    const results = await Promise.all([...reqs, reqs[0]].map((r) => client.execute(r)));
    expect(results.map((r) => r.metric)).toEqual([0, 0, 0, 0, 0]);
    expect(new Set(reqs.map((r) => executionJobId(normalizeRequest(r)))).size).toBe(4);
    for (const r of reqs) expect(completedEvents.get(executionJobId(normalizeRequest(r)))).toBe(1);
    // A client that restarts and re-sends a request gets the recorded result (same wall time, same state), not a rerun.
    const again = new RemoteExecutor({ redis: redis.url, queue: 'q-main', store: new SnapshotStore(path.join(home, 'client2')), pollMs: 300 });
    try {
      expect(await again.execute(reqs[1])).toEqual(results[1]);
      expect(completedEvents.get(executionJobId(normalizeRequest(reqs[1])))).toBe(1);
    } finally {
      await again.close();
    }
  }, 40_000);

  it('retries a job elsewhere when its worker is SIGKILLed mid-job; the result is recorded once', async () => {
    const req = { task: 'qtoy', response: SLOW, key: 'kill-test' };
    const jobId = executionJobId(normalizeRequest(req));
    const pending = client.execute(req);
    const conn = redisConnection(redis.url);
    const queue = new Queue('q-main', { connection: conn });
    let victim = '';
    for (let i = 0; i < 100 && !victim; i++) {
      const job = await Job.fromId(queue, jobId);
      if (job && (await job.getState()) === 'active' && job.processedBy) victim = job.processedBy;
      else await new Promise((r) => setTimeout(r, 100));
    }
    expect(victim).not.toBe('');
    const crashesBefore = workers.crashes;
    expect(workers.kill(victim)).toBe(true);
    const r = await pending;
    expect(r).toMatchObject({ outcome: 'ok', metric: 0, step: 1 });
    const job = (await Job.fromId(queue, jobId))!;
    expect(job.processedBy).not.toBe(victim);
    expect(job.stalledCounter).toBe(1);
    expect(completedEvents.get(jobId)).toBe(1);
    expect(workers.crashes).toBe(crashesBefore + 1);
    await queue.close();
    conn.disconnect();
  }, 40_000);

  it('fails a poisoned job (it kills every worker that takes it) after maxStalledCount, and keeps serving', async () => {
    const before = workers.crashes;
    const err = await client.execute({ task: 'qtoy', response: respond('Reflection', { things_to_reflect_on: POISON }) }).catch((e: Error) => e);
    expect(err).toBeInstanceOf(RemoteExecutionError);
    expect((err as Error).message).toMatch(/stalled more than allowable limit/);
    expect(workers.crashes - before).toBe(2); // first run + one retry (maxStalledCount 1), then no more
    await workers.ready();
    const ok = await client.execute({ task: 'qtoy', response: STEPS[0], key: 'after-poison' });
    expect(ok.metric).toBe(1);
  }, 40_000);

  it('applies the request\'s observation limit on the worker', async () => {
    const r = await client.execute({ task: 'qtoy', response: respond('Read File', { file_name: 'train.py' }), maxObservationChars: 40 });
    expect(r.observation).toMatch(/characters cut/);
    expect(r.observation.length).toBeLessThan(100);
  }, 30_000);

  it('runs an edited script on the worker when the request asks to score edits', async () => {
    const scored = await client.execute({ task: 'qtoy', response: STEPS[1], runEditedScripts: true });
    expect(scored.feedback).toMatchObject({ isEdit: true, outcome: 'ok', metric: 0 });
    const plain = await client.execute({ task: 'qtoy', response: STEPS[1] });
    expect(plain.feedback.outcome).toBeUndefined();
    expect(plain.outcome).toBe('none');
    await expect(client.execute({ task: 'qtoy', response: STEPS[1], runEditedScripts: 'yes' as never })).rejects.toThrow(/'runEditedScripts' must be a boolean/);
  }, 30_000);

  it('fails requests that cannot succeed at once, with the reason', async () => {
    const err = await client.execute({ task: 'no-such-task', response: STEPS[0] }).catch((e: Error) => e);
    expect((err as Error).message).toMatch(/cannot prepare task 'no-such-task'/);
    await expect(client.execute({ task: 'qtoy', fromSnapshot: 'f'.repeat(64), response: STEPS[0] })).rejects.toThrow(/no state f{64}/);
    await expect(client.execute({ task: 'qtoy', fromSnapshot: 'abc', response: STEPS[0] })).rejects.toThrow(/'fromSnapshot' must be a full state id/);
    await expect(client.execute({ task: '', response: STEPS[0] })).rejects.toThrow(/'task' must be a non-empty task name/);
    await expect(client.execute({ task: 'qtoy', response: STEPS[0], maxSteps: 0 })).rejects.toThrow(/'maxSteps' must be an integer >= 1, got 0/);
  }, 30_000);

  it('survives a Redis restart mid-run (AOF): every job completes', async () => {
    const reqs = [0, 1, 2].map((i) => ({ task: 'qtoy', response: SLOW, key: `restart-${i}` }));
    const all = Promise.all(reqs.map((r) => client.execute(r)));
    await new Promise((r) => setTimeout(r, 1500)); // two of them running
    await redis.restart();
    expect(existsSync(path.join(redis.dir, 'appendonlydir'))).toBe(true);
    const results = await all;
    expect(results.map((r) => [r.outcome, r.metric])).toEqual([
      ['ok', 0],
      ['ok', 0],
      ['ok', 0],
    ]);
  }, 60_000);
});

describe('job timeouts', () => {
  it('a job over the worker timeout fails with a clear reason after its attempts', async () => {
    const timed = new WorkerSupervisor({ redis: redis.url, queue: 'q-timeout', home, jobTimeoutMs: 1000 }, 1);
    const c = new RemoteExecutor({ redis: redis.url, queue: 'q-timeout', store: clientStore, attempts: 2, pollMs: 300 });
    try {
      await timed.ready();
      const err = await c.execute({ task: 'qtoy', response: SLOW }).catch((e: Error) => e);
      expect(err).toBeInstanceOf(RemoteExecutionError);
      expect((err as Error).message).toMatch(/timed out after 1\.0 s/);
      expect(timed.logs.filter((l) => l.includes('timed out')).length).toBe(2);
    } finally {
      await c.close();
      await timed.stop();
    }
  }, 40_000);
});

describe('RedisStates', () => {
  it('moves a state between stores through Redis and rejects corrupted content', async () => {
    const a = new SnapshotStore(path.join(home, 'rs-a'));
    const id = (await new LocalExecutor({ store: a }).execute({ task: 'qtoy', response: STEPS[1] })).snapshotId!;
    const conn = new Redis(redis.url);
    try {
      const states = new RedisStates(conn, { prefix: 'rs-test' });
      await states.push(a, id);
      await states.push(a, id); // idempotent
      const b = new SnapshotStore(path.join(home, 'rs-b'));
      const m = await states.pull(b, id);
      expect(m).toEqual(await a.load(id));
      const trainHash = m.files.find((f) => f.path === 'train.py')!.hash;
      expect((await b.readBlob(trainHash)).toString()).toBe(EXACT);
      // A local copy that lost a blob (its cache pruned meanwhile) is completed from Redis, not handed out broken.
      rmSync(b.blobPath(trainHash));
      expect(await states.pull(b, id)).toEqual(m);
      expect((await b.readBlob(trainHash)).toString()).toBe(EXACT);
      await conn.set(`rs-test:blob:${trainHash}`, 'tampered');
      await expect(states.pull(new SnapshotStore(path.join(home, 'rs-c')), id)).rejects.toThrow(/blob .* is corrupt/);
      await expect(states.pull(b, 'e'.repeat(64))).rejects.toThrow(/neither in .* nor in Redis/);
    } finally {
      conn.disconnect();
    }
  }, 30_000);
});
