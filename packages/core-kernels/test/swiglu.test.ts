import { afterAll, describe, expect, it } from 'vitest';
import { ShapeError, roundToF16, type Gpu } from '../src/index.js';
import { swiglu, swigluBackward } from '../src/kernels/swiglu.js';
import { joinGateUp, splitGateUp, swigluBackwardRef, swigluRef } from '../src/reference/swiglu.js';
import { Rng, awkwardSizes, checkDirectional, dot, expectClose, freshGpu, testGpu } from './helpers.js';

type F = 'f32' | 'f16';
const f64 = (a: ArrayLike<number>) => Float64Array.from(a) as unknown as Float32Array;
const round = (dt: F, a: Float32Array) => (dt === 'f16' ? roundToF16(a) : a);
const tolOf = (dt: F) => (dt === 'f16' ? { atol: 2e-3, rtol: 2e-3 } : { atol: 1e-6, rtol: 1e-5 });

async function checkSeparate(gpu: Gpu, rng: Rng, n: number, dt: F): Promise<void> {
  const g = round(dt, rng.randn(n, 2));
  const u = round(dt, rng.randn(n));
  const dy = round(dt, rng.randn(n));
  const [tg, tu] = [gpu.tensor([n], dt, g), gpu.tensor([n], dt, u)];
  const y = swiglu(gpu, tg, tu);
  const { dgate, dup } = swigluBackward(gpu, gpu.tensor([n], dt, dy), tg, tu);
  const b = swigluBackwardRef(dy, g, u);
  expectClose(await y.read(), swigluRef(g, u), tolOf(dt), `y n=${n} ${dt}`);
  expectClose(await dgate.read(), b.dgate, tolOf(dt), `dgate n=${n} ${dt}`);
  expectClose(await dup!.read(), b.dup, tolOf(dt), `dup n=${n} ${dt}`);
}

async function checkFused(gpu: Gpu, rng: Rng, rows: number, inner: number, dt: F): Promise<void> {
  const gu = round(dt, rng.randn(rows * 2 * inner, 2));
  const dy = round(dt, rng.randn(rows * inner));
  const tgu = gpu.tensor([rows, 2 * inner], dt, gu);
  const y = swiglu(gpu, tgu);
  expect(y.shape).toEqual([rows, inner]);
  const { dgate, dup } = swigluBackward(gpu, gpu.tensor([rows, inner], dt, dy), tgu);
  expect(dup).toBeUndefined();
  const { gate, up } = splitGateUp(gu, inner);
  const b = swigluBackwardRef(dy, gate, up);
  expectClose(await y.read(), swigluRef(gate, up), tolOf(dt), `fused y [${rows},${inner}] ${dt}`);
  expectClose(await dgate.read(), joinGateUp(b.dgate, b.dup, inner), tolOf(dt), `fused dgate_up [${rows},${inner}] ${dt}`);
}

describe('swiglu', () => {
  it('matches the float64 reference for separate gate and up (f32, f16)', async () => {
    const gpu = await testGpu();
    const rng = new Rng(31);
    for (const dt of ['f32', 'f16'] as F[]) {
      for (const n of [...awkwardSizes(rng, 12, 3000), 4 * 18944]) await checkSeparate(gpu, rng, n, dt);
    }
  });

  it('matches the reference for a fused gate_up [rows, 2I]', async () => {
    const gpu = await testGpu();
    const rng = new Rng(32);
    for (const dt of ['f32', 'f16'] as F[]) {
      // The last two hold more items than a CPU adapter's grid has invocations (CPU_STRIDE_WORKGROUPS · 256), so an
      // invocation's row and column advance, and wrap, across its loop: as vec4s (I % 4 = 0), then element by element.
      for (const [rows, inner] of [[1, 1], [3, 3], [5, 17], [2, 130], [2, 18944], [25, 3000], [7, 2999]]) await checkFused(gpu, rng, rows, inner, dt);
    }
  });

  it('reads views that do not start on a vec4 element by element', async () => {
    const gpu = await testGpu();
    const rng = new Rng(23);
    for (const dt of ['f32', 'f16'] as F[]) {
      const n = 4096;
      const g = round(dt, rng.randn(n + 1, 2));
      const u = round(dt, rng.randn(n + 1));
      // Element 1 on: n is a multiple of 4, but the views' first elements sit 1 element past a vec4.
      const [tg, tu] = [gpu.tensor([n + 1], dt, g).rows(1, n), gpu.tensor([n + 1], dt, u).rows(1, n)];
      expectClose(await swiglu(gpu, tg, tu).read(), swigluRef(g.subarray(1), u.subarray(1)), tolOf(dt), `offset view ${dt}`);
      const gu = round(dt, rng.randn(3 * 2 * 8, 2));
      const rows = gpu.tensor([3, 16], dt, gu).rows(1, 2); // 16 elements in: aligned for vec4 items
      const { gate, up } = splitGateUp(gu.subarray(16), 8);
      expectClose(await swiglu(gpu, rows).read(), swigluRef(gate, up), tolOf(dt), `fused rows view ${dt}`);
    }
  });

  it('stays finite for large gate values', async () => {
    const gpu = await testGpu();
    const g = Float32Array.from([-1e4, -100, -88.8, -20, 0, 20, 100, 1e4]);
    const u = Float32Array.from([1, 2, -3, 4, 5, -6, 7, 8]);
    const dy = new Float32Array(8).fill(1);
    for (const dt of ['f32', 'f16'] as F[]) {
      // In f16, keep silu(g)·up below the f16 maximum (65504) so the reference is representable.
      const gs = dt === 'f16' ? roundToF16(g.map((v) => Math.max(-3000, Math.min(3000, v)))) : g;
      const [tg, tu] = [gpu.tensor([8], dt, gs), gpu.tensor([8], dt, u)];
      const y = await swiglu(gpu, tg, tu).read();
      const { dgate, dup } = swigluBackward(gpu, gpu.tensor([8], dt, dy), tg, tu);
      const b = swigluBackwardRef(dy, gs, u);
      expectClose(y, swigluRef(gs, u), tolOf(dt), `y ${dt}`);
      expectClose(await dgate.read(), b.dgate, tolOf(dt), `dgate ${dt}`);
      expectClose(await dup!.read(), b.dup, tolOf(dt), `dup ${dt}`);
    }
  });

  it('runs in windows when tensors exceed one binding', async () => {
    const gpu = await freshGpu({ maxBindingBytes: 4096 });
    const rng = new Rng(33);
    await checkSeparate(gpu, rng, 3001, 'f32');
    await checkSeparate(gpu, rng, 5003, 'f16');
    await checkFused(gpu, rng, 20, 37, 'f32');
    await checkFused(gpu, rng, 21, 37, 'f16');
    gpu.destroy();
  });

  it('backward agrees with finite differences of the GPU forward and of the reference', async () => {
    const gpu = await testGpu();
    const rng = new Rng(34);
    const n = 67;
    const g = rng.randn(n, 2);
    const u = rng.randn(n);
    const c = rng.randn(n);
    const loss = async (gs: Float32Array, us: Float32Array) =>
      dot(await swiglu(gpu, gpu.tensor([n], 'f32', gs), gpu.tensor([n], 'f32', us)).read(), c);
    const { dgate, dup } = swigluBackward(gpu, gpu.tensor([n], 'f32', c), gpu.tensor([n], 'f32', g), gpu.tensor([n], 'f32', u));
    await checkDirectional((gs) => loss(gs, u), g, await dgate.read(), rng, { what: 'gpu dgate' });
    await checkDirectional((us) => loss(g, us), u, await dup!.read(), rng, { what: 'gpu dup' });
    // The fused layout: one gradient for gate_up.
    const gu = Float32Array.from(joinGateUp(g, u, n));
    const fusedLoss = async (x: Float32Array) => dot(await swiglu(gpu, gpu.tensor([1, 2 * n], 'f32', x)).read(), c);
    const dgu = await swigluBackward(gpu, gpu.tensor([1, n], 'f32', c), gpu.tensor([1, 2 * n], 'f32', gu)).dgate.read();
    await checkDirectional(fusedLoss, gu, dgu, rng, { what: 'gpu dgate_up' });
    const ref = swigluBackwardRef(c, g, u);
    const opts = { eps: 1e-5, rtol: 1e-7 };
    await checkDirectional((gs) => dot(swigluRef(gs, u), c), f64(g), ref.dgate, rng, { ...opts, what: 'ref dgate' });
    await checkDirectional((us) => dot(swigluRef(g, us), c), f64(u), ref.dup, rng, { ...opts, what: 'ref dup' });
  });

  it('rejects bad shapes and dtypes before GPU work', async () => {
    const gpu = await testGpu();
    const a = gpu.tensor([4, 6], 'f32');
    expect(() => swiglu(gpu, a, gpu.tensor([4, 5], 'f32'))).toThrowError(ShapeError);
    expect(() => swiglu(gpu, a, gpu.tensor([4, 6], 'f16'))).toThrowError(/one dtype/);
    expect(() => swiglu(gpu, gpu.tensor([4, 5], 'f32'))).toThrowError(/fused/);
    expect(() => swiglu(gpu, gpu.tensor([4], 'i32'), gpu.tensor([4], 'i32'))).toThrowError(/f32 or f16/);
    expect(() => swiglu(gpu, a, a, a)).toThrowError(/alias/);
    expect(() => swiglu(gpu, a, undefined, gpu.tensor([4, 4], 'f32'))).toThrowError(ShapeError);
    expect(() => swigluBackward(gpu, gpu.tensor([4, 2], 'f32'), a)).toThrowError(/dy/);
    await gpu.sync();
  });
});

afterAll(async () => {
  await (await testGpu()).sync();
});
