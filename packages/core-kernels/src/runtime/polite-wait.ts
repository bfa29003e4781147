/*
 * While any of its promises is pending, Dawn's Node binding re-schedules its event polling with the global
 * `setImmediate`: a busy loop on the main thread. On a CPU adapter (lavapipe) that loop takes a whole core from
 * the worker threads running the shaders; on 2 cores it halved matmul throughput. The binding keeps the function
 * it first finds, so the global is replaced once, at load, by one that behaves as the real one except while a GPU
 * wait has run longer than SPIN_MS (short waits keep their latency): then it polls once a millisecond.
 */

const SPIN_MS = 2;
const realSetImmediate = globalThis.setImmediate;
let active = 0;
let since = 0;

const politeSetImmediate = ((fn: (...args: unknown[]) => void, ...args: unknown[]) => {
  if (active === 0 || performance.now() - since < SPIN_MS) return realSetImmediate(fn, ...args);
  return setTimeout(fn, 1, ...args);
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
