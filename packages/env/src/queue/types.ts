// The execution interface shared by local and queue-backed execution: one step of an episode from a state.
import type { StepResult } from '../episode/types.js';

/** One step to execute: the agent's raw response applied to a saved state of a task. */
export interface ExecuteRequest {
  /** Task name (prepared by name where the step runs; a directory only works when every machine has it). */
  task: string;
  /** Full id of the state to start from; null or absent: the task's initial state. */
  fromSnapshot?: string | null;
  /** The agent's raw response. */
  response: string;
  /** The episode's step limit (decides `done`). Default 15. */
  maxSteps?: number;
  /** Longest observation in characters (head and tail kept). Default 10 000, as Episode's. */
  maxObservationChars?: number;
  /** Run an edited Python script to score the edit (Episode's runEditedScripts). Default false. */
  runEditedScripts?: boolean;
  /**
   * Tells apart deliberate repeats of the same (task, state, response), e.g. two rollouts that sampled the
   * same text. Requests with equal keys are one job and get one result. Default ''.
   */
  key?: string;
}

/** Runs steps; LocalExecutor and RemoteExecutor give the same results for the same requests. */
export interface Executor {
  execute(request: ExecuteRequest): Promise<StepResult>;
  close(): Promise<void>;
}

/** A request that can never succeed (unknown task, missing state, finished episode): retrying will not help. */
export class ExecutionRequestError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ExecutionRequestError';
  }
}

/** A request checked and with its defaults filled; what travels in a job. */
export interface ExecutionJobData {
  task: string;
  fromSnapshot: string | null;
  response: string;
  maxSteps: number;
  maxObservationChars: number;
  runEditedScripts: boolean;
  key: string;
}

export const DEFAULT_QUEUE = 'mlagent-exec';
const STATE_ID = /^[0-9a-f]{64}$/;

/** Checks a request, naming the bad field. */
export function normalizeRequest(r: ExecuteRequest): ExecutionJobData {
  if (r === null || typeof r !== 'object') throw new ExecutionRequestError('execute: the request must be an object {task, fromSnapshot, response}');
  if (typeof r.task !== 'string' || r.task === '') throw new ExecutionRequestError(`execute: 'task' must be a non-empty task name, got ${JSON.stringify(r.task)}`);
  const from = r.fromSnapshot ?? null;
  if (from !== null && (typeof from !== 'string' || !STATE_ID.test(from))) {
    throw new ExecutionRequestError(`execute: 'fromSnapshot' must be a full state id (64 hex digits) or null, got ${JSON.stringify(from)}`);
  }
  if (typeof r.response !== 'string') throw new ExecutionRequestError(`execute: 'response' must be a string, got ${typeof r.response}`);
  const maxSteps = r.maxSteps ?? 15;
  if (!Number.isInteger(maxSteps) || maxSteps < 1) throw new ExecutionRequestError(`execute: 'maxSteps' must be an integer >= 1, got ${String(r.maxSteps)}`);
  const maxObservationChars = r.maxObservationChars ?? 10_000;
  if (!Number.isInteger(maxObservationChars) || maxObservationChars < 1) {
    throw new ExecutionRequestError(`execute: 'maxObservationChars' must be an integer >= 1, got ${String(r.maxObservationChars)}`);
  }
  const runEditedScripts = r.runEditedScripts ?? false;
  if (typeof runEditedScripts !== 'boolean') throw new ExecutionRequestError(`execute: 'runEditedScripts' must be a boolean, got ${typeof r.runEditedScripts}`);
  const key = r.key ?? '';
  if (typeof key !== 'string') throw new ExecutionRequestError(`execute: 'key' must be a string, got ${typeof key}`);
  return { task: r.task, fromSnapshot: from, response: r.response, maxSteps, maxObservationChars, runEditedScripts, key };
}
