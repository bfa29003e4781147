import { describe, expect, it } from 'vitest';
import { gaeSingleStep, grpoAdvantages, klPenalizedRewards, normalizeAdvantages, rlooAdvantages } from '../src/ppo/advantages.js';

describe('single-step GAE', () => {
  it('A = r − V, returns = r, whitened over the batch with the unbiased variance', () => {
    const r = gaeSingleStep([1, 0], [0.5, 0.5]);
    const s = 1 / Math.sqrt(0.5 + 1e-8);
    expect(r.advantages[0]).toBeCloseTo(0.5 * s, 10);
    expect(r.advantages[1]).toBeCloseTo(-0.5 * s, 10);
    expect(Array.from(r.returns!)).toEqual([1, 0]);
    expect(Array.from(gaeSingleStep([1, 0, 2], [0.5, 0.5, 0], false).advantages)).toEqual([0.5, -0.5, 2]);
  });
  it('normalization needs two samples and says so', () => {
    expect(() => normalizeAdvantages([1])).toThrow(/at least 2 samples/);
    expect(() => gaeSingleStep([1, NaN], [0, 0])).toThrow(/non-finite value NaN at index 1/);
  });
});

describe('GRPO', () => {
  it('normalizes within each state group; a zero-variance group gets 0 and is reported', () => {
    const r = grpoAdvantages([1, 0, 0.5, 0.5, 0.5, 0.5, 2], [0, 0, 0, 1, 1, 1, 2]);
    const s = 1 / (0.5 + 1e-6); // unbiased std of {1, 0, 0.5} is 0.5
    expect(r.advantages[0]).toBeCloseTo(0.5 * s, 10);
    expect(r.advantages[1]).toBeCloseTo(-0.5 * s, 10);
    expect(r.advantages[2]).toBe(0);
    expect(Array.from(r.advantages.slice(3))).toEqual([0, 0, 0, 0]);
    expect(r.zeroVarianceGroups).toEqual([1, 2]); // group 2 has a single sample: no baseline either
    expect(r.keep.every(Boolean)).toBe(true);
    expect(r.returns).toBeNull();
  });
  it('skipZeroVariance drops those samples; scaleByStd false only centres', () => {
    const r = grpoAdvantages([1, 0, 3, 3], [7, 7, 8, 8], { skipZeroVariance: true, scaleByStd: false });
    expect(Array.from(r.advantages)).toEqual([0.5, -0.5, 0, 0]);
    expect(r.keep).toEqual([true, true, false, false]);
    expect(r.zeroVarianceGroups).toEqual([8]);
  });
  it('groups need not be contiguous', () => {
    const r = grpoAdvantages([1, 5, 0, 5], [0, 1, 0, 1]);
    expect(r.advantages[0]).toBeGreaterThan(0);
    expect(r.advantages[2]).toBeLessThan(0);
    expect(r.zeroVarianceGroups).toEqual([1]);
  });
});

describe('RLOO', () => {
  it('subtracts the mean of the other samples of the group', () => {
    const r = rlooAdvantages([1, 0, 0.5, 2, 4], [0, 0, 0, 1, 1]);
    expect(Array.from(r.advantages)).toEqual([0.75, -0.75, 0, -2, 2]);
    expect(r.zeroVarianceGroups).toEqual([]);
  });
  it('reports zero-variance groups and rejects singleton groups', () => {
    expect(rlooAdvantages([1, 1], [0, 0]).zeroVarianceGroups).toEqual([0]);
    expect(() => rlooAdvantages([1, 2, 3], [0, 0, 1])).toThrow(/group 1 has 1 sample\(s\), at least 2 needed/);
  });
});

describe('KL in the reward', () => {
  it('subtracts β times the summed KL of each sample', () => {
    expect(Array.from(klPenalizedRewards([1, 0.5], [2, 0], 0.1))).toEqual([0.8, 0.5]);
    expect(() => klPenalizedRewards([1], [1, 2], 0.1)).toThrow(/1 rewards but 2 KL values/);
  });
});
