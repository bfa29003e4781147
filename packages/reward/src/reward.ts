import { DEFAULT_REWARD_CONFIG, type ExecutionOutcome, type RewardConfig, type RewardResult, type StepFeedback, type TaskMetric } from './types.js';

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
  const cfg = withDefaults(config);
  validateConfig(cfg);
  checkFeedback(feedback);
  checkTask(task);
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
  validateConfig(cfg);
  checkTask(task);
  if (!Number.isFinite(previous)) throw new RangeError(`metricGap: previous must be a finite number, got ${previous}`);
  const best = finiteOr(task.best, undefined);
  const init = finiteOr(task.baseline, undefined);
  if (best !== undefined && init !== undefined && best !== init) return Math.max(MIN_GAP, Math.abs(best - init));
  const fallback = cfg.fallbackGapFraction * Math.abs(previous);
  return fallback > 0 ? Math.max(MIN_GAP, fallback) : 1;
}

/** The config with its defaults; a field given as undefined (which Partial allows) takes its default too. */
function withDefaults(config: Partial<RewardConfig>): RewardConfig {
  const given = Object.fromEntries(Object.entries(config ?? {}).filter(([, v]) => v !== undefined)) as Partial<RewardConfig>;
  return { ...DEFAULT_REWARD_CONFIG, ...given };
}

function milestoneReward(feedback: StepFeedback, cfg: RewardConfig): number {
  const m = feedback.milestones ?? {};
  const reached = [m.dataLoaded, m.modelTrained, m.submissionWritten].filter(Boolean).length;
  return reached * cfg.milestoneCredit;
}

const OUTCOMES: readonly ExecutionOutcome[] = ['ok', 'error', 'timeout', 'oom', 'killed', 'resource-limit', 'invalid-submission'];
const DIRECTIONS: readonly TaskMetric['direction'][] = ['maximize', 'minimize'];

const show = (v: unknown) => (typeof v === 'string' ? `'${v}'` : typeof v === 'number' ? String(v) : JSON.stringify(v) ?? String(v));

/** A number, or absent (undefined/null). NaN and infinities pass: they have a meaning of their own. */
function optionalNumber(v: unknown, field: string): void {
  if (v !== undefined && v !== null && typeof v !== 'number') throw new TypeError(`reward: ${field} must be a number or absent, got ${typeof v} ${show(v)}`);
}

/**
 * Feedback comes from environments other than ours too (the package is used on its own): a field of the wrong type
 * or an unknown outcome would silently land in the wrong row of the table (a 'crash' graded as a success, a metric
 * parsed as a string punished as invalid), so it is refused.
 */
function checkFeedback(fb: StepFeedback): void {
  if (typeof fb !== 'object' || fb === null) throw new TypeError(`reward: feedback must be an object, got ${show(fb)}`);
  if (typeof fb.formatValid !== 'boolean') throw new TypeError(`reward: feedback.formatValid must be a boolean, got ${show(fb.formatValid)}`);
  if (fb.isEdit !== undefined && typeof fb.isEdit !== 'boolean') throw new TypeError(`reward: feedback.isEdit must be a boolean, got ${show(fb.isEdit)}`);
  if (fb.outcome !== undefined && !OUTCOMES.includes(fb.outcome)) {
    throw new RangeError(`reward: feedback.outcome must be one of ${OUTCOMES.join(', ')}, got ${show(fb.outcome)}`);
  }
  optionalNumber(fb.metric, 'feedback.metric');
  optionalNumber(fb.previousMetric, 'feedback.previousMetric');
  optionalNumber(fb.durationSec, 'feedback.durationSec');
  if (fb.milestones !== undefined && (typeof fb.milestones !== 'object' || fb.milestones === null)) {
    throw new TypeError(`reward: feedback.milestones must be an object, got ${show(fb.milestones)}`);
  }
}

function checkTask(task: TaskMetric): void {
  if (typeof task !== 'object' || task === null) throw new TypeError(`reward: task must be an object, got ${show(task)}`);
  // Anything but these two would have to be guessed, and a wrong guess flips the sign of every reward.
  if (!DIRECTIONS.includes(task.direction)) {
    throw new RangeError(`reward: task.direction must be 'maximize' or 'minimize'${task.name ? ` (task ${task.name})` : ''}, got ${show(task.direction)}`);
  }
  optionalNumber(task.baseline, 'task.baseline');
  optionalNumber(task.best, 'task.best');
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
