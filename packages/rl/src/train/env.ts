// The environment side of RL: restore a pool state into a live episode, act once, and the task's metric for the
// reward. `collectionEnv` is the real one (the env's Episode over the collection's snapshot store); tests pass fakes.
import { join } from 'node:path';
import { Episode, SandboxPool, SnapshotStore, prepareTask, type PreparedTask, type StepResult } from '@mlagent/env';
import type { TaskMetric } from '@mlagent/reward';
import type { ChatMessage } from '../experts/types.js';
import type { PoolState } from '../pool/states-pool.js';
import type { RemoteEpisodes } from './remote.js';

/** The part of the env's Episode that RL acts through. */
export interface ActingEpisode {
  readonly done: boolean;
  readonly currentMetric: number | null;
  messages(): ChatMessage[];
  step(response: string): Promise<StepResult>;
  close(): Promise<void>;
}

export interface ActionEnv {
  /** A live episode at `state` (each call a fresh workspace: n samples of one state never share one). */
  restore(state: PoolState): Promise<ActingEpisode>;
  /** A live episode at the task's initial state (episode-wise rollouts). */
  start(task: string): Promise<ActingEpisode>;
  /** Direction, baseline and reference best of a task's metric, for the reward. */
  taskMetric(task: string): TaskMetric;
  close(): Promise<void>;
}

export interface CollectionEnvOptions {
  /** Step limit the collection used (its prompts state it); RL restores with the same. */
  maxSteps: number;
  historyWindow: number;
  maxObservationChars: number;
  /** Run an edited Python script at once to score the edit (the paper's reward for edits). Default false. */
  scoreEdits?: boolean;
  /** Execute Script runs at once. */
  concurrency: number;
  /** Where live workspaces are made (default the env's). */
  workRoot?: string;
  /** Run the steps on queue workers instead (same results); the caller closes it. */
  remote?: RemoteEpisodes;
}

/** The real environment over a collection directory's snapshots; tasks are prepared once, on first use. */
export async function collectionEnv(collectionDir: string, tasks: readonly string[], options: CollectionEnvOptions): Promise<ActionEnv> {
  const prepared = new Map<string, PreparedTask>();
  for (const name of tasks) prepared.set(name, await prepareTask(name));
  const store = new SnapshotStore(join(collectionDir, 'snapshots'));
  const pool = new SandboxPool(options.concurrency);
  const taskOf = (name: string): PreparedTask => {
    const t = prepared.get(name);
    if (!t) throw new Error(`collectionEnv: task '${name}' is not one of ${[...prepared.keys()].join(', ')}`);
    return t;
  };
  const episodeOptions = { store, pool, maxSteps: options.maxSteps, historyWindow: options.historyWindow, maxObservationChars: options.maxObservationChars, runEditedScripts: options.scoreEdits ?? false, workRoot: options.workRoot };
  const remote = options.remote;
  // RL's steps are scored and dropped, never restored: saved, their workspaces would grow the collection's store by
  // every sample of every iteration. (Remote episodes move from state to state, so their workers keep saving.)
  const local = { ...episodeOptions, snapshotSteps: false };
  return {
    restore: (state) =>
      remote
        ? remote.start(taskOf(state.task), { ...episodeOptions, fromSnapshot: state.snapshotId })
        : Episode.start(taskOf(state.task), { ...local, fromSnapshot: state.snapshotId }),
    start: (task) => (remote ? remote.start(taskOf(task), episodeOptions) : Episode.start(taskOf(task), local)),
    taskMetric(name) {
      const { spec } = taskOf(name);
      return { name: spec.metric.name, direction: spec.metric.direction, baseline: spec.baseline, best: spec.best };
    },
    async close() {},
  };
}
