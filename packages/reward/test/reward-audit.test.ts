// Audit of the reward against the paper's table (arXiv 2505.23723 v1, §3.3), on hand-computed examples that
// reward.test.ts does not cover. Expected values are computed here from the paper's formula, not with src's sigmoid.
import { describe, expect, it } from 'vitest';
import { computeReward, type StepFeedback, type TaskMetric } from '../src/index.js';

const logistic = (x: number) => 1 / (1 + Math.exp(-x));
// packages/env/tasks/house-prices/task.json: MAE, lower is better, m_init 3554.84, m_best 2043.74.
const housePrices: TaskMetric = { name: 'mae', direction: 'minimize', baseline: 3554.84, best: 2043.74 };
const acc: TaskMetric = { name: 'accuracy', direction: 'maximize', baseline: 0.6, best: 0.8 };
const ran = (metric: number | null, previousMetric?: number | null, isEdit = true): StepFeedback => ({ formatValid: true, isEdit, outcome: 'ok', metric, previousMetric });

describe('reward audit: the paper table on a real task', () => {
  it('house-prices: alpha = 100 / (3554.84 - 2043.74), gain = m - m\' since lower MAE is better', () => {
    // gap 1511.10; an MAE of 3500 after the state's 3554.84 gains 54.84 -> sigma(5484 / 1511.1) = 0.9741.
    const better = computeReward(ran(3500, 3554.84), housePrices);
    expect(better.alpha).toBeCloseTo(100 / 1511.1, 12);
    expect(better.gain).toBeCloseTo(54.84, 9);
    expect(better.reward).toBeCloseTo(logistic(5484 / 1511.1), 12);
    expect(better.reward).toBeCloseTo(0.9741, 4);
    // Worse by 10 from a state already at 3000: sigma(-1000 / 1511.1) = 0.3403.
    expect(computeReward(ran(3010, 3000), housePrices).reward).toBeCloseTo(0.3403, 4);
  });

  it('compares against the baseline when the previous metric is null, NaN or infinite (a broken earlier run)', () => {
    // acc: alpha = 100 / 0.2 = 500; 0.61 against the baseline 0.6 -> sigma(5).
    for (const previous of [null, NaN, Infinity, -Infinity]) {
      const r = computeReward(ran(0.61, previous), acc);
      expect(r.gain, String(previous)).toBeCloseTo(0.01, 12);
      expect(r.reward, String(previous)).toBeCloseTo(logistic(5), 12);
    }
  });

  it('an edit that ran no code, or a run that wrote no submission, is neutral; a graded run is scored whether or not it edited', () => {
    expect(computeReward({ formatValid: true, isEdit: true }, acc)).toEqual({ reward: 0.5, reason: 'neutral' });
    expect(computeReward(ran(null, 0.7), acc)).toEqual({ reward: 0.5, reason: 'neutral' });
    // Execute Script of an earlier (unscored) edit: the code's change in score, sigma(500 * -0.02) = sigma(-10).
    expect(computeReward(ran(0.68, 0.7, false), acc).reward).toBeCloseTo(logistic(-10), 12);
  });
});

describe('reward audit: config', () => {
  it('fields given as undefined take their defaults, as Partial<RewardConfig> allows', () => {
    // e.g. { variant: opts.variant } from an optional CLI flag; this threw "reward variant must be ..., got 'undefined'".
    const cfg = { variant: undefined, alphaNumerator: undefined, fallbackGapFraction: undefined, milestoneCredit: undefined };
    expect(computeReward(ran(0.61, 0.6), acc, cfg)).toEqual(computeReward(ran(0.61, 0.6), acc));
    expect(computeReward(ran(0.61, 0.6), acc, { ...cfg, variant: 'v2' }).reward).toBeCloseTo(0.05, 12);
  });
});
