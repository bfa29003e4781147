// The evaluation loop: full episodes per task, played in rounds. Up to `concurrency` trajectories are live at
// once; each round the agent answers all of their turns in one call (one batched generate() for the policy), then
// the steps run in the environment concurrently. A finished trajectory's slot goes to the next one in line.
// Rounds keep the batches (and so the sampled responses) reproducible for a given seed and concurrency.
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Episode, SnapshotStore, runInWorkspace, type HelperLlmConfig, type PreparedTask, type SandboxPool, type StepResult } from '@mlagent/env';
import type { ExpertObservation } from '../experts/types.js';
import type { CollectEpisode } from '../collect/trajectory.js';
import { ProgressMeter } from '../metrics/progress.js';
import { roundSeed, type AgentRequest, type EvalAgent } from './agent.js';
import { aggregateTask, isBetter, scoreTrajectory, type EvalResult, type EvalTaskInfo, type EvalTrajectory } from './results.js';
import { evalMarkdown } from './table.js';

export interface EvaluateOptions {
  tasks: readonly PreparedTask[];
  agent: EvalAgent;
  /** Trajectories per task (the paper's 8). */
  trajectories: number;
  /** Steps per episode. */
  maxSteps: number;
  /** Wall-clock seconds per trajectory: no step starts after it (a running step finishes and counts). */
  timeBudgetSec: number;
  /** Trajectories live at once, answered in one batch per round (default 1). */
  concurrency?: number;
  /** Seed of the sampling rounds (and of the expert's idea plans, set on the agent). Default 0. */
  seed?: number;
  /** Writes eval.json, eval.md, eval-steps.jsonl and snapshots/ here; without it, nothing is kept on disk. */
  out?: string;
  /** Replace an eval.json already in `out` (default false: refused, so no result is lost). */
  overwrite?: boolean;
  /** Progress bar on stderr (default true). */
  progress?: boolean;
  /** Baselines by task name, for tasks whose task.json has none (else it is measured by running train.py). */
  baselines?: Record<string, number>;
  /** Shared limit on concurrent Execute Script runs. */
  pool?: SandboxPool;
  helperLlm?: HelperLlmConfig | null;
  /** Once aborted, no trajectory starts; live ones finish. */
  signal?: AbortSignal;
  /** For tests: how episodes are started (default Episode.start). */
  startEpisode?: StartEvalEpisode;
}

export type StartEvalEpisode = (
  task: PreparedTask,
  options: { store: SnapshotStore; maxSteps: number; workRoot: string; helperLlm: HelperLlmConfig | null; pool?: SandboxPool },
) => Promise<CollectEpisode>;

/** One line of eval-steps.jsonl. */
export interface EvalStepRecord {
  agent: string;
  trajectory: string;
  task: string;
  step: number;
  response: string;
  action: string | null;
  outcome: string;
  metric: number | null;
  formatValid: boolean;
  observation: string;
  snapshotId: string | null;
  durationSec: number;
  done: boolean;
}

interface Live {
  id: string;
  task: PreparedTask;
  info: EvalTaskInfo;
  index: number;
  episode: CollectEpisode;
  startMs: number;
  steps: number;
  formatErrors: number;
  best: number | null;
  final: number | null;
  last?: ExpertObservation;
  finalAnswer: boolean;
  timedOut: boolean;
  error: string | null;
}

const defaultStart: StartEvalEpisode = (task, o) => Episode.start(task, o);

function positiveInt(name: string, v: number): number {
  if (!Number.isInteger(v) || v < 1) throw new RangeError(`eval: ${name} must be a positive integer, got ${v}`);
  return v;
}

/** m_init of each task: task.json's, an override, or a run of the task's own train.py. */
async function taskInfos(tasks: readonly PreparedTask[], overrides: Record<string, number>): Promise<Map<string, EvalTaskInfo>> {
  const infos = new Map<string, EvalTaskInfo>();
  for (const t of tasks) {
    let baseline = overrides[t.spec.name] ?? t.spec.baseline;
    if (baseline === null || baseline === undefined) {
      process.stderr.write(`eval: ${t.spec.name} has no baseline in task.json; running its train.py to measure it\n`);
      const r = await runInWorkspace(t);
      if (r.score === null) throw new Error(`eval: cannot measure the baseline of ${t.spec.name}: its train.py ended ${r.outcome}${r.error ? ` (${r.error})` : ''}`);
      baseline = r.score;
    }
    if (!Number.isFinite(baseline)) throw new Error(`eval: the baseline of ${t.spec.name} is not a finite number (${baseline})`);
    infos.set(t.spec.name, { name: t.spec.name, split: t.spec.split, metric: t.spec.metric.name, direction: t.spec.metric.direction, baseline });
  }
  return infos;
}

function observationOf(r: StepResult): ExpertObservation {
  return { action: r.action ?? undefined, observation: r.observation, outcome: r.outcome, metric: r.metric };
}

/** Runs the evaluation and returns (and, with `out`, writes) its result. */
export async function evaluate(options: EvaluateOptions): Promise<EvalResult> {
  const trajectories = positiveInt('trajectories', options.trajectories);
  const maxSteps = positiveInt('maxSteps', options.maxSteps);
  const concurrency = positiveInt('concurrency', options.concurrency ?? 1);
  const seed = options.seed ?? 0;
  if (!Number.isInteger(seed) || seed < 0) throw new RangeError(`eval: seed must be a non-negative integer, got ${seed}`);
  const budgetMs = options.timeBudgetSec * 1000;
  if (!(budgetMs > 0)) throw new RangeError(`eval: timeBudgetSec must be a positive number, got ${options.timeBudgetSec}`);
  if (options.tasks.length === 0) throw new Error('eval: no tasks given');
  const names = options.tasks.map((t) => t.spec.name);
  const twice = names.find((n, i) => names.indexOf(n) !== i);
  if (twice) throw new Error(`eval: task ${twice} is listed twice`);
  const agent = options.agent;

  const out = options.out === undefined ? undefined : path.resolve(options.out);
  if (out && existsSync(path.join(out, 'eval.json')) && !options.overwrite)
    throw new Error(`eval: ${path.join(out, 'eval.json')} already exists; use another --out (or --force to replace it)`);
  // The agent's per-task setup (the expert's idea plans) fails before any episode runs.
  agent.prepare?.(options.tasks);
  const infos = await taskInfos(options.tasks, options.baselines ?? {});
  const root = out ?? mkdtempSync(path.join(tmpdir(), 'mlagent-eval-'));
  mkdirSync(root, { recursive: true });
  const stepsFile = out ? path.join(out, 'eval-steps.jsonl') : undefined;
  if (stepsFile) writeFileSync(stepsFile, '');
  const store = new SnapshotStore(path.join(root, 'snapshots'));
  const workRoot = path.join(root, 'work');
  mkdirSync(workRoot, { recursive: true });
  const start = options.startEpisode ?? defaultStart;
  const startedAt = new Date();

  const queue = options.tasks.flatMap((task) => Array.from({ length: trajectories }, (_, index) => ({ task, index })));
  const total = queue.length;
  const records: EvalTrajectory[] = [];
  let stepCount = 0;
  let formatErrors = 0;
  const bar = options.progress === false ? null : new ProgressMeter({ total, label: `eval ${agent.name}`, unit: 'traj' });
  const barInfo = () => ({ steps: stepCount, fmtErr: stepCount === 0 ? '-' : `${((100 * formatErrors) / stepCount).toFixed(0)}%` });
  bar?.update(0, barInfo());

  const record = (a: Omit<Live, 'episode' | 'task' | 'last'>) => {
    records.push({
      agent: agent.name,
      task: a.info.name,
      index: a.index,
      steps: a.steps,
      ...scoreTrajectory(a.best, a.info),
      bestMetric: a.best,
      finalMetric: a.final,
      formatErrors: a.formatErrors,
      timedOut: a.timedOut,
      finalAnswer: a.finalAnswer,
      durationSec: (performance.now() - a.startMs) / 1000,
      error: a.error,
    });
    bar?.update(records.length, barInfo());
  };
  const finish = async (a: Live) => {
    agent.end?.(a.id);
    record(a);
    // The result is in; a workspace that cannot be removed is only reported.
    await a.episode.close().catch((e: Error) => process.stderr.write(`\neval: closing ${a.id}: ${e.message}\n`));
  };

  const step = async (a: Live, reply: string | Error) => {
    if (reply instanceof Error) {
      a.error = `the agent failed: ${reply.message}`;
      return;
    }
    // A slow generation can use up the budget: its response is then not executed.
    if (performance.now() - a.startMs >= budgetMs) {
      a.timedOut = true;
      return;
    }
    let r: StepResult;
    try {
      r = await a.episode.step(reply);
    } catch (e) {
      a.error = `the environment failed: ${(e as Error).message}`;
      return;
    }
    a.steps++;
    stepCount++;
    if (!r.feedback.formatValid) {
      a.formatErrors++;
      formatErrors++;
    }
    if (r.metric !== null && Number.isFinite(r.metric)) {
      a.final = r.metric;
      if (a.best === null || isBetter(r.metric, a.best, a.info.direction)) a.best = r.metric;
    }
    if (r.action === 'Final Answer' && r.done) a.finalAnswer = true;
    a.last = observationOf(r);
    if (stepsFile) {
      const line: EvalStepRecord = {
        agent: agent.name,
        trajectory: a.id,
        task: a.info.name,
        step: r.step,
        response: reply,
        action: r.action,
        outcome: r.outcome,
        metric: r.metric,
        formatValid: r.feedback.formatValid,
        observation: r.observation,
        snapshotId: r.snapshotId,
        durationSec: r.durationSec,
        done: r.done,
      };
      appendFileSync(stepsFile, `${JSON.stringify(line)}\n`);
    }
  };

  const live: Live[] = [];
  let round = 0;
  try {
    while (live.length > 0 || (queue.length > 0 && !options.signal?.aborted)) {
      while (live.length < concurrency && queue.length > 0 && !options.signal?.aborted) {
        const { task, index } = queue.shift()!;
        const id = `${task.spec.name}/${String(index).padStart(4, '0')}`;
        const fresh = { id, task, info: infos.get(task.spec.name)!, index, startMs: performance.now(), steps: 0, formatErrors: 0, best: null, final: null, finalAnswer: false, timedOut: false, error: null };
        let episode: CollectEpisode | undefined;
        try {
          episode = await start(task, { store, maxSteps, workRoot, helperLlm: options.helperLlm ?? null, pool: options.pool });
          agent.begin?.(id, task, index);
          live.push({ ...fresh, episode });
        } catch (e) {
          // A trajectory that cannot start is recorded as failed (no improvement); the others go on.
          await episode?.close().catch(() => undefined);
          agent.end?.(id);
          record({ ...fresh, error: `cannot start the trajectory: ${(e as Error).message}` });
        }
      }
      for (const a of live) if (performance.now() - a.startMs >= budgetMs) a.timedOut = true;
      const acting = live.filter((a) => !a.timedOut);
      if (acting.length > 0) {
        const requests: AgentRequest[] = acting.map((a) => ({
          id: a.id,
          task: a.task,
          index: a.index,
          turn: { messages: a.episode.messages(), last: a.last, stepsLeft: a.episode.maxSteps - a.episode.stepIndex },
          prompt: a.episode.prompt(),
        }));
        let replies: (string | Error)[];
        try {
          replies = await agent.respond(requests, { seed: roundSeed(seed, round++) });
          if (replies.length !== requests.length) throw new Error(`answered ${replies.length} of ${requests.length} requests`);
        } catch (e) {
          replies = requests.map(() => (e instanceof Error ? e : new Error(String(e))));
        }
        await Promise.all(acting.map((a, i) => step(a, replies[i])));
      }
      for (const a of [...live]) {
        if (!(a.timedOut || a.error !== null || a.episode.done)) continue;
        live.splice(live.indexOf(a), 1);
        await finish(a);
      }
    }
  } finally {
    for (const a of live) await a.episode.close().catch(() => undefined);
    bar?.finish(barInfo());
    rmSync(workRoot, { recursive: true, force: true });
    if (!out) rmSync(root, { recursive: true, force: true });
  }

  records.sort((x, y) => names.indexOf(x.task) - names.indexOf(y.task) || x.index - y.index);
  const rows = names.flatMap((n) => {
    const mine = records.filter((r) => r.task === n);
    return mine.length === 0 ? [] : [aggregateTask(infos.get(n)!, agent.name, mine)];
  });
  const result: EvalResult = {
    format: 'mlagent-eval',
    version: 1,
    agents: [
      {
        name: agent.name,
        kind: agent.kind,
        trajectories,
        maxSteps,
        timeBudgetSec: options.timeBudgetSec,
        seed,
        temperature: agent.temperature,
        detail: agent.detail,
        notes: agent.summary?.() ?? '',
        startedAt: startedAt.toISOString(),
        durationSec: (Date.now() - startedAt.getTime()) / 1000,
      },
    ],
    rows,
    trajectories: records,
  };
  if (out) writeEvalResult(out, result);
  return result;
}

/** Writes eval.json and eval.md (the Table-1 markdown) into `dir`, each through a temp file and a rename. */
export function writeEvalResult(dir: string, result: EvalResult): { json: string; markdown: string } {
  mkdirSync(dir, { recursive: true });
  const json = path.join(dir, 'eval.json');
  const markdown = path.join(dir, 'eval.md');
  const write = (file: string, text: string) => {
    writeFileSync(`${file}.tmp`, text);
    renameSync(`${file}.tmp`, file);
  };
  write(json, `${JSON.stringify(result, null, 2)}\n`);
  write(markdown, evalMarkdown(result));
  return { json, markdown };
}
