// Redis connections for queues and workers: commands wait through a Redis restart instead of failing.
import { Redis } from 'ioredis';
import { MAX_TIMER_MS } from '../timers.js';


/**
 * The URL without its password (`redis://user:***@host`), for logs and errors: a worker's stderr and a trainer's
 * log are read by more people than the Redis password should be.
 */
export function redactUrl(url: unknown): string {
  if (typeof url !== 'string') return JSON.stringify(url) ?? String(url);
  // Not URL(): a malformed URL must be redacted too. Everything between '//' and the last '@' before the host.
  return url
    .replace(/^([a-z][a-z0-9+.-]*:\/\/)([^/?#]*)@/i, (_m, scheme: string, auth: string) => {
      // Without a ':' the one part may be the password (redis://secret@host): hide it all.
      return auth.includes(':') ? `${scheme}${auth.slice(0, auth.indexOf(':'))}:***@` : `${scheme}***@`;
    })
    .replace(/([?&]password=)[^&#]*/gi, '$1***'); // ioredis also takes options from the query
}

/**
 * `log` hears of an outage once (not on every reconnect try) and of the recovery; without it, outages are
 * silent (ioredis would otherwise print "Unhandled error event" on every try).
 */
export function redisConnection(url: string, log?: (line: string) => void): Redis {
  if (typeof url !== 'string' || !/^rediss?:\/\//.test(url)) throw new TypeError(`redis: expected a URL like redis://host:6379, got ${JSON.stringify(redactUrl(url))}`);
  const shown = redactUrl(url);
  const r = new Redis(url, {
    // BullMQ's blocking commands need this; it also makes commands wait for a reconnect rather than fail.
    maxRetriesPerRequest: null,
    retryStrategy: (times) => Math.min(200 * times, 2000),
  });
  let down = false;
  r.on('error', (e: Error) => {
    if (down) return;
    down = true;
    log?.(`redis ${shown}: ${e.message}; reconnecting`);
  });
  r.on('ready', () => {
    if (down) log?.(`redis ${shown}: reconnected`);
    down = false;
  });
  return r;
}

/**
 * Ends a connection for good, also during an outage. ioredis's disconnect() between two reconnect tries only cancels
 * the next try: the connection stays 'reconnecting' forever, never emits 'end', and the commands queued for it
 * (BullMQ's close waits for that 'end') never settle. One more try, marked as a manual close, ends it either way:
 * refused, it closes without retrying; connected, it is disconnected at once.
 */
export function endConnection(r: Redis): void {
  if (r.status === 'end') return;
  r.disconnect();
  if (r.status !== 'reconnecting') return;
  r.once('ready', () => r.disconnect());
  r.connect().catch(() => {});
}

/**
 * Checks a wall-clock limit in milliseconds (a positive number; past MAX_TIMER_MS, Infinity included, it means no
 * limit) and returns it, or null for none. NaN, 0 or a negative delay would make every timer fire at once.
 */
export function limitMs(value: unknown, name: string, fallback: number): number | null {
  const v = value ?? fallback;
  if (typeof v !== 'number' || Number.isNaN(v) || v <= 0) throw new TypeError(`${name} must be a positive number of milliseconds (or Infinity for no limit), got ${String(value)}`);
  return v > MAX_TIMER_MS ? null : v;
}

/** Checks an interval or lock duration in milliseconds: an integer in [min, MAX_TIMER_MS]. */
export function intervalMs(value: unknown, name: string, fallback: number, min = 1): number {
  const v = value ?? fallback;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > MAX_TIMER_MS) {
    throw new TypeError(`${name} must be an integer number of milliseconds in [${min}, ${MAX_TIMER_MS}], got ${String(value)}`);
  }
  return v;
}
