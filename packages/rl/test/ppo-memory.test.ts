import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { Gpu, SeededRng, formatBytes } from '@mlagent/core-kernels';
import { LoraAdapter, MemoryPlanError, QwenModel, planMemory, TrainOptimizer, ValueHead, generate, initModel, loadQwenConfig, qwen25_7bConfig, type LoraModule, type ModelPreset } from '@mlagent/policy';
import { loadTrainConfig, parseTrainConfig, type TrainConfig, type TrainConfigInput } from '../src/config/train-config.js';
import { checkPpoMemory, planPpoMemory, type PpoMemoryShape } from '../src/ppo/memory-check.js';
import { evalBatchFor } from '../src/eval/memory-check.js';
import { checkSftMemory } from '../src/sft/memory-check.js';
import { trainPipeline } from '../src/train/pipeline.js';
import { ppoUpdate, type PpoSample } from '../src/ppo/update.js';
import { planDevice } from '../src/sft/memory-check.js';

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
const MiB = 2 ** 20;
const GiB = 2 ** 30;

function modelDir(preset: ModelPreset, vocabMerges?: number): string {
  const dir = mkdtempSync(join(tmpdir(), 'rl-ppo-mem-'));
  dirs.push(dir);
  initModel({ arch: 'qwen2', preset, outDir: dir, seed: 0, ...(vocabMerges ? { vocabMerges } : {}) });
  return dir;
}

function ppoConfig(ppo: TrainConfigInput['ppo']): TrainConfig {
  return parseTrainConfig({
    preset: 'tiny',
    seed: 1,
    lora: { rank: 4, alpha: 8, dropout: 0.1, targets: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] },
    ppo: { statesPerIteration: 3, samplesPerState: 2, generationBatch: 4, minibatchSize: 6, maxNewTokens: 6, advantage: 'gae', ptxCoef: 0.5, ptxBatchSize: 2, ...ppo },
  });
}

describe('planPpoMemory against the allocator peak of a PPO iteration (generation, then the update)', () => {
  // [label, preset, BPE merges (undefined: Qwen's 152k vocabulary), micro-batch, checkpointing]
  const cases = [
    ["tiny qwen2, Qwen's vocabulary (the LM head and its kept logits matter), whole minibatches", 'tiny', undefined, null, false],
    ['small qwen2, a 2k vocabulary (activations dominate), micro-batches of 2, recomputation', 'small', 1700, 2, true],
  ] as const;
  for (const [label, preset, merges, microBatchSize, activationCheckpointing] of cases) {
    it(label, async () => {
      const dir = modelDir(preset, merges);
      const cfg = loadQwenConfig(dir);
      const config = ppoConfig({ microBatchSize, activationCheckpointing });
      const c = config.ppo;
      const rng = new SeededRng(3);
      const tokens = (n: number) => Array.from({ length: n }, () => rng.int(0, cfg.vocabSize - 1));
      // Prompts of different lengths: the longest pads the worst micro-batch.
      const promptLengths = [90, 60, 120];
      const samples: PpoSample[] = promptLengths.flatMap((n, g) => {
        const prompt = tokens(n);
        return [5, 3].map((m, k) => ({ group: g, prompt, response: tokens(m + k), oldLogp: new Float32Array(m + k).fill(-2), reward: (g + k) / 4 }));
      });
      const ptxExamples = [70, 110, 40].map((n) => {
        const ids = tokens(n);
        const mask = Uint8Array.from(ids, (_, t) => (t >= n - 12 ? 1 : 0));
        return { ids, mask, targets: 12 };
      });
      const shape: PpoMemoryShape = { samples: samples.map((s) => ({ prompt: s.prompt.length, response: s.response.length })), ptx: ptxExamples.map((e) => ({ tokens: e.ids.length, targets: e.targets })) };

      const gpu = await Gpu.create();
      try {
        const plan = planPpoMemory(cfg, config, shape, c.microBatchSize ?? c.minibatchSize, planDevice(gpu), { reference: true });
        const base = gpu.memory().inUse;
        // As trainPpo holds them: the packed model, actor, reference, critic and both optimizers.
        const model = await QwenModel.load(gpu, dir, { packWeights: true });
        const lora = { r: config.lora.rank, alpha: config.lora.alpha, dropout: config.lora.dropout, targetModules: config.lora.targets as LoraModule[] };
        const actor = LoraAdapter.create(model, lora, { seed: 1 });
        const reference = LoraAdapter.create(model, lora, { seed: 2 });
        const critic = ValueHead.create(model, lora, { seed: 3 });
        const actorOptimizer = new TrainOptimizer(gpu, [actor], { lr: 1e-4 });
        const criticOptimizer = new TrainOptimizer(gpu, [critic], { lr: 1e-4 });
        // One generate() call of a full run of states at the longest prompt, every sequence to maxNewTokens.
        gpu.allocator.resetPeak();
        model.adapter = actor;
        const perCall = Math.floor(c.generationBatch / c.samplesPerState) * c.samplesPerState;
        await generate(model, Array.from({ length: perCall }, () => tokens(Math.max(...promptLengths))), { maxNewTokens: c.maxNewTokens, temperature: 1, seed: 1 });
        model.adapter = null;
        await gpu.sync();
        const generationPeak = gpu.memory().peak - base;
        gpu.allocator.resetPeak();
        await ppoUpdate({ model, actor, actorOptimizer, critic, criticOptimizer, reference }, samples, c, { seed: 0, iteration: 0, ptxExamples });
        await gpu.sync();
        const updatePeak = gpu.memory().peak - base;
        for (const x of [actorOptimizer, criticOptimizer, critic, reference, actor, model]) x.dispose();

        const [generation, ...update] = plan.phases;
        const updatePlanned = Math.max(...update.map((p) => p.bytes));
        console.log(`${label}:\n  ${plan.phases.map((p) => `${p.name}: ${formatBytes(p.bytes)}`).join('\n  ')}\n  measured: generation ${formatBytes(generationPeak)}, update ${formatBytes(updatePeak)}`);
        expect(Math.abs(generation.bytes - generationPeak) / generationPeak, `generation: planned ${generation.bytes}, measured ${generationPeak}`).toBeLessThanOrEqual(0.05);
        expect(Math.abs(updatePlanned - updatePeak) / updatePeak, `update: planned ${updatePlanned}, measured ${updatePeak}`).toBeLessThanOrEqual(0.05);
        expect(plan.total).toBe(Math.max(generation.bytes, updatePlanned));
      } finally {
        gpu.destroy();
      }
    }, 300_000);
  }
});

describe('checkPpoMemory', () => {
  const cfg = qwen25_7bConfig();
  const gpu80 = { software: false, maxBinding: 2 ** 31 - 4, budgetBytes: 80 * GiB };
  // An iteration of 16 samples whose prompts run to 6,000 tokens, with maxNewTokens-long responses.
  const shape = (maxNewTokens: number): PpoMemoryShape => ({
    samples: Array.from({ length: 16 }, (_, i) => ({ prompt: 2000 + 250 * i, response: maxNewTokens })),
  });
  const config7b = loadTrainConfig(fileURLToPath(new URL('../../../docs/training/qwen2.5-7b-config.yaml', import.meta.url)));

  it("runs docs/training's Qwen2.5-7B config on 80 GiB in the largest micro-batches that fit, where whole minibatches would not", () => {
    const c = config7b.ppo;
    const s = shape(c.maxNewTokens);
    const whole = planPpoMemory(cfg, config7b, s, c.minibatchSize, gpu80, { reference: true });
    expect(whole.total).toBeGreaterThan(80 * GiB);
    const check = checkPpoMemory(cfg, config7b, s, gpu80, { reference: true });
    expect(check.microBatchSize).toBeGreaterThanOrEqual(1);
    expect(check.microBatchSize).toBeLessThan(c.minibatchSize);
    expect(check.plan.total).toBeLessThanOrEqual(80 * GiB);
    expect(planPpoMemory(cfg, config7b, s, check.microBatchSize + 1, gpu80, { reference: true }).total).toBeGreaterThan(80 * GiB);
    expect(check.line).toMatch(new RegExp(`^ppo: micro-batches of ${check.microBatchSize} \\(the largest that fits\\) need about [\\d.]+ GiB of GPU memory \\(generation .*; 80\\.00 GiB available\\)$`));
  });

  it("passes docs/training's Qwen2.5-7B config on 80 GiB at prompts of its 15,000-token SFT cutoff (as mlagent train checks it), not with 64 sequences a generate() call", () => {
    const c = config7b.ppo;
    const atCutoff: PpoMemoryShape = { samples: Array.from({ length: c.minibatchSize }, () => ({ prompt: config7b.sft.maxSeqLen, response: c.maxNewTokens })) };
    const check = checkPpoMemory(cfg, config7b, atCutoff, gpu80, { reference: true });
    expect(c).toMatchObject({ generationBatch: 32, maxPromptTokens: 15000 });
    expect(check.microBatchSize).toBeGreaterThanOrEqual(1);
    expect(check.plan.phases[0].bytes).toBeLessThan(80 * GiB);
    // generate()'s KV caches are f16 for f16 weights: in f32 the same 32 sequences would not fit.
    const f32Caches = planMemory(cfg, { batch: 32, seqLen: 15000 + c.maxNewTokens, kvCache: true, dtype: 'f16', kvDtype: 'f32' });
    expect(check.plan.phases[0].bytes - f32Caches.kvCache / 2 + f32Caches.kvCache).toBeGreaterThan(80 * GiB);
    const gen64 = { ...config7b, ppo: { ...c, generationBatch: 64 } };
    expect(() => checkPpoMemory(cfg, gen64, atCutoff, gpu80, { reference: true })).toThrow(/the generation \(64 sequences of up to 15000 \+ 1024 tokens\)[\s\S]*ppo\.generationBatch \(now 64\)/);
  });

  it('refuses a set microBatchSize that does not fit, naming the fields that shrink it', () => {
    const config = { ...config7b, ppo: { ...config7b.ppo, microBatchSize: 16 } };
    expect(() => checkPpoMemory(cfg, config, shape(1024), gpu80, { reference: true, where: 'ppo iteration 3' })).toThrow(MemoryPlanError);
    expect(() => checkPpoMemory(cfg, config, shape(1024), gpu80, { reference: true, where: 'ppo iteration 3' })).toThrow(
      /^ppo iteration 3: micro-batches of 16 need about [\d.]+ GiB of GPU memory at their largest, the (actor|critic) pass .*but the budget is 80\.00 GiB[\s\S]*ppo\.microBatchSize \(now 16\), ppo\.maxNewTokens \(now 1024\), ppo\.activationCheckpointing \(now true\)/,
    );
  });

  it('names the generation batch when generation is what does not fit, and checks nothing where the budget is unknown', () => {
    const config = { ...config7b, ppo: { ...config7b.ppo, generationBatch: 512 } };
    expect(() => checkPpoMemory(cfg, config, shape(1024), gpu80, { reference: false })).toThrow(/the generation \(512 sequences of up to 5750 \+ 1024 tokens\)[\s\S]*ppo\.generationBatch \(now 512\)/);
    const unknown = checkPpoMemory(cfg, config, shape(1024), { ...gpu80, budgetBytes: undefined }, { reference: false });
    expect(unknown.microBatchSize).toBe(config.ppo.minibatchSize);
    expect(unknown.line).toMatch(/the device reports no memory size, so this is not checked\)$/);
  });

  it('plans the critic only for GAE, PPO-ptx only when on, and the reference adapter when there is one', () => {
    const s = { ...shape(256), ptx: [{ tokens: 9000, targets: 500 }] };
    const grpo = { ...config7b, ppo: { ...config7b.ppo, advantage: 'grpo' as const } };
    expect(planPpoMemory(cfg, grpo, s, 4, gpu80, { reference: false }).phases.map((p) => p.name.split(' (')[0])).toEqual(['generation', 'actor pass']);
    const ptx = { ...config7b, ppo: { ...config7b.ppo, ptxCoef: 0.1, ptxBatchSize: 8 } };
    const withPtx = planPpoMemory(cfg, ptx, s, 4, gpu80, { reference: false });
    expect(withPtx.phases.map((p) => p.name)).toContain('PPO-ptx pass (1 x 9000 tokens)');
    const ref = planPpoMemory(cfg, ptx, s, 4, gpu80, { reference: true });
    expect(ref.state - withPtx.state).toBeGreaterThan(100 * MiB); // a rank-64 adapter on every projection
    expect(() => planPpoMemory(cfg, ptx, { samples: [] }, 4, gpu80, { reference: false })).toThrow(/no samples/);
    expect(() => planPpoMemory(cfg, ptx, s, 0, gpu80, { reference: false })).toThrow(/microBatchSize must be a positive integer/);
  });
});

describe('mlagent train checks PPO before collecting', () => {
  it('refuses a run whose PPO updates at prompts of sft.maxSeqLen cannot fit the budget, though SFT would, leaving no run behind', async () => {
    const dir = modelDir('tiny');
    const input: TrainConfigInput = {
      preset: 'tiny',
      model: dir,
      lora: { rank: 4, alpha: 8, dropout: 0, targets: ['q_proj', 'v_proj'] },
      sft: { batchSize: 2, maxSeqLen: 64 },
      ppo: { statesPerIteration: 16, samplesPerState: 4, minibatchSize: 64, microBatchSize: 64, maxNewTokens: 256 },
    };
    const config = parseTrainConfig(input);
    const cfg = loadQwenConfig(dir);
    const device = { software: false, maxBinding: 2 ** 31 - 4 };
    const sftBytes = checkSftMemory(cfg, config, { batch: 2, seqLen: 64 }, device).plan.total;
    const shape = { samples: Array.from({ length: 64 }, () => ({ prompt: 64, response: 256 })), ptx: [{ tokens: 64, targets: 63 }] };
    const ppoBytes = planPpoMemory(cfg, config, shape, 64, device, { reference: true }).total;
    expect(ppoBytes).toBeGreaterThan(sftBytes * 1.2);
    const budget = Math.floor((sftBytes + ppoBytes) / 2);
    const root = mkdtempSync(join(tmpdir(), 'rl-ppo-mem-run-'));
    dirs.push(root);
    const out = join(root, 'run');
    await expect(trainPipeline({ out, config: input, log: () => {}, progress: false, memoryBudgetBytes: budget })).rejects.toThrow(
      /^ppo, at prompts of sft\.maxSeqLen \(64\) tokens: micro-batches of 64 need about [\d.]+ MiB .*ppo\.microBatchSize \(now 64\)/s,
    );
    expect(existsSync(out)).toBe(false);
    // With the largest micro-batch that fits (null), the same budget lets it through the check.
    const auto = { ...config, ppo: { ...config.ppo, microBatchSize: null } };
    expect(checkPpoMemory(cfg, auto, shape, { ...device, budgetBytes: budget }, { reference: true }).microBatchSize).toBeLessThan(64);
  }, 120_000);
});

describe('evalBatchFor', () => {
  it("sizes evaluation's generate() calls for docs/training's Qwen2.5-7B config on 80 GiB, and refuses a prompt no call fits", () => {
    const cfg = qwen25_7bConfig();
    const config = loadTrainConfig(fileURLToPath(new URL('../../../docs/training/qwen2.5-7b-config.yaml', import.meta.url)));
    const gpu80 = { software: false, maxBinding: 2 ** 31 - 4, budgetBytes: 80 * GiB };
    const batchFor = evalBatchFor(cfg, config, gpu80)!;
    // 104 live trajectories (13 tasks x 8) at prompts of up to 15,000 tokens (f16 KV caches: up to 5,000 tokens, all 104 fit one call).
    const prompts = Array.from({ length: 104 }, (_, i) => new Array<number>(1000 + 135 * i).fill(1));
    const b = batchFor(prompts);
    const need = (batch: number) =>
      planMemory(cfg, { batch, seqLen: 1000 + 135 * 103 + config.ppo.maxNewTokens, kvCache: true, dtype: 'f16', lora: { r: 64, targets: config.lora.targets as LoraModule[] } }).total;
    expect(b).toBeGreaterThan(1);
    expect(b).toBeLessThan(104);
    expect(need(b)).toBeLessThanOrEqual(80 * GiB);
    expect(need(b + 1)).toBeGreaterThan(80 * GiB);
    expect(batchFor(prompts.slice(0, 3))).toBe(3);
    expect(() => batchFor([new Array<number>(400_000).fill(1)])).toThrow(/^eval: one generate\(\) of 401024 tokens needs about [\d.]+ GiB of GPU memory, but the budget is 80\.00 GiB[\s\S]*ppo\.maxPromptTokens \(now 15000/);
    expect(evalBatchFor(cfg, config, { ...gpu80, budgetBytes: undefined })).toBeUndefined();

    // A model without an adapter (mlagent eval --model alone) plans no LoRA; the refusal names what the caller gives.
    const bare = evalBatchFor(cfg, config, gpu80, { lora: null, shrink: 'try --max-prompt-tokens' })!;
    const bareNeed = (batch: number) => planMemory(cfg, { batch, seqLen: 1000 + 135 * 103 + config.ppo.maxNewTokens, kvCache: true, dtype: 'f16' }).total;
    const nb = bare(prompts);
    expect(bareNeed(nb)).toBeLessThanOrEqual(80 * GiB);
    expect(bareNeed(nb + 1)).toBeGreaterThan(80 * GiB);
    expect(nb).toBeGreaterThanOrEqual(b);
    // Told when a split round's call size changes, not for rounds that fit whole.
    const lines: string[] = [];
    const told = evalBatchFor(cfg, config, gpu80, { log: (l) => lines.push(l) })!;
    told(prompts.slice(0, 3));
    told(prompts);
    told(prompts);
    told(prompts.slice(0, 3));
    expect(lines).toEqual([`eval: generating ${b} of a round's 104 prompts a call (prompts up to ${1000 + 135 * 103} tokens; 80.00 GiB budget)`]);
    expect(() => bare([new Array<number>(400_000).fill(1)])).toThrow(/80\.00 GiB\.\n {2}try --max-prompt-tokens\.$/);
  });
});
