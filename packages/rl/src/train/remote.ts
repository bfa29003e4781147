// Steps on `mlagent worker` processes (a BullMQ queue on Redis) instead of local sandboxes: ExecutorEpisodes over
// one RemoteExecutor per snapshot store (collection, PPO and evaluation each keep their own store).
import { randomUUID } from 'node:crypto';
import { ExecutorEpisode, RemoteExecutor, type ExecutorEpisodeOptions, type PreparedTask, type SnapshotStore } from '@mlagent/env';

export interface RemoteExecution {
  /** redis://host:port[/db] of the workers' queue. */
  redis: string;
  /** The workers' queue (default the env's DEFAULT_QUEUE). */
  queue?: string;
  /** Hears of Redis outages and recoveries. */
  log?: (line: string) => void;
}

export interface RemoteEpisodes {
  /** An episode whose steps run on the workers; its states come back into `options.store`. */
  start(task: PreparedTask, options: ExecutorEpisodeOptions): Promise<ExecutorEpisode>;
  /** Closes the executors (their Redis connections). */
  close(): Promise<void>;
}

export function remoteEpisodes(remote: RemoteExecution): RemoteEpisodes {
  if (!/^rediss?:\/\/./.test(remote.redis)) throw new Error(`remote execution: redis must be a redis:// or rediss:// URL, got '${remote.redis}'`);
  const executors = new Map<SnapshotStore, RemoteExecutor>();
  return {
    start(task, options) {
      let executor = executors.get(options.store);
      if (!executor) {
        executor = new RemoteExecutor({ redis: remote.redis, queue: remote.queue, store: options.store, log: remote.log });
        executors.set(options.store, executor);
      }
      // A key per episode: n samples of one state that happen to write the same text are still n steps.
      return ExecutorEpisode.start(executor, task, { key: randomUUID(), ...options });
    },
    async close() {
      const all = [...executors.values()];
      executors.clear();
      await Promise.all(all.map((e) => e.close()));
    },
  };
}
