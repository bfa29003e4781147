// Retrying a flaky call with capped exponential backoff and full jitter.

export interface RetryOptions {
  /** Total attempts, the first included (default 6). */
  maxAttempts?: number;
  /** Delay scale: attempt n waits up to baseDelayMs * 2^(n-1) (default 500 ms). */
  baseDelayMs?: number;
  /** Cap on one delay (default 30 000 ms). */
  maxDelayMs?: number;
  /** Uniform [0, 1) source for the jitter (default Math.random; inject a seeded one for reproducible tests). */
  random?: () => number;
  sleep?: (ms: number) => Promise<void>;
  /** Called before each wait, e.g. to log the failure. */
  onRetry?: (info: { attempt: number; delayMs: number; error: Error }) => void;
}

/** A failure worth another attempt; `retryAfterMs` is the server's own hint (Retry-After), when it gave one. */
export class RetryableError extends Error {
  constructor(
    message: string,
    readonly retryAfterMs?: number,
  ) {
    super(message);
    this.name = 'RetryableError';
  }
}

/** Every attempt failed; `cause` is the last failure. */
export class RetriesExhaustedError extends Error {
  constructor(
    readonly attempts: number,
    override readonly cause: Error,
  ) {
    super(`gave up after ${attempts} attempts: ${cause.message}`);
    this.name = 'RetriesExhaustedError';
  }
}

const defaultSleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** The wait before retry number `attempt` (1 = the first retry): full jitter over a capped exponential. */
export function backoffDelay(attempt: number, baseDelayMs: number, maxDelayMs: number, random: () => number): number {
  const cap = Math.min(maxDelayMs, baseDelayMs * 2 ** (attempt - 1));
  return Math.floor(random() * cap);
}

/**
 * Runs `fn` until it succeeds. Only RetryableError is retried (a server's Retry-After is honoured, up to
 * maxDelayMs); any other error is thrown at once. Throws RetriesExhaustedError after maxAttempts.
 */
export async function withRetry<T>(fn: (attempt: number) => Promise<T>, options: RetryOptions = {}): Promise<T> {
  const maxAttempts = options.maxAttempts ?? 6;
  const base = options.baseDelayMs ?? 500;
  const cap = options.maxDelayMs ?? 30_000;
  if (!Number.isInteger(maxAttempts) || maxAttempts < 1) throw new RangeError(`withRetry: maxAttempts must be a positive integer, got ${maxAttempts}`);
  const random = options.random ?? Math.random;
  const sleep = options.sleep ?? defaultSleep;
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (e) {
      if (!(e instanceof RetryableError)) throw e;
      if (attempt >= maxAttempts) throw new RetriesExhaustedError(attempt, e);
      const jittered = backoffDelay(attempt, base, cap, random);
      const delayMs = e.retryAfterMs !== undefined ? Math.min(cap, Math.max(jittered, e.retryAfterMs)) : jittered;
      options.onRetry?.({ attempt, delayMs, error: e });
      await sleep(delayMs);
    }
  }
}
