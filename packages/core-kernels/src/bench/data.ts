import type { Tensor } from '../runtime/tensor.js';

/**
 * Deterministic values uniform in [-scale/2, scale/2] from a linear congruential generator: cheap enough for a
 * 545M-element weight, and not zeros, which would hide real behaviour in timings.
 */
export function benchValues(n: number, scale: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = (s / 4294967296 - 0.5) * scale;
  }
  return out;
}

export function disposeAll(...ts: Array<Tensor | undefined>): void {
  for (const t of ts) t?.dispose();
}
