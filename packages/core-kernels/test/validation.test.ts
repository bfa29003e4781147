import { describe, expect, it } from 'vitest';
import { AdamW, ShapeError, add, adamwUpdate, attention, attentionDecode, constantLr, cosineLr, matmul, rmsnorm, sampleTokens, type DType, type Gpu } from '../src/index.js';
import { testGpu } from './helpers.js';

// Scalar options a kernel would otherwise pass straight into its uniforms: a NaN or an out-of-range value there
// gives no GPU error, only a silently wrong (often all-NaN) result. Each op refuses them with a ShapeError before
// it allocates or records anything.
describe('scalar options are validated before any GPU work', () => {
  const filled = <D extends DType = 'f32'>(gpu: Gpu, shape: number[], dtype: D = 'f32' as D) => gpu.tensor(shape, dtype, new Array<number>(shape.reduce((a, b) => a * b, 1)).fill(dtype === 'i32' ? 1 : 0.5));

  /** `fn` throws a ShapeError matching `msg`, leaving the allocator's bytes in use as they were. */
  function refuses(gpu: Gpu, fn: () => unknown, msg: RegExp): void {
    const before = gpu.memory().inUse;
    expect(fn).toThrowError(ShapeError);
    expect(fn).toThrowError(msg);
    expect(gpu.memory().inUse).toBe(before);
  }

  it('tensor dtypes and add shapes', async () => {
    const gpu = await testGpu();
    refuses(gpu, () => gpu.tensor([2], 'f64' as DType), /unknown dtype f64: one of f32, f16, i32, u32/);
    const [a, at, flat] = [filled(gpu, [2, 3]), filled(gpu, [3, 2]), filled(gpu, [6])];
    // Same size, rows of another width: a transposition mistake, not a residual add.
    refuses(gpu, () => add(gpu, a, at), /equal shapes/);
    refuses(gpu, () => add(gpu, a, a, flat), /output mismatch/);
    // Leading dimensions may be merged or split, as the policy's residual adds do.
    expect(Array.from(await add(gpu, filled(gpu, [1, 2, 3]), a).read())).toEqual([1, 1, 1, 1, 1, 1]);
  });

  it('matmul alpha and beta, rmsnorm eps, attention scale', async () => {
    const gpu = await testGpu();
    const x = filled(gpu, [2, 8]);
    const [w, out, nw] = [filled(gpu, [8, 5]), filled(gpu, [2, 5]), filled(gpu, [8])];
    refuses(gpu, () => matmul(gpu, x, w, { alpha: NaN }), /alpha and beta must be finite, got NaN and 0/);
    refuses(gpu, () => matmul(gpu, x, w, { beta: Infinity, out }), /alpha and beta must be finite/);
    refuses(gpu, () => rmsnorm(gpu, x, nw, { eps: -1e-6 }), /eps must be finite and >= 0, got -0.000001/);
    refuses(gpu, () => rmsnorm(gpu, x, nw, { eps: NaN }), /eps must be finite and >= 0, got NaN/);
    const [q, q1] = [filled(gpu, [1, 3, 2, 8]), filled(gpu, [1, 1, 2, 8])];
    refuses(gpu, () => attention(gpu, q, q, q, { scale: NaN }), /scale must be finite, got NaN/);
    const lengths = filled(gpu, [1], 'i32');
    refuses(gpu, () => attentionDecode(gpu, q1, q, q, lengths, { scale: -Infinity }), /scale must be finite/);
  });

  it('sampling: temperature, seed and step', async () => {
    const gpu = await testGpu();
    const logits = filled(gpu, [2, 16]);
    refuses(gpu, () => sampleTokens(gpu, logits, { temperature: NaN }), /temperature is NaN/);
    refuses(gpu, () => sampleTokens(gpu, logits, { seed: -1 }), /seed must be a u32 integer, got -1/);
    refuses(gpu, () => sampleTokens(gpu, logits, { seed: 2 ** 32 }), /seed must be a u32 integer/);
    refuses(gpu, () => sampleTokens(gpu, logits, { step: 0.5 }), /step must be a u32 integer, got 0.5/);
    // The documented edges stay valid: temperature <= 0 is greedy, the largest u32 seed is a seed.
    expect(Array.from(await sampleTokens(gpu, logits, { temperature: -1, seed: 2 ** 32 - 1 }).ids.read())).toEqual([0, 0]);
  });

  it('AdamW hyperparameters, and a refused step changes nothing', async () => {
    const gpu = await testGpu();
    const t = () => filled(gpu, [4]);
    const [p, g, m, v] = [t(), t(), t(), t()];
    const h = { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, step: 1 };
    refuses(gpu, () => adamwUpdate(gpu, p, g, m, v, { ...h, lr: NaN }), /lr must be finite and >= 0, got NaN/);
    refuses(gpu, () => adamwUpdate(gpu, p, g, m, v, { ...h, beta1: 1 }), /beta1 must be in \[0, 1\), got 1/);
    refuses(gpu, () => adamwUpdate(gpu, p, g, m, v, { ...h, beta2: -0.1 }), /beta2 must be in \[0, 1\)/);
    refuses(gpu, () => adamwUpdate(gpu, p, g, m, v, { ...h, eps: -1 }), /eps must be finite and >= 0/);
    refuses(gpu, () => adamwUpdate(gpu, p, g, m, v, { ...h, weightDecay: Infinity }), /weightDecay must be finite/);
    refuses(gpu, () => adamwUpdate(gpu, p, g, m, v, { ...h, maxGradNorm: NaN }), /maxGradNorm must be finite/);
    refuses(gpu, () => new AdamW(gpu, [p], { lr: 1e-3, betas: [0.9, 1] }), /beta2 must be in \[0, 1\), got 1/);

    const opt = new AdamW(gpu, [p], { lr: 0.1 });
    refuses(gpu, () => opt.step([g], -0.1), /lr must be finite and >= 0, got -0.1/);
    expect(opt.stepCount).toBe(0);
    expect(Array.from(await p.read())).toEqual([0.5, 0.5, 0.5, 0.5]);
    opt.step([g]);
    expect(opt.stepCount).toBe(1);
    expect((await p.read())[0]).toBeLessThan(0.5);
  });

  it('learning-rate schedules', () => {
    const o = { lr: 1e-3, warmupSteps: 2, totalSteps: 10 };
    expect(() => cosineLr(NaN, o)).toThrowError(/step must be an integer >= 0, got NaN/);
    expect(() => cosineLr(-1, o)).toThrowError(/step must be an integer >= 0/);
    expect(() => cosineLr(0, { ...o, lr: NaN })).toThrowError(/lr must be finite and >= 0, got NaN/);
    expect(() => cosineLr(0, { ...o, warmupSteps: 1.5 })).toThrowError(/warmupSteps must be an integer >= 0, got 1.5/);
    expect(() => cosineLr(0, { ...o, totalSteps: NaN })).toThrowError(/totalSteps must be an integer >= 0, got NaN/);
    expect(() => cosineLr(0, { ...o, minLrRatio: 2 })).toThrowError(/minLrRatio must be in \[0, 1\], got 2/);
    expect(() => constantLr(0, { lr: -1 })).toThrowError(/lr must be finite and >= 0, got -1/);
    expect(cosineLr(0, o)).toBeCloseTo(5e-4, 12);
    expect(constantLr(3, { lr: 2e-4, warmupSteps: 2 })).toBe(2e-4);
  });
});
