// stepRollouts samples states in fixed runs of generationBatch / samplesPerState per generate() call. A resumed
// iteration (some groups saved) samples its runs whole again, so its fresh groups match an uninterrupted run's.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultStopTokenIds, generate, type QwenModel, type QwenTokenizer } from '@mlagent/policy';
import { mixSeed } from '../src/collect/seeds.js';
import { parseTrainConfig } from '../src/config/train-config.js';
import type { PoolState } from '../src/pool/states-pool.js';
import { stepRollouts, type RolloutContext } from '../src/train/rollout.js';
import type { RolloutGroup } from '../src/train/rollouts.js';
import { countingEnv, fakeEnv } from './ppo-loop-fixture.js';
import { tinyModel, type TinyModel } from './tiny-model.js';

let tiny: TinyModel;
let model: QwenModel;
let tokenizer: QwenTokenizer;

beforeAll(async () => {
  tiny = await tinyModel('rl-runs-');
  ({ model, tokenizer } = tiny);
}, 120_000);

afterAll(() => tiny?.close());

const states: PoolState[] = ['alpha', 'beta', 'gamma'].map((task, i) => ({ task, trajectory: `${task}/0000`, step: i + 1, snapshotId: `s${i}`, messages: [], prompt: '', metric: 0.25, visits: 1 }));

async function rollouts(generationBatch: number, saved = new Map<number, RolloutGroup>()) {
  const config = parseTrainConfig({ preset: 'tiny', ppo: { samplesPerState: 2, generationBatch, maxNewTokens: 4, temperature: 1, compactPrompts: false } }).ppo;
  const ctx: RolloutContext = { model, tokenizer, env: fakeEnv(), config, reward: {}, seed: 11, onGroup: () => {} };
  return stepRollouts(ctx, 0, states, saved);
}

const texts = (g: RolloutGroup) => g.samples.map((s) => s.text);

describe('stepRollouts runs', () => {
  it('a resumed iteration samples its fresh groups as an uninterrupted one did, with runs of one state or of several', async () => {
    for (const batch of [2, 4, 32]) {
      const whole = await rollouts(batch);
      expect(whole.map((g) => g.group)).toEqual([0, 1, 2]);
      for (const g of whole) expect(g.samples).toHaveLength(2);
      // Group 1 saved (the kill came after it): groups 0 and 2 are sampled again, in the same runs, with the same seeds.
      const resumed = await rollouts(batch, new Map([[1, whole[1]]]));
      expect(resumed[1]).toBe(whole[1]);
      expect(texts(resumed[0]), `batch ${batch}`).toEqual(texts(whole[0]));
      expect(texts(resumed[2]), `batch ${batch}`).toEqual(texts(whole[2]));
    }
  }, 120_000);

  it('runs of one state sample each state with the seed it had before runs existed', async () => {
    const one = await rollouts(2);
    const config = parseTrainConfig({ preset: 'tiny', ppo: { samplesPerState: 2, maxNewTokens: 4, temperature: 1 } }).ppo;
    for (const g of one) {
      const alone = await generate(model, g.prompts, {
        maxNewTokens: config.maxNewTokens,
        temperature: config.temperature,
        topP: config.topP,
        seed: mixSeed(11, `ppo/generate/0/${g.group}`),
        stopTokenIds: defaultStopTokenIds(model.config, tokenizer),
      });
      expect(g.samples.map((s) => s.response)).toEqual(alone.map((r) => r.ids));
    }
  }, 120_000);

  it('executes the samples of a state that make the same action call once, whatever their other text', async () => {
    // The random model's texts are replaced at decoding: two phrasings of one call, and another call.
    const run = (thought: string) => `Thought: ${thought}\nAction: Execute Script\nAction Input: {"script_name": "train.py"}`;
    const scripted = [run('a'), run('something else'), 'Action: List Files\nAction Input: {"dir_path": "."}'];
    let decoded = 0;
    const phrasing = Object.create(tokenizer) as QwenTokenizer;
    phrasing.decode = () => scripted[decoded++ % scripted.length];
    const { env, counter } = countingEnv();
    const config = parseTrainConfig({ preset: 'tiny', ppo: { samplesPerState: 3, maxNewTokens: 4, temperature: 1, compactPrompts: false } }).ppo;
    const groups = await stepRollouts({ model, tokenizer: phrasing, env, config, reward: {}, seed: 11, onGroup: () => {} }, 0, states, new Map());
    expect(counter.steps).toBe(2 * states.length);
    for (const g of groups) {
      expect(g.samples.map((s) => s.text)).toEqual(scripted);
      expect(g.samples.map((s) => s.reused ?? false)).toEqual([false, true, false]);
      // The copy has the first phrasing's result (the fake env grades by text), not one of its own.
      expect(g.samples[1]).toMatchObject({ metric: g.samples[0].metric, reward: g.samples[0].reward, envSeconds: 0 });
    }
  }, 120_000);
});
