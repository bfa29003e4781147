// --redis URL [--queue NAME]: episodes whose steps run on `mlagent worker` processes instead of this machine.
import { remoteEpisodes, type RemoteEpisodes } from '@mlagent/rl';
import { redactUrl } from '@mlagent/env';
import { UsageError } from './args.js';

export const REDIS_USAGE = `  --redis URL: run every step on mlagent worker processes of that Redis (same results as locally);
  --queue NAME: their queue (default mlagent-exec).`;

export const REDIS_OPTIONS = {
  redis: { type: 'string' },
  queue: { type: 'string' },
} as const;

/** The queue's episodes for --redis, or undefined (local execution) without it. */
export function remoteFromArgs(cmd: string, redis: string | undefined, queue: string | undefined): RemoteEpisodes | undefined {
  if (redis === undefined) {
    if (queue !== undefined) throw new UsageError(`${cmd}: --queue goes with --redis URL`);
    return undefined;
  }
  if (!/^rediss?:\/\/./.test(redis)) throw new UsageError(`${cmd}: --redis must be a redis:// or rediss:// URL, got '${redactUrl(redis)}'`);
  if (queue !== undefined && queue.trim() === '') throw new UsageError(`${cmd}: --queue must name a queue`);
  return remoteEpisodes({ redis, queue, log: (line) => process.stderr.write(`${cmd}: ${line}\n`) });
}
