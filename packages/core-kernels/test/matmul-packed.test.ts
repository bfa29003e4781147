import { describe, expect, it } from 'vitest';
import { ShapeError, roundToF16, type Gpu, type Tensor } from '../src/index.js';
import { isCpuAdapter, matmul, packMatmulB, type MatmulOptions } from '../src/kernels/matmul.js';
import { cpuPackedBytes, cpuPackedLayout } from '../src/kernels/matmul-cpu.js';
import { matmulRef } from '../src/reference/matmul.js';
import { Rng, expectClose, freshGpu, testGpu } from './helpers.js';

const TOL = { atol: 1e-4, rtol: 1e-4 };

/** The ops a product records (profiled), and its result. */
async function profiled(gpu: Gpu, run: () => Tensor): Promise<{ ops: Set<string>; got: Float32Array }> {
  // Profiling covers what is submitted while it is on: earlier work (the packing) goes first.
  await gpu.sync();
  gpu.profiling = true;
  const C = run();
  const got = (await C.read()) as Float32Array;
  const ops = new Set((await gpu.takeTimings()).map((t) => t.op));
  gpu.profiling = false;
  C.dispose();
  return { ops, got };
}

interface Case {
  M: number;
  N: number;
  K: number;
  transB: boolean;
  transA?: boolean;
  bType?: 'f32' | 'f16';
  why: string;
}

describe('matmul with B packed once (packMatmulB)', () => {
  it('gives the unpacked product bit for bit without packing B again: both A paths, any B layout, K over several dispatches', async () => {
    const gpu = await testGpu();
    if (!isCpuAdapter(gpu)) return;
    const rng = new Rng(31);
    const cases: Case[] = [
      { M: 37, N: 96, K: 64, transB: true, why: 'a weight x·Wᵀ: K in one chunk, both 64-column panels in one window' },
      { M: 37, N: 96, K: 100, transB: true, transA: true, why: 'A from storage reading the texture layout (K padded to 104 there, 128 here)' },
      { M: 70, N: 640, K: 1088, transB: true, why: 'five 128-column panels, 9 windows of K: two dispatches along K; 64-row tiles' },
      { M: 20, N: 200, K: 90, transB: false, why: 'B stored [K, N] (packed by rows), partial last panel' },
      { M: 20, N: 70, K: 45, transB: true, why: 'K not a multiple of 4 (packed element by element)' },
      { M: 33, N: 136, K: 300, transB: true, bType: 'f16', why: 'an f16 weight' },
    ];
    for (const c of cases) {
      let b = rng.randn(c.K * c.N);
      if (c.bType === 'f16') b = roundToF16(b);
      const a = rng.randn(c.M * c.K);
      const A = gpu.tensor(c.transA ? [c.K, c.M] : [c.M, c.K], 'f32', a);
      const B = gpu.tensor(c.transB ? [c.N, c.K] : [c.K, c.N], c.bType ?? 'f32', b);
      const packed = packMatmulB(gpu, B, { transB: c.transB });
      expect(packed, c.why).toBeDefined();
      expect(packed!.byteLength).toBe(cpuPackedBytes(c.K, c.N));
      const opts: MatmulOptions = { transA: c.transA, transB: c.transB };
      const plain = await profiled(gpu, () => matmul(gpu, A, B, opts));
      const fast = await profiled(gpu, () => matmul(gpu, A, B, { ...opts, packedB: packed }));
      expect([...plain.ops].some((op) => op.startsWith('matmul-cpu-tiled-')), c.why).toBe(true);
      expect([...fast.ops].filter((op) => /pack|b-copy|b-texture/.test(op)), c.why).toEqual([]);
      expect(fast.ops.has('matmul-cpu-tiled'), c.why).toBe(true);
      expect(Array.from(fast.got), c.why).toEqual(Array.from(plain.got));
      const want = matmulRef(a, b, { batch: 1, M: c.M, N: c.N, K: c.K, transA: c.transA, transB: c.transB, lda: c.transA ? c.M : c.K, ldb: c.transB ? c.K : c.N, ldc: c.N, strideA: 0, strideB: 0, strideC: 0 }, undefined, c.M * c.N);
      expectClose(fast.got, want, c.bType === 'f16' ? { atol: 1e-3, rtol: 1e-3 } : TOL, c.why);
      packed!.dispose();
      [A, B].forEach((t) => t.dispose());
    }
  }, 300_000);

  it('serves runs of its columns (a vocabulary chunk of an LM head) that start on a window group; other runs pack themselves', async () => {
    const gpu = await testGpu();
    if (!isCpuAdapter(gpu)) return;
    const rng = new Rng(32);
    const [M, N, K] = [40, 1100, 72];
    const L = cpuPackedLayout(K, N);
    const group = L.panel * L.perWindow;
    const a = rng.randn(M * K);
    const w = rng.randn(N * K);
    const A = gpu.tensor([M, K], 'f32', a);
    const W = gpu.tensor([N, K], 'f32', w);
    const packed = packMatmulB(gpu, W, { transB: true })!;
    // Storage-aligned views (64 rows of 72 f32 are a multiple of 256 bytes), taken from the start, a group in,
    // and off a group; the third ends where W does.
    for (const [v0, vc, served] of [
      [0, 600, true],
      [group, 600, true],
      [4 * group, N - 4 * group, true],
      [group / 2, 512, false],
    ] as const) {
      const view = W.rows(v0, vc);
      const { ops, got } = await profiled(gpu, () => matmul(gpu, A, view, { transB: true, packedB: packed }));
      expect(ops.has('matmul-cpu-tiled'), `rows ${v0}+${vc}`).toBe(true);
      expect(ops.has('matmul-cpu-tiled-pack'), `rows ${v0}+${vc}`).toBe(!served);
      const want = matmulRef(a, w.subarray(v0 * K, (v0 + vc) * K), { batch: 1, M, N: vc, K, transB: true, lda: K, ldb: K, ldc: vc, strideA: 0, strideB: 0, strideC: 0 }, undefined, M * vc);
      expectClose(got, want, TOL, `rows ${v0}+${vc}`);
    }
    packed.dispose();
    [A, W].forEach((t) => t.dispose());
  }, 300_000);

  it('follows its source only through refresh(), and refuses a disposed pack or another matrix', async () => {
    const gpu = await testGpu();
    if (!isCpuAdapter(gpu)) return;
    const rng = new Rng(33);
    const [M, N, K] = [9, 40, 24];
    const a = rng.randn(M * K);
    const A = gpu.tensor([M, K], 'f32', a);
    const W = gpu.tensor([N, K], 'f32', rng.randn(N * K));
    const packed = packMatmulB(gpu, W, { transB: true })!;
    const w2 = rng.randn(N * K);
    W.write(w2);
    packed.refresh();
    const p = { batch: 1, M, N, K, transB: true, lda: K, ldb: K, ldc: N, strideA: 0, strideB: 0, strideC: 0 };
    expectClose(await matmul(gpu, A, W, { transB: true, packedB: packed }).read(), matmulRef(a, w2, p, undefined, M * N), TOL, 'after refresh');
    const other = gpu.tensor([N, K], 'f32', rng.randn(N * K));
    expect(() => matmul(gpu, A, other, { transB: true, packedB: packed })).toThrow(/packedB was packed from another matrix/);
    expect(() => matmul(gpu, A, W.reshape([K, N]), { packedB: packed })).toThrow(ShapeError);
    expect(() => matmul(gpu, A.reshape([M * 2, K / 2]), W.reshape([N * 2, K / 2]), { transB: true, packedB: packed })).toThrow(/holds K=24/);
    expect(() => packMatmulB(gpu, W.reshape([1, N, K]))).toThrow(/takes a matrix/);
    packed.dispose();
    expect(packed.isDisposed).toBe(true);
    expect(() => matmul(gpu, A, W, { transB: true, packedB: packed })).toThrow(/packedB was disposed/);
    expect(() => packed.refresh()).toThrow(/after dispose/);
    [A, W, other].forEach((t) => t.dispose());
  });

  it('packs a B larger than one storage binding, binding only the span each window reads (maxBinding 1 MiB)', async () => {
    const gpu = await freshGpu({ maxBindingBytes: 1 << 20 });
    try {
      if (!isCpuAdapter(gpu)) return;
      const rng = new Rng(34);
      // 2.2 MiB of f32 weight; products over 512-row runs of it (0.56 MiB each) fit a binding.
      const [M, N, K] = [40, 2048, 288];
      const a = rng.randn(M * K);
      const w = rng.randn(N * K);
      const A = gpu.tensor([M, K], 'f32', a);
      const W = gpu.tensor([N, K], 'f32', w);
      const packed = packMatmulB(gpu, W, { transB: true })!;
      for (const v0 of [0, 512, 1536]) {
        const { ops, got } = await profiled(gpu, () => matmul(gpu, A, W.rows(v0, 512), { transB: true, packedB: packed }));
        expect(ops.has('matmul-cpu-tiled'), `rows ${v0}`).toBe(true);
        expect(ops.has('matmul-cpu-tiled-pack'), `rows ${v0}`).toBe(false);
        const want = matmulRef(a, w.subarray(v0 * K, (v0 + 512) * K), { batch: 1, M, N: 512, K, transB: true, lda: K, ldb: K, ldc: 512, strideA: 0, strideB: 0, strideC: 0 }, undefined, M * 512);
        expectClose(got, want, TOL, `rows ${v0}`);
      }
      packed.dispose();
    } finally {
      gpu.destroy();
    }
  }, 300_000);
});
