// What an expert is: something that, step by step, writes ResearchAgent-format responses for an episode.
import type { IdeaEdits } from '../ideas/edits.js';
import type { IdeaCandidate } from '../ideas/candidates.js';

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

/** What the expert needs to know about a task. A PreparedTask from @mlagent/env fits. */
export interface ExpertTask {
  spec: { name: string; metric: { name: string; direction: 'maximize' | 'minimize' } };
  /** The starting workspace (holds train.py). */
  envDir: string;
  ideas: readonly IdeaEdits[];
}

/** The outcome of the previous step, as the expert sees it. */
export interface ExpertObservation {
  /** The action the environment executed (absent when the response did not parse). */
  action?: string;
  observation: string;
  /** How an execution ended ('ok', 'error', 'timeout', ...), for steps that ran code. */
  outcome?: string;
  /** The graded metric of the submission the step produced, when there is one. */
  metric?: number | null;
}

/** One turn: everything the expert may look at before answering. */
export interface ExpertTurn {
  /** The chat so far, as the episode renders it (the last message is the current user prompt). */
  messages: ChatMessage[];
  /** The previous step's result; absent on the first step. */
  last?: ExpertObservation;
  /** Steps the episode still accepts, this one included. */
  stepsLeft: number;
}

/** The seed of one trajectory: 1-3 diverse candidate plans and the union of their ideas, in order. */
export interface SeedPlan {
  candidates: IdeaCandidate[];
  /** Indices into the task's ideas, deduplicated, in the order the candidates name them. */
  ideas: number[];
}

/** An expert for one trajectory: answers turn after turn. */
export interface TrajectoryExpert {
  respond(turn: ExpertTurn): Promise<string>;
}

/** An expert: starts a trajectory on a task from a seed plan. */
export interface Expert {
  /** For logs and records, e.g. "scripted" or the endpoint's model name. */
  readonly name: string;
  begin(task: ExpertTask, seed: SeedPlan): TrajectoryExpert;
}
