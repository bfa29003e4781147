import { afterAll, describe, expect, it } from 'vitest';
import { ShapeError, add, roundToF16, type DType, type Gpu } from '../src/index.js';
import { rmsnorm, rmsnormBackward, type RmsNormPath } from '../src/kernels/rmsnorm.js';
import { rmsnormBackwardRef, rmsnormRef } from '../src/reference/rmsnorm.js';
import { Rng, checkDirectional, dot, expectClose, freshGpu, testGpu } from './helpers.js';

type F = 'f32' | 'f16';
// checkDirectional perturbs x in x's own precision: float64 arrays keep the reference check free of f32 rounding.
const f64 = (a: ArrayLike<number>) => Float64Array.from(a) as unknown as Float32Array;
const round = (dt: DType, a: Float32Array) => (dt === 'f16' ? roundToF16(a) : a);

/** Forward and backward of one shape against the float64 reference (inputs rounded as stored). */
async function checkCase(gpu: Gpu, rng: Rng, rows: number, h: number, xdt: F, wdt: F, eps = 1e-6, path?: RmsNormPath): Promise<void> {
  const x = round(xdt, rng.randn(rows * h));
  const w = round(wdt, rng.randn(h, 0.5).map((v) => v + 1));
  const dy = round(xdt, rng.randn(rows * h));
  const half = xdt === 'f16' || wdt === 'f16';
  const tol = half ? { atol: 3e-3, rtol: 3e-3 } : { atol: 2e-5, rtol: 2e-5 };
  const what = `rows=${rows} h=${h} x=${xdt} w=${wdt} ${gpu.variants.reduction} ${path ?? 'default path'}`;
  const tx = gpu.tensor([rows, h], xdt, x);
  const tw = gpu.tensor([h], wdt, w);
  const tdy = gpu.tensor([rows, h], xdt, dy);
  const { y, rstd } = rmsnorm(gpu, tx, tw, { eps, path });
  const { dx, dw } = rmsnormBackward(gpu, tdy, tx, tw, rstd, { path });
  const ref = rmsnormRef(x, w, h, eps);
  const bref = rmsnormBackwardRef(dy, x, w, h, eps);
  expect(y.dtype).toBe(xdt);
  expectClose(await y.read(), ref.y, tol, `y ${what}`);
  expectClose(await rstd.read(), ref.rstd, { atol: 0, rtol: 2e-6 }, `rstd ${what}`);
  expectClose(await dx.read(), bref.dx, tol, `dx ${what}`);
  // dw sums over rows: allow for the f32 accumulation of `rows` terms.
  expectClose(await dw!.read(), bref.dw, { atol: tol.atol * Math.sqrt(rows), rtol: tol.rtol }, `dw ${what}`);
  for (const t of [tx, tw, tdy, y, rstd, dx, dw!]) t.dispose();
}

const SHAPES: Array<[number, number]> = [
  [5, 1],
  [3, 3],
  [7, 17],
  [2, 33],
  [70, 130],
  [70, 128], // vec4 rows, more of them than a CPU adapter's grid has workgroups
  [2, 3584],
  [1, 513],
];

describe('rmsnorm', () => {
  it('matches the float64 reference over awkward shapes (f32, both reduction variants, both paths)', async () => {
    const gpus: Gpu[] = [await testGpu(), await freshGpu({ disableFeatures: ['subgroups'] })];
    expect(gpus[1].variants.reduction).toBe('workgroup');
    const rng = new Rng(11);
    for (const gpu of gpus) for (const [rows, h] of SHAPES) await checkCase(gpu, rng, rows, h, 'f32', 'f32');
    // The default is cpu-lanes on lavapipe: the workgroup kernel with subgroup reductions, as GPUs run it.
    for (const [rows, h] of SHAPES) await checkCase(gpus[0], rng, rows, h, 'f32', 'f32', 1e-6, 'workgroup');
    expect(() => rmsnorm(gpus[1], gpus[1].tensor([1, 4], 'f32'), gpus[1].tensor([4], 'f32'), { path: 'cpu-lanes' })).toThrowError(/needs subgroups/);
    gpus[1].destroy();
  });

  it('handles f16 activations and/or f16 weights with f32 statistics', async () => {
    const gpu = await testGpu();
    const rng = new Rng(12);
    for (const [xdt, wdt] of [['f16', 'f16'], ['f16', 'f32'], ['f32', 'f16']] as Array<[F, F]>) {
      for (const [rows, h] of [[3, 17], [4, 130], [2, 3584], [66, 64]]) {
        await checkCase(gpu, rng, rows, h, xdt, wdt);
        await checkCase(gpu, rng, rows, h, xdt, wdt, 1e-6, 'workgroup');
      }
    }
  });

  it('reads rows that do not start on a vec4 element by element', async () => {
    const gpu = await testGpu();
    const rng = new Rng(17);
    const [rows, h] = [9, 64];
    const x = rng.randn(rows * h + 1);
    const dy = rng.randn(rows * h + 1);
    const w = rng.randn(h, 0.5).map((v) => v + 1);
    // Element 1 on: whole rows of 64, but each starts 4 bytes past a vec4.
    const view = (a: Float32Array) => gpu.tensor([rows * h + 1], 'f32', a).rows(1, rows * h).reshape([rows, h]);
    const tw = gpu.tensor([h], 'f32', w);
    const { y, rstd } = rmsnorm(gpu, view(x), tw);
    const { dx } = rmsnormBackward(gpu, view(dy), view(x), tw, rstd);
    const ref = rmsnormRef(x.subarray(1), w, h, 1e-6);
    expectClose(await y.read(), ref.y, { atol: 2e-5, rtol: 2e-5 }, 'y of offset rows');
    expectClose(await dx.read(), rmsnormBackwardRef(dy.subarray(1), x.subarray(1), w, h, 1e-6).dx, { atol: 2e-5, rtol: 2e-5 }, 'dx of offset rows');
  });

  it('stays finite for rows of zeros and large values', async () => {
    const gpu = await testGpu();
    const h = 33;
    const x = new Float32Array(2 * h);
    for (let j = 0; j < h; j++) x[h + j] = 3e4 * (j % 2 ? 1 : -1);
    const w = new Float32Array(h).fill(1);
    const { y } = rmsnorm(gpu, gpu.tensor([2, h], 'f32', x), gpu.tensor([h], 'f32', w), { eps: 1e-5 });
    expectClose(await y.read(), rmsnormRef(x, w, h, 1e-5).y, { atol: 1e-6, rtol: 1e-5 });
  });

  it('runs in row windows when x exceeds one binding', async () => {
    // 4 KiB bindings: 40 rows of 33 f32 (132 B) need two windows, and the dw chunk of rows 16..31 spans both.
    const gpu = await freshGpu({ maxBindingBytes: 4096 });
    const rng = new Rng(13);
    await checkCase(gpu, rng, 40, 33, 'f32', 'f32');
    await checkCase(gpu, rng, 61, 37, 'f16', 'f32');
    gpu.destroy();
  });

  it('backward agrees with finite differences of the GPU forward', async () => {
    const gpu = await testGpu();
    const rng = new Rng(14);
    for (const [rows, h] of [[3, 17], [2, 130]]) {
      const x = rng.randn(rows * h);
      const w = rng.randn(h).map((v) => v + 1);
      const c = rng.randn(rows * h);
      const loss = async (xs: Float32Array, ws: Float32Array) => {
        const y = gpu.scope(() => rmsnorm(gpu, gpu.tensor([rows, h], 'f32', xs), gpu.tensor([h], 'f32', ws)).y);
        const l = dot(await y.read(), c);
        y.dispose();
        return l;
      };
      const tx = gpu.tensor([rows, h], 'f32', x);
      const tw = gpu.tensor([h], 'f32', w);
      const { rstd } = rmsnorm(gpu, tx, tw);
      const { dx, dw } = rmsnormBackward(gpu, gpu.tensor([rows, h], 'f32', c), tx, tw, rstd);
      await checkDirectional((xs) => loss(xs, w), x, await dx.read(), rng, { eps: 1e-2, what: `dx h=${h}` });
      await checkDirectional((ws) => loss(x, ws), w, await dw!.read(), rng, { eps: 1e-2, what: `dw h=${h}` });
    }
  });

  it('reference backward agrees with finite differences of the reference forward', async () => {
    const rng = new Rng(15);
    for (const [rows, h] of [[2, 1], [3, 17], [4, 33]]) {
      const x = f64(rng.randn(rows * h));
      const w = f64(rng.randn(h));
      const c = rng.randn(rows * h);
      const { dx, dw } = rmsnormBackwardRef(c, x, w, h);
      await checkDirectional((xs) => dot(rmsnormRef(xs, w, h).y, c), x, dx, rng, { eps: 1e-5, rtol: 1e-6, what: 'ref dx' });
      await checkDirectional((ws) => dot(rmsnormRef(x, ws, h).y, c), w, dw, rng, { eps: 1e-5, rtol: 1e-6, what: 'ref dw' });
    }
  });

  it('normalizes x + residual in one pass and returns the sum, as add then rmsnorm (f32 bit for bit; in windows too)', async () => {
    const gpus = [await testGpu(), await freshGpu({ maxBindingBytes: 4096 })];
    const rng = new Rng(16);
    for (const gpu of gpus) {
      // Rows of 3584 f32 do not fit the 4 KiB bindings.
      // [30, 36]: vec4 rows of 144 bytes, so windows start inside an aligned binding (skip > 0).
      const shapes = [[7, 17, 'f32'], [40, 33, 'f32'], [5, 130, 'f16'], [30, 36, 'f32'], ...(gpu === gpus[0] ? [[2, 3584, 'f32']] : [])] as Array<[number, number, F]>;
      for (const [rows, h, dt] of shapes) {
        const what = `rows=${rows} h=${h} ${dt} maxBinding=${gpu.maxBinding}`;
        const x = round(dt, rng.randn(rows * h));
        const r = round(dt, rng.randn(rows * h));
        const w = rng.randn(h, 0.5).map((v) => v + 1);
        const [tx, tr, tw] = [gpu.tensor([rows, h], dt, x), gpu.tensor([rows, h], dt, r), gpu.tensor([h], 'f32', w)];
        const fused = rmsnorm(gpu, tx, tw, { residual: tr });
        const s = add(gpu, tx, tr);
        const plain = rmsnorm(gpu, s, tw);
        expect(Array.from(await fused.sum!.read()), `sum ${what}`).toEqual(Array.from(await s.read()));
        // f16: the norm may see s before its rounding to f16 (lavapipe folds the round trip), so only f32 is exact.
        if (dt === 'f32') {
          expect(Array.from(await fused.y.read()), `y ${what}`).toEqual(Array.from(await plain.y.read()));
          expect(Array.from(await fused.rstd.read()), `rstd ${what}`).toEqual(Array.from(await plain.rstd.read()));
        } else {
          expectClose(await fused.rstd.read(), await plain.rstd.read(), { atol: 0, rtol: 1e-3 }, `rstd ${what}`);
        }
        const ref = rmsnormRef(round(dt, x.map((v, i) => v + r[i])), w, h);
        expectClose(await fused.y.read(), ref.y, dt === 'f16' ? { atol: 3e-3, rtol: 3e-3 } : { atol: 2e-5, rtol: 2e-5 }, `y vs float64 ${what}`);
        for (const t of [tx, tr, tw, fused.y, fused.rstd, fused.sum!, s, plain.y, plain.rstd]) t.dispose();
      }
    }
    gpus[1].destroy();
  });

  it('with a residual, has the backward of rmsnorm at the sum, for x and the residual alike (finite differences)', async () => {
    const gpu = await testGpu();
    const rng = new Rng(17);
    const [rows, h] = [3, 40];
    const [x, r, c, c2] = [rng.randn(rows * h), rng.randn(rows * h), rng.randn(rows * h), rng.randn(rows * h)];
    const w = rng.randn(h).map((v) => v + 1);
    const tw = gpu.tensor([h], 'f32', w);
    // L = c·y + c2·sum, a function of x and r through s = x + r.
    const loss = async (xs: Float32Array, rs: Float32Array) => {
      const out = rmsnorm(gpu, gpu.tensor([rows, h], 'f32', xs), tw, { residual: gpu.tensor([rows, h], 'f32', rs) });
      const l = dot(await out.y.read(), c) + dot(await out.sum!.read(), c2);
      [out.y, out.rstd, out.sum!].forEach((t) => t.dispose());
      return l;
    };
    const { sum, rstd } = rmsnorm(gpu, gpu.tensor([rows, h], 'f32', x), tw, { residual: gpu.tensor([rows, h], 'f32', r) });
    const { dx } = rmsnormBackward(gpu, gpu.tensor([rows, h], 'f32', c), sum!, tw, rstd, { dw: false });
    const grad = (await dx.read()).map((v, i) => v + c2[i]);
    await checkDirectional((xs) => loss(xs, r), x, grad, rng, { eps: 1e-2, what: 'dx' });
    await checkDirectional((rs) => loss(x, rs), r, grad, rng, { eps: 1e-2, what: 'dresidual' });
  });

  it('skips dw when asked, and rejects bad shapes and dtypes before GPU work', async () => {
    const gpu = await testGpu();
    const x = gpu.tensor([4, 8], 'f32');
    const w = gpu.tensor([8], 'f32');
    const { rstd } = rmsnorm(gpu, x, w);
    expect(rmsnormBackward(gpu, x, x, w, rstd, { dw: false }).dw).toBeUndefined();
    expect(() => rmsnorm(gpu, x, gpu.tensor([7], 'f32'))).toThrowError(ShapeError);
    expect(() => rmsnorm(gpu, gpu.tensor([4, 8], 'i32'), w)).toThrowError(/f32 or f16/);
    expect(() => rmsnorm(gpu, x, w, { out: x })).toThrowError(ShapeError);
    const r = gpu.tensor([4, 8], 'f32');
    expect(() => rmsnorm(gpu, x, w, { sum: r })).toThrowError(/residual, which is missing/);
    expect(() => rmsnorm(gpu, x, w, { residual: gpu.tensor([4, 7], 'f32') })).toThrowError(/residual must match x/);
    expect(() => rmsnorm(gpu, x, w, { residual: gpu.tensor([4, 8], 'f16') })).toThrowError(/residual must match x/);
    expect(() => rmsnorm(gpu, x, w, { residual: r, sum: x })).toThrowError(/sum must match x and alias none/);
    expect(() => rmsnorm(gpu, x, w, { residual: r, sum: r })).toThrowError(/sum must match x and alias none/);
    expect(() => rmsnormBackward(gpu, x, x, w, gpu.tensor([3], 'f32'))).toThrowError(/rstd/);
    await gpu.sync();
  });
});

afterAll(async () => {
  await (await testGpu()).sync();
});
