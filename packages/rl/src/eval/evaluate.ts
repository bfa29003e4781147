// The evaluation loop: full episodes per task, played in rounds. Up to `concurrency` trajectories are live at
// once; each round the agent answers all of their turns in one call (one batched generate() for the policy), then
// the steps run in the environment concurrently. A finished trajectory's slot goes to the next one in line.
// Rounds keep the batches (and so the sampled responses) reproducible for a given seed and concurrency.
//
// Trajectories of a task that start in the same round, and have given the same responses since, are in the same
// state: they share one episode (a branch) and each step runs once for all of them. When their responses differ,
// the others fork: a new episode restored from the branch's state before the step. Responses that word the same
// action call differently still share its run: they fork after it, from a copy of the state that holds their text.
import { appendFileSync, existsSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { makeDirs } from '@mlagent/policy';
import { Episode, SnapshotStore, actionCallKey, runInWorkspace, type HelperLlmConfig, type PreparedTask, type SandboxPool, type StepResult } from '@mlagent/env';
import type { ExpertObservation } from '../experts/types.js';
import type { CollectEpisode } from '../collect/trajectory.js';
import { ProgressMeter } from '../metrics/progress.js';
import { roundSeed, type AgentRequest, type EvalAgent } from './agent.js';
import { aggregateTask, isBetter, scoreTrajectory, type EvalResult, type EvalTaskInfo, type EvalTrajectory } from './results.js';
import { evalMarkdown, readEvalResult } from './table.js';
import { filterJsonl } from '../metrics/jsonl.js';
import { EVAL_RUN_FILE, EVAL_TRAJECTORIES_FILE, checkSameRun, evalComplete, readFinished, writeRunIdentity, type EvalRunIdentity } from './resume.js';
import { writeFileAtomic } from '../checkpoint/atomic.js';

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
  /** Replace an eval.json (or an unfinished evaluation) already in `out` (default false: refused, so no result is lost). */
  overwrite?: boolean;
  /**
   * Continue the unfinished evaluation in `out` (interrupted, or killed): the trajectories it finished without an
   * error are kept, the others run from their start. It must evaluate the same agent, tasks and settings. Where
   * `out` holds no evaluation yet, it starts one.
   */
  resume?: boolean;
  /**
   * What a `resume` finds when `out` holds a finished evaluation of the same run: 'refuse' (default) throws, as
   * there is nothing to resume; 'reuse' returns its eval.json, so a caller resuming several evaluations (one per
   * adapter) can pass over the ones that finished. A finished evaluation of another run is refused either way.
   */
  whenFinished?: 'refuse' | 'reuse';
  /** Progress bar on stderr (default true). */
  progress?: boolean;
  /** Baselines by task name, for tasks whose task.json has none (else it is measured by running train.py). */
  baselines?: Record<string, number>;
  /** Shared limit on concurrent Execute Script runs. */
  pool?: SandboxPool;
  helperLlm?: HelperLlmConfig | null;
  /** Once aborted, no trajectory starts; live ones finish. */
  signal?: AbortSignal;
  /**
   * Run a step once for the trajectories in the same state that give the same response, and give each of them its
   * result, as a deterministic environment would (default true). Each trajectory's outcomes keep their
   * distribution, but two identical trajectories no longer draw independent outcomes from a nondeterministic
   * script; false runs every trajectory in its own episode.
   */
  shareIdenticalSteps?: boolean;
  /**
   * What the agent's prompts show of the past (EpisodeOptions.historyWindow, maxObservationChars; default the env's
   * 5 steps and 10,000 characters): give the config's ppo values to evaluate a policy as it was trained.
   * Recorded among the run's settings, so a resume must keep them.
   */
  prompts?: { historyWindow?: number; maxObservationChars?: number };
  /** For tests: how episodes are started (default Episode.start). */
  startEpisode?: StartEvalEpisode;
  /**
   * For tests: a copy of a saved state with its last step's response replaced by another wording of the same action
   * call (default SnapshotStore.withLastResponse on the evaluation's store).
   */
  rewordState?: (stateId: string, response: string) => Promise<string>;
}

export type StartEvalEpisode = (
  task: PreparedTask,
  options: { store: SnapshotStore; maxSteps: number; workRoot: string; helperLlm: HelperLlmConfig | null; pool?: SandboxPool; fromSnapshot?: string; historyWindow?: number; maxObservationChars?: number },
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
  /** The step's time in the environment (for a shared step, the run it shared). */
  durationSec: number;
  done: boolean;
  /** The result came from another trajectory's identical step in the same state (shareIdenticalSteps). */
  shared: boolean;
}

/** One episode and the live trajectories in its state. */
interface Branch {
  task: PreparedTask;
  episode: CollectEpisode;
  members: Set<Live>;
  /** The snapshot of the current state (the last step's), which a fork restores; null before any step. */
  stateId: string | null;
}

interface Live {
  id: string;
  task: PreparedTask;
  info: EvalTaskInfo;
  index: number;
  branch: Branch;
  startMs: number;
  steps: number;
  formatErrors: number;
  best: number | null;
  final: number | null;
  last?: ExpertObservation;
  finalAnswer: boolean;
  timedOut: boolean;
  error: string | null;
  sharedSteps: number;
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
  if (options.whenFinished !== undefined && options.whenFinished !== 'refuse' && options.whenFinished !== 'reuse')
    throw new RangeError(`eval: whenFinished must be 'refuse' or 'reuse', got ${JSON.stringify(options.whenFinished)}`);
  if (options.tasks.length === 0) throw new Error('eval: no tasks given');
  const names = options.tasks.map((t) => t.spec.name);
  const twice = names.find((n, i) => names.indexOf(n) !== i);
  if (twice) throw new Error(`eval: task ${twice} is listed twice`);
  const agent = options.agent;

  const out = options.out === undefined ? undefined : path.resolve(options.out);
  const share = options.shareIdenticalSteps ?? true;
  const prompts = Object.fromEntries(Object.entries(options.prompts ?? {}).filter(([, v]) => v !== undefined)) as { historyWindow?: number; maxObservationChars?: number };
  if (prompts.historyWindow !== undefined && !(Number.isInteger(prompts.historyWindow) && prompts.historyWindow >= 0)) throw new RangeError(`eval: prompts.historyWindow must be an integer >= 0, got ${prompts.historyWindow}`);
  if (prompts.maxObservationChars !== undefined && !(Number.isInteger(prompts.maxObservationChars) && prompts.maxObservationChars >= 1)) throw new RangeError(`eval: prompts.maxObservationChars must be a positive integer, got ${prompts.maxObservationChars}`);
  const identity: EvalRunIdentity = { agent: agent.name, kind: agent.kind, detail: agent.detail, temperature: agent.temperature, tasks: names, trajectories, maxSteps, timeBudgetSec: options.timeBudgetSec, seed, shareIdenticalSteps: share, settings: { ...agent.settings, ...prompts } };
  const resuming = out !== undefined && !options.overwrite && options.resume === true && existsSync(path.join(out, EVAL_RUN_FILE));
  const finished = out && resuming ? readFinished(out).filter((t) => t.error === null) : [];
  if (out && !options.overwrite) {
    if (resuming) {
      checkSameRun(out, identity);
      // Every trajectory finished without an error, and eval.json written: nothing left to run.
      if (finished.length === options.tasks.length * trajectories && existsSync(path.join(out, 'eval.json'))) {
        if (options.whenFinished === 'reuse') return readEvalResult(path.join(out, 'eval.json'));
        throw new Error(`eval: ${out} holds a finished evaluation (eval.json); nothing to resume`);
      }
    } else if (existsSync(path.join(out, EVAL_RUN_FILE)) && !evalComplete(out)) {
      throw new Error(`eval: ${out} holds an unfinished evaluation (${readFinished(out).length} trajectories recorded); --resume continues it, --force starts over`);
    } else if (existsSync(path.join(out, 'eval.json'))) {
      throw new Error(`eval: ${path.join(out, 'eval.json')} already exists; use another --out (or --force to replace it)`);
    }
  }
  // An --out that cannot be made fails before the baselines are scored.
  if (out) makeDirs(out);
  // The agent's per-task setup (the expert's idea plans) fails before any episode runs.
  agent.prepare?.(options.tasks);
  const infos = await taskInfos(options.tasks, options.baselines ?? {});
  const root = out ?? mkdtempSync(path.join(tmpdir(), 'mlagent-eval-'));
  const stepsFile = out ? path.join(out, 'eval-steps.jsonl') : undefined;
  const trajectoriesFile = out ? path.join(out, EVAL_TRAJECTORIES_FILE) : undefined;
  const trajectoryId = (task: string, index: number) => `${task}/${String(index).padStart(4, '0')}`;
  const kept = new Set(finished.map((t) => trajectoryId(t.task, t.index)));
  if (out && resuming) {
    // What the kept trajectories did stays; the steps of the others (cut short, or failed) go.
    filterJsonl<{ trajectory?: string }>(stepsFile!, (r) => r.trajectory !== undefined && kept.has(r.trajectory));
    // Through a temporary file: a kill during an in-place rewrite lost the records of finished trajectories.
    writeFileAtomic(trajectoriesFile!, finished.map((t) => `${JSON.stringify(t)}\n`).join(''));
  } else if (out) {
    rmSync(path.join(out, 'eval.json'), { force: true });
    writeFileSync(stepsFile!, '');
    writeFileSync(trajectoriesFile!, '');
    writeRunIdentity(out, identity);
  }
  const store = new SnapshotStore(path.join(root, 'snapshots'));
  const workRoot = path.join(root, 'work');
  // A killed run's workspaces are no use to anyone.
  rmSync(workRoot, { recursive: true, force: true });
  makeDirs(workRoot);
  const start = options.startEpisode ?? defaultStart;
  const startedAt = new Date();
  const episodeOptions = { store, maxSteps, workRoot, helperLlm: options.helperLlm ?? null, pool: options.pool, ...prompts };

  const queue = options.tasks.flatMap((task) => Array.from({ length: trajectories }, (_, index) => ({ task, index }))).filter(({ task, index }) => !kept.has(trajectoryId(task.spec.name, index)));
  const total = options.tasks.length * trajectories;
  const records: EvalTrajectory[] = [...finished];
  let stepCount = 0;
  let sharedCount = 0;
  let formatErrors = 0;
  // The bar counts this run's trajectories, so its rate and ETA hold after a resume.
  const before = finished.length;
  const label = before > 0 ? `eval ${agent.name} (+${before} done before)` : `eval ${agent.name}`;
  const bar = options.progress === false ? null : new ProgressMeter({ total: total - before, label, unit: 'traj' });
  const barInfo = () => ({
    steps: stepCount,
    ...(share ? { shared: sharedCount } : {}),
    fmtErr: stepCount === 0 ? '-' : `${((100 * formatErrors) / stepCount).toFixed(0)}%`,
  });
  bar?.update(0, barInfo());

  const record = (a: Omit<Live, 'branch' | 'task' | 'last'>) => {
    const t: EvalTrajectory = {
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
      sharedSteps: a.sharedSteps,
    };
    records.push(t);
    if (trajectoriesFile) appendFileSync(trajectoriesFile, `${JSON.stringify(t)}\n`);
    bar?.update(records.length - before, barInfo());
  };
  const closeEpisode = (b: Branch) =>
    // The results are in; a workspace that cannot be removed is only reported.
    b.episode.close().catch((e: Error) => process.stderr.write(`\neval: closing an episode of ${b.task.spec.name}: ${e.message}\n`));
  const finish = async (a: Live) => {
    agent.end?.(a.id);
    record(a);
    a.branch.members.delete(a);
    if (a.branch.members.size === 0) await closeEpisode(a.branch);
  };

  /** One trajectory's share of a step's result: its counters and its line in eval-steps.jsonl. */
  const take = (a: Live, reply: string, r: StepResult, shared: boolean) => {
    a.steps++;
    stepCount++;
    if (shared) {
      a.sharedSteps++;
      sharedCount++;
    }
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
        shared,
      };
      appendFileSync(stepsFile, `${JSON.stringify(line)}\n`);
    }
  };

  const reword = options.rewordState ?? ((id: string, response: string) => store.withLastResponse(id, response));

  /** The snapshot of `b`'s current state, for forks; undefined while it is the task's initial state. */
  const forkPoint = async (b: Branch): Promise<string | undefined> => (b.episode.stepIndex === 0 ? undefined : (b.stateId ??= await b.episode.snapshot()));

  /** A new episode for `members` of `b`, in saved state `at` (undefined: the task's initial state). */
  const fork = async (b: Branch, members: Live[], at: string | undefined): Promise<Branch | null> => {
    try {
      const episode = await start(b.task, { ...episodeOptions, fromSnapshot: at });
      const fresh: Branch = { task: b.task, episode, members: new Set(members), stateId: at ?? null };
      for (const a of members) {
        b.members.delete(a);
        a.branch = fresh;
      }
      return fresh;
    } catch (e) {
      for (const a of members) a.error = `cannot fork the trajectory from its shared state: ${(e as Error).message}`;
      return null;
    }
  };

  let rewordWarned = false;

  /**
   * Runs `reply` in `b`'s episode once, for all of `members`. Each of `rewordings` (other texts of the same action
   * call, with their trajectories) then forks from a copy of the new state that holds its text; where no copy can
   * be made, it forks from the state before and runs its own text.
   */
  const runStep = async (b: Branch, members: Live[], reply: string, rewordings: [string, Live[]][]): Promise<void> => {
    let before: string | undefined;
    let r: StepResult;
    try {
      if (rewordings.length > 0) before = await forkPoint(b);
      r = await b.episode.step(reply);
      b.stateId = r.snapshotId;
    } catch (e) {
      for (const a of [...members, ...rewordings.flatMap(([, m]) => m)]) a.error = `the environment failed: ${(e as Error).message}`;
      return;
    }
    members.forEach((a, i) => take(a, reply, r, i > 0));
    for (const [text, group] of rewordings) {
      let at: string;
      try {
        at = await reword((b.stateId ??= await b.episode.snapshot()), text);
      } catch (e) {
        if (!rewordWarned) process.stderr.write(`\neval: a step worded differently could not share its run (${(e as Error).message}); running it separately\n`);
        rewordWarned = true;
        const alone = await fork(b, group, before);
        if (alone) await runStep(alone, group, text, []);
        continue;
      }
      const forked = await fork(b, group, at);
      forked?.members.forEach((a) => take(a, text, { ...r, snapshotId: at }, true));
    }
  };

  /** Steps every acting trajectory: one run per branch and distinct response. */
  const stepAll = async (acting: Live[], replies: (string | Error)[]) => {
    const byBranch = new Map<Branch, Map<string, Live[]>>();
    acting.forEach((a, i) => {
      const reply = replies[i];
      if (reply instanceof Error) {
        a.error = `the agent failed: ${reply.message}`;
        return;
      }
      // A slow generation can use up the budget: its response is then not executed.
      if (performance.now() - a.startMs >= budgetMs) {
        a.timedOut = true;
        return;
      }
      const groups = byBranch.get(a.branch) ?? new Map<string, Live[]>();
      byBranch.set(a.branch, groups);
      groups.set(reply, [...(groups.get(reply) ?? []), a]);
    });
    // One run per branch and action call: the first call keeps the branch; each other call forks from the state
    // before this step, so all those forks start before any step runs. Other wordings of a call wait for its run.
    const runs: { branch: Branch; members: Live[]; reply: string; rewordings: [string, Live[]][] }[] = [];
    for (const [branch, groups] of byBranch) {
      const calls = new Map<string, [string, Live[]][]>();
      for (const [reply, members] of groups) {
        const key = actionCallKey(reply);
        calls.set(key, [...(calls.get(key) ?? []), [reply, members]]);
      }
      const [[[reply, members], ...rewordings], ...others] = [...calls.values()];
      runs.push({ branch, members, reply, rewordings });
      for (const [[otherReply, otherMembers], ...otherRewordings] of others) {
        const forked = await fork(branch, [...otherMembers, ...otherRewordings.flatMap(([, m]) => m)], await forkPoint(branch));
        if (forked) runs.push({ branch: forked, members: otherMembers, reply: otherReply, rewordings: otherRewordings });
      }
    }
    await Promise.all(runs.map((r) => runStep(r.branch, r.members, r.reply, r.rewordings)));
  };

  const live: Live[] = [];
  let round = 0;
  try {
    while (live.length > 0 || (queue.length > 0 && !options.signal?.aborted)) {
      // Trajectories of a task that start in this round begin in the same state: one branch.
      const starting = new Map<string, Branch>();
      while (live.length < concurrency && queue.length > 0 && !options.signal?.aborted) {
        const { task, index } = queue.shift()!;
        const id = trajectoryId(task.spec.name, index);
        const fresh = { id, task, info: infos.get(task.spec.name)!, index, startMs: performance.now(), steps: 0, formatErrors: 0, best: null, final: null, finalAnswer: false, timedOut: false, error: null, sharedSteps: 0 };
        let branch = share ? starting.get(task.spec.name) : undefined;
        try {
          if (!branch) {
            branch = { task, episode: await start(task, episodeOptions), members: new Set(), stateId: null };
            if (share) starting.set(task.spec.name, branch);
          }
          agent.begin?.(id, task, index);
          const a: Live = { ...fresh, branch };
          branch.members.add(a);
          live.push(a);
        } catch (e) {
          // A trajectory that cannot start is recorded as failed (no improvement); the others go on.
          if (branch && branch.members.size === 0) {
            starting.delete(task.spec.name);
            await branch.episode.close().catch(() => undefined);
          }
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
          turn: { messages: a.branch.episode.messages(), last: a.last, stepsLeft: a.branch.episode.maxSteps - a.branch.episode.stepIndex },
          prompt: a.branch.episode.prompt(),
        }));
        let replies: (string | Error)[];
        try {
          replies = await agent.respond(requests, { seed: roundSeed(seed, round++) });
          if (replies.length !== requests.length) throw new Error(`answered ${replies.length} of ${requests.length} requests`);
        } catch (e) {
          replies = requests.map(() => (e instanceof Error ? e : new Error(String(e))));
        }
        await stepAll(acting, replies);
      }
      for (const a of [...live]) {
        if (!(a.timedOut || a.error !== null || a.branch.episode.done)) continue;
        live.splice(live.indexOf(a), 1);
        await finish(a);
      }
    }
  } finally {
    for (const b of new Set(live.map((a) => a.branch))) await b.episode.close().catch(() => undefined);
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
        // The agent's counts and the duration cover this process only, not the trajectories a resume kept.
        notes: finished.length === 0 ? (agent.summary?.() ?? '') : [`resumed: ${finished.length} of ${total} trajectories kept from an earlier run`, agent.summary?.()].filter(Boolean).join('; the rest: '),
        startedAt: startedAt.toISOString(),
        durationSec: (Date.now() - startedAt.getTime()) / 1000,
        shareIdenticalSteps: share,
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
  makeDirs(dir);
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
