// An episode whose steps run through an Executor (local or on queue workers) while the prompt is rendered here:
// the same surface as Episode (messages, prompt, step, snapshot, close), so loops written for Episode take
// `--redis` without change.
import { defaultPromptActions } from '../actions/schema.js';
import { Episode } from '../episode/episode.js';
import { renderMessages, renderPrompt, type PromptState } from '../episode/prompt.js';
import type { ChatTurn, StepResult } from '../episode/types.js';
import type { HelperLlmConfig } from '../helper-llm/client.js';
import type { StepRecord } from '../snapshots/manifest.js';
import type { SnapshotStore } from '../snapshots/store.js';
import type { PreparedTask } from '../tasks/types.js';
import type { Executor } from './types.js';

export interface ExecutorEpisodeOptions {
  /** Where the states are (the RemoteExecutor's store): start states are read from it. */
  store: SnapshotStore;
  maxSteps?: number;
  historyWindow?: number;
  /** Longest observation in characters. Default 10 000. */
  maxObservationChars?: number;
  /** Run an edited Python script to score the edit (Episode's runEditedScripts). Default false. */
  runEditedScripts?: boolean;
  /** Must match the executing side's helper model: it decides which actions the prompt offers. */
  helperLlm?: HelperLlmConfig | null;
  fromSnapshot?: string;
  /** Sets this episode's requests apart from another's with the same texts (e.g. the rollout id). Default ''. */
  key?: string;
  /** Where the initial state is captured when snapshot() is called before any step. */
  workRoot?: string;
}

export class ExecutorEpisode {
  readonly maxSteps: number;
  private readonly historyWindow: number;
  private steps: StepRecord[] = [];
  private metric: number | null;
  private finished = false;
  private stateId: string | null = null;
  private busy = false;
  private closed = false;

  private constructor(
    private readonly executor: Executor,
    readonly task: PreparedTask,
    private readonly opts: ExecutorEpisodeOptions,
  ) {
    this.maxSteps = opts.maxSteps ?? 15;
    this.historyWindow = opts.historyWindow ?? 5;
    if (!Number.isInteger(this.maxSteps) || this.maxSteps < 1) throw new TypeError(`ExecutorEpisode: maxSteps must be an integer >= 1, got ${this.maxSteps}`);
    if (!Number.isInteger(this.historyWindow) || this.historyWindow < 1) throw new TypeError(`ExecutorEpisode: historyWindow must be an integer >= 1, got ${this.historyWindow}`);
    this.metric = task.spec.baseline;
  }

  static async start(executor: Executor, task: PreparedTask, opts: ExecutorEpisodeOptions): Promise<ExecutorEpisode> {
    if (!opts?.store) throw new TypeError('ExecutorEpisode.start: option "store" (a SnapshotStore) is required');
    const ep = new ExecutorEpisode(executor, task, opts);
    if (opts.fromSnapshot !== undefined) {
      const m = await opts.store.load(opts.fromSnapshot);
      if (m.task !== task.spec.name) throw new Error(`ExecutorEpisode.start: state ${opts.fromSnapshot} belongs to task '${m.task}', not '${task.spec.name}'`);
      ep.stateId = await opts.store.resolveId(opts.fromSnapshot);
      ep.steps = m.steps;
      ep.metric = m.metric;
      ep.finished = m.done;
    }
    return ep;
  }

  get stepIndex(): number {
    return this.steps.length;
  }

  get done(): boolean {
    return this.finished;
  }

  get currentMetric(): number | null {
    return this.metric;
  }

  get history(): readonly StepRecord[] {
    return this.steps;
  }

  private promptState(): PromptState {
    return {
      researchProblem: this.task.researchProblem,
      actions: defaultPromptActions({ helperLlm: (this.opts.helperLlm ?? null) !== null }),
      steps: this.steps,
      maxSteps: this.maxSteps,
      historyWindow: this.historyWindow,
    };
  }

  messages(): ChatTurn[] {
    return renderMessages(this.promptState());
  }

  prompt(): string {
    return renderPrompt(this.promptState());
  }

  async step(response: string): Promise<StepResult> {
    if (this.closed) throw new Error('ExecutorEpisode.step: the episode is closed');
    if (this.finished) throw new Error(`ExecutorEpisode.step: the episode is done (after ${this.steps.length} steps)`);
    if (this.busy) throw new Error('ExecutorEpisode.step: a step is already running; wait for it');
    this.busy = true;
    try {
      const r = await this.executor.execute({
        task: this.task.spec.name,
        fromSnapshot: this.stateId,
        response,
        maxSteps: this.maxSteps,
        maxObservationChars: this.opts.maxObservationChars,
        runEditedScripts: this.opts.runEditedScripts,
        key: this.opts.key,
      });
      const { step, action, actionInput, observation, outcome, metric, durationSec } = r;
      this.steps = [...this.steps, { step, response, action, actionInput, observation, outcome, metric, durationSec }];
      if (metric !== null) this.metric = metric;
      this.finished = r.done;
      this.stateId = r.snapshotId;
      return r;
    } finally {
      this.busy = false;
    }
  }

  /** The current state's id; before any step, the initial state is captured into the store here. */
  async snapshot(): Promise<string> {
    if (this.stateId === null) {
      const ep = await Episode.start(this.task, { store: this.opts.store, workRoot: this.opts.workRoot, maxSteps: this.maxSteps });
      try {
        this.stateId = await ep.snapshot();
      } finally {
        await ep.close();
      }
    }
    return this.stateId;
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}
