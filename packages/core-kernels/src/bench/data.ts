import type { Gpu } from '../runtime/gpu.js';
import type { Tensor } from '../runtime/tensor.js';
import { DTYPE_BYTES } from '../runtime/dtype.js';

/**
 * Deterministic values uniform in [-scale/2, scale/2] from a linear congruential generator: cheap enough for a
 * 545M-element weight, and not zeros, which would hide real behaviour in timings.
 */
export function benchValues(n: number, scale: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  const next = lcg(seed);
  for (let i = 0; i < n; i++) out[i] = (next() / 4294967296 - 0.5) * scale;
  return out;
}

/** The generator behind the bench values: a 32-bit linear congruential sequence from `seed`. */
function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0);
}

/**
 * Deterministic normal values with standard deviation `sd` (Box-Muller on benchValues' generator): the shape of
 * a language model's logits, whose largest values stand apart; uniform values crowd at the top instead.
 */
export function benchNormalValues(n: number, sd: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  const step = lcg(seed);
  const next = () => (step() + 0.5) / 4294967296; // in (0, 1): log() stays finite
  for (let i = 0; i < n; i += 2) {
    const r = sd * Math.sqrt(-2 * Math.log(next()));
    const a = 2 * Math.PI * next();
    out[i] = r * Math.cos(a);
    if (i + 1 < n) out[i + 1] = r * Math.sin(a);
  }
  return out;
}

export function disposeAll(...ts: Array<Tensor | undefined>): void {
  for (const t of ts) t?.dispose();
}

/** Values a benchmark block holds at most; bigger tensors repeat it (a 545M-element table is too big to make on the host). */
const BLOCK_VALUES = 1 << 20;

/**
 * A float tensor of benchValues for a benchmark's input: never zeros, which time differently on GPUs (lower power,
 * higher clocks) and hide unwritten outputs. Past BLOCK_VALUES elements one random block is copied over and over
 * on the GPU.
 */
export function benchTensor(gpu: Gpu, shape: number[], dtype: 'f32' | 'f16', scale: number, seed: number, label?: string): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  if (n <= BLOCK_VALUES) return gpu.tensor(shape, dtype, benchValues(n, scale, seed), label);
  const t = gpu.tensor(shape, dtype, undefined, label);
  const block = gpu.tensor([BLOCK_VALUES], dtype, benchValues(BLOCK_VALUES, scale, seed));
  const blockBytes = BLOCK_VALUES * DTYPE_BYTES[dtype];
  const total = n * DTYPE_BYTES[dtype];
  for (let at = 0; at < total; at += blockBytes) {
    // Copies move multiples of 4 bytes; an odd f16 tail keeps the zero it was allocated with.
    const bytes = Math.floor(Math.min(blockBytes, total - at) / 4) * 4;
    if (bytes > 0) gpu.copy(block.buffer, block.byteOffset, t.buffer, t.byteOffset + at, bytes);
  }
  block.dispose();
  return t;
}
