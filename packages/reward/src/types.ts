/** How one execution of the agent's code ended, as the environment classifies it. */
export type ExecutionOutcome = 'ok' | 'error' | 'timeout' | 'oom' | 'killed' | 'resource-limit' | 'invalid-submission';

/** Progress markers the environment can detect in a run, for partial credit. */
export interface Milestones {
  dataLoaded?: boolean;
  modelTrained?: boolean;
  submissionWritten?: boolean;
}

/** What the environment reports about one agent step: all the reward looks at. */
export interface StepFeedback {
  /** The response parsed into a known action with valid arguments. */
  formatValid: boolean;
  /** The action changed the workspace's code (Edit Script (AI), Edit Script Segment (AI), Write File, ...). */
  isEdit: boolean;
  /** Set when the step ran the agent's code. */
  outcome?: ExecutionOutcome;
  /** Metric of the submission this step produced, when it was graded. */
  metric?: number | null;
  /** Metric of the state the step started from; falls back to the task's baseline. */
  previousMetric?: number | null;
  /** Wall seconds the step's execution took (for duration-aware weighting). */
  durationSec?: number;
  milestones?: Milestones;
}

/** What the reward needs from a task: its metric's direction, baseline and reference best. */
export interface TaskMetric {
  name: string;
  direction: 'maximize' | 'minimize';
  /** m_init: the baseline train.py's score. */
  baseline?: number | null;
  /** m_best: a reference best score for the task. */
  best?: number | null;
}

export type RewardVariant = 'v1' | 'v2' | 'milestones';

export interface RewardConfig {
  /**
   * v1 (default): the paper's 0 / 0.5 / sigmoid(alpha * gain).
   * v2: -1 for errors, 0 for neutral steps, gain / |m_best - m_init| clipped to [-1, 1] for graded edits.
   * milestones: v1, but a failed run earns partial credit per milestone reached (below the 0.5 of a neutral step).
   */
  variant: RewardVariant;
  /** alpha = alphaNumerator / |m_best - m_init| (the paper's 100). */
  alphaNumerator: number;
  /**
   * When m_best or m_init is missing or equal, the gap that counts as "a full improvement" is this fraction of
   * |previous metric| (or 1 when that is 0 too), so the reward stays finite and direction-correct.
   */
  fallbackGapFraction: number;
  /** Credit per milestone for the milestones variant. Three milestones must stay below the neutral 0.5. */
  milestoneCredit: number;
}

export const DEFAULT_REWARD_CONFIG: RewardConfig = {
  variant: 'v1',
  alphaNumerator: 100,
  fallbackGapFraction: 0.1,
  milestoneCredit: 0.1,
};

/** Why a reward was given: every branch of the table has its own reason, for logs and tests. */
export type RewardReason =
  | 'invalid-format'
  | 'execution-error'
  | 'invalid-metric'
  | 'corner-case'
  | 'neutral'
  | 'metric-gain';

export interface RewardResult {
  reward: number;
  reason: RewardReason;
  /** Signed improvement (positive = better), when a metric was compared. */
  gain?: number;
  /** The alpha used, when a metric was compared. */
  alpha?: number;
}
