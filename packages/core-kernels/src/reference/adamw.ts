/**
 * Float64 reference of torch.optim.AdamW (the algorithm in its documentation) with the global gradient-norm
 * clipping of torch.nn.utils.clip_grad_norm_ applied first. Works in place on the arrays it is given.
 */
export interface AdamWRefHyper {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  maxGradNorm?: number;
  skipNonFinite?: boolean;
}

export interface AdamWRefState {
  step: number;
  m: Float64Array[];
  v: Float64Array[];
}

export function gradNormRef(grads: readonly ArrayLike<number>[]): number {
  let s = 0;
  for (const g of grads) for (let i = 0; i < g.length; i++) s += g[i] * g[i];
  return Math.sqrt(s);
}

export function adamwInitRef(params: readonly ArrayLike<number>[]): AdamWRefState {
  return { step: 0, m: params.map((p) => new Float64Array(p.length)), v: params.map((p) => new Float64Array(p.length)) };
}

/**
 * One step. Returns the global grad norm (before clipping) and whether the step was skipped.
 * Docs' algorithm, with t the 1-based step:
 *   θ ← θ − γλθ;  m ← β1 m + (1−β1) g;  v ← β2 v + (1−β2) g²;  m̂ = m/(1−β1^t);  v̂ = v/(1−β2^t);
 *   θ ← θ − γ m̂ / (sqrt(v̂) + ε)
 */
export function adamwStepRef(
  params: Float64Array[],
  grads: readonly ArrayLike<number>[],
  state: AdamWRefState,
  h: AdamWRefHyper,
  decay: readonly boolean[] = params.map(() => true),
): { norm: number; skipped: boolean } {
  const norm = gradNormRef(grads);
  state.step++;
  if (h.skipNonFinite && !Number.isFinite(norm)) return { norm, skipped: true };
  const scale = (h.maxGradNorm ?? 0) > 0 ? Math.min(1, h.maxGradNorm! / (norm + 1e-6)) : 1;
  const t = state.step;
  params.forEach((p, k) => {
    const g = grads[k];
    const [m, v] = [state.m[k], state.v[k]];
    const wd = decay[k] ? h.weightDecay : 0;
    for (let i = 0; i < p.length; i++) {
      const gi = g[i] * scale;
      p[i] -= h.lr * wd * p[i];
      m[i] = h.beta1 * m[i] + (1 - h.beta1) * gi;
      v[i] = h.beta2 * v[i] + (1 - h.beta2) * gi * gi;
      const mHat = m[i] / (1 - h.beta1 ** t);
      const vHat = v[i] / (1 - h.beta2 ** t);
      p[i] -= (h.lr * mHat) / (Math.sqrt(vHat) + h.eps);
    }
  });
  return { norm, skipped: false };
}
