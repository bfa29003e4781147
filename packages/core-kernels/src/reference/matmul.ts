/** Float64 references for matmul: C = alpha·op(A)·op(B) + beta·C + bias, batched, strided. */
export interface MatmulRefProblem {
  batch: number;
  M: number;
  N: number;
  K: number;
  transA?: boolean;
  transB?: boolean;
  lda: number;
  ldb: number;
  ldc: number;
  strideA: number;
  strideB: number;
  strideC: number;
  offsetA?: number;
  offsetB?: number;
  offsetC?: number;
  alpha?: number;
  beta?: number;
  bias?: ArrayLike<number>;
  offsetBias?: number;
}

function indexers(p: MatmulRefProblem) {
  const oA = p.offsetA ?? 0;
  const oB = p.offsetB ?? 0;
  return {
    ia: (z: number, m: number, k: number) => oA + z * p.strideA + (p.transA ? k * p.lda + m : m * p.lda + k),
    ib: (z: number, k: number, n: number) => oB + z * p.strideB + (p.transB ? n * p.ldb + k : k * p.ldb + n),
    ic: (z: number, m: number, n: number) => (p.offsetC ?? 0) + z * p.strideC + m * p.ldc + n,
  };
}

/** Returns a copy of `c` (zeros of length cLength when absent) with the addressed elements computed. */
export function matmulRef(a: ArrayLike<number>, b: ArrayLike<number>, p: MatmulRefProblem, c?: ArrayLike<number>, cLength = 0): Float64Array {
  const out = c ? Float64Array.from(c) : new Float64Array(cLength);
  const { ia, ib, ic } = indexers(p);
  const alpha = p.alpha ?? 1;
  const beta = p.beta ?? 0;
  for (let z = 0; z < p.batch; z++) {
    for (let m = 0; m < p.M; m++) {
      for (let n = 0; n < p.N; n++) {
        let s = 0;
        for (let k = 0; k < p.K; k++) s += a[ia(z, m, k)] * b[ib(z, k, n)];
        const i = ic(z, m, n);
        let v = alpha * s + (beta !== 0 ? beta * out[i] : 0);
        if (p.bias) v += p.bias[(p.offsetBias ?? 0) + n];
        out[i] = v;
      }
    }
  }
  return out;
}

/**
 * Gradients of sum(dC ⊙ C) with respect to A, B (in their storage layouts, lengths aLength/bLength; a broadcast
 * operand with stride 0 accumulates over the batch) and the bias.
 */
export function matmulBackwardRef(
  a: ArrayLike<number>,
  b: ArrayLike<number>,
  dC: ArrayLike<number>,
  p: MatmulRefProblem,
  aLength = a.length,
  bLength = b.length,
): { dA: Float64Array; dB: Float64Array; dBias: Float64Array } {
  const { ia, ib, ic } = indexers(p);
  const alpha = p.alpha ?? 1;
  const dA = new Float64Array(aLength);
  const dB = new Float64Array(bLength);
  const dBias = new Float64Array(p.N);
  for (let z = 0; z < p.batch; z++) {
    for (let m = 0; m < p.M; m++) {
      for (let n = 0; n < p.N; n++) {
        const g = dC[ic(z, m, n)];
        dBias[n] += g;
        for (let k = 0; k < p.K; k++) {
          dA[ia(z, m, k)] += alpha * g * b[ib(z, k, n)];
          dB[ib(z, k, n)] += alpha * g * a[ia(z, m, k)];
        }
      }
    }
  }
  return { dA, dB, dBias };
}

/**
 * Reference of the scaled split's row exponents (sgmRowExponentWgsl): for each batch item z and row m of op(A),
 * the e with max_k |A| · 2^e in [2^target, 2^(target+1)), clamped to [-126, 126] (a subnormal maximum takes 126);
 * 0 for a row of zeros or one holding an inf or NaN. `a` holds f32 values.
 */
export function rowExponentRef(a: ArrayLike<number>, p: Pick<MatmulRefProblem, 'batch' | 'M' | 'K' | 'transA' | 'lda' | 'strideA' | 'offsetA'>, target: number): Int32Array {
  const { ia } = indexers({ ...p, N: 0, ldb: 0, ldc: 0, strideB: 0, strideC: 0 });
  const out = new Int32Array(p.batch * p.M);
  for (let z = 0; z < p.batch; z++) {
    for (let m = 0; m < p.M; m++) {
      let max = 0;
      let special = false;
      for (let k = 0; k < p.K; k++) {
        const x = Math.abs(Math.fround(a[ia(z, m, k)]));
        if (!Number.isFinite(x)) special = true;
        else max = Math.max(max, x);
      }
      if (special || max === 0) continue;
      // f32's exponent field of max: floor(log2(max)) for normal values; subnormals have field 0 (-127 here).
      const e2 = max < 2 ** -126 ? -127 : Math.floor(Math.log2(max));
      // log2 can round up just below a power of two; the exact check fixes it.
      const e = 2 ** e2 > max ? e2 - 1 : e2;
      out[z * p.M + m] = Math.min(126, Math.max(-126, target - e));
    }
  }
  return out;
}
