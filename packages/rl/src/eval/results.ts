// What an evaluation produces: one record per trajectory, and per (task, agent) the Table-1 aggregates computed
// from those records. The scoring rule lives here, in one place:
// - a trajectory's score is the best graded metric any of its steps reached (a valid submission.csv);
// - a trajectory without any valid submission scores the task's baseline and counts as no improvement;
// - gain = (score − baseline) / |baseline|, sign-flipped for metrics where lower is better, so > 0 is better;
// - success = gain > 10% (MLAgentBench's definition), up to float rounding.

export type Direction = 'maximize' | 'minimize';

/** The task facts a result row carries, so a result file stands on its own. */
export interface EvalTaskInfo {
  name: string;
  split: string;
  metric: string;
  direction: Direction;
  /** m_init: task.json's baseline, or measured when task.json has none. */
  baseline: number;
}

/** One evaluated trajectory (flat, so the HTML report renders the list as a table). */
export interface EvalTrajectory {
  agent: string;
  task: string;
  /** 0-based index of the trajectory within its task. */
  index: number;
  steps: number;
  /** The score used in the aggregates: bestMetric, or the baseline when there was no valid submission. */
  score: number;
  /** Best graded metric reached, or null when no step produced a valid submission. */
  bestMetric: number | null;
  /** The metric of the final state (last graded submission), or null. */
  finalMetric: number | null;
  submitted: boolean;
  gain: number;
  success: boolean;
  /** Responses that did not parse into a valid action call. */
  formatErrors: number;
  /** Ended by the time budget. */
  timedOut: boolean;
  /** Ended with a Final Answer (rather than the step or time limit). */
  finalAnswer: boolean;
  durationSec: number;
  /** Why the trajectory stopped early when the agent failed (e.g. an endpoint that kept failing). */
  error: string | null;
  /** Steps whose result came from another trajectory's identical step in the same state (absent in older result files). */
  sharedSteps?: number;
}

/** Per (task, agent): the Table-1 cell (avg / best) and the rest of the picture. */
export interface EvalRow {
  task: string;
  split: string;
  metric: string;
  direction: Direction;
  agent: string;
  baseline: number;
  avg: number;
  best: number;
  /** Relative gain over the baseline of the average and of the best score (> 0: better). */
  avgGain: number;
  bestGain: number;
  /** Fraction of trajectories with gain > 10%. */
  successRate: number;
  /** Fraction of all steps whose response did not parse. */
  formatErrorRate: number;
  meanSteps: number;
  trajectories: number;
  /** Trajectories with at least one valid submission. */
  submitted: number;
  timedOut: number;
  failed: number;
}

/** The settings an agent was evaluated with (one row per agent in the report). */
export interface EvalAgentInfo {
  name: string;
  kind: string;
  trajectories: number;
  maxSteps: number;
  timeBudgetSec: number;
  seed: number;
  temperature: number | null;
  /** Model dir, adapter dir, endpoint URL: whatever identifies the agent. */
  detail: string;
  /** The agent's own summary (e.g. tokens generated, prompts cut to the context); after a resume, of the resumed process only, and saying so. */
  notes: string;
  startedAt: string;
  durationSec: number;
  /** Whether identical steps in the same state ran once (absent in older result files, whose steps all ran). */
  shareIdenticalSteps?: boolean;
}

/** eval.json. `rows`, `agents` and `trajectories` are lists of flat objects: `mlagent report` shows each as a table. */
export interface EvalResult {
  format: 'mlagent-eval';
  version: 1;
  agents: EvalAgentInfo[];
  rows: EvalRow[];
  trajectories: EvalTrajectory[];
}

/** Success threshold on the relative gain (MLAgentBench: more than 10% improvement). */
export const SUCCESS_GAIN = 0.1;

/**
 * Rounding slack on that threshold: a score exactly 10% better is not "more than 10%", yet (0.66 − 0.6) / 0.6
 * computes as 0.10000000000000009. Far below any real metric's precision.
 */
const SUCCESS_SLACK = 1e-12;

export function isBetter(a: number, b: number, direction: Direction): boolean {
  return direction === 'maximize' ? a > b : a < b;
}

/** (score − baseline) / |baseline|, positive when the score is better; 0 for a zero baseline that is matched. */
export function relativeGain(score: number, baseline: number, direction: Direction): number {
  const diff = direction === 'maximize' ? score - baseline : baseline - score;
  if (baseline === 0) return diff === 0 ? 0 : diff > 0 ? Infinity : -Infinity;
  return diff / Math.abs(baseline);
}

/** A trajectory's score, gain and success from the best metric it reached (null: no valid submission). */
export function scoreTrajectory(bestMetric: number | null, task: EvalTaskInfo): { score: number; submitted: boolean; gain: number; success: boolean } {
  if (bestMetric === null) return { score: task.baseline, submitted: false, gain: 0, success: false };
  const gain = relativeGain(bestMetric, task.baseline, task.direction);
  return { score: bestMetric, submitted: true, gain, success: gain > SUCCESS_GAIN + SUCCESS_SLACK };
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

/** The row of one (task, agent) from its trajectories and the total number of steps with a format error. */
export function aggregateTask(task: EvalTaskInfo, agent: string, trajectories: readonly EvalTrajectory[]): EvalRow {
  if (trajectories.length === 0) throw new Error(`eval: no trajectories of ${agent} on ${task.name} to aggregate`);
  const scores = trajectories.map((t) => t.score);
  const avg = mean(scores);
  const best = scores.reduce((b, s) => (isBetter(s, b, task.direction) ? s : b));
  const steps = trajectories.reduce((n, t) => n + t.steps, 0);
  const formatErrors = trajectories.reduce((n, t) => n + t.formatErrors, 0);
  return {
    task: task.name,
    split: task.split,
    metric: task.metric,
    direction: task.direction,
    agent,
    baseline: task.baseline,
    avg,
    best,
    avgGain: relativeGain(avg, task.baseline, task.direction),
    bestGain: relativeGain(best, task.baseline, task.direction),
    successRate: trajectories.filter((t) => t.success).length / trajectories.length,
    formatErrorRate: steps === 0 ? 0 : formatErrors / steps,
    meanSteps: steps / trajectories.length,
    trajectories: trajectories.length,
    submitted: trajectories.filter((t) => t.submitted).length,
    timedOut: trajectories.filter((t) => t.timedOut).length,
    failed: trajectories.filter((t) => t.error !== null).length,
  };
}
