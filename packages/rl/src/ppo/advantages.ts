/**
 * Advantage estimators for step-wise RL, where each sample is one action taken from a pooled state and scored once.
 *
 * - PPO with a critic: A = r − V(s), which is GAE with γ = λ = 1 over a single step; the critic's target is r.
 * - GRPO: A = (r − mean_g) / std_g over the n samples of the same state (group g).
 * - RLOO: A = r − mean of the other n − 1 samples of the group.
 *
 * A group whose rewards are all equal carries no signal for the critic-free estimators: its advantages are 0,
 * it is reported, and `skipZeroVariance` marks its samples to be dropped from the update.
 */

export interface AdvantageResult {
  advantages: Float64Array;
  /** Regression targets of the critic (the rewards for single-step GAE); null for critic-free estimators. */
  returns: Float64Array | null;
  /** Group ids whose rewards had zero variance, in order of first appearance. */
  zeroVarianceGroups: number[];
  /** Per sample: false when the sample should be left out of the update. */
  keep: boolean[];
}

/** Standard deviations at or below this count as zero variance. */
export const ZERO_STD = 1e-8;

/** Whitening as verl's masked_whiten: (x − mean) / sqrt(unbiased var + 1e-8). Needs at least two samples. */
export function normalizeAdvantages(x: ArrayLike<number>, eps = 1e-8): Float64Array {
  const n = x.length;
  if (n < 2) throw new Error(`normalizeAdvantages: needs at least 2 samples in the batch, got ${n}`);
  // One NaN in x, or a NaN / negative eps, used to whiten every advantage of the batch to NaN.
  checkFinite('normalizeAdvantages', x);
  checkEps('normalizeAdvantages', eps);
  const { mean, variance } = moments(x, true);
  if (variance + eps === 0) throw new RangeError('normalizeAdvantages: the values are all equal and eps is 0, so there is no scale to divide by');
  const scale = 1 / Math.sqrt(variance + eps);
  return Float64Array.from(x, (v) => (v - mean) * scale);
}

/** Single-step GAE (γ = λ = 1): A = r − V(s), returns = r; normalized over the batch unless `normalize` is false. */
export function gaeSingleStep(rewards: ArrayLike<number>, values: ArrayLike<number>, normalize = true): AdvantageResult {
  if (rewards.length !== values.length) throw new Error(`gaeSingleStep: ${rewards.length} rewards but ${values.length} values`);
  checkFinite('gaeSingleStep', rewards, values);
  // A truthy non-boolean ('no', 'false' from a parsed option) used to whiten anyway.
  if (typeof normalize !== 'boolean') throw new TypeError(`gaeSingleStep: normalize must be true or false, got ${JSON.stringify(normalize)}`);
  const raw = Float64Array.from(rewards, (r, i) => r - values[i]);
  return {
    advantages: normalize ? normalizeAdvantages(raw) : raw,
    returns: Float64Array.from(rewards),
    zeroVarianceGroups: [],
    keep: Array.from(raw, () => true),
  };
}

export interface GroupAdvantageOptions {
  /** GRPO only: divide by the group's standard deviation (false gives Dr. GRPO's mean-centred advantages). */
  scaleByStd?: boolean;
  /** Mark the samples of zero-variance groups as not kept. */
  skipZeroVariance?: boolean;
  /** Added to the std before dividing (GRPO). */
  eps?: number;
}

/** GRPO: (r − mean_g) / (std_g + eps) with the unbiased std of the group, as verl and TRL compute it. */
export function grpoAdvantages(rewards: ArrayLike<number>, groupIds: ArrayLike<number>, options: GroupAdvantageOptions = {}): AdvantageResult {
  const { scaleByStd = true, eps = 1e-6 } = options;
  // eps = −std divided by zero and a NaN eps gave NaN advantages, silently.
  checkEps('grpoAdvantages', eps);
  return groupAdvantages('grpoAdvantages', 1, rewards, groupIds, options, (r, stats) => {
    const centred = r - stats.mean;
    return scaleByStd ? centred / (stats.std + eps) : centred;
  });
}

/** RLOO: r_i − mean_{j≠i} r_j = n/(n − 1)·(r_i − mean_g). Every group needs at least two samples. */
export function rlooAdvantages(rewards: ArrayLike<number>, groupIds: ArrayLike<number>, options: GroupAdvantageOptions = {}): AdvantageResult {
  return groupAdvantages('rlooAdvantages', 2, rewards, groupIds, options, (r, stats) => {
    return r - (stats.sum - r) / (stats.n - 1);
  });
}

/** The KL-in-reward variant: r' = r − β·Σ_t KL_t, with the per-sample KL summed over its tokens. */
export function klPenalizedRewards(rewards: ArrayLike<number>, sampleKl: ArrayLike<number>, beta: number): Float64Array {
  if (rewards.length !== sampleKl.length) throw new Error(`klPenalizedRewards: ${rewards.length} rewards but ${sampleKl.length} KL values`);
  // A NaN beta or KL made the rewards NaN, and a negative beta rewarded moving away from the reference.
  if (typeof beta !== 'number' || !Number.isFinite(beta) || beta < 0) throw new RangeError(`klPenalizedRewards: beta must be a finite number >= 0, got ${String(beta)}`);
  checkFinite('klPenalizedRewards', rewards, sampleKl);
  return Float64Array.from(rewards, (r, i) => r - beta * sampleKl[i]);
}

interface GroupStats {
  n: number;
  sum: number;
  mean: number;
  std: number;
}

function groupAdvantages(
  name: string,
  minGroupSize: number,
  rewards: ArrayLike<number>,
  groupIds: ArrayLike<number>,
  options: GroupAdvantageOptions,
  advantage: (r: number, stats: GroupStats) => number,
): AdvantageResult {
  if (rewards.length !== groupIds.length) throw new Error(`${name}: ${rewards.length} rewards but ${groupIds.length} group ids`);
  checkFinite(name, rewards);
  const members = new Map<number, number[]>();
  for (let i = 0; i < groupIds.length; i++) {
    const list = members.get(groupIds[i]);
    if (list) list.push(i);
    else members.set(groupIds[i], [i]);
  }
  const advantages = new Float64Array(rewards.length);
  const keep = Array.from({ length: rewards.length }, () => true);
  const zeroVarianceGroups: number[] = [];
  for (const [id, idx] of members) {
    if (idx.length < minGroupSize) throw new Error(`${name}: group ${id} has ${idx.length} sample(s), at least ${minGroupSize} needed`);
    const groupRewards = idx.map((i) => rewards[i]);
    const { mean, variance } = moments(groupRewards, true);
    const std = idx.length > 1 ? Math.sqrt(variance) : 0;
    const stats: GroupStats = { n: idx.length, sum: groupRewards.reduce((a, b) => a + b, 0), mean, std };
    if (std <= ZERO_STD) {
      // A GRPO group of one sample lands here too: it has no baseline to compare with.
      zeroVarianceGroups.push(id);
      for (const i of idx) {
        advantages[i] = 0;
        if (options.skipZeroVariance) keep[i] = false;
      }
      continue;
    }
    for (const i of idx) advantages[i] = advantage(rewards[i], stats);
  }
  return { advantages, returns: null, zeroVarianceGroups, keep };
}

function moments(x: ArrayLike<number>, unbiased: boolean): { mean: number; variance: number } {
  const n = x.length;
  let mean = 0;
  for (let i = 0; i < n; i++) mean += x[i];
  mean /= n;
  let ss = 0;
  for (let i = 0; i < n; i++) ss += (x[i] - mean) ** 2;
  const denominator = unbiased ? n - 1 : n;
  return { mean, variance: denominator > 0 ? ss / denominator : 0 };
}

function checkEps(name: string, eps: number): void {
  if (typeof eps !== 'number' || !Number.isFinite(eps) || eps < 0) throw new RangeError(`${name}: eps must be a finite number >= 0, got ${String(eps)}`);
}

function checkFinite(name: string, ...arrays: ArrayLike<number>[]): void {
  for (const a of arrays) {
    for (let i = 0; i < a.length; i++) if (!Number.isFinite(a[i])) throw new Error(`${name}: non-finite value ${a[i]} at index ${i}`);
  }
}
