// The evaluation loop on fake episodes (no Python): rounds and their batches, seeds, failures that stay per
// trajectory, and the expert agent's seed plans matching collection's.
import { appendFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import type { PreparedTask } from '@mlagent/env';
import { ScriptedExpert } from '../src/experts/scripted.js';
import type { Expert, SeedPlan } from '../src/experts/types.js';
import { seedPlan, taskIdeas } from '../src/collect/seeds.js';
import { expertAgent, roundSeed, type AgentRequest, type EvalAgent } from '../src/eval/agent.js';
import { evaluate, type StartEvalEpisode } from '../src/eval/evaluate.js';
import { EVAL_TRAJECTORIES_FILE, evalComplete } from '../src/eval/resume.js';
import { FakeEpisode, fakePrepared } from './fake-episode.js';

const LIST = 'Action: List Files\nAction Input: {"dir_path": "."}';
const startFake: StartEvalEpisode = async (task, o) => new FakeEpisode(task.spec.name, o.maxSteps);
const baselines = { 't-a': 0.5, 't-b': 0.5 };

function recordingAgent(answer: (r: AgentRequest) => string | Error): EvalAgent & { calls: { ids: string[]; seed: number; stepsLeft: number[] }[] } {
  const calls: { ids: string[]; seed: number; stepsLeft: number[] }[] = [];
  return {
    name: 'recorder',
    kind: 'test',
    detail: '',
    temperature: null,
    calls,
    async respond(requests, round) {
      calls.push({ ids: requests.map((r) => r.id), seed: round.seed, stepsLeft: requests.map((r) => r.turn.stepsLeft) });
      return requests.map(answer);
    },
  };
}

describe('the evaluation loop', () => {
  it('answers the live trajectories in rounds, in job order, each round with its own seed', async () => {
    const agent = recordingAgent((r) => (r.id === 't-a/0001' ? 'no idea' : LIST));
    const result = await evaluate({ tasks: fakePrepared('t-a', 't-b'), agent, trajectories: 2, maxSteps: 2, timeBudgetSec: 60, concurrency: 3, seed: 7, baselines, progress: false, startEpisode: startFake });
    expect(agent.calls.map((c) => c.ids)).toEqual([
      ['t-a/0000', 't-a/0001', 't-b/0000'],
      ['t-a/0000', 't-a/0001', 't-b/0000'],
      ['t-b/0001'],
      ['t-b/0001'],
    ]);
    expect(agent.calls.map((c) => c.seed)).toEqual([0, 1, 2, 3].map((r) => roundSeed(7, r)));
    expect(new Set(agent.calls.map((c) => c.seed)).size).toBe(4);
    expect(agent.calls[1].stepsLeft).toEqual([1, 1, 1]);
    const [a, b] = result.rows;
    expect(a).toMatchObject({ task: 't-a', formatErrorRate: 0.5, meanSteps: 2, submitted: 0, avg: 0.5, best: 0.5, successRate: 0 });
    expect(b).toMatchObject({ task: 't-b', formatErrorRate: 0 });
    expect(result.trajectories.map((t) => `${t.task}/${t.index}:${t.formatErrors}`)).toEqual(['t-a/0:0', 't-a/1:2', 't-b/0:0', 't-b/1:0']);
  });

  it('keeps failures to their trajectory: one that cannot start, an agent error, a round that throws', async () => {
    let starts = 0;
    const flakyStart: StartEvalEpisode = async (task, o) => {
      if (++starts === 2) throw new Error('disk full');
      return new FakeEpisode(task.spec.name, o.maxSteps);
    };
    let rounds = 0;
    const agent: EvalAgent = {
      name: 'flaky',
      kind: 'test',
      detail: '',
      temperature: null,
      async respond(requests) {
        if (++rounds === 3) throw new Error('GPU lost');
        return requests.map((r) => (r.id === 't-a/0002' ? new Error('HTTP 404') : LIST));
      },
    };
    // Each trajectory in its own episode, so the second start is trajectory 1's (sharing would start one).
    const result = await evaluate({ tasks: fakePrepared('t-a'), agent, trajectories: 4, maxSteps: 3, timeBudgetSec: 60, concurrency: 4, baselines, progress: false, shareIdenticalSteps: false, startEpisode: flakyStart });
    const byIndex = new Map(result.trajectories.map((t) => [t.index, t]));
    expect(result.trajectories).toHaveLength(4);
    expect(byIndex.get(1)).toMatchObject({ steps: 0, score: 0.5, submitted: false, error: 'cannot start the trajectory: disk full' });
    expect(byIndex.get(2)).toMatchObject({ steps: 0, error: 'the agent failed: HTTP 404' });
    // Round 3 threw: the trajectories still live then fail with its error after two steps.
    expect(byIndex.get(0)).toMatchObject({ steps: 2, error: 'the agent failed: GPU lost' });
    expect(byIndex.get(3)).toMatchObject({ steps: 2, error: 'the agent failed: GPU lost' });
    expect(result.rows[0]).toMatchObject({ failed: 4, trajectories: 4, avg: 0.5 });
  });

  it('does not start trajectories once aborted, and reports those that ran', async () => {
    const abort = new AbortController();
    const agent = recordingAgent(() => {
      abort.abort();
      return LIST;
    });
    const result = await evaluate({ tasks: fakePrepared('t-a'), agent, trajectories: 3, maxSteps: 2, timeBudgetSec: 60, baselines, progress: false, signal: abort.signal, startEpisode: startFake });
    expect(result.trajectories.map((t) => [t.index, t.steps])).toEqual([[0, 2]]);
    expect(result.rows[0].trajectories).toBe(1);
  });

  it('resumes an interrupted or killed evaluation: finished trajectories stay, the others run from their start', async () => {
    const out = mkdtempSync(path.join(tmpdir(), 'rl-eval-resume-'));
    try {
      const opts = { tasks: fakePrepared('t-a', 't-b'), trajectories: 2, maxSteps: 2, timeBudgetSec: 60, baselines, progress: false, startEpisode: startFake, out };
      // Interrupted (Ctrl-C) as its first trajectory ends: eval.json holds that one.
      const abort = new AbortController();
      const first = { ...recordingAgent(() => LIST), end: () => abort.abort() };
      const partial = await evaluate({ ...opts, agent: first, signal: abort.signal });
      expect(partial.trajectories.map((t) => `${t.task}/${t.index}`)).toEqual(['t-a/0']);
      // As a kill would leave it: a later trajectory's step logged, and its record cut short mid-line.
      appendFileSync(path.join(out, 'eval-steps.jsonl'), `${JSON.stringify({ trajectory: 't-a/0001', step: 1 })}\n`);
      appendFileSync(path.join(out, EVAL_TRAJECTORIES_FILE), '{"agent":"recorder","task":"t-a","ind');
      expect(evalComplete(out)).toBe(false);

      await expect(evaluate({ ...opts, agent: recordingAgent(() => LIST) })).rejects.toThrow(/holds an unfinished evaluation \(1 trajectories recorded\); --resume continues it, --force starts over/);
      await expect(evaluate({ ...opts, trajectories: 3, agent: recordingAgent(() => LIST), resume: true })).rejects.toThrow(/another trajectories \(2 there, 3 now\)/);

      const agent = { ...recordingAgent(() => LIST), summary: () => 'counts of this process' };
      const result = await evaluate({ ...opts, agent, resume: true });
      expect(result.agents[0].notes).toBe('resumed: 1 of 4 trajectories kept from an earlier run; the rest: counts of this process');
      // The finished trajectory is not run again; the three others are, from their start.
      expect(agent.calls.flatMap((c) => c.ids)).not.toContain('t-a/0000');
      expect(new Set(agent.calls.flatMap((c) => c.ids))).toEqual(new Set(['t-a/0001', 't-b/0000', 't-b/0001']));
      expect(result.trajectories.map((t) => `${t.task}/${t.index}`)).toEqual(['t-a/0', 't-a/1', 't-b/0', 't-b/1']);
      expect(result.trajectories[0]).toEqual(partial.trajectories[0]);
      expect(result.rows.map((r) => r.trajectories)).toEqual([2, 2]);
      // Each trajectory's steps once: the killed one's stray line is gone.
      const steps = readFileSync(path.join(out, 'eval-steps.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { trajectory: string });
      const count = (id: string) => steps.filter((l) => l.trajectory === id).length;
      expect(['t-a/0000', 't-a/0001', 't-b/0000', 't-b/0001'].map(count)).toEqual([2, 2, 2, 2]);
      expect(evalComplete(out)).toBe(true);
      await expect(evaluate({ ...opts, agent: recordingAgent(() => LIST), resume: true })).rejects.toThrow(/holds a finished evaluation \(eval\.json\); nothing to resume/);
      // whenFinished 'reuse' returns the saved result without running anything, and still refuses another run.
      const idle = recordingAgent(() => LIST);
      expect(await evaluate({ ...opts, agent: idle, resume: true, whenFinished: 'reuse' })).toEqual(JSON.parse(readFileSync(path.join(out, 'eval.json'), 'utf8')));
      expect(idle.calls).toHaveLength(0);
      await expect(evaluate({ ...opts, maxSteps: 3, agent: idle, resume: true, whenFinished: 'reuse' })).rejects.toThrow(/another maxSteps \(2 there, 3 now\)/);
      await expect(evaluate({ ...opts, agent: idle, resume: true, whenFinished: 'keep' as 'reuse' })).rejects.toThrow(/whenFinished must be 'refuse' or 'reuse', got "keep"/);
      await expect(evaluate({ ...opts, agent: recordingAgent(() => LIST) })).rejects.toThrow(/eval\.json already exists/);
      // --force starts over.
      const again = recordingAgent(() => LIST);
      expect((await evaluate({ ...opts, agent: again, overwrite: true })).trajectories).toHaveLength(4);
      expect(again.calls.flatMap((c) => c.ids)).toContain('t-a/0000');
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });

  it("refuses a resume that changes the agent's settings, naming each; an eval-run.json without them is resumed with a warning", async () => {
    const out = mkdtempSync(path.join(tmpdir(), 'rl-eval-settings-'));
    try {
      const opts = { tasks: fakePrepared('t-a'), trajectories: 2, maxSteps: 2, timeBudgetSec: 60, baselines, progress: false, startEpisode: startFake, out };
      const withSettings = (settings: EvalAgent['settings']) => ({ ...recordingAgent(() => LIST), settings });
      const abort = new AbortController();
      await evaluate({ ...opts, agent: { ...withSettings({ maxNewTokens: 4, promptFormat: 'messages' }), end: () => abort.abort() }, signal: abort.signal });
      expect(evalComplete(out)).toBe(false);

      await expect(evaluate({ ...opts, agent: withSettings({ maxNewTokens: 8, promptFormat: 'prompt' }), resume: true })).rejects.toThrow(
        /holds an evaluation with another maxNewTokens \(4 there, 8 now\), promptFormat \("messages" there, "prompt" now\); resume it as it was/,
      );

      // As an older mlagent wrote it: no settings, so they cannot be checked; the resume says so and goes on.
      const runFile = path.join(out, 'eval-run.json');
      const { settings: _, ...old } = JSON.parse(readFileSync(runFile, 'utf8'));
      writeFileSync(runFile, JSON.stringify(old));
      const lines: string[] = [];
      const spy = vi.spyOn(process.stderr, 'write').mockImplementation((chunk) => (lines.push(String(chunk)), true));
      let result;
      try {
        result = await evaluate({ ...opts, agent: withSettings({ maxNewTokens: 8 }), resume: true });
      } finally {
        spy.mockRestore();
      }
      expect(result.trajectories).toHaveLength(2);
      expect(lines.join('')).toContain(`eval: ${runFile} does not record maxNewTokens (written by an older mlagent), so the resumed trajectories cannot be checked`);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });

  it("starts episodes with the prompts' history window and observation cut, records them, and refuses a resume with others", async () => {
    const out = mkdtempSync(path.join(tmpdir(), 'rl-eval-prompts-'));
    try {
      const seen: unknown[] = [];
      const start: StartEvalEpisode = async (task, o) => {
        seen.push([o.historyWindow, o.maxObservationChars]);
        return startFake(task, o);
      };
      const opts = { tasks: fakePrepared('t-a'), trajectories: 2, maxSteps: 2, timeBudgetSec: 60, baselines, progress: false, startEpisode: start, out };
      const abort = new AbortController();
      await evaluate({ ...opts, agent: { ...recordingAgent(() => LIST), end: () => abort.abort() }, signal: abort.signal, prompts: { historyWindow: 1, maxObservationChars: 300 } });
      expect(seen[0]).toEqual([1, 300]);
      expect(JSON.parse(readFileSync(path.join(out, 'eval-run.json'), 'utf8')).settings).toEqual({ historyWindow: 1, maxObservationChars: 300 });
      await expect(evaluate({ ...opts, agent: recordingAgent(() => LIST), resume: true, prompts: { historyWindow: 5, maxObservationChars: 300 } })).rejects.toThrow(/another historyWindow \(1 there, 5 now\)/);
      await expect(evaluate({ ...opts, agent: recordingAgent(() => LIST), overwrite: true, prompts: { maxObservationChars: 0 } })).rejects.toThrow(/maxObservationChars must be a positive integer, got 0/);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });

  it('seeds each expert trajectory with the plan collection draws for the same seed and index', async () => {
    const plans = new Map<string, SeedPlan>();
    const scripted = new ScriptedExpert();
    const spy: Expert = {
      name: 'scripted',
      begin: (task, plan) => {
        plans.set(`${task.spec.name}/${plans.size}`, plan);
        return scripted.begin(task, plan);
      },
    };
    const tasks = fakePrepared('t-a');
    const result = await evaluate({ tasks, agent: expertAgent(spy, { ideas: 3, seed: 4 }), trajectories: 3, maxSteps: 10, timeBudgetSec: 60, concurrency: 2, baselines, progress: false, startEpisode: startFake, rewordState: async (id, text) => FakeEpisode.reword(id, text) });
    const ideas = taskIdeas(tasks[0] as PreparedTask, 3, 4);
    expect([...plans.values()]).toEqual([0, 1, 2].map((i) => seedPlan(ideas, i, 4)));
    // The fake env scores 0.5 plus the kept ideas' markers; the expert only keeps improvements.
    for (const t of result.trajectories) {
      expect(t.submitted).toBe(true);
      expect(t.bestMetric!).toBeGreaterThanOrEqual(0.5);
      expect(t.formatErrors).toBe(0);
    }
    expect(result.rows[0].best).toBe(Math.max(...result.trajectories.map((t) => t.score)));
  });
});
