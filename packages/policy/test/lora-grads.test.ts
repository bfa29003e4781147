import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Gpu, SeededRng } from '@mlagent/core-kernels';
import {
  LORA_MODULES,
  LoraAdapter,
  QwenModel,
  ValueHead,
  policyForward,
  saveAdapter,
  saveValueHead,
  valueForward,
} from '../src/index.js';
import { writeModel } from './fixtures.js';
import { assertTorch, maxAbsDiff, oracleTrain, randomCoefs, randomSeqs, randomizeB, relErr } from './lora-oracle.js';

/** A small vocabulary keeps the LM head (152k rows in real Qwen) from dominating the runtime. */
const VOCAB = 512;
let gpu: Gpu;
const dirs: string[] = [];

beforeAll(async () => {
  gpu = await Gpu.create();
});

afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('PyTorch oracle for LoRA', () => {
  it('is runnable: /usr/bin/python3 imports torch', () => assertTorch());
});

describe('LoRA logprobs, entropies and gradients against the float64 PyTorch oracle', () => {
  // bf16 values are exact in f16 (8 vs 10 mantissa bits), so the f16 base meets the same bound.
  // The last case's YaRN (theta 50, original context 64): its ramp crosses the middle of the 8 pairs.
  const yarn = { rope_theta: 50, rope_scaling: { type: 'yarn', factor: 4, original_max_position_embeddings: 64 } };
  for (const [arch, dtype, seed, temperature, base, rope] of [
    ['qwen2', 'F32', 21, 1, 'f32', undefined],
    ['qwen3', 'F32', 22, 1, 'f32', undefined],
    ['qwen2', 'BF16', 23, 1, 'f32', undefined],
    ['qwen3', 'BF16', 24, 0.7, 'f16', undefined],
    ['qwen3', 'F32', 25, 1, 'f32', yarn],
  ] as const) {
    it(`${arch} ${dtype} (${base} base${rope ? ', YaRN RoPE' : ''}): policy adapter on all modules (temperature ${temperature}) and a value head, variable-length batch`, async () => {
      const dir = writeModel(arch, seed, dtype, { vocabSize: VOCAB });
      if (rope) writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')), ...rope }));
      const work = mkdtempSync(join(tmpdir(), 'mlagent-lora-'));
      dirs.push(dir, work);
      if (base === 'f16' && !gpu.features.shaderF16) {
        await expect(QwenModel.load(gpu, dir, { dtype: base })).rejects.toThrow(/shader-f16/);
        return;
      }
      const model = await QwenModel.load(gpu, dir, { dtype: base });
      expect(model.weights.layers[0].q.dtype).toBe(base);
      const rng = new SeededRng(seed);
      const adapter = LoraAdapter.create(model, { r: 4, alpha: 8, targetModules: LORA_MODULES }, { seed });
      randomizeB(adapter, rng);
      const head = ValueHead.create(model, { r: 2, alpha: 4, targetModules: ['q_proj', 'v_proj', 'down_proj'] }, { seed: seed + 1 });
      randomizeB(head.adapter, rng);
      const adapterDir = join(work, 'policy');
      const valueDir = join(work, 'value');
      await saveAdapter(adapter, adapterDir);
      await saveValueHead(head, valueDir);

      const seqs = randomSeqs(rng, [9, 4, 7], VOCAB);
      const dLogprob = randomCoefs(rng, seqs);
      const dEntropy = randomCoefs(rng, seqs, 0.5);
      const dValue = randomCoefs(rng, seqs);
      const ref = oracleTrain(work, { model: dir, adapter: adapterDir, seqs, dLogprob, dEntropy, temperature, value: { dir: valueDir, dValue } });

      const pass = await policyForward(model, seqs, { adapter, temperature });
      expect(maxAbsDiff(pass.logprobs, ref.logprobs)).toBeLessThan(1e-3);
      expect(maxAbsDiff(pass.entropies, ref.entropies)).toBeLessThan(1e-3);
      pass.backward({ dLogprob, dEntropy });
      const names = adapter.paramNames();
      const grads = adapter.grads();
      expect(names.length).toBe(2 * 2 * LORA_MODULES.length);
      let worst = 0;
      for (let i = 0; i < names.length; i++) {
        const g = await grads[i].read();
        expect(ref.grads[names[i]], names[i]).toBeDefined();
        const e = relErr(g, ref.grads[names[i]]);
        expect(e, names[i]).toBeLessThan(1e-3);
        worst = Math.max(worst, e);
      }
      console.log(`${arch} ${dtype}: worst LoRA gradient relative error ${worst.toExponential(2)}`);

      const vpass = await valueForward(model, head, seqs);
      expect(maxAbsDiff(vpass.values, ref.values!, false)).toBeLessThan(1e-3);
      vpass.backward(dValue);
      const vnames = [...head.adapter.paramNames(), 'v_head.weight', 'v_head.bias'];
      const vgrads = head.grads();
      for (let i = 0; i < vnames.length; i++) {
        expect(relErr(await vgrads[i].read(), ref.valueGrads![vnames[i]]), vnames[i]).toBeLessThan(1e-3);
      }
      adapter.dispose();
      head.dispose();
      model.dispose();
    });
  }
});
