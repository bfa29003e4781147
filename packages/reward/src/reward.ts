import { DEFAULT_REWARD_CONFIG, type RewardConfig, type RewardResult, type StepFeedback, type TaskMetric } from './types.js';

/** Runs that hit a resource wall are not the agent's bug: they earn the neutral reward. */
const CORNER_CASES = new Set(['timeout', 'oom', 'killed', 'resource-limit']);

/**
 * The ML-Agent reward for one step (arXiv 2505.23723, section 3.3), as a pure function of the environment's
 * feedback and the task's metric:
 *
 * | feedback                                            | v1            | v2                 |
 * |-----------------------------------------------------|---------------|--------------------|
 * | unparseable response / invalid action               | 0             | -1                 |
 * | execution error, invalid submission, NaN/inf metric | 0             | -1                 |
 * | valid step without a graded metric, or corner case  | 0.5           | 0                  |
 * | graded metric m' after previous m                   | σ(α·gain)     | clip(gain/gap,±1)  |
 *
 * gain = m' - m, negated when lower is better; α = 100 / |m_best - m_init|. A graded metric counts whether it
 * came from an edit followed by execution or from executing an earlier edit: it is the code's change in score.
 */
export function computeReward(
  feedback: StepFeedback,
  task: TaskMetric,
  config: Partial<RewardConfig> = {},
): RewardResult {
  const cfg = { ...DEFAULT_REWARD_CONFIG, ...config };
  validateConfig(cfg);
  const v2 = cfg.variant === 'v2';
  const failure = v2 ? -1 : 0;
  const neutral = v2 ? 0 : 0.5;

  if (!feedback.formatValid) return { reward: failure, reason: 'invalid-format' };

  const outcome = feedback.outcome;
  if (outcome === 'error' || outcome === 'invalid-submission') {
    if (cfg.variant === 'milestones') return { reward: milestoneReward(feedback, cfg), reason: 'execution-error' };
    return { reward: failure, reason: 'execution-error' };
  }
  if (outcome && CORNER_CASES.has(outcome)) return { reward: neutral, reason: 'corner-case' };

  const metric = feedback.metric;
  if (metric === undefined || metric === null) return { reward: neutral, reason: 'neutral' };
  // A NaN or infinite score is a broken submission, never a gain.
  if (!Number.isFinite(metric)) return { reward: failure, reason: 'invalid-metric' };

  const previous = finiteOr(feedback.previousMetric, finiteOr(task.baseline, undefined));
  if (previous === undefined) return { reward: neutral, reason: 'neutral' };

  const sign = task.direction === 'minimize' ? -1 : 1;
  const gain = sign * (metric - previous);
  const gap = metricGap(task, previous, cfg);
  const alpha = cfg.alphaNumerator / gap;
  if (v2) return { reward: clip(gain / gap, -1, 1), reason: 'metric-gain', gain, alpha };
  return { reward: sigmoid(alpha * gain), reason: 'metric-gain', gain, alpha };
}

/** Gaps below this are treated as this, so alpha stays finite (a denormal gap would make it infinite). */
const MIN_GAP = 1e-12;

/** |m_best - m_init|, or the documented fallback when the task lacks a usable pair. Always >= MIN_GAP. */
export function metricGap(task: TaskMetric, previous: number, cfg: RewardConfig = DEFAULT_REWARD_CONFIG): number {
  const best = finiteOr(task.best, undefined);
  const init = finiteOr(task.baseline, undefined);
  if (best !== undefined && init !== undefined && best !== init) return Math.max(MIN_GAP, Math.abs(best - init));
  const fallback = cfg.fallbackGapFraction * Math.abs(previous);
  return fallback > 0 ? Math.max(MIN_GAP, fallback) : 1;
}

function milestoneReward(feedback: StepFeedback, cfg: RewardConfig): number {
  const m = feedback.milestones ?? {};
  const reached = [m.dataLoaded, m.modelTrained, m.submissionWritten].filter(Boolean).length;
  return reached * cfg.milestoneCredit;
}

function validateConfig(cfg: RewardConfig): void {
  if (!['v1', 'v2', 'milestones'].includes(cfg.variant)) {
    throw new RangeError(`reward variant must be v1, v2 or milestones, got '${cfg.variant}'`);
  }
  if (!(cfg.alphaNumerator > 0 && Number.isFinite(cfg.alphaNumerator))) {
    throw new RangeError(`alphaNumerator must be a positive finite number, got ${cfg.alphaNumerator}`);
  }
  if (!(cfg.fallbackGapFraction > 0 && Number.isFinite(cfg.fallbackGapFraction))) {
    throw new RangeError(`fallbackGapFraction must be a positive finite number, got ${cfg.fallbackGapFraction}`);
  }
  if (!(cfg.milestoneCredit >= 0 && cfg.milestoneCredit * 3 < 0.5)) {
    throw new RangeError(`milestoneCredit must be in [0, 1/6) so three milestones stay below 0.5, got ${cfg.milestoneCredit}`);
  }
}

/** Numerically safe logistic: never NaN for finite or infinite input. */
export function sigmoid(x: number): number {
  if (x >= 0) return 1 / (1 + Math.exp(-x));
  const e = Math.exp(x);
  return e / (1 + e);
}

function clip(x: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, x));
}

function finiteOr<T>(x: number | null | undefined, fallback: T): number | T {
  return typeof x === 'number' && Number.isFinite(x) ? x : fallback;
}
