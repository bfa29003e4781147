// One expert trajectory: the episode loop, writing each step's line as soon as the step is taken and the 'end'
// line last, so an interrupted trajectory is recognisable (no 'end') and redone on resume.
import type { PreparedTask, SnapshotStore, StepResult, HelperLlmConfig } from '@mlagent/env';
import type { ChatMessage, Expert, ExpertObservation, SeedPlan } from '../experts/types.js';
import type { CollectedEnd, CollectedStep, JsonlAppender } from './records.js';

/** The part of the env's Episode a trajectory uses (tests pass fakes). */
export interface CollectEpisode {
  readonly maxSteps: number;
  readonly stepIndex: number;
  readonly done: boolean;
  readonly currentMetric: number | null;
  messages(): ChatMessage[];
  prompt(): string;
  step(response: string): Promise<StepResult>;
  snapshot(): Promise<string>;
  close(): Promise<void>;
}

export type StartEpisode = (
  task: PreparedTask,
  options: { store: SnapshotStore; maxSteps: number; workRoot: string; helperLlm: HelperLlmConfig | null },
) => Promise<CollectEpisode>;

export interface TrajectoryJob {
  /** "<task>/<index>". */
  id: string;
  task: PreparedTask;
  plan: SeedPlan;
}

function toObservation(r: StepResult): ExpertObservation {
  return { action: r.action ?? undefined, observation: r.observation, outcome: r.outcome, metric: r.metric };
}

/** Plays one trajectory to its end and returns its end record (already written). Throws if the expert fails. */
export async function runTrajectory(
  job: TrajectoryJob,
  expert: Expert,
  episode: CollectEpisode,
  writer: JsonlAppender,
): Promise<CollectedEnd> {
  const task = job.task.spec.name;
  const better = (a: number, b: number | null) => b === null || (job.task.spec.metric.direction === 'maximize' ? a > b : a < b);
  const seedIdeas = job.plan.candidates.map((c) => c.text);
  const te = expert.begin(job.task, job.plan);
  let before = await episode.snapshot();
  let last: ExpertObservation | undefined;
  let best: number | null = null;
  let finalAnswer = false;
  while (!episode.done) {
    const messages = episode.messages();
    const prompt = episode.prompt();
    const metricBefore = episode.currentMetric;
    const response = await te.respond({ messages, last, stepsLeft: episode.maxSteps - episode.stepIndex });
    const r = await episode.step(response);
    const record: CollectedStep = {
      type: 'step',
      trajectory: job.id,
      task,
      step: r.step,
      expert: expert.name,
      seedIdeas,
      messages,
      prompt,
      response,
      action: r.action,
      actionInput: r.actionInput,
      observation: r.observation,
      outcome: r.outcome,
      metric: r.metric,
      metricBefore,
      stateBefore: before,
      stateAfter: savedState(r.snapshotId, task, r.step),
      feedback: r.feedback,
      durationSec: r.durationSec,
      done: r.done,
    };
    writer.append(record);
    before = record.stateAfter;
    last = toObservation(r);
    if (r.metric !== null && Number.isFinite(r.metric) && better(r.metric, best)) best = r.metric;
    if (r.action === 'Final Answer' && r.done) finalAnswer = true;
  }
  const end: CollectedEnd = {
    type: 'end',
    trajectory: job.id,
    task,
    expert: expert.name,
    steps: episode.stepIndex,
    seedIdeas,
    seedCandidates: job.plan.candidates.map((c) => c.id),
    ideaIndices: job.plan.ideas,
    finalMetric: episode.currentMetric,
    bestMetric: best,
    finalAnswer,
  };
  writer.append(end);
  return end;
}

/** Collected steps are restored later (the states pool), so each must have been saved. */
function savedState(id: string | null, task: string, step: number): string {
  if (id === null) throw new Error(`collect: ${task} step ${step} saved no state (an episode started with snapshotSteps: false)`);
  return id;
}
