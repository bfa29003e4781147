import type { StepFeedback } from '@mlagent/reward';
import type { HelperLlmConfig } from '../helper-llm/client.js';
import type { SandboxPool } from '../sandbox/pool.js';
import type { SnapshotStore } from '../snapshots/store.js';

export interface EpisodeOptions {
  /** Content-addressed store the episode's states are saved in (and restored from). */
  store: SnapshotStore;
  /** Where live workspaces are created. Default `os.tmpdir()/mlagent-ws`. */
  workRoot?: string;
  /** OpenAI-compatible helper model for Understand File, the AI edits and Reflection; null/absent: off. */
  helperLlm?: HelperLlmConfig | null;
  /** Steps after which the episode ends. Default 15 (the paper's expert limit). */
  maxSteps?: number;
  /** Past steps shown in full in the prompt; older ones are one line each. Default 5. */
  historyWindow?: number;
  /** Shared concurrency limit for Execute Script; without one, runs start at once. */
  pool?: SandboxPool;
  /** Threads for the math libraries of the agent's code (OMP_NUM_THREADS etc.), as for the baseline. Default 1. */
  threads?: number;
  /** Longest observation in characters; longer ones keep their head and tail. Default 10 000. */
  maxObservationChars?: number;
  /**
   * After a successful edit of a Python script, run the edited script as Execute Script does, so that the step's
   * feedback carries the edit's outcome and metric (the paper's reward for an edit, sigmoid(alpha * (m' - m)),
   * needs m'). The run's output follows the edit's observation. Default false: edits only edit, as in MLAgentBench.
   */
  runEditedScripts?: boolean;
  /**
   * Save the state after every step in the store (default true). RL's one-step samples set false: nothing restores
   * them, and over a long run their workspaces (submissions, saved models) would fill the store and the disk.
   * Their steps' snapshotId is then null.
   */
  snapshotSteps?: boolean;
}

/** How a step ended. The first seven are Execute Script's; the rest are the other cases. */
export type StepOutcome =
  | 'ok'
  | 'error'
  | 'timeout'
  | 'oom'
  | 'killed'
  | 'resource-limit'
  | 'invalid-submission'
  /** The response could not be parsed into a valid action. */
  | 'parse-error'
  /** A valid action failed (bad path, missing file, helper model off or unreachable, ...). */
  | 'action-error'
  /** A valid action that ran no code succeeded. */
  | 'none';

export interface StepResult {
  /** 1-based number of this step. */
  step: number;
  /** The action's exact name, or null when the response named no valid action. */
  action: string | null;
  /** The parsed arguments (null when they could not be parsed). */
  actionInput: unknown;
  /** What the agent sees next. */
  observation: string;
  outcome: StepOutcome;
  /** The graded submission's metric, when this step produced one. */
  metric: number | null;
  /** Everything the reward needs. */
  feedback: StepFeedback;
  /** The state after the step; null in an episode started with snapshotSteps: false. */
  snapshotId: string | null;
  durationSec: number;
  /** The episode ended (Final Answer or the step limit). */
  done: boolean;
}

export interface ChatTurn {
  role: 'system' | 'user' | 'assistant';
  content: string;
}
