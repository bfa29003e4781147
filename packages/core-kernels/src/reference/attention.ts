/**
 * Float64 CPU reference for causal grouped-query attention, its backward, and KV-cache decode.
 * Layouts match src/kernels/attention.ts: q [B, T, Hq, D], k/v [B, S, Hkv, D], o [B, T, Hq, D], lse [B, Hq, T].
 * Query i has absolute position i + (S - T); it is a padded row (zero output, zero gradient) when that position
 * is >= lengths[b]. Keys j >= lengths[b] are masked out; causal rows see keys j <= i + (S - T).
 */
export interface AttentionDims {
  B: number;
  T: number;
  S: number;
  Hq: number;
  Hkv: number;
  D: number;
}

export interface AttentionRefOptions {
  causal?: boolean;
  scale?: number;
  /** Valid length of each sequence (right padding); defaults to S for all. */
  lengths?: ArrayLike<number>;
}

interface RowSpec {
  qOff: number;
  kBase: (j: number) => number;
  /** Keys [0, kEnd) are attended. */
  kEnd: number;
}

/** Keys row (b, i, h) attends: [0, kEnd), or none (kEnd = 0) for a padded row. */
function rowKeys(dims: AttentionDims, opts: AttentionRefOptions, b: number, i: number): number {
  const { T, S } = dims;
  const len = Math.min(S, Math.max(0, opts.lengths?.[b] ?? S));
  const pos = i + S - T;
  if (pos >= len || pos < 0) return 0;
  return (opts.causal ?? true) ? Math.min(len, pos + 1) : len;
}

function rows(dims: AttentionDims, opts: AttentionRefOptions, fn: (b: number, i: number, h: number, r: RowSpec) => void): void {
  const { B, T, S, Hq, Hkv, D } = dims;
  const group = Hq / Hkv;
  for (let b = 0; b < B; b++) {
    for (let i = 0; i < T; i++) {
      const kEnd = rowKeys(dims, opts, b, i);
      for (let h = 0; h < Hq; h++) {
        const g = Math.floor(h / group);
        fn(b, i, h, { qOff: ((b * T + i) * Hq + h) * D, kBase: (j) => ((b * S + j) * Hkv + g) * D, kEnd });
      }
    }
  }
}

function probs(q: ArrayLike<number>, k: ArrayLike<number>, D: number, scale: number, r: RowSpec): { p: Float64Array; lse: number } {
  const s = new Float64Array(r.kEnd);
  let m = -Infinity;
  for (let j = 0; j < r.kEnd; j++) {
    let acc = 0;
    const kb = r.kBase(j);
    for (let d = 0; d < D; d++) acc += q[r.qOff + d] * k[kb + d];
    s[j] = acc * scale;
    m = Math.max(m, s[j]);
  }
  let sum = 0;
  for (let j = 0; j < r.kEnd; j++) sum += Math.exp(s[j] - m);
  const lse = m + Math.log(sum);
  for (let j = 0; j < r.kEnd; j++) s[j] = Math.exp(s[j] - lse);
  return { p: s, lse };
}

export function attentionRef(
  q: ArrayLike<number>,
  k: ArrayLike<number>,
  v: ArrayLike<number>,
  dims: AttentionDims,
  opts: AttentionRefOptions = {},
): { o: Float64Array; lse: Float64Array } {
  const { B, T, Hq, D } = dims;
  const scale = opts.scale ?? 1 / Math.sqrt(D);
  const o = new Float64Array(B * T * Hq * D);
  const lse = new Float64Array(B * Hq * T);
  rows(dims, opts, (b, i, h, r) => {
    if (r.kEnd === 0) return;
    const { p, lse: l } = probs(q, k, D, scale, r);
    lse[(b * Hq + h) * T + i] = l;
    for (let j = 0; j < r.kEnd; j++) {
      const vb = r.kBase(j);
      for (let d = 0; d < D; d++) o[r.qOff + d] += p[j] * v[vb + d];
    }
  });
  return { o, lse };
}

/** Gradients of sum(dO * attention(q, k, v)); dk/dv sum over the query heads sharing each KV head. */
export function attentionBackwardRef(
  q: ArrayLike<number>,
  k: ArrayLike<number>,
  v: ArrayLike<number>,
  dO: ArrayLike<number>,
  dims: AttentionDims,
  opts: AttentionRefOptions = {},
): { dq: Float64Array; dk: Float64Array; dv: Float64Array } {
  const { D } = dims;
  const scale = opts.scale ?? 1 / Math.sqrt(D);
  const dq = new Float64Array(q.length);
  const dk = new Float64Array(k.length);
  const dv = new Float64Array(v.length);
  rows(dims, opts, (_b, _i, _h, r) => {
    if (r.kEnd === 0) return;
    const { p } = probs(q, k, D, scale, r);
    // dP_j = dO . v_j ; dS_j = P_j (dP_j - sum_l P_l dP_l)
    const dp = new Float64Array(r.kEnd);
    let rowDot = 0;
    for (let j = 0; j < r.kEnd; j++) {
      const vb = r.kBase(j);
      let acc = 0;
      for (let d = 0; d < D; d++) acc += dO[r.qOff + d] * v[vb + d];
      dp[j] = acc;
      rowDot += p[j] * acc;
    }
    for (let j = 0; j < r.kEnd; j++) {
      const kb = r.kBase(j);
      const ds = p[j] * (dp[j] - rowDot) * scale;
      for (let d = 0; d < D; d++) {
        dq[r.qOff + d] += ds * k[kb + d];
        dk[kb + d] += ds * q[r.qOff + d];
        dv[kb + d] += p[j] * dO[r.qOff + d];
      }
    }
  });
  return { dq, dk, dv };
}

/**
 * Decode against a KV cache: q [B, T, Hq, D] are the last T positions of each sequence, whose cache
 * kCache/vCache [B, Smax, Hkv, D] holds lengths[b] valid rows (the new ones included). Query t sits at
 * position lengths[b] - T + t and attends keys j <= that position.
 */
export function attentionDecodeRef(
  q: ArrayLike<number>,
  kCache: ArrayLike<number>,
  vCache: ArrayLike<number>,
  dims: { B: number; T: number; Smax: number; Hq: number; Hkv: number; D: number },
  lengths: ArrayLike<number>,
  scale = 1 / Math.sqrt(dims.D),
): Float64Array {
  const { B, T, Smax, Hq, Hkv, D } = dims;
  const o = new Float64Array(B * T * Hq * D);
  const group = Hq / Hkv;
  for (let b = 0; b < B; b++) {
    const len = Math.min(Smax, Math.max(0, lengths[b]));
    for (let t = 0; t < T; t++) {
      const pos = len - T + t;
      if (pos < 0) continue;
      for (let h = 0; h < Hq; h++) {
        const g = Math.floor(h / group);
        const r: RowSpec = { qOff: ((b * T + t) * Hq + h) * D, kBase: (j) => ((b * Smax + j) * Hkv + g) * D, kEnd: pos + 1 };
        const { p } = probs(q, kCache, D, scale, r);
        for (let j = 0; j < r.kEnd; j++) {
          const vb = r.kBase(j);
          for (let d = 0; d < D; d++) o[r.qOff + d] += p[j] * vCache[vb + d];
        }
      }
    }
  }
  return o;
}

/** Host version of the cache append: cache[b, positions[b] + t] = x[b, t] where it fits. */
export function attentionCacheAppendRef(
  cache: Float64Array | Float32Array,
  x: ArrayLike<number>,
  dims: { B: number; T: number; Smax: number; Hkv: number; D: number },
  positions: ArrayLike<number>,
): void {
  const { B, T, Smax, Hkv, D } = dims;
  const row = Hkv * D;
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      const pos = positions[b] + t;
      if (pos < 0 || pos >= Smax) continue;
      for (let e = 0; e < row; e++) cache[(b * Smax + pos) * row + e] = x[(b * T + t) * row + e];
    }
  }
}
