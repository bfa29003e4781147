import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Gpu } from '@mlagent/core-kernels';
import { loadQwenConfig, qwen25_7bConfig, randomModel, timeTraining, torchTrainingTiming } from '../src/index.js';
import { writeModel } from './fixtures.js';
import { PYTHON, assertTorch } from './lora-oracle.js';
import type { QwenModel } from '../src/index.js';

/** A small vocabulary keeps the LM head (152k rows in real Qwen) from dominating the runtime. */
const VOCAB = 512;
const BLOCK = 1000;
let gpu: Gpu;
let dir: string;
let random: QwenModel;
const dirs: string[] = [];

beforeAll(async () => {
  gpu = await Gpu.create();
  dir = writeModel('qwen2', 41, 'F32', { vocabSize: VOCAB });
  dirs.push(dir);
  random = await randomModel(gpu, loadQwenConfig(dir), { dtype: 'f32', seed: 3, blockElements: BLOCK });
}, 120_000);

afterAll(() => {
  random?.dispose();
  gpu?.destroy();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('randomModel (7B-shaped benchmarks without a checkpoint)', () => {
  it('has the 7B shapes in its preset config', () => {
    const c = qwen25_7bConfig();
    expect([c.hiddenSize, c.numLayers, c.numHeads, c.numKvHeads, c.intermediateSize, c.vocabSize]).toEqual([3584, 28, 28, 4, 18944, 152064]);
    expect(c.attentionBias).toBe(true);
    expect(c.tieWordEmbeddings).toBe(false);
  });

  it('tiles N(0, 0.02²) blocks into every matrix, different per matrix; norms are 1', async () => {
    const L = random.weights.layers[0];
    const [q, k, up, norm, bias] = (await Promise.all([L.q, L.k, L.up, L.inputNorm, L.qBias!].map((t) => t.read()))).map((v) => Float32Array.from(v));
    const mean = q.reduce((a, b) => a + b, 0) / q.length;
    const std = Math.sqrt(q.reduce((a, b) => a + (b - mean) ** 2, 0) / q.length);
    expect(Math.abs(mean)).toBeLessThan(0.002);
    expect(std).toBeGreaterThan(0.017);
    expect(std).toBeLessThan(0.023);
    // up [176, 64] spans many blocks: it repeats with the block's period, and the block holds distinct values.
    for (let i = 0; i + BLOCK < up.length; i += 97) expect(up[i + BLOCK]).toBe(up[i]);
    expect(new Set(up.slice(0, BLOCK)).size).toBeGreaterThan(BLOCK * 0.99);
    expect(Array.from(q.slice(0, 8))).not.toEqual(Array.from(k.slice(0, 8)));
    expect(Array.from(norm).every((v) => v === 1)).toBe(true);
    expect(bias.some((v) => v !== 0)).toBe(true);
  });

  it('fills f16 bases from the same kind of block (the 7B preset runs in f16)', async () => {
    const m = await randomModel(gpu, loadQwenConfig(dir), { dtype: 'f16', seed: 3, blockElements: BLOCK });
    try {
      expect(m.dtype).toBe('f16');
      const gate = Float32Array.from(await m.weights.layers[1].gate.read());
      for (let i = 0; i + BLOCK < gate.length; i += 101) expect(gate[i + BLOCK]).toBe(gate[i]);
      const std = Math.sqrt(gate.reduce((a, b) => a + b * b, 0) / gate.length);
      expect(std).toBeGreaterThan(0.017);
      expect(std).toBeLessThan(0.023);
    } finally {
      m.dispose();
    }
  });

  it('runs forward to finite logits', async () => {
    const logits = random.forward([[1, 2, 3]]);
    const v = await logits.read();
    logits.dispose();
    expect(v.length).toBe(3 * VOCAB);
    expect(v.every(Number.isFinite)).toBe(true);
  });
});

describe('timeTraining and torchTrainingTiming', () => {
  it('times LoRA steps with checkpointing and frees the adapter and optimizer afterwards', async () => {
    await gpu.sync();
    const before = gpu.memory().inUse;
    const t = await timeTraining(random, { batch: 2, seqLen: 8, checkpoint: true, iterations: 2 });
    expect(t.stepMs).toBeGreaterThan(0);
    expect(t.tokPerS).toBeCloseTo(16 / (t.stepMs / 1000), 6);
    expect(t.peakBytes).toBeGreaterThan(before);
    expect(gpu.memory().inUse).toBe(before);
  }, 120_000);

  it('rejects shapes that cannot train', async () => {
    await expect(timeTraining(random, { batch: 1, seqLen: 1, checkpoint: false })).rejects.toThrow(/seqLen must be >= 2/);
    await expect(timeTraining(random, { batch: 1, seqLen: 4, checkpoint: false, r: 0 })).rejects.toThrow(/r must be a positive integer/);
  });

  it('times the same step in torch, from the checkpoint and from random weights drawn by torch', async () => {
    assertTorch();
    const shape = { batch: 1, seqLen: 8, checkpoint: true, iterations: 1 };
    const fromCkpt = await torchTrainingTiming(PYTHON, { modelDir: dir }, shape);
    expect(fromCkpt.tokPerS).toBeGreaterThan(0);
    expect(fromCkpt.device).toMatch(/^torch .* on .*float32/);
    const configOnly = mkdtempSync(join(tmpdir(), 'mlagent-bench-config-'));
    dirs.push(configOnly);
    copyFileSync(join(dir, 'config.json'), join(configOnly, 'config.json'));
    const progress: string[] = [];
    const drawn = await torchTrainingTiming(PYTHON, { modelDir: configOnly, randomSeed: 0 }, { ...shape, onProgress: (m) => progress.push(m) });
    expect(drawn.tokPerS).toBeGreaterThan(0);
    expect(progress.join('\n')).toMatch(/warm-up step/);
    // Without --random-weights the script must read the (missing) checkpoint and fail, quoting its error.
    await expect(torchTrainingTiming(PYTHON, { modelDir: configOnly }, shape)).rejects.toThrow(/torch_train_bench.py failed \(exit 1\):[\s\S]*model.safetensors/);
  }, 120_000);
});
