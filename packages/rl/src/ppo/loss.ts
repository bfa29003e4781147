/**
 * The PPO loss of one minibatch, CleanRL-style: every term is written out, and next to the scalar loss we return
 * its derivative with respect to each per-token input the policy computes (log-probability, entropy) and each
 * per-sample value. The policy's training API takes those coefficients and backpropagates them through the model,
 * so these functions never see a parameter.
 *
 * Layout: the response tokens of all samples are concatenated; sample i owns `lengths[i]` consecutive tokens.
 * Advantages, values and returns are per sample (step-wise PPO scores one action per state, and the critic
 * predicts V(s) once per state), and are broadcast to the sample's tokens.
 *
 * Derivatives at the kinks of max/min/clip follow the branch that the forward pass took, as autograd does.
 */

export type KlEstimator = 'k1' | 'k3';
/** 'token-mean': every response token of the batch weighs the same (verl's default). 'seq-mean-token-mean':
 * average over each sample's tokens, then over samples (each sample weighs the same whatever its length). */
export type LossAggregation = 'token-mean' | 'seq-mean-token-mean';

export interface PpoLossConfig {
  /** ε of the clipped surrogate: the ratio is clipped to [1 − ε, 1 + ε]. */
  clipRatio: number;
  /** Dual-clip constant c (> 1) for negative advantages, or null for none: the loss is at most −A·c. */
  dualClip: number | null;
  /** Value clipping: the new value may move at most this far from the old one, or null for none. */
  valueClip: number | null;
  /** Weight of the value loss in the total; 0 for critic-free advantages (GRPO, RLOO). */
  valueCoef: number;
  /** Weight of the KL-to-reference loss term; 0 when KL is in the reward instead, or off. */
  klCoef: number;
  klEstimator: KlEstimator;
  /** Weight of the entropy bonus (subtracted from the loss). */
  entropyCoef: number;
  lossAggregation: LossAggregation;
}

export const DEFAULT_PPO_LOSS: PpoLossConfig = {
  clipRatio: 0.2,
  dualClip: 3,
  valueClip: 0.5,
  valueCoef: 0.5,
  klCoef: 0.001,
  klEstimator: 'k3',
  entropyCoef: 0,
  lossAggregation: 'token-mean',
};

export interface PpoBatch {
  /** Response tokens per sample; the per-token arrays are these concatenated. */
  lengths: ArrayLike<number>;
  /** log π_θ(token) under the policy being trained, per token. */
  logp: ArrayLike<number>;
  /** log π_old(token) recorded at generation time, per token. */
  oldLogp: ArrayLike<number>;
  /** log π_ref(token) under the reference policy (LoRA off); needed when klCoef > 0. */
  refLogp?: ArrayLike<number>;
  /** Entropy of the policy's next-token distribution, per token; needed when entropyCoef ≠ 0. */
  entropy?: ArrayLike<number>;
  /**
   * Per token, a weight on the policy term: the truncated importance ratio π_old / π_sampler where the responses
   * were sampled under other numerics than π_old's (truncated importance sampling). Default 1.
   */
  samplerWeights?: ArrayLike<number>;
  /** Per sample (already normalized if the run normalizes). */
  advantages: ArrayLike<number>;
  /** Per sample V_θ(s) from the critic being trained; needed when valueCoef > 0. */
  values?: ArrayLike<number>;
  /** Per sample V_old(s) from collection time, the centre of value clipping. */
  oldValues?: ArrayLike<number>;
  /** Per sample regression targets of the critic. */
  returns?: ArrayLike<number>;
  /**
   * When this batch is one micro-batch of a minibatch: the minibatch's response tokens and samples. Losses and
   * derivatives are then normalized by those, so the micro-batches' add up to the minibatch's (gradient
   * accumulation). Default: this batch's own.
   */
  totals?: MinibatchTotals;
}

export interface MinibatchTotals {
  tokens: number;
  /** Samples with at least one response token. */
  samples: number;
}

export interface PpoStats {
  /** Fraction of tokens whose ratio was clipped (the clipped branch was the larger loss). */
  clipFrac: number;
  /** Fraction of negative-advantage tokens held by the dual clip. */
  dualClipFrac: number;
  /** KL(π_old ‖ π_θ) estimated by k3, mean over tokens: how far this update has moved. */
  approxKl: number;
  /** Mean entropy over tokens (0 when not given). */
  entropy: number;
  /** Mean KL-to-reference estimate over tokens (0 when refLogp is not given). */
  refKl: number;
  /** Fraction of samples whose value was clipped. */
  valueClipFrac: number;
  /** 1 − Var(returns − values) / Var(returns); NaN when returns are constant or there is no critic. */
  explainedVariance: number;
  meanRatio: number;
  tokens: number;
}

export interface PpoLossResult {
  /** policyLoss + klCoef·klLoss − entropyCoef·entropyLoss + valueCoef·valueLoss. */
  loss: number;
  policyLoss: number;
  valueLoss: number;
  klLoss: number;
  entropyLoss: number;
  /** d loss / d logp, per token. */
  dLogp: Float64Array;
  /** d loss / d entropy, per token (all zeros when entropyCoef is 0). */
  dEntropy: Float64Array;
  /** d loss / d value, per sample (null when valueCoef is 0; 0 for a sample without response tokens). */
  dValue: Float64Array | null;
  stats: PpoStats;
}

/** The k1 (log-ratio) and k3 (Schulman's unbiased, non-negative) estimators of KL(π_θ ‖ π_ref) at one token,
 * with their derivative with respect to logp. */
export function klToReference(logp: number, refLogp: number, estimator: KlEstimator): { kl: number; dKl: number } {
  if (estimator === 'k1') return { kl: logp - refLogp, dKl: 1 };
  // Anything but 'k1' used to fall through to k3, so a typo ('k2', 'K1') silently changed the estimator.
  if (estimator !== 'k3') throw new TypeError(`klToReference: estimator must be 'k1' or 'k3', got ${JSON.stringify(estimator)}`);
  // k3 = e^x − x − 1 with x = refLogp − logp; dk3/dlogp = −(e^x − 1).
  const x = refLogp - logp;
  const ex = Math.exp(x);
  return { kl: ex - x - 1, dKl: 1 - ex };
}

/** Response tokens and non-empty samples of a batch. */
export function minibatchTotals(lengths: ArrayLike<number>): MinibatchTotals {
  let tokens = 0;
  let samples = 0;
  for (let i = 0; i < lengths.length; i++) {
    tokens += lengths[i];
    if (lengths[i] > 0) samples++;
  }
  return { tokens, samples };
}

/**
 * Per-token weights w_t with loss = Σ_t w_t · loss_t for the chosen aggregation, over the minibatch of `totals`
 * (default: this batch).
 */
export function tokenWeights(lengths: ArrayLike<number>, aggregation: LossAggregation, totals?: MinibatchTotals): Float64Array {
  const own = minibatchTotals(lengths);
  const w = new Float64Array(own.tokens);
  if (own.tokens === 0) return w;
  const { tokens: total, samples: nonEmpty } = totals ?? own;
  let t = 0;
  for (let i = 0; i < lengths.length; i++) {
    const weight = aggregation === 'token-mean' ? 1 / total : 1 / (nonEmpty * lengths[i]);
    for (let k = 0; k < lengths[i]; k++) w[t++] = weight;
  }
  return w;
}

export function ppoLoss(batch: PpoBatch, config: PpoLossConfig = DEFAULT_PPO_LOSS): PpoLossResult {
  const { clipRatio: eps, dualClip, valueClip, valueCoef, klCoef, klEstimator, entropyCoef } = config;
  checkBatch(batch, config);
  const { lengths, logp, oldLogp, refLogp, entropy, advantages } = batch;
  const nTokens = logp.length;
  const w = tokenWeights(lengths, config.lossAggregation, batch.totals);

  const dLogp = new Float64Array(nTokens);
  const dEntropy = new Float64Array(nTokens);
  let policyLoss = 0;
  let klLoss = 0;
  let entropyLoss = 0;
  let clipped = 0;
  let dualClipped = 0;
  let negativeTokens = 0;
  let approxKl = 0;
  let sumRatio = 0;
  let sumEntropy = 0;
  let sumRefKl = 0;

  let t = 0;
  for (let i = 0; i < lengths.length; i++) {
    const A = advantages[i];
    for (let k = 0; k < lengths[i]; k++, t++) {
      // Clipped surrogate: the larger (more pessimistic) of the unclipped and clipped losses.
      const logRatio = logp[t] - oldLogp[t];
      const ratio = Math.exp(logRatio);
      const clippedRatio = Math.min(Math.max(ratio, 1 - eps), 1 + eps);
      const unclippedLoss = -A * ratio;
      const clippedLoss = -A * clippedRatio;
      let tokenLoss: number;
      let dTokenLoss: number; // d tokenLoss / d logp, using d ratio / d logp = ratio
      if (clippedLoss > unclippedLoss) {
        clipped++;
        tokenLoss = clippedLoss;
        dTokenLoss = clippedRatio === ratio ? -A * ratio : 0;
      } else {
        tokenLoss = unclippedLoss;
        dTokenLoss = -A * ratio;
      }
      // Dual clip: with A < 0 a huge ratio would make the loss unbounded; cap it at −A·c (gradient 0 there).
      if (dualClip !== null && A < 0) {
        negativeTokens++;
        const cap = -A * dualClip;
        if (cap < tokenLoss) {
          dualClipped++;
          tokenLoss = cap;
          dTokenLoss = 0;
        }
      }
      // The sampler's correction weighs the surrogate's value and gradient alike (it is a constant, detached).
      const is = batch.samplerWeights ? batch.samplerWeights[t] : 1;
      policyLoss += w[t] * is * tokenLoss;
      dLogp[t] = w[t] * is * dTokenLoss;

      if (refLogp) {
        const { kl, dKl } = klToReference(logp[t], refLogp[t], klEstimator);
        sumRefKl += kl;
        if (klCoef !== 0) {
          klLoss += w[t] * kl;
          dLogp[t] += klCoef * w[t] * dKl;
        }
      }
      if (entropy) {
        sumEntropy += entropy[t];
        entropyLoss += w[t] * entropy[t];
        dEntropy[t] = -entropyCoef * w[t];
      }
      approxKl += ratio - 1 - logRatio;
      sumRatio += ratio;
    }
  }

  const value = valueCoef > 0 ? responseValueLoss(batch, valueClip) : null;
  // The entropy term only when it is weighted: 0 · NaN is NaN, so an unused NaN entropy used to poison the loss.
  const loss = policyLoss + klCoef * klLoss - (entropyCoef !== 0 ? entropyCoef * entropyLoss : 0) + valueCoef * (value?.loss ?? 0);
  const dValue = value ? value.dValue.map((d) => valueCoef * d) : null;
  const perToken = (x: number) => (nTokens > 0 ? x / nTokens : 0);
  return {
    loss,
    policyLoss,
    valueLoss: value?.loss ?? 0,
    klLoss,
    entropyLoss,
    dLogp,
    dEntropy,
    dValue,
    stats: {
      clipFrac: perToken(clipped),
      dualClipFrac: negativeTokens > 0 ? dualClipped / negativeTokens : 0,
      approxKl: perToken(approxKl),
      entropy: perToken(sumEntropy),
      refKl: perToken(sumRefKl),
      valueClipFrac: value?.clipFrac ?? 0,
      explainedVariance: batch.values && batch.returns ? explainedVariance(batch.values, batch.returns) : NaN,
      meanRatio: perToken(sumRatio),
      tokens: nTokens,
    },
  };
}

/**
 * The value loss over the samples with response tokens, the samples `totals` counts (as verl's token-level value
 * loss has no term for an empty response). Over every sample, an empty one made micro-batches normalized by their
 * minibatch's totals disagree with the minibatch (or throw). Empty samples get dValue 0.
 */
function responseValueLoss(batch: PpoBatch, valueClip: number | null): { loss: number; dValue: Float64Array; clipFrac: number } {
  const { lengths } = batch;
  const kept: number[] = [];
  for (let i = 0; i < lengths.length; i++) if (lengths[i] > 0) kept.push(i);
  const pick = (arr?: ArrayLike<number>) => (arr ? kept.map((i) => arr[i]) : undefined);
  const r = valueLoss({ values: pick(batch.values), oldValues: pick(batch.oldValues), returns: pick(batch.returns) }, valueClip, batch.totals?.samples);
  const dValue = new Float64Array(lengths.length);
  kept.forEach((i, k) => (dValue[i] = r.dValue[k]));
  return { loss: r.loss, dValue, clipFrac: r.clipFrac };
}

/**
 * Clipped value loss, mean over samples: ½·max((v − R)², (v_clip − R)²) with v_clip = v_old + clip(v − v_old, ±c).
 * Returns d loss / d v per sample. `samples`: the minibatch's, when this is one of its micro-batches.
 */
export function valueLoss(
  batch: Pick<PpoBatch, 'values' | 'oldValues' | 'returns'>,
  valueClip: number | null,
  samples?: number,
): { loss: number; dValue: Float64Array; clipFrac: number } {
  const { values, oldValues, returns } = batch;
  if (!values || !returns) throw new Error('valueLoss: values and returns are required');
  if (valueClip !== null && !oldValues) throw new Error('valueLoss: oldValues are required for value clipping');
  // A valueClip <= 0 or NaN clipped every value to a constant (zero gradient), shorter returns/oldValues read
  // undefined, and a NaN value made the loss NaN: all silently.
  if (valueClip !== null && !(valueClip > 0)) throw new RangeError(`valueLoss: valueClip must be > 0 or null, got ${valueClip}`);
  const arrays: [string, ArrayLike<number> | undefined][] = [['values', values], ['returns', returns], ['oldValues', valueClip !== null ? oldValues : undefined]];
  for (const [name, arr] of arrays) {
    if (!arr) continue;
    if (arr.length !== values.length) throw new RangeError(`valueLoss: ${name} has ${arr.length} entries for ${values.length} values`);
    for (let i = 0; i < arr.length; i++) if (!Number.isFinite(arr[i])) throw new RangeError(`valueLoss: ${name}[${i}] = ${arr[i]} is not finite`);
  }
  if (samples !== undefined && !(Number.isInteger(samples) && samples >= values.length)) {
    throw new Error(`valueLoss: the minibatch's samples (${samples}) must be an integer of at least this batch's ${values.length}`);
  }
  // The mean is over the minibatch's samples; this batch holds values.length of them.
  const n = samples ?? values.length;
  const dValue = new Float64Array(values.length);
  let loss = 0;
  let clipped = 0;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    const R = returns[i];
    const unclippedLoss = (v - R) ** 2;
    let sampleLoss = unclippedLoss;
    let dSample = v - R; // d ½(v − R)² / dv
    if (valueClip !== null) {
      const vOld = oldValues![i];
      const delta = v - vOld;
      const vClipped = vOld + Math.min(Math.max(delta, -valueClip), valueClip);
      const clippedLoss = (vClipped - R) ** 2;
      if (clippedLoss > unclippedLoss) {
        clipped++;
        sampleLoss = clippedLoss;
        dSample = Math.abs(delta) < valueClip ? vClipped - R : 0;
      }
    }
    loss += (0.5 * sampleLoss) / n;
    dValue[i] = dSample / n;
  }
  return { loss, dValue, clipFrac: values.length > 0 ? clipped / values.length : 0 };
}

/** 1 − Var(R − V) / Var(R): 1 is a perfect critic, 0 no better than a constant; NaN when Var(R) = 0. */
export function explainedVariance(values: ArrayLike<number>, returns: ArrayLike<number>): number {
  const n = returns.length;
  if (n < 2) return NaN;
  const residual = Array.from(returns, (r, i) => r - values[i]);
  const varR = variance(Array.from(returns));
  return varR === 0 ? NaN : 1 - variance(residual) / varR;
}

function checkConfig(config: PpoLossConfig): void {
  if (!(config.clipRatio > 0 && config.clipRatio < 1)) throw new Error(`ppoLoss: clipRatio must be in (0, 1), got ${config.clipRatio}`);
  if (config.dualClip !== null && !(config.dualClip > 1)) throw new Error(`ppoLoss: dualClip must be > 1 or null, got ${config.dualClip}`);
  if (config.valueClip !== null && !(config.valueClip > 0)) throw new Error(`ppoLoss: valueClip must be > 0 or null, got ${config.valueClip}`);
  // The coefficients scale whole loss terms: NaN made the loss NaN, and a negative valueCoef silently dropped the
  // critic's loss (`valueCoef > 0` is false) while a negative klCoef pushed the policy away from the reference.
  for (const name of ['valueCoef', 'klCoef'] as const) {
    const v = config[name];
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw new RangeError(`ppoLoss: ${name} must be a finite number >= 0, got ${String(v)}`);
  }
  if (typeof config.entropyCoef !== 'number' || !Number.isFinite(config.entropyCoef)) throw new RangeError(`ppoLoss: entropyCoef must be a finite number, got ${String(config.entropyCoef)}`);
  // Unknown names used to fall back silently to another estimator / aggregation.
  if (config.klEstimator !== 'k1' && config.klEstimator !== 'k3') throw new TypeError(`ppoLoss: klEstimator must be 'k1' or 'k3', got ${JSON.stringify(config.klEstimator)}`);
  if (config.lossAggregation !== 'token-mean' && config.lossAggregation !== 'seq-mean-token-mean') {
    throw new TypeError(`ppoLoss: lossAggregation must be 'token-mean' or 'seq-mean-token-mean', got ${JSON.stringify(config.lossAggregation)}`);
  }
}

function checkFiniteArray(name: string, arr: ArrayLike<number>): void {
  for (let i = 0; i < arr.length; i++) if (!Number.isFinite(arr[i])) throw new RangeError(`ppoLoss: ${name}[${i}] = ${arr[i]} is not finite`);
}

function variance(x: number[]): number {
  const mean = x.reduce((a, b) => a + b, 0) / x.length;
  return x.reduce((a, b) => a + (b - mean) ** 2, 0) / x.length;
}

function checkBatch(batch: PpoBatch, config: PpoLossConfig): void {
  checkConfig(config);
  const { lengths, logp } = batch;
  let total = 0;
  for (let i = 0; i < lengths.length; i++) {
    if (!Number.isInteger(lengths[i]) || lengths[i] < 0) throw new Error(`ppoLoss: lengths[${i}] = ${lengths[i]} is not a non-negative integer`);
    total += lengths[i];
  }
  const samples = lengths.length;
  if (batch.totals) {
    const own = minibatchTotals(lengths);
    const { tokens, samples: whole } = batch.totals;
    if (!Number.isInteger(tokens) || tokens < own.tokens || !Number.isInteger(whole) || whole < own.samples || (tokens > 0) !== (whole > 0)) {
      throw new Error(`ppoLoss: totals ${JSON.stringify(batch.totals)} cannot hold this micro-batch's ${own.tokens} tokens in ${own.samples} samples`);
    }
  }
  const perToken: [string, ArrayLike<number> | undefined, boolean][] = [
    ['logp', batch.logp, true],
    ['oldLogp', batch.oldLogp, true],
    ['refLogp', batch.refLogp, config.klCoef !== 0],
    ['entropy', batch.entropy, config.entropyCoef !== 0],
    ['samplerWeights', batch.samplerWeights, false],
  ];
  for (const [name, arr, required] of perToken) {
    if (!arr) {
      if (required) throw new Error(`ppoLoss: ${name} is required by this config`);
      continue;
    }
    if (arr.length !== total) throw new Error(`ppoLoss: ${name} has ${arr.length} entries, lengths sum to ${total} tokens`);
  }
  const perSample: [string, ArrayLike<number> | undefined, boolean][] = [
    ['advantages', batch.advantages, true],
    ['values', batch.values, config.valueCoef > 0],
    ['returns', batch.returns, config.valueCoef > 0],
    ['oldValues', batch.oldValues, config.valueCoef > 0 && config.valueClip !== null],
  ];
  for (const [name, arr, required] of perSample) {
    if (!arr) {
      if (required) throw new Error(`ppoLoss: ${name} is required by this config`);
      continue;
    }
    if (arr.length !== samples) throw new Error(`ppoLoss: ${name} has ${arr.length} entries for ${samples} samples`);
  }
  // Per-sample and per-token inputs that enter the loss must be finite: one NaN advantage or reference log-prob
  // used to turn the whole minibatch's loss and every gradient coefficient into NaN without a word.
  checkFiniteArray('advantages', batch.advantages);
  if (config.klCoef !== 0 && batch.refLogp) checkFiniteArray('refLogp', batch.refLogp);
  if (config.entropyCoef !== 0 && batch.entropy) checkFiniteArray('entropy', batch.entropy);
  for (let t = 0; t < logp.length; t++) {
    if (!Number.isFinite(logp[t]) || !Number.isFinite(batch.oldLogp[t])) throw new Error(`ppoLoss: non-finite logp or oldLogp at token ${t}`);
    if (batch.samplerWeights && !(batch.samplerWeights[t] >= 0 && Number.isFinite(batch.samplerWeights[t]))) throw new Error(`ppoLoss: samplerWeights[${t}] = ${batch.samplerWeights[t]} is not a finite weight >= 0`);
  }
}
