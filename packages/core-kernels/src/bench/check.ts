import type { Tensor } from '../runtime/tensor.js';
import { shapeSize } from '../runtime/dtype.js';
import { loraKeep } from '../reference/lora.js';

/**
 * Checks of a benchmark case's output at the benchmark's own shape (`mlagent bench kernels --check`): a sample of
 * output values against float64 recomputed on the host from the inputs read back. A timing of a kernel that gives
 * wrong answers on this adapter is worth nothing, and the unit tests run on lavapipe, at small shapes: this is how
 * the paths a real GPU takes at LLM shapes (tensor-core tiles, split-K, the vec GEMV) are checked there.
 *
 * Errors are normalized per value. A sum Σ_k t_k (a matmul entry, an attention output element) is compared
 * against the L2 norm of its terms, sqrt(Σ_k t_k²): rounding each term to f16 gives errors near 2^-12 of that,
 * whatever K, while losing one term of K gives about 1/sqrt(K) (0.007 at K = 18944). Log-probabilities, entropies
 * and logsumexps are compared absolutely. A check catches wrong indexing, missing blocks and races, not the last
 * bits; the unit tests hold those.
 */
export interface BenchCheck {
  /** Worst normalized error over the samples (Infinity for a NaN or an infinity where the reference is finite). */
  err: number;
  /** The bound `err` must stay under. */
  tol: number;
  /** Output values compared. */
  samples: number;
}

/**
 * The bound of every check: for sums, above the f16 rounding of terms or outputs (P in the tensor-core attention,
 * f16 outputs: ~5e-4 at worst over a sample); for logs, an absolute error in nats.
 */
export const CHECK_TOL = 5e-3;

/** Accumulates the worst normalized error of a check. */
export class ErrorMeter {
  err = 0;
  samples = 0;

  /** `got` against `ref`, divided by `scale` (at least the smallest normal f32, so a zero sum compares absolutely). */
  add(got: number, ref: number, scale = 1): void {
    const e = Math.abs(got - ref) / Math.max(scale, 1.2e-38);
    this.samples++;
    if (Number.isNaN(e) || e === Infinity) this.err = Infinity;
    else if (e > this.err) this.err = e;
  }

  /**
   * A sum against its float64 value, scaled by the L2 norm of its terms, or by the sum itself where that is larger
   * (terms of one sign), so that rounding the output to f16 stays within the bound.
   */
  addSum(got: number, sum: number, l2: number): void {
    this.add(got, sum, Math.max(l2, Math.abs(sum)));
  }

  /** Each element of a row against its reference, scaled by the reference row's RMS (the ops' outputs). */
  addRow(got: ArrayLike<number>, ref: ArrayLike<number>): void {
    let sq = 0;
    for (let i = 0; i < ref.length; i++) sq += ref[i] * ref[i];
    const rms = Math.sqrt(sq / Math.max(ref.length, 1));
    for (let i = 0; i < ref.length; i++) this.add(got[i], ref[i], rms);
  }

  result(tol: number): BenchCheck {
    return { err: this.err, tol, samples: this.samples };
  }
}

/** Several checks of one case as one: the worst error against the tightest bound, all samples counted. */
export function worstOf(checks: readonly BenchCheck[]): BenchCheck {
  return {
    err: Math.max(...checks.map((c) => c.err)),
    tol: Math.min(...checks.map((c) => c.tol)),
    samples: checks.reduce((n, c) => n + c.samples, 0),
  };
}

/** Up to `count` distinct indices in [0, n), sorted: the first, the last, and the rest spread by a fixed LCG. */
export function spread(n: number, count: number): number[] {
  if (n <= 0) return [];
  const out = new Set<number>([0, n - 1]);
  let s = 0x9e3779b9;
  while (out.size < Math.min(n, count)) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out.add(s % n);
  }
  return [...out].sort((a, b) => a - b);
}

/** Rows [first, first + count) along the first dimension, widened to f32. */
export async function readRows(t: Tensor, first: number, count = 1): Promise<Float32Array> {
  const row = shapeSize(t.shape.slice(1));
  const bytes = t.dtype === 'f16' ? 2 : 4;
  const host = await t.gpu.readBuffer(t.buffer, t.byteOffset + first * row * bytes, t.dtype, count * row, `${t} rows ${first}+${count}`);
  return host as Float32Array;
}

/** The whole tensor, widened to f32. */
export async function readAll(t: Tensor): Promise<Float32Array> {
  return (await t.read()) as Float32Array;
}

/** Σ_k a[aOff + k]·b[bOff + k·bStride] in float64, and the L2 norm of its terms. */
export function dot(a: ArrayLike<number>, aOff: number, b: ArrayLike<number>, bOff: number, bStride: number, K: number): { sum: number; l2: number } {
  let sum = 0;
  let sq = 0;
  for (let k = 0; k < K; k++) {
    const t = a[aOff + k] * b[bOff + k * bStride];
    sum += t;
    sq += t * t;
  }
  return { sum, l2: Math.sqrt(sq) };
}

/**
 * y = x·Wᵀ with x [T, K] and W [N, K] row-major, y [T, N]: sampled rows of x and W, their entries of y. Reads only
 * those rows, so it serves a 1 GB weight as cheaply as a small one.
 */
export async function checkLinear(x: Tensor, w: Tensor, y: Tensor, T: number, N: number, K: number, tol = CHECK_TOL): Promise<BenchCheck> {
  const meter = new ErrorMeter();
  const cols = spread(N, 16);
  const wRows = await Promise.all(cols.map((n) => readRows(w, n)));
  for (const t of spread(T, 4)) {
    const xRow = await readRows(x.reshape([T, K]), t);
    const yRow = await readRows(y.reshape([T, N]), t);
    cols.forEach((n, i) => {
      const { sum, l2 } = dot(xRow, 0, wRows[i], 0, 1, K);
      meter.addSum(yRow[n], sum, l2);
    });
  }
  return meter.result(tol);
}

/** C = A·B with A [M, K] and B [K, N] row-major: sampled rows of A and columns of B (B is read whole). */
export async function checkProduct(a: Tensor, b: Tensor, c: Tensor, M: number, N: number, K: number, tol = CHECK_TOL): Promise<BenchCheck> {
  const meter = new ErrorMeter();
  const bHost = await readAll(b);
  const cols = spread(N, 8);
  for (const m of spread(M, 8)) {
    const aRow = await readRows(a, m);
    const cRow = await readRows(c, m);
    for (const n of cols) {
      const { sum, l2 } = dot(aRow, 0, bHost, n, N, K);
      meter.addSum(cRow[n], sum, l2);
    }
  }
  return meter.result(tol);
}

/** The LoRA benchmark's operands and settings (loraLinear). */
export interface LoraCheckInputs {
  x: Tensor;
  w: Tensor;
  a: Tensor;
  b: Tensor;
  T: number;
  inF: number;
  outF: number;
  r: number;
  alpha: number;
  dropout: number;
  seed: number;
}

/**
 * loraLinear's y = x·Wᵀ + (alpha/r)·h·Bᵀ and h = dropout(x)·Aᵀ at sampled rows, the dropout mask recomputed from
 * the seed (reference/lora.ts). y's entries are normalized by the terms of both products.
 */
export async function checkLora(l: LoraCheckInputs, y: Tensor, h: Tensor): Promise<BenchCheck> {
  const { T, inF, outF, r } = l;
  const meter = new ErrorMeter();
  const [aHost, bHost, hHost] = await Promise.all([l.a, l.b, h].map(readAll));
  const cols = spread(outF, 16);
  const wRows = await Promise.all(cols.map((n) => readRows(l.w, n)));
  const s = l.alpha / r;
  for (const t of spread(T, 4)) {
    const x = await readRows(l.x, t);
    const yRow = await readRows(y, t);
    const xd = Float64Array.from(x, (v, k) => (l.dropout > 0 && !loraKeep(l.seed, t * inF + k, l.dropout) ? 0 : v / (1 - l.dropout)));
    const hRef = new Float64Array(r);
    for (let j = 0; j < r; j++) {
      const { sum, l2 } = dot(xd, 0, aHost, j * inF, 1, inF);
      hRef[j] = sum;
      meter.addSum(hHost[t * r + j], sum, l2);
    }
    cols.forEach((n, i) => {
      const main = dot(x, 0, wRows[i], 0, 1, inF);
      const low = dot(hRef, 0, bHost, n * r, 1, r);
      meter.addSum(yRow[n], main.sum + s * low.sum, Math.hypot(main.l2, s * low.l2));
    });
  }
  return meter.result(CHECK_TOL);
}
