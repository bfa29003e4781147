// Step-wise PPO building blocks: the loss with its per-token gradient coefficients, and advantage estimators.
export {
  ppoLoss,
  valueLoss,
  klToReference,
  tokenWeights,
  minibatchTotals,
  explainedVariance,
  DEFAULT_PPO_LOSS,
  type PpoBatch,
  type PpoLossConfig,
  type PpoLossResult,
  type PpoStats,
  type MinibatchTotals,
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
// Expert collection: diverse idea seeds, the scripted and endpoint experts, the runner, exports and the states pool.
export { tfidf, tokenize, terms, cosineSimilarity, cosineDistance, type SparseVector, type TfIdfModel } from './ideas/tfidf.js';
export { farthestPointSampling, type FarthestPointOptions } from './ideas/fps.js';
export { generateCandidates, type CandidateOptions, type IdeaCandidate } from './ideas/candidates.js';
export { selectDiverse, diverseIdeas } from './ideas/diverse.js';
export { applyIdea, applyIdeas, type EditResult, type IdeaEdits } from './ideas/edits.js';
export type { ChatMessage, Expert, ExpertObservation, ExpertTask, ExpertTurn, SeedPlan, TrajectoryExpert } from './experts/types.js';
export { ScriptedExpert } from './experts/scripted.js';
export { EndpointExpert, EndpointError, chatCompletionsUrl, chatWithRetry, checkEndpoint, checkEndpointOptions, seedHintText, type EndpointExpertOptions } from './experts/endpoint.js';
export { withRetry, backoffDelay, RetryableError, RetriesExhaustedError, type RetryOptions } from './experts/retry.js';
export { formatResponse, RESPONSE_LABELS, type ResponseParts } from './experts/response.js';
export { lineEditBetween, applyLineEdit, type LineEdit } from './experts/line-edit.js';
export { collect, type CollectOptions, type CollectSummary, type CollectEpisode, type StartEpisode } from './collect/runner.js';
export { readCollection, stepsInOrder, rewriteCollection, type CollectionRecord, type CollectedStep, type CollectedEnd, type ReadResult } from './collect/records.js';
export { taskIdeas, seedPlan, mixSeed, type TaskIdeas } from './collect/seeds.js';
export { exportShareGPT, exportSftSteps, toShareGpt, llamaFactoryDatasetInfo, type ShareGptConversation, type ShareGptTurn, type SftStepExample } from './collect/export.js';
export { progressInfo, type CollectProgress } from './collect/progress.js';
export { StatesPool, PoolSampler, type PoolState, type PoolCursor, type PoolStats, type TaskStats, type SamplingMode } from './pool/states-pool.js';
// Training config (YAML/JSON, validated, with documented defaults and presets).
export {
  loadTrainConfig,
  parseTrainConfig,
  defaultTrainConfig,
  trainConfigReference,
  TINY_PRESET,
  type TrainConfig,
  type TrainConfigInput,
  type SftConfig,
  type PpoConfig,
  type CollectionConfig,
  type EvalConfig,
  type InitConfig,
  type LoraSettings,
  type Preset,
} from './config/train-config.js';
export { TrainConfigError, editDistance } from './config/schema.js';
// Metrics: JSONL, TensorBoard event files, progress bars.
export { MetricsLogger, readMetrics, truncateMetricsAfter, METRICS_FILE, type MetricRecord } from './metrics/jsonl.js';
export { EventFileWriter } from './metrics/tensorboard.js';
export { memoryMetrics, MEMORY_METRICS } from './metrics/memory.js';
export { ProgressMeter, formatProgress, formatDuration, type ProgressOptions, type ProgressInfo } from './metrics/progress.js';
// Atomic directory checkpoints.
export {
  saveCheckpoint,
  latestCheckpoint,
  listCheckpoints,
  pruneCheckpoints,
  CHECKPOINTS_DIR,
  type SaveCheckpointOptions,
  type LoadedCheckpoint,
  type CheckpointData,
  type CheckpointListing,
  type Json,
} from './checkpoint/checkpoint.js';
// The HTML run report (inline SVG curves and evaluation tables).
export { renderReport, writeReport, metricSeries, CHART_TITLES, type ReportOptions } from './report/html-report.js';
export { lineChartSvg, niceTicks, type Series, type ChartOptions } from './report/svg-chart.js';
// LoRA SFT (assistant-only loss, cosine schedule, accumulation, bucketing, exact resume).
export { sft, heldOutLoss, type SftOptions, type SftResult, type SftStepInfo } from './sft/sft.js';
export { probeFormat, spreadStates, type FormatProbeOptions, type FormatProbeResult, type FormatProbeSample } from './sft/format-probe.js';
export { readSftData, toChat, SftDataError } from './sft/data.js';
export { encodeChat, type EncodedExample } from './sft/tokenize.js';
export { epochBatches, trainEvalSplit, shuffledIndices } from './sft/batches.js';
// One step-wise PPO/GRPO/RLOO policy update on the policy's training API.
export { ppoUpdate, type PpoSample, type PpoLearner, type PpoUpdateOptions, type PpoUpdateStats } from './ppo/update.js';
export { checkPpoMemory, planPpoMemory, type PpoMemoryCheck, type PpoMemoryPlan, type PpoMemoryPhase, type PpoMemoryShape } from './ppo/memory-check.js';
export { checkSftMemory, planDevice, type PlanDevice } from './sft/memory-check.js';
export { evalBatchFor, type EvalBatchOptions } from './eval/memory-check.js';
// Evaluation: full episodes per task with the policy, an endpoint or an expert; Table-1 results as JSON and markdown.
export { evaluate, writeEvalResult, type EvaluateOptions, type EvalStepRecord, type StartEvalEpisode } from './eval/evaluate.js';
export { EVAL_RUN_FILE, EVAL_TRAJECTORIES_FILE, evalComplete } from './eval/resume.js';
export { expertAgent, endpointAgent, cutAtStop, roundSeed, DEFAULT_STOP_STRINGS, type EvalAgent, type AgentRequest, type AgentSetting, type ExpertAgentOptions, type EndpointAgentOptions } from './eval/agent.js';
export { policyAgent, policyChatFor, PROMPT_FORMATS, type PolicyAgent, type PolicyAgentOptions, type PolicyAgentStats, type PromptFormat } from './eval/policy-agent.js';
export {
  aggregateTask,
  scoreTrajectory,
  relativeGain,
  SUCCESS_GAIN,
  type EvalResult,
  type EvalRow,
  type EvalTrajectory,
  type EvalAgentInfo,
  type EvalTaskInfo,
} from './eval/results.js';
export { evalMarkdown, mergeEvalResults, readEvalResult, metricLabel, formatScore } from './eval/table.js';
// The step-wise PPO loop (and the episode-wise baseline), its rollout log, and `mlagent train`'s whole pipeline.
export { trainPpo, type TrainPpoOptions, type TrainPpoResult, type PpoIterationInfo } from './train/ppo-loop.js';
export { collectionEnv, type ActionEnv, type ActingEpisode, type CollectionEnvOptions } from './train/env.js';
export { remoteEpisodes, type RemoteEpisodes, type RemoteExecution } from './train/remote.js';
export { RolloutLog, readRollouts, ROLLOUTS_FILE, type RolloutGroup, type RolloutSample } from './train/rollouts.js';
export { policyMessages, policyChat, renderPrompt } from './train/prompt.js';
// Moved to the env (the server's compact prompts); still exported here for existing callers.
export { actionPart } from '@mlagent/env';
export { sftChats, expertExamples } from './train/expert-chats.js';
export { trainPipeline, taskNames, type TrainPipelineOptions, type TrainPipelineResult, type FormatProbeReport } from './train/pipeline.js';
export { TrainInputError, TrainStoppedError } from './train/errors.js';
export { RunLockedError } from './train/lock.js';
