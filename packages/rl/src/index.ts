// Step-wise PPO building blocks: the loss with its per-token gradient coefficients, and advantage estimators.
export {
  ppoLoss,
  valueLoss,
  klToReference,
  tokenWeights,
  explainedVariance,
  DEFAULT_PPO_LOSS,
  type PpoBatch,
  type PpoLossConfig,
  type PpoLossResult,
  type PpoStats,
  type KlEstimator,
  type LossAggregation,
} from './ppo/loss.js';
export {
  gaeSingleStep,
  grpoAdvantages,
  rlooAdvantages,
  normalizeAdvantages,
  klPenalizedRewards,
  ZERO_STD,
  type AdvantageResult,
  type GroupAdvantageOptions,
} from './ppo/advantages.js';
