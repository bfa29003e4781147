/*
 * While any of its promises is pending, Dawn's Node binding re-schedules its event polling with the global
 * `setImmediate`: a busy loop on the main thread. On a CPU adapter (lavapipe) that loop takes a whole core from
 * the worker threads running the shaders; on 2 cores it halved matmul throughput. The binding keeps the function
 * it first finds, so the global is replaced once, at load, by one that behaves as the real one except while a GPU
 * wait is in progress: then polls are spaced by `pollDelayMs`.
 */

/** Polls run back to back for this long into a wait, so short waits keep their latency. */
const SPIN_MS = 2;
/** Until this far into a wait, polls are 1 ms apart. */
const SHORT_WAIT_MS = 10;
/**
 * Then 4 ms apart. Each poll costs the main thread ~0.1 ms and preempts a shader thread; at one a millisecond the
 * main thread took ~9% of a core and the shader threads were preempted ~400 times a second during a 1024³ f32
 * matmul on 2 cores. 4 ms made its dispatches ~5% faster (docs/BENCHMARKS.md) for at most 4 ms more latency.
 */
const LONG_POLL_MS = 4;

/** Delay before the next poll, `elapsedMs` into a GPU wait: undefined polls at once (the real `setImmediate`). */
export function pollDelayMs(elapsedMs: number): number | undefined {
  if (elapsedMs < SPIN_MS) return undefined;
  return elapsedMs < SHORT_WAIT_MS ? 1 : LONG_POLL_MS;
}

const realSetImmediate = globalThis.setImmediate;
let active = 0;
let since = 0;

const politeSetImmediate = ((fn: (...args: unknown[]) => void, ...args: unknown[]) => {
  const delay = active === 0 ? undefined : pollDelayMs(performance.now() - since);
  if (delay === undefined) return realSetImmediate(fn, ...args);
  return setTimeout(fn, delay, ...args);
}) as unknown as typeof setImmediate;
Object.assign(politeSetImmediate, realSetImmediate);
globalThis.setImmediate = politeSetImmediate;

/** Awaits `p` with Dawn's event polling throttled after the first few milliseconds. */
export async function politeWait<T>(p: Promise<T>): Promise<T> {
  if (active++ === 0) since = performance.now();
  try {
    return await p;
  } finally {
    active--;
  }
}
