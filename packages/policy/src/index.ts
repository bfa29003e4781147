// Loading, the forward pass, KV-cache generation and LoRA training (train/, lora/).
export {
  SafetensorsFile,
  Checkpoint,
  CheckpointError,
  writeSafetensors,
  nonFiniteTensors,
  SAFETENSORS_DTYPE_BYTES,
  type SafetensorsDType,
  type TensorInfo,
  type TensorToWrite,
} from './safetensors.js';
export {
  parseQwenConfig,
  loadQwenConfig,
  layerTensorNames,
  expectedShapes,
  ConfigError,
  type QwenConfig,
  type QwenArch,
} from './config.js';
export { ContextLengthError, NonFiniteError } from './errors.js';
export { OptionError } from './generate.js';
export { initModel, makeDirs, bundledTokenizerDir, INIT_MODEL_CONTEXT, PRESETS, type InitModelOptions, type ModelPreset } from './init-model.js';
export { truncateTokenizer, type TruncatedTokenizer } from './tokenizer-truncate.js';
export { QwenTokenizer, TokenizerError, ML_AGENT_SYSTEM_PROMPT, type ChatMessage, type ChatTemplateName } from './tokenizer.js';
export { QwenModel, KEEP_LOGITS_MAX_BYTES, type MergedLayers, type QwenLoadOptions, type QwenWeights, type QwenLayerWeights } from './model.js';
export { generate, prefillRuns, MERGE_ADAPTER_AUTO_BYTES, PREFILL_TOKENS, type GenerateOptions, type GenerateResult } from './generate.js';
export { sequenceLogprobs, type SequenceLogprobs, type SequenceLogprobsOptions } from './logprobs.js';
export {
  planMemory,
  assertFits,
  deviceLimits,
  measurePeak,
  formatMemoryReport,
  MemoryPlanError,
  type MemoryPlan,
  type MemoryPlanOptions,
  type MemoryItem,
  type MemoryLimits,
  type MeasuredMemory,
} from './memory.js';
export { createOpenAIServer, type OpenAIServer, type OpenAIServerOptions } from './serve/server.js';
export { DEFAULT_MAX_QUEUED, OpenAIService, type OpenAIServiceOptions, type ChoiceDelta } from './serve/service.js';
export { OpenAIError } from './serve/errors.js';
export { StopTextStream } from './serve/text-stream.js';
export { defaultStopTokenIds } from './serve/stop-tokens.js';
export { LORA_MODULES, LoraError, checkLoraConfig, moduleShape, peftTensorName, type LoraConfig, type LoraModule } from './lora/config.js';
export { LoraAdapter, type LoraSlot, type LoraCreateOptions } from './lora/adapter.js';
export { TrunkPass, type TrunkOptions } from './train/trunk.js';
export { padBatch, type PaddedBatch } from './train/batch.js';
export {
  policyForward,
  maskedNllBackward,
  PolicyPass,
  type PolicyForwardOptions,
  type PolicyGrads,
  type MaskedNllOptions,
} from './train/policy.js';
export { ValueHead, ValuePass, valueForward } from './train/value.js';
export { TrainOptimizer, type Trainable, type TrainOptimizerOptions } from './train/optimizer.js';
export {
  saveAdapter,
  loadAdapter,
  readPeftConfig,
  peftConfig,
  ADAPTER_CONFIG,
  ADAPTER_WEIGHTS,
  type SaveAdapterOptions,
} from './lora/peft.js';
export { mergeAdapter } from './lora/merge.js';
export { saveValueHead, loadValueHead, VALUE_HEAD_FILE } from './train/value-io.js';
export { timeGeneration, torchGenerationTiming, type GenerationBenchOptions, type GenerationTiming } from './bench/generation.js';
export { timeTraining, torchTrainingTiming, type TrainingBenchOptions, type TrainingTiming } from './bench/training.js';
export { benchScript, type TorchBenchSource } from './bench/torch-runner.js';
export { nvidiaFreeBytes } from './bench/device-memory.js';
export { randomModel, qwen25_7bConfig, QWEN25_7B_CONFIG, type RandomModelOptions } from './bench/random-model.js';
