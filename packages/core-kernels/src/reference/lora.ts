import { loraDropThreshold } from '../kernels/lora.js';

/** CPU twin of the in-kernel PCG hash. */
export function pcgHash(v: number): number {
  const s = (Math.imul(v >>> 0, 747796405) + 2891336453) >>> 0;
  const w = Math.imul(((s >>> ((s >>> 28) + 4)) ^ s) >>> 0, 277803737) >>> 0;
  return ((w >>> 22) ^ w) >>> 0;
}

/** CPU twin of the GPU dropout mask: whether flat element i survives dropout p with this seed. */
export function loraKeep(seed: number, i: number, p: number): boolean {
  return pcgHash((i ^ pcgHash(seed >>> 0)) >>> 0) >= loraDropThreshold(p);
}

export interface LoraRefDims {
  T: number;
  inF: number;
  outF: number;
  r: number;
  alpha: number;
  dropout?: number;
  seed?: number;
}

function dropped(x: ArrayLike<number>, d: LoraRefDims): Float64Array {
  const p = d.dropout ?? 0;
  const xd = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) xd[i] = p > 0 ? (loraKeep(d.seed ?? 0, i, p) ? x[i] / (1 - p) : 0) : x[i];
  return xd;
}

/** Float64 forward: y [T, out] and h = dropout(x)·Aᵀ [T, r]. */
export function loraRef(
  x: ArrayLike<number>,
  W: ArrayLike<number>,
  bias: ArrayLike<number> | undefined,
  A: ArrayLike<number>,
  B: ArrayLike<number>,
  d: LoraRefDims,
): { y: Float64Array; h: Float64Array } {
  const { T, inF, outF, r } = d;
  const xd = dropped(x, d);
  const h = new Float64Array(T * r);
  const y = new Float64Array(T * outF);
  for (let t = 0; t < T; t++) {
    for (let j = 0; j < r; j++) {
      let acc = 0;
      for (let i = 0; i < inF; i++) acc += xd[t * inF + i] * A[j * inF + i];
      h[t * r + j] = acc;
    }
    for (let o = 0; o < outF; o++) {
      let acc = bias ? bias[o] : 0;
      for (let i = 0; i < inF; i++) acc += x[t * inF + i] * W[o * inF + i];
      let low = 0;
      for (let j = 0; j < r; j++) low += h[t * r + j] * B[o * r + j];
      y[t * outF + o] = acc + (d.alpha / r) * low;
    }
  }
  return { y, h };
}

/** Float64 backward for upstream dy [T, out]: dx [T, in], dA [r, in], dB [out, r]. */
export function loraBackwardRef(
  x: ArrayLike<number>,
  W: ArrayLike<number>,
  A: ArrayLike<number>,
  B: ArrayLike<number>,
  dy: ArrayLike<number>,
  d: LoraRefDims,
): { dx: Float64Array; dA: Float64Array; dB: Float64Array } {
  const { T, inF, outF, r } = d;
  const s = d.alpha / r;
  const p = d.dropout ?? 0;
  const xd = dropped(x, d);
  const { h } = loraRef(x, W, undefined, A, B, d);
  const dx = new Float64Array(T * inF);
  const dA = new Float64Array(r * inF);
  const dB = new Float64Array(outF * r);
  for (let t = 0; t < T; t++) {
    const dh = new Float64Array(r);
    for (let o = 0; o < outF; o++) {
      const g = dy[t * outF + o];
      for (let i = 0; i < inF; i++) dx[t * inF + i] += g * W[o * inF + i];
      for (let j = 0; j < r; j++) {
        dB[o * r + j] += s * g * h[t * r + j];
        dh[j] += s * g * B[o * r + j];
      }
    }
    for (let j = 0; j < r; j++) {
      for (let i = 0; i < inF; i++) {
        const idx = t * inF + i;
        dA[j * inF + i] += dh[j] * xd[idx];
        const keep = p > 0 ? (loraKeep(d.seed ?? 0, idx, p) ? 1 / (1 - p) : 0) : 1;
        dx[idx] += dh[j] * A[j * inF + i] * keep;
      }
    }
  }
  return { dx, dA, dB };
}
