// --redis URL [--queue NAME]: episodes whose steps run on `mlagent worker` processes instead of this machine.
// The executor is made on the first episode, since collect and eval create their snapshot store themselves.
import { randomUUID } from 'node:crypto';
import { ExecutorEpisode, RemoteExecutor, type HelperLlmConfig, type PreparedTask, type SnapshotStore } from '@mlagent/env';
import { UsageError } from './args.js';

export const REDIS_USAGE = `  --redis URL: run every step on mlagent worker processes of that Redis (same results as locally);
  --queue NAME: their queue (default mlagent-exec).`;

export const REDIS_OPTIONS = {
  redis: { type: 'string' },
  queue: { type: 'string' },
} as const;

export interface RemoteEpisodes {
  startEpisode: (
    task: PreparedTask,
    options: { store: SnapshotStore; maxSteps: number; workRoot: string; helperLlm: HelperLlmConfig | null },
  ) => Promise<ExecutorEpisode>;
  close(): Promise<void>;
}

/** The startEpisode hook for --redis, or undefined (local execution) without it. */
export function remoteEpisodes(cmd: string, redis: string | undefined, queue: string | undefined, log: (line: string) => void): RemoteEpisodes | undefined {
  if (redis === undefined) {
    if (queue !== undefined) throw new UsageError(`${cmd}: --queue goes with --redis URL`);
    return undefined;
  }
  if (!/^rediss?:\/\/./.test(redis)) throw new UsageError(`${cmd}: --redis must be a redis:// or rediss:// URL, got '${redis}'`);
  if (queue !== undefined && queue.trim() === '') throw new UsageError(`${cmd}: --queue must name a queue`);
  let executor: RemoteExecutor | undefined;
  let executorStore: SnapshotStore | undefined;
  return {
    startEpisode: (task, o) => {
      if (executor === undefined) {
        executor = new RemoteExecutor({ redis, queue, store: o.store, log });
        executorStore = o.store;
      } else if (executorStore !== o.store) throw new Error(`${cmd}: all episodes of one run must share a snapshot store`);
      // A key per episode: two trajectories that repeat a text from the same state are still two steps.
      return ExecutorEpisode.start(executor, task, { store: o.store, maxSteps: o.maxSteps, workRoot: o.workRoot, helperLlm: o.helperLlm, key: randomUUID() });
    },
    close: async () => {
      await executor?.close();
    },
  };
}
