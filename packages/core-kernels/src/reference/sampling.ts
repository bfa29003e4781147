/**
 * Float64 reference of temperature / top-k / top-p sampling for one row, by sorting (Hugging Face's warpers):
 * top-k keeps logits >= the k-th largest (ties kept); top-p then keeps the largest tokens until their mass
 * reaches topP of the remaining mass (ties at the boundary kept). The draw is an inverse CDF in index order.
 */
export interface SampleRefOptions {
  temperature: number;
  topK?: number;
  topP?: number;
  greedy?: boolean;
}

export interface SampleRefRow {
  /** The distribution sampled from (zeros outside the kept set); a point mass for greedy. */
  probs: Float64Array;
  /** softmax(logits / T), T = 1 for greedy. */
  tempProbs: Float64Array;
  greedy: boolean;
}

export function sampleDistRef(logits: ArrayLike<number>, o: SampleRefOptions): SampleRefRow {
  const V = logits.length;
  const greedy = !!o.greedy || !(o.temperature > 0);
  const T = greedy ? 1 : o.temperature;
  const z = Float64Array.from(logits, (l) => l / T);
  let mx = -Infinity;
  let amax = 0;
  for (let i = 0; i < V; i++) if (z[i] > mx) [mx, amax] = [z[i], i];
  const w = z.map((zi) => Math.exp(zi - mx));
  const total = w.reduce((a, b) => a + b, 0);
  const tempProbs = w.map((wi) => wi / total);
  if (greedy) {
    const probs = new Float64Array(V);
    probs[amax] = 1;
    return { probs, tempProbs, greedy };
  }
  const order = Array.from({ length: V }, (_, i) => i).sort((a, b) => z[b] - z[a] || a - b);
  let tau = -Infinity;
  const k = o.topK ?? 0;
  if (k > 0 && k < V) tau = z[order[k - 1]];
  const p = o.topP ?? 1;
  if (p < 1) {
    let kept = 0;
    for (const i of order) if (z[i] >= tau) kept += w[i];
    let cum = 0;
    for (const i of order) {
      if (z[i] < tau) break;
      cum += w[i];
      if (cum >= p * kept) {
        tau = z[i];
        break;
      }
    }
  }
  const probs = w.map((wi, i) => (z[i] >= tau ? wi : 0));
  const kept = probs.reduce((a, b) => a + b, 0);
  for (let i = 0; i < V; i++) probs[i] /= kept;
  return { probs, tempProbs, greedy };
}

/** Inverse CDF in index order: the first token whose cumulative probability exceeds u. */
export function sampleRef(probs: ArrayLike<number>, u: number): number {
  let acc = 0;
  let last = 0;
  for (let i = 0; i < probs.length; i++) {
    if (probs[i] > 0) last = i;
    acc += probs[i];
    if (acc > u && probs[i] > 0) return i;
  }
  return last;
}
