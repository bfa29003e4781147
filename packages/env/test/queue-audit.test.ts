// Audit of the scale-out queue (session audit): Redis going away or restarting without persistence, blob expiry,
// malformed results, worker-local faults, forced shutdown, credentials in logs, option ranges.
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Queue, Worker, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { redisConnection } from '../src/queue/connection.js';
import { executionJobId } from '../src/queue/job-id.js';
import { LocalExecutor } from '../src/queue/local-executor.js';
import { RedisStates } from '../src/queue/redis-states.js';
import { RemoteExecutionError, RemoteExecutor } from '../src/queue/remote-executor.js';
import { normalizeRequest } from '../src/queue/types.js';
import { startExecutionWorker, type ExecutionWorker } from '../src/queue/worker.js';
import { SnapshotStore } from '../src/snapshots/store.js';
import { prepareTask, removeTree } from '../src/tasks/prepare.js';
import { respond } from './episode-fixture.js';
import { freePort, REDIS_SERVER, startRedis, writeQueueTask, WorkerSupervisor, type RedisServer } from './queue-fixture.js';
import { tempDir } from './tasks-fixture.js';

const LIST = respond('List Files', { dir_path: '.' });
const TRAIN = respond('Execute Script', { script_name: 'train.py' });
const SLOW = respond('Execute Script', { script_name: 'slow.py' });
const HANG = respond('Execute Script', { script_name: 'hang.py' });

let redis: RedisServer;
let home: string;
const prepare = (n: string) => prepareTask(n, { home });
const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

async function until(cond: () => boolean | Promise<boolean>, what: string, ms = 30_000): Promise<void> {
  const t0 = Date.now();
  while (!(await cond())) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

/** Settles with 'pending' if `p` has not settled within `ms`; else its value or its error's message. */
function within<T>(p: Promise<T>, ms: number): Promise<T | string> {
  return Promise.race([p.catch((e: Error) => `rejected: ${e.message}`), sleep(ms).then(() => 'pending')]);
}

/** A state of qtoy in `store`, made locally (the task's files: blobs any later state shares). */
async function localState(store: SnapshotStore, response = LIST, from: string | null = null): Promise<string> {
  return (await new LocalExecutor({ store, prepare }).execute({ task: 'qtoy', fromSnapshot: from, response })).snapshotId!;
}

beforeAll(async () => {
  redis = await startRedis();
  home = tempDir('queue-audit');
  const dir = writeQueueTask(home);
  writeFileSync(path.join(dir, 'env', 'hang.py'), 'import time\ntime.sleep(20)\nprint("hang done")\n');
  process.env.MLAGENT_HOME = home;
  await prepare('qtoy');
}, 60_000);

afterAll(async () => {
  await redis?.stop();
  if (home) removeTree(home);
});

describe('RemoteExecutor when Redis goes away', () => {
  it('rejects at its timeout instead of hanging, without an unhandled rejection, and closes', async () => {
    const own = await startRedis();
    const store = new SnapshotStore(path.join(home, 'gone-client'));
    const from = await localState(store);
    const unhandled: unknown[] = [];
    const onUnhandled = (e: unknown) => unhandled.push(e);
    process.on('unhandledRejection', onUnhandled);
    const c = new RemoteExecutor({ redis: own.url, queue: 'qa-gone', store, timeoutMs: 1500, pollMs: 100 });
    try {
      await own.stop();
      // Adding the job, and before it uploading the start state, wait for a reconnect that never comes.
      expect(await within(c.execute({ task: 'qtoy', response: LIST, key: 'gone-1' }), 20_000)).toMatch(/rejected: .*no result within 1\.5 s/);
      expect(await within(c.execute({ task: 'qtoy', fromSnapshot: from, response: LIST, key: 'gone-2' }), 20_000)).toMatch(/rejected: .*no result within 1\.5 s/);
      await sleep(200);
      expect(unhandled).toEqual([]);
      // close() ends a step still waiting for Redis, and returns although Redis is down.
      const stuck = c.execute({ task: 'qtoy', fromSnapshot: from, response: LIST, key: 'gone-3' });
      await sleep(100);
      expect(await within(c.close(), 15_000)).toBeUndefined();
      expect(await within(stuck, 5000)).toMatch(/rejected: RemoteExecutor: closed/);
    } finally {
      process.off('unhandledRejection', onUnhandled);
      await c.close();
      await own.stop();
    }
  }, 60_000);

  it('a step given up on while its upload waited for Redis is not enqueued once Redis is back', async () => {
    const own = await startRedis();
    const store = new SnapshotStore(path.join(home, 'late-client'));
    const from = await localState(store);
    const c = new RemoteExecutor({ redis: own.url, queue: 'qa-late', store, timeoutMs: 1500, pollMs: 100 });
    const conn = redisConnection(own.url);
    const queue = new Queue('qa-late', { connection: conn });
    try {
      await queue.waitUntilReady();
      const req = { task: 'qtoy', fromSnapshot: from, response: LIST, key: 'late' };
      await own.stop();
      expect(await within(c.execute(req), 20_000)).toMatch(/rejected: .*no result within/);
      await own.restart();
      await sleep(3000); // the abandoned upload completes after the reconnect
      // Nobody waits for it: no job for the workers, and nothing left to poll.
      expect(await queue.getJobState(executionJobId(normalizeRequest(req)))).toBe('unknown');
      expect(c.waiting).toBe(0);
    } finally {
      await c.close();
      await queue.close();
      conn.disconnect();
      await own.stop();
    }
  }, 60_000);

  it('re-adds a job (and re-uploads its start state) that a Redis restart without persistence lost', async () => {
    // A Redis without AOF or snapshots: a restart empties it, mid-step.
    const port = await freePort();
    const url = `redis://127.0.0.1:${port}`;
    let proc: ChildProcess | null = null;
    const launch = async () => {
      proc = spawn(REDIS_SERVER, ['--port', String(port), '--bind', '127.0.0.1', '--appendonly', 'no', '--save', '', '--dir', home], { stdio: 'ignore' });
      const probe = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
      probe.on('error', () => {});
      await until(async () => probe.connect().then(() => true, () => false), 'redis to start', 10_000);
      probe.disconnect();
    };
    const halt = () =>
      new Promise<void>((resolve) => {
        if (!proc || proc.exitCode !== null) return resolve();
        proc.once('exit', () => resolve());
        proc.kill('SIGTERM');
      });
    await launch();
    const workers = new WorkerSupervisor({ redis: url, queue: 'qa-volatile', home }, 1);
    const store = new SnapshotStore(path.join(home, 'volatile-client'));
    const c = new RemoteExecutor({ redis: url, queue: 'qa-volatile', store, timeoutMs: 40_000, pollMs: 300 });
    const conn = redisConnection(url);
    const queue = new Queue('qa-volatile', { connection: conn });
    try {
      await workers.ready();
      const from = await localState(store);
      const req = { task: 'qtoy', fromSnapshot: from, response: SLOW, key: 'volatile' };
      const jobId = executionJobId(normalizeRequest(req));
      const pending = c.execute(req);
      await until(async () => (await queue.getJobState(jobId)) === 'active', 'the job to run');
      await halt();
      await launch();
      const r = await pending;
      expect(r).toMatchObject({ outcome: 'ok', metric: 0, step: 2 });
      expect((await store.load(r.snapshotId!)).parent).toBe(from);
    } finally {
      await c.close();
      await queue.close();
      conn.disconnect();
      await workers.stop();
      await halt();
    }
  }, 120_000);
});

describe('RedisStates', () => {
  it('keeps the blobs of a re-uploaded state alive as long as the state', async () => {
    const a = new SnapshotStore(path.join(home, 'ttl-a'));
    const s1 = await localState(a);
    const s2 = await localState(a, LIST, s1); // the same files: it shares s1's blobs
    const conn = new Redis(redis.url);
    try {
      const states = new RedisStates(conn, { prefix: 'qa-ttl', ttlSec: 3 });
      await states.push(a, s1);
      await sleep(1800);
      await states.push(a, s2); // a later step: its blobs are in Redis already
      await states.push(a, s1); // a client continuing from s1 again: refreshes it
      await sleep(1800);
      // The first upload is older than the expiry, the refreshes are not: both states must still be complete.
      for (const id of [s1, s2]) {
        expect(await conn.exists(`qa-ttl:state:${id}`)).toBe(1);
        const m = await states.pull(new SnapshotStore(path.join(home, `ttl-${id.slice(0, 8)}`)), id);
        expect(m.files.length).toBeGreaterThan(0);
      }
    } finally {
      conn.disconnect();
    }
  }, 30_000);

  it('takes only full state ids, stores no blob that does not match its hash, and no manifest that is not one', async () => {
    const a = new SnapshotStore(path.join(home, 'id-a'));
    const id = await localState(a);
    const conn = new Redis(redis.url);
    try {
      const states = new RedisStates(conn, { prefix: 'qa-id' });
      // A prefix would resolve to whichever local state starts with it, and ids become keys and paths.
      await expect(states.pull(a, id.slice(0, 8))).rejects.toThrow(/a state id is 64 hex digits/);
      await expect(states.push(a, `../${id.slice(3)}`)).rejects.toThrow(/a state id is 64 hex digits/);
      await states.push(a, id);
      const m = await a.load(id);
      const h = m.files.find((f) => f.path === 'train.py')!.hash;
      await conn.set(`qa-id:blob:${h}`, 'tampered');
      const b = new SnapshotStore(path.join(home, 'id-b'));
      await expect(states.pull(b, id)).rejects.toThrow(/blob .* is corrupt/);
      expect(await b.hasBlob(sha256('tampered'))).toBe(false);
      // Content that matches its key but is no state (any JSON; another version's format) fails with the reason.
      for (const text of ['null', '{"format":"mlagent-state/9","files":[],"undo":{}}', '{"format":"mlagent-state/1","files":"x","undo":{}}']) {
        await conn.set(`qa-id:state:${sha256(text)}`, text);
        await expect(states.pull(b, sha256(text))).rejects.toThrow(/is not a state manifest of format 'mlagent-state\/1'/);
      }
      expect((await b.list()).length).toBe(0);
    } finally {
      conn.disconnect();
    }
  }, 30_000);
});

describe('results from Redis', () => {
  it('fails a job that completed without a valid StepResult at once, with the reason', async () => {
    const conn = redisConnection(redis.url);
    // Anything that can complete jobs on the queue: another version of the worker, a stray script.
    const bad = new Worker(
      'qa-bad',
      async (job: Job) => {
        const r = job.data.key as string;
        if (r === 'none') return undefined;
        return { step: 1, action: null, actionInput: null, observation: '', outcome: 'none', metric: null, feedback: {}, durationSec: 0, done: false, snapshotId: '../../../etc' };
      },
      { connection: conn },
    );
    const c = new RemoteExecutor({ redis: redis.url, queue: 'qa-bad', store: new SnapshotStore(path.join(home, 'bad-client')), timeoutMs: 30_000, pollMs: 200 });
    try {
      for (const key of ['none', 'traversal']) {
        const err = await c.execute({ task: 'qtoy', response: LIST, key }).catch((e: Error) => e);
        expect(err).toBeInstanceOf(RemoteExecutionError);
        expect((err as Error).message).toMatch(/completed without a valid result/);
      }
    } finally {
      await c.close();
      await bad.close();
      conn.disconnect();
    }
  }, 60_000);
});

describe('worker faults', () => {
  it('refuses to start when it cannot write to its cache or work root, instead of failing every job it takes', () => {
    const blocker = path.join(home, 'a-file');
    writeFileSync(blocker, 'a file where a directory should be');
    const base = { redis: redis.url, queue: 'qa-probe', prepare, log: () => {} };
    expect(() => startExecutionWorker({ ...base, store: new SnapshotStore(path.join(blocker, 'cache')) })).toThrow(/cannot write to its state cache \(store\) .*a-file\/cache/);
    expect(() => startExecutionWorker({ ...base, store: new SnapshotStore(path.join(home, 'probe-cache')), workRoot: path.join(blocker, 'ws') })).toThrow(/cannot write to its work root/);
  });

  it('retries a job whose workspace this worker cannot set up, instead of failing it for good', async () => {
    const workRoot = path.join(home, 'workroot-gone');
    const logs: string[] = [];
    const w = startExecutionWorker({
      redis: redis.url,
      queue: 'qa-workroot',
      store: new SnapshotStore(path.join(home, 'workroot-cache')),
      workRoot,
      prepare,
      log: (l) => logs.push(l),
    });
    // The work root breaks after the start (a cleaner, a remount): this machine's fault, not the request's.
    rmSync(workRoot, { recursive: true, force: true });
    writeFileSync(workRoot, 'a file where the work root was');
    const c = new RemoteExecutor({ redis: redis.url, queue: 'qa-workroot', store: new SnapshotStore(path.join(home, 'workroot-client')), attempts: 2, pollMs: 200 });
    try {
      const err = await c.execute({ task: 'qtoy', response: LIST }).catch((e: Error) => e);
      expect(err).toBeInstanceOf(RemoteExecutionError);
      // The machine's fault, not the request's: it used up its attempts (another worker could have taken one).
      expect(logs.filter((l) => l.includes('failed:')).length).toBe(2);
      expect((err as Error).message).toMatch(/cannot set up the workspace/);
    } finally {
      await c.close();
      await w.close();
    }
  }, 60_000);

  it('retries a job whose task failed to prepare (a broken download), but fails an unknown task at once', async () => {
    const logs: string[] = [];
    let tries = 0;
    const w = startExecutionWorker({
      redis: redis.url,
      queue: 'qa-prepare',
      store: new SnapshotStore(path.join(home, 'prepare-cache')),
      // The first preparation fails the way a prepare.py whose download broke off does.
      prepare: async (n) => (n === 'qtoy' && tries++ === 0 ? Promise.reject(new Error(`prepare.py of task '${n}' failed (exit 1):\nConnectionResetError`)) : prepare(n)),
      log: (l) => logs.push(l),
    });
    const c = new RemoteExecutor({ redis: redis.url, queue: 'qa-prepare', store: new SnapshotStore(path.join(home, 'prepare-client')), attempts: 3, pollMs: 200 });
    try {
      expect(await c.execute({ task: 'qtoy', response: TRAIN })).toMatchObject({ outcome: 'ok', metric: 1 });
      expect(tries).toBe(2);
      const err = await c.execute({ task: 'no-such-task', response: TRAIN }).catch((e: Error) => e);
      expect((err as Error).message).toMatch(/unknown task 'no-such-task'/);
      expect(logs.filter((l) => l.includes('failed:') && l.includes('no-such-task')).length).toBe(1);
    } finally {
      await c.close();
      await w.close();
    }
  }, 60_000);

  it('a forced close after a graceful one abandons the running job instead of waiting for it', async () => {
    const w: ExecutionWorker = startExecutionWorker({
      redis: redis.url,
      queue: 'qa-force',
      store: new SnapshotStore(path.join(home, 'force-cache')),
      prepare,
      lockDurationMs: 2000,
      log: () => {},
    });
    const c = new RemoteExecutor({ redis: redis.url, queue: 'qa-force', store: new SnapshotStore(path.join(home, 'force-client')), pollMs: 200 });
    try {
      const pending = c.execute({ task: 'qtoy', response: HANG });
      pending.catch(() => {});
      await until(() => w.active === 1, 'the job to start');
      const graceful = w.close(); // the first SIGTERM: waits for hang.py (20 s)
      graceful.catch(() => {});
      await sleep(200);
      expect(await within(w.close(true), 10_000)).toBeUndefined(); // the second one must not
    } finally {
      await c.close();
    }
  }, 60_000);
});

describe('worker shutdown during a Redis outage', () => {
  it('a graceful close (SIGTERM) of an idle worker returns while Redis is down', async () => {
    const own = await startRedis();
    const w = startExecutionWorker({ redis: own.url, queue: 'qa-down', store: new SnapshotStore(path.join(home, 'down-cache')), log: () => {} });
    try {
      await w.worker.waitUntilReady();
      await own.stop();
      await sleep(500);
      expect(await within(w.close(), 25_000)).toBeUndefined();
    } finally {
      await own.stop();
    }
  }, 60_000);
});

describe('worker logs during a Redis outage', () => {
  it('says once that Redis is down, not on every reconnect try', async () => {
    const own = await startRedis();
    const logs: string[] = [];
    const w = startExecutionWorker({ redis: own.url, queue: 'qa-spam', store: new SnapshotStore(path.join(home, 'spam-cache')), log: (l) => logs.push(l) });
    try {
      await w.worker.waitUntilReady();
      await own.stop();
      await sleep(8000); // several reconnect tries (every 2 s at most)
      // Each connection's outage line ('redis ...: ...; reconnecting'), and the worker's own report at most once.
      expect(logs.filter((l) => l.startsWith('redis ') && l.includes('ECONNREFUSED')).length).toBeGreaterThan(0);
      expect(logs.filter((l) => l.startsWith('worker ') && l.includes('ECONNREFUSED')).length).toBeLessThanOrEqual(1);
    } finally {
      await w.close(true);
      await own.stop();
    }
  }, 30_000);
});

describe('credentials and options', () => {
  it('never prints the Redis password', async () => {
    const port = await freePort(); // nothing listens there
    for (const [url, shown] of [
      [`redis://agent:s3cret-pw@127.0.0.1:${port}/0`, 'redis://agent:***@127.0.0.1'],
      [`redis://127.0.0.1:${port}/0?password=s3cret-pw`, '?password=***'],
    ]) {
      const lines: string[] = [];
      const r = redisConnection(url, (l) => lines.push(l));
      try {
        await until(() => lines.length > 0, 'the outage to be logged', 10_000);
        expect(lines.join('\n')).not.toContain('s3cret-pw');
        expect(lines[0]).toContain(shown);
      } finally {
        r.disconnect();
      }
    }
    expect(() => redisConnection('http://:s3cret-pw@host:6379')).toThrow(/expected a URL/);
    expect(() => redisConnection('http://:s3cret-pw@host:6379')).not.toThrow(/s3cret-pw/);
  }, 20_000);

  it('a timeout past the timer range means no limit, not an immediate failure; bad ranges are refused', async () => {
    const store = new SnapshotStore(path.join(home, 'opt-client'));
    const c = new RemoteExecutor({ redis: redis.url, queue: 'qa-noworkers', store, timeoutMs: 2 ** 31, pollMs: 200 });
    try {
      const p = c.execute({ task: 'qtoy', response: LIST });
      expect(await within(p, 1500)).toBe('pending'); // setTimeout(2^31) fires after 1 ms
      await c.close();
      expect(await within(p, 5000)).toMatch(/closed/);
    } finally {
      await c.close();
    }
    for (const bad of [{ timeoutMs: NaN }, { timeoutMs: 0 }, { pollMs: 0 }, { pollMs: 2 ** 31 }]) {
      expect(() => new RemoteExecutor({ redis: redis.url, store, ...bad })).toThrow(/must be a positive number|must be an integer number of milliseconds/);
    }
    for (const bad of [{ jobTimeoutMs: NaN }, { lockDurationMs: 0 }, { stalledIntervalMs: 2 ** 31 }, { maxStalledCount: -1 }, { queue: '' }]) {
      expect(() => startExecutionWorker({ redis: redis.url, store, log: () => {}, ...bad })).toThrow(TypeError);
    }
  }, 30_000);

  it('a worker whose job timeout is Infinity runs its jobs (no timer that fires at once)', async () => {
    const logs: string[] = [];
    const w = startExecutionWorker({ redis: redis.url, queue: 'qa-inf', store: new SnapshotStore(path.join(home, 'inf-cache')), prepare, jobTimeoutMs: Infinity, log: (l) => logs.push(l) });
    const c = new RemoteExecutor({ redis: redis.url, queue: 'qa-inf', store: new SnapshotStore(path.join(home, 'inf-client')), attempts: 1, pollMs: 200 });
    try {
      const r = await c.execute({ task: 'qtoy', response: TRAIN });
      expect(r).toMatchObject({ outcome: 'ok', metric: 1 });
    } finally {
      await c.close();
      await w.close();
    }
  }, 60_000);
});
