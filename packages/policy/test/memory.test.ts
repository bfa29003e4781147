import { rmSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Gpu, SeededRng, isSoftwareAdapter, sizeClass } from '@mlagent/core-kernels';
import {
  LORA_MODULES,
  LoraAdapter,
  MemoryPlanError,
  QwenModel,
  assertFits,
  formatMemoryReport,
  generate,
  loadQwenConfig,
  measurePeak,
  planMemory,
  policyForward,
  qwen25_7bConfig,
  sequenceLogprobs,
  TrainOptimizer,
  ValueHead,
  valueForward,
  type MemoryPlanOptions,
} from '../src/index.js';
import { writeModel } from './fixtures.js';

/** Estimates must land within this fraction of the allocator's measured peak. */
const TOLERANCE = 0.1;
/** Training estimates follow TrunkPass's allocations one by one, so they must land closer. */
const TRAINING_TOLERANCE = 0.03;

/** A Qwen2.5-7B config (the design card's policy). */
const QWEN7B = qwen25_7bConfig();

const GiB = 1024 ** 3;

let gpu: Gpu;
const dirs: string[] = [];

beforeAll(async () => {
  gpu = await Gpu.create();
});

afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** Loads the model and runs `work` under measurePeak; returns the peak above what was in use before loading. */
async function measured(dir: string, work: (m: QwenModel) => Promise<void>): Promise<number> {
  await gpu.sync();
  // Earlier tests' cached buffers could be handed out in place of smaller ones: start from an empty cache.
  gpu.allocator.emptyCache();
  const base = gpu.memory().inUse;
  let model: QwenModel | undefined;
  const { peak } = await measurePeak(gpu, async () => {
    model = await QwenModel.load(gpu, dir);
    await work(model);
  });
  model!.dispose();
  return peak - base;
}

/** lavapipe runs the CPU-adapter head kernels (no logits tile); GPUs the tiled ones. */
function headKernel() {
  return { headKernel: isSoftwareAdapter(gpu.adapter) ? 'cpu' : 'tiled', maxBinding: gpu.maxBinding } as const;
}

function expectClose(label: string, dir: string, opts: MemoryPlanOptions, peak: number, tolerance = TOLERANCE) {
  const plan = planMemory(loadQwenConfig(dir), { ...headKernel(), ...opts });
  console.log(`${label}:\n${formatMemoryReport(plan, peak)}`);
  expect(Math.abs(plan.total - peak) / peak, `${label}: estimate ${plan.total} vs measured ${peak}`).toBeLessThanOrEqual(tolerance);
}

describe('planMemory against the allocator peak', () => {
  for (const [label, small] of [
    ['tiny model (152k vocabulary: weights dominate)', false],
    ['tiny model with a 2k vocabulary (activations and logits matter)', true],
  ] as const) {
    it(`${label}: forward, sequenceLogprobs and generation`, async () => {
      // A 2048-token vocabulary makes activations and logits, not the embedding table, dominate memory.
      const dir = writeModel('qwen2', 61, 'F32', small ? { vocabSize: 2048 } : {});
      dirs.push(dir);
      const V = loadQwenConfig(dir).vocabSize;
      const rng = new SeededRng(7);
      const [B, T] = small ? [2, 96] : [2, 16];
      const ids = Array.from({ length: B }, () => Array.from({ length: T }, () => rng.int(0, V - 1)));

      const fwd = await measured(dir, async (m) => {
        const logits = m.forward(ids);
        await logits.read();
        logits.dispose();
      });
      expectClose(`${label}, forward B=${B} T=${T}`, dir, { batch: B, seqLen: T }, fwd);

      const lp = await measured(dir, async (m) => {
        await sequenceLogprobs(m, ids);
      });
      expectClose(`${label}, sequenceLogprobs B=${B} T=${T}`, dir, { batch: B, seqLen: T, logits: 'fused' }, lp);

      const newTokens = 4;
      const gen = await measured(dir, async (m) => {
        await generate(m, ids, { maxNewTokens: newTokens, temperature: 0 });
      });
      expectClose(`${label}, generate B=${B} prompt ${T} + ${newTokens}`, dir, { batch: B, seqLen: T + newTokens, kvCache: true }, gen);

      // Prefill in runs of one prompt (prefillTokens below two prompts' tokens).
      const prefillTokens = T + newTokens;
      const genRuns = await measured(dir, async (m) => {
        await generate(m, ids, { maxNewTokens: newTokens, temperature: 0, prefillTokens });
      });
      expectClose(`${label}, generate B=${B} prompt ${T} + ${newTokens}, prefill in runs of 1`, dir, { batch: B, seqLen: T + newTokens, kvCache: true, prefillTokens }, genRuns);
      if (small) expect(genRuns).toBeLessThan(gen);

      // f16 KV caches under the f32 weights: half the caches' bytes.
      const genF16 = await measured(dir, async (m) => {
        await generate(m, ids, { maxNewTokens: newTokens, temperature: 0, kvDtype: 'f16' });
      });
      expectClose(`${label}, generate B=${B} prompt ${T} + ${newTokens}, f16 KV caches`, dir, { batch: B, seqLen: T + newTokens, kvCache: true, kvDtype: 'f16' }, genF16);
      const plans = (['f32', 'f16'] as const).map((kvDtype) => planMemory(loadQwenConfig(dir), { batch: B, seqLen: T + newTokens, kvCache: true, kvDtype }).kvCache);
      expect(plans[1]).toBeLessThanOrEqual(plans[0] / 2 + 2 * loadQwenConfig(dir).numLayers * 256);
      expect(genF16).toBeLessThan(gen);
    });
  }
});

describe('planMemory against the allocator peak: a LoRA training step (forward, backward, AdamW)', () => {
  // [label, arch, preset, vocabulary (undefined: Qwen's 152k), batch, tokens, LoRA dropout]
  const cases = [
    ['tiny qwen2, 152k vocabulary (the LM head and its kept logits dominate)', 'qwen2', 'tiny', undefined, 2, 16, 0],
    ['tiny qwen3 (qk-norm), 2k vocabulary', 'qwen3', 'tiny', 2048, 2, 96, 0.1],
    ['small qwen2 (4 layers), 2k vocabulary (activations dominate; checkpointing saves a third)', 'qwen2', 'small', 2048, 2, 200, 0.1],
  ] as const;
  for (const [label, arch, preset, vocabSize, B, T, dropout] of cases) {
    it(label, async () => {
      const dir = writeModel(arch, 63, 'F32', { preset, ...(vocabSize ? { vocabSize } : {}) });
      dirs.push(dir);
      const cfg = loadQwenConfig(dir);
      const rng = new SeededRng(9);
      const seqs = Array.from({ length: B }, () => Array.from({ length: T }, () => rng.int(0, cfg.vocabSize - 1)));
      const lora = { r: 4, targets: LORA_MODULES };
      const peaks: Record<string, number> = {};
      const plans: Record<string, number> = {};
      for (const checkpointing of [false, true]) {
        const peak = await measured(dir, async (m) => {
          const adapter = LoraAdapter.create(m, { r: lora.r, alpha: 8, dropout, targetModules: [...lora.targets] }, { seed: 1 });
          const opt = new TrainOptimizer(gpu, [adapter], { lr: 1e-3 });
          const pass = await policyForward(m, seqs, { adapter, checkpoint: checkpointing });
          pass.backward({ dLogprob: seqs.map((s) => new Float32Array(s.length).fill(-0.01)), dEntropy: seqs.map((s) => new Float32Array(s.length).fill(0.01)) });
          await opt.step();
          opt.dispose();
          adapter.dispose();
          m.dropLogitsScratch();
        });
        const opts: MemoryPlanOptions = { batch: B, seqLen: T, training: true, checkpointing, lora };
        expectClose(`${label}, training B=${B} T=${T} checkpointing ${checkpointing}`, dir, opts, peak, TRAINING_TOLERANCE);
        peaks[String(checkpointing)] = peak;
        plans[String(checkpointing)] = planMemory(cfg, { ...headKernel(), ...opts }).total;
      }
      // What checkpointing saves, where it saves much (more layers and tokens), is predicted too.
      const saved = peaks.false - peaks.true;
      if (saved > 0.2 * peaks.false) {
        const planned = plans.false - plans.true;
        expect(Math.abs(planned - saved) / saved, `checkpointing saves ${saved} bytes, planned ${planned}`).toBeLessThanOrEqual(TOLERANCE);
      }
    });
  }
});

describe("planMemory against the allocator peak: PPO's passes (scored response rows; the critic's value head)", () => {
  // [label, arch, preset, vocabulary (undefined: Qwen's 152k), batch, tokens]
  const cases = [
    ['tiny qwen2, 152k vocabulary', 'qwen2', 'tiny', undefined, 3, 40],
    ['small qwen2 (4 layers), 2k vocabulary', 'qwen2', 'small', 2048, 2, 200],
  ] as const;
  for (const [label, arch, preset, vocabSize, B, T] of cases) {
    it(label, async () => {
      const dir = writeModel(arch, 65, 'F32', { preset, ...(vocabSize ? { vocabSize } : {}) });
      dirs.push(dir);
      const cfg = loadQwenConfig(dir);
      const rng = new SeededRng(11);
      // Sequences of different lengths (the longest pads the batch); the last quarter of each is the "response".
      const lengths = Array.from({ length: B }, (_, b) => T - 7 * b);
      const seqs = lengths.map((n) => Array.from({ length: n }, () => rng.int(0, cfg.vocabSize - 1)));
      const scored = seqs.map((s) => Uint8Array.from(s, (_, t) => (t >= Math.floor((3 * s.length) / 4) ? 1 : 0)));
      const rows = scored.reduce((n, m) => n + m.slice(1).reduce((a, b) => a + b, 0), 0);
      const lora = { r: 4, targets: LORA_MODULES };
      const loraConfig = { r: lora.r, alpha: 8, dropout: 0.1, targetModules: [...lora.targets] };
      for (const checkpointing of [false, true]) {
        const actorPeak = await measured(dir, async (m) => {
          const adapter = LoraAdapter.create(m, loraConfig, { seed: 1 });
          const opt = new TrainOptimizer(gpu, [adapter], { lr: 1e-3 });
          const pass = await policyForward(m, seqs, { adapter, checkpoint: checkpointing, scoredTokens: scored });
          pass.backward({ dLogprob: scored.map((s) => Float32Array.from(s, (v) => -0.01 * v)) });
          await opt.step();
          opt.dispose();
          adapter.dispose();
          m.dropLogitsScratch();
        });
        const actor: MemoryPlanOptions = { batch: B, seqLen: T, training: true, checkpointing, lora, scoredRows: rows };
        expectClose(`${label}, scored rows ${rows} of ${B}x${T}, checkpointing ${checkpointing}`, dir, actor, actorPeak, TRAINING_TOLERANCE);

        const criticPeak = await measured(dir, async (m) => {
          const critic = ValueHead.create(m, loraConfig, { seed: 2 });
          const opt = new TrainOptimizer(gpu, [critic], { lr: 1e-3 });
          const pass = await valueForward(m, critic, seqs, { checkpoint: checkpointing });
          pass.backward(seqs.map((s) => Float32Array.from(s, (_, t) => (t === s.length - 1 ? 0.5 : 0))));
          await opt.step();
          opt.dispose();
          critic.dispose();
        });
        const critic: MemoryPlanOptions = { batch: B, seqLen: T, training: true, checkpointing, lora, head: 'value' };
        expectClose(`${label}, value head ${B}x${T}, checkpointing ${checkpointing}`, dir, critic, criticPeak, TRAINING_TOLERANCE);
      }
    });
  }
});

describe('planMemory: packed weights', () => {
  it('counts what packing every projection and the LM head allocates (a software adapter; nothing on a GPU)', async () => {
    const dir = writeModel('qwen2', 62, 'F32', { vocabSize: 2048 });
    dirs.push(dir);
    const cfg = loadQwenConfig(dir);
    const model = await QwenModel.load(gpu, dir, { packWeights: true });
    try {
      const matrices = [...model.weights.layers.flatMap((L) => [L.q, L.k, L.v, L.o, L.gate, L.up, L.down]), model.weights.lmHead];
      // As the caching allocator hands them out: in size classes.
      const added = matrices.reduce((n, W) => n + sizeClass(model.packedWeight(W)?.byteLength ?? 0), 0);
      expect(model.packedWeightBytes).toBe(matrices.reduce((n, W) => n + (model.packedWeight(W)?.byteLength ?? 0), 0));
      const plan = planMemory(cfg, { batch: 1, seqLen: 8, packedWeights: true });
      expect(plan.total - planMemory(cfg, { batch: 1, seqLen: 8 }).total).toBe(plan.packedWeights);
      expect(added).toBe(isSoftwareAdapter(gpu.adapter) ? plan.packedWeights : 0);
      expect(plan.items.some((i) => i.name.startsWith('packed weights'))).toBe(true);
    } finally {
      model.dispose();
    }
  });
});

describe('assertFits', () => {
  const lora = { r: 16, targets: [...LORA_MODULES] };

  it('refuses a 7B LoRA step at 15k tokens without checkpointing on an 80 GiB budget, naming the items and the fixes', () => {
    const plan = planMemory(QWEN7B, { batch: 1, seqLen: 15_000, dtype: 'f16', lora, training: true });
    let message = '';
    try {
      assertFits(plan, { budgetBytes: 80 * GiB });
    } catch (e) {
      expect(e).toBeInstanceOf(MemoryPlanError);
      message = (e as Error).message;
    }
    console.log(message);
    expect(message).toMatch(/will not fit: it needs about [\d.]+ GiB but the budget is 80\.00 GiB/);
    expect(message).toMatch(/biggest items:\n\s+activations \(batch 1 x 15000 tokens, training, no checkpointing\)/);
    expect(message).toMatch(/weights \(f16 matrices\): 15\.\d+ GiB/);
    expect(message).toMatch(/activation checkpointing/);
    // f16 weights are already used, so that is not suggested.
    expect(message).not.toMatch(/f16 weights/);
  });

  it('lets the same step through with checkpointing, whose estimate is dominated by weights', () => {
    const plan = planMemory(QWEN7B, { batch: 1, seqLen: 15_000, dtype: 'f16', lora, training: true, checkpointing: true });
    expect(() => assertFits(plan, { budgetBytes: 80 * GiB })).not.toThrow();
    // 7.62B parameters in f16, plus the allocator's size classes (steps of 1/8 of a power of two: up to 12.5%).
    expect(plan.weights / (2 * 7.6156e9)).toBeGreaterThan(1);
    expect(plan.weights / (2 * 7.6156e9)).toBeLessThan(1.125);
    expect(plan.lora).toBeGreaterThan(0);
    expect(plan.optimizer).toBe(3 * plan.lora);
  });

  it('refuses a buffer over maxBufferSize (a forward of 32 x 4k tokens) and suggests a smaller batch; generation prefills it in runs', () => {
    const plan = planMemory(QWEN7B, { batch: 32, seqLen: 4096, dtype: 'f16', logits: 'fused' });
    // The MLP activation [32·4096, 18944] f32 is the largest buffer.
    expect(plan.largestBuffer.bytes).toBeGreaterThanOrEqual(32 * 4096 * 18944 * 4);
    expect(() => assertFits(plan, { budgetBytes: 1e15, maxBufferSize: 2 * GiB })).toThrow(
      /this will not fit: its largest buffer \(activation: MLP gate\/up \(one\), [\d.]+ GiB\) exceeds the device's maxBufferSize of 2\.00 GiB[\s\S]*a smaller batch \(now 32\)/,
    );
    // generate() prefills 8192 tokens at a time: runs of 2 prompts here.
    const gen = planMemory(QWEN7B, { batch: 32, seqLen: 4096, dtype: 'f16', kvCache: true });
    expect(gen.items.map((i) => i.name)).toContain('activations (batch 32 x 4096 tokens, prefill in runs of 2, inference, logits: last)');
    expect(gen.largestBuffer.bytes).toBeLessThan(2 * GiB);
    expect(() => assertFits(gen, { budgetBytes: 80 * GiB, maxBufferSize: 2 * GiB })).not.toThrow();
  });

  it('rejects bad plan options', () => {
    expect(() => planMemory(QWEN7B, { batch: 0, seqLen: 10 })).toThrow(/batch must be a positive integer/);
    expect(() => planMemory(QWEN7B, { batch: 1, seqLen: 10, training: true })).toThrow(/training needs lora/);
    const lora = { r: 8, targets: LORA_MODULES };
    expect(() => planMemory(QWEN7B, { batch: 2, seqLen: 10, training: true, lora, scoredRows: 21 })).toThrow(/scoredRows must be an integer in \[1, batch·seqLen = 20\], got 21/);
    expect(() => planMemory(QWEN7B, { batch: 2, seqLen: 10, training: true, lora, scoredRows: 0 })).toThrow(/scoredRows must be/);
    expect(() => planMemory(QWEN7B, { batch: 2, seqLen: 10, scoredRows: 5 })).toThrow(/scoredRows is for training with the LM head/);
    expect(() => planMemory(QWEN7B, { batch: 2, seqLen: 10, training: true, lora, head: 'value', scoredRows: 5 })).toThrow(/scoredRows is for training with the LM head/);
    expect(() => planMemory(QWEN7B, { batch: 2, seqLen: 10, head: 'value' })).toThrow(/head 'value' is for training/);
    expect(() => planMemory(QWEN7B, { batch: 2, seqLen: 10, kvCache: true, prefillTokens: 0 })).toThrow(/prefillTokens must be a positive integer, got 0/);
    expect(() => planMemory(QWEN7B, { batch: 2, seqLen: 10, kvCache: true, kvDtype: 'bf16' as 'f16' })).toThrow(/kvDtype must be 'f32' or 'f16', got bf16/);
    expect(() => planMemory(QWEN7B, { batch: 2, seqLen: 10, training: true, lora, head: 'critic' as 'value' })).toThrow(/head must be 'lm' or 'value'/);
    expect(() => planMemory(QWEN7B, { batch: 1, seqLen: 10, lora: { r: 8, targets: ['qkv' as 'q_proj'] } })).toThrow(/unknown LoRA target 'qkv' \(q_proj, /);
  });
});
