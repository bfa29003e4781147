import path from 'node:path';
import { DEFAULT_QUEUE, MAX_TIMER_MS, mlagentHome, redactUrl, SnapshotStore, startExecutionWorker } from '@mlagent/env';
import { UsageError, parse } from '../args.js';
import { helperFromArgs } from '../helper-args.js';
import { parseAge, parseSize } from './env-states.js';

export const workerUsage = `mlagent worker --redis URL [--concurrency N] [--queue NAME] [--store DIR] [options]
  Executes env steps for RemoteExecutor clients: takes jobs from a BullMQ queue on Redis, restores each job's
  state, runs the step (execute + grade), uploads the new state and returns the result. Stateless: states travel
  through Redis; --store is only a local cache. Tasks are prepared here by name. Logs go to stderr.
  SIGTERM/SIGINT: stop taking jobs, finish the running ones, exit 0 (a second signal abandons them: they are
  retried elsewhere once their lock expires).
  --concurrency N          jobs at once (default 1; about one per free CPU core)
  --queue NAME             queue name (default ${DEFAULT_QUEUE})
  --store DIR              local state cache (default $MLAGENT_HOME/worker-states)
  --work-root DIR          where workspaces are made (default $TMPDIR/mlagent-ws)
  --name NAME              worker name in logs and on jobs (default host:pid)
  --lock-ms N              a job whose lock is not renewed for N ms counts as stalled (default 30000)
  --stalled-interval-ms N  how often to look for stalled jobs (default 30000)
  --max-stalled N          stalls (worker deaths) a job survives before it fails (default 1)
  --job-timeout S          fail a job running longer than S seconds (default: the task's timeout + 600)
  --cache-max-age AGE      states in the cache saved more than AGE ago (30m, 12h, 7d) are pruned at start and
                           then every AGE/2 (at most hourly), with the blobs no other state needs; they are in
                           Redis. Default 1d for the default --store, off for one given (it may hold more than a
                           cache); off: never
  --cache-max-size SIZE    also prune the cache's oldest states (saved over an hour ago) until it holds at most
                           SIZE (500M, 20G) with the blobs they alone need, at start and then every 10 minutes
                           (or every AGE/2, if sooner). Default: no size limit
  --helper-url URL --helper-model NAME   helper model (key from $MLAGENT_HELPER_API_KEY); clients must agree`;

const OPTIONS = {
  redis: { type: 'string' },
  concurrency: { type: 'string' },
  queue: { type: 'string' },
  store: { type: 'string' },
  'work-root': { type: 'string' },
  name: { type: 'string' },
  'lock-ms': { type: 'string' },
  'stalled-interval-ms': { type: 'string' },
  'max-stalled': { type: 'string' },
  'job-timeout': { type: 'string' },
  'cache-max-age': { type: 'string' },
  'cache-max-size': { type: 'string' },
  'helper-url': { type: 'string' },
  'helper-model': { type: 'string' },
} as const;

function intOption(name: string, v: string | undefined, min: number, max = Number.MAX_SAFE_INTEGER): number | undefined {
  if (v === undefined) return undefined;
  // Number('') is 0: an empty value would pass as 0.
  const n = v.trim() === '' ? NaN : Number(v);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new UsageError(`worker: --${name} must be an integer ${max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `in [${min}, ${max}]`}, got '${v}'`);
  }
  return n;
}

/** A string option that must not be empty: BullMQ throws on an empty queue name, SnapshotStore on an empty dir. */
function nonEmpty(name: string, v: string | undefined): string | undefined {
  if (v === '') throw new UsageError(`worker: --${name} must not be empty`);
  return v;
}

export async function workerCommand(argv: string[]): Promise<void> {
  const { values: v } = parse('worker', argv, OPTIONS);
  if (!v.redis) throw new UsageError('worker: --redis URL is required (e.g. redis://127.0.0.1:6379)');
  if (!/^rediss?:\/\/./.test(v.redis)) throw new UsageError(`worker: --redis must be a redis:// or rediss:// URL, got '${redactUrl(v.redis)}'`);
  // Each of these ends up as a timer's delay, so it must fit one (a job timeout is in seconds).
  const helperLlm = helperFromArgs('worker', v['helper-url'], v['helper-model']);
  const jobTimeout = intOption('job-timeout', v['job-timeout'], 1, Math.floor(MAX_TIMER_MS / 1000));
  const lockDurationMs = intOption('lock-ms', v['lock-ms'], 100, MAX_TIMER_MS);
  const stalledIntervalMs = intOption('stalled-interval-ms', v['stalled-interval-ms'], 100, MAX_TIMER_MS);
  const concurrency = intOption('concurrency', v.concurrency, 1);
  const maxStalledCount = intOption('max-stalled', v['max-stalled'], 0);
  const queue = nonEmpty('queue', v.queue);
  const store = nonEmpty('store', v.store);
  const workRoot = nonEmpty('work-root', v['work-root']);
  const name = nonEmpty('name', v.name);
  const cacheAge = v['cache-max-age'] ?? (store === undefined ? '1d' : 'off');
  const cacheMaxAgeMs = cacheAge === 'off' ? null : parseAge('worker', cacheAge, '--cache-max-age', "or 'off'");
  if (cacheMaxAgeMs === 0) throw new UsageError("worker: --cache-max-age 0 would prune states the running jobs just saved; give an age, or 'off'");
  const cacheMaxBytes = v['cache-max-size'] === undefined ? undefined : parseSize('worker', '--cache-max-size', v['cache-max-size']);
  const cache = new SnapshotStore(store ?? path.join(mlagentHome(), 'worker-states'));
  const worker = startExecutionWorker({
    redis: v.redis,
    queue,
    store: cache,
    concurrency,
    workRoot,
    name,
    lockDurationMs,
    stalledIntervalMs,
    maxStalledCount,
    jobTimeoutMs: jobTimeout === undefined ? undefined : jobTimeout * 1000,
    helperLlm,
  });
  const pruner =
    cacheMaxAgeMs === null && cacheMaxBytes === undefined
      ? null
      : pruneCachePeriodically(cache, { ageMs: cacheMaxAgeMs ?? undefined, age: cacheAge, maxBytes: cacheMaxBytes, size: v['cache-max-size'] }, (line) => process.stderr.write(`worker ${worker.name}: ${line}\n`));
  await new Promise<void>((resolve) => {
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) {
        process.stderr.write(`worker ${worker.name}: ${signal} again: abandoning ${worker.active} running job(s)\n`);
        // The abandoned sandbox runs would keep the event loop, and so the process, alive until they end.
        void worker.close(true).finally(() => process.exit(signal === 'SIGTERM' ? 143 : 130));
        return;
      }
      stopping = true;
      process.stderr.write(`worker ${worker.name}: ${signal}: finishing ${worker.active} running job(s), then exiting\n`);
      void worker.close().finally(() => {
        process.stderr.write(`worker ${worker.name}: stopped\n`);
        resolve();
      });
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
  });
  await pruner?.stop();
}

/**
 * Prunes the worker's cache now and every ageMs/2 (at most every 10 minutes with a size limit, else hourly). Safe
 * beside running jobs: a job's states are younger than the age, and a prune leaves states and blobs used in the last
 * hour (see SnapshotStore.prune).
 */
function pruneCachePeriodically(
  store: SnapshotStore,
  limits: { ageMs?: number; age: string; maxBytes?: number; size?: string },
  log: (line: string) => void,
): { stop(): Promise<void> } {
  let running: Promise<void> = Promise.resolve();
  const why = [limits.ageMs === undefined ? '' : `older than ${limits.age}`, limits.maxBytes === undefined ? '' : `past ${limits.size}`].filter(Boolean).join(' or ');
  const once = () => {
    running = store.prune({ olderThanMs: limits.ageMs, maxBytes: limits.maxBytes }).then(
      (r) => {
        if (r.removed.length > 0 || r.blobsRemoved > 0)
          log(`cache: removed ${r.removed.length} state(s) ${why} and ${r.blobsRemoved} blob(s), ${(r.bytesFreed / 2 ** 20).toFixed(1)} MiB freed; ${(r.bytesKept / 2 ** 20).toFixed(1)} MiB kept`);
      },
      (e: Error) => log(`cache: prune failed (${e.message}); trying again later`),
    );
  };
  once();
  const most = limits.maxBytes === undefined ? 3_600_000 : 600_000;
  const timer = setInterval(() => void running.then(once), Math.min(Math.max((limits.ageMs ?? Infinity) / 2, 1000), most));
  timer.unref();
  return {
    async stop() {
      clearInterval(timer);
      await running;
    },
  };
}
