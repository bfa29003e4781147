/**
 * Float64 reference of the fused LM head: z = h·Wᵀ/τ, log-softmax, per-token log p(target), entropy, logsumexp
 * and the mean NLL over targets >= 0; backward gives dh for any linear combination of logprob, entropy and loss.
 * hidden is [T, H] and weight [V, H], row-major.
 */
export interface HeadRefResult {
  logprob: Float64Array;
  entropy: Float64Array;
  lse: Float64Array;
  loss: number;
  count: number;
}

function logits(hidden: ArrayLike<number>, weight: ArrayLike<number>, t: number, H: number, V: number, tau: number): Float64Array {
  const z = new Float64Array(V);
  for (let v = 0; v < V; v++) {
    let s = 0;
    for (let k = 0; k < H; k++) s += hidden[t * H + k] * weight[v * H + k];
    z[v] = s / tau;
  }
  return z;
}

function logSoftmax(z: Float64Array): { logp: Float64Array; lse: number } {
  let m = -Infinity;
  for (const x of z) m = Math.max(m, x);
  let s = 0;
  for (const x of z) s += Math.exp(x - m);
  const lse = m + Math.log(s);
  return { logp: z.map((x) => x - lse), lse };
}

export function headForwardRef(
  hidden: ArrayLike<number>,
  weight: ArrayLike<number>,
  targets: ArrayLike<number>,
  T: number,
  H: number,
  V: number,
  temperature = 1,
): HeadRefResult {
  const logprob = new Float64Array(T);
  const entropy = new Float64Array(T);
  const lse = new Float64Array(T);
  let nll = 0;
  let count = 0;
  for (let t = 0; t < T; t++) {
    const { logp, lse: l } = logSoftmax(logits(hidden, weight, t, H, V, temperature));
    lse[t] = l;
    let ent = 0;
    for (const lp of logp) ent -= Math.exp(lp) * lp;
    entropy[t] = ent;
    const y = targets[t];
    if (y >= 0) {
      logprob[t] = y < V ? logp[y] : NaN;
      nll -= logprob[t];
      count++;
    }
  }
  return { logprob, entropy, lse, loss: count > 0 ? nll / count : 0, count };
}

/** dh of L = Σ_t dLogprob_t·logprob_t + dEntropy_t·entropy_t + dLoss·loss. */
export function headBackwardRef(
  hidden: ArrayLike<number>,
  weight: ArrayLike<number>,
  targets: ArrayLike<number>,
  T: number,
  H: number,
  V: number,
  grads: { dLogprob?: ArrayLike<number>; dEntropy?: ArrayLike<number>; dLoss?: number },
  temperature = 1,
): Float64Array {
  let count = 0;
  for (let t = 0; t < T; t++) if (targets[t] >= 0) count++;
  const dh = new Float64Array(T * H);
  for (let t = 0; t < T; t++) {
    const { logp } = logSoftmax(logits(hidden, weight, t, H, V, temperature));
    const y = targets[t];
    let ent = 0;
    for (const lp of logp) ent -= Math.exp(lp) * lp;
    let g = grads.dLogprob?.[t] ?? 0;
    if (grads.dLoss) g -= grads.dLoss / Math.max(count, 1);
    if (y < 0) g = 0;
    const ge = grads.dEntropy?.[t] ?? 0;
    for (let v = 0; v < V; v++) {
      const p = Math.exp(logp[v]);
      // d logp_y/dz = onehot - p;  d H/dz = -p (log p + H)
      const dz = g * ((v === y ? 1 : 0) - p) - ge * p * (logp[v] + ent);
      if (dz === 0) continue;
      for (let k = 0; k < H; k++) dh[t * H + k] += (dz * weight[v * H + k]) / temperature;
    }
  }
  return dh;
}
