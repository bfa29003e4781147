import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Gpu, SeededRng } from '@mlagent/core-kernels';
import {
  CheckpointError,
  ConfigError,
  QwenModel,
  expectedShapes,
  initModel,
  loadQwenConfig,
  writeSafetensors,
  type TensorToWrite,
} from '../src/index.js';

const PYTHON = '/usr/bin/python3';
import { writeModel } from './fixtures.js';

const ORACLE = resolve(dirname(fileURLToPath(import.meta.url)), '../../../tools/oracle/qwen_oracle.py');

/** Float64 logits [B, T, V] from the PyTorch oracle. Fails loudly when torch is missing. */
function oracleLogits(dir: string, ids: number[][]): Float64Array {
  const out = join(dir, 'oracle-logits.f64');
  const r = spawnSync(PYTHON, [ORACLE, dir, JSON.stringify(ids), '--out', out], { encoding: 'utf8', maxBuffer: 1 << 24 });
  if (r.error || r.status !== 0) {
    throw new Error(`oracle ${ORACLE} failed (status ${r.status}): ${r.error?.message ?? ''}\n${r.stderr}`);
  }
  const bytes = readFileSync(out);
  rmSync(out);
  return new Float64Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
}

function randomIds(rng: SeededRng, b: number, t: number, vocab: number): number[][] {
  return Array.from({ length: b }, () => Array.from({ length: t }, () => rng.int(0, vocab - 1)));
}

/** Max |ours − ref| and max |ref|. */
function compare(ours: ArrayLike<number>, ref: Float64Array): { maxErr: number; scale: number } {
  expect(ours.length).toBe(ref.length);
  let maxErr = 0;
  let scale = 0;
  for (let i = 0; i < ref.length; i++) {
    const e = Math.abs(ours[i] - ref[i]);
    maxErr = Number.isNaN(e) ? Infinity : Math.max(maxErr, e);
    scale = Math.max(scale, Math.abs(ref[i]));
  }
  return { maxErr, scale };
}

let gpu: Gpu;
const dirs: string[] = [];

beforeAll(async () => {
  gpu = await Gpu.create();
});

afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('PyTorch oracle', () => {
  it(`is runnable: ${PYTHON} imports torch`, () => {
    const r = spawnSync(PYTHON, ['-c', 'import torch, numpy; print(torch.__version__)'], { encoding: 'utf8' });
    if (r.error || r.status !== 0) {
      throw new Error(
        `${PYTHON} cannot import torch/numpy, which the model tests compare against (install python3-torch: npm run setup):\n` +
          `${r.error?.message ?? ''}${r.stderr}`,
      );
    }
  });
});

describe('QwenModel.forward against the float64 PyTorch oracle', () => {
  for (const [arch, seed] of [
    ['qwen2', 11],
    ['qwen3', 12],
  ] as const) {
    it(`${arch} tiny: f32 logits match for B=2, T=5 and T=9`, async () => {
      const dir = writeModel(arch, seed);
      dirs.push(dir);
      const model = await QwenModel.load(gpu, dir);
      let after: number | undefined;
      const rng = new SeededRng(seed);
      for (const T of [5, 9]) {
        const ids = randomIds(rng, 2, T, model.config.vocabSize);
        const logits = model.forward(ids);
        expect(logits.shape).toEqual([2, T, model.config.vocabSize]);
        const ours = await logits.read();
        logits.dispose();
        const ref = oracleLogits(dir, ids);
        const { maxErr, scale } = compare(ours, ref);
        console.log(`${arch} f32 T=${T}: max |err| ${maxErr.toExponential(2)}, max |logit| ${scale.toFixed(3)}`);
        expect(scale).toBeGreaterThan(0.5);
        expect(maxErr).toBeLessThanOrEqual(1e-4 * scale + 1e-5);
        // Every intermediate of forward is released (the first call may leave kernel caches, e.g. RoPE tables).
        after ??= gpu.memory().inUse;
        expect(gpu.memory().inUse).toBe(after);
      }
      model.dispose();
    });
  }

  // Theta 50 and an original context of 64 put YaRN's ramp across the middle of the 8 pairs (0 to 5), so both
  // kept and interpolated frequencies turn within 9 positions; transformers 5's rope_parameters carries rope_theta.
  for (const [label, rope] of [
    ['rope_scaling yarn (factor 4, attention factor 0.1 ln 4 + 1)', { rope_theta: 50, rope_scaling: { type: 'yarn', factor: 4, original_max_position_embeddings: 64 } }],
    ['rope_scaling yarn with mscale and beta settings, not truncated', { rope_theta: 50, rope_scaling: { rope_type: 'yarn', factor: 8, original_max_position_embeddings: 64, beta_fast: 16, beta_slow: 2, mscale: 0.7, mscale_all_dim: 0.3, truncate: false } }],
    ["transformers 5's rope_parameters, linear, with no top-level rope_theta", { rope_theta: undefined, rope_parameters: { rope_type: 'linear', factor: 2.5, rope_theta: 50 } }],
  ] as const) {
    it(`qwen2 tiny with ${label}: f32 logits match`, async () => {
      const dir = writeModel('qwen2', 31);
      dirs.push(dir);
      const raw = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
      writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...raw, ...rope }, null, 2));
      const model = await QwenModel.load(gpu, dir);
      expect(model.config.ropeTheta).toBe(50);
      expect(model.config.ropeScaling?.invFreq).toHaveLength(8);
      const ids = randomIds(new SeededRng(31), 2, 9, model.config.vocabSize);
      const logits = model.forward(ids);
      const ours = await logits.read();
      logits.dispose();
      const { maxErr, scale } = compare(ours, oracleLogits(dir, ids));
      console.log(`qwen2 ${label}: max |err| ${maxErr.toExponential(2)}, max |logit| ${scale.toFixed(3)}`);
      expect(maxErr).toBeLessThanOrEqual(1e-4 * scale + 1e-5);
      model.dispose();
    });
  }

  it('loads a bf16 checkpoint (widened exactly) and matches the oracle on the same bf16 weights', async () => {
    const dir = writeModel('qwen2', 21, 'BF16');
    dirs.push(dir);
    const model = await QwenModel.load(gpu, dir);
    const ids = randomIds(new SeededRng(21), 2, 7, model.config.vocabSize);
    const logits = model.forward(ids);
    const ours = await logits.read();
    logits.dispose();
    const { maxErr, scale } = compare(ours, oracleLogits(dir, ids));
    console.log(`qwen2 bf16 checkpoint T=7: max |err| ${maxErr.toExponential(2)}, max |logit| ${scale.toFixed(3)}`);
    expect(maxErr).toBeLessThanOrEqual(1e-4 * scale + 1e-5);
    model.dispose();
  });

  it('runs with f16 weights where the adapter has shader-f16 (looser tolerance)', async () => {
    if (!gpu.features.shaderF16) {
      await expect(QwenModel.load(gpu, dirs[0] ?? '.', { dtype: 'f16' })).rejects.toThrow(/shader-f16/);
      return;
    }
    const dir = writeModel('qwen3', 31);
    dirs.push(dir);
    const model = await QwenModel.load(gpu, dir, { dtype: 'f16' });
    expect(model.weights.layers[0].q.dtype).toBe('f16');
    const ids = randomIds(new SeededRng(31), 2, 6, model.config.vocabSize);
    const logits = model.forward(ids);
    const ours = await logits.read();
    logits.dispose();
    const { maxErr, scale } = compare(ours, oracleLogits(dir, ids));
    console.log(`qwen3 f16 weights T=6: max |err| ${maxErr.toExponential(2)}, max |logit| ${scale.toFixed(3)}`);
    expect(maxErr).toBeLessThanOrEqual(2e-2 * scale);
    model.dispose();
  });
});

describe('QwenModel.load errors', () => {
  /** A qwen3 tiny model whose tensors are edited by `edit` before writing. */
  function editedModel(edit: (tensors: Record<string, TensorToWrite>) => void): string {
    const dir = mkdtempSync(join(tmpdir(), 'mlagent-model-bad-'));
    dirs.push(dir);
    initModel({ arch: 'qwen3', preset: 'tiny', outDir: dir, seed: 5 });
    const tensors: Record<string, TensorToWrite> = {};
    for (const [name, shape] of expectedShapes(loadQwenConfig(dir))) {
      tensors[name] = { dtype: 'F32', shape, data: () => new Float32Array(shape.reduce((a, b) => a * b, 1)) };
    }
    edit(tensors);
    writeSafetensors(join(dir, 'model.safetensors'), tensors);
    return dir;
  }

  it('names a missing tensor', async () => {
    const dir = editedModel((t) => delete t['model.layers.1.self_attn.k_norm.weight']);
    await expect(QwenModel.load(gpu, dir)).rejects.toThrow(CheckpointError);
    await expect(QwenModel.load(gpu, dir)).rejects.toThrow(/missing tensor 'model\.layers\.1\.self_attn\.k_norm\.weight' \(expected shape \[16\]\)/);
  });

  it('names a tensor with the wrong shape and both shapes', async () => {
    const dir = editedModel((t) => {
      t['model.layers.0.mlp.up_proj.weight'] = { dtype: 'F32', shape: [64, 176], data: new Float32Array(64 * 176) };
    });
    await expect(QwenModel.load(gpu, dir)).rejects.toThrow(
      /tensor 'model\.layers\.0\.mlp\.up_proj\.weight' has shape \[64, 176\], expected \[176, 64\]/,
    );
  });

  it('names an unexpected tensor', async () => {
    const dir = editedModel((t) => {
      t['model.layers.0.self_attn.q_proj.bias'] = { dtype: 'F32', shape: [64], data: new Float32Array(64) };
    });
    await expect(QwenModel.load(gpu, dir)).rejects.toThrow(/unexpected tensor 'model\.layers\.0\.self_attn\.q_proj\.bias' \[64\]/);
  });

  it('rejects an unsupported architecture by name', async () => {
    const dir = editedModel(() => {});
    const cfgPath = join(dir, 'config.json');
    const raw = JSON.parse(readFileSync(cfgPath, 'utf8'));
    raw.architectures = ['LlamaForCausalLM'];
    writeFileSync(cfgPath, JSON.stringify(raw));
    await expect(QwenModel.load(gpu, dir)).rejects.toThrow(ConfigError);
    await expect(QwenModel.load(gpu, dir)).rejects.toThrow(/unsupported architecture \["LlamaForCausalLM"\]/);
  });

  it('rejects ragged batches and out-of-vocabulary ids', async () => {
    const dir = editedModel(() => {});
    const model = await QwenModel.load(gpu, dir);
    expect(() => model.forward([[1, 2, 3], [4, 5]])).toThrow(/equal lengths/);
    expect(() => model.forward([[1, 151936]])).toThrow(/token id 151936 at \[0, 1\] is outside the vocabulary/);
    model.dispose();
    expect(() => model.forward([[1]])).toThrow(/disposed/);
  });
});
