// Executes steps on queue workers: uploads the start state, adds one job per distinct request (the job id is
// the request's hash, so a repeated or re-sent request never runs twice), waits for its one recorded result,
// and downloads the new state into the local store.
import { Job, Queue, QueueEvents } from 'bullmq';
import type { Redis } from 'ioredis';
import type { StepResult } from '../episode/types.js';
import type { SnapshotStore } from '../snapshots/store.js';
import { redisConnection } from './connection.js';
import { executionJobId } from './job-id.js';
import { RedisStates, type RedisStatesOptions } from './redis-states.js';
import { DEFAULT_QUEUE, normalizeRequest, type ExecuteRequest, type Executor } from './types.js';

export interface RemoteExecutorOptions {
  /** redis://host:port[/db] */
  redis: string;
  queue?: string;
  /** The client's store: start states are uploaded from it, new states downloaded into it. */
  store: SnapshotStore;
  /** Tries per job when a worker throws (a dead worker is retried through stalled-job detection). Default 3. */
  attempts?: number;
  /** Longest wait for one result. Default 1 h. */
  timeoutMs?: number;
  /** How often pending jobs are polled besides the queue events (covers events lost in a Redis restart). Default 1000 ms. */
  pollMs?: number;
  /** Download each new state into the store (default true; false leaves it in Redis only). */
  pullStates?: boolean;
  states?: RedisStatesOptions;
  /** Hears of Redis outages and recoveries (default: silent; waiting jobs resume on their own). */
  log?: (line: string) => void;
}

/** A job that ended in failure: its id and BullMQ's reason (after retries, or a stall limit for a poisoned job). */
export class RemoteExecutionError extends Error {
  constructor(
    readonly jobId: string,
    readonly reason: string,
  ) {
    super(`remote step ${jobId} failed: ${reason}`);
    this.name = 'RemoteExecutionError';
  }
}

interface Pending {
  resolve: (r: StepResult) => void;
  reject: (e: Error) => void;
  checking: boolean;
  /** An event came while a check was running (it may have read the job just before it finished): check again. */
  recheck: boolean;
}

export class RemoteExecutor implements Executor {
  readonly queueName: string;
  private readonly queue: Queue;
  private readonly events: QueueEvents;
  private readonly connections: Redis[];
  private readonly states: RedisStates;
  private readonly pending = new Map<string, Pending>();
  private readonly inFlight = new Map<string, Promise<StepResult>>();
  private readonly poller: NodeJS.Timeout;
  private closed = false;

  constructor(private readonly options: RemoteExecutorOptions) {
    if (!options?.store) throw new TypeError('RemoteExecutor: option "store" (a SnapshotStore) is required');
    const attempts = options.attempts ?? 3;
    if (!Number.isInteger(attempts) || attempts < 1) throw new TypeError(`RemoteExecutor: attempts must be an integer >= 1, got ${attempts}`);
    this.queueName = options.queue ?? DEFAULT_QUEUE;
    const commands = redisConnection(options.redis, options.log);
    const blocking = redisConnection(options.redis, options.log);
    this.connections = [commands, blocking];
    this.queue = new Queue(this.queueName, { connection: commands });
    this.events = new QueueEvents(this.queueName, { connection: blocking });
    this.states = new RedisStates(commands, options.states);
    const wake = ({ jobId }: { jobId: string }) => void this.check(jobId);
    this.events.on('completed', wake);
    this.events.on('failed', wake);
    this.events.on('error', () => {}); // reconnects on its own; the poller covers the gap
    this.poller = setInterval(() => {
      for (const id of this.pending.keys()) void this.check(id);
    }, options.pollMs ?? 1000);
  }

  /** Jobs waiting for a result. */
  get waiting(): number {
    return this.pending.size;
  }

  async execute(request: ExecuteRequest): Promise<StepResult> {
    if (this.closed) throw new Error('RemoteExecutor: closed');
    const d = normalizeRequest(request);
    const jobId = executionJobId(d);
    let p = this.inFlight.get(jobId);
    if (!p) {
      p = this.run(jobId, d).finally(() => this.inFlight.delete(jobId));
      this.inFlight.set(jobId, p);
    }
    return p;
  }

  private async run(jobId: string, d: ReturnType<typeof normalizeRequest>): Promise<StepResult> {
    if (d.fromSnapshot) await this.states.push(this.options.store, d.fromSnapshot);
    const done = new Promise<StepResult>((resolve, reject) => this.pending.set(jobId, { resolve, reject, checking: false, recheck: false }));
    const timeoutMs = this.options.timeoutMs ?? 3_600_000;
    const timer = setTimeout(() => this.settle(jobId, new Error(`remote step ${jobId}: no result within ${(timeoutMs / 1000).toFixed(0)} s (are workers running on queue '${this.queueName}'?)`)), timeoutMs);
    try {
      // Adding an existing id is a no-op, so a re-sent request attaches to the job already there.
      await this.queue.add('step', d, {
        jobId,
        attempts: this.options.attempts ?? 3,
        backoff: { type: 'fixed', delay: 500 },
        removeOnComplete: { age: 3600 },
        removeOnFail: { age: 24 * 3600 },
      });
      void this.check(jobId);
      const result = await done;
      if ((this.options.pullStates ?? true) && result.snapshotId !== null) await this.states.pull(this.options.store, result.snapshotId);
      return result;
    } finally {
      clearTimeout(timer);
      this.pending.delete(jobId);
    }
  }

  private settle(jobId: string, outcome: StepResult | Error): void {
    const p = this.pending.get(jobId);
    if (!p) return;
    this.pending.delete(jobId);
    if (outcome instanceof Error) p.reject(outcome);
    else p.resolve(outcome);
  }

  /** Reads the job's state; settles it when it is completed or failed for good. */
  private async check(jobId: string): Promise<void> {
    const p = this.pending.get(jobId);
    if (!p) return;
    if (p.checking) {
      p.recheck = true;
      return;
    }
    p.checking = true;
    p.recheck = false;
    try {
      // The state first: a job read before it finished would carry no result even once the state says completed.
      const state = await this.queue.getJobState(jobId);
      if (state !== 'completed' && state !== 'failed') return; // waiting, running, or not added yet: look again later
      const job = await Job.fromId(this.queue, jobId);
      if (!job) return;
      if (state === 'completed' && job.returnvalue) this.settle(jobId, job.returnvalue as StepResult);
      else if (state === 'failed') this.settle(jobId, new RemoteExecutionError(jobId, job.failedReason || 'unknown reason'));
    } catch {
      // Redis unreachable for now: the poller tries again.
    } finally {
      p.checking = false;
      if (p.recheck) void this.check(jobId);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.poller);
    for (const id of [...this.pending.keys()]) this.settle(id, new Error('RemoteExecutor: closed while waiting'));
    await this.events.close().catch(() => {});
    await this.queue.close().catch(() => {});
    for (const c of this.connections) c.disconnect();
  }
}
