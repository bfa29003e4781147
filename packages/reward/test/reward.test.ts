import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DEFAULT_REWARD_CONFIG, computeReward, durationWeights, metricGap, sigmoid, type StepFeedback, type TaskMetric } from '../src/index.js';

// Fixed seed so CI is reproducible; FC_SEED=<n> explores other inputs.
fc.configureGlobal({ seed: Number(process.env.FC_SEED ?? 20261128) });

const acc: TaskMetric = { name: 'accuracy', direction: 'maximize', baseline: 0.6, best: 0.8 };
const mae: TaskMetric = { name: 'MAE', direction: 'minimize', baseline: 20000, best: 15000 };
const graded = (metric: number, previousMetric?: number): StepFeedback => ({
  formatValid: true,
  isEdit: true,
  outcome: 'ok',
  metric,
  previousMetric,
});

describe('computeReward, the paper table (v1)', () => {
  it('scores format errors and execution errors 0', () => {
    expect(computeReward({ formatValid: false, isEdit: false }, acc)).toEqual({ reward: 0, reason: 'invalid-format' });
    expect(computeReward({ formatValid: true, isEdit: true, outcome: 'error' }, acc).reward).toBe(0);
    expect(computeReward({ formatValid: true, isEdit: true, outcome: 'invalid-submission' }, acc).reward).toBe(0);
  });

  it('scores non-editing actions and corner cases 0.5', () => {
    expect(computeReward({ formatValid: true, isEdit: false }, acc)).toEqual({ reward: 0.5, reason: 'neutral' });
    for (const outcome of ['timeout', 'oom', 'killed', 'resource-limit'] as const) {
      expect(computeReward({ formatValid: true, isEdit: true, outcome }, acc)).toEqual({ reward: 0.5, reason: 'corner-case' });
    }
  });

  it('scores a graded edit sigmoid(100/(best-init) * gain)', () => {
    // alpha = 100 / 0.2 = 500; gain 0.01 -> sigmoid(5)
    const r = computeReward(graded(0.71, 0.7), acc);
    expect(r.reason).toBe('metric-gain');
    expect(r.alpha).toBeCloseTo(500, 9);
    expect(r.reward).toBeCloseTo(sigmoid(5), 12);
    expect(computeReward(graded(0.7, 0.7), acc).reward).toBe(0.5);
  });

  it('flips the sign when lower is better', () => {
    // alpha = 100 / 5000 = 0.02; MAE 19900 after 20000 is a gain of 100 -> sigmoid(2)
    expect(computeReward(graded(19900, 20000), mae).reward).toBeCloseTo(sigmoid(2), 12);
    expect(computeReward(graded(20100, 20000), mae).reward).toBeCloseTo(sigmoid(-2), 12);
  });

  it('compares against the baseline when the state has no previous metric', () => {
    expect(computeReward(graded(0.61), acc).reward).toBeCloseTo(sigmoid(5), 12);
  });

  it('gives NaN and infinite metrics the failure reward, never NaN', () => {
    for (const m of [NaN, Infinity, -Infinity]) {
      expect(computeReward(graded(m, 0.7), acc)).toEqual({ reward: 0, reason: 'invalid-metric' });
      expect(computeReward(graded(m, 0.7), acc, { variant: 'v2' }).reward).toBe(-1);
    }
  });

  it('falls back to 10% of the previous metric as the gap when best = init or either is missing', () => {
    const flat: TaskMetric = { name: 'acc', direction: 'maximize', baseline: 0.5, best: 0.5 };
    const missing: TaskMetric = { name: 'acc', direction: 'maximize' };
    // gap = 0.05 -> alpha = 2000; gain 0.001 -> sigmoid(2)
    expect(computeReward(graded(0.501, 0.5), flat).reward).toBeCloseTo(sigmoid(2), 9);
    expect(computeReward(graded(0.501, 0.5), missing).reward).toBeCloseTo(sigmoid(2), 9);
    // Nothing to compare against at all: neutral.
    expect(computeReward(graded(0.5), missing)).toEqual({ reward: 0.5, reason: 'neutral' });
    // Previous metric 0 and no pair: gap 1.
    expect(computeReward(graded(0.01, 0), missing).alpha).toBe(100);
  });
});

describe('variants', () => {
  it('v2: -1 / 0 / linear gain clipped to [-1, 1]', () => {
    expect(computeReward({ formatValid: false, isEdit: false }, acc, { variant: 'v2' }).reward).toBe(-1);
    expect(computeReward({ formatValid: true, isEdit: false }, acc, { variant: 'v2' }).reward).toBe(0);
    expect(computeReward(graded(0.71, 0.7), acc, { variant: 'v2' }).reward).toBeCloseTo(0.05, 12);
    expect(computeReward(graded(0.99, 0.1), acc, { variant: 'v2' }).reward).toBe(1);
    expect(computeReward(graded(0.1, 0.99), acc, { variant: 'v2' }).reward).toBe(-1);
  });

  it('milestones: partial credit for failed runs, always below a neutral step', () => {
    const failed = (m: StepFeedback['milestones']): StepFeedback => ({ formatValid: true, isEdit: true, outcome: 'error', milestones: m });
    const cfg = { variant: 'milestones' as const };
    expect(computeReward(failed({}), acc, cfg).reward).toBe(0);
    expect(computeReward(failed({ dataLoaded: true }), acc, cfg).reward).toBeCloseTo(0.1, 12);
    expect(computeReward(failed({ dataLoaded: true, modelTrained: true, submissionWritten: true }), acc, cfg).reward).toBeCloseTo(0.3, 12);
  });

  it('rejects invalid configs with a clear error', () => {
    expect(() => computeReward(graded(1), acc, { variant: 'v3' as never })).toThrow(/variant must be/);
    expect(() => computeReward(graded(1), acc, { alphaNumerator: 0 })).toThrow(/alphaNumerator/);
    expect(() => computeReward(graded(1), acc, { milestoneCredit: 0.2 })).toThrow(/milestoneCredit/);
    expect(() => metricGap(acc, 0.7, { ...DEFAULT_REWARD_CONFIG, fallbackGapFraction: -1 })).toThrow(/fallbackGapFraction/);
    expect(() => metricGap(acc, NaN)).toThrow(/previous must be a finite number, got NaN/);
  });

  it('refuses a task direction it would have to guess: a guess could flip the sign of every reward', () => {
    for (const direction of ['lower', 'min', 'Minimize', undefined]) {
      const task = { ...mae, direction } as unknown as TaskMetric;
      expect(() => computeReward(graded(25000), task)).toThrow(new RegExp(`task.direction must be 'maximize' or 'minimize' \\(task MAE\\), got ${direction === undefined ? 'undefined' : `'${direction}'`}`));
    }
  });

  it('refuses feedback fields of the wrong type or an unknown outcome, naming the field', () => {
    const cases: [unknown, RegExp][] = [
      [{ ...graded(0.7), outcome: 'crash' }, /feedback.outcome must be one of ok, error, timeout, oom, killed, resource-limit, invalid-submission, got 'crash'/],
      [{ ...graded(0.7), outcome: 'OOM' }, /feedback.outcome must be one of .*got 'OOM'/],
      [{ ...graded(0.7), metric: '0.7' }, /feedback.metric must be a number or absent, got string '0.7'/],
      [{ ...graded(0.7), previousMetric: '0.6' }, /feedback.previousMetric must be a number or absent, got string '0.6'/],
      [{ ...graded(0.7), formatValid: 'false' }, /feedback.formatValid must be a boolean, got 'false'/],
      [{ ...graded(0.7), isEdit: 1 }, /feedback.isEdit must be a boolean, got 1/],
      [{ ...graded(0.7), milestones: true }, /feedback.milestones must be an object, got true/],
      [undefined, /feedback must be an object, got undefined/],
    ];
    for (const [fb, message] of cases) expect(() => computeReward(fb as StepFeedback, acc), JSON.stringify(fb)).toThrow(message);
    expect(() => computeReward(graded(0.7), undefined as unknown as TaskMetric)).toThrow(/task must be an object, got undefined/);
    expect(() => computeReward(graded(0.7), { ...acc, best: '0.8' } as unknown as TaskMetric)).toThrow(/task.best must be a number or absent, got string '0.8'/);
    // NaN and infinite numbers keep their documented meaning: a broken submission.
    expect(computeReward(graded(NaN), acc)).toEqual({ reward: 0, reason: 'invalid-metric' });
  });
});

describe('properties', () => {
  const metric = fc.oneof(fc.double({ noNaN: false }), fc.constantFrom(NaN, Infinity, -Infinity, 0));
  const maybe = fc.option(metric, { nil: undefined });
  const feedback = fc.record({
    formatValid: fc.boolean(),
    isEdit: fc.boolean(),
    outcome: fc.option(fc.constantFrom('ok', 'error', 'timeout', 'oom', 'killed', 'resource-limit', 'invalid-submission' as const), { nil: undefined }),
    metric: maybe,
    previousMetric: maybe,
  });
  const task = fc.record({
    name: fc.constant('m'),
    direction: fc.constantFrom('maximize' as const, 'minimize' as const),
    baseline: maybe,
    best: maybe,
  });

  it('v1 rewards are always in [0, 1] and v2 in [-1, 1], never NaN', () => {
    fc.assert(
      fc.property(feedback, task, (f, t) => {
        const r1 = computeReward(f, t).reward;
        const r2 = computeReward(f, t, { variant: 'v2' }).reward;
        return r1 >= 0 && r1 <= 1 && r2 >= -1 && r2 <= 1;
      }),
      { numRuns: 5000 },
    );
  });

  it('a better metric never earns less, in either direction', () => {
    const finite = fc.double({ min: -1e6, max: 1e6, noNaN: true });
    fc.assert(
      fc.property(finite, finite, finite, task, (a, b, prev, t) => {
        const [worse, better] = t.direction === 'maximize' ? [Math.min(a, b), Math.max(a, b)] : [Math.max(a, b), Math.min(a, b)];
        const rw = computeReward(graded(worse, prev), t).reward;
        const rb = computeReward(graded(better, prev), t).reward;
        return rb >= rw;
      }),
      { numRuns: 2000 },
    );
  });

  it('stays finite and monotone for denormal metrics (found by the property above)', () => {
    const none: TaskMetric = { name: 'm', direction: 'maximize' };
    const same = computeReward(graded(3e-323, 3e-323), none).reward;
    const worse = computeReward(graded(0, 3e-323), none).reward;
    expect(same).toBe(0.5);
    expect(worse).toBeLessThanOrEqual(same);
    const tiny: TaskMetric = { name: 'm', direction: 'minimize', baseline: 1, best: 1 + 1e-300 };
    expect(Number.isFinite(computeReward(graded(1, 1), tiny).alpha!)).toBe(true);
  });

  it('improvement earns more than 0.5 and regression less, in v1', () => {
    fc.assert(
      fc.property(fc.double({ min: 0.01, max: 10, noNaN: true }), (d) => {
        return computeReward(graded(0.7 + d * 1e-3, 0.7), acc).reward > 0.5 && computeReward(graded(0.7 - d * 1e-3, 0.7), acc).reward < 0.5;
      }),
    );
  });
});

describe('durationWeights', () => {
  it('weights by duration relative to the mean and averages to 1', () => {
    const w = durationWeights([1, 3]);
    expect(w[0]).toBeCloseTo(0.5, 12);
    expect(w[1]).toBeCloseTo(1.5, 12);
    const mixed = durationWeights([2, undefined, 6, NaN]);
    expect(mixed.reduce((s, x) => s + x, 0) / mixed.length).toBeCloseTo(1, 12);
    expect(mixed[2] / mixed[0]).toBeCloseTo(3, 12);
    expect(durationWeights([undefined, undefined])).toEqual([1, 1]);
    expect(durationWeights([0, 0])).toEqual([1, 1]);
  });

  it('stays finite for durations whose sum overflows, and refuses negative durations and non-lists', () => {
    expect(durationWeights([1e308, 1e308])).toEqual([1, 1]);
    const w = durationWeights([1e308, 1e307, undefined]);
    expect(w.every(Number.isFinite)).toBe(true);
    expect(w[0] / w[1]).toBeCloseTo(10, 10);
    expect(() => durationWeights([-5, 10, 10])).toThrow(/duration 0 is negative \(-5 s\)/);
    expect(() => durationWeights(undefined as never)).toThrow(/expected a list of durations, got undefined/);
    expect(() => durationWeights(['3'] as never)).toThrow(/duration 0 must be a number or absent, got string/);
  });
});
