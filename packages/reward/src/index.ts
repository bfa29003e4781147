export { computeReward, metricGap, sigmoid } from './reward.js';
export { durationWeights } from './duration.js';
export {
  DEFAULT_REWARD_CONFIG,
  type ExecutionOutcome,
  type Milestones,
  type RewardConfig,
  type RewardReason,
  type RewardResult,
  type RewardVariant,
  type StepFeedback,
  type TaskMetric,
} from './types.js';
