/**
 * Audit of the PPO math against the standard definitions (CleanRL's PPO, verl's core_algos):
 *  1. every gradient coefficient of ppoLoss equals the float64 central difference of the returned loss, over a grid
 *     of every mode (KL off / in the reward / k1 / k3 loss, both aggregations, dual clip and value clip on and off,
 *     sampler weights, micro-batch totals, empty samples), and the loss itself equals an independent
 *     re-derivation from the definitions;
 *  2. GRPO, RLOO and single-step GAE against their definitions;
 *  3. ppoUpdate's bookkeeping, with the policy's training API replaced by a deterministic fake that records every
 *     coefficient it is asked to backpropagate: micro-batches must add up to the whole minibatch's gradient, and
 *     truncated importance weights, duration weights, KL in the reward and PPO-ptx must enter as documented.
 */
import { beforeEach, describe, expect, it, vi } from 'vitest';
import { SeededRng } from '@mlagent/core-kernels';
import type { LoraAdapter, QwenModel, TrainOptimizer, ValueHead } from '@mlagent/policy';
import { durationWeights } from '@mlagent/reward';
import { defaultTrainConfig, type PpoConfig } from '../src/config/train-config.js';
import { gaeSingleStep, grpoAdvantages, klPenalizedRewards, normalizeAdvantages, rlooAdvantages } from '../src/ppo/advantages.js';
import { DEFAULT_PPO_LOSS, minibatchTotals, ppoLoss, type PpoBatch, type PpoLossConfig, type PpoLossResult } from '../src/ppo/loss.js';
import { ppoUpdate, type PpoSample, type PtxExample } from '../src/ppo/update.js';

// ---------------------------------------------------------------------------------------------------------------
// A fake of the policy's training API: deterministic log-probs, entropies and values (f32, as the real passes
// return), and a record of every backward call, so the test sees exactly what ppoUpdate asks the model to learn.
// ---------------------------------------------------------------------------------------------------------------
const fake = vi.hoisted(() => {
  type Tag = 'actor' | 'reference' | 'base';
  const logpOf = (tag: Tag, token: number, pos: number) =>
    Math.fround(-0.4 - 0.8 * Math.abs(Math.sin(1.3 * token + 0.7 * pos + (tag === 'actor' ? 0 : tag === 'reference' ? 0.35 : 0.9))));
  const entropyOf = (token: number, pos: number) => Math.fround(1 + 0.5 * Math.cos(0.9 * token + 0.4 * pos));
  const valueOf = (firstToken: number) => Math.fround(0.3 * Math.sin(firstToken));
  const nllOf = (token: number, pos: number) => Math.fround(1 + 0.1 * ((token + pos) % 7));
  interface ActorGrad {
    actorSteps: number;
    seqs: (readonly number[])[];
    dLogprob: Float32Array[];
    dEntropy?: Float32Array[];
  }
  interface ValueGrad {
    criticSteps: number;
    prompts: (readonly number[])[];
    d: Float32Array[];
  }
  interface PtxCall {
    actorSteps: number;
    seqs: (readonly number[])[];
    normalizer: number;
  }
  const rec = { actor: [] as ActorGrad[], value: [] as ValueGrad[], ptx: [] as PtxCall[], actorSteps: 0, criticSteps: 0 };
  const tagOf = (adapter: unknown): Tag => ((adapter as { tag?: Tag } | undefined)?.tag ?? 'base');
  return { logpOf, entropyOf, valueOf, nllOf, rec, tagOf };
});

vi.mock('@mlagent/policy', () => ({
  policyForward: async (_model: unknown, seqs: (readonly number[])[], opts: { adapter?: unknown; grad?: boolean }) => {
    const tag = fake.tagOf(opts.adapter);
    return {
      logprobs: seqs.map((s) => Float32Array.from(s, (tok, t) => fake.logpOf(tag, tok, t))),
      entropies: seqs.map((s) => Float32Array.from(s, (tok, t) => fake.entropyOf(tok, t))),
      backward: (g: { dLogprob: Float32Array[]; dEntropy?: Float32Array[] }) => {
        if (opts.grad === false) throw new Error('fake policyForward: backward on a pass without gradients');
        fake.rec.actor.push({ actorSteps: fake.rec.actorSteps, seqs, dLogprob: g.dLogprob, dEntropy: g.dEntropy });
      },
      dispose: () => {},
    };
  },
  valueForward: async (_model: unknown, _critic: unknown, prompts: (readonly number[])[]) => ({
    values: prompts.map((p) => Float32Array.from(p, () => fake.valueOf(p[0]))),
    backward: (d: Float32Array[]) => fake.rec.value.push({ criticSteps: fake.rec.criticSteps, prompts, d }),
    dispose: () => {},
  }),
  maskedNllBackward: async (_model: unknown, seqs: (readonly number[])[], masks: ArrayLike<number>[], opts: { normalizer: number }) => {
    fake.rec.ptx.push({ actorSteps: fake.rec.actorSteps, seqs, normalizer: opts.normalizer });
    let loss = 0;
    let tokens = 0;
    seqs.forEach((s, b) => {
      for (let t = 1; t < s.length; t++) {
        loss += (masks[b][t] * fake.nllOf(s[t], t)) / opts.normalizer;
        tokens += masks[b][t];
      }
    });
    return { loss, tokens };
  },
}));

// ---------------------------------------------------------------------------------------------------------------
// 1. ppoLoss: coefficients against finite differences, and the loss against the definitions.
// ---------------------------------------------------------------------------------------------------------------

/** Lengths include empty samples (a sample with no response tokens: every token of it masked). */
function randomBatch(seed: number, withSamplerWeights: boolean): PpoBatch {
  const rng = new SeededRng(seed);
  const lengths = [4, 0, 2, 7, 1, 3, 0, 5];
  const T = lengths.reduce((a, b) => a + b, 0);
  const oldLogp = Array.from({ length: T }, () => -0.1 - 3 * rng.uniform());
  // Log-ratios over ±1.6: inside the clip range, clipped on both sides, and past the dual clip (e^1.1 ≈ 3).
  const logp = oldLogp.map((o) => o + 3.2 * (rng.uniform() - 0.5));
  const refLogp = oldLogp.map((o) => o + 1.2 * (rng.uniform() - 0.5));
  const entropy = Array.from({ length: T }, () => 2 * rng.uniform());
  const advantages = lengths.map(() => 2 * rng.normal());
  const oldValues = lengths.map(() => rng.normal());
  const values = oldValues.map((v) => v + 1.6 * (rng.uniform() - 0.5));
  const returns = lengths.map(() => rng.normal());
  const samplerWeights = withSamplerWeights ? Array.from({ length: T }, () => 2 * rng.uniform()) : undefined;
  return { lengths, logp, oldLogp, refLogp, entropy, advantages, values, oldValues, returns, samplerWeights };
}

type Key = 'logp' | 'entropy' | 'values';

/** Central difference of the returned loss with respect to one input. */
function numeric(batch: PpoBatch, config: PpoLossConfig, key: Key, i: number): number {
  const h = 1e-6;
  const at = (delta: number) => {
    const arr = Array.from(batch[key]!);
    arr[i] += delta;
    return ppoLoss({ ...batch, [key]: arr }, config).loss;
  };
  return (at(h) - at(-h)) / (2 * h);
}

/** Largest |analytic − numeric| over every dLogp, dEntropy and dValue coefficient. */
function largestMismatch(batch: PpoBatch, config: PpoLossConfig, r: Pick<PpoLossResult, 'dLogp' | 'dEntropy' | 'dValue'>): number {
  let worst = 0;
  for (let t = 0; t < batch.logp.length; t++) {
    worst = Math.max(worst, Math.abs(r.dLogp[t] - numeric(batch, config, 'logp', t)));
    worst = Math.max(worst, Math.abs(r.dEntropy[t] - numeric(batch, config, 'entropy', t)));
  }
  if (config.valueCoef > 0) {
    for (let i = 0; i < batch.lengths.length; i++) worst = Math.max(worst, Math.abs(r.dValue![i] - numeric(batch, config, 'values', i)));
  } else {
    expect(r.dValue).toBeNull();
  }
  return worst;
}

const TOLERANCE = 1e-7;

type KlMode = 'off' | 'reward' | 'k1-loss' | 'k3-loss';
interface GridCase {
  name: string;
  config: PpoLossConfig;
  klMode: KlMode;
  samplerWeights: boolean;
  microBatch: boolean;
}

function grid(): GridCase[] {
  const cases: GridCase[] = [];
  for (const klMode of ['off', 'reward', 'k1-loss', 'k3-loss'] as const) {
    for (const lossAggregation of ['token-mean', 'seq-mean-token-mean'] as const) {
      for (const dualClip of [null, 3]) {
        for (const valueClip of [null, 0.5]) {
          for (const samplerWeights of [false, true]) {
            for (const microBatch of [false, true]) {
              const config: PpoLossConfig = {
                clipRatio: 0.2,
                dualClip,
                valueClip,
                valueCoef: 0.7,
                // In the reward, the KL is not a loss term: klCoef 0 with refLogp still given (its stat is measured).
                klCoef: klMode === 'k1-loss' || klMode === 'k3-loss' ? 0.3 : 0,
                klEstimator: klMode === 'k1-loss' ? 'k1' : 'k3',
                entropyCoef: 0.05,
                lossAggregation,
              };
              const name = `KL ${klMode}, ${lossAggregation}, dual clip ${dualClip}, value clip ${valueClip}${samplerWeights ? ', sampler weights' : ''}${microBatch ? ', micro-batch of a minibatch' : ''}`;
              cases.push({ name, config, klMode, samplerWeights, microBatch });
            }
          }
        }
      }
    }
  }
  return cases;
}

/** The batch of a grid case: the whole batch, or its samples [1, 7) (two of them empty) normalized by the whole batch's totals. */
function caseBatch(c: GridCase, seed: number): PpoBatch {
  const whole = randomBatch(seed, c.samplerWeights);
  const batch: PpoBatch = c.klMode === 'off' ? { ...whole, refLogp: undefined } : whole;
  if (!c.microBatch) return batch;
  const [a, b] = [1, 7];
  const lengths = Array.from(batch.lengths);
  const t0 = lengths.slice(0, a).reduce((x, y) => x + y, 0);
  const t1 = t0 + lengths.slice(a, b).reduce((x, y) => x + y, 0);
  const tok = (arr?: ArrayLike<number>) => (arr ? Array.from(arr).slice(t0, t1) : undefined);
  const smp = (arr?: ArrayLike<number>) => (arr ? Array.from(arr).slice(a, b) : undefined);
  return {
    lengths: lengths.slice(a, b),
    logp: tok(batch.logp)!,
    oldLogp: tok(batch.oldLogp)!,
    refLogp: tok(batch.refLogp),
    entropy: tok(batch.entropy),
    samplerWeights: tok(batch.samplerWeights),
    advantages: smp(batch.advantages)!,
    values: smp(batch.values),
    oldValues: smp(batch.oldValues),
    returns: smp(batch.returns),
    totals: minibatchTotals(lengths),
  };
}

describe('ppoLoss coefficients equal the central differences of its loss, in every mode', () => {
  const cases = grid();
  it('the grid covers 128 modes', () => expect(cases.length).toBe(128));
  for (const c of cases) {
    it(c.name, () => {
      const reached = { inside: 0, clipped: 0, dual: 0, valueClipped: 0 };
      for (const seed of [11, 12, 13, 14]) {
        const batch = caseBatch(c, seed);
        const r = ppoLoss(batch, c.config);
        expect(largestMismatch(batch, c.config, r)).toBeLessThan(TOLERANCE);
        reached.inside += r.dLogp.some((d, t) => d !== 0 && Math.abs(batch.logp[t] - batch.oldLogp[t]) < Math.log(1.2)) ? 1 : 0;
        reached.clipped += r.stats.clipFrac;
        reached.dual += r.stats.dualClipFrac;
        reached.valueClipped += r.stats.valueClipFrac;
        if (c.klMode === 'reward' || c.klMode === 'off') expect(r.klLoss).toBe(0);
      }
      // The random batches reach every branch the config has, so each derivative above was really exercised.
      expect(reached.inside).toBeGreaterThan(0);
      expect(reached.clipped).toBeGreaterThan(0);
      if (c.config.dualClip !== null) expect(reached.dual).toBeGreaterThan(0);
      if (c.config.valueClip !== null) expect(reached.valueClipped).toBeGreaterThan(0);
    });
  }

  it('the check fails on a deliberately wrong coefficient of each kind', () => {
    const config: PpoLossConfig = { ...DEFAULT_PPO_LOSS, klCoef: 0.3, entropyCoef: 0.05, valueCoef: 0.7 };
    const batch = randomBatch(11, true);
    const r = ppoLoss(batch, config);
    expect(largestMismatch(batch, config, r)).toBeLessThan(TOLERANCE);
    const tamper = (f: (x: { dLogp: Float64Array; dEntropy: Float64Array; dValue: Float64Array }) => void) => {
      const copy = { dLogp: Float64Array.from(r.dLogp), dEntropy: Float64Array.from(r.dEntropy), dValue: Float64Array.from(r.dValue!) };
      f(copy);
      return largestMismatch(batch, config, copy);
    };
    // A dual-clipped token given the unclipped gradient; the KL term's derivative dropped; the sampler weight left
    // out of one token; the entropy bonus with the wrong sign; one value's coefficient without valueCoef.
    const T = batch.logp.length;
    const ratio = (t: number) => Math.exp(batch.logp[t] - batch.oldLogp[t]);
    const sampleOf = (t: number) => {
      let s = 0;
      for (let acc = batch.lengths[0]; acc <= t; acc += batch.lengths[++s]);
      return s;
    };
    const dual = Array.from({ length: T }, (_, t) => t).find((t) => batch.advantages[sampleOf(t)] < 0 && ratio(t) > 3)!;
    expect(dual).toBeDefined();
    expect(tamper((x) => (x.dLogp[dual] = (batch.samplerWeights![dual] * -batch.advantages[sampleOf(dual)] * ratio(dual)) / T))).toBeGreaterThan(1e-4);
    expect(tamper((x) => (x.dLogp[0] -= (0.3 * (1 - Math.exp(batch.refLogp![0] - batch.logp[0]))) / T))).toBeGreaterThan(1e-4);
    // A token on the unclipped branch, whose policy gradient −A·ratio·w / T is then given w = 1.
    const unclipped = (t: number) => {
      const A = batch.advantages[sampleOf(t)];
      return (A > 0 && ratio(t) < 1.2) || (A < 0 && ratio(t) > 0.8 && ratio(t) < 3);
    };
    const inside = Array.from({ length: T }, (_, t) => t).find((t) => unclipped(t) && Math.abs(batch.samplerWeights![t] - 1) > 0.2)!;
    expect(inside).toBeDefined();
    const policyPart = (-batch.advantages[sampleOf(inside)] * ratio(inside)) / T;
    expect(tamper((x) => (x.dLogp[inside] += policyPart * (1 - batch.samplerWeights![inside])))).toBeGreaterThan(1e-4);
    expect(tamper((x) => (x.dEntropy[3] = -x.dEntropy[3]))).toBeGreaterThan(1e-4);
    const moving = r.dValue!.findIndex((d) => d !== 0);
    expect(tamper((x) => (x.dValue[moving] /= 0.7))).toBeGreaterThan(1e-4);
  });
});

/** The loss re-derived from the definitions (verl's compute_policy_loss / kl_penalty / agg_loss / value loss). */
function referenceLoss(batch: PpoBatch, c: PpoLossConfig) {
  const lengths = Array.from(batch.lengths);
  const nonEmpty = lengths.filter((n) => n > 0).length;
  const T = lengths.reduce((a, b) => a + b, 0);
  const agg = (perToken: number[]) => {
    if (c.lossAggregation === 'token-mean') return perToken.reduce((a, b) => a + b, 0) / T;
    let t = 0;
    let sum = 0;
    for (const n of lengths) {
      if (n === 0) continue;
      sum += perToken.slice(t, t + n).reduce((a, b) => a + b, 0) / n;
      t += n;
    }
    return sum / nonEmpty;
  };
  const adv = lengths.flatMap((n, i) => Array.from({ length: n }, () => batch.advantages[i]));
  const pg: number[] = [];
  let clipped = 0;
  let approxKl = 0;
  for (let t = 0; t < T; t++) {
    const logRatio = batch.logp[t] - batch.oldLogp[t];
    const ratio = Math.exp(logRatio);
    const l1 = -adv[t] * ratio;
    const l2 = -adv[t] * Math.min(Math.max(ratio, 1 - c.clipRatio), 1 + c.clipRatio);
    if (l2 > l1) clipped++;
    const l = Math.max(l1, l2);
    const dual = c.dualClip !== null && adv[t] < 0 ? Math.min(l, -adv[t] * c.dualClip) : l;
    pg.push(dual * (batch.samplerWeights ? batch.samplerWeights[t] : 1));
    approxKl += ratio - 1 - logRatio;
  }
  const kl = Array.from({ length: T }, (_, t) => {
    if (!batch.refLogp) return 0;
    const x = batch.refLogp[t] - batch.logp[t];
    return c.klEstimator === 'k1' ? -x : Math.exp(x) - x - 1;
  });
  const policyLoss = agg(pg);
  const klLoss = agg(kl);
  const entropyLoss = batch.entropy ? agg(Array.from(batch.entropy)) : 0;
  let valueLoss = 0;
  if (c.valueCoef > 0) {
    const v = batch.values!;
    // Mean over the samples with response tokens: verl's value loss is token-level, so an empty response has none.
    for (let i = 0; i < v.length; i++) {
      if (lengths[i] === 0) continue;
      const R = batch.returns![i];
      let l = (v[i] - R) ** 2;
      if (c.valueClip !== null) {
        const o = batch.oldValues![i];
        l = Math.max(l, (Math.min(Math.max(v[i], o - c.valueClip), o + c.valueClip) - R) ** 2);
      }
      valueLoss += (0.5 * l) / nonEmpty;
    }
  }
  const loss = policyLoss + (c.klCoef > 0 ? c.klCoef * klLoss : 0) - c.entropyCoef * entropyLoss + c.valueCoef * valueLoss;
  return { loss, policyLoss, klLoss, entropyLoss, valueLoss, clipFrac: clipped / T, approxKl: approxKl / T };
}

describe('ppoLoss equals the loss re-derived from the definitions', () => {
  for (const c of grid().filter((g) => !g.microBatch)) {
    it(c.name, () => {
      for (const seed of [21, 22, 23]) {
        const batch = caseBatch(c, seed);
        const r = ppoLoss(batch, c.config);
        const ref = referenceLoss(batch, c.config);
        expect(r.loss).toBeCloseTo(ref.loss, 12);
        expect(r.policyLoss).toBeCloseTo(ref.policyLoss, 12);
        if (c.config.klCoef > 0) expect(r.klLoss).toBeCloseTo(ref.klLoss, 12);
        expect(r.entropyLoss).toBeCloseTo(ref.entropyLoss, 12);
        expect(r.valueLoss).toBeCloseTo(ref.valueLoss, 12);
        expect(r.stats.clipFrac).toBeCloseTo(ref.clipFrac, 12);
        // CleanRL's approx_kl: mean of (ratio − 1) − log ratio.
        expect(r.stats.approxKl).toBeCloseTo(ref.approxKl, 12);
      }
    });
  }
});

// ---------------------------------------------------------------------------------------------------------------
// 2. Advantage estimators against their definitions.
// ---------------------------------------------------------------------------------------------------------------

function groupsOf(ids: number[]): Map<number, number[]> {
  const m = new Map<number, number[]>();
  ids.forEach((g, i) => m.set(g, [...(m.get(g) ?? []), i]));
  return m;
}
const meanOf = (x: number[]) => x.reduce((a, b) => a + b, 0) / x.length;
const sampleStd = (x: number[]) => Math.sqrt(x.reduce((a, b) => a + (b - meanOf(x)) ** 2, 0) / (x.length - 1));

describe('advantage estimators against their definitions', () => {
  const rng = new SeededRng(5);
  // Groups of 2 to 6 samples, interleaved, with spread rewards.
  const ids = [3, 1, 3, 2, 1, 3, 4, 2, 4, 4, 4, 4, 1, 2, 3];
  const rewards = ids.map(() => rng.uniform());

  it('GRPO: (r − group mean) / (sample std + 1e-6), as verl (torch.std is unbiased); Dr. GRPO only centres', () => {
    const r = grpoAdvantages(rewards, ids);
    const centred = grpoAdvantages(rewards, ids, { scaleByStd: false });
    for (const idx of groupsOf(ids).values()) {
      const g = idx.map((i) => rewards[i]);
      for (const i of idx) {
        expect(r.advantages[i]).toBeCloseTo((rewards[i] - meanOf(g)) / (sampleStd(g) + 1e-6), 12);
        expect(centred.advantages[i]).toBeCloseTo(rewards[i] - meanOf(g), 12);
      }
    }
    // Two samples 0 and 1: the sample std is √½, so each gets ±√½ (the population std would give ±1).
    const pair = grpoAdvantages([0, 1], [0, 0]);
    expect(pair.advantages[1]).toBeCloseTo(0.5 / (Math.SQRT1_2 + 1e-6), 12);
    expect(grpoAdvantages([0, 1], [0, 0], { eps: 0.1 }).advantages[1]).toBeCloseTo(0.5 / (Math.SQRT1_2 + 0.1), 12);
  });

  it('RLOO: r_i − mean of the others, from an explicit leave-one-out loop', () => {
    const r = rlooAdvantages(rewards, ids);
    for (const idx of groupsOf(ids).values()) {
      for (const i of idx) {
        const others = idx.filter((j) => j !== i).map((j) => rewards[j]);
        expect(r.advantages[i]).toBeCloseTo(rewards[i] - meanOf(others), 12);
      }
      // Its baseline leaves the group's advantages summing to 0, like GRPO's, scaled n/(n − 1) from r − mean.
      expect(idx.reduce((a, i) => a + r.advantages[i], 0)).toBeCloseTo(0, 12);
    }
    expect(r.returns).toBeNull();
  });

  it('zero-variance groups: equal rewards, also when they differ only by float rounding, give 0, are reported and can be skipped', () => {
    const almost = [0.1, 0.3 - 0.2, 0.7 - 0.6]; // 0.1, 0.09999999999999998, 0.09999999999999998
    expect(new Set(almost).size).toBe(2);
    for (const estimator of [grpoAdvantages, rlooAdvantages]) {
      const r = estimator([...almost, 1, 0], [5, 5, 5, 6, 6], { skipZeroVariance: true });
      expect(Array.from(r.advantages.slice(0, 3))).toEqual([0, 0, 0]);
      expect(r.zeroVarianceGroups).toEqual([5]);
      expect(r.keep).toEqual([false, false, false, true, true]);
      expect(Math.abs(r.advantages[3])).toBeGreaterThan(0.5);
    }
  });

  it("single-step GAE: A = r − V(s) whitened over the batch as verl's masked_whiten, returns = r", () => {
    const values = ids.map(() => rng.normal());
    const r = gaeSingleStep(rewards, values);
    const raw = rewards.map((x, i) => x - values[i]);
    const varUnbiased = sampleStd(raw) ** 2;
    raw.forEach((a, i) => expect(r.advantages[i]).toBeCloseTo((a - meanOf(raw)) / Math.sqrt(varUnbiased + 1e-8), 12));
    expect(meanOf(Array.from(r.advantages))).toBeCloseTo(0, 12);
    expect(sampleStd(Array.from(r.advantages))).toBeCloseTo(Math.sqrt(varUnbiased / (varUnbiased + 1e-8)), 12);
    expect(Array.from(r.returns!)).toEqual(rewards);
    raw.forEach((a, i) => expect(gaeSingleStep(rewards, values, false).advantages[i]).toBeCloseTo(a, 14));
    // Equal advantages whiten to 0, not NaN.
    expect(Array.from(normalizeAdvantages([0.3, 0.3, 0.3]))).toEqual([0, 0, 0]);
  });

  it('KL in the reward subtracts β × the summed per-token KL', () => {
    const kl = rewards.map(() => rng.uniform());
    const r = klPenalizedRewards(rewards, kl, 0.05);
    rewards.forEach((x, i) => expect(r[i]).toBeCloseTo(x - 0.05 * kl[i], 14));
  });
});

// ---------------------------------------------------------------------------------------------------------------
// 3. ppoUpdate with the fake training API.
// ---------------------------------------------------------------------------------------------------------------

const model = {} as QwenModel;
const actor = { tag: 'actor' } as unknown as LoraAdapter;
const reference = { tag: 'reference' } as unknown as LoraAdapter;
const critic = {} as ValueHead;
const optimizer = (which: 'actorSteps' | 'criticSteps') =>
  ({
    step: async () => {
      fake.rec[which]++;
      return { gradNorm: 1, lr: 1e-3 };
    },
  }) as unknown as TrainOptimizer;

/** Nine samples in three states; response lengths 1 to 5; prompts whose first token names the sample. */
function fakeSamples(sampler: (i: number, t: number, actorLogp: number) => number): PpoSample[] {
  const respLengths = [3, 1, 5, 2, 4, 2, 5, 1, 3];
  const rewards = [0.9, 0.1, 0.5, 0.2, 0.8, 0.35, 0.6, 0.05, 0.7];
  const durations = [12, 3, null, 40, 7, 7, 1, null, 20];
  return respLengths.map((n, i) => {
    const prompt = [100 + i, 7 + (i % 3), 8];
    const response = Array.from({ length: n }, (_, k) => 20 + ((i * 5 + k * 3) % 11));
    const oldLogp = Float32Array.from(response, (tok, k) => sampler(i, k, fake.logpOf('actor', tok, prompt.length + k)));
    return { group: i % 3, prompt, response, oldLogp, reward: rewards[i], durationSec: durations[i], task: `t${i % 3}` };
  });
}

interface Recorded {
  /** Per actor step: sample index → per-response-token dLogp / dEntropy summed over the step's backward calls. */
  dLogp: Map<number, number[]>[];
  dEntropy: Map<number, number[]>[];
  /** Per critic step: sample index → d loss / d value summed over the step's backward calls. */
  dValue: Map<number, number>[];
}

function collect(samples: PpoSample[]): Recorded {
  const out: Recorded = { dLogp: [], dEntropy: [], dValue: [] };
  const add = (maps: Map<number, number[]>[], step: number, i: number, d: Float32Array) => {
    const s = samples[i];
    // Nothing may flow into the prompt.
    for (let t = 0; t < s.prompt.length; t++) expect(d[t]).toBe(0);
    maps[step] ??= new Map();
    const acc = maps[step].get(i) ?? Array.from({ length: s.response.length }, () => 0);
    for (let k = 0; k < s.response.length; k++) acc[k] += d[s.prompt.length + k];
    maps[step].set(i, acc);
  };
  for (const call of fake.rec.actor) {
    call.seqs.forEach((seq, b) => {
      const i = seq[0] - 100;
      add(out.dLogp, call.actorSteps, i, call.dLogprob[b]);
      if (call.dEntropy) add(out.dEntropy, call.actorSteps, i, call.dEntropy[b]);
    });
  }
  for (const call of fake.rec.value) {
    call.prompts.forEach((p, b) => {
      const i = p[0] - 100;
      for (let t = 0; t < p.length - 1; t++) expect(call.d[b][t]).toBe(0);
      out.dValue[call.criticSteps] ??= new Map();
      out.dValue[call.criticSteps].set(i, (out.dValue[call.criticSteps].get(i) ?? 0) + call.d[b][p.length - 1]);
    });
  }
  return out;
}

function resetRecorder() {
  fake.rec.actor.length = 0;
  fake.rec.value.length = 0;
  fake.rec.ptx.length = 0;
  fake.rec.actorSteps = 0;
  fake.rec.criticSteps = 0;
}

async function runUpdate(samples: PpoSample[], config: PpoConfig, ptxExamples?: PtxExample[]) {
  resetRecorder();
  const useCritic = config.advantage === 'gae';
  const stats = await ppoUpdate(
    {
      model,
      actor,
      actorOptimizer: optimizer('actorSteps'),
      reference,
      critic: useCritic ? critic : undefined,
      criticOptimizer: useCritic ? optimizer('criticSteps') : undefined,
    },
    samples,
    config,
    { seed: 3, iteration: 0, ptxExamples },
  );
  return { stats, grads: collect(samples), ptx: [...fake.rec.ptx] };
}

const baseConfig: PpoConfig = {
  ...defaultTrainConfig().ppo,
  minibatchSize: 6,
  epochs: 2,
  criticWarmupIterations: 0,
  ptxCoef: 0,
  durationWeighting: false,
  samplerRatioCap: null,
  oldLogprobs: 'sampler',
};

describe('ppoUpdate: micro-batches add up to the whole minibatch', () => {
  beforeEach(resetRecorder);
  // π_old off the fake actor by up to ±0.6 per token, so tokens clip and dual-clip.
  const skewed = fakeSamples((i, k, lp) => lp + 0.6 * Math.sin(2.1 * i + 1.7 * k));

  for (const lossAggregation of ['token-mean', 'seq-mean-token-mean'] as const) {
    for (const advantage of ['gae', 'grpo'] as const) {
      it(`${advantage}, ${lossAggregation}: every step's summed coefficients equal ppoLoss over the whole minibatch`, async () => {
        const config: PpoConfig = { ...baseConfig, advantage, lossAggregation, klMode: 'loss', klEstimator: 'k3', klCoef: 0.2, entropyCoef: 0.03, valueCoef: 0.8 };
        const whole = await runUpdate(skewed, { ...config, microBatchSize: null });
        expect(whole.stats.clipFrac).toBeGreaterThan(0);
        expect(whole.grads.dLogp.length).toBe(4); // 2 epochs × minibatches of 6 and 3
        // What the whole minibatch's loss asks for, from the same inputs: ppoLoss without totals.
        const adv =
          advantage === 'gae'
            ? gaeSingleStep(skewed.map((s) => s.reward), skewed.map((s) => fake.valueOf(s.prompt[0]))).advantages
            : grpoAdvantages(skewed.map((s) => s.reward), skewed.map((s) => s.group)).advantages;
        whole.grads.dLogp.forEach((step, k) => {
          const idx = [...step.keys()];
          const seqLogp = (tag: 'actor' | 'reference', i: number) => skewed[i].response.map((tok, t) => fake.logpOf(tag, tok, skewed[i].prompt.length + t));
          const expected = ppoLoss(
            {
              lengths: idx.map((i) => skewed[i].response.length),
              logp: idx.flatMap((i) => seqLogp('actor', i)),
              oldLogp: idx.flatMap((i) => Array.from(skewed[i].oldLogp)),
              refLogp: idx.flatMap((i) => seqLogp('reference', i)),
              entropy: idx.flatMap((i) => skewed[i].response.map((tok, t) => fake.entropyOf(tok, skewed[i].prompt.length + t))),
              advantages: idx.map((i) => adv[i]),
              values: idx.map((i) => fake.valueOf(skewed[i].prompt[0])),
              oldValues: idx.map((i) => fake.valueOf(skewed[i].prompt[0])),
              returns: idx.map((i) => skewed[i].reward),
            },
            { clipRatio: config.clipRatio, dualClip: config.dualClip, valueClip: config.valueClip, valueCoef: config.valueCoef, klCoef: config.klCoef, klEstimator: 'k3', entropyCoef: config.entropyCoef, lossAggregation },
          );
          const flat = idx.flatMap((i) => step.get(i)!);
          flat.forEach((d, t) => expect(d).toBeCloseTo(expected.dLogp[t], 6));
          idx.flatMap((i) => whole.grads.dEntropy[k].get(i)!).forEach((d, t) => expect(d).toBeCloseTo(expected.dEntropy[t], 6));
          if (advantage === 'gae') idx.forEach((i, n) => expect(whole.grads.dValue[k].get(i)).toBeCloseTo(expected.dValue![n], 6));
        });
        for (const micro of [1, 2, 4]) {
          const split = await runUpdate(skewed, { ...config, microBatchSize: micro });
          expect(fake.rec.actor.length).toBeGreaterThan(whole.grads.dLogp.length);
          split.grads.dLogp.forEach((step, k) => {
            expect([...step.keys()]).toEqual([...whole.grads.dLogp[k].keys()]);
            for (const [i, d] of step) d.forEach((x, t) => expect(x, `micro ${micro}, step ${k}, sample ${i}`).toBeCloseTo(whole.grads.dLogp[k].get(i)![t], 7));
            for (const [i, d] of split.grads.dEntropy[k]) d.forEach((x, t) => expect(x).toBeCloseTo(whole.grads.dEntropy[k].get(i)![t], 7));
          });
          if (advantage === 'gae') split.grads.dValue.forEach((step, k) => step.forEach((d, i) => expect(d).toBeCloseTo(whole.grads.dValue[k].get(i)!, 7)));
          for (const key of ['loss', 'policyLoss', 'valueLoss', 'entropy', 'clipFrac', 'approxKl', 'kl'] as const) {
            expect(split.stats[key], `micro ${micro}: ${key}`).toBeCloseTo(whole.stats[key], 7);
          }
        }
      });
    }
  }
});

describe('ppoUpdate: weights, KL in the reward and PPO-ptx enter as documented', () => {
  beforeEach(resetRecorder);

  it("truncated importance and duration weights scale each token's policy gradient: −A·w_dur·min(π_old/π_sampler, C) / T", async () => {
    // The sampler is off by ±0.3 per token; π_old is the actor's own forward ('actor'), so the ratio is 1.
    const samples = fakeSamples((i, k, lp) => lp + (k % 2 ? 0.3 : -0.3));
    const config: PpoConfig = {
      ...baseConfig,
      advantage: 'grpo',
      klMode: 'none',
      entropyCoef: 0,
      minibatchSize: 9,
      microBatchSize: 4,
      epochs: 1,
      oldLogprobs: 'actor',
      samplerRatioCap: 1.2,
      durationWeighting: true,
    };
    const run = await runUpdate(samples, config);
    const A = grpoAdvantages(samples.map((s) => s.reward), samples.map((s) => s.group)).advantages;
    const wDur = durationWeights(samples.map((s) => s.durationSec ?? undefined));
    expect(new Set(wDur.map((w) => w.toFixed(6))).size).toBeGreaterThan(3);
    const T = samples.reduce((n, s) => n + s.response.length, 0);
    let policyLoss = 0;
    samples.forEach((s, i) => {
      const d = run.grads.dLogp[0].get(i)!;
      s.response.forEach((tok, k) => {
        const actorLogp = fake.logpOf('actor', tok, s.prompt.length + k);
        const tis = Math.min(Math.exp(actorLogp - s.oldLogp[k]), 1.2);
        expect(d[k]).toBeCloseTo((-A[i] * wDur[i] * tis) / T, 6);
        policyLoss += (-A[i] * wDur[i] * tis) / T;
      });
    });
    expect(run.stats.policyLoss).toBeCloseTo(policyLoss, 6);
    const tis = samples.flatMap((s) => s.response.map((tok, k) => Math.min(Math.exp(fake.logpOf('actor', tok, s.prompt.length + k) - s.oldLogp[k]), 1.2)));
    expect(tis.some((w) => w === 1.2) && tis.some((w) => w < 1)).toBe(true);
    expect(run.stats.samplerWeight).toBeCloseTo(meanOf(tis), 6);
  });

  it("KL in the reward: the critic's targets are r − β·Σ_t KL(π_old, π_ref), and the policy gradient has no KL term", async () => {
    const samples = fakeSamples((i, k, lp) => lp);
    for (const klEstimator of ['k1', 'k3'] as const) {
      const config: PpoConfig = { ...baseConfig, advantage: 'gae', klMode: 'reward', klEstimator, klCoef: 0.1, entropyCoef: 0, valueCoef: 0.8, minibatchSize: 9, microBatchSize: 2, epochs: 1 };
      const run = await runUpdate(samples, config);
      const kl = samples.map((s) =>
        s.response.reduce((sum, tok, k) => {
          const x = fake.logpOf('reference', tok, s.prompt.length + k) - s.oldLogp[k];
          return sum + (klEstimator === 'k1' ? -x : Math.exp(x) - x - 1);
        }, 0),
      );
      const penalized = samples.map((s, i) => s.reward - 0.1 * kl[i]);
      expect(run.stats.penalizedReward).toBeCloseTo(meanOf(penalized), 6);
      // Value loss ½(v − R)², mean over the 9 samples, times valueCoef (v = v_old: no value clipping).
      samples.forEach((s, i) => expect(run.grads.dValue[0].get(i)).toBeCloseTo((0.8 * (fake.valueOf(s.prompt[0]) - penalized[i])) / 9, 6));
      // Ratio 1, no KL term: dLogp = −A / T with the whitened A of the penalized rewards.
      const A = gaeSingleStep(penalized, samples.map((s) => fake.valueOf(s.prompt[0]))).advantages;
      const T = samples.reduce((n, s) => n + s.response.length, 0);
      samples.forEach((s, i) => run.grads.dLogp[0].get(i)!.forEach((d) => expect(d).toBeCloseTo(-A[i] / T, 6)));
    }
  });

  it('KL as a loss term: dLogp adds klCoef·dKL/dlogp / T to the policy gradient', async () => {
    const samples = fakeSamples((i, k, lp) => lp);
    const config: PpoConfig = { ...baseConfig, advantage: 'grpo', klMode: 'loss', klEstimator: 'k3', klCoef: 0.25, entropyCoef: 0, minibatchSize: 9, microBatchSize: 3, epochs: 1 };
    const run = await runUpdate(samples, config);
    const A = grpoAdvantages(samples.map((s) => s.reward), samples.map((s) => s.group)).advantages;
    const T = samples.reduce((n, s) => n + s.response.length, 0);
    samples.forEach((s, i) =>
      run.grads.dLogp[0].get(i)!.forEach((d, k) => {
        const x = fake.logpOf('reference', s.response[k], s.prompt.length + k) - fake.logpOf('actor', s.response[k], s.prompt.length + k);
        expect(d).toBeCloseTo((-A[i] + 0.25 * (1 - Math.exp(x))) / T, 6);
      }),
    );
  });

  it('PPO-ptx: each actor step adds ptxCoef × the mean NLL per target token of ptxBatchSize expert steps', async () => {
    const samples = fakeSamples((i, k, lp) => lp);
    const ptxExamples: PtxExample[] = [2, 5, 3, 4].map((n, e) => {
      const ids = Array.from({ length: 4 + n }, (_, t) => 200 + 10 * e + t);
      const mask = Uint8Array.from(ids, (_, t) => (t >= 4 ? 1 : 0));
      return { ids, mask, targets: n };
    });
    const config: PpoConfig = { ...baseConfig, advantage: 'grpo', klMode: 'none', ptxCoef: 0.5, ptxBatchSize: 3, minibatchSize: 9, microBatchSize: 2, epochs: 2 };
    const run = await runUpdate(samples, config, ptxExamples);
    expect(fake.rec.actorSteps).toBe(2);
    let meanNll = 0;
    for (const step of [0, 1]) {
      const calls = run.ptx.filter((c) => c.actorSteps === step);
      const picked = calls.flatMap((c) => c.seqs.map((s) => (s[0] - 200) / 10));
      expect(new Set(picked).size).toBe(3);
      const targets = picked.reduce((n, e) => n + ptxExamples[e].targets, 0);
      // One normalizer for the step's calls: ptxCoef × Σ NLL / Σ targets over all its micro-batches.
      for (const c of calls) expect(c.normalizer).toBeCloseTo(targets / 0.5, 12);
      const nll = picked.reduce((sum, e) => sum + ptxExamples[e].ids.reduce((a, tok, t) => a + (t >= 4 ? fake.nllOf(tok, t) : 0), 0), 0);
      meanNll += nll / targets / 2;
    }
    expect(run.stats.ptxLoss).toBeCloseTo(meanNll, 10);
  });

  it('skipped zero-variance groups get no gradient; kept ones are normalized by the kept tokens only', async () => {
    const samples = fakeSamples((i, k, lp) => lp).map((s) => (s.group === 1 ? { ...s, reward: 0.4 } : s));
    const config: PpoConfig = { ...baseConfig, advantage: 'grpo', klMode: 'none', entropyCoef: 0, skipZeroVarianceGroups: true, minibatchSize: 9, microBatchSize: 2, epochs: 1 };
    const run = await runUpdate(samples, config);
    expect(run.stats.skipped).toBe(3);
    const kept = samples.map((_, i) => i).filter((i) => samples[i].group !== 1);
    expect([...run.grads.dLogp[0].keys()].sort()).toEqual(kept);
    const A = grpoAdvantages(samples.map((s) => s.reward), samples.map((s) => s.group)).advantages;
    const T = kept.reduce((n, i) => n + samples[i].response.length, 0);
    kept.forEach((i) => run.grads.dLogp[0].get(i)!.forEach((d) => expect(d).toBeCloseTo(-A[i] / T, 6)));
  });
});

describe('ppoLoss: empty samples (no response tokens) and micro-batch totals', () => {
  // minibatchTotals counts only samples with response tokens, and seq-mean-token-mean divides by that count; the
  // value mean used to divide by every sample without totals but by that count with them, so micro-batches of a
  // minibatch holding an empty sample did not add up to it (or threw when one micro-batch held them all).
  for (const lossAggregation of ['token-mean', 'seq-mean-token-mean'] as const) {
    it(`${lossAggregation}: micro-batches add up to the whole batch, value loss included`, () => {
      const config: PpoLossConfig = { ...DEFAULT_PPO_LOSS, klCoef: 0.3, entropyCoef: 0.05, valueCoef: 0.7, lossAggregation };
      const batch = randomBatch(31, true);
      const lengths = Array.from(batch.lengths);
      expect(lengths.filter((n) => n === 0).length).toBe(2);
      const whole = ppoLoss(batch, config);
      const totals = minibatchTotals(lengths);
      // One micro-batch holding the whole minibatch is the minibatch.
      expect(ppoLoss({ ...batch, totals }, config).loss).toBeCloseTo(whole.loss, 12);
      let [loss, t] = [0, 0];
      const dLogp: number[] = [];
      const dValue: number[] = [];
      for (const [a, b] of [[0, 2], [2, 5], [5, 8]]) {
        const n = lengths.slice(a, b).reduce((x, y) => x + y, 0);
        const tok = (arr?: ArrayLike<number>) => (arr ? Array.from(arr).slice(t, t + n) : undefined);
        const smp = (arr?: ArrayLike<number>) => (arr ? Array.from(arr).slice(a, b) : undefined);
        const part = ppoLoss(
          {
            lengths: lengths.slice(a, b),
            logp: tok(batch.logp)!,
            oldLogp: tok(batch.oldLogp)!,
            refLogp: tok(batch.refLogp),
            entropy: tok(batch.entropy),
            samplerWeights: tok(batch.samplerWeights),
            advantages: smp(batch.advantages)!,
            values: smp(batch.values),
            oldValues: smp(batch.oldValues),
            returns: smp(batch.returns),
            totals,
          },
          config,
        );
        loss += part.loss;
        dLogp.push(...part.dLogp);
        dValue.push(...part.dValue!);
        t += n;
      }
      expect(loss).toBeCloseTo(whole.loss, 12);
      dLogp.forEach((d, i) => expect(d).toBeCloseTo(whole.dLogp[i], 12));
      dValue.forEach((d, i) => expect(d).toBeCloseTo(whole.dValue![i], 12));
      // An empty sample has no action to score: no value-loss term, so no gradient.
      lengths.forEach((n, i) => (n === 0 ? expect(whole.dValue![i]).toBe(0) : expect(whole.dValue![i]).not.toBe(0)));
    });
  }
});
