import { describe, expect, it } from 'vitest';
import { SeededRng } from '@mlagent/core-kernels';
import { DEFAULT_PPO_LOSS, explainedVariance, klToReference, minibatchTotals, ppoLoss, tokenWeights, valueLoss, type PpoBatch, type PpoLossConfig } from '../src/ppo/loss.js';

const noExtras: PpoLossConfig = { ...DEFAULT_PPO_LOSS, klCoef: 0, entropyCoef: 0, valueCoef: 0, valueClip: null, dualClip: null };

function oneToken(advantage: number, ratio: number, config: Partial<PpoLossConfig> = {}) {
  return ppoLoss({ lengths: [1], logp: [Math.log(ratio)], oldLogp: [0], advantages: [advantage] }, { ...noExtras, ...config });
}

describe('clipped surrogate, hand-computed', () => {
  it('positive advantage inside the clip range: loss −A·ratio, gradient −A·ratio', () => {
    const r = oneToken(2, 1.1);
    expect(r.loss).toBeCloseTo(-2.2, 12);
    expect(r.dLogp[0]).toBeCloseTo(-2.2, 12);
    expect(r.stats.clipFrac).toBe(0);
  });
  it('positive advantage above 1 + ε: loss −A·(1 + ε), no gradient', () => {
    const r = oneToken(1, 1.5);
    expect(r.loss).toBeCloseTo(-1.2, 12);
    expect(r.dLogp[0]).toBe(0);
    expect(r.stats.clipFrac).toBe(1);
  });
  it('positive advantage below 1 − ε keeps the unclipped (larger) loss and its gradient', () => {
    const r = oneToken(1, 0.5);
    expect(r.loss).toBeCloseTo(-0.5, 12);
    expect(r.dLogp[0]).toBeCloseTo(-0.5, 12);
    expect(r.stats.clipFrac).toBe(0);
  });
  it('negative advantage below 1 − ε: loss −A·(1 − ε), no gradient', () => {
    const r = oneToken(-1, 0.5);
    expect(r.loss).toBeCloseTo(0.8, 12);
    expect(r.dLogp[0]).toBe(0);
  });
  it('negative advantage and a huge ratio: unbounded without dual clip, capped at −A·c with it', () => {
    const plain = oneToken(-1, 5);
    expect(plain.loss).toBeCloseTo(5, 12);
    expect(plain.dLogp[0]).toBeCloseTo(5, 12);
    const dual = oneToken(-1, 5, { dualClip: 3 });
    expect(dual.loss).toBeCloseTo(3, 12);
    expect(dual.dLogp[0]).toBe(0);
    expect(dual.stats.dualClipFrac).toBe(1);
    const under = oneToken(-1, 2, { dualClip: 3 });
    expect(under.loss).toBeCloseTo(2, 12);
    expect(under.dLogp[0]).toBeCloseTo(2, 12);
    expect(under.stats.dualClipFrac).toBe(0);
  });
  it('token-mean weighs tokens, seq-mean-token-mean weighs samples', () => {
    // Sample 0: one token with A = 1; sample 1: three tokens with A = −1; all ratios 1.
    const batch: PpoBatch = { lengths: [1, 3], logp: [0, 0, 0, 0], oldLogp: [0, 0, 0, 0], advantages: [1, -1] };
    expect(ppoLoss(batch, noExtras).loss).toBeCloseTo((-1 + 3) / 4, 12);
    expect(ppoLoss(batch, { ...noExtras, lossAggregation: 'seq-mean-token-mean' }).loss).toBeCloseTo((-1 + 1) / 2, 12);
    expect(Array.from(tokenWeights([1, 3], 'seq-mean-token-mean'))).toEqual([0.5, 1 / 6, 1 / 6, 1 / 6]);
  });
});

describe('KL, entropy and value terms, hand-computed', () => {
  it('k1 and k3 estimators', () => {
    expect(klToReference(-1, -2, 'k1')).toEqual({ kl: 1, dKl: 1 });
    const k3 = klToReference(-1, -2, 'k3');
    expect(k3.kl).toBeCloseTo(Math.exp(-1) + 1 - 1, 12);
    expect(k3.dKl).toBeCloseTo(1 - Math.exp(-1), 12);
    expect(klToReference(-0.7, -0.7, 'k3')).toEqual({ kl: 0, dKl: 0 });
  });
  it('KL loss term and entropy bonus enter the total with their coefficients', () => {
    const batch: PpoBatch = { lengths: [2], logp: [-1, -1], oldLogp: [-1, -1], refLogp: [-2, -1], entropy: [0.5, 1.5], advantages: [0] };
    const r = ppoLoss(batch, { ...noExtras, klCoef: 0.1, klEstimator: 'k1', entropyCoef: 0.01 });
    expect(r.klLoss).toBeCloseTo(0.5, 12); // (1 + 0) / 2
    expect(r.entropyLoss).toBeCloseTo(1, 12);
    expect(r.loss).toBeCloseTo(0.1 * 0.5 - 0.01 * 1, 12);
    expect(Array.from(r.dLogp)).toEqual([0.05, 0.05]);
    expect(Array.from(r.dEntropy)).toEqual([-0.005, -0.005]);
    expect(r.stats.entropy).toBeCloseTo(1, 12);
    expect(r.stats.refKl).toBeCloseTo(0.5, 12);
  });
  it('value clipping: loss and gradient of the larger branch', () => {
    const r = valueLoss({ values: [1, 0.3, 1], oldValues: [0, 0, 0], returns: [2, 2, 0.2] }, 0.5);
    // 0.5·(0.5 − 2)² (clipped, no gradient); 0.5·(0.3 − 2)² (inside the range); 0.5·(1 − 0.2)² (unclipped is larger).
    expect(r.loss).toBeCloseTo((1.125 + 1.445 + 0.32) / 3, 12);
    expect(r.dValue[0]).toBe(0);
    expect(r.dValue[1]).toBeCloseTo(-1.7 / 3, 12);
    expect(r.dValue[2]).toBeCloseTo(0.8 / 3, 12);
    expect(r.clipFrac).toBeCloseTo(1 / 3, 12);
  });
  it('explained variance is 1 for a perfect critic and 0 for the mean', () => {
    expect(explainedVariance([1, 2, 3], [1, 2, 3])).toBeCloseTo(1, 12);
    expect(explainedVariance([2, 2, 2], [1, 2, 3])).toBeCloseTo(0, 12);
    expect(explainedVariance([0, 0], [1, 1])).toBeNaN();
  });
});

describe('gradient coefficients against finite differences of the scalar loss', () => {
  function randomBatch(seed: number): PpoBatch {
    const rng = new SeededRng(seed);
    const lengths = [3, 1, 5, 2, 4, 6];
    const T = lengths.reduce((a, b) => a + b, 0);
    const oldLogp = Array.from({ length: T }, () => -0.2 - 3 * rng.uniform());
    // Log-ratios spread over ±1.5 so tokens land in every branch: inside, clipped, dual-clipped.
    const logp = oldLogp.map((o) => o + 3 * (rng.uniform() - 0.5));
    const refLogp = oldLogp.map((o) => o + (rng.uniform() - 0.5));
    const entropy = Array.from({ length: T }, () => 2 * rng.uniform());
    const advantages = lengths.map(() => 2 * rng.normal());
    const oldValues = lengths.map(() => rng.normal());
    const values = oldValues.map((v) => v + 2 * (rng.uniform() - 0.5));
    const returns = lengths.map(() => rng.normal());
    return { lengths, logp, oldLogp, refLogp, entropy, advantages, values, oldValues, returns };
  }

  function numericGradient(batch: PpoBatch, config: PpoLossConfig, key: 'logp' | 'entropy' | 'values', i: number): number {
    const h = 1e-6;
    const at = (delta: number) => {
      const arr = Array.from(batch[key]!);
      arr[i] += delta;
      return ppoLoss({ ...batch, [key]: arr }, config).loss;
    };
    return (at(h) - at(-h)) / (2 * h);
  }

  const configs: [string, PpoLossConfig][] = [
    ['k3 loss, dual clip, value clip, token-mean', { ...DEFAULT_PPO_LOSS, klCoef: 0.3, klEstimator: 'k3', entropyCoef: 0.05, valueCoef: 0.7 }],
    ['k1 loss, no dual clip, no value clip, seq-mean', { ...DEFAULT_PPO_LOSS, klCoef: 0.2, klEstimator: 'k1', entropyCoef: 0.1, dualClip: null, valueClip: null, lossAggregation: 'seq-mean-token-mean' }],
  ];
  for (const [name, config] of configs) {
    it(name, () => {
      let checked = 0;
      for (const seed of [1, 2, 3]) {
        const batch = randomBatch(seed);
        const r = ppoLoss(batch, config);
        if (config.dualClip !== null) expect(r.stats.dualClipFrac).toBeGreaterThan(0);
        expect(r.stats.clipFrac).toBeGreaterThan(0);
        expect(r.stats.clipFrac).toBeLessThan(1);
        for (let t = 0; t < batch.logp.length; t++) {
          expect(r.dLogp[t]).toBeCloseTo(numericGradient(batch, config, 'logp', t), 6);
          expect(r.dEntropy[t]).toBeCloseTo(numericGradient(batch, config, 'entropy', t), 6);
          checked++;
        }
        for (let i = 0; i < batch.lengths.length; i++) expect(r.dValue![i]).toBeCloseTo(numericGradient(batch, config, 'values', i), 6);
      }
      expect(checked).toBe(63);
    });

    it(`${name}: micro-batches normalized by the minibatch's totals add up to the minibatch`, () => {
      const batch = randomBatch(4);
      const whole = ppoLoss(batch, config);
      const totals = minibatchTotals(batch.lengths);
      let loss = 0;
      const dLogp: number[] = [];
      const dValue: number[] = [];
      // Samples [0, 2), [2, 3), [3, 6) and their tokens.
      let t = 0;
      for (const [a, b] of [[0, 2], [2, 3], [3, 6]]) {
        const lengths = Array.from(batch.lengths).slice(a, b);
        const n = lengths.reduce((x, y) => x + y, 0);
        const tokens = <T,>(arr: ArrayLike<T>) => Array.from(arr).slice(t, t + n);
        const samples = <T,>(arr: ArrayLike<T>) => Array.from(arr).slice(a, b);
        const part = ppoLoss(
          {
            lengths,
            logp: tokens(batch.logp),
            oldLogp: tokens(batch.oldLogp),
            refLogp: tokens(batch.refLogp!),
            entropy: tokens(batch.entropy!),
            advantages: samples(batch.advantages),
            values: samples(batch.values!),
            oldValues: samples(batch.oldValues!),
            returns: samples(batch.returns!),
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
    });
  }
});

describe('truncated importance weights of the sampler (samplerWeights)', () => {
  const batch: PpoBatch = {
    lengths: [2, 3],
    logp: [-1.0, -0.4, -2.0, -0.7, -1.3],
    oldLogp: [-1.1, -0.3, -1.2, -0.9, -1.3],
    refLogp: [-1.2, -0.5, -1.9, -0.6, -1.0],
    entropy: [0.5, 1.2, 0.3, 0.9, 1.1],
    advantages: [1.5, -0.8],
  };
  const config: PpoLossConfig = { ...DEFAULT_PPO_LOSS, klCoef: 0.3, entropyCoef: 0.05, valueCoef: 0 };

  it('scale the policy term, not the KL or entropy terms', () => {
    const plain = ppoLoss(batch, config);
    const half = ppoLoss({ ...batch, samplerWeights: [0.5, 0.5, 0.5, 0.5, 0.5] }, config);
    expect(half.policyLoss).toBeCloseTo(plain.policyLoss / 2, 12);
    expect(half.klLoss).toBeCloseTo(plain.klLoss, 12);
    expect(half.entropyLoss).toBeCloseTo(plain.entropyLoss, 12);
    expect(ppoLoss({ ...batch, samplerWeights: [1, 1, 1, 1, 1] }, config).loss).toBeCloseTo(plain.loss, 12);
  });

  it("weigh each token's gradient as its loss (finite differences)", () => {
    const weighted = { ...batch, samplerWeights: [0.2, 1.7, 1.0, 0.6, 2.0] };
    const r = ppoLoss(weighted, config);
    for (let t = 0; t < batch.logp.length; t++) {
      const at = (d: number) => ppoLoss({ ...weighted, logp: Array.from(batch.logp, (x, k) => (k === t ? x + d : x)) }, config).loss;
      expect(r.dLogp[t]).toBeCloseTo((at(1e-6) - at(-1e-6)) / 2e-6, 6);
    }
    expect(() => ppoLoss({ ...batch, samplerWeights: [1, 1, -1, 1, 1] }, config)).toThrow(/samplerWeights\[2\] = -1 is not a finite weight >= 0/);
    expect(() => ppoLoss({ ...batch, samplerWeights: [1, 1] }, config)).toThrow(/samplerWeights has 2 entries, lengths sum to 5 tokens/);
  });
});

describe('input checks', () => {
  it('names the array whose length is wrong', () => {
    expect(() => ppoLoss({ lengths: [2], logp: [0], oldLogp: [0, 0], advantages: [1] }, noExtras)).toThrow(/logp has 1 entries, lengths sum to 2/);
    expect(() => ppoLoss({ lengths: [1], logp: [0], oldLogp: [0], advantages: [1, 2] }, noExtras)).toThrow(/advantages has 2 entries for 1 samples/);
  });
  it('names what the config needs', () => {
    expect(() => ppoLoss({ lengths: [1], logp: [0], oldLogp: [0], advantages: [1] }, { ...noExtras, klCoef: 0.1 })).toThrow(/refLogp is required/);
    expect(() => ppoLoss({ lengths: [1], logp: [0], oldLogp: [0], advantages: [1] }, { ...noExtras, valueCoef: 0.5 })).toThrow(/values is required/);
  });
  it('rejects non-finite log-probabilities and bad clip settings', () => {
    expect(() => ppoLoss({ lengths: [1], logp: [NaN], oldLogp: [0], advantages: [1] }, noExtras)).toThrow(/non-finite logp/);
    expect(() => ppoLoss({ lengths: [1], logp: [0], oldLogp: [0], advantages: [1] }, { ...noExtras, dualClip: 1 })).toThrow(/dualClip must be > 1/);
    expect(() => ppoLoss({ lengths: [2], logp: [0, 0], oldLogp: [0, 0], advantages: [1], totals: { tokens: 1, samples: 1 } }, noExtras)).toThrow(
      /totals \{"tokens":1,"samples":1\} cannot hold this micro-batch's 2 tokens in 1 samples/,
    );
    expect(() => valueLoss({ values: [1, 2], returns: [0, 0] }, null, 1)).toThrow(/the minibatch's samples \(1\) must be an integer of at least this batch's 2/);
  });
});
