import type { Tensor } from '../runtime/tensor.js';
import type { AttentionDims } from '../reference/attention.js';
import { CHECK_TOL, ErrorMeter, readAll, spread, type BenchCheck } from './check.js';

/**
 * Sampled float64 checks of the attention benchmarks (see check.ts): q [B, T, Hq, D], k and v [B, S, Hkv, D], o
 * like q, lse [B, Hq, T] in nats. Query i attends keys j < kEnd(i): all S, or with `causal` j <= i + S - T (the
 * last T positions of S, as in decoding).
 */
export interface AttentionCheckDims extends AttentionDims {
  causal: boolean;
}

interface Host {
  q: Float32Array;
  k: Float32Array;
  v: Float32Array;
}

const kEnd = (d: AttentionCheckDims, i: number) => (d.causal ? Math.min(d.S, i + d.S - d.T + 1) : d.S);
const qAt = (d: AttentionCheckDims, b: number, i: number, h: number) => ((b * d.T + i) * d.Hq + h) * d.D;
const kAt = (d: AttentionCheckDims, b: number, j: number, g: number) => ((b * d.S + j) * d.Hkv + g) * d.D;
const lseAt = (d: AttentionCheckDims, b: number, i: number, h: number) => (b * d.Hq + h) * d.T + i;

/** Scaled scores of query (b, i, h) against its keys. */
function scores(d: AttentionCheckDims, x: Host, b: number, i: number, h: number): Float64Array {
  const g = Math.floor(h / (d.Hq / d.Hkv));
  const scale = 1 / Math.sqrt(d.D);
  const s = new Float64Array(kEnd(d, i));
  const qo = qAt(d, b, i, h);
  for (let j = 0; j < s.length; j++) {
    const ko = kAt(d, b, j, g);
    let acc = 0;
    for (let e = 0; e < d.D; e++) acc += x.q[qo + e] * x.k[ko + e];
    s[j] = acc * scale;
  }
  return s;
}

/** The rows a check samples: up to 2 sequences, 6 positions, 3 heads. */
function* rows(d: AttentionCheckDims): Generator<[number, number, number]> {
  for (const b of spread(d.B, 2)) for (const i of spread(d.T, 6)) for (const h of spread(d.Hq, 3)) yield [b, i, h];
}

/** Forward (and decode, with no lse): o and lse of sampled query rows. */
export async function checkAttentionForward(d: AttentionCheckDims, q: Tensor, k: Tensor, v: Tensor, o: Tensor, lse?: Tensor): Promise<BenchCheck> {
  const x: Host = { q: await readAll(q), k: await readAll(k), v: await readAll(v) };
  const oh = await readAll(o);
  const lh = lse ? await readAll(lse) : undefined;
  const meter = new ErrorMeter();
  for (const [b, i, h] of rows(d)) {
    const s = scores(d, x, b, i, h);
    const m = Math.max(...s);
    const p = s.map((z) => Math.exp(z - m));
    const l = p.reduce((a, z) => a + z, 0);
    if (lh) meter.add(lh[lseAt(d, b, i, h)], m + Math.log(l));
    const g = Math.floor(h / (d.Hq / d.Hkv));
    for (let e = 0; e < d.D; e++) {
      let sum = 0;
      let sq = 0;
      for (let j = 0; j < s.length; j++) {
        const t = (p[j] / l) * x.v[kAt(d, b, j, g) + e];
        sum += t;
        sq += t * t;
      }
      meter.addSum(oh[qAt(d, b, i, h) + e], sum, Math.sqrt(sq));
    }
  }
  return meter.result(CHECK_TOL);
}

/**
 * Backward: dq of sampled query rows and dk, dv of sampled key rows, from the forward's o and lse as the backward
 * takes them (P = exp(s − lse), Δ_i = dO_i·o_i, dS = P·(dO_i·v_j − Δ_i)).
 */
export async function checkAttentionBackward(
  d: AttentionCheckDims,
  inputs: { q: Tensor; k: Tensor; v: Tensor; o: Tensor; lse: Tensor; dO: Tensor },
  grads: { dq: Tensor; dk: Tensor; dv: Tensor },
): Promise<BenchCheck> {
  const x: Host = { q: await readAll(inputs.q), k: await readAll(inputs.k), v: await readAll(inputs.v) };
  const [o, lse, dO, dq, dk, dv] = await Promise.all([inputs.o, inputs.lse, inputs.dO, grads.dq, grads.dk, grads.dv].map(readAll));
  const scale = 1 / Math.sqrt(d.D);
  const group = d.Hq / d.Hkv;
  const dot = (a: Float32Array, ao: number, b: Float32Array, bo: number) => {
    let acc = 0;
    for (let e = 0; e < d.D; e++) acc += a[ao + e] * b[bo + e];
    return acc;
  };
  // Δ_i = dO_i·o_i of every query row, laid out like lse.
  const deltas = new Float64Array(lse.length);
  for (let b = 0; b < d.B; b++) {
    for (let i = 0; i < d.T; i++) for (let h = 0; h < d.Hq; h++) deltas[lseAt(d, b, i, h)] = dot(dO, qAt(d, b, i, h), o, qAt(d, b, i, h));
  }
  // P_ij and dS_ij of query (b, i, h) against key j.
  const pds = (b: number, i: number, h: number, j: number) => {
    const g = Math.floor(h / group);
    const qo = qAt(d, b, i, h);
    const ko = kAt(d, b, j, g);
    const p = Math.exp(dot(x.q, qo, x.k, ko) * scale - lse[lseAt(d, b, i, h)]);
    const dp = dot(dO, qo, x.v, ko);
    const delta = deltas[lseAt(d, b, i, h)];
    // dS cancels (dP − Δ): its error scales with P·(|dP| + |Δ|), which the norms below use in place of |dS|.
    return { p, ds: p * (dp - delta), mag: p * (Math.abs(dp) + Math.abs(delta)) };
  };
  const meter = new ErrorMeter();
  const D = d.D;
  for (const [b, i, h] of rows(d)) {
    const g = Math.floor(h / group);
    const keys = Array.from({ length: kEnd(d, i) }, (_, j) => pds(b, i, h, j));
    for (let e = 0; e < D; e++) {
      let sum = 0;
      let sq = 0;
      keys.forEach(({ ds, mag }, j) => {
        const kv = scale * x.k[kAt(d, b, j, g) + e];
        sum += ds * kv;
        sq += (mag * kv) ** 2;
      });
      meter.addSum(dq[qAt(d, b, i, h) + e], sum, Math.sqrt(sq));
    }
  }
  for (const b of spread(d.B, 2)) {
    for (const j of spread(d.S, 6)) {
      for (const g of spread(d.Hkv, 2)) {
        const kSum = new Float64Array(D);
        const kSq = new Float64Array(D);
        const vSum = new Float64Array(D);
        const vSq = new Float64Array(D);
        for (let h = g * group; h < (g + 1) * group; h++) {
          for (let i = 0; i < d.T; i++) {
            if (j >= kEnd(d, i)) continue;
            const { p, ds, mag } = pds(b, i, h, j);
            const qo = qAt(d, b, i, h);
            for (let e = 0; e < D; e++) {
              const tv = p * dO[qo + e];
              const qv = scale * x.q[qo + e];
              vSum[e] += tv;
              vSq[e] += tv * tv;
              kSum[e] += ds * qv;
              kSq[e] += (mag * qv) ** 2;
            }
          }
        }
        const ko = kAt(d, b, j, g);
        for (let e = 0; e < D; e++) {
          meter.addSum(dv[ko + e], vSum[e], Math.sqrt(vSq[e]));
          meter.addSum(dk[ko + e], kSum[e], Math.sqrt(kSq[e]));
        }
      }
    }
  }
  return meter.result(CHECK_TOL);
}
