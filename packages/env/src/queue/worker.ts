// A BullMQ worker that executes steps: pulls the start state from Redis, runs the step, pushes the new state,
// returns the StepResult. Stateless apart from its local cache (store, prepared tasks).
import os from 'node:os';
import { UnrecoverableError, Worker, type Job } from 'bullmq';
import type { StepResult } from '../episode/types.js';
import type { HelperLlmConfig } from '../helper-llm/client.js';
import { SandboxPool } from '../sandbox/pool.js';
import type { SnapshotStore } from '../snapshots/store.js';
import type { PreparedTask } from '../tasks/types.js';
import { redisConnection } from './connection.js';
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

export function startExecutionWorker(options: ExecutionWorkerOptions): ExecutionWorker {
  const name = options.name ?? `${os.hostname()}:${process.pid}`;
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const concurrency = options.concurrency ?? 1;
  if (!Number.isInteger(concurrency) || concurrency < 1) throw new TypeError(`worker: concurrency must be an integer >= 1, got ${concurrency}`);
  const queue = options.queue ?? DEFAULT_QUEUE;
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
      const timeoutMs = options.jobTimeoutMs ?? ((await ctx.task(d.task)).spec.budgets.timeoutSec + 600) * 1000;
      const r = await withTimeout(run(), timeoutMs, `job ${job.id}`);
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
  const worker = new Worker(queue, handle, {
    connection: blocking,
    concurrency,
    name,
    lockDuration: options.lockDurationMs ?? 30_000,
    stalledInterval: options.stalledIntervalMs ?? 30_000,
    maxStalledCount: options.maxStalledCount ?? 1,
  });
  worker.on('error', (e) => log(`worker ${name}: ${e.message}`));
  worker.on('stalled', (jobId) => log(`worker ${name}: job ${jobId} stalled (its worker died or hung); it goes back to the queue`));
  log(`worker ${name}: waiting for jobs on queue '${queue}' (concurrency ${concurrency}, states in ${options.store.dir})`);

  return {
    name,
    worker,
    get active() {
      return active;
    },
    async close(force = false) {
      await worker.close(force);
      blocking.disconnect();
      commands.disconnect();
    },
  };
}
