// A BullMQ worker that executes steps: pulls the start state from Redis, runs the step, pushes the new state,
// returns the StepResult. Stateless apart from its local cache (store, prepared tasks).
import { randomBytes } from 'node:crypto';
import { rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { UnrecoverableError, Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import type { StepResult } from '../episode/types.js';
import { defaultWorkRoot } from '../episode/workspace.js';
import { makeDirsSync } from '../fs/make-dirs.js';
import type { HelperLlmConfig } from '../helper-llm/client.js';
import { SandboxPool } from '../sandbox/pool.js';
import type { SnapshotStore } from '../snapshots/store.js';
import type { PreparedTask } from '../tasks/types.js';
import { endConnection, intervalMs, limitMs, redisConnection } from './connection.js';
import { MAX_TIMER_MS } from '../timers.js';
import { StepContext } from './execute-step.js';
import { RedisStates, type RedisStatesOptions } from './redis-states.js';
import { DEFAULT_QUEUE, ExecutionRequestError, normalizeRequest, type ExecuteRequest } from './types.js';

export interface ExecutionWorkerOptions {
  /** redis://host:port[/db] */
  redis: string;
  queue?: string;
  /** Local cache of states (downloaded and produced). */
  store: SnapshotStore;
  /** Jobs run at once. Default 1. */
  concurrency?: number;
  workRoot?: string;
  helperLlm?: HelperLlmConfig | null;
  /** Name shown in logs and stored on jobs. Default host:pid. */
  name?: string;
  /** A job whose lock is not renewed for this long is stalled (its worker died). Default 30 000 ms. */
  lockDurationMs?: number;
  /** How often this worker looks for stalled jobs. Default 30 000 ms. */
  stalledIntervalMs?: number;
  /** Times a job may stall (its worker died) and be retried before it fails for good. Default 1. */
  maxStalledCount?: number;
  /** A job running longer fails (and is retried if attempts remain). Default: the task's timeout + 10 min. */
  jobTimeoutMs?: number;
  states?: RedisStatesOptions;
  prepare?: (name: string) => Promise<PreparedTask>;
  /** Log lines (default: stderr). */
  log?: (line: string) => void;
  /** Test hook: a job whose response contains this text kills the worker process (a poisoned job). */
  crashOnResponse?: string;
}

export interface ExecutionWorker {
  readonly name: string;
  readonly worker: Worker;
  /** Jobs running now. */
  readonly active: number;
  /** Stops taking jobs, waits for the running ones (force: abandons them) and disconnects. */
  close(force?: boolean): Promise<void>;
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} timed out after ${(ms / 1000).toFixed(1)} s`)), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

function probeWritable(what: string, dir: string): void {
  const probe = path.join(dir, `.write-probe-${process.pid}-${randomBytes(4).toString('hex')}`);
  try {
    makeDirsSync(dir);
    writeFileSync(probe, '');
    rmSync(probe);
  } catch (e) {
    throw new Error(`worker: cannot write to its ${what} ${dir}: ${(e as Error).message}`);
  }
}

export function startExecutionWorker(options: ExecutionWorkerOptions): ExecutionWorker {
  if (!options?.store) throw new TypeError('worker: option "store" (a SnapshotStore) is required');
  const name = options.name ?? `${os.hostname()}:${process.pid}`;
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const concurrency = options.concurrency ?? 1;
  if (!Number.isInteger(concurrency) || concurrency < 1) throw new TypeError(`worker: concurrency must be an integer >= 1, got ${concurrency}`);
  // Each of these becomes a timer's delay or a BullMQ setting: a value out of range (NaN, 0, past 2^31-1 ms) would
  // make every job time out or stall at once, or no stalled job ever be found.
  const lockDuration = intervalMs(options.lockDurationMs, 'worker: lockDurationMs', 30_000, 100);
  const stalledInterval = intervalMs(options.stalledIntervalMs, 'worker: stalledIntervalMs', 30_000, 100);
  const maxStalledCount = options.maxStalledCount ?? 1;
  if (!Number.isInteger(maxStalledCount) || maxStalledCount < 0) throw new TypeError(`worker: maxStalledCount must be an integer >= 0, got ${String(options.maxStalledCount)}`);
  const jobTimeoutMs = options.jobTimeoutMs === undefined ? undefined : limitMs(options.jobTimeoutMs, 'worker: jobTimeoutMs', Infinity);
  const queue = options.queue ?? DEFAULT_QUEUE;
  if (typeof queue !== 'string' || queue === '') throw new TypeError(`worker: queue must be a non-empty queue name, got ${JSON.stringify(queue)}`);
  if (typeof name !== 'string' || name === '') throw new TypeError(`worker: name must be a non-empty string, got ${JSON.stringify(name)}`);
  // Every job writes to both: a worker that cannot would take each job only to fail it, using up its attempts
  // (and, on a queue with one such worker, every job's), so it refuses to start instead.
  probeWritable('state cache (store)', options.store.dir);
  probeWritable('work root', options.workRoot ?? defaultWorkRoot());
  const commands = redisConnection(options.redis, log);
  const states = new RedisStates(commands, options.states);
  const ctx = new StepContext({
    store: options.store,
    workRoot: options.workRoot,
    helperLlm: options.helperLlm,
    pool: new SandboxPool(concurrency),
    prepare: options.prepare,
  });
  let active = 0;
  let closing = false;

  const handle = async (job: Job): Promise<StepResult> => {
    const t0 = performance.now();
    active++;
    try {
      const d = normalizeRequest(job.data as ExecuteRequest);
      if (options.crashOnResponse && d.response.includes(options.crashOnResponse)) {
        log(`worker ${name}: job ${job.id} is poisoned (test hook): killing this process`);
        process.kill(process.pid, 'SIGKILL');
      }
      log(`worker ${name}: job ${job.id} started: task ${d.task}, from ${d.fromSnapshot?.slice(0, 12) ?? 'initial'}, attempt ${job.attemptsStarted}`);
      const run = async (): Promise<StepResult> => {
        if (d.fromSnapshot) {
          await states.pull(options.store, d.fromSnapshot).catch((e: Error) => {
            throw e.message.includes('neither in') ? new ExecutionRequestError(e.message) : e;
          });
        }
        const r = await ctx.run(d);
        if (r.snapshotId !== null) await states.push(options.store, r.snapshotId);
        return r;
      };
      const timeoutMs = jobTimeoutMs === undefined ? ((await ctx.task(d.task)).spec.budgets.timeoutSec + 600) * 1000 : jobTimeoutMs;
      const r = timeoutMs === null || timeoutMs > MAX_TIMER_MS ? await run() : await withTimeout(run(), timeoutMs, `job ${job.id}`);
      log(`worker ${name}: job ${job.id} done in ${((performance.now() - t0) / 1000).toFixed(2)} s: step ${r.step} ${r.action ?? '(no action)'} -> ${r.outcome}${r.metric === null ? '' : ` metric ${r.metric}`}`);
      return r;
    } catch (e) {
      const err = e as Error;
      log(`worker ${name}: job ${job.id} failed: ${err.message}`);
      // Requests that can never succeed fail at once instead of using up retries.
      if (e instanceof ExecutionRequestError) throw new UnrecoverableError(err.message);
      throw e;
    } finally {
      active--;
    }
  };

  const blocking = redisConnection(options.redis, log);
  // BullMQ makes its blocking connection with duplicate(): kept here, so that a close can drop it too.
  const duplicates: Redis[] = [];
  const duplicate = blocking.duplicate.bind(blocking);
  blocking.duplicate = (...args: Parameters<Redis['duplicate']>) => {
    const d = duplicate(...args);
    duplicates.push(d);
    return d;
  };
  const worker = new Worker(queue, handle, {
    connection: blocking,
    concurrency,
    name,
    lockDuration,
    stalledInterval,
    maxStalledCount,
  });
  let abandoned = false;
  const idle = async () => {
    while (active > 0) await new Promise((r) => setTimeout(r, 100));
  };
  // BullMQ reports each failed try of its own reconnects (every 2 s of an outage); the connections already said
  // once that Redis is down, so the same message again is left out until Redis is back.
  const told = new Set<string>();
  blocking.on('ready', () => told.clear());
  worker.on('error', (e) => {
    if (abandoned || told.has(e.message)) return; // after a forced close: only the closed connections' complaints
    if (told.size < 100) told.add(e.message);
    log(`worker ${name}: ${e.message}`);
  });
  worker.on('stalled', (jobId) => log(`worker ${name}: job ${jobId} stalled (its worker died or hung); it goes back to the queue`));
  log(`worker ${name}: waiting for jobs on queue '${queue}' (concurrency ${concurrency}, states in ${options.store.dir})`);

  return {
    name,
    worker,
    get active() {
      return active;
    },
    async close(force = false) {
      const disconnect = () => {
        for (const c of [...duplicates, blocking, commands]) endConnection(c);
      };
      if (force && closing) {
        // BullMQ hands a second close() the first one's promise, which waits for the running jobs: a forced close
        // (a second SIGTERM) would wait too. Dropping the connections abandons them: their locks are no longer
        // renewed, so they are retried elsewhere once the locks expire.
        abandoned = true;
        disconnect();
        return;
      }
      if (force) abandoned = true;
      closing = true;
      const closed = worker.close(force);
      closed.catch(() => {});
      // BullMQ's close also waits for Redis, to quit its connections: during an outage it would never return
      // (a SIGTERM would not stop an idle worker). Once no job runs and Redis has had a while to take the last
      // results, the connections are dropped, which ends that wait.
      await Promise.race([closed, idle().then(() => new Promise((r) => setTimeout(r, 5000).unref()))]);
      disconnect();
      await Promise.race([closed, new Promise((r) => setTimeout(r, 5000).unref())]);
    },
  };
}
