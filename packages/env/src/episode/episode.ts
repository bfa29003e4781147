// One agent episode on a task: a live workspace, the steps so far, and the state's metric. step() turns a raw
// model response into an observation; nothing the response asks for makes it throw.
import { promises as fs } from 'node:fs';
import type { StepFeedback } from '@mlagent/reward';
import { parseResponse } from '../actions/parse.js';
import { ACTION_NAMES, ACTIONS, defaultPromptActions, type ActionCall, type ActionName } from '../actions/schema.js';
import { HelperLlmError, type HelperLlmConfig } from '../helper-llm/client.js';
import type { StepRecord } from '../snapshots/manifest.js';
import type { HashCache } from '../snapshots/store.js';
import type { PreparedTask } from '../tasks/types.js';
import { executeScript } from './execute.js';
import { copyFile, editLines, inspectLines, isScriptPath, listFiles, readTextHead, undoEdit, writeFile, type FileContext } from './file-actions.js';
import { editScriptAction, editSegmentAction, reflectionAction, understandFileAction } from './helper-actions.js';
import { EnvError, type WorkspaceRoots } from './paths.js';
import { historySummary, renderMessages, renderPrompt, type PromptState } from './prompt.js';
import type { ChatTurn, EpisodeOptions, StepOutcome, StepResult } from './types.js';
import { createWorkspace } from '../tasks/workspace.js';
import { removeDeep } from '../sandbox/disk-guard.js';
import { defaultWorkRoot, hiddenPathsFor, makeWorkspaceDir } from './workspace.js';
import { sliceText } from '../actions/text.js';

/** An episode's step limit when its options give none (the paper's expert trajectories: at most 15 steps). */
export const DEFAULT_MAX_STEPS = 15;
const DEFAULT_HISTORY_WINDOW = 5;
const DEFAULT_MAX_OBSERVATION = 10_000;

interface ActionOutput {
  observation: string;
  outcome: StepOutcome;
  metric: number | null;
  durationSec?: number;
  submissionWritten?: boolean;
  dataLoaded?: boolean;
  modelTrained?: boolean;
}

function positiveInt(name: string, v: number | undefined, dflt: number): number {
  if (v === undefined) return dflt;
  if (!Number.isInteger(v) || v < 1) throw new TypeError(`Episode: option '${name}' must be an integer >= 1, got ${String(v)}`);
  return v;
}

/** Keeps the head and the tail of a long observation. */
function clip(text: string, max: number): string {
  if (text.length <= max) return text;
  const half = Math.floor(max / 2);
  // Cut on whole characters: half an emoji reaches a Python client of the env server as a lone surrogate.
  const head = sliceText(text, 0, half);
  const tail = sliceText(text, text.length - half, half);
  return `${head}\n[... ${text.length - head.length - tail.length} characters cut ...]\n${tail}`;
}

export class Episode {
  readonly task: PreparedTask;
  /** The live workspace directory (removed by close()). */
  readonly workspace: string;
  readonly maxSteps: number;
  private readonly opts: EpisodeOptions;
  private readonly helper: HelperLlmConfig | null;
  private readonly historyWindow: number;
  private readonly maxObservation: number;
  private readonly files: FileContext;
  private readonly hiddenPaths: string[];
  private readonly hashCache: HashCache = new Map();
  private steps: StepRecord[] = [];
  private metric: number | null;
  private finished = false;
  private closed = false;
  private busy = false;
  /** The state the current one was reached from (saved at the start of the last step). */
  private parentId: string | null = null;

  private constructor(task: PreparedTask, opts: EpisodeOptions, workspace: string, roots: WorkspaceRoots, hiddenPaths: string[]) {
    this.task = task;
    this.opts = opts;
    this.workspace = workspace;
    this.helper = opts.helperLlm ?? null;
    this.maxSteps = positiveInt('maxSteps', opts.maxSteps, DEFAULT_MAX_STEPS);
    this.historyWindow = positiveInt('historyWindow', opts.historyWindow, DEFAULT_HISTORY_WINDOW);
    this.maxObservation = positiveInt('maxObservationChars', opts.maxObservationChars, DEFAULT_MAX_OBSERVATION);
    // Checked here, not at the first Execute Script: a NaN would reach the agent's code as OMP_NUM_THREADS=NaN.
    positiveInt('threads', opts.threads, 1);
    this.files = { roots, store: opts.store, undo: new Map() };
    this.hiddenPaths = hiddenPaths;
    this.metric = task.spec.baseline;
  }

  /** Starts an episode from the task's initial state, or from a saved state (`fromSnapshot`: id or prefix). */
  static async start(task: PreparedTask, opts: EpisodeOptions & { fromSnapshot?: string }): Promise<Episode> {
    if (!opts?.store) throw new TypeError('Episode.start: option "store" (a SnapshotStore) is required');
    const manifest = opts.fromSnapshot === undefined ? null : await opts.store.load(opts.fromSnapshot);
    if (manifest && manifest.task !== task.spec.name) {
      throw new Error(`Episode.start: state ${opts.fromSnapshot} belongs to task '${manifest.task}', not '${task.spec.name}'`);
    }
    const workspace = await makeWorkspaceDir(opts.workRoot ?? defaultWorkRoot(), task.spec.name);
    try {
      const publicDir = await fs.realpath(task.publicDir);
      if (manifest) await opts.store.materialize(manifest, workspace, publicDir);
      else createWorkspace(task, workspace);
      const roots = { workspace: await fs.realpath(workspace), publicDir };
      const ep = new Episode(task, opts, workspace, roots, await hiddenPathsFor(task, workspace, opts.store.dir));
      if (manifest) {
        ep.steps = manifest.steps;
        ep.metric = manifest.metric;
        ep.finished = manifest.done;
        ep.parentId = manifest.parent;
        ep.files.undo = new Map(Object.entries(manifest.undo).map(([k, v]) => [k, [...v]]));
      }
      return ep;
    } catch (e) {
      await fs.rm(workspace, { recursive: true, force: true }).catch(() => removeDeep(workspace));
      throw e;
    }
  }

  /** Steps taken so far. */
  get stepIndex(): number {
    return this.steps.length;
  }

  get done(): boolean {
    return this.finished;
  }

  /** The state's metric: the last graded run's, else the task's baseline. */
  get currentMetric(): number | null {
    return this.metric;
  }

  /** The steps so far, as saved in snapshots. */
  get history(): readonly StepRecord[] {
    return this.steps;
  }

  private promptState(): PromptState {
    return {
      researchProblem: this.task.researchProblem,
      actions: defaultPromptActions({ helperLlm: this.helper !== null }),
      steps: this.steps,
      maxSteps: this.maxSteps,
      historyWindow: this.historyWindow,
    };
  }

  /** The chat so far; the next turn is the agent's. */
  messages(): ChatTurn[] {
    return renderMessages(this.promptState());
  }

  /** The same state as one user text. */
  prompt(): string {
    return renderPrompt(this.promptState());
  }

  /**
   * Saves the current state (workspace files, history, metric) and returns its id. Unchanged files are not read
   * again, and saving an unchanged state gives the same id.
   */
  async snapshot(): Promise<string> {
    this.assertOpen('snapshot');
    return this.opts.store.capture(
      this.workspace,
      this.files.roots.publicDir,
      {
        task: this.task.spec.name,
        parent: this.parentId,
        step: this.steps.length,
        done: this.finished,
        metric: this.metric,
        undo: Object.fromEntries([...this.files.undo].map(([k, v]) => [k, [...v]])),
        steps: this.steps,
      },
      this.hashCache,
    );
  }

  /** Removes the live workspace. Saved states stay in the store. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // A tree deeper than PATH_MAX defeats fs.rm; rm -rf takes it.
    await fs.rm(this.workspace, { recursive: true, force: true }).catch(async () => {
      if (!(await removeDeep(this.workspace))) console.warn(`mlagent env: could not remove the workspace ${this.workspace}`);
    });
  }

  private assertOpen(what: string): void {
    if (this.closed) throw new Error(`Episode.${what}: the episode is closed`);
  }

  /** Plays one raw model response. Throws only for misuse (closed, done, concurrent calls), never for the response. */
  async step(response: string): Promise<StepResult> {
    this.assertOpen('step');
    if (this.finished) throw new Error(`Episode.step: the episode is done (after ${this.steps.length} steps)`);
    if (this.busy) throw new Error('Episode.step: a step is already running; wait for it');
    if (typeof response !== 'string') throw new TypeError('Episode.step: response must be a string');
    this.busy = true;
    try {
      return await this.runStep(response);
    } finally {
      this.busy = false;
    }
  }

  private async runStep(response: string): Promise<StepResult> {
    const t0 = performance.now();
    const snapshots = this.opts.snapshotSteps ?? true;
    if (snapshots) this.parentId = await this.snapshot();
    const previousMetric = this.metric;
    const parsed = parseResponse(response, { actions: ACTION_NAMES });
    let out: ActionOutput;
    let action: ActionName | null = null;
    let actionInput: unknown = null;
    let isEdit = false;
    if (!parsed.ok) {
      action = parsed.action ?? null;
      out = { observation: parsed.error.observation, outcome: 'parse-error', metric: null };
    } else {
      action = parsed.action;
      actionInput = parsed.args;
      out = await this.act(parsed);
      const editable = parsed.action === 'Copy File' ? isScriptPath(parsed.args.destination) : ACTIONS[parsed.action].isEdit;
      isEdit = editable && out.outcome === 'none';
      const script = isEdit && this.opts.runEditedScripts ? editedPythonScript(parsed) : null;
      if (script !== null) {
        const run = await this.run(script);
        out = { ...run, observation: `${out.observation}\n\nThe edited script ${script} was run to score the edit. ${run.observation}` };
      }
    }
    const durationSec = out.durationSec ?? (performance.now() - t0) / 1000;
    const observation = clip(out.observation, this.maxObservation);
    if (out.metric !== null) this.metric = out.metric;
    const step = this.steps.length + 1;
    this.steps = [...this.steps, { step, response, action, actionInput, observation, outcome: out.outcome, metric: out.metric, durationSec }];
    if (action === 'Final Answer' && out.outcome === 'none') this.finished = true;
    if (step >= this.maxSteps) this.finished = true;
    const feedback: StepFeedback = { formatValid: parsed.ok, isEdit, previousMetric, durationSec };
    const ranCode = (action === 'Execute Script' || isEdit) && parsed.ok && out.outcome !== 'action-error' && out.outcome !== 'none';
    if (ranCode) {
      feedback.outcome = out.outcome as NonNullable<StepFeedback['outcome']>;
      feedback.metric = out.metric;
      feedback.milestones = { dataLoaded: out.dataLoaded ?? false, modelTrained: out.modelTrained ?? false, submissionWritten: out.submissionWritten ?? false };
    }
    const snapshotId = snapshots ? await this.snapshot() : null;
    return { step, action, actionInput, observation, outcome: out.outcome, metric: out.metric, feedback, snapshotId, durationSec, done: this.finished };
  }

  private run(scriptName: unknown): Promise<ActionOutput> {
    const ctx = { task: this.task, roots: this.files.roots, hiddenPaths: this.hiddenPaths, pool: this.opts.pool, threads: this.opts.threads };
    return executeScript(ctx, scriptName);
  }

  /** Runs a parsed action; failures the agent caused become EnvError observations. */
  private async act(call: ActionCall): Promise<ActionOutput> {
    const none = (observation: string): ActionOutput => ({ observation, outcome: 'none', metric: null });
    try {
      switch (call.action) {
        case 'List Files':
          return none(await listFiles(this.files, call.args.dir_path));
        case 'Copy File':
          return none(await copyFile(this.files, call.args.source, call.args.destination));
        case 'Undo Edit Script':
          return none(await undoEdit(this.files, call.args.script_name));
        case 'Execute Script':
          return await this.run(call.args.script_name);
        case 'Final Answer':
          return none('The episode has ended with your final answer.');
        case 'Understand File':
          return none(await understandFileAction(this.files, this.helper, call.args.file_name, call.args.things_to_look_for));
        case 'Inspect Script Lines':
          return none(await inspectLines(this.files, call.args.script_name, call.args.start_line_number, call.args.end_line_number));
        case 'Edit Script (AI)':
          return none(await editScriptAction(this.files, this.helper, call.args.script_name, call.args.edit_instruction, call.args.save_name));
        case 'Edit Script Segment (AI)':
          return none(await editSegmentAction(this.files, this.helper, call.args));
        case 'Reflection':
          return none(await reflectionAction(this.helper, this.task.researchProblem, historySummary(this.steps), call.args.things_to_reflect_on));
        case 'Write File':
          return none(await writeFile(this.files, call.args.file_name, call.args.content));
        case 'Read File':
          return none((await readTextHead(this.files, call.args.file_name, 'file_name')).text);
        case 'Edit Script Lines':
          return none(
            await editLines(this.files, call.args.script_name, call.args.start_line_number, call.args.end_line_number, call.args.new_content),
          );
      }
    } catch (e) {
      const err = e as Error;
      const message =
        e instanceof EnvError ? err.message : e instanceof HelperLlmError ? `EnvError: ${err.message}` : `EnvError: ${call.action} failed: ${err.message}`;
      return { observation: message, outcome: 'action-error', metric: null };
    }
  }
}

/** The Python script an edit action wrote, if it wrote one (the file an edit-scoring run executes). */
function editedPythonScript(call: ActionCall): string | null {
  const args = call.args as Record<string, unknown>;
  const path = call.action === 'Copy File' ? args.destination : call.action === 'Write File' ? args.file_name : 'save_name' in args ? args.save_name : args.script_name;
  return typeof path === 'string' && /\.py$/i.test(path.trim()) ? path.trim() : null;
}
