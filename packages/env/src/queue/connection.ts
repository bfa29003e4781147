// Redis connections for queues and workers: commands wait through a Redis restart instead of failing.
import { Redis } from 'ioredis';

/**
 * `log` hears of an outage once (not on every reconnect try) and of the recovery; without it, outages are
 * silent (ioredis would otherwise print "Unhandled error event" on every try).
 */
export function redisConnection(url: string, log?: (line: string) => void): Redis {
  if (typeof url !== 'string' || !/^rediss?:\/\//.test(url)) throw new TypeError(`redis: expected a URL like redis://host:6379, got ${JSON.stringify(url)}`);
  const r = new Redis(url, {
    // BullMQ's blocking commands need this; it also makes commands wait for a reconnect rather than fail.
    maxRetriesPerRequest: null,
    retryStrategy: (times) => Math.min(200 * times, 2000),
  });
  let down = false;
  r.on('error', (e: Error) => {
    if (down) return;
    down = true;
    log?.(`redis ${url}: ${e.message}; reconnecting`);
  });
  r.on('ready', () => {
    if (down) log?.(`redis ${url}: reconnected`);
    down = false;
  });
  return r;
}
