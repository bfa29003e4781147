// Trajectories in the same state with the same response share one step (evaluate's shareIdenticalSteps): the
// results must be those of independent episodes, with fewer episodes and steps run.
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { prepareTask } from '@mlagent/env';
import type { AgentRequest, EvalAgent } from '../src/eval/agent.js';
import { evaluate, type EvalStepRecord, type StartEvalEpisode } from '../src/eval/evaluate.js';
import type { EvalResult } from '../src/eval/results.js';
import { FakeEpisode, fakePrepared } from './fake-episode.js';

const LIST = 'Action: List Files\nAction Input: {"dir_path": "."}';
const RUN = 'Action: Execute Script\nAction Input: {"script_name": "train.py"}';
const DONE = 'Action: Final Answer\nAction Input: {"final_answer": "done"}';
/** Replaces lines start..end; end = start - 1 inserts before start. */
const edit = (start: number, end: number, content: string) =>
  `Action: Edit Script Lines\nAction Input: ${JSON.stringify({ script_name: 'train.py', start_line_number: start, end_line_number: end, new_content: content })}`;
const baselines = { 't-a': 0.5, 't-b': 0.5 };

/** Starts fake episodes, restoring saved states, and keeps every episode it made. */
function recordingStarter(failForks = false) {
  const episodes: FakeEpisode[] = [];
  /** Each start's snapshot (undefined: the task's initial state). */
  const starts: (string | undefined)[] = [];
  const start: StartEvalEpisode = async (task, o) => {
    starts.push(o.fromSnapshot);
    if (failForks && episodes.length > 0) throw new Error('no space left');
    const ep = o.fromSnapshot === undefined ? new FakeEpisode(task.spec.name, o.maxSteps) : FakeEpisode.restore(o.fromSnapshot, task.spec.name, o.maxSteps);
    episodes.push(ep);
    return ep;
  };
  return { start, episodes, starts };
}

/** Answers by trajectory and step from a table; every trajectory's script is fixed in advance. */
function scriptedAgent(plan: (r: AgentRequest) => string | Error): EvalAgent {
  return { name: 'plan', kind: 'test', detail: '', temperature: null, respond: async (requests) => requests.map(plan) };
}

const stepOf = (r: AgentRequest) => r.turn.messages.filter((m) => m.role === 'assistant').length;

/** Same first two steps, then index 0 and 1 edit differently, index 2 runs as is; all then run and answer. */
const branching = (r: AgentRequest): string => {
  const s = stepOf(r);
  if (s === 0) return LIST;
  if (s === 1) return r.index === 2 ? RUN : edit(3, 3, 'model = Boosting()  # +0.10');
  if (s === 2) return r.index === 0 ? RUN : r.index === 1 ? edit(1, 1, 'import data  # +0.05') : RUN;
  if (s === 3) return RUN;
  return DONE;
};

function comparable(result: EvalResult) {
  return result.trajectories.map(({ durationSec: _d, sharedSteps: _s, ...t }) => t);
}

describe('shared steps in evaluation', () => {
  it('gives the results of independent episodes, running each distinct step once and forking where responses differ', async () => {
    const run = async (share: boolean) => {
      const env = recordingStarter();
      const out = mkdtempSync(path.join(tmpdir(), 'rl-eval-share-'));
      const result = await evaluate({ tasks: fakePrepared('t-a', 't-b'), agent: scriptedAgent(branching), trajectories: 3, maxSteps: 6, timeBudgetSec: 60, concurrency: 6, baselines, progress: false, out, shareIdenticalSteps: share, startEpisode: env.start });
      const steps = readFileSync(path.join(out, 'eval-steps.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as EvalStepRecord);
      return { result, env, steps };
    };
    const alone = await run(false);
    const shared = await run(true);
    expect(comparable(shared.result)).toEqual(comparable(alone.result));
    expect(shared.result.rows).toEqual(alone.result.rows);
    // Observations and metrics step by step are the same too.
    const view = (s: EvalStepRecord[]) => s.map((x) => `${x.trajectory}#${x.step} ${x.outcome} ${x.metric} ${x.observation}`).sort();
    expect(view(shared.steps)).toEqual(view(alone.steps));
    expect(alone.steps.some((s) => s.shared)).toBe(false);

    // Per task: one episode at the start; index 2 forks at step 2 (the state after List Files), index 1 at step 3
    // (after the shared edit). So 3 episodes per task, as without sharing, but the steps run once per branch.
    expect(alone.env.episodes).toHaveLength(6);
    expect(shared.env.episodes).toHaveLength(6);
    expect(shared.env.starts.filter((f) => f !== undefined)).toHaveLength(4);
    const ran = (e: FakeEpisode[]) => e.reduce((n, x) => n + x.stepsRun, 0);
    expect(ran(alone.env.episodes)).toBe(30); // 6 trajectories x 5 steps
    // Per task: step 1 once, step 2 twice (edit, run), steps 3-5 three times each.
    expect(ran(shared.env.episodes)).toBe(2 * (1 + 2 + 3 * 3));
    expect(shared.steps.filter((s) => s.shared)).toHaveLength(30 - 24);
    expect(shared.result.trajectories.map((t) => t.sharedSteps)).toEqual([0, 2, 1, 0, 2, 1]);
    expect(shared.result.agents[0].shareIdenticalSteps).toBe(true);
    expect(alone.result.agents[0].shareIdenticalSteps).toBe(false);
    for (const e of shared.env.episodes) expect(e.closed).toBe(true);
  });

  it('runs an action call worded differently once, and forks each wording from a copy of the state with its text', async () => {
    // Step 1: one call in three wordings; step 2: each runs the script in its own words; step 3: done.
    const plan = (r: AgentRequest) => [`Thought: look ${r.index}\n${LIST}`, `Thought: run ${r.index}\n${RUN}`][stepOf(r)] ?? DONE;
    const run = async (share: boolean, rewordState = async (id: string, text: string) => FakeEpisode.reword(id, text)) => {
      const env = recordingStarter();
      const seen: string[] = [];
      const agent = scriptedAgent((r) => {
        seen.push(`${r.id}#${stepOf(r)}: ${r.turn.messages.map((m) => m.content).join(' | ')}`);
        return plan(r);
      });
      const out = mkdtempSync(path.join(tmpdir(), 'rl-eval-reword-'));
      const result = await evaluate({ tasks: fakePrepared('t-a'), agent, trajectories: 3, maxSteps: 5, timeBudgetSec: 60, concurrency: 3, baselines, progress: false, out, shareIdenticalSteps: share, startEpisode: env.start, rewordState });
      const steps = readFileSync(path.join(out, 'eval-steps.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as EvalStepRecord);
      return { result, env, seen, steps };
    };
    const alone = await run(false);
    const shared = await run(true);
    // Every trajectory saw the same prompts, its own earlier wording included, and got the same observations.
    expect(shared.seen.sort()).toEqual(alone.seen.sort());
    expect(shared.seen.some((p) => p.startsWith('t-a/0001#1') && p.includes('Thought: look 1'))).toBe(true);
    const view = (s: EvalStepRecord[]) => s.map((x) => `${x.trajectory}#${x.step} ${x.response} ${x.outcome} ${x.metric} ${x.observation}`).sort();
    expect(view(shared.steps)).toEqual(view(alone.steps));
    expect(comparable(shared.result)).toEqual(comparable(alone.result));
    const ran = (e: FakeEpisode[]) => e.reduce((n, x) => n + x.stepsRun, 0);
    expect(ran(alone.env.episodes)).toBe(9);
    expect(ran(shared.env.episodes)).toBe(7); // the listing once, then three runs and three answers
    expect(shared.env.starts).toHaveLength(3); // one episode, two forks from reworded copies
    expect(shared.env.starts.slice(1).every((id) => id !== undefined)).toBe(true);
    expect(shared.result.trajectories.map((t) => t.sharedSteps)).toEqual([0, 1, 1]);

    // Where no reworded copy can be made, each wording forks from the state before and runs as its own step.
    const fallback = await run(true, async () => {
      throw new Error('no copies here');
    });
    expect(view(fallback.steps)).toEqual(view(alone.steps));
    expect(comparable(fallback.result)).toEqual(comparable(alone.result));
    expect(ran(fallback.env.episodes)).toBe(9);
    expect(fallback.env.starts).toEqual([undefined, undefined, undefined]);
  });

  it('forks from the initial state when responses differ at the first step, and shares only among trajectories that start together', async () => {
    const env = recordingStarter();
    const agent = scriptedAgent((r) => (stepOf(r) >= 2 ? DONE : r.index === 1 && stepOf(r) === 0 ? RUN : LIST));
    // Concurrency 3: indices 0-2 start together, index 3 in a later round.
    const result = await evaluate({ tasks: fakePrepared('t-a'), agent, trajectories: 4, maxSteps: 5, timeBudgetSec: 60, concurrency: 3, baselines, progress: false, startEpisode: env.start });
    expect(result.trajectories.map((t) => [t.steps, t.error])).toEqual([0, 1, 2, 3].map(() => [3, null]));
    // One episode for 0-2, a fresh one for 1 when it forks at the first step, and one for 3.
    expect(env.starts).toEqual([undefined, undefined, undefined]);
    expect(result.trajectories.map((t) => t.sharedSteps)).toEqual([0, 0, 3, 0]);
  });

  it('keeps a trajectory that leaves (agent error) from closing the episode the others still use', async () => {
    const env = recordingStarter();
    const agent = scriptedAgent((r) => (stepOf(r) === 1 && r.index === 0 ? new Error('HTTP 500') : stepOf(r) >= 3 ? DONE : RUN));
    const result = await evaluate({ tasks: fakePrepared('t-a'), agent, trajectories: 2, maxSteps: 5, timeBudgetSec: 60, concurrency: 2, baselines, progress: false, startEpisode: env.start });
    expect(result.trajectories.map((t) => [t.steps, t.error, t.sharedSteps])).toEqual([
      [1, 'the agent failed: HTTP 500', 0],
      [4, null, 1],
    ]);
    expect(env.episodes).toHaveLength(1);
    expect(env.episodes[0].stepsRun).toBe(4);
    expect(env.episodes[0].closed).toBe(true);
  });

  it('fails only the trajectories whose fork cannot start', async () => {
    const env = recordingStarter(true);
    const agent = scriptedAgent((r) => (stepOf(r) === 1 ? (r.index === 2 ? LIST : RUN) : stepOf(r) >= 2 ? DONE : LIST));
    const result = await evaluate({ tasks: fakePrepared('t-a'), agent, trajectories: 3, maxSteps: 5, timeBudgetSec: 60, concurrency: 3, baselines, progress: false, startEpisode: env.start });
    expect(result.trajectories.map((t) => [t.steps, t.error])).toEqual([
      [3, null],
      [3, null],
      [1, 'cannot fork the trajectory from its shared state: no space left'],
    ]);
    expect(env.starts).toHaveLength(2);
    expect(env.starts[1]).toMatch(/^[0-9a-f]{64}$/);
  });
});

describe('shared steps in evaluation, on a real task', () => {
  // A shared edit in two wordings: trajectory 1 forks from a reworded copy of the state in the real snapshot store,
  // then runs the edited script and shows the edit there.
  const inspect = 'Action: Inspect Script Lines\nAction Input: {"script_name": "train.py", "start_line_number": 1, "end_line_number": 1}';
  const plan = (r: AgentRequest): string => {
    const s = stepOf(r);
    if (s === 0) return `Thought: edit it (${r.index})\n${edit(1, 0, '# a shared edit')}`; // one call, two wordings
    if (s === 1) return r.index === 0 ? inspect : RUN;
    if (s === 2) return r.index === 0 ? DONE : inspect;
    return DONE;
  };

  it('gives the steps of separate episodes', async () => {
    const task = await prepareTask('house-prices');
    const run = async (share: boolean) => {
      const out = mkdtempSync(path.join(tmpdir(), 'rl-eval-share-real-'));
      const result = await evaluate({ tasks: [task], agent: scriptedAgent(plan), trajectories: 2, maxSteps: 5, timeBudgetSec: 300, concurrency: 2, out, progress: false, shareIdenticalSteps: share });
      const steps = readFileSync(path.join(out, 'eval-steps.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as EvalStepRecord);
      return { result, steps };
    };
    const alone = await run(false);
    const shared = await run(true);
    const view = (s: EvalStepRecord[]) => s.map((x) => `${x.trajectory}#${x.step} ${x.action} ${x.outcome} ${x.metric} ${x.observation}`).sort();
    expect(view(shared.steps)).toEqual(view(alone.steps));
    expect(comparable(shared.result)).toEqual(comparable(alone.result));
    expect(shared.steps.filter((s) => s.shared).map((s) => `${s.trajectory}#${s.step}`)).toEqual(['house-prices/0001#1']);
    const forked = shared.steps.filter((s) => s.trajectory === 'house-prices/0001');
    expect(forked.map((s) => s.outcome)).toEqual(['none', 'ok', 'none', 'none']);
    expect(forked[1].metric).not.toBeNull();
    expect(forked[2].observation).toContain('# a shared edit');
    expect(forked[0].response).toContain('edit it (1)');
  }, 120_000);
});
