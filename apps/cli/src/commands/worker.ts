import path from 'node:path';
import { DEFAULT_QUEUE, mlagentHome, SnapshotStore, startExecutionWorker } from '@mlagent/env';
import { UsageError, parse } from '../args.js';
import { helperFromArgs } from '../helper-args.js';

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
  'helper-url': { type: 'string' },
  'helper-model': { type: 'string' },
} as const;

/** The longest delay a Node timer takes; a longer one fires after 1 ms instead. */
const MAX_TIMER_MS = 2 ** 31 - 1;

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
  if (!/^rediss?:\/\/./.test(v.redis)) throw new UsageError(`worker: --redis must be a redis:// or rediss:// URL, got '${v.redis}'`);
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
  const worker = startExecutionWorker({
    redis: v.redis,
    queue,
    store: new SnapshotStore(store ?? path.join(mlagentHome(), 'worker-states')),
    concurrency,
    workRoot,
    name,
    lockDurationMs,
    stalledIntervalMs,
    maxStalledCount,
    jobTimeoutMs: jobTimeout === undefined ? undefined : jobTimeout * 1000,
    helperLlm,
  });
  await new Promise<void>((resolve) => {
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) {
        process.stderr.write(`worker ${worker.name}: ${signal} again: abandoning ${worker.active} running job(s)\n`);
        void worker.close(true).finally(resolve);
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
}
