// Executes steps on queue workers: uploads the start state, adds one job per distinct request (the job id is
// the request's hash, so a repeated or re-sent request never runs twice), waits for its one recorded result,
// and downloads the new state into the local store.
import { Job, Queue, QueueEvents } from 'bullmq';
import type { Redis } from 'ioredis';
import type { StepResult } from '../episode/types.js';
import type { SnapshotStore } from '../snapshots/store.js';
import { endConnection, intervalMs, limitMs, redisConnection } from './connection.js';
import { executionJobId } from './job-id.js';
import { RedisStates, type RedisStatesOptions } from './redis-states.js';
import { DEFAULT_QUEUE, normalizeRequest, type ExecuteRequest, type ExecutionJobData, type Executor } from './types.js';

export interface RemoteExecutorOptions {
  /** redis://host:port[/db] */
  redis: string;
  queue?: string;
  /** The client's store: start states are uploaded from it, new states downloaded into it. */
  store: SnapshotStore;
  /** Tries per job when a worker throws (a dead worker is retried through stalled-job detection). Default 3. */
  attempts?: number;
  /** Longest wait for one result, uploads and downloads included. Default 1 h; Infinity (or past 2^31-1): no limit. */
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
  /** The job's data, once it has been added: a job that vanishes from Redis is added again from it. */
  added: ExecutionJobData | null;
  /** Adding it again is under way. */
  readding: boolean;
}

const STATE_ID = /^[0-9a-f]{64}$/;
const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Why a job's return value is not a StepResult, or null when it is one. The value comes from Redis (any worker
 * version, or anything else that can write there); its state id becomes a path in the store and the next job's
 * `fromSnapshot`, so it must be a full state id.
 */
function resultProblem(v: unknown): string | null {
  if (!isObject(v)) return `expected a StepResult object, got ${v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v}`;
  if (v.snapshotId !== null && (typeof v.snapshotId !== 'string' || !STATE_ID.test(v.snapshotId))) return `snapshotId is not a state id: ${JSON.stringify(v.snapshotId)?.slice(0, 80)}`;
  if (!Number.isInteger(v.step) || (v.step as number) < 1) return `step is not an integer >= 1: ${JSON.stringify(v.step)?.slice(0, 80)}`;
  if (typeof v.done !== 'boolean') return 'done is not a boolean';
  if (typeof v.observation !== 'string') return 'observation is not a string';
  if (typeof v.outcome !== 'string') return 'outcome is not a string';
  if (v.action !== null && typeof v.action !== 'string') return 'action is not a string or null';
  if (v.metric !== null && typeof v.metric !== 'number') return 'metric is not a number or null';
  if (typeof v.durationSec !== 'number') return 'durationSec is not a number';
  if (!isObject(v.feedback)) return 'feedback is not an object';
  return null;
}

export class RemoteExecutor implements Executor {
  readonly queueName: string;
  private readonly queue: Queue;
  private readonly events: QueueEvents;
  private readonly connections: Redis[];
  private readonly states: RedisStates;
  private readonly pending = new Map<string, Pending>();
  private readonly inFlight = new Map<string, Promise<StepResult>>();
  /** Rejects the runs in flight when the executor is closed (also those still uploading or adding their job). */
  private readonly aborts = new Set<(e: Error) => void>();
  private readonly poller: NodeJS.Timeout;
  private readonly timeoutMs: number | null;
  private readonly attempts: number;
  private closed = false;

  constructor(private readonly options: RemoteExecutorOptions) {
    if (!options?.store) throw new TypeError('RemoteExecutor: option "store" (a SnapshotStore) is required');
    const attempts = options.attempts ?? 3;
    if (!Number.isInteger(attempts) || attempts < 1) throw new TypeError(`RemoteExecutor: attempts must be an integer >= 1, got ${attempts}`);
    this.attempts = attempts;
    // Checked: a delay past setTimeout's range (or NaN, or 0) fires at once, so every step would "time out"
    // straight away, and a poll every 0 ms would spin on Redis.
    this.timeoutMs = limitMs(options.timeoutMs, 'RemoteExecutor: timeoutMs', 3_600_000);
    const pollMs = intervalMs(options.pollMs, 'RemoteExecutor: pollMs', 1000, 10);
    if (options.queue !== undefined && (typeof options.queue !== 'string' || options.queue === '')) {
      throw new TypeError(`RemoteExecutor: queue must be a non-empty queue name, got ${JSON.stringify(options.queue)}`);
    }
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
    this.queue.on('error', () => {}); // idem: commands wait for the reconnect
    this.poller = setInterval(() => {
      for (const id of this.pending.keys()) void this.check(id);
    }, pollMs);
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

  /**
   * The whole step is under the timeout, the upload of the start state and the download of the new one included:
   * while Redis is unreachable every command waits for a reconnect, so without it a trainer would wait forever.
   */
  private async run(jobId: string, d: ExecutionJobData): Promise<StepResult> {
    let timer: NodeJS.Timeout | undefined;
    let abort: ((e: Error) => void) | undefined;
    const stops = new Promise<never>((_, reject) => {
      abort = reject;
      this.aborts.add(reject);
      if (this.timeoutMs !== null) {
        const ms = this.timeoutMs;
        timer = setTimeout(() => reject(new Error(`remote step ${jobId}: no result within ${(ms / 1000).toFixed(ms < 10_000 ? 1 : 0)} s (are workers running on queue '${this.queueName}', and is Redis reachable?)`)), ms);
      }
    });
    const live = { stopped: false };
    try {
      // race() listens to both: the step left behind when the time is up rejects into it, not as an unhandled rejection.
      return await Promise.race([this.attempt(jobId, d, live), stops]);
    } finally {
      live.stopped = true;
      clearTimeout(timer);
      this.aborts.delete(abort!);
      this.pending.delete(jobId);
    }
  }

  private async attempt(jobId: string, d: ExecutionJobData, live: { stopped: boolean }): Promise<StepResult> {
    if (d.fromSnapshot) await this.states.push(this.options.store, d.fromSnapshot);
    // Given up on (timed out, closed) while the upload waited for Redis: adding the job now would only make the
    // workers run a step nobody waits for, and leave a pending entry polled forever.
    if (live.stopped) throw new Error(`remote step ${jobId}: abandoned`);
    const entry: Pending = { resolve: () => {}, reject: () => {}, checking: false, recheck: false, added: null, readding: false };
    const done = new Promise<StepResult>((resolve, reject) => Object.assign(entry, { resolve, reject }));
    // Settled (by close, or by a check of a job already there) maybe before it is awaited below.
    done.catch(() => {});
    this.pending.set(jobId, entry);
    await this.add(jobId, d);
    entry.added = d;
    void this.check(jobId);
    const result = await done;
    if (live.stopped) throw new Error(`remote step ${jobId}: abandoned`);
    if ((this.options.pullStates ?? true) && result.snapshotId !== null) await this.states.pull(this.options.store, result.snapshotId);
    return result;
  }

  /** Adding an existing id is a no-op, so a re-sent request attaches to the job already there. */
  private async add(jobId: string, d: ExecutionJobData): Promise<void> {
    await this.queue.add('step', d, {
      jobId,
      attempts: this.attempts,
      backoff: { type: 'fixed', delay: 500 },
      removeOnComplete: { age: 3600 },
      removeOnFail: { age: 24 * 3600 },
    });
  }

  private settle(jobId: string, outcome: StepResult | Error): void {
    const p = this.pending.get(jobId);
    if (!p) return;
    this.pending.delete(jobId);
    if (outcome instanceof Error) p.reject(outcome);
    else p.resolve(outcome);
  }

  /**
   * A job added but no longer in Redis: Redis restarted without persistence (or lost the keys otherwise), and
   * the start state may be gone with it. Upload the state again and add the job again; a worker running it finds
   * its lock gone and cannot complete it, so the new job's result is the one recorded.
   */
  private async readd(jobId: string, p: Pending, d: ExecutionJobData): Promise<void> {
    p.readding = true;
    try {
      this.options.log?.(`remote step ${jobId}: the job is gone from Redis (restarted without persistence?); adding it again`);
      if (d.fromSnapshot) await this.states.push(this.options.store, d.fromSnapshot);
      if (this.pending.get(jobId) === p) await this.add(jobId, d);
    } catch {
      // Redis unreachable again, or the local state is gone: the next poll tries again or the timeout ends it.
    } finally {
      p.readding = false;
    }
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
      if (state === 'unknown' && p.added && !p.readding) void this.readd(jobId, p, p.added);
      if (state !== 'completed' && state !== 'failed') return; // waiting, running, or not added yet: look again later
      const job = await Job.fromId(this.queue, jobId);
      if (!job) return;
      if (state === 'failed') this.settle(jobId, new RemoteExecutionError(jobId, job.failedReason || 'unknown reason'));
      else {
        // Completed without a usable result (another worker version, a tampered job): waiting would only end
        // at the timeout, an hour later by default.
        const problem = resultProblem(job.returnvalue);
        this.settle(jobId, problem === null ? (job.returnvalue as StepResult) : new RemoteExecutionError(jobId, `the job completed without a valid result (${problem})`));
      }
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
    const closedErr = () => new Error('RemoteExecutor: closed while waiting');
    for (const id of [...this.pending.keys()]) this.settle(id, closedErr());
    for (const abort of [...this.aborts]) abort(closedErr());
    // Closing waits for Redis when it is unreachable: disconnect first, so that close returns either way.
    for (const c of this.connections) endConnection(c);
    await this.events.close().catch(() => {});
    await this.queue.close().catch(() => {});
  }
}
