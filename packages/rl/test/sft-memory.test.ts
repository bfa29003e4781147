import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Gpu } from '@mlagent/core-kernels';
import { initModel, qwen25_7bConfig } from '@mlagent/policy';
import { loadTrainConfig, type TrainConfigInput } from '../src/config/train-config.js';
import { checkSftMemory } from '../src/sft/memory-check.js';
import { sft } from '../src/sft/sft.js';
import { trainPipeline } from '../src/train/pipeline.js';

// The memory check before SFT loads anything: a tiny random Qwen2 (2 layers, Qwen's full vocabulary: its f32
// weights are ~80 MiB) against allocator budgets set on the device, and an NVIDIA GPU's free memory faked.
let modelDir: string;
let dataPath: string;
const dirs: string[] = [];
const newDir = () => {
  const d = mkdtempSync(join(tmpdir(), 'rl-sft-mem-'));
  dirs.push(d);
  return d;
};
const MiB = 2 ** 20;

const config: TrainConfigInput = {
  preset: 'tiny',
  seed: 1,
  lora: { rank: 4, alpha: 8, dropout: 0, targets: ['q_proj', 'v_proj'] },
  sft: { epochs: 1, batchSize: 2, gradAccum: 1, evalFraction: 0, maxSeqLen: 64 },
};

beforeAll(() => {
  modelDir = newDir();
  initModel({ arch: 'qwen2', preset: 'tiny', outDir: modelDir, seed: 0 });
  dataPath = join(newDir(), 'data.jsonl');
  writeFileSync(dataPath, ['List Files', 'Execute Script', 'Final Answer'].map((a) => JSON.stringify({ prompt: 'Next action?', response: `Action: ${a}` })).join('\n') + '\n');
});

afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('SFT memory check', () => {
  it('refuses, before loading the model, a run the device budget cannot hold, naming the config fields', async () => {
    const gpu = await Gpu.create({ budgetBytes: 40 * MiB });
    try {
      const run = sft({ modelDir, data: dataPath, out: newDir(), config, gpu, progress: false, log: () => {} });
      await expect(run).rejects.toThrow(/micro-batch of 2 x \d+ tokens needs about .*will not fit.*budget is 40\.00 MiB[\s\S]*sft\.activationCheckpointing \(now false\), dtype \(now f32\)/);
      expect(gpu.memory().peak).toBe(0);
    } finally {
      gpu.destroy();
    }
  });

  it('refuses unreadable data before it makes the output directory', async () => {
    const bad = join(newDir(), 'bad.jsonl');
    writeFileSync(bad, '{"prompt": "x", "response"\n');
    const out = join(newDir(), 'run');
    await expect(sft({ modelDir, data: bad, out, config, progress: false, log: () => {} })).rejects.toThrow(/bad\.jsonl/);
    expect(existsSync(out)).toBe(false);
  });

  it('logs the estimate and trains where it fits', async () => {
    const gpu = await Gpu.create({ budgetBytes: 1024 * MiB });
    try {
      const lines: string[] = [];
      const r = await sft({ modelDir, data: dataPath, out: newDir(), config, gpu, progress: false, log: (l) => lines.push(l) });
      expect(r.steps).toBe(2);
      const line = lines.find((l) => l.includes('needs about'));
      expect(line).toMatch(/^sft: a micro-batch of 2 x \d+ tokens needs about [\d.]+ MiB of GPU memory \(weights [\d.]+ MiB, activations .*; 1\.00 GiB available\)$/);
      // The plan is an upper bound of the training's peak (packed weights counted whole), and not a loose one.
      const planned = Number(/needs about ([\d.]+) MiB/.exec(line!)![1]) * MiB;
      expect(gpu.memory().peak).toBeLessThanOrEqual(planned * 1.03);
      expect(gpu.memory().peak).toBeGreaterThan(planned * 0.8);
    } finally {
      gpu.destroy();
    }
    // Two SFT steps on lavapipe: 2.4-4.6 s alone, past vitest's 5 s default on a loaded 2-core machine.
  }, 30_000);

  it("docs/training's Qwen2.5-7B config fits 80 GiB for SFT at its 15,000-token cutoff, and would not without recomputation", () => {
    const config = loadTrainConfig(fileURLToPath(new URL('../../../docs/training/qwen2.5-7b-config.yaml', import.meta.url)));
    expect(config).toMatchObject({ dtype: 'f16', sft: { batchSize: 1, gradAccum: 64, maxSeqLen: 15000, epochs: 2, lr: 1e-4 } });
    const gpu80 = { software: false, maxBinding: 2 ** 31 - 4, budgetBytes: 80 * 2 ** 30 };
    const shape = { batch: config.sft.batchSize, seqLen: config.sft.maxSeqLen };
    const { plan } = checkSftMemory(qwen25_7bConfig(), config, shape, gpu80);
    expect(plan.total / 2 ** 30).toBeGreaterThan(30);
    expect(plan.total / 2 ** 30).toBeLessThan(40); // as its header says: about 35 GiB
    const noRecompute = { ...config, sft: { ...config.sft, activationCheckpointing: false } };
    expect(() => checkSftMemory(qwen25_7bConfig(), noRecompute, shape, gpu80)).toThrow(/will not fit.*sft\.activationCheckpointing \(now false\)/s);
  });

  it('mlagent train refuses before the collection where nvidia-smi reports too little free memory', async () => {
    const bin = newDir();
    const fake = join(bin, 'nvidia-smi');
    writeFileSync(fake, '#!/bin/sh\necho 50\n'); // MiB free
    chmodSync(fake, 0o755);
    const path = process.env.PATH;
    process.env.PATH = `${bin}:${path}`;
    try {
      const out = join(newDir(), 'run');
      await expect(trainPipeline({ out, config: { ...config, model: modelDir }, log: () => {}, progress: false })).rejects.toThrow(
        /micro-batch of 2 x 64 tokens needs about .*will not fit.*budget is 50\.00 MiB/s,
      );
      expect(existsSync(join(out, 'collect'))).toBe(false);
      // A budget given (--memory-budget) wins over nvidia-smi's.
      const out2 = join(newDir(), 'run');
      await expect(trainPipeline({ out: out2, config: { ...config, model: modelDir }, log: () => {}, progress: false, memoryBudgetBytes: 30 * MiB })).rejects.toThrow(
        /budget is 30\.00 MiB/,
      );
    } finally {
      process.env.PATH = path;
    }
  });

  it("takes a budget from its caller (--memory-budget) over the device's", async () => {
    const gpu = await Gpu.create({ budgetBytes: 1024 * MiB });
    try {
      const run = sft({ modelDir, data: dataPath, out: newDir(), config, gpu, progress: false, log: () => {}, memoryBudgetBytes: 30 * MiB });
      await expect(run).rejects.toThrow(/will not fit.*budget is 30\.00 MiB/s);
    } finally {
      gpu.destroy();
    }
  });
});
