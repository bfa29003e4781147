// A fast fake environment for the PPO loop tests: a states pool from a fake collection (no Python), episodes whose
// prompt is one short line, and a step that "grades" the response by its text (so rewards vary between samples).
import { existsSync } from 'node:fs';
import type { StepResult } from '@mlagent/env';
import { collect } from '../src/collect/runner.js';
import type { TrainConfigInput } from '../src/config/train-config.js';
import { ScriptedExpert } from '../src/experts/scripted.js';
import type { ActingEpisode, ActionEnv } from '../src/train/env.js';
import { fakePrepared, startFake } from './fake-episode.js';

/** Three steps per trajectory (no edit yet); with `maxSteps` 8 the scripted expert edits. */
export async function fakeCollection(dir: string, maxSteps = 3): Promise<void> {
  if (existsSync(`${dir}/steps.jsonl`)) return;
  await collect({ tasks: fakePrepared('alpha', 'beta'), expert: new ScriptedExpert(), trajectories: 1, ideas: 2, maxSteps, out: dir, progress: false, startEpisode: startFake });
}

/** The metric of a response: how many distinct characters it has, over 16 (higher is better). */
export function fakeMetric(text: string): number {
  return Math.min(1, new Set(text).size / 16);
}

class FakeActing implements ActingEpisode {
  done = false;
  private steps = 0;
  constructor(
    private readonly line: string,
    public currentMetric: number | null,
    private readonly maxSteps: number,
  ) {}
  messages() {
    return [{ role: 'user' as const, content: `${this.line} Step ${this.steps + 1}.` }];
  }
  async step(response: string): Promise<StepResult> {
    const metric = fakeMetric(response);
    const previousMetric = this.currentMetric;
    this.currentMetric = metric;
    this.done = ++this.steps >= this.maxSteps;
    await new Promise((r) => setTimeout(r, 20)); // the env takes a moment
    return {
      step: this.steps,
      action: 'Execute Script',
      actionInput: null,
      observation: 'ran',
      outcome: 'ok',
      metric,
      feedback: { formatValid: response.trim().length > 0, isEdit: false, outcome: 'ok', metric, previousMetric, durationSec: 0.02 },
      snapshotId: 'x',
      durationSec: 0.02,
      done: this.done,
    };
  }
  async close() {}
}

/** Restored states take one step here; episodes from a task's start run `episodeSteps`. */
export function fakeEnv(episodeSteps = 2): ActionEnv {
  return {
    restore: async (s) => new FakeActing(`Task ${s.task}, step ${s.step}.`, 0.25, 1),
    start: async (task) => new FakeActing(`Task ${task}, start.`, 0.25, episodeSteps),
    taskMetric: (name) => ({ name, direction: 'maximize', baseline: 0.25, best: 1 }),
    close: async () => {},
  };
}

/** fakeEnv() with a count of the steps its restored episodes take (what ran in the env, not what was reused). */
export function countingEnv(): { env: ActionEnv; counter: { steps: number } } {
  const env = fakeEnv();
  const counter = { steps: 0 };
  const restore = env.restore;
  env.restore = async (s) => {
    const ep = await restore(s);
    const step = ep.step.bind(ep);
    ep.step = (text) => (counter.steps++, step(text));
    return ep;
  };
  return { env, counter };
}

/** Two states × two actions of three tokens per iteration: the smallest loop that still has groups to compare.
 * Drawn from the whole pool: the fake collection's three steps hold no edit. */
export const LOOP_CONFIG: TrainConfigInput = {
  preset: 'tiny',
  lora: { rank: 4, alpha: 8, dropout: 0, targets: ['q_proj', 'v_proj'] },
  ppo: { iterations: 2, statesPerIteration: 2, samplesPerState: 2, minibatchSize: 4, maxNewTokens: 3, checkpointEvery: 1, advantage: 'gae', actorLr: 1e-3, editStateShare: null },
};
