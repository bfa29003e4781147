// A worker process for the scale-out tests (run with `node --import tsx`); settings come from QW_* variables.
import { SnapshotStore } from '../src/snapshots/store.js';
import { startExecutionWorker } from '../src/queue/worker.js';

const env = process.env;
const num = (v: string | undefined) => (v === undefined ? undefined : Number(v));
const w = startExecutionWorker({
  redis: env.QW_REDIS!,
  queue: env.QW_QUEUE,
  name: env.QW_NAME,
  store: new SnapshotStore(env.QW_STORE!),
  concurrency: num(env.QW_CONCURRENCY),
  lockDurationMs: num(env.QW_LOCK_MS),
  stalledIntervalMs: num(env.QW_STALLED_MS),
  maxStalledCount: num(env.QW_MAX_STALLED),
  jobTimeoutMs: num(env.QW_JOB_TIMEOUT_MS),
  crashOnResponse: env.QW_CRASH_ON,
});
process.once('SIGTERM', () => {
  void w.close().then(() => process.exit(0));
});
