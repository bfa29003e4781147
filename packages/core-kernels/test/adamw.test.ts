import { afterAll, describe, expect, it } from 'vitest';
import { ShapeError, type Tensor } from '../src/index.js';
import { AdamW, adamwUpdate, constantLr, cosineLr, globalGradNorm, gradNormPartials, zeroGrads } from '../src/kernels/adamw.js';
import { adamwInitRef, adamwStepRef, gradNormRef } from '../src/reference/adamw.js';
import { Rng, expectClose, freshGpu, testGpu } from './helpers.js';

const SIZES = [1, 3, 1000, 4097, 100003];
const TOL = { atol: 2e-6, rtol: 2e-5 };

describe('global grad norm', () => {
  it('matches float64 over a list of awkward sizes (8-lane subgroup sums, and 256-thread trees)', async () => {
    // Without subgroups lavapipe takes the 256-thread workgroups GPUs take.
    const gpus = [await testGpu(), await freshGpu({ disableFeatures: ['subgroups'] })];
    const rng = new Rng(1);
    for (const gpu of gpus) {
      const host = [...SIZES, 1 << 20].map((n) => rng.randn(n, 0.3));
      const grads = host.map((g) => gpu.tensor([g.length], 'f32', g));
      expect(gradNormPartials(gpu, grads)).toBeGreaterThan(grads.length);
      const norm = globalGradNorm(gpu, grads);
      expectClose(await norm.read(), [gradNormRef(host)], { atol: 0, rtol: 1e-5 }, `norm, subgroups ${gpu.features.subgroups}`);
      for (const t of [...grads, norm]) t.dispose();
    }
    gpus[1].destroy();
  });

  it('counts an empty tensor as nothing, and the norm of only empty tensors is 0', async () => {
    const gpu = await testGpu();
    const rng = new Rng(3);
    const host = [rng.randn(37), new Float32Array(0), rng.randn(5)];
    const grads = host.map((g) => gpu.tensor([g.length], 'f32', g));
    expectClose(await globalGradNorm(gpu, grads).read(), [gradNormRef(host)], { atol: 0, rtol: 1e-5 }, 'norm with an empty tensor');
    expect(Array.from(await globalGradNorm(gpu, [grads[1]]).read())).toEqual([0]);
    // An empty parameter (a module with no elements) steps as a no-op.
    const [p, m, v] = [gpu.tensor([0], 'f32'), gpu.tensor([0], 'f32'), gpu.tensor([0], 'f32')];
    adamwUpdate(gpu, p, grads[1], m, v, { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, step: 1 });
    await gpu.sync();
    for (const t of [...grads, p, m, v]) t.dispose();
  });

  it('windows tensors over the binding limit and flags non-finite norms', async () => {
    const gpu = await freshGpu({ maxBindingBytes: 4096 });
    try {
      const rng = new Rng(2);
      const host = [rng.randn(5000), rng.randn(3), rng.randn(2049)];
      const grads = host.map((g) => gpu.tensor([g.length], 'f32', g));
      const status = gpu.zeros([2], 'u32');
      const norm = globalGradNorm(gpu, grads, { status });
      expectClose(await norm.read(), [gradNormRef(host)], { atol: 0, rtol: 1e-5 }, 'windowed norm');
      expect(Array.from(await status.read())).toEqual([0, 0]);
      for (const bad of [NaN, Infinity]) {
        host[0][4321] = bad;
        grads[0].write(host[0]);
        globalGradNorm(gpu, grads, { out: norm, status });
        expect(Number.isFinite((await norm.read())[0])).toBe(false);
        expect((await status.read())[0]).toBe(1);
      }
      expect((await status.read())[1]).toBe(2);
    } finally {
      gpu.destroy();
    }
  });
});

/** Runs AdamW on the GPU and the float64 reference side by side, comparing everything after every step. */
async function compareSteps(
  gpu: Awaited<ReturnType<typeof testGpu>>,
  sizes: number[],
  opts: { maxGradNorm?: number; weightDecay: number; steps: number; decay?: boolean[]; seed: number },
): Promise<void> {
  const rng = new Rng(opts.seed);
  const p0 = sizes.map((n) => rng.randn(n));
  const params = p0.map((p) => gpu.tensor([p.length], 'f32', p));
  const grads = sizes.map((n) => gpu.tensor([n], 'f32'));
  const hyper = { lr: 1e-2, beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: opts.weightDecay, maxGradNorm: opts.maxGradNorm, skipNonFinite: true };
  const opt = new AdamW(gpu, params, { lr: hyper.lr, betas: [0.9, 0.99], eps: 1e-8, weightDecay: opts.weightDecay, maxGradNorm: opts.maxGradNorm, decay: opts.decay });
  const ref = p0.map((p) => Float64Array.from(p));
  const state = adamwInitRef(ref);
  let clipped = 0;
  for (let s = 0; s < opts.steps; s++) {
    // Gradient scale varies by step, so clipping is active on some steps and not on others.
    const g = sizes.map((n) => rng.randn(n, s % 2 === 0 ? 0.01 : 0.2));
    g.forEach((x, i) => grads[i].write(x));
    const lr = cosineLr(s, { lr: hyper.lr, warmupSteps: 2, totalSteps: opts.steps });
    const norm = opt.step(grads, lr);
    const r = adamwStepRef(ref, g, state, { ...hyper, lr }, opts.decay);
    if (opts.maxGradNorm && r.norm > opts.maxGradNorm) clipped++;
    expectClose(await norm.read(), [r.norm], { atol: 0, rtol: 1e-5 }, `norm step ${s}`);
    for (let i = 0; i < sizes.length; i++) {
      expectClose(await params[i].read(), ref[i], TOL, `param ${i} (n=${sizes[i]}) step ${s}`);
    }
  }
  const st = await opt.state();
  for (let i = 0; i < sizes.length; i++) {
    expectClose(st.m[i], state.m[i], { atol: 1e-7, rtol: 1e-5 }, `m ${i}`);
    expectClose(st.v[i], state.v[i], { atol: 1e-9, rtol: 1e-5 }, `v ${i}`);
  }
  if (opts.maxGradNorm) {
    expect(clipped).toBeGreaterThan(0);
    expect(clipped).toBeLessThan(opts.steps);
  }
  opt.dispose();
  for (const t of [...params, ...grads]) t.dispose();
}

describe('AdamW', () => {
  it('matches the float64 reference over several clipped steps on many tensors', async () => {
    await compareSteps(await testGpu(), SIZES, { maxGradNorm: 5, weightDecay: 0.1, steps: 6, seed: 3 });
  });

  it('matches without clipping, with per-parameter weight decay switched off', async () => {
    await compareSteps(await testGpu(), [7, 33, 257], { weightDecay: 0.5, steps: 4, decay: [true, false, true], seed: 4 });
  });

  it('updates tensors over the binding limit window by window', async () => {
    const gpu = await freshGpu({ maxBindingBytes: 4096 });
    try {
      await compareSteps(gpu, [5000, 1029], { maxGradNorm: 5, weightDecay: 0.1, steps: 3, seed: 5 });
    } finally {
      gpu.destroy();
    }
  });

  it('adamwUpdate alone follows the torch formula for one tensor', async () => {
    const gpu = await testGpu();
    const rng = new Rng(6);
    const n = 4097;
    const [p, g, m, v] = [rng.randn(n), rng.randn(n), rng.randn(n, 0.1), rng.randn(n, 0.1).map((x) => x * x)];
    const tp = gpu.tensor([n], 'f32', p);
    const [tg, tm, tv] = [g, m, v].map((x) => gpu.tensor([n], 'f32', x));
    const h = { lr: 3e-3, beta1: 0.8, beta2: 0.95, eps: 1e-6, weightDecay: 0.2, step: 7 };
    adamwUpdate(gpu, tp, tg, tm, tv, h);
    const ref = [Float64Array.from(p)];
    const state = { step: 6, m: [Float64Array.from(m)], v: [Float64Array.from(v)] };
    adamwStepRef(ref, [g], state, h);
    expectClose(await tp.read(), ref[0], TOL, 'param');
    expectClose(await tm.read(), state.m[0], { atol: 1e-7, rtol: 1e-5 }, 'm');
    expectClose(await tv.read(), state.v[0], { atol: 1e-9, rtol: 1e-5 }, 'v');
    for (const t of [tp, tg, tm, tv]) t.dispose();
  });

  it('skips a step with a NaN or Inf gradient and reports it in the status buffer', async () => {
    const gpu = await testGpu();
    const rng = new Rng(7);
    const sizes = [10, 300];
    const p0 = sizes.map((n) => rng.randn(n));
    const params = p0.map((p) => gpu.tensor([p.length], 'f32', p));
    const grads = sizes.map((n) => gpu.tensor([n], 'f32', rng.randn(n)));
    const opt = new AdamW(gpu, params, { lr: 0.1, maxGradNorm: 1 });
    opt.step(grads);
    const after1 = await Promise.all(params.map((t) => t.read()));
    const state1 = await opt.state();
    expect(await opt.skipped()).toEqual({ last: false, total: 0 });
    for (const bad of [NaN, -Infinity]) {
      const g = rng.randn(300);
      g[17] = bad;
      grads[1].write(g);
      opt.step(grads);
      expect(await opt.skipped()).toMatchObject({ last: true });
      for (let i = 0; i < sizes.length; i++) expect(Array.from(await params[i].read())).toEqual(Array.from(after1[i]));
      const st = await opt.state();
      expect(Array.from(st.m[1])).toEqual(Array.from(state1.m[1]));
    }
    expect(await opt.skipped()).toEqual({ last: true, total: 2 });
    grads[1].write(rng.randn(300));
    opt.step(grads);
    expect(await opt.skipped()).toEqual({ last: false, total: 2 });
    expect(Array.from(await params[0].read())).not.toEqual(Array.from(after1[0]));
    expect(opt.stepCount).toBe(4);
    opt.dispose();
    for (const t of [...params, ...grads]) t.dispose();
  });

  it('minimizes an ill-conditioned quadratic', async () => {
    const gpu = await testGpu();
    const n = 12;
    const rng = new Rng(8);
    const a = Float64Array.from({ length: n }, (_, i) => 10 ** ((4 * i) / (n - 1) - 2)); // curvatures 0.01..100
    const c = rng.randn(n);
    const loss = (x: ArrayLike<number>) => a.reduce((s, ai, i) => s + 0.5 * ai * (x[i] - c[i]) ** 2, 0);
    const x = gpu.tensor([n], 'f32', new Float32Array(n));
    const g = gpu.tensor([n], 'f32');
    const opt = new AdamW(gpu, [x], { lr: 0.05, weightDecay: 0 });
    const start = loss(new Float32Array(n));
    let xs = await x.read();
    for (let s = 0; s < 300; s++) {
      g.write(xs.map((xi, i) => a[i] * (xi - c[i])));
      opt.step([g], cosineLr(s, { lr: 0.05, warmupSteps: 10, totalSteps: 300, minLrRatio: 0.01 }));
      xs = await x.read();
    }
    expect(loss(xs)).toBeLessThan(start * 1e-4);
    opt.dispose();
    x.dispose();
    g.dispose();
  });

  it('checkpoints: loadState resumes exactly where state() left off', async () => {
    const gpu = await testGpu();
    const rng = new Rng(9);
    const sizes = [5, 70];
    const p0 = sizes.map((n) => rng.randn(n));
    const gs = [0, 1, 2].map(() => sizes.map((n) => rng.randn(n)));
    const pa = p0.map((p) => gpu.tensor([p.length], 'f32', p));
    const grads = sizes.map((n) => gpu.tensor([n], 'f32'));
    const a = new AdamW(gpu, pa, { lr: 0.01, maxGradNorm: 1 });
    for (const g of gs.slice(0, 2)) {
      g.forEach((x, i) => grads[i].write(x));
      a.step(grads);
    }
    const saved = await a.state();
    expect(saved.step).toBe(2);
    const pb = await Promise.all(pa.map(async (t) => gpu.tensor(t.shape, 'f32', await t.read())));
    const b = new AdamW(gpu, pb, { lr: 0.01, maxGradNorm: 1 });
    b.loadState(saved);
    gs[2].forEach((x, i) => grads[i].write(x));
    a.step(grads);
    b.step(grads);
    for (let i = 0; i < sizes.length; i++) expect(Array.from(await pb[i].read())).toEqual(Array.from(await pa[i].read()));
    expect(b.stepCount).toBe(3);
    zeroGrads(gpu, grads);
    b.zeroGrad(grads);
    for (const t of grads) expect(Array.from(await t.read()).every((x) => x === 0)).toBe(true);
    a.dispose();
    b.dispose();
    for (const t of [...pa, ...pb, ...grads]) t.dispose();
  });

  it('validates arguments before any GPU work', async () => {
    const gpu = await testGpu();
    const p = gpu.tensor([4], 'f32');
    const h = gpu.tensor([4], 'f16');
    const q = gpu.tensor([5], 'f32');
    const m = gpu.tensor([4], 'f32');
    const hyper = { lr: 1, beta1: 0.9, beta2: 0.9, eps: 1e-8, weightDecay: 0, step: 1 };
    expect(() => adamwUpdate(gpu, p, q, m, m, hyper)).toThrowError(ShapeError);
    expect(() => adamwUpdate(gpu, p, h as Tensor, m, m, hyper)).toThrowError(/f32/);
    expect(() => adamwUpdate(gpu, p, p, m, m, { ...hyper, step: 0 })).toThrowError(/step/);
    expect(() => adamwUpdate(gpu, p, p, m, m, { ...hyper, maxGradNorm: 1 })).toThrowError(/norm/);
    expect(() => globalGradNorm(gpu, [])).toThrowError(ShapeError);
    expect(() => new AdamW(gpu, [h as Tensor], { lr: 1 })).toThrowError(ShapeError);
    const opt = new AdamW(gpu, [p], { lr: 1 });
    expect(() => opt.step([q])).toThrowError(/does not match/);
    expect(() => opt.step([])).toThrowError(ShapeError);
    opt.dispose();
    for (const t of [p, h, q, m]) t.dispose();
  });
});

describe('learning-rate schedules', () => {
  it('cosine with warmup hits its key points', () => {
    const o = { lr: 1e-3, warmupSteps: 10, totalSteps: 110, minLrRatio: 0.1 };
    const near = (x: number, y: number) => expect(x).toBeCloseTo(y, 12);
    near(cosineLr(0, o), 1e-4);
    near(cosineLr(4, o), 5e-4);
    near(cosineLr(9, o), 1e-3);
    near(cosineLr(10, o), 1e-3);
    near(cosineLr(60, o), (1e-3 + 1e-4) / 2);
    near(cosineLr(35, o), 1e-4 + 0.9e-3 * 0.5 * (1 + Math.cos(Math.PI / 4)));
    near(cosineLr(110, o), 1e-4);
    near(cosineLr(500, o), 1e-4);
    near(cosineLr(50, { lr: 2, warmupSteps: 0, totalSteps: 100 }), 1);
    for (let s = 10; s < 110; s++) expect(cosineLr(s + 1, o)).toBeLessThan(cosineLr(s, o));
  });

  it('constant with and without warmup', () => {
    expect(constantLr(0, { lr: 3 })).toBe(3);
    expect(constantLr(1000, { lr: 3 })).toBe(3);
    expect(constantLr(0, { lr: 3, warmupSteps: 3 })).toBe(1);
    expect(constantLr(1, { lr: 3, warmupSteps: 3 })).toBe(2);
    expect(constantLr(2, { lr: 3, warmupSteps: 3 })).toBe(3);
    expect(constantLr(3, { lr: 3, warmupSteps: 3 })).toBe(3);
  });
});

afterAll(async () => {
  await (await testGpu()).sync();
});
