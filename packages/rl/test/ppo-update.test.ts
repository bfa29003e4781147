import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Gpu, profileWork } from '@mlagent/core-kernels';
import { LoraAdapter, QwenModel, QwenTokenizer, TrainOptimizer, ValueHead, initModel, loadAdapter, policyForward, saveAdapter, valueForward, type LoraConfig } from '@mlagent/policy';
import { defaultTrainConfig, type PpoConfig } from '../src/config/train-config.js';
import { durationWeights } from '@mlagent/reward';
import { grpoAdvantages } from '../src/ppo/advantages.js';
import { ppoUpdate, type PpoSample } from '../src/ppo/update.js';

// Two states, two fixed actions each (one rewarded), on a tiny random Qwen2 through lavapipe.
let gpu: Gpu;
let model: QwenModel;
let dir: string;
let prompts: number[][];
let responses: number[][];
const lora: LoraConfig = { r: 4, alpha: 8, dropout: 0, targetModules: ['q_proj', 'v_proj', 'down_proj'] };

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'rl-ppo-'));
  initModel({ arch: 'qwen2', preset: 'tiny', outDir: dir, seed: 0 });
  const tok = QwenTokenizer.fromDir(dir);
  prompts = ['Task: house prices. Next?', 'Task: spam. Next?'].map((p) => tok.encode(p));
  responses = ['Action: Final Answer', 'Action: List Files'].map((r) => tok.encode(r));
  gpu = await Gpu.create();
  model = await QwenModel.load(gpu, dir);
}, 120_000);

afterAll(() => {
  model?.dispose();
  rmSync(dir, { recursive: true, force: true });
});

/** Summed log-prob of each (state, action) under the adapter. */
async function sequenceLogp(adapter: LoraAdapter): Promise<number[]> {
  const seqs = prompts.flatMap((p) => responses.map((r) => [...p, ...r]));
  const pass = await policyForward(model, seqs, { adapter, grad: false });
  return seqs.map((s, b) => Array.from(pass.logprobs[b].subarray(s.length - responses[b % 2].length)).reduce((a, x) => a + x, 0));
}

async function samplesFor(adapter: LoraAdapter): Promise<PpoSample[]> {
  const out: PpoSample[] = [];
  for (const [g, p] of prompts.entries()) {
    const seqs = responses.map((r) => [...p, ...r]);
    const pass = await policyForward(model, seqs, { adapter, grad: false });
    responses.forEach((r, k) => out.push({ group: g, prompt: p, response: r, oldLogp: pass.logprobs[k].slice(p.length), reward: k === 0 ? 1 : 0, task: `task${g}` }));
  }
  return out;
}

describe('ppoUpdate on the policy training API', () => {
  it('GRPO: one update raises the rewarded actions and lowers the others', async () => {
    const actor = LoraAdapter.create(model, lora, { seed: 1 });
    const actorOptimizer = new TrainOptimizer(gpu, [actor], { lr: 5e-3, maxGradNorm: 1 });
    const config: PpoConfig = { ...defaultTrainConfig().ppo, advantage: 'grpo', minibatchSize: 4, epochs: 1, klCoef: 0.001, klMode: 'loss' };
    const samples = await samplesFor(actor);
    const before = await sequenceLogp(actor);
    const stats = await ppoUpdate({ model, actor, actorOptimizer }, samples, config, { seed: 0, iteration: 0 });
    const after = await sequenceLogp(actor);
    expect(stats).toMatchObject({ samples: 4, skipped: 0, zeroVarianceGroups: 0, optimizerSteps: 1, reward: 0.5, rewardByTask: { task0: 0.5, task1: 0.5 } });
    expect(stats.clipFrac).toBe(0); // first epoch: ratio = 1 everywhere
    expect(stats.kl).toBe(0); // a fresh adapter (B = 0) equals the reference
    expect(stats.actorGradNorm).toBeGreaterThan(0);
    for (const state of [0, 1]) {
      expect(after[2 * state]).toBeGreaterThan(before[2 * state]); // rewarded
      expect(after[2 * state + 1]).toBeLessThan(before[2 * state + 1]);
    }
    actorOptimizer.dispose();
    actor.dispose();
  }, 300_000);

  it('KL is measured to the reference adapter when given (the SFT policy), else to the base with LoRA off', async () => {
    const actor = LoraAdapter.create(model, lora, { seed: 5 });
    const actorOptimizer = new TrainOptimizer(gpu, [actor], { lr: 5e-3, maxGradNorm: 1 });
    const config: PpoConfig = { ...defaultTrainConfig().ppo, advantage: 'grpo', minibatchSize: 4, epochs: 1, klCoef: 0.001, klMode: 'loss' };
    await ppoUpdate({ model, actor, actorOptimizer }, await samplesFor(actor), config, { seed: 0, iteration: 0 }); // moves away from B = 0
    const saved = mkdtempSync(join(tmpdir(), 'rl-ppo-ref-'));
    await saveAdapter(actor, saved, { baseModel: dir });
    const reference = loadAdapter(model, saved);
    const toReference = await ppoUpdate({ model, actor, actorOptimizer, reference }, await samplesFor(actor), { ...config, actorLr: 1e-12 }, { seed: 0, iteration: 1 });
    expect(toReference.kl).toBeLessThan(1e-6);
    const toBase = await ppoUpdate({ model, actor, actorOptimizer }, await samplesFor(actor), config, { seed: 0, iteration: 2 });
    expect(toBase.kl).toBeGreaterThan(1e-4);
    reference.dispose();
    actorOptimizer.dispose();
    actor.dispose();
    rmSync(saved, { recursive: true, force: true });
  }, 300_000);

  it("oldLogprobs 'actor': π_old is the actor's own forward, whatever the sampler recorded, and the gap is reported", async () => {
    const config: PpoConfig = { ...defaultTrainConfig().ppo, advantage: 'grpo', minibatchSize: 4, epochs: 1, klCoef: 0.001, klMode: 'loss' };
    const run = async (oldLogprobs: 'sampler' | 'actor', skew: number, samplerRatioCap: number | null = null) => {
      const actor = LoraAdapter.create(model, lora, { seed: 7 });
      const actorOptimizer = new TrainOptimizer(gpu, [actor], { lr: 5e-3, maxGradNorm: 1 });
      // A sampler whose numbers are off by ±skew per token (alternating).
      const samples = (await samplesFor(actor)).map((x) => ({ ...x, oldLogp: Float32Array.from(x.oldLogp, (v, t) => v + (t % 2 ? skew : -skew)) }));
      const stats = await ppoUpdate({ model, actor, actorOptimizer }, samples, { ...config, oldLogprobs, samplerRatioCap }, { seed: 0, iteration: 0 });
      const after = await sequenceLogp(actor);
      actorOptimizer.dispose();
      actor.dispose();
      return { stats, after };
    };
    const exact = await run('sampler', 0);
    const recomputed = await run('actor', 0.3);
    const skewed = await run('sampler', 0.3);
    expect(exact.stats.oldLogpGap).toBeNaN();
    expect(recomputed.stats.oldLogpGap).toBeCloseTo(0.3, 5);
    expect(recomputed.stats.oldLogpGapMax).toBeCloseTo(0.3, 5);
    // With the actor's own log-probs the update is the exact sampler's; with the skewed sampler's it is not.
    expect(recomputed.stats.clipFrac).toBe(0);
    expect(recomputed.stats.policyLoss).toBeCloseTo(exact.stats.policyLoss, 6);
    recomputed.after.forEach((x, i) => expect(x).toBeCloseTo(exact.after[i], 5));
    expect(Math.abs(skewed.stats.policyLoss - exact.stats.policyLoss)).toBeGreaterThan(1e-3);
    expect(recomputed.stats.samplerWeight).toBeNaN();

    // Truncated importance weights: π_old / π_sampler is e^0.3 on even tokens (capped at 1.2), e^-0.3 on odd ones.
    const capped = await run('actor', 0.3, 1.2);
    const weightsOf = (n: number) => Array.from({ length: n }, (_, t) => (t % 2 ? Math.exp(-0.3) : 1.2));
    const all = [0, 1].flatMap(() => responses.flatMap((r) => weightsOf(r.length)));
    expect(capped.stats.samplerWeight).toBeCloseTo(all.reduce((a, w) => a + w, 0) / all.length, 5);
    console.log(`capped vs uncapped update: max |Δ logp| ${Math.max(...capped.after.map((x, i) => Math.abs(x - recomputed.after[i])))}`);
    // The weights change the gradient, so the update.
    expect(Math.max(...capped.after.map((x, i) => Math.abs(x - recomputed.after[i])))).toBeGreaterThan(1e-4);
  }, 300_000);

  it("durationWeighting: each sample's policy term is weighted by its code's run time over the mean, absent times as the mean", async () => {
    const config: PpoConfig = { ...defaultTrainConfig().ppo, advantage: 'grpo', minibatchSize: 4, epochs: 1, klCoef: 0, klMode: 'none' };
    const durations = [3, 1, undefined, 1];
    const run = async (durationWeighting: boolean) => {
      const actor = LoraAdapter.create(model, lora, { seed: 9 });
      const actorOptimizer = new TrainOptimizer(gpu, [actor], { lr: 5e-3, maxGradNorm: 1 });
      const samples = (await samplesFor(actor)).map((x, i) => ({ ...x, durationSec: durations[i] }));
      const stats = await ppoUpdate({ model, actor, actorOptimizer }, samples, { ...config, durationWeighting }, { seed: 0, iteration: 0 });
      actorOptimizer.dispose();
      actor.dispose();
      return { stats, samples };
    };
    // First epoch, ratio 1: the token-mean policy loss is -Σ_i w_i·A_i·len_i / Σ_i len_i.
    const expected = (samples: PpoSample[], w: number[]) => {
      const { advantages } = grpoAdvantages(samples.map((x) => x.reward), samples.map((x) => x.group), { skipZeroVariance: config.skipZeroVarianceGroups });
      const tokens = samples.reduce((n, x) => n + x.response.length, 0);
      return -samples.reduce((sum, x, i) => sum + w[i] * advantages[i] * x.response.length, 0) / tokens;
    };
    const off = await run(false);
    const on = await run(true);
    const w = durationWeights(durations);
    expect(w[2]).toBeCloseTo(1, 12); // no code run: the mean
    expect(off.stats.durationWeightMax).toBeNaN();
    expect(on.stats.durationWeightMax).toBeCloseTo(Math.max(...w), 12);
    expect(off.stats.policyLoss).toBeCloseTo(expected(off.samples, [1, 1, 1, 1]), 5);
    expect(on.stats.policyLoss).toBeCloseTo(expected(on.samples, w), 5);
    expect(Math.abs(on.stats.policyLoss - off.stats.policyLoss)).toBeGreaterThan(1e-2);
  }, 300_000);

  it('GAE with a critic: the value of each state moves toward its return', async () => {
    const actor = LoraAdapter.create(model, lora, { seed: 2 });
    const critic = ValueHead.create(model, lora, { seed: 3 });
    const actorOptimizer = new TrainOptimizer(gpu, [actor], { lr: 1e-3, maxGradNorm: 1 });
    const criticOptimizer = new TrainOptimizer(gpu, [critic], { lr: 3e-3, maxGradNorm: 1 }); // Adam moves every weight by ~lr at its first step
    const config: PpoConfig = { ...defaultTrainConfig().ppo, advantage: 'gae', minibatchSize: 4, epochs: 1, klMode: 'reward', klEstimator: 'k1' };
    const values = async () => {
      const pass = await valueForward(model, critic, prompts, { grad: false });
      return prompts.map((p, k) => pass.values[k][p.length - 1]);
    };
    const v0 = await values();
    const stats = await ppoUpdate({ model, actor, actorOptimizer, critic, criticOptimizer }, await samplesFor(actor), config, { seed: 0, iteration: 0 });
    const v1 = await values();
    // Both actions of a state are its samples: the return of each state averages to 0.5.
    for (const k of [0, 1]) expect(Math.abs(v1[k] - 0.5)).toBeLessThan(Math.abs(v0[k] - 0.5));
    expect(stats.valueLoss).toBeGreaterThan(0);
    expect(stats.criticGradNorm).toBeGreaterThan(0);
    // KL in the reward is 0 for a fresh adapter, up to float rounding of two head passes.
    expect(stats.penalizedReward).toBeCloseTo(stats.reward, 6);
    for (const x of [actorOptimizer, criticOptimizer, actor, critic]) x.dispose();
  }, 300_000);

  it('PPO-ptx: with no reward spread, the SFT loss alone moves the policy toward the expert steps', async () => {
    const actor = LoraAdapter.create(model, lora, { seed: 6 });
    const actorOptimizer = new TrainOptimizer(gpu, [actor], { lr: 5e-3, maxGradNorm: 1 });
    const config: PpoConfig = { ...defaultTrainConfig().ppo, advantage: 'grpo', minibatchSize: 4, epochs: 1, klMode: 'none', ptxCoef: 0.5, ptxBatchSize: 2 };
    // The expert answers state 1 with action 0, which PPO never rewards here: every sample scores 0.5.
    const expertIds = [...prompts[1], ...responses[0]];
    const mask = Uint8Array.from(expertIds, (_, t) => (t >= prompts[1].length ? 1 : 0));
    const flat = (await samplesFor(actor)).map((x) => ({ ...x, reward: 0.5 }));
    await expect(ppoUpdate({ model, actor, actorOptimizer }, flat, config, { seed: 0, iteration: 0 })).rejects.toThrow(/ptxCoef > 0 needs expert steps/);
    const expertNll = async () => {
      const pass = await policyForward(model, [expertIds], { adapter: actor, grad: false });
      return -Array.from(pass.logprobs[0].subarray(prompts[1].length)).reduce((a, x) => a + x, 0) / responses[0].length;
    };
    const before = await expertNll();
    const stats = await ppoUpdate({ model, actor, actorOptimizer }, flat, config, { seed: 0, iteration: 0, ptxExamples: [{ ids: expertIds, mask, targets: responses[0].length }] });
    expect(stats.zeroVarianceGroups).toBe(2);
    // One actor step: its ptx loss is the expert NLL before the step.
    expect(stats.ptxLoss).toBeCloseTo(before, 4);
    const after = await expertNll();
    expect(after).toBeLessThan(before - 0.01);
    actorOptimizer.dispose();
    actor.dispose();
    // Off, on a fresh copy of the same start, the same flat batch moves nothing (zero advantages, no KL term).
    const control = LoraAdapter.create(model, lora, { seed: 6 });
    const controlOptimizer = new TrainOptimizer(gpu, [control], { lr: 5e-3, maxGradNorm: 1 });
    const off = await ppoUpdate({ model, actor: control, actorOptimizer: controlOptimizer }, flat, { ...config, ptxCoef: 0 }, { seed: 0, iteration: 0, ptxExamples: [{ ids: expertIds, mask, targets: responses[0].length }] });
    expect(off.ptxLoss).toBeNaN();
    const pass = await policyForward(model, [expertIds], { adapter: control, grad: false });
    const controlNll = -Array.from(pass.logprobs[0].subarray(prompts[1].length)).reduce((a, x) => a + x, 0) / responses[0].length;
    expect(Math.abs(controlNll - before)).toBeLessThan(1e-4);
    controlOptimizer.dispose();
    control.dispose();
  }, 300_000);

  it('activation checkpointing (actor, critic and PPO-ptx passes) recomputes each layer and changes no update', async () => {
    const withDropout: LoraConfig = { ...lora, dropout: 0.1 }; // the recomputed layers must draw the same masks
    const expertIds = [...prompts[1], ...responses[0]];
    const mask = Uint8Array.from(expertIds, (_, t) => (t >= prompts[1].length ? 1 : 0));
    const update = async (activationCheckpointing: boolean) => {
      const actor = LoraAdapter.create(model, withDropout, { seed: 2 });
      const critic = ValueHead.create(model, withDropout, { seed: 3 });
      const actorOptimizer = new TrainOptimizer(gpu, [actor], { lr: 1e-3, maxGradNorm: 1 });
      const criticOptimizer = new TrainOptimizer(gpu, [critic], { lr: 3e-3, maxGradNorm: 1 });
      const config: PpoConfig = { ...defaultTrainConfig().ppo, advantage: 'gae', minibatchSize: 2, epochs: 1, ptxCoef: 0.5, ptxBatchSize: 1, activationCheckpointing };
      const samples = await samplesFor(actor);
      let stats!: Awaited<ReturnType<typeof ppoUpdate>>;
      const profile = await profileWork(gpu, async () => {
        stats = await ppoUpdate({ model, actor, actorOptimizer, critic, criticOptimizer }, samples, config, {
          seed: 0,
          iteration: 0,
          ptxExamples: [{ ids: expertIds, mask, targets: responses[0].length }],
        });
      });
      const logp = await sequenceLogp(actor);
      const values = (await valueForward(model, critic, prompts, { grad: false })).values.map((v, k) => v[prompts[k].length - 1]);
      for (const x of [actorOptimizer, criticOptimizer, actor, critic]) x.dispose();
      const norms = profile?.filter((p) => p.op.startsWith('rmsnorm') && !p.op.startsWith('rmsnormBackward')).reduce((n, p) => n + p.calls, 0);
      return { stats, logp, values, norms };
    };
    const off = await update(false);
    const on = await update(true);
    expect(on.stats).toEqual(off.stats);
    expect(on.logp).toEqual(off.logp);
    expect(on.values).toEqual(off.values);
    expect(off.stats.optimizerSteps).toBe(2);
    expect(on.norms).toBeDefined(); // lavapipe has timestamp queries
    expect(on.norms!).toBeGreaterThan(off.norms!);
  }, 300_000);

  it('micro-batches (actor, critic and PPO-ptx passes) add up to the whole minibatch\'s update, for both loss aggregations', async () => {
    // Prompts of different lengths, so micro-batches pad differently; no dropout, so only rounding may differ.
    const expertIds = [...prompts[1], ...responses[0]];
    const mask = Uint8Array.from(expertIds, (_, t) => (t >= prompts[1].length ? 1 : 0));
    const expert2 = [...prompts[0], ...responses[1]];
    const mask2 = Uint8Array.from(expert2, (_, t) => (t >= prompts[0].length ? 1 : 0));
    const update = async (microBatchSize: number | null, lossAggregation: PpoConfig['lossAggregation']) => {
      const actor = LoraAdapter.create(model, lora, { seed: 2 });
      const critic = ValueHead.create(model, lora, { seed: 3 });
      const actorOptimizer = new TrainOptimizer(gpu, [actor], { lr: 1e-3, maxGradNorm: 1 });
      const criticOptimizer = new TrainOptimizer(gpu, [critic], { lr: 3e-3, maxGradNorm: 1 });
      const config: PpoConfig = { ...defaultTrainConfig().ppo, advantage: 'gae', minibatchSize: 4, epochs: 2, ptxCoef: 0.5, ptxBatchSize: 2, entropyCoef: 0.01, lossAggregation, microBatchSize };
      // Old log-probs off the current policy, so the ratio (and with it clipping and approxKl) is not 1.
      const samples = (await samplesFor(actor)).map((s, i) => ({ ...s, oldLogp: Float32Array.from(s.oldLogp, (v) => v - 0.3 * (i % 3)), reward: (i * 0.37) % 1 }));
      const stats = await ppoUpdate({ model, actor, actorOptimizer, critic, criticOptimizer }, samples, config, {
        seed: 0,
        iteration: 0,
        ptxExamples: [
          { ids: expertIds, mask, targets: responses[0].length },
          { ids: expert2, mask: mask2, targets: responses[1].length },
        ],
      });
      const logp = await sequenceLogp(actor);
      const values = (await valueForward(model, critic, prompts, { grad: false })).values.map((v, k) => v[prompts[k].length - 1]);
      for (const x of [actorOptimizer, criticOptimizer, actor, critic]) x.dispose();
      return { stats, logp, values };
    };
    for (const aggregation of ['token-mean', 'seq-mean-token-mean'] as const) {
      const whole = await update(null, aggregation);
      expect(whole.stats.clipFrac).toBeGreaterThan(0);
      for (const micro of [1, 3]) {
        const split = await update(micro, aggregation);
        const where = `${aggregation}, micro-batches of ${micro}`;
        for (const key of ['loss', 'policyLoss', 'valueLoss', 'ptxLoss', 'entropy', 'clipFrac', 'approxKl', 'kl', 'actorGradNorm', 'criticGradNorm', 'explainedVariance'] as const) {
          expect(split.stats[key], `${where}: ${key}`).toBeCloseTo(whole.stats[key], 5);
        }
        expect(split.stats.optimizerSteps).toBe(whole.stats.optimizerSteps);
        split.logp.forEach((v, i) => expect(v, `${where}: log-prob ${i}`).toBeCloseTo(whole.logp[i], 3));
        split.values.forEach((v, i) => expect(v, `${where}: value ${i}`).toBeCloseTo(whole.values[i], 5));
      }
    }
  }, 300_000);

  it('rejects malformed samples by index', async () => {
    const actor = LoraAdapter.create(model, lora, { seed: 4 });
    const actorOptimizer = new TrainOptimizer(gpu, [actor], { lr: 1e-3 });
    const config = defaultTrainConfig().ppo;
    const bad: PpoSample = { group: 0, prompt: [1, 2], response: [3, 4], oldLogp: [-1], reward: 1 };
    await expect(ppoUpdate({ model, actor, actorOptimizer }, [bad], { ...config, advantage: 'grpo' }, { seed: 0, iteration: 0 })).rejects.toThrow(
      'ppoUpdate: sample 0 has 1 old log-probs for 2 response tokens',
    );
    await expect(ppoUpdate({ model, actor, actorOptimizer }, [bad], config, { seed: 0, iteration: 0 })).rejects.toThrow(/'gae' needs a critic/);
    actorOptimizer.dispose();
    actor.dispose();
  });
});
