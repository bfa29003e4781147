import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Gpu, SeededRng, cosineLr, isSoftwareAdapter } from '@mlagent/core-kernels';
import { LORA_MODULES, LoraAdapter, QwenModel, TrainOptimizer, maskedNllBackward, policyForward } from '../src/index.js';
import { writeModel } from './fixtures.js';
import { randomCoefs, randomSeqs, randomizeB, relErr } from './lora-oracle.js';

/** A small vocabulary keeps the LM head (152k rows in real Qwen) from dominating the runtime. */
const VOCAB = 512;
let gpu: Gpu;
let model: QwenModel;
const dirs: string[] = [];

beforeAll(async () => {
  gpu = await Gpu.create();
  const dir = writeModel('qwen3', 31, 'F32', { vocabSize: VOCAB });
  dirs.push(dir);
  model = await QwenModel.load(gpu, dir);
}, 120_000);

afterAll(() => {
  model?.dispose();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** log softmax(row)[id] in float64. */
function logSoftmaxAt(row: Float32Array, id: number): number {
  let m = -Infinity;
  for (const v of row) m = Math.max(m, v);
  let s = 0;
  for (const v of row) s += Math.exp(v - m);
  return row[id] - m - Math.log(s);
}

const readAll = async (adapter: LoraAdapter) => Promise.all(adapter.grads().map((g) => g.read()));

/** L = Σ c·logprob + e·entropy under the adapter, forward only. */
async function lossOf(adapter: LoraAdapter | undefined, seqs: number[][], c: number[][], e: number[][]): Promise<number> {
  const pass = await policyForward(model, seqs, { adapter, grad: false });
  let L = 0;
  seqs.forEach((s, b) => {
    for (let t = 1; t < s.length; t++) L += c[b][t] * pass.logprobs[b][t] + e[b][t] * pass.entropies[b][t];
  });
  return L;
}

describe('LoRA training passes', () => {
  it('activation checkpointing on and off give the same gradients (with dropout, masks recomputed)', async () => {
    const rng = new SeededRng(1);
    const adapter = LoraAdapter.create(model, { r: 4, alpha: 8, dropout: 0.2, targetModules: LORA_MODULES }, { seed: 1 });
    randomizeB(adapter, rng);
    const seqs = randomSeqs(rng, [8, 5], VOCAB);
    const dLogprob = randomCoefs(rng, seqs);
    const dEntropy = randomCoefs(rng, seqs, 0.5);
    const grads = [];
    for (const checkpoint of [false, true]) {
      adapter.zeroGrad();
      const pass = await policyForward(model, seqs, { adapter, checkpoint, dropoutSeed: 7 });
      pass.backward({ dLogprob, dEntropy });
      grads.push(await readAll(adapter));
    }
    for (let i = 0; i < grads[0].length; i++) {
      expect(grads[0][i].some((v) => v !== 0)).toBe(true);
      expect(relErr(grads[1][i], grads[0][i])).toBeLessThan(1e-6);
    }
    // A different dropout seed gives different masks, hence different gradients.
    adapter.zeroGrad();
    (await policyForward(model, seqs, { adapter, dropoutSeed: 8 })).backward({ dLogprob, dEntropy });
    const other = await readAll(adapter);
    expect(relErr(other[0], grads[0][0])).toBeGreaterThan(1e-3);
    adapter.dispose();
  });

  it('no adapter, or a fresh one (B = 0), reproduces the base logprobs; model.adapter applies it in forward', async () => {
    const rng = new SeededRng(2);
    const seqs = randomSeqs(rng, [6, 3], VOCAB);
    const base = await policyForward(model, seqs, { grad: false });
    // The base logprobs are those of model.forward's logits.
    const logits = model.forward([seqs[0]]);
    const z = await logits.read();
    logits.dispose();
    const V = model.config.vocabSize;
    for (let t = 1; t < seqs[0].length; t++) {
      expect(Math.abs(base.logprobs[0][t] - logSoftmaxAt(z.subarray((t - 1) * V, t * V), seqs[0][t]))).toBeLessThan(1e-4);
    }
    const adapter = LoraAdapter.create(model, { r: 2, alpha: 16, targetModules: ['q_proj', 'up_proj'] }, { seed: 2 });
    const fresh = await policyForward(model, seqs, { adapter, grad: false });
    expect(fresh.logprobs).toEqual(base.logprobs);
    randomizeB(adapter, rng);
    const adapted = await policyForward(model, seqs, { adapter, grad: false });
    expect(relErr(adapted.logprobs[0], base.logprobs[0])).toBeGreaterThan(1e-3);
    const again = await policyForward(model, seqs, { grad: false });
    expect(again.logprobs).toEqual(base.logprobs);
    // model.adapter (the generation path) gives the adapted logprobs too.
    model.adapter = adapter;
    try {
      const l2 = model.forward([seqs[1]]);
      const z2 = await l2.read();
      l2.dispose();
      const t = 2;
      expect(Math.abs(adapted.logprobs[1][t] - logSoftmaxAt(z2.subarray((t - 1) * V, t * V), seqs[1][t]))).toBeLessThan(1e-4);
    } finally {
      model.adapter = null;
    }
    adapter.dispose();
  });

  it('frozen weights packed once (packWeights) give the same logits, logprobs and gradients bit for bit', async () => {
    const rng = new SeededRng(12);
    const adapter = LoraAdapter.create(model, { r: 4, alpha: 8, dropout: 0.1, targetModules: LORA_MODULES }, { seed: 12 });
    randomizeB(adapter, rng);
    // 2 x 20 rows: over the CPU GEMV's 24, so the projections take the cpu-tiled matmul there.
    const seqs = randomSeqs(rng, [20, 14], VOCAB);
    const dLogprob = randomCoefs(rng, seqs);
    const dEntropy = randomCoefs(rng, seqs, 0.5);
    // Results, and apart from them how many times a frozen W was packed for a product (profiled).
    let packing = 0;
    const run = async () => {
      await gpu.sync();
      gpu.profiling = true;
      adapter.zeroGrad();
      const pass = await policyForward(model, seqs, { adapter, dropoutSeed: 3 });
      pass.backward({ dLogprob, dEntropy });
      const logits = model.forward([seqs[0], seqs[0]]);
      const z = Array.from(await logits.read());
      logits.dispose();
      const grads = (await readAll(adapter)).map((g) => Array.from(g));
      // Packs of a frozen W for x·Wᵀ: B transposed and neither side the LoRA rank (4).
      const frozen = (shapes: string) => / tB /.test(shapes) && !/ [NK]=4 /.test(shapes);
      packing = (await gpu.takeTimings()).filter((t) => t.op === 'matmul-cpu-tiled-pack' && frozen(t.shapes)).length;
      gpu.profiling = false;
      return { logprobs: pass.logprobs, grads, z };
    };
    const plain = await run();
    const plainPacking = packing;
    expect(model.packedWeightBytes).toBe(0);
    model.packWeights = true;
    try {
      const packed = await run();
      const bytes = model.packedWeightBytes;
      // A CPU adapter packs the 7 projections of each layer and the LM head; a GPU packs nothing.
      expect(bytes > 0).toBe(isSoftwareAdapter(gpu.adapter));
      expect(packed).toEqual(plain);
      expect(await run()).toEqual(plain);
      expect(model.packedWeightBytes).toBe(bytes);
      // No x·Wᵀ of the training pass or of forward (6-7 a layer each, and the LM head) packs W any more.
      if (bytes > 0) {
        expect(plainPacking).toBeGreaterThan(13 * model.config.numLayers);
        expect(packing).toBe(0);
      }
      const copy = gpu.tensor(model.weights.layers[0].q.shape, 'f32');
      expect(model.packedWeight(copy, 40)).toBeUndefined();
      copy.dispose();
      if (bytes > 0) {
        expect(model.packedWeight(model.weights.layers[0].q, 40)).toBeDefined();
        // Decoding's single rows take the GEMV, which packs nothing.
        expect(model.packedWeight(model.weights.layers[0].q, 1)).toBeUndefined();
      }
    } finally {
      model.packWeights = false;
      model.dropPackedWeights();
      adapter.dispose();
    }
    expect(model.packedWeightBytes).toBe(0);
  });

  it('a pass keeps the head logits for backward (keepLogits, the default where they fit): the same gradients bit for bit', async () => {
    const rng = new SeededRng(13);
    const adapter = LoraAdapter.create(model, { r: 4, alpha: 8, targetModules: ['q_proj', 'down_proj'] }, { seed: 13 });
    randomizeB(adapter, rng);
    const seqs = randomSeqs(rng, [17, 9, 12], VOCAB);
    const scoredTokens = seqs.map((s) => s.map((_, t) => (t % 3 === 0 ? 0 : 1)));
    const dLogprob = randomCoefs(rng, seqs).map((c, b) => c.map((v, t) => v * scoredTokens[b][t]));
    const dEntropy = randomCoefs(rng, seqs, 0.5).map((c, b) => c.map((v, t) => v * scoredTokens[b][t]));
    const grads = async (opts: { keepLogits?: boolean; scoredTokens?: number[][] }) => {
      adapter.zeroGrad();
      await gpu.sync();
      gpu.profiling = true;
      const pass = await policyForward(model, seqs, { adapter, temperature: 0.9, ...opts });
      pass.backward({ dLogprob, dEntropy });
      const g = (await readAll(adapter)).map((x) => Array.from(x));
      const ops = (await gpu.takeTimings()).map((t) => t.op);
      gpu.profiling = false;
      return { g, logprobs: pass.logprobs, recomputed: ops.includes('headBackward:cpu-dh'), read: ops.includes('headBackward:cpu-dh-kept') };
    };
    try {
      for (const scored of [undefined, scoredTokens]) {
        const plain = await grads({ keepLogits: false, scoredTokens: scored });
        const kept = await grads({ scoredTokens: scored });
        // On a CPU adapter the fused head runs; it reads the kept logits instead of recomputing them.
        const cpu = isSoftwareAdapter(gpu.adapter);
        expect([plain.recomputed, plain.read, kept.recomputed, kept.read]).toEqual([cpu, false, false, cpu]);
        expect(kept.g).toEqual(plain.g);
        expect(kept.logprobs).toEqual(plain.logprobs);
        expect(plain.g.some((x) => x.some((v) => v !== 0))).toBe(true);
        // Two passes alive at once, over other tokens: the second cannot borrow the buffer the first keeps its
        // logits in, and both stay right (a + b, each the recomputing pass's gradient).
        const other = seqs.map((q) => q.map((id) => (id * 7 + 3) % VOCAB));
        const grad1 = async (ids: number[][], keepLogits?: boolean) => {
          adapter.zeroGrad();
          const pass = await policyForward(model, ids, { adapter, temperature: 0.9, scoredTokens: scored, keepLogits });
          pass.backward({ dLogprob, dEntropy });
          return (await readAll(adapter)).map((x) => Array.from(x));
        };
        const [a, b] = [await grad1(seqs, false), await grad1(other, false)];
        adapter.zeroGrad();
        const first = await policyForward(model, seqs, { adapter, temperature: 0.9, scoredTokens: scored });
        if (scored) {
          // Dropped while the first pass holds it: freed only when that pass is done, so the second gets another.
          model.dropLogitsScratch();
        }
        const second = await policyForward(model, other, { adapter, temperature: 0.9, scoredTokens: scored });
        second.backward({ dLogprob, dEntropy });
        first.backward({ dLogprob, dEntropy });
        // Accumulating into the grads rounds the sum once per product, so not bit for bit: to 1e-5 of the largest.
        const both = (await readAll(adapter)).map((x) => Array.from(x));
        const big = Math.max(...a.flat().map(Math.abs), ...b.flat().map(Math.abs));
        const worst = Math.max(...both.flatMap((x, i) => x.map((v, j) => Math.abs(v - a[i][j] - b[i][j]))));
        expect(worst).toBeLessThan(1e-5 * big);
        model.dropLogitsScratch();
      }
    } finally {
      adapter.dispose();
    }
  });

  it('gradients match central finite differences on a few parameters', async () => {
    const rng = new SeededRng(3);
    const adapter = LoraAdapter.create(model, { r: 2, alpha: 4, targetModules: ['k_proj', 'o_proj', 'down_proj'] }, { seed: 3 });
    randomizeB(adapter, rng);
    const seqs = randomSeqs(rng, [7, 4], VOCAB);
    const c = randomCoefs(rng, seqs);
    const e = randomCoefs(rng, seqs, 0.5);
    (await policyForward(model, seqs, { adapter })).backward({ dLogprob: c, dEntropy: e });
    const grads = await readAll(adapter);
    const params = adapter.params();
    const names = adapter.paramNames();
    // The largest-gradient element of three tensors (A of k_proj, B of o_proj, A of down_proj in layer 1).
    for (const i of [0, 3, 10]) {
      const g = grads[i];
      let j = 0;
      for (let k = 1; k < g.length; k++) if (Math.abs(g[k]) > Math.abs(g[j])) j = k;
      const p = (await params[i].read()) as Float32Array;
      const eps = 1e-2;
      const at = async (delta: number) => {
        const q = p.slice();
        q[j] += delta;
        params[i].write(q);
        return lossOf(adapter, seqs, c, e);
      };
      const fd = ((await at(eps)) - (await at(-eps))) / (2 * eps);
      params[i].write(p);
      expect(Math.abs(fd - g[j]) / Math.abs(g[j]), `${names[i]}[${j}]: fd ${fd} vs grad ${g[j]}`).toBeLessThan(2e-2);
    }
    adapter.dispose();
  });

  it('two micro-batches accumulate to the gradient of the whole batch', async () => {
    const rng = new SeededRng(4);
    const adapter = LoraAdapter.create(model, { r: 2, alpha: 4, targetModules: ['v_proj', 'gate_proj'] }, { seed: 4 });
    randomizeB(adapter, rng);
    const seqs = randomSeqs(rng, [6, 4, 5], VOCAB);
    const masks = seqs.map((s) => s.map((_, t) => (t >= 2 ? 1 : 0)));
    const tokens = masks.flat().reduce((a: number, b) => a + b, 0);
    const whole = await maskedNllBackward(model, seqs, masks, { adapter });
    const g1 = await readAll(adapter);
    adapter.zeroGrad();
    const a = await maskedNllBackward(model, seqs.slice(0, 2), masks.slice(0, 2), { adapter, normalizer: tokens });
    const b = await maskedNllBackward(model, seqs.slice(2), masks.slice(2), { adapter, normalizer: tokens });
    expect(whole.tokens).toBe(tokens);
    expect(Math.abs(a.loss + b.loss - whole.loss)).toBeLessThan(1e-5);
    const g2 = await readAll(adapter);
    for (let i = 0; i < g1.length; i++) expect(relErr(g2[i], g1[i])).toBeLessThan(1e-5);
    adapter.dispose();
  });

  it('scoring only some tokens gives the same logprobs there and the same gradients as scoring all', async () => {
    const rng = new SeededRng(9);
    const adapter = LoraAdapter.create(model, { r: 2, alpha: 4, targetModules: ['q_proj', 'down_proj'] }, { seed: 9 });
    randomizeB(adapter, rng);
    const seqs = randomSeqs(rng, [7, 3, 5], VOCAB);
    const scored = seqs.map((s, b) => s.map((_, t) => (t > 0 && (t + b) % 2 === 0 ? 1 : 0)));
    const coefs = scored.map((m) => m.map((x) => x * (rng.uniform() - 0.5)));
    const ent = scored.map((m) => m.map((x) => x * 0.1));
    const all = await policyForward(model, seqs, { adapter });
    all.backward({ dLogprob: coefs, dEntropy: ent });
    const gAll = await readAll(adapter);
    adapter.zeroGrad();
    const some = await policyForward(model, seqs, { adapter, scoredTokens: scored });
    seqs.forEach((s, b) => {
      for (let t = 1; t < s.length; t++) {
        if (scored[b][t]) {
          expect(Math.abs(some.logprobs[b][t] - all.logprobs[b][t])).toBeLessThan(1e-5);
          expect(Math.abs(some.entropies[b][t] - all.entropies[b][t])).toBeLessThan(1e-5);
        } else {
          expect(some.logprobs[b][t]).toBe(0);
        }
      }
    });
    some.backward({ dLogprob: coefs, dEntropy: ent });
    const gSome = await readAll(adapter);
    for (let i = 0; i < gAll.length; i++) expect(relErr(gSome[i], gAll[i])).toBeLessThan(1e-5);
    // A coefficient on a token the forward did not score would be dropped silently: it is refused instead.
    const again = await policyForward(model, seqs, { adapter, scoredTokens: scored });
    expect(() => again.backward({ dLogprob: seqs.map((s) => s.map(() => 1)) })).toThrow(/nonzero at tokens the forward did not score/);
    await expect(policyForward(model, seqs, { adapter, scoredTokens: seqs.map((s) => s.map(() => 0)) })).rejects.toThrow(/marks no token/);
    await expect(policyForward(model, seqs, { adapter, scoredTokens: [[1]] })).rejects.toThrow(/one array per sequence/);
    adapter.dispose();
  });

  it('a few dozen AdamW steps drive the NLL of a fixed sequence down; optimizer state resumes exactly', async () => {
    const rng = new SeededRng(5);
    const adapter = LoraAdapter.create(model, { r: 8, alpha: 16, targetModules: LORA_MODULES }, { seed: 5 });
    const seqs = randomSeqs(rng, [12], VOCAB);
    const masks = [seqs[0].map(() => 1)];
    const steps = 30;
    const opt = new TrainOptimizer(gpu, [adapter], {
      lr: 1e-2,
      maxGradNorm: 1,
      schedule: (i) => cosineLr(i, { lr: 1e-2, warmupSteps: 3, totalSteps: steps }),
    });
    const losses: number[] = [];
    for (let i = 0; i < steps; i++) {
      const { loss } = await maskedNllBackward(model, seqs, masks, { adapter });
      losses.push(loss);
      const s = await opt.step();
      expect(s.skipped).toBe(false);
      expect(Number.isFinite(s.gradNorm)).toBe(true);
    }
    const final = (await maskedNllBackward(model, seqs, masks, { adapter })).loss;
    adapter.zeroGrad();
    expect(final).toBeLessThan(0.5 * losses[0]);

    // Resume: save params + optimizer state, take a step, restore both, take the step again: same params.
    const work = mkdtempSync(join(tmpdir(), 'mlagent-opt-'));
    dirs.push(work);
    const statePath = join(work, 'optimizer.safetensors');
    await opt.save(statePath);
    const before = await Promise.all(adapter.params().map((p) => p.read()));
    const step = async () => {
      await maskedNllBackward(model, seqs, masks, { adapter });
      await opt.step();
      return Promise.all(adapter.params().map((p) => p.read()));
    };
    const first = await step();
    const opt2 = new TrainOptimizer(gpu, [adapter], { lr: 1e-2, maxGradNorm: 1, schedule: (i) => cosineLr(i, { lr: 1e-2, warmupSteps: 3, totalSteps: steps }) });
    opt2.load(statePath);
    expect(opt2.stepCount).toBe(steps);
    adapter.params().forEach((p, i) => p.write(before[i]));
    const opt1 = opt;
    opt1.dispose();
    await maskedNllBackward(model, seqs, masks, { adapter });
    await opt2.step();
    const second = await Promise.all(adapter.params().map((p) => p.read()));
    for (let i = 0; i < first.length; i++) expect(second[i]).toEqual(first[i]);
    expect(() => new TrainOptimizer(gpu, [LoraAdapter.create(model, { r: 2, alpha: 2, targetModules: ['q_proj'] })], { lr: 1 }).load(statePath)).toThrow(
      /holds state for \d+ params, this optimizer has 4/,
    );
    opt2.dispose();
    adapter.dispose();
  });

  it('rejects bad inputs with errors naming what is wrong', async () => {
    const adapter = LoraAdapter.create(model, { r: 2, alpha: 4, targetModules: ['q_proj'] });
    await expect(policyForward(model, [[1, 2], []], { adapter })).rejects.toThrow(/sequence 1 has 0 tokens/);
    await expect(policyForward(model, [[1, VOCAB]], { adapter })).rejects.toThrow(/token id 512 at \[0, 1\] is outside the vocabulary \[0, 512\)/);
    await expect(policyForward(model, [[1, 2]], { temperature: 0 })).rejects.toThrow(/temperature must be > 0/);
    const pass = await policyForward(model, [[1, 2, 3], [4, 5]], { adapter });
    expect(() => pass.backward({ dLogprob: [[0, 1, 1]] })).toThrow(/dLogprob needs one array per sequence \(2\)/);
    expect(() => pass.backward({ dLogprob: [[0, 1, 1], [0, NaN]] })).toThrow(/dLogprob\[1\]\[1\] is NaN/);
    expect(() => pass.backward({ dLogprob: [[0, 1, 1], [0, 1, 1]] })).toThrow(/dLogprob\[1\] has 3 values; sequence 1 has 2 tokens/);
    pass.dispose();
    expect(() => pass.backward({ dLogprob: [[0, 1, 1], [0, 1]] })).toThrow(/disposed or already backpropagated/);
    const noGrad = await policyForward(model, [[1, 2, 3]], { adapter, grad: false });
    expect(() => noGrad.backward({ dLogprob: [[0, 1, 1]] })).toThrow(/the forward ran with grad: false/);
    expect(() => LoraAdapter.create(model, { r: 0, alpha: 4, targetModules: ['q_proj'] })).toThrow(/r must be a positive integer, got 0/);
    expect(() => LoraAdapter.create(model, { r: 2, alpha: 4, targetModules: ['lm_head' as 'q_proj'] })).toThrow(/unknown target module 'lm_head'/);
    expect(() => LoraAdapter.create(model, { r: 2, alpha: 4, dropout: 1, targetModules: ['q_proj'] })).toThrow(/dropout must be in \[0, 1\)/);
    adapter.dispose();
    await expect(policyForward(model, [[1, 2]], { adapter })).rejects.toThrow(/adapter was disposed/);
  });
});

describe('a training pass past one storage binding', () => {
  it('gives the logprobs and LoRA gradients of an unlimited device when attention runs in runs of sequences', async () => {
    // q, k and v of 4 sequences of ~500 tokens exceed a 192 KiB binding (a stand-in for the real limits), so the
    // attention forward and backward run on runs of sequences (core-kernels' attention-batches.ts).
    const dir = writeModel('qwen2', 33, 'F32', { vocabSize: VOCAB });
    dirs.push(dir);
    const seqs = [0, 1, 2, 3].map((b) => Array.from({ length: 500 + 7 * b }, (_, i) => (i * 7919 + b * 104729) % VOCAB));
    const run = async (g: Gpu) => {
      const m = await QwenModel.load(g, dir);
      const adapter = LoraAdapter.create(m, { r: 4, alpha: 8, dropout: 0, targetModules: ['q_proj', 'v_proj'] }, { seed: 1 });
      randomizeB(adapter, new SeededRng(2));
      const pass = await policyForward(m, seqs, { adapter });
      pass.backward({ dLogprob: seqs.map((s) => Array.from(s, (_, t) => (t % 3) - 1)) });
      const { numHeads, headDim } = m.config;
      const qBytes = seqs.length * Math.max(...seqs.map((x) => x.length)) * numHeads * headDim * 4;
      const out = { qBytes, logprobs: pass.logprobs.flatMap((x) => Array.from(x)), grads: (await readAll(adapter)).flatMap((x) => Array.from(x)) };
      m.dispose();
      return out;
    };
    const small = await Gpu.create({ maxBindingBytes: 192 * 1024 });
    try {
      const [want, got] = [await run(gpu), await run(small)];
      expect(got.qBytes).toBeGreaterThan(small.maxBinding);
      expect(relErr(got.logprobs, want.logprobs)).toBeLessThan(1e-5);
      expect(relErr(got.grads, want.grads)).toBeLessThan(1e-4);
      expect(Math.max(...want.grads.map(Math.abs))).toBeGreaterThan(0);
    } finally {
      small.destroy();
    }
  });
});
