// Loading, the forward pass and KV-cache generation are in place; training follows (issue 3).
export {
  SafetensorsFile,
  Checkpoint,
  CheckpointError,
  writeSafetensors,
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
export { initModel, bundledTokenizerDir, PRESETS, type InitModelOptions, type ModelPreset } from './init-model.js';
export { QwenTokenizer, TokenizerError, ML_AGENT_SYSTEM_PROMPT, type ChatMessage, type ChatTemplateName } from './tokenizer.js';
export { QwenModel, type QwenLoadOptions, type QwenWeights, type QwenLayerWeights } from './model.js';
export { generate, type GenerateOptions, type GenerateResult } from './generate.js';
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
  type LoraTargetName,
} from './memory.js';
export { createOpenAIServer, type OpenAIServer, type OpenAIServerOptions } from './serve/server.js';
export { OpenAIService, type OpenAIServiceOptions, type ChoiceDelta } from './serve/service.js';
export { OpenAIError } from './serve/errors.js';
