import { afterAll, describe, expect, it } from 'vitest';
import { ShapeError, roundToF16, type Gpu } from '../src/index.js';
import { embedding, embeddingBackward, type EmbeddingPath } from '../src/kernels/embedding.js';
import { embeddingBackwardRef, embeddingRef } from '../src/reference/embedding.js';
import { Rng, checkDirectional, dot, expectClose, freshGpu, testGpu } from './helpers.js';

type F = 'f32' | 'f16';
const f64 = (a: ArrayLike<number>) => Float64Array.from(a) as unknown as Float32Array;
const round = (dt: F, a: Float32Array) => (dt === 'f16' ? roundToF16(a) : a);
const exact = { atol: 0, rtol: 0 };

function randomIds(rng: Rng, n: number, vocab: number): Int32Array {
  return Int32Array.from({ length: n }, () => rng.int(0, vocab - 1));
}

/** Forward (host ids and GPU ids) and backward against the reference. */
async function checkCase(gpu: Gpu, rng: Rng, n: number, vocab: number, h: number, tdt: F, ddt: F, path?: EmbeddingPath): Promise<void> {
  const what = `N=${n} V=${vocab} H=${h} table=${tdt} dy=${ddt} ${path ?? 'default path'}`;
  const ids = randomIds(rng, n, vocab);
  const table = round(tdt, rng.randn(vocab * h));
  const dy = round(ddt, rng.randn(n * h));
  const tt = gpu.tensor([vocab, h], tdt, table);
  const want = embeddingRef(ids, table, h);
  expectClose(await embedding(gpu, ids, tt, { path }).read(), want, exact, `y host ids ${what}`);
  const tid = gpu.tensor([n], 'i32', ids);
  expectClose(await embedding(gpu, tid, tt, { path }).read(), want, exact, `y gpu ids ${what}`);
  // Sums of up to N terms in f32, in token order.
  const tdy = gpu.tensor([n, h], ddt, dy);
  const dT = await embeddingBackward(gpu, tid, tdy, vocab, { path }).read();
  expectClose(dT, embeddingBackwardRef(ids, dy, vocab, h), { atol: 1e-5, rtol: 1e-5 }, `dTable ${what}`);
  // Host ids are linked on the host; the chains, and so the sums, are the GPU linking's.
  expectClose(await embeddingBackward(gpu, ids, tdy, vocab, { path }).read(), dT, exact, `dTable host ids ${what}`);
  tt.dispose();
  tid.dispose();
}

describe('embedding', () => {
  it('gathers rows and scatter-adds gradients over awkward shapes (f32, f16)', async () => {
    const gpu = await testGpu();
    const rng = new Rng(41);
    // Both paths: 'rows' is lavapipe's default; [300, 9, 132] and [70, 500, 64] take vec4 rows, and more tokens
    // than a CPU adapter's grid has workgroups.
    for (const path of ['rows', 'elements'] as const) {
      for (const [n, vocab, h] of [[1, 1, 1], [5, 3, 3], [33, 50, 17], [7, 20, 33], [300, 9, 130], [300, 9, 132], [70, 500, 64], [3, 40, 3584]]) {
        await checkCase(gpu, rng, n, vocab, h, 'f32', 'f32', path);
      }
      await checkCase(gpu, rng, 17, 30, 33, 'f16', 'f32', path);
      await checkCase(gpu, rng, 260, 5, 20, 'f32', 'f16', path);
      await checkCase(gpu, rng, 90, 7, 36, 'f16', 'f16', path);
    }
  });

  it('sums repeated ids deterministically, in any multiplicity', async () => {
    // 600 tokens: one id repeated 400 times across several tiles of 256, the rest spread over a few ids.
    const gpu = await testGpu();
    const rng = new Rng(42);
    const [n, vocab, h] = [600, 12, 9];
    const ids = Int32Array.from({ length: n }, (_, i) => (i % 3 === 2 ? rng.int(0, vocab - 1) : 7));
    const dy = rng.randn(n * h);
    const tid = gpu.tensor([2, n / 2], 'i32', ids);
    const tdy = gpu.tensor([2, n / 2, h], 'f32', dy);
    const a = await embeddingBackward(gpu, tid, tdy, vocab).read();
    const b = await embeddingBackward(gpu, tid, tdy, vocab).read();
    expectClose(a, embeddingBackwardRef(ids, dy, vocab, h), { atol: 2e-5, rtol: 1e-5 });
    expect(Array.from(b)).toEqual(Array.from(a));
    // Both paths walk each id's chain in token order: the same sums, bit for bit.
    expect(Array.from(await embeddingBackward(gpu, tid, tdy, vocab, { path: 'elements' }).read())).toEqual(Array.from(a));
    // Linked on the host (host ids), as a plain array too.
    expect(Array.from(await embeddingBackward(gpu, ids, tdy, vocab).read())).toEqual(Array.from(a));
    expect(Array.from(await embeddingBackward(gpu, Array.from(ids), tdy, vocab, { path: 'elements' }).read())).toEqual(Array.from(a));
    // Rows of ids that never occur are zero.
    const used = new Set(ids);
    for (let v = 0; v < vocab; v++) if (!used.has(v)) expect(Array.from(a.slice(v * h, (v + 1) * h))).toEqual(new Array(h).fill(0));
  });

  it('scatters rows of distinct ids without linking them (distinctIds), and refuses repeated host ids', async () => {
    const gpu = await testGpu();
    const rng = new Rng(44);
    // 700 distinct rows out of 1000 (the policy puts selected rows back into a batch), over several 256-id tiles.
    const [n, vocab] = [700, 1000];
    const perm = Int32Array.from({ length: vocab }, (_, i) => i);
    for (let i = vocab - 1; i > 0; i--) {
      const j = rng.int(0, i);
      [perm[i], perm[j]] = [perm[j], perm[i]];
    }
    const ids = perm.slice(0, n);
    const tid = gpu.tensor([n], 'i32', ids);
    for (const path of ['rows', 'elements'] as const) {
      for (const h of [36, 17]) {
        const dy = rng.randn(n * h);
        const tdy = gpu.tensor([n, h], 'f32', dy);
        const want = embeddingBackwardRef(ids, dy, vocab, h);
        const gpuIds = await embeddingBackward(gpu, tid, tdy, vocab, { path, distinctIds: true }).read();
        expectClose(gpuIds, want, exact, `distinct GPU ids H=${h} ${path}`);
        expectClose(await embeddingBackward(gpu, ids, tdy, vocab, { path, distinctIds: true }).read(), want, exact, `distinct host ids H=${h} ${path}`);
        const prior = rng.randn(vocab * h);
        const acc = gpu.tensor([vocab, h], 'f32', prior);
        embeddingBackward(gpu, tid, tdy, vocab, { path, distinctIds: true, accumulate: acc });
        expectClose(await acc.read(), want.map((v, i) => v + prior[i]), { atol: 1e-6, rtol: 1e-6 }, `distinct accumulate H=${h} ${path}`);
        acc.dispose();
        tdy.dispose();
      }
    }
    tid.dispose();
    const dy = gpu.tensor([3, 4], 'f32');
    expect(() => embeddingBackward(gpu, [2, 5, 2], dy, 8, { distinctIds: true })).toThrowError(/id 2 occurs again at position 2/);
    dy.dispose();
  });

  it('accumulates into an existing gradient', async () => {
    const gpu = await testGpu();
    const rng = new Rng(43);
    const [n, vocab, h] = [20, 6, 5];
    const ids = randomIds(rng, n, vocab);
    const dy = rng.randn(n * h);
    const prior = rng.randn(vocab * h);
    const acc = gpu.tensor([vocab, h], 'f32', prior);
    expect(embeddingBackward(gpu, ids, gpu.tensor([n, h], 'f32', dy), vocab, { accumulate: acc })).toBe(acc);
    const want = embeddingBackwardRef(ids, dy, vocab, h).map((v, i) => v + prior[i]);
    expectClose(await acc.read(), want, { atol: 1e-5, rtol: 1e-5 });
  });

  it('validates host ids and clamps GPU ids', async () => {
    const gpu = await testGpu();
    const table = Float32Array.from({ length: 4 * 3 }, (_, i) => i);
    const tt = gpu.tensor([4, 3], 'f32', table);
    expect(() => embedding(gpu, [0, 4], tt)).toThrowError(/id 4 at position 1/);
    expect(() => embedding(gpu, [-1], tt)).toThrowError(ShapeError);
    expect(() => embedding(gpu, [1.5], tt)).toThrowError(ShapeError);
    expect(() => embeddingBackward(gpu, [9], gpu.tensor([1, 3], 'f32'), 4)).toThrowError(ShapeError);
    const y = await embedding(gpu, gpu.tensor([3], 'i32', [-3, 2, 99]), tt).read();
    expectClose(y, embeddingRef([0, 2, 3], table, 3), exact);
  });

  it('binds tables, outputs and gradients in windows when they exceed one binding', async () => {
    const gpu = await freshGpu({ maxBindingBytes: 4096 });
    const rng = new Rng(44);
    // Table 200x20 f32 = 16 KB (4+ windows), y 60x20 f32 = 4.8 KB (2 windows).
    const [n, vocab, h] = [60, 200, 20];
    const ids = randomIds(rng, n, vocab);
    const table = rng.randn(vocab * h);
    expectClose(await embedding(gpu, ids, gpu.tensor([vocab, h], 'f32', table)).read(), embeddingRef(ids, table, h), exact, 'f32 windows');
    const t16 = roundToF16(rng.randn(150 * 33));
    const ids16 = randomIds(rng, 50, 150);
    expectClose(await embedding(gpu, ids16, gpu.tensor([150, 33], 'f16', t16)).read(), embeddingRef(ids16, t16, 33), exact, 'f16 windows');
    // dy (40x20 f32) fits one binding; dTable 200x20 is windowed.
    const bIds = ids.slice(0, 40);
    bIds[5] = bIds[6] = bIds[30] = 199;
    const dy = rng.randn(40 * h);
    for (const path of ['rows', 'elements'] as const) {
      const dT = await embeddingBackward(gpu, bIds, gpu.tensor([40, h], 'f32', dy), vocab, { path }).read();
      expectClose(dT, embeddingBackwardRef(bIds, dy, vocab, h), { atol: 1e-5, rtol: 1e-5 }, `dTable windows ${path}`);
      expectClose(await embedding(gpu, ids, gpu.tensor([vocab, h], 'f32', table), { path }).read(), embeddingRef(ids, table, h), exact, `f32 windows ${path}`);
    }
    gpu.destroy();
  });

  it('backward sums a dy past one binding in runs of tokens: repeated ids across runs, GPU ids, distinct ids, accumulate', async () => {
    // dy 300x20 f32 = 24 KB against an 8 KB binding: runs of 64 tokens (5,120 bytes), 5 runs, the last of 44.
    const gpu = await freshGpu({ maxBindingBytes: 8192 });
    try {
      const rng = new Rng(46);
      const [n, vocab, h] = [300, 50, 20];
      const ids = randomIds(rng, n, vocab);
      ids[3] = ids[70] = ids[150] = ids[299] = 7; // one id in four runs
      const dy = rng.randn(n * h);
      const want = embeddingBackwardRef(ids, dy, vocab, h);
      const dyT = gpu.tensor([n, h], 'f32', dy);
      expect(dyT.byteLength).toBeGreaterThan(gpu.maxBinding);
      for (const path of ['rows', 'elements'] as const) {
        expectClose(await embeddingBackward(gpu, ids, dyT, vocab, { path }).read(), want, { atol: 1e-5, rtol: 1e-5 }, `host ids ${path}`);
        const gpuIds = gpu.tensor([n], 'i32', ids);
        expectClose(await embeddingBackward(gpu, gpuIds, dyT, vocab, { path }).read(), want, { atol: 1e-5, rtol: 1e-5 }, `GPU ids ${path}`);
      }
      const prior = rng.randn(vocab * h);
      const acc = gpu.tensor([vocab, h], 'f32', prior);
      const got = embeddingBackward(gpu, ids, dyT, vocab, { accumulate: acc });
      expect(got).toBe(acc);
      expectClose(await got.read(), want.map((v, i) => v + prior[i]), { atol: 1e-5, rtol: 1e-5 }, 'accumulate');
      // Distinct ids: a scatter of rows (the policy's selected-token gradient), exact.
      const distinct = Array.from({ length: n }, (_, i) => (i * 7) % n);
      expectClose(await embeddingBackward(gpu, distinct, dyT, n, { distinctIds: true }).read(), embeddingBackwardRef(distinct, dy, n, h), exact, 'distinct');
      // A row so wide that 64 of them pass the binding is refused, naming the op.
      expect(() => embeddingBackward(gpu, [0, 1], gpu.tensor([2, 2048], 'f32'), 4)).toThrowError(/64 rows of dy .* do not fit one binding.*op=embeddingBackward/);
    } finally {
      gpu.destroy();
    }
  });

  it('backward agrees with finite differences of the GPU forward and of the reference', async () => {
    const gpu = await testGpu();
    const rng = new Rng(45);
    const [n, vocab, h] = [13, 6, 7];
    const ids = randomIds(rng, n, vocab);
    const table = rng.randn(vocab * h);
    const c = rng.randn(n * h);
    const loss = async (t: Float32Array) => dot(await embedding(gpu, ids, gpu.tensor([vocab, h], 'f32', t)).read(), c);
    const dT = await embeddingBackward(gpu, ids, gpu.tensor([n, h], 'f32', c), vocab).read();
    await checkDirectional(loss, table, dT, rng, { what: 'gpu dTable' });
    const ref = embeddingBackwardRef(ids, c, vocab, h);
    await checkDirectional((t) => dot(embeddingRef(ids, t, h), c), f64(table), ref, rng, { eps: 1e-5, rtol: 1e-8, what: 'ref dTable' });
  });

  it('rejects bad shapes and dtypes before GPU work', async () => {
    const gpu = await testGpu();
    const tt = gpu.tensor([4, 3], 'f32');
    expect(() => embedding(gpu, gpu.tensor([2], 'f32'), tt)).toThrowError(/i32/);
    expect(() => embedding(gpu, [0], gpu.tensor([12], 'f32'))).toThrowError(ShapeError);
    expect(() => embedding(gpu, [0], gpu.tensor([4, 3], 'i32'))).toThrowError(ShapeError);
    expect(() => embedding(gpu, [0, 1], tt, { out: gpu.tensor([2, 4], 'f32') })).toThrowError(ShapeError);
    expect(() => embeddingBackward(gpu, [0, 1], gpu.tensor([3, 3], 'f32'), 4)).toThrowError(/dy/);
    expect(() => embeddingBackward(gpu, [0], gpu.tensor([1, 3], 'f32'), 4, { accumulate: gpu.tensor([4, 2], 'f32') })).toThrowError(ShapeError);
    await gpu.sync();
  });
});

afterAll(async () => {
  await (await testGpu()).sync();
});
