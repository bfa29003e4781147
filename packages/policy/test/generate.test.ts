import { rmSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Gpu } from '@mlagent/core-kernels';
import { ContextLengthError, LORA_MODULES, LoraAdapter, NonFiniteError, QwenModel, generate, prefillRuns, type GenerateResult, type QwenArch } from '../src/index.js';
import { fillTensor, writeModel } from './fixtures.js';

let gpu: Gpu;
const dirs: string[] = [];
const models: Partial<Record<QwenArch, QwenModel>> = {};
/** Two prompts of different lengths. */
const PROMPTS = [
  [17, 4242, 99, 151000, 3],
  [8, 150, 77777, 12, 5, 60000, 1, 2],
];

beforeAll(async () => {
  gpu = await Gpu.create();
  for (const [arch, seed] of [
    ['qwen2', 41],
    ['qwen3', 42],
  ] as const) {
    const dir = writeModel(arch, seed);
    dirs.push(dir);
    models[arch] = await QwenModel.load(gpu, dir);
  }
});

afterAll(() => {
  for (const m of Object.values(models)) m?.dispose();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/**
 * Checks each result against model.forward on the full sequence prompt + generated ids (B = 1): by causality,
 * the logits at position len(prompt) − 1 + i are those token i was sampled from. Greedy: the token is the argmax
 * (or within 1e-4 of the max on a near tie). Always: its logprob is log_softmax(logits / T)[token] within 1e-4.
 */
async function checkAgainstForward(model: QwenModel, results: GenerateResult[], temperature: number, prompts: number[][] = PROMPTS): Promise<number> {
  const V = model.config.vocabSize;
  const t = temperature === 0 ? 1 : temperature;
  let maxErr = 0;
  for (let b = 0; b < prompts.length; b++) {
    const seq = [...prompts[b], ...results[b].ids];
    const logits = model.forward([seq]);
    const all = await logits.read();
    logits.dispose();
    for (let i = 0; i < results[b].ids.length; i++) {
      const row = all.subarray((prompts[b].length - 1 + i) * V, (prompts[b].length + i) * V);
      let mx = -Infinity;
      let arg = 0;
      for (let j = 0; j < V; j++) if (row[j] > mx) [mx, arg] = [row[j], j];
      let sum = 0;
      for (let j = 0; j < V; j++) sum += Math.exp((row[j] - mx) / t);
      const tok = results[b].ids[i];
      const ref = (row[tok] - mx) / t - Math.log(sum);
      maxErr = Math.max(maxErr, Math.abs(results[b].logprobs[i] - ref));
      expect(Math.abs(results[b].logprobs[i] - ref), `seq ${b} token ${i}`).toBeLessThan(1e-4);
      if (temperature === 0 && tok !== arg) expect(mx - row[tok], `seq ${b} token ${i}: ${tok} vs argmax ${arg}`).toBeLessThan(1e-4);
    }
  }
  return maxErr;
}

describe('generate with a KV cache against the full forward', () => {
  for (const arch of ['qwen2', 'qwen3'] as const) {
    it(`${arch} tiny: greedy tokens are the argmax of the full forward, for 2 prompts of different lengths`, async () => {
      const model = models[arch]!;
      const t0 = performance.now();
      const results = await generate(model, PROMPTS, { maxNewTokens: 6, temperature: 0 });
      const ms = performance.now() - t0;
      for (const r of results) {
        expect(r.ids).toHaveLength(6);
        expect(r.logprobs).toHaveLength(6);
        expect(r.finishReason).toBe('length');
      }
      // Not degenerate: some variety in what the model generates.
      expect(new Set(results.flatMap((r) => r.ids)).size).toBeGreaterThan(3);
      const err = await checkAgainstForward(model, results, 0);
      console.log(`${arch} greedy 2x6 tokens in ${ms.toFixed(0)} ms; max |logprob err| ${err.toExponential(2)}: ${JSON.stringify(results.map((r) => r.ids))}`);
    });
  }

  it('qwen3 tiny: sampled logprobs (T = 0.8, seeded) equal log_softmax(full-forward logits / T)', async () => {
    const model = models.qwen3!;
    const results = await generate(model, PROMPTS, { maxNewTokens: 5, temperature: 0.8, seed: 1234 });
    const err = await checkAgainstForward(model, results, 0.8);
    console.log(`qwen3 T=0.8 logprobs: max |err| ${err.toExponential(2)}`);
  });

  it('qwen2 tiny: sampled logprobs (T = 1, top-k 50, seeded) are those of the plain temperature policy', async () => {
    const model = models.qwen2!;
    const results = await generate(model, PROMPTS, { maxNewTokens: 4, temperature: 1, topK: 50, seed: 99 });
    await checkAgainstForward(model, results, 1);
  });
});

describe('generate with f16 KV caches (kvDtype)', () => {
  const maxDiff = (a: GenerateResult[], b: GenerateResult[]) => Math.max(...a.flatMap((r, i) => r.logprobs.map((x, j) => Math.abs(x - b[i].logprobs[j]))));

  it("qwen2 tiny: f16 caches sample the f32 caches' greedy tokens, with logprobs within f16 rounding of K and V", async () => {
    const model = models.qwen2!;
    const f32 = await generate(model, PROMPTS, { maxNewTokens: 6, temperature: 0 });
    const f16 = await generate(model, PROMPTS, { maxNewTokens: 6, temperature: 0, kvDtype: 'f16' });
    expect(f16.map((r) => r.ids)).toEqual(f32.map((r) => r.ids));
    const err = maxDiff(f16, f32);
    console.log(`f16 KV caches: max |logprob - f32 caches'| ${err.toExponential(2)}`);
    // Rounded K/V change the numbers (the f16 caches were used), by about f16's relative precision.
    expect(err).toBeGreaterThan(0);
    expect(err).toBeLessThan(5e-3);
  });

  it('are the default for f16 weights, and f32 caches can be asked for', async () => {
    if (!gpu.features.shaderF16) return expect(generate(models.qwen2!, PROMPTS, { maxNewTokens: 2, kvDtype: 'f16' })).rejects.toThrow(/needs the shader-f16 feature/);
    const dir = writeModel('qwen2', 41);
    dirs.push(dir);
    const model = await QwenModel.load(gpu, dir, { dtype: 'f16' });
    try {
      const opts = { maxNewTokens: 4, temperature: 0.7, seed: 11 };
      const byDefault = await generate(model, PROMPTS, opts);
      expect(byDefault).toEqual(await generate(model, PROMPTS, { ...opts, kvDtype: 'f16' }));
      const f32 = await generate(model, PROMPTS, { ...opts, kvDtype: 'f32' });
      expect(f32.map((r) => r.ids)).toEqual(byDefault.map((r) => r.ids));
      expect(maxDiff(f32, byDefault)).toBeGreaterThan(0);
    } finally {
      model.dispose();
    }
  });
});

describe('generate through an adapter', () => {
  it('samples through the adapter folded into the weights (by default on a small f32 model) as the LoRA path does', async () => {
    const model = models.qwen2!;
    const adapter = LoraAdapter.create(model, { r: 4, alpha: 8, targetModules: LORA_MODULES }, { seed: 5 });
    // B starts at zero (PEFT's init), which would make the adapter a no-op: give it values.
    let seed = 11;
    const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31 - 0.5) * 0.4;
    for (const s of adapter.slots()) s.B.write(Float32Array.from({ length: s.B.size }, rand));
    model.adapter = adapter;
    try {
      await generate(model, PROMPTS, { maxNewTokens: 2, temperature: 0 });
      const before = gpu.memory().inUse;
      const merged = await generate(model, PROMPTS, { maxNewTokens: 6, temperature: 0 });
      // The merged copies are freed with the caches.
      expect(gpu.memory().inUse).toBe(before);
      // model.forward runs the LoRA path (three matmuls per linear): same argmax tokens, same logprobs.
      await checkAgainstForward(model, merged, 0);
      const unmerged = await generate(model, PROMPTS, { maxNewTokens: 6, temperature: 0, mergeAdapter: false });
      expect(unmerged.map((r) => r.ids)).toEqual(merged.map((r) => r.ids));
      // Merged, a step runs one matmul per linear instead of three (the merge itself adds one per adapted linear).
      const matmuls = async (mergeAdapter?: boolean) => {
        gpu.profiling = true;
        await generate(model, PROMPTS, { maxNewTokens: 4, temperature: 0, mergeAdapter });
        const n = (await gpu.takeTimings()).filter((t) => t.op.startsWith('matmul')).length;
        gpu.profiling = false;
        return n;
      };
      const [m1, m0] = [await matmuls(), await matmuls(false)];
      expect(m1).toBeLessThan(0.7 * m0);

      // The merged q_proj of layer 0 is W + (alpha/r)·B·A.
      const layers = model.mergedAdapterLayers()!;
      const slot = adapter.slot(0, 'q_proj')!;
      const [W, A, B, got] = await Promise.all([model.weights.layers[0].q.read(), slot.A.read(), slot.B.read(), layers.layers[0].q.read()]);
      const [outF, inF] = model.weights.layers[0].q.shape;
      const want = new Float64Array(outF * inF);
      for (let o = 0; o < outF; o++) {
        for (let i = 0; i < inF; i++) {
          let d = 0;
          for (let k = 0; k < 4; k++) d += B[o * 4 + k] * A[k * inF + i];
          want[o * inF + i] = W[o * inF + i] + adapter.scale * d;
        }
      }
      let err = 0;
      for (let j = 0; j < want.length; j++) err = Math.max(err, Math.abs(got[j] - want[j]));
      expect(err).toBeLessThan(1e-5);
      expect(layers.bytes).toBe(model.mergedAdapterBytes());
      // Unadapted tensors are shared, not copied.
      expect(layers.layers[0].inputNorm).toBe(model.weights.layers[0].inputNorm);
      layers.dispose();
    } finally {
      model.adapter = null;
      adapter.dispose();
    }
    await expect(generate(model, PROMPTS, { maxNewTokens: 2, mergeAdapter: true })).rejects.toThrow(/mergeAdapter needs model.adapter/);
  });
});

describe('q/k/v and gate/up in one matrix each', () => {
  it.each(['qwen2', 'qwen3'] as const)('%s: one sequence decodes through one q/k/v matmul a layer, matching the full forward', async (arch) => {
    const model = models[arch]!;
    const L0 = model.weights.layers[0];
    const { numHeads: nh, numKvHeads: nkv, headDim: D, hiddenSize: H } = model.config;
    expect(L0.qkv?.shape).toEqual([(nh + 2 * nkv) * D, H]);
    expect(L0.qkvBias?.shape).toEqual(arch === 'qwen2' ? [(nh + 2 * nkv) * D] : undefined);
    const one = [PROMPTS[1]];
    const results = await generate(model, one, { maxNewTokens: 5, temperature: 0 });
    expect(await checkAgainstForward(model, results, 0, one)).toBeLessThan(1e-4);
    // Each generate makes 2 tokens: a prefill pass and a decode step. Matmuls a layer: T > 1 and two sequences keep
    // q, k, v apart (q, k, v, o, gate/up, down: 6); one sequence's decode step fuses q/k/v (4). Each pass adds the head.
    gpu.profiling = true;
    await generate(model, one, { maxNewTokens: 2, temperature: 0 });
    await generate(model, [PROMPTS[1], PROMPTS[1]], { maxNewTokens: 2, temperature: 0 });
    const timings = await gpu.takeTimings();
    gpu.profiling = false;
    const matmuls = timings.filter((t) => t.op.startsWith('matmul')).length;
    const layers = model.config.numLayers;
    expect(matmuls).toBe(6 * layers + 1 + (4 * layers + 1) + (6 * layers + 1) + (6 * layers + 1));

    // A long prompt's prefill fuses gate and up too, as its decode step does (session 18 kept them apart above 64
    // tokens while the buffer cache had no limit). Counting matmuls cannot tell: the CPU kernel splits a wide N over
    // dispatches. swiglu's inputs say it.
    const long = [Array.from({ length: 70 }, (_, i) => (i * 7919) % 1000)];
    gpu.profiling = true;
    const longResults = await generate(model, long, { maxNewTokens: 2, temperature: 0 });
    const swiglus = (await gpu.takeTimings()).filter((t) => t.op === 'swiglu').map((t) => t.shapes.replace(/=.*/, ''));
    gpu.profiling = false;
    expect(swiglus).toEqual(Array(2 * layers).fill('gate_up'));
    await checkAgainstForward(model, longResults, 0, long);
  });

  it('an adapter on q_proj keeps q, k and v apart for it; merged, the copy of the fused matrix changes only q', async () => {
    const model = models.qwen2!;
    const adapter = LoraAdapter.create(model, { r: 2, alpha: 4, targetModules: ['q_proj'] }, { seed: 4 });
    for (const s of adapter.slots()) s.B.write(Float32Array.from({ length: s.B.size }, (_, i) => Math.cos(i) * 0.3));
    model.adapter = adapter;
    try {
      const one = [PROMPTS[0]];
      const merged = await generate(model, one, { maxNewTokens: 5, temperature: 0 });
      await checkAgainstForward(model, merged, 0, one);
      const unmerged = await generate(model, one, { maxNewTokens: 5, temperature: 0, mergeAdapter: false });
      expect(unmerged.map((r) => r.ids)).toEqual(merged.map((r) => r.ids));
      const layers = model.mergedAdapterLayers()!;
      const [L0, M0] = [model.weights.layers[0], layers.layers[0]];
      expect(M0.qkv).not.toBe(L0.qkv);
      expect(M0.qkvBias).toBe(L0.qkvBias);
      const qElems = L0.q.size;
      const [base, copy] = await Promise.all([L0.qkv!.read(), M0.qkv!.read()]);
      expect(copy.subarray(qElems)).toEqual(base.subarray(qElems));
      expect(copy.subarray(0, qElems)).not.toEqual(base.subarray(0, qElems));
      expect(layers.bytes).toBe(model.mergedAdapterBytes());
      layers.dispose();
    } finally {
      model.adapter = null;
      adapter.dispose();
    }
  });


  it('an adapter on gate_proj alone merges into a copy of the fused matrix, leaving up_proj as it was', async () => {
    const model = models.qwen2!;
    const L0 = model.weights.layers[0];
    expect(L0.gateUp?.shape).toEqual([2 * model.config.intermediateSize, model.config.hiddenSize]);
    const adapter = LoraAdapter.create(model, { r: 2, alpha: 4, targetModules: ['gate_proj'] }, { seed: 3 });
    for (const s of adapter.slots()) s.B.write(Float32Array.from({ length: s.B.size }, (_, i) => Math.sin(i + 1) * 0.3));
    model.adapter = adapter;
    try {
      const merged = await generate(model, PROMPTS, { maxNewTokens: 5, temperature: 0 });
      await checkAgainstForward(model, merged, 0);
      const unmerged = await generate(model, PROMPTS, { maxNewTokens: 5, temperature: 0, mergeAdapter: false });
      expect(unmerged.map((r) => r.ids)).toEqual(merged.map((r) => r.ids));

      const layers = model.mergedAdapterLayers()!;
      const M0 = layers.layers[0];
      expect(M0.gateUp).not.toBe(L0.gateUp);
      expect(layers.bytes).toBe(4 * L0.gateUp!.size * model.config.numLayers);
      expect(layers.bytes).toBe(model.mergedAdapterBytes());
      const I = model.config.intermediateSize;
      const [base, fused, gate] = await Promise.all([L0.gateUp!.read(), M0.gateUp!.read(), M0.gate.read()]);
      // up_proj's half is copied unchanged; gate_proj's half moved, and the merged gate is a view of it.
      expect(fused.subarray(I * model.config.hiddenSize)).toEqual(base.subarray(I * model.config.hiddenSize));
      expect(fused.subarray(0, gate.length)).toEqual(gate);
      expect(gate).not.toEqual(base.subarray(0, gate.length));
      layers.dispose();
    } finally {
      model.adapter = null;
      adapter.dispose();
    }
  });
});

describe('generate: seeds, stops, memory', () => {
  it('the same seed gives the same output, another seed a different one', async () => {
    const model = models.qwen2!;
    const opts = { maxNewTokens: 5, temperature: 1 };
    const a = await generate(model, PROMPTS, { ...opts, seed: 7 });
    const b = await generate(model, PROMPTS, { ...opts, seed: 7 });
    const c = await generate(model, PROMPTS, { ...opts, seed: 8 });
    expect(b).toEqual(a);
    expect(c.map((r) => r.ids)).not.toEqual(a.map((r) => r.ids));
  });

  it('stopTokenIds and stopStrings stop one sequence while the other runs to the length limit', async () => {
    const model = models.qwen3!;
    const base = await generate(model, PROMPTS, { maxNewTokens: 6, temperature: 0 });
    const [s0, s1] = base.map((r) => r.ids);
    // The first token of sequence 0 (from the second on) that occurs neither earlier in it nor in sequence 1.
    const i = s0.findIndex((id, k) => k >= 1 && !s0.slice(0, k).includes(id) && !s1.includes(id));
    expect(i).toBeGreaterThan(0);
    const stopped = await generate(model, PROMPTS, { maxNewTokens: 6, temperature: 0, stopTokenIds: [s0[i]] });
    expect(stopped[0].ids).toEqual(s0.slice(0, i + 1));
    expect(stopped[0].logprobs).toHaveLength(i + 1);
    expect(stopped[0].finishReason).toBe('stop');
    expect(stopped[1]).toEqual(base[1]);
    // The same through a stop string and a decode function.
    const decode = (ids: number[]) => ids.map((id) => `<${id}>`).join('');
    const byString = await generate(model, PROMPTS, { maxNewTokens: 6, temperature: 0, stopStrings: [`<${s0[i]}>`], decode });
    expect(byString.map((r) => [r.ids, r.finishReason])).toEqual(stopped.map((r) => [r.ids, r.finishReason]));
    // maxNewTokens = 1: only the prefill's token.
    const one = await generate(model, PROMPTS, { maxNewTokens: 1, temperature: 0 });
    expect(one.map((r) => r.ids)).toEqual([s0.slice(0, 1), s1.slice(0, 1)]);
  });

  it('frees its caches and intermediates', async () => {
    const model = models.qwen2!;
    await generate(model, PROMPTS, { maxNewTokens: 2, temperature: 0 });
    const before = gpu.memory().inUse;
    await generate(model, PROMPTS, { maxNewTokens: 3, temperature: 1, seed: 3 });
    expect(gpu.memory().inUse).toBe(before);
  });
});

describe('generate: prefill in runs of prompts (prefillTokens)', () => {
  it('splits prompts into consecutive runs whose padded size fits the budget, a longer prompt alone', () => {
    expect(prefillRuns([5, 8], 16)).toEqual([[0, 2]]);
    expect(prefillRuns([5, 8], 15)).toEqual([[0, 1], [1, 2]]);
    expect(prefillRuns([3, 3, 3, 20, 2, 2], 9)).toEqual([[0, 3], [3, 4], [4, 6]]);
    expect(prefillRuns([10, 1, 1], 4)).toEqual([[0, 1], [1, 3]]);
    expect(prefillRuns([7], 1)).toEqual([[0, 1]]);
  });

  it('samples what one prefill pass samples, and holds less memory', async () => {
    const model = models.qwen2!;
    const whole = await generate(model, PROMPTS, { maxNewTokens: 5, temperature: 0 });
    const runs = await generate(model, PROMPTS, { maxNewTokens: 5, temperature: 0, prefillTokens: 8 });
    expect(runs.map((r) => r.ids)).toEqual(whole.map((r) => r.ids));
    runs.forEach((r, b) => expectCloseArray(r.logprobs, whole[b].logprobs, 1e-4));
    await checkAgainstForward(model, runs, 0);
    const sampled = await generate(model, PROMPTS, { maxNewTokens: 5, temperature: 1, seed: 5, prefillTokens: 1 });
    await checkAgainstForward(model, sampled, 1);

    // Four prompts of 300 tokens: one pass holds each layer's work for 1200 tokens, runs of one for 300.
    const long = [0, 1, 2, 3].map((b) => Array.from({ length: 300 }, (_, i) => (i * 7919 + b * 104729) % 150000));
    const peak = async (prefillTokens: number) => {
      await gpu.sync();
      gpu.allocator.emptyCache();
      gpu.allocator.resetPeak();
      const base = gpu.memory().inUse;
      const r = await generate(model, long, { maxNewTokens: 2, temperature: 0, prefillTokens });
      await gpu.sync();
      return { peak: gpu.memory().peak - base, ids: r.map((x) => x.ids) };
    };
    const one = await peak(8192);
    const split = await peak(300);
    expect(split.ids).toEqual(one.ids);
    console.log(`prefill of 4 x 300 tokens: peak ${(one.peak / 2 ** 20).toFixed(2)} MiB in one pass, ${(split.peak / 2 ** 20).toFixed(2)} MiB in runs of one prompt`);
    expect(split.peak).toBeLessThan(0.6 * one.peak);
  });
});

describe('generate argument validation', () => {
  it('rejects empty prompts, bad maxNewTokens, out-of-vocabulary ids and bad options with clear errors', async () => {
    const model = models.qwen2!;
    await expect(generate(model, [], { maxNewTokens: 2 })).rejects.toThrow(/at least one prompt/);
    await expect(generate(model, [[1, 2], []], { maxNewTokens: 2 })).rejects.toThrow(/prompt 1 is empty/);
    await expect(generate(model, [[1]], { maxNewTokens: 0 })).rejects.toThrow(/maxNewTokens must be a positive integer, got 0/);
    await expect(generate(model, [[1]], { maxNewTokens: -3 })).rejects.toThrow(/maxNewTokens must be a positive integer/);
    await expect(generate(model, [[1]], { maxNewTokens: 1.5 })).rejects.toThrow(/maxNewTokens must be a positive integer/);
    await expect(generate(model, [[1], [2, 151936]], { maxNewTokens: 2 })).rejects.toThrow(
      /token id 151936 at \[1, 1\] is outside the vocabulary \[0, 151936\)/,
    );
    await expect(generate(model, [[-1]], { maxNewTokens: 2 })).rejects.toThrow(/token id -1 at \[0, 0\]/);
    await expect(generate(model, [[1]], { maxNewTokens: 2, temperature: -1 })).rejects.toThrow(/temperature/);
    await expect(generate(model, [[1]], { maxNewTokens: 2, topP: 0 })).rejects.toThrow(/topP/);
    await expect(generate(model, [[1]], { maxNewTokens: 2, stopStrings: ['x'] })).rejects.toThrow(/stopStrings needs a decode/);
    // Typed, with the numbers, so a command can name its own options.
    const overflow = generate(model, [[1, 2]], { maxNewTokens: 1e9 });
    await expect(overflow).rejects.toThrow(/longest prompt \(2\) \+ maxNewTokens \(1000000000\) = 1000000002 exceeds max_position_embeddings 32768/);
    await expect(overflow).rejects.toBeInstanceOf(ContextLengthError);
    await expect(overflow).rejects.toMatchObject({ tokens: 2, newTokens: 1e9, context: 32768 });
    await expect(generate(model, [[1]], { maxNewTokens: 2, prefillTokens: 0 })).rejects.toThrow(/prefillTokens must be a positive integer, got 0/);
    await expect(generate(model, [[1]], { maxNewTokens: 2, kvDtype: 'bf16' as 'f16' })).rejects.toThrow(/kvDtype must be 'f32' or 'f16', got bf16/);
  });
});

describe('generate past one storage binding', () => {
  it('gives the same tokens when the prefill attention and the KV caches exceed maxStorageBufferBindingSize', async () => {
    // A 131 KiB binding stands in for lavapipe's 128 MiB and NVIDIA's 2 GiB (it must still hold RoPE's 128 KiB table
    // and one sequence's q): 4 prompts of ~500 tokens make each layer's cache 4 x 526 x 2 x 16 f32 (269 KB; 135 KB
    // in f16) and the prefill's q 532 KB, so attention runs them in runs of sequences (core-kernels'
    // attention-batches.ts). Until session 29 this threw a GpuLimitError.
    const dir = writeModel('qwen2', 43, 'F32', { vocabSize: 4096 });
    dirs.push(dir);
    const prompts = [0, 1, 2, 3].map((b) => Array.from({ length: 500 + 7 * b }, (_, i) => (i * 7919 + b * 104729) % 4000));
    const maxNewTokens = 5;
    const reference = await QwenModel.load(gpu, dir);
    const small = await Gpu.create({ maxBindingBytes: 131 * 1024 });
    const model = await QwenModel.load(small, dir);
    try {
      const { numKvHeads, headDim } = model.config;
      const cacheBytes = prompts.length * (Math.max(...prompts.map((p) => p.length)) + maxNewTokens) * numKvHeads * headDim * 4;
      expect(cacheBytes).toBeGreaterThan(small.maxBinding);
      const want = await generate(reference, prompts, { maxNewTokens, temperature: 0 });
      const got = await generate(model, prompts, { maxNewTokens, temperature: 0 });
      expect(got.map((r) => r.ids)).toEqual(want.map((r) => r.ids));
      got.forEach((r, b) => expectCloseArray(r.logprobs, want[b].logprobs, 1e-4));
      expect(new Set(want.flatMap((r) => r.ids)).size).toBeGreaterThan(3);
      // f16 caches (half the bytes, still over the binding) take the same runs of sequences.
      if (small.features.shaderF16) {
        expect(cacheBytes / 2).toBeGreaterThan(small.maxBinding);
        const want16 = await generate(reference, prompts, { maxNewTokens, temperature: 0, kvDtype: 'f16' });
        const got16 = await generate(model, prompts, { maxNewTokens, temperature: 0, kvDtype: 'f16' });
        expect(got16.map((r) => r.ids)).toEqual(want16.map((r) => r.ids));
        got16.forEach((r, b) => expectCloseArray(r.logprobs, want16[b].logprobs, 1e-4));
      }
    } finally {
      model.dispose();
      reference.dispose();
      small.destroy();
    }
  });
});

function expectCloseArray(a: readonly number[], b: readonly number[], tol: number): void {
  expect(a).toHaveLength(b.length);
  a.forEach((x, i) => expect(Math.abs(x - b[i]), `index ${i}`).toBeLessThan(tol));
}

describe('generate with non-finite weights', () => {
  it('fails with a NonFiniteError at the first step instead of sampling token 0 with a NaN logprob', async () => {
    const dir = writeModel('qwen2', 44);
    dirs.push(dir);
    fillTensor(dir, 'model.norm.weight', NaN);
    const model = await QwenModel.load(gpu, dir);
    try {
      const streamed: number[] = [];
      const r = generate(model, PROMPTS, { maxNewTokens: 3, temperature: 0, onToken: (_b, id) => streamed.push(id) });
      await expect(r).rejects.toThrow(/^generate: non-finite logits at step 0 of prompt 0; the weights \(or adapter\) hold NaN or Inf values/);
      await expect(r).rejects.toBeInstanceOf(NonFiniteError);
      expect(streamed).toEqual([]);
    } finally {
      model.dispose();
    }
  });
});
