// @mlagent/env: the sandbox for Execute Script, the action set and its parser, tasks, episodes, snapshots and scale-out.
export { runSandboxed } from './sandbox/run.js';
export { MAX_TIMER_MS } from './timers.js';
export { SandboxPool, type SandboxPoolRunOptions } from './sandbox/pool.js';
export { summarizeError } from './sandbox/classify.js';
export { SANDBOX_SYSTEM_PATHS, availableIsolation } from './sandbox/isolation.js';
export { checkSandbox, type SandboxCheck } from './sandbox/check.js';
export type {
  ExecutionOutcome,
  IsolationLevel,
  LimitMechanisms,
  SandboxOptions,
  SandboxOutcome,
  SandboxResult,
} from './sandbox/types.js';
// Actions: the MLAgentBench action set, the response parser and the prompt rendering.
export {
  ACTION_NAMES,
  ACTIONS,
  defaultPromptActions,
  isActionName,
  renderUsage,
} from './actions/schema.js';
export type { ActionArgSpec, ActionArgsMap, ActionCall, ActionName, ActionSpec, ArgType } from './actions/schema.js';
export { parseResponse } from './actions/parse.js';
export { actionCallKey } from './actions/call-key.js';
export { actionPart, compactMessages } from './actions/compact.js';
export type { ParseError, ParseErrorKind, ParsedResponse, ParseOptions, ResponseFields } from './actions/parse.js';
export { renderAction, renderActions, renderResponseFormat } from './actions/prompt.js';
export type { RenderActionsOptions } from './actions/prompt.js';
// Tasks: the native format, registry, preparation, grading, baseline runner and importers.
export * from './tasks/index.js';
// Episodes: executing actions against a live workspace, snapshots of states, replay.
export { Episode } from './episode/episode.js';
export { EnvServer, type EnvServerAddress, type EnvServerOptions } from './server/env-server.js';
export { replay } from './episode/replay.js';
export type { ReplayResult } from './episode/replay.js';
export type { ChatTurn, EpisodeOptions, StepOutcome, StepResult } from './episode/types.js';
export { SnapshotStore } from './snapshots/store.js';
export type { HashCache, SnapshotStoreOptions, StateMeta } from './snapshots/store.js';
export { BLOB_GRACE_MS } from './snapshots/maintenance.js';
export type { ListStatesOptions, PruneOptions, PruneResult, StateSummary } from './snapshots/maintenance.js';
export type { ManifestFile, StateManifest, StepRecord } from './snapshots/manifest.js';
export type { HelperLlmConfig } from './helper-llm/client.js';
export { fetchErrorText, printableSnippet, readResponseText, ResponseTooLargeError, retryAfterMs } from './helper-llm/http-response.js';
// Scale-out: steps executed by BullMQ workers on Redis, or locally, behind one Executor interface (issue 7).
export { LocalExecutor } from './queue/local-executor.js';
export { RemoteExecutor, RemoteExecutionError } from './queue/remote-executor.js';
export type { RemoteExecutorOptions } from './queue/remote-executor.js';
export { startExecutionWorker } from './queue/worker.js';
export type { ExecutionWorker, ExecutionWorkerOptions } from './queue/worker.js';
export { RedisStates } from './queue/redis-states.js';
export type { RedisStatesOptions } from './queue/redis-states.js';
export { StepContext } from './queue/execute-step.js';
export type { StepContextOptions } from './queue/execute-step.js';
export { DEFAULT_QUEUE, ExecutionRequestError } from './queue/types.js';
export { redactUrl } from './queue/connection.js';
export type { ExecuteRequest, Executor } from './queue/types.js';
export { executionJobId } from './queue/job-id.js';
export { ExecutorEpisode } from './queue/executor-episode.js';
export type { ExecutorEpisodeOptions } from './queue/executor-episode.js';
