import type { Tensor } from '../runtime/tensor.js';
import { CHECK_TOL, ErrorMeter, readAll, readRows, spread, type BenchCheck } from './check.js';

/**
 * Sampled float64 checks of the LM-head benchmarks (see check.ts), temperature 1: hidden h [T, H] f32, weight W
 * [V, H], targets y [T]. W is read in chunks of rows, so a 1 GB weight never sits on the host whole.
 */
interface HeadInputs {
  h: Tensor;
  w: Tensor;
  y: Tensor;
  T: number;
  H: number;
  V: number;
}

/** Rows of W per host chunk: about 4M values. */
const chunkRows = (H: number) => Math.max(1, Math.floor((1 << 22) / H));

/** Calls `fn(v, W, offset of row v)` for every row of W, chunk by chunk. */
async function eachRow(x: HeadInputs, fn: (v: number, w: Float32Array, at: number) => void): Promise<void> {
  const rows = chunkRows(x.H);
  for (let v0 = 0; v0 < x.V; v0 += rows) {
    const n = Math.min(rows, x.V - v0);
    const w = await readRows(x.w, v0, n);
    for (let r = 0; r < n; r++) fn(v0 + r, w, r * x.H);
  }
}

/** Tokens a check samples: 2 where a token's logits cost over 1e8 multiply-adds, else 4. */
const tokensOf = (x: HeadInputs) => spread(x.T, x.V * x.H > 1e8 ? 2 : 4);

interface TokenStats {
  t: number;
  z: Float64Array;
  lse: number;
  logprob: number;
  entropy: number;
}

async function tokenStats(x: HeadInputs, hidden: Float32Array, targets: Int32Array): Promise<TokenStats[]> {
  const tokens = tokensOf(x);
  const zs = tokens.map(() => new Float64Array(x.V));
  await eachRow(x, (v, w, at) => {
    tokens.forEach((t, i) => {
      let acc = 0;
      for (let k = 0; k < x.H; k++) acc += hidden[t * x.H + k] * w[at + k];
      zs[i][v] = acc;
    });
  });
  return tokens.map((t, i) => {
    const z = zs[i];
    let m = -Infinity;
    for (const s of z) m = Math.max(m, s);
    let sum = 0;
    for (const s of z) sum += Math.exp(s - m);
    const lse = m + Math.log(sum);
    let entropy = 0;
    for (const s of z) entropy -= Math.exp(s - lse) * (s - lse);
    return { t, z, lse, logprob: z[targets[t]] - lse, entropy };
  });
}

/** logprob, entropy and lse of sampled tokens, absolutely (nats). */
export async function checkHeadForward(x: HeadInputs, out: { logprob: Tensor; entropy: Tensor; lse: Tensor }): Promise<BenchCheck> {
  const stats = await tokenStats(x, await readAll(x.h), (await x.y.read()) as Int32Array);
  const [logprob, entropy, lse] = await Promise.all([out.logprob, out.entropy, out.lse].map(readAll));
  const meter = new ErrorMeter();
  for (const s of stats) {
    meter.add(logprob[s.t], s.logprob);
    meter.add(entropy[s.t], s.entropy);
    meter.add(lse[s.t], s.lse);
  }
  return meter.result(CHECK_TOL);
}

/** dh of Σ_t a_t·logprob_t + b_t·entropy_t for sampled tokens: dz_v = a(onehot − p_v) − b·p_v(log p_v + entropy). */
export async function checkHeadBackward(x: HeadInputs, a: Tensor, b: Tensor, dh: Tensor): Promise<BenchCheck> {
  const hidden = await readAll(x.h);
  const targets = (await x.y.read()) as Int32Array;
  const stats = await tokenStats(x, hidden, targets);
  const [ah, bh, got] = await Promise.all([a, b, dh].map(readAll));
  const sums = stats.map(() => new Float64Array(x.H));
  const sqs = stats.map(() => new Float64Array(x.H));
  await eachRow(x, (v, w, at) => {
    stats.forEach((s, i) => {
      const lp = s.z[v] - s.lse;
      const p = Math.exp(lp);
      const dz = ah[s.t] * ((v === targets[s.t] ? 1 : 0) - p) - bh[s.t] * p * (lp + s.entropy);
      for (let k = 0; k < x.H; k++) {
        const term = dz * w[at + k];
        sums[i][k] += term;
        sqs[i][k] += term * term;
      }
    });
  });
  const meter = new ErrorMeter();
  stats.forEach((s, i) => {
    for (let k = 0; k < x.H; k++) meter.addSum(got[s.t * x.H + k], sums[i][k], Math.sqrt(sqs[i][k]));
  });
  return meter.result(CHECK_TOL);
}
