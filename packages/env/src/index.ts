// @mlagent/env: so far only the sandbox for Execute Script (issue 4); tasks, actions and snapshots are to come.
export { runSandboxed } from './sandbox/run.js';
export { SandboxPool } from './sandbox/pool.js';
export { summarizeError } from './sandbox/classify.js';
export { availableIsolation } from './sandbox/isolation.js';
export type {
  ExecutionOutcome,
  IsolationLevel,
  LimitMechanisms,
  SandboxOptions,
  SandboxOutcome,
  SandboxResult,
} from './sandbox/types.js';
