import { describe, expect, it } from 'vitest';
import { ShapeError, chooseVariants, roundToF16, type Gpu, type GpuFeatures, type Tensor } from '../src/index.js';
import { GEMV_MAX_M, describeMatmulPath, isCpuAdapter, matmul, matmulBackward, selectMatmulPath, type MatmulOptions } from '../src/kernels/matmul.js';
import { sgmSplitK, tiledSplitK } from '../src/kernels/matmul-splitk.js';
import { matmulBackwardRef, matmulRef, type MatmulRefProblem } from '../src/reference/matmul.js';
import { CPU_GEMV_MAX_M } from '../src/kernels/gemv-cpu.js';
import { A_TEXTURE_MAX_BYTES, B_TEXTURE_MAX_BYTES, cpuATexture, cpuBCopies, cpuCVec4, cpuPackVariant, tileRows, type CpuPackVariant } from '../src/kernels/matmul-cpu.js';
import { readTicketCounter, shaderThreads, ticketWorkgroups } from '../src/kernels/tickets.js';
import { Rng, checkDirectional, dot, expectClose, freshGpu, testGpu } from './helpers.js';

const TOL = { atol: 1e-4, rtol: 1e-4 };

/** Problem of the shape-inferred case: A [batchA?, M, K] (or K, M), B [batchB?, K, N] (or N, K). */
function problem(M: number, N: number, K: number, o: { tA?: boolean; tB?: boolean; batch?: number; aB?: boolean; bB?: boolean } = {}): MatmulRefProblem {
  const batch = o.batch ?? 1;
  return {
    batch,
    M,
    N,
    K,
    transA: o.tA,
    transB: o.tB,
    lda: o.tA ? M : K,
    ldb: o.tB ? K : N,
    ldc: N,
    strideA: o.aB ? M * K : 0,
    strideB: o.bB ? K * N : 0,
    strideC: M * N,
  };
}

function shapeOf(rows: number, cols: number, batched: boolean, batch: number): number[] {
  return batched && batch > 1 ? [batch, rows, cols] : [rows, cols];
}

async function runCase(gpu: Gpu, rng: Rng, p: MatmulRefProblem, o: { aType?: 'f32' | 'f16'; bType?: 'f32' | 'f16'; path?: MatmulOptions['path'] } = {}) {
  const aShape = shapeOf(p.transA ? p.K : p.M, p.transA ? p.M : p.K, p.strideA > 0, p.batch);
  const bShape = shapeOf(p.transB ? p.N : p.K, p.transB ? p.K : p.N, p.strideB > 0, p.batch);
  let a = rng.randn(aShape.reduce((x, y) => x * y, 1));
  let b = rng.randn(bShape.reduce((x, y) => x * y, 1));
  if (o.aType === 'f16') a = roundToF16(a);
  if (o.bType === 'f16') b = roundToF16(b);
  const A = gpu.tensor(aShape, o.aType ?? 'f32', a);
  const B = gpu.tensor(bShape, o.bType ?? 'f32', b);
  const C = matmul(gpu, A, B, { transA: p.transA, transB: p.transB, path: o.path });
  expect(C.shape.slice(-2)).toEqual([p.M, p.N]);
  const got = await C.read();
  const want = matmulRef(a, b, p, undefined, p.batch * p.M * p.N);
  const tol = o.aType === 'f16' || o.bType === 'f16' ? { atol: 1e-3, rtol: 1e-3 } : TOL;
  expectClose(got, want, tol, `matmul ${JSON.stringify(p)}`);
  [A, B, C].forEach((t) => t.dispose());
}

/**
 * alpha, beta and bias on strided, batched sub-matrices at offsets 3, 4, 5 (bias at 2): the whole of C is compared,
 * so elements between the addressed rows and matrices must come back untouched.
 */
async function runStridedEpilogue(
  gpu: Gpu,
  rng: Rng,
  p: MatmulRefProblem,
  o: { cType: 'f32' | 'f16'; path: MatmulOptions['path']; offsetA?: number; offsetC?: number; splitK?: number },
) {
  const { M, N, K, lda, ldb, ldc } = p;
  const f16 = o.cType === 'f16';
  const offsetA = o.offsetA ?? 3;
  const offsetC = o.offsetC ?? 5;
  const a = rng.randn(offsetA + (p.batch - 1) * p.strideA + (p.transA ? K : M) * lda);
  const b = rng.randn(4 + (p.batch - 1) * p.strideB + (p.transB ? N : K) * ldb);
  const c0 = rng.randn(offsetC + p.batch * p.strideC);
  const bias = rng.randn(N + 2);
  const A = gpu.tensor([1, a.length], 'f32', a);
  const B = gpu.tensor([1, b.length], 'f32', b);
  const C = gpu.tensor([1, c0.length], o.cType, f16 ? roundToF16(c0) : c0);
  const Bias = gpu.tensor([N + 2], 'f32', bias);
  matmul(gpu, A, B, {
    out: C, bias: Bias, batch: p.batch, m: M, n: N, k: K, lda, ldb, ldc, transA: p.transA, transB: p.transB,
    strideA: p.strideA, strideB: p.strideB, strideC: p.strideC, offsetA, offsetB: 4, offsetC, offsetBias: 2,
    alpha: p.alpha, beta: p.beta, path: o.path, splitK: o.splitK,
  });
  const want = matmulRef(a, b, { ...p, offsetA, offsetB: 4, offsetC, offsetBias: 2, bias }, f16 ? roundToF16(c0) : c0);
  const tol = f16 ? { atol: 1e-2, rtol: 2e-3 } : TOL;
  expectClose(await C.read(), f16 ? roundToF16(want) : want, tol, `${o.path}${o.splitK ? ` split ${o.splitK}` : ''} epilogue ${JSON.stringify(p)}`);
  [A, B, C, Bias].forEach((t) => t.dispose());
}

describe('matmul forward', () => {
  it('matches the reference over awkward shapes and all transposes (on the path each picks)', async () => {
    const gpu = await testGpu();
    const rng = new Rng(1);
    const sizes = [1, 3, 17, 33, 65, 127];
    for (const tA of [false, true]) {
      for (const tB of [false, true]) {
        for (let t = 0; t < 4; t++) {
          const M = t === 0 ? rng.int(1, GEMV_MAX_M) : sizes[rng.int(0, sizes.length - 1)];
          const N = sizes[rng.int(0, sizes.length - 1)];
          const K = sizes[rng.int(0, sizes.length - 1)];
          await runCase(gpu, rng, problem(M, N, K, { tA, tB }));
        }
      }
    }
  });

  it('forcing the tiled kernel on GEMV shapes gives the same answer', async () => {
    const gpu = await testGpu();
    const rng = new Rng(2);
    for (const tB of [false, true]) await runCase(gpu, rng, problem(2, 33, 70, { tB }), { path: 'tiled' });
  });

  it('batches, with either operand broadcast (stride 0)', async () => {
    const gpu = await testGpu();
    const rng = new Rng(3);
    await runCase(gpu, rng, problem(17, 9, 33, { batch: 3, aB: true, bB: false, tB: true }));
    await runCase(gpu, rng, problem(5, 31, 7, { batch: 2, aB: false, bB: true, tA: true }));
    await runCase(gpu, rng, problem(65, 3, 16, { batch: 2, aB: true, bB: true }));
    await runCase(gpu, rng, problem(1, 40, 129, { batch: 3, aB: true, bB: true, tB: true }));
  });

  it('takes f16 inputs (f16 weights with f32 activations, and f16 x f16) with f32 accumulation', async () => {
    const gpu = await testGpu();
    const rng = new Rng(4);
    await runCase(gpu, rng, problem(33, 17, 65, { tB: true }), { bType: 'f16' });
    await runCase(gpu, rng, problem(3, 65, 100, { tB: true }), { bType: 'f16' });
    await runCase(gpu, rng, problem(20, 12, 31, { tA: true }), { aType: 'f16', bType: 'f16' });
    await runCase(gpu, rng, problem(1, 33, 64), { aType: 'f16', bType: 'f16' });
  });

  it('writes f16 output', async () => {
    const gpu = await testGpu();
    const rng = new Rng(5);
    const a = rng.randn(9 * 20);
    const b = roundToF16(rng.randn(20 * 11));
    const A = gpu.tensor([9, 20], 'f32', a);
    const B = gpu.tensor([20, 11], 'f16', b);
    const C = matmul(gpu, A, B, { outDType: 'f16' });
    expect(C.dtype).toBe('f16');
    const want = roundToF16(matmulRef(a, b, problem(9, 11, 20), undefined, 99));
    expectClose(await C.read(), want, { atol: 2e-3, rtol: 2e-3 }, 'f16 out');
  });

  it('fuses alpha, beta and bias, and addresses strided sub-matrices with offsets and leading dimensions', async () => {
    const gpu = await testGpu();
    const rng = new Rng(6);
    for (const [M, N, K, biasType] of [
      [19, 13, 21, 'f32'],
      [2, 70, 33, 'f16'],
    ] as const) {
      // Sub-matrices of larger buffers: A rows of length lda with an offset, C keeps its untouched elements.
      const lda = K + 5;
      const ldb = N + 3;
      const ldc = N + 2;
      const p: MatmulRefProblem = {
        batch: 2, M, N, K, lda, ldb, ldc, strideA: M * lda + 7, strideB: 0, strideC: M * ldc + 1,
        offsetA: 3, offsetB: 4, offsetC: 5, alpha: 0.5, beta: -1.5, offsetBias: 2,
      };
      const a = rng.randn(3 + 2 * (M * lda + 7));
      const b = rng.randn(4 + K * ldb);
      const c0 = rng.randn(5 + 2 * (M * ldc + 1));
      const bias = roundToF16(rng.randn(N + 2));
      const A = gpu.tensor([a.length], 'f32', a).reshape([1, a.length]);
      const B = gpu.tensor([1, b.length], 'f32', b);
      const C = gpu.tensor([1, c0.length], 'f32', c0);
      const Bias = gpu.tensor([N + 2], biasType, bias);
      matmul(gpu, A, B, {
        out: C, bias: Bias, batch: 2, m: M, n: N, k: K, lda, ldb, ldc, strideA: p.strideA, strideB: 0, strideC: p.strideC,
        offsetA: 3, offsetB: 4, offsetC: 5, offsetBias: 2, alpha: 0.5, beta: -1.5,
      });
      const want = matmulRef(a, b, { ...p, bias }, c0);
      expectClose(await C.read(), want, TOL, `strided ${M}x${N}x${K}`);
      [A, B, C, Bias].forEach((t) => t.dispose());
    }
  });

  it('does not read out when beta is 0 (stale NaNs do not leak in)', async () => {
    const gpu = await testGpu();
    const A = gpu.tensor([2, 2], 'f32', [1, 2, 3, 4]);
    const C = gpu.tensor([2, 2], 'f32', [NaN, NaN, NaN, NaN]);
    matmul(gpu, A, A, { out: C });
    expect(Array.from(await C.read())).toEqual([7, 10, 15, 22]);
  });

  it('GEMV over a vocabulary-sized N spreads its grid over two dimensions (151936 columns, M = 1)', async () => {
    const gpu = await testGpu();
    const rng = new Rng(41);
    const [n, k] = [151936, 8];
    const a = rng.randn(k);
    const b = rng.randn(n * k);
    const ta = gpu.tensor([1, k], 'f32', a);
    const tb = gpu.tensor([n, k], 'f32', b);
    expect(selectMatmulPath(gpu, 'f32', 'f32', 1, n, k)).toBe('gemv');
    const y = await matmul(gpu, ta, tb, { transB: true }).read();
    const want = new Float64Array(n);
    for (let j = 0; j < n; j++) for (let i = 0; i < k; i++) want[j] += a[i] * b[j * k + i];
    expectClose(y, want, { atol: 1e-5, rtol: 1e-5 }, 'lm-head gemv');
    ta.dispose();
    tb.dispose();
  });

  it('rejects bad shapes and dtypes before any GPU work', async () => {
    const gpu = await testGpu();
    const a = gpu.tensor([4, 5], 'f32');
    const b = gpu.tensor([6, 3], 'f32');
    const i = gpu.tensor([5, 3], 'i32');
    const ok = gpu.tensor([5, 3], 'f32');
    expect(() => matmul(gpu, a, b)).toThrowError(/inner dimensions differ/);
    expect(() => matmul(gpu, a, i)).toThrowError(ShapeError);
    expect(() => matmul(gpu, a, ok, { beta: 1 })).toThrowError(/beta != 0 needs out/);
    expect(() => matmul(gpu, a, ok, { bias: gpu.tensor([2], 'f32') })).toThrowError(/bias/);
    expect(() => matmul(gpu, a, ok, { out: gpu.tensor([4, 2], 'f32') })).toThrowError(/too small/);
    expect(() => matmul(gpu, gpu.tensor([2, 4, 5], 'f32'), gpu.tensor([3, 5, 3], 'f32'))).toThrowError(/batch sizes differ/);
    expect(() => matmul(gpu, a, ok, { m: 5 })).toThrowError(/A .* too small/);
    expect(() => matmul(gpu, a, ok, { lda: 3 })).toThrowError(/leading dimensions/);
    expect(() => matmul(gpu, gpu.tensor([5], 'f32'), ok)).toThrowError(/rank/);
    try {
      matmul(gpu, a, b);
    } catch (e) {
      expect((e as Error).message).toMatch(/op=matmul/);
      expect((e as Error).message).toMatch(/f32\[4,5\] x f32\[6,3\]/);
    }
  });
});

describe('matmul validation of out, aliasing and offsets', () => {
  /** `fn` throws a ShapeError matching `msg` and leaves the allocator's bytes in use as they were. */
  const refuses = (gpu: Gpu, fn: () => unknown, msg: RegExp) => {
    const before = gpu.memory().inUse;
    expect(fn).toThrowError(ShapeError);
    expect(fn).toThrowError(msg);
    expect(gpu.memory().inUse).toBe(before);
  };

  it('takes an out of the result\'s shape (leading dimensions merged or split), any shape only with explicit addressing', async () => {
    const gpu = await testGpu();
    const A = gpu.tensor([2, 3], 'f32', [1, 0, 0, 0, 1, 0]);
    const B = gpu.tensor([3, 3], 'f32', [1, 2, 3, 4, 5, 6, 7, 8, 9]);
    const [transposed, flat] = [gpu.tensor([3, 2], 'f32'), gpu.tensor([9], 'f32', new Array(9).fill(-1))];
    // Big enough, but it would hold the [2, 3] result row-major under another shape.
    refuses(gpu, () => matmul(gpu, A, B, { out: transposed }), /out f32\[3,2\] must be \[2,3\] .*op=matmul/);
    refuses(gpu, () => matmul(gpu, A, B, { out: flat }), /out f32\[9\] must be \[2,3\]/);
    const [A2, wrong] = [gpu.tensor([2, 2, 3], 'f32'), gpu.tensor([3, 4], 'f32')];
    refuses(gpu, () => matmul(gpu, A2, B, { out: wrong }), /must be 2 x \[2,3\]/);
    expect(Array.from(await matmul(gpu, A, B, { out: gpu.tensor([1, 2, 3], 'f32') }).read())).toEqual([1, 2, 3, 4, 5, 6]);
    expect(Array.from(await matmul(gpu, A, B, { out: flat, offsetC: 3 }).read())).toEqual([-1, -1, -1, 1, 2, 3, 4, 5, 6]);
    const wide = gpu.tensor([2, 4], 'f32', new Array(8).fill(-1));
    expect(Array.from(await matmul(gpu, A, B, { out: wide, ldc: 4 }).read())).toEqual([1, 2, 3, -1, 4, 5, 6, -1]);
  });

  it('refuses an out in the buffer of a, b or the bias, before recording anything', async () => {
    const gpu = await testGpu();
    const A = gpu.tensor([2, 3], 'f32', [1, 0, 0, 0, 1, 0]);
    const B = gpu.tensor([3, 3], 'f32', [1, 2, 3, 4, 5, 6, 7, 8, 9]);
    const sq = gpu.tensor([2, 2], 'f32', [1, 2, 3, 4]);
    refuses(gpu, () => matmul(gpu, sq, sq, { out: sq }), /out f32\[2,2\] must not alias a, b or bias/);
    refuses(gpu, () => matmul(gpu, A, B, { out: A }), /must not alias/);
    refuses(gpu, () => matmul(gpu, A, B, { out: B.rows(0, 2) }), /must not alias/);
    const both = gpu.tensor([3, 3], 'f32');
    refuses(gpu, () => matmul(gpu, A, B, { out: both.rows(0, 2), bias: both }), /must not alias/);
    // Nothing was recorded: the batch reads back.
    expect(Array.from(await matmul(gpu, sq, sq).read())).toEqual([7, 10, 15, 22]);
  });

  it('validates offsetBias like the other offsets, and every option before allocating the output', async () => {
    const gpu = await testGpu();
    const A = gpu.tensor([2, 3], 'f32', [1, 0, 0, 0, 1, 0]);
    const B = gpu.tensor([3, 3], 'f32', [1, 2, 3, 4, 5, 6, 7, 8, 9]);
    const bias = gpu.tensor([4], 'f32', [100, 200, 300, 400]);
    for (const offsetBias of [-1, 0.5, NaN]) {
      refuses(gpu, () => matmul(gpu, A, B, { bias, offsetBias }), new RegExp(`non-negative integers, got offsetBias=${offsetBias}`));
    }
    refuses(gpu, () => matmul(gpu, A, B, { offsetA: -1 }), /got offsetA=-1/);
    refuses(gpu, () => matmul(gpu, A, B, { batch: 2, strideC: 7 }), /out \[2,2,3\] too small/);
    refuses(gpu, () => matmul(gpu, A, B, { outDType: 'i32' as 'f32' }), /out must be f32 or f16, got i32/);
    expect(Array.from(await matmul(gpu, A, B, { bias, offsetBias: 1 }).read())).toEqual([201, 302, 403, 204, 305, 406]);
  });
});

describe('matmul paths', () => {
  const features = (matrix: boolean): GpuFeatures => ({
    shaderF16: true,
    subgroups: true,
    timestampQuery: false,
    subgroupMatrix: matrix,
    subgroupMatrixConfigs: matrix ? [{ componentType: 'f16', resultComponentType: 'f32', M: 16, N: 16, K: 16 }] : [],
  });
  const fake = (matrix: boolean) => ({ features: features(matrix), variants: chooseVariants(features(matrix)) });

  it('uses subgroup matrices only when the variant says so, for f16 or f32 A against f16 B, of any shape', () => {
    expect(selectMatmulPath(fake(true), 'f16', 'f16', 64, 64, 64)).toBe('subgroup-matrix');
    expect(selectMatmulPath(fake(false), 'f16', 'f16', 64, 64, 64)).toBe('tiled');
    // f32 activations and gradients against f16 weights: the scaled split keeps f32 accuracy (matmul-sgm.test.ts).
    expect(selectMatmulPath(fake(true), 'f32', 'f16', 64, 64, 64)).toBe('subgroup-matrix');
    expect(selectMatmulPath(fake(false), 'f32', 'f16', 64, 64, 64)).toBe('tiled');
    // f32 B would be rounded to f16: left to the f32 kernel.
    expect(selectMatmulPath(fake(true), 'f32', 'f32', 64, 64, 64)).toBe('tiled');
    expect(selectMatmulPath(fake(true), 'f16', 'f32', 64, 64, 64)).toBe('tiled');
    // doctor says how f32 A goes through the tensor cores.
    expect(describeMatmulPath({ ...fake(true), limits: {} }, 'f32', 'f16', 64, 64, 64)).toEqual({ path: 'subgroup-matrix', aF32: 'scaled' });
    expect(describeMatmulPath({ ...fake(true), limits: {} }, 'f16', 'f16', 64, 64, 64)).toEqual({ path: 'subgroup-matrix' });
    // Tiles are staged with bounds checks, so ragged shapes qualify too.
    expect(selectMatmulPath(fake(true), 'f16', 'f16', 65, 40, 33)).toBe('subgroup-matrix');
    expect(selectMatmulPath(fake(true), 'f16', 'f16', 1, 64, 64)).toBe('gemv');
    // Decode's x·Wᵀ: the vec GEMV where W's rows are whole 16-byte units, else the scalar one.
    const limits = { minStorageBufferOffsetAlignment: 256 };
    expect(describeMatmulPath({ ...fake(true), limits }, 'f32', 'f16', 1, 3584, 3584, { transB: true })).toEqual({ path: 'gemv', gemv: 'vec' });
    expect(describeMatmulPath({ ...fake(true), limits }, 'f32', 'f16', 1, 3584, 3588, { transB: true })).toEqual({ path: 'gemv', gemv: 'scalar' });
    expect(describeMatmulPath({ ...fake(true), limits }, 'f32', 'f16', 1, 3584, 3584)).toEqual({ path: 'gemv', gemv: 'scalar' });
    const noMatrixVariant = { ...fake(true), variants: { ...fake(true).variants, matmulF16: 'tiled' as const } };
    expect(selectMatmulPath(noMatrixVariant, 'f16', 'f16', 64, 64, 64)).toBe('tiled');
  });

  it('picks GEMV for few rows, the CPU kernel on a software adapter where it fits, and the tiled kernel otherwise', async () => {
    const gpu = await testGpu();
    const cpu = cpuTiledHere(gpu);
    expect(selectMatmulPath(gpu, 'f32', 'f32', GEMV_MAX_M, 100, 100)).toBe('gemv');
    expect(selectMatmulPath(gpu, 'f32', 'f32', GEMV_MAX_M + 1, 100, 100)).toBe(cpu ? 'cpu-tiled' : 'tiled');
    // The CPU path packs B, so any layout and f16 operands qualify...
    const here = cpu ? 'cpu-tiled' : 'tiled';
    expect(selectMatmulPath(gpu, 'f32', 'f32', 64, 66, 64)).toBe(here);
    expect(selectMatmulPath(gpu, 'f32', 'f32', 64, 64, 64, { transB: true })).toBe(here);
    expect(selectMatmulPath(gpu, 'f32', 'f32', 64, 64, 64, { transA: true })).toBe(here);
    expect(selectMatmulPath(gpu, 'f32', 'f16', 64, 64, 64, { ldb: 66 })).toBe(here);
    // ...but a batch of distinct B matrices only in the layout its storage-buffer kernel reads, and an f16 C only
    // from one K-chunk.
    expect(selectMatmulPath(gpu, 'f32', 'f32', 64, 64, 64, { batch: 2, sB: 4096 })).toBe(here);
    expect(selectMatmulPath(gpu, 'f32', 'f32', 64, 64, 64, { batch: 2, sB: 4096, transB: true })).toBe('tiled');
    expect(selectMatmulPath(gpu, 'f32', 'f32', 64, 64, 2049, { transB: true, cType: 'f16' })).toBe('tiled');
    expect(selectMatmulPath(gpu, 'f32', 'f32', 64, 64, 2048, { transB: true, cType: 'f16' })).toBe(here);
    // From N = 512 the tile is 128 columns wide and a dispatch's 8 windows hold 1024 rows of K.
    expect(selectMatmulPath(gpu, 'f32', 'f32', 64, 512, 1025, { transB: true, cType: 'f16' })).toBe('tiled');
    expect(selectMatmulPath(gpu, 'f32', 'f32', 64, 512, 1024, { transB: true, cType: 'f16' })).toBe(here);
    if (gpu.variants.matmulF16 !== 'subgroup-matrix') expect(selectMatmulPath(gpu, 'f16', 'f16', 64, 64, 64)).toBe(here);
  });

  it('never picks the CPU kernel on a hardware adapter', () => {
    const hw = { ...fake(false), adapter: { vendor: 'nvidia', architecture: 'hopper', device: 'H200', description: '', backend: 'vulkan' } };
    expect(isCpuAdapter(hw)).toBe(false);
    expect(selectMatmulPath(hw, 'f32', 'f32', 64, 64, 64)).toBe('tiled');
  });
});

/** The CPU kernel runs here: lavapipe with 8-lane subgroups (the adapter these tests run on). */
function cpuTiledHere(gpu: Gpu): boolean {
  const info = gpu.device.adapterInfo as GPUAdapterInfo & { subgroupMinSize?: number; subgroupMaxSize?: number };
  return isCpuAdapter(gpu) && gpu.features.subgroups && info.subgroupMinSize === 8 && info.subgroupMaxSize === 8;
}

describe('matmul tiled path: K split over workgroup layers', () => {
  it('matches the reference: layers that do not divide K, transposes, batches, alpha, beta, bias and f16 C on strided sub-matrices', async () => {
    const gpu = await testGpu();
    const rng = new Rng(23);
    // K = 1000 in 7 layers of 144 (the last 136); K = 37 asked for 4 layers gets 3 of 16 (8-wide K steps).
    for (const [tA, tB, K, splitK] of [[false, true, 1000, 7], [true, false, 37, 4], [true, true, 300, 2]] as const) {
      const [M, N] = [70, 20];
      const [lda, ldb, ldc] = [(tA ? M : K) + 3, (tB ? K : N) + 2, N + 5];
      const p: MatmulRefProblem = {
        batch: 2, M, N, K, transA: tA, transB: tB, lda, ldb, ldc, alpha: 0.5, beta: -1.5,
        strideA: (tA ? K : M) * lda + 5, strideB: (tB ? N : K) * ldb + 4, strideC: M * ldc + 1,
      };
      await runStridedEpilogue(gpu, rng, p, { cType: tA && tB ? 'f16' : 'f32', path: 'tiled', splitK });
    }
  }, 120_000);

  it('splits by default only on GPUs, where the grid is too small to fill one and K is long', () => {
    const h200 = { softwareAdapter: false, maxWorkgroups: 65535, maxBinding: 2 ** 31 - 4 };
    // LoRA's x·Aᵀ at T = 512, hidden 3584, r = 16: 8 workgroups -> 28 layers of 128.
    expect(tiledSplitK(h200, { M: 512, N: 16, K: 3584, batch: 1 })).toBe(28);
    // Enough workgroups already, or too little K to split, or a software adapter: no split.
    expect(tiledSplitK(h200, { M: 4096, N: 4096, K: 4096, batch: 1 })).toBe(1);
    expect(tiledSplitK(h200, { M: 512, N: 16, K: 200, batch: 1 })).toBe(1);
    expect(tiledSplitK({ ...h200, softwareAdapter: true }, { M: 512, N: 16, K: 3584, batch: 1 })).toBe(1);
    // Partial sums are held to one binding: 16 layers of 256 KiB would not fit 1 MiB.
    expect(tiledSplitK(h200, { M: 64, N: 1024, K: 65536, batch: 1 })).toBe(16);
    expect(tiledSplitK({ ...h200, maxBinding: 2 ** 20 }, { M: 64, N: 1024, K: 65536, batch: 1 })).toBe(4);
  });

  it('splits subgroup-matrix grids only when they are very small (decoding 32 sequences, k_proj at T = 512)', () => {
    const h200 = { softwareAdapter: false, maxWorkgroups: 65535, maxBinding: 2 ** 31 - 4 };
    const block = { bm: 128, bn: 128 };
    // q_proj for 32 sequences: 28 workgroups -> 10 layers; k_proj at T = 512: 16 -> 14 (K 3584 in layers of >= 256).
    expect(sgmSplitK(h200, { M: 32, N: 3584, K: 3584, batch: 1 }, block, 32)).toBe(10);
    expect(sgmSplitK(h200, { M: 512, N: 512, K: 3584, batch: 1 }, block, 32)).toBe(14);
    // q_proj at T = 512 (112 workgroups) keeps the tuned unsplit launch; so do CPU adapters.
    expect(sgmSplitK(h200, { M: 512, N: 3584, K: 3584, batch: 1 }, block, 32)).toBe(1);
    expect(sgmSplitK({ ...h200, softwareAdapter: true }, { M: 32, N: 3584, K: 3584, batch: 1 }, block, 32)).toBe(1);
  });

  it('refuses a split that is not a positive integer', async () => {
    const gpu = await testGpu();
    const a = gpu.tensor([4, 8], 'f32');
    expect(() => matmul(gpu, a, a, { transB: true, path: 'tiled', splitK: 0 })).toThrow(/splitK must be a positive integer, got 0/);
    a.dispose();
  });
});

describe('matmul cpu-tiled path (forced)', () => {
  it('runs on this adapter', async () => {
    expect(cpuTiledHere(await testGpu())).toBe(true);
  });

  it('matches the reference over shapes that are not multiples of its 32x64 or 32x128 tile or of 8 along K', async () => {
    const gpu = await testGpu();
    const rng = new Rng(11);
    for (const [M, N, K] of [
      [5, 4, 1],
      [17, 12, 7],
      [16, 64, 8],
      [33, 68, 13],
      [20, 132, 70],
      [65, 4, 130],
      // The 32x64 tile with K over several windows; the 32x128 tile (N >= 512) with K over one dispatch's 8
      // windows of 128 rows, where a second dispatch adds into C.
      [9, 136, 1100],
      [9, 520, 1100],
      // 64-row tiles (the wide tile from M = 64): two row blocks, the second 6 rows; C element by element.
      [70, 518, 300],
    ]) {
      await runCase(gpu, rng, problem(M, N, K), { path: 'cpu-tiled' });
    }
  });

  it('takes its tiles from a counter that is back at zero after each dispatch', async () => {
    const gpu = await freshGpu();
    try {
      const rng = new Rng(14);
      expect(await readTicketCounter(gpu)).toBeUndefined();
      // The counter is made by the first matmul, here inside a scope: it must outlive it (a counter made as a
      // tensor was disposed with the scope, its memory went to the next tensor, and matmuls wrote into it), and it
      // must not count as memory in use.
      const a = gpu.tensor([3, 2], 'f32', [1, 2, 3, 4, 5, 6]);
      const b = gpu.tensor([2, 1], 'f32', [1, 1]);
      const inUse = gpu.memory().inUse;
      const c = gpu.scope(() => matmul(gpu, a, b, { path: 'cpu-tiled' }));
      expect(Array.from(await c.read())).toEqual([3, 7, 11]);
      expect(await readTicketCounter(gpu)).toBe(0);
      c.dispose();
      expect(gpu.memory().inUse).toBe(inUse);
      const d = gpu.scope(() => matmul(gpu, a, b, { path: 'cpu-tiled' }));
      expect(Array.from(await d.read())).toEqual([3, 7, 11]);
      d.dispose();
      // One tile (fewer tiles than threads), 3 row blocks x 2 batch items, and K over two dispatches.
      for (const prob of [problem(5, 4, 1), problem(70, 20, 9, { batch: 2, aB: true }), problem(9, 136, 1100)]) {
        await runCase(gpu, rng, prob, { path: 'cpu-tiled' });
        expect(await readTicketCounter(gpu)).toBe(0);
      }
    } finally {
      gpu.destroy();
    }
    expect(ticketWorkgroups(1)).toBe(1);
    expect(ticketWorkgroups(1000)).toBe(shaderThreads());
  });

  it('batches, with either operand broadcast', async () => {
    const gpu = await testGpu();
    const rng = new Rng(12);
    await runCase(gpu, rng, problem(17, 20, 33, { batch: 3, aB: true }), { path: 'cpu-tiled' });
    await runCase(gpu, rng, problem(9, 36, 10, { batch: 2, bB: true }), { path: 'cpu-tiled' });
    await runCase(gpu, rng, problem(18, 8, 17, { batch: 2, aB: true, bB: true }), { path: 'cpu-tiled' });
    // 64-row tiles: two row blocks per batch item, the second 6 rows.
    await runCase(gpu, rng, problem(70, 520, 64, { batch: 2, aB: true }), { path: 'cpu-tiled' });
  });

  it('fuses alpha, beta, bias and f16 output, on strided sub-matrices', async () => {
    const [M, N, K] = [19, 24, 21];
    const [lda, ldb, ldc] = [K + 3, N + 8, N + 2];
    const p: MatmulRefProblem = {
      batch: 2, M, N, K, lda, ldb, ldc, strideA: M * lda + 5, strideB: K * ldb + 4, strideC: M * ldc + 1, alpha: 0.5, beta: -1.5,
    };
    await runStridedEpilogue(await testGpu(), new Rng(13), p, { cType: 'f16', path: 'cpu-tiled' });
  });

  it('refuses layouts it cannot run, naming the reason', async () => {
    const gpu = await testGpu();
    // A batch of distinct, transposed B matrices: neither the windowed kernel nor the storage-buffer one.
    const a = gpu.tensor([2, 5, 6], 'f32');
    const bt = gpu.tensor([2, 8, 6], 'f32');
    expect(() => matmul(gpu, a, bt, { transB: true, path: 'cpu-tiled' })).toThrowError(/cpu-tiled path takes one B matrix.*non-transposed/);
    // An f16 C over more than one dispatch along K, with B in a layout the storage-buffer kernel does not read.
    const a2 = gpu.tensor([5, 2050], 'f32');
    const b2 = gpu.tensor([6, 2050], 'f32');
    expect(() => matmul(gpu, a2, b2, { transB: true, outDType: 'f16', path: 'cpu-tiled' })).toThrowError(/writes f16 C only for K <= 2048/);
    [a, bt, a2, b2].forEach((t) => t.dispose());
  });

  it('packs B into uniform windows: any layout and dtype, K over several chunks, several panels per window', async () => {
    const gpu = await testGpu();
    const rng = new Rng(14);
    // Tile 32 rows x 64 columns, windows of 256 rows of K (or whole panels when K is small), 8 windows a dispatch
    // (K over 2048 adds into C); none of these align.
    const cases: Array<[number, number, number, { tA?: boolean; tB?: boolean }]> = [
      [33, 70, 300, {}],
      [9, 1700, 20, { tB: true }],
      [40, 65, 257, { tA: true }],
      [31, 130, 9, { tA: true, tB: true }],
      [70, 3, 530, { tB: true }],
      [33, 260, 600, {}],
      [9, 20, 2200, { tA: true }],
      [10, 37, 44, { tB: true }],
      [11, 28, 45, {}],
      [12, 40, 600, { tB: true }],
    ];
    // The pack kernel's three ways of reading B are all among them (f16 below as well).
    const variants = new Set(cases.map(([, N, K, t]) => cpuPackVariant({ transB: !!t.tB, K, N, ldb: t.tB ? K : N, offB: 0 })));
    expect(variants).toEqual(new Set<CpuPackVariant>(['rows', 'cols', 'scalar']));
    gpu.profiling = true;
    for (const [M, N, K, t] of cases) await runCase(gpu, rng, problem(M, N, K, t), { path: 'cpu-tiled' });
    await runCase(gpu, rng, problem(12, 36, 100, { tB: true }), { path: 'cpu-tiled', bType: 'f16' });
    await runCase(gpu, rng, problem(12, 36, 40, {}), { path: 'cpu-tiled', aType: 'f16', bType: 'f16' });
    await runCase(gpu, rng, problem(17, 20, 270, { batch: 3, aB: true, tB: true }), { path: 'cpu-tiled' });
    // (Reading C back is a copy, profiled too.)
    const ops = new Set((await gpu.takeTimings()).map((t) => t.op).filter((op) => op !== 'copy'));
    gpu.profiling = false;
    // Every case above ran the windowed kernel (its pack step), none the storage-buffer fallback alone.
    expect(ops).toEqual(new Set(['matmul-cpu-tiled-pack', 'matmul-cpu-tiled']));
  });

  it('fuses alpha, beta and bias into the first dispatch along K only, on strided sub-matrices', async () => {
    const [M, N, K] = [35, 70, 2100];
    // A stored transposed and batched, B stored [N, K] and broadcast (the windowed kernel's batched case).
    const p: MatmulRefProblem = {
      batch: 2, M, N, K, transA: true, transB: true, lda: M + 3, ldb: K + 5, ldc: N + 2, strideA: K * (M + 3) + 5, strideB: 0,
      strideC: M * (N + 2) + 1, alpha: 0.5, beta: -1.5,
    };
    await runStridedEpilogue(await testGpu(), new Rng(15), p, { cType: 'f32', path: 'cpu-tiled' });
  });

  it('writes C as vec4s where its layout allows, with the same epilogue, and element by element otherwise', async () => {
    const gpu = await testGpu();
    const rng = new Rng(16);
    const fields = (p: MatmulRefProblem, offC: number) => ({ N: p.N, ldc: p.ldc, offC, sC: p.strideC, batch: p.batch });
    // Rows 4-aligned from offset 8, two batch items, alpha, beta and a bias: K in one dispatch (f32 and f16 C) and
    // over two (the second adds into C); then 33 rows of 36 columns, which end mid-tile and mid-panel.
    const [M, N, K] = [37, 72, 40];
    const p: MatmulRefProblem = {
      batch: 2, M, N, K, lda: K + 3, ldb: N + 8, ldc: N + 4, strideA: M * (K + 3) + 5, strideB: 0, strideC: M * (N + 4) + 8, alpha: 0.5, beta: -1.5,
    };
    expect(cpuCVec4(fields(p, 8), 0)).toBe(true);
    await runStridedEpilogue(gpu, rng, p, { cType: 'f32', path: 'cpu-tiled', offsetC: 8 });
    await runStridedEpilogue(gpu, rng, p, { cType: 'f16', path: 'cpu-tiled', offsetC: 8 });
    const long: MatmulRefProblem = { ...p, K: 2100, lda: 2103, strideA: M * 2103 + 5 };
    await runStridedEpilogue(gpu, rng, long, { cType: 'f32', path: 'cpu-tiled', offsetC: 8 });
    const small = problem(33, 36, 19);
    expect(cpuCVec4(fields(small, 0), 0)).toBe(true);
    await runCase(gpu, rng, small, { path: 'cpu-tiled' });
    // Any of N, ldc, offC, a batch stride or the binding's offset off a multiple of 4 (or 16 bytes) goes element by
    // element; a stride does not matter for one matrix.
    expect(cpuCVec4(fields(p, 6), 0)).toBe(false);
    // Tiles of 64 rows only for the wide (128-column) tile from M = 64.
    expect([tileRows(63, 4), tileRows(64, 4), tileRows(1000, 2)]).toEqual([32, 64, 32]);
    expect(cpuCVec4({ ...fields(p, 8), N: 70 }, 0)).toBe(false);
    expect(cpuCVec4({ ...fields(p, 8), ldc: 74 }, 0)).toBe(false);
    expect(cpuCVec4({ ...fields(p, 8), sC: p.strideC + 2 }, 0)).toBe(false);
    expect(cpuCVec4({ ...fields(p, 8), sC: 3, batch: 1 }, 0)).toBe(true);
    expect(cpuCVec4(fields(p, 8), 8)).toBe(false);
  });
});

describe('matmul cpu-tiled path: A from a texture', () => {
  const fields = (p: MatmulRefProblem, offA = 0) => ({ ...p, transA: !!p.transA, offA, sA: p.strideA });

  it('copies A into a texture where its layout allows, and reads it from storage otherwise', async () => {
    const { limits } = await testGpu();
    const f32 = { a: 'f32' as const };
    expect(cpuATexture(limits, f32, fields(problem(33, 70, 64)), 0)).toEqual({ width: 16, rowsPerImage: 33, layers: 1 });
    expect(cpuATexture(limits, f32, fields(problem(17, 20, 64, { batch: 3, aB: true })), 0)).toEqual({ width: 16, rowsPerImage: 17, layers: 3 });
    // Offsets 16-byte aligned in the buffer, K a multiple of 4 inside a row of a multiple of 64.
    expect(cpuATexture(limits, f32, { ...fields(problem(9, 20, 100)), lda: 128 }, 256)?.width).toBe(25);
    expect(cpuATexture(limits, f32, { ...fields(problem(9, 20, 100)), lda: 128, offA: 4 }, 0)).toBeDefined();
    for (const [why, p, offset] of [
      ['transposed', fields(problem(33, 70, 64, { tA: true })), 0],
      ['lda not a multiple of 64', fields(problem(33, 70, 100)), 0],
      ['K not a multiple of 4', { ...fields(problem(33, 70, 62)), lda: 64 }, 0],
      ['offset not 16-byte aligned', fields(problem(33, 70, 64), 3), 0],
      ['binding offset not 16-byte aligned', fields(problem(33, 70, 64)), 4],
      ['batch items not whole rows apart', { ...fields(problem(5, 8, 64, { batch: 2 })), sA: 5 * 64 + 4 }, 0],
      ['over the texture size cap', fields(problem(16384, 8, A_TEXTURE_MAX_BYTES / 16384 / 4 + 64)), 0],
    ] as const) {
      expect(cpuATexture(limits, f32, p, offset), why).toBeUndefined();
    }
    expect(cpuATexture(limits, { a: 'f16' }, fields(problem(33, 70, 64)), 0)).toBeUndefined();
  });

  it('matches the reference: K in one window or over two dispatches, a layer per batch item or one for all, strided with an epilogue', async () => {
    const gpu = await testGpu();
    const rng = new Rng(16);
    const cases: Array<[MatmulRefProblem, string]> = [
      [problem(33, 70, 64), 'one window of K'],
      [problem(40, 520, 1088), 'K over 9 windows of 128: two dispatches along K'],
      [problem(70, 200, 192), 'several row blocks, K in whole passes of 32'],
      [problem(17, 20, 64, { batch: 3, aB: true }), 'a layer per batch item'],
    ];
    for (const [p, why] of cases) {
      expect(cpuATexture(gpu.limits, { a: 'f32' }, fields(p), 0), why).toBeDefined();
      await runCase(gpu, rng, p, { path: 'cpu-tiled' });
    }
    // K = 100 (not a whole pass of 32: the last texels are masked) in rows of 128, A at offset 4, with alpha,
    // beta and bias; one A (one texture layer) and one B [N, K] for both batch items.
    const [M, N, K] = [35, 70, 100];
    const p: MatmulRefProblem = {
      batch: 2, M, N, K, transB: true, lda: 128, ldb: K + 5, ldc: N + 2, strideA: 0, strideB: 0, strideC: M * (N + 2) + 1,
      alpha: 0.5, beta: -1.5,
    };
    expect(cpuATexture(gpu.limits, { a: 'f32' }, fields(p, 4), 0)).toBeDefined();
    await runStridedEpilogue(gpu, rng, p, { cType: 'f32', path: 'cpu-tiled', offsetA: 4 });
  });

  it('is reported by describeMatmulPath, which names where the cpu-tiled kernel reads A from', async () => {
    const gpu = await testGpu();
    expect(describeMatmulPath(gpu, 'f32', 'f32', 64, 64, 64)).toEqual({ path: 'cpu-tiled', aFrom: 'texture' });
    expect(describeMatmulPath(gpu, 'f32', 'f32', 64, 64, 64, { transA: true })).toEqual({ path: 'cpu-tiled', aFrom: 'storage' });
    expect(describeMatmulPath(gpu, 'f32', 'f32', 64, 64, 60)).toEqual({ path: 'cpu-tiled', aFrom: 'storage' });
    expect(describeMatmulPath(gpu, 'f16', 'f32', 64, 64, 64)).toEqual({ path: 'cpu-tiled', aFrom: 'storage' });
    // A batch of distinct B matrices goes to the storage-buffer fallback, which reads A from storage.
    expect(describeMatmulPath(gpu, 'f32', 'f32', 64, 64, 64, { batch: 2, sB: 4096 })).toEqual({ path: 'cpu-tiled', aFrom: 'storage' });
    expect(describeMatmulPath(gpu, 'f32', 'f32', 1, 64, 64, { transB: true })).toEqual({ path: 'cpu-gemv' });
  });

  it('grows its A and B textures between products recorded in one batch without disturbing the earlier one', async () => {
    const gpu = await freshGpu();
    try {
      const rng = new Rng(17);
      // Both operands go through textures (lda and ldb multiples of 64); the second product needs larger ones.
      const small = [rng.randn(8 * 64), rng.randn(64 * 64)] as const;
      const big = [rng.randn(70 * 256), rng.randn(256 * 192)] as const;
      const c1 = matmul(gpu, gpu.tensor([8, 64], 'f32', small[0]), gpu.tensor([64, 64], 'f32', small[1]), { path: 'cpu-tiled' });
      const c2 = matmul(gpu, gpu.tensor([70, 256], 'f32', big[0]), gpu.tensor([256, 192], 'f32', big[1]), { path: 'cpu-tiled' });
      // A third, small again, reuses the grown textures.
      const c3 = matmul(gpu, gpu.tensor([8, 64], 'f32', big[0].slice(0, 512)), gpu.tensor([64, 64], 'f32', small[1]), { path: 'cpu-tiled' });
      expectClose(await c1.read(), matmulRef(small[0], small[1], problem(8, 64, 64), undefined, 8 * 64), TOL, 'first, small');
      expectClose(await c2.read(), matmulRef(big[0], big[1], problem(70, 192, 256), undefined, 70 * 192), TOL, 'second, grown');
      expectClose(await c3.read(), matmulRef(big[0].slice(0, 512), small[1], problem(8, 64, 64), undefined, 8 * 64), TOL, 'third, in the grown textures');
    } finally {
      gpu.destroy();
    }
  });
});

describe('matmul cpu-tiled path: B windows filled by copies', () => {
  const fields = (p: MatmulRefProblem, offB = 0) => ({ ...p, transB: !!p.transB, offB });

  it('copies B through a texture where its layout allows, and packs it with the pack kernel otherwise', async () => {
    const { limits } = await testGpu();
    const f32 = { b: 'f32' as const };
    expect(cpuBCopies(limits, f32, fields(problem(5, 64, 30)), 0)).toBe(true);
    expect(cpuBCopies(limits, f32, { ...fields(problem(5, 100, 30)), ldb: 128 }, 0)).toBe(true);
    expect(cpuBCopies(limits, f32, fields(problem(5, 64, 30), 4), 256)).toBe(true);
    for (const [why, p, offset] of [
      ['transposed', fields(problem(5, 64, 30, { tB: true })), 0],
      ['ldb not a multiple of 64', fields(problem(5, 100, 30)), 0],
      ['N not a multiple of 4', { ...fields(problem(5, 62, 30)), ldb: 64 }, 0],
      ['offset not 16-byte aligned', fields(problem(5, 64, 30), 2), 0],
      ['binding offset not 16-byte aligned', fields(problem(5, 64, 30)), 8],
      ['over the texture size cap', fields(problem(5, 4096, B_TEXTURE_MAX_BYTES / 4096 / 4 + 1)), 0],
    ] as const) {
      expect(cpuBCopies(limits, f32, p, offset), why).toBe(false);
    }
    expect(cpuBCopies(limits, { b: 'f16' }, fields(problem(5, 64, 30)), 0)).toBe(false);
  });

  it('matches the reference: partial panels and windows (zero-filled), several panels a window, K over two dispatches, a broadcast B, an epilogue', async () => {
    const gpu = await testGpu();
    const rng = new Rng(18);
    const cases: Array<[MatmulRefProblem, string]> = [
      [problem(33, 192, 100), 'K = 100 in one chunk of 104 rows: two 64-column panels a window, the last rows zero'],
      [problem(40, 640, 1088), 'five 128-column panels, K over 9 windows of 128: two dispatches along K, the last half empty'],
      [problem(100, 640, 1088), 'the same in 64-row tiles (two row blocks, the second 36 rows)'],
      [problem(17, 64, 64, { batch: 3, aB: true }), 'one B for three A'],
    ];
    // Freed buffers full of NaN, of the scratch's sizes (1 and 8 windows): the copies fill only B's own rows and
    // columns, so unless the rest is cleared, NaN * 0 reaches C.
    const poison = () => [1, 8].forEach((w) => gpu.tensor([w * 16384], 'f32', new Float32Array(w * 16384).fill(NaN)).dispose());
    for (const [p, why] of cases) {
      expect(cpuBCopies(gpu.limits, { b: 'f32' }, fields(p), 0), why).toBe(true);
      poison();
      await runCase(gpu, rng, p, { path: 'cpu-tiled' });
    }
    // N = 100 in rows of 128 at offset 4: the second 64-column panel is 36 columns, the rest of it zeros.
    const [M, N, K] = [21, 100, 50];
    const p: MatmulRefProblem = { batch: 1, M, N, K, lda: K + 3, ldb: 128, ldc: N + 1, strideA: 0, strideB: 0, strideC: M * (N + 1), alpha: 0.5, beta: -1.5 };
    expect(cpuBCopies(gpu.limits, { b: 'f32' }, fields(p, 4), 0)).toBe(true);
    poison();
    await runStridedEpilogue(gpu, rng, p, { cType: 'f32', path: 'cpu-tiled' });
  });

  it('records copies, not pack dispatches, for such a B (timed in profiles), and packs a transposed one', async () => {
    const gpu = await freshGpu();
    try {
      const ops = async (tB: boolean) => {
        const A = gpu.tensor([40, 256], 'f32', new Rng(19).randn(40 * 256));
        const B = gpu.tensor([256, 256], 'f32', new Rng(20).randn(256 * 256));
        gpu.profiling = true;
        matmul(gpu, A, B, { transB: tB, path: 'cpu-tiled' });
        const timings = await gpu.takeTimings();
        gpu.profiling = false;
        return new Set(timings.map((t) => t.op));
      };
      expect(await ops(false)).toEqual(new Set(['matmul-cpu-tiled-a-texture', 'matmul-cpu-tiled-b-texture', 'matmul-cpu-tiled-b-copy', 'matmul-cpu-tiled']));
      expect(await ops(true)).toEqual(new Set(['matmul-cpu-tiled-a-texture', 'matmul-cpu-tiled-pack', 'matmul-cpu-tiled']));
    } finally {
      gpu.destroy();
    }
  });
});

describe('matmul on operands larger than one binding', () => {
  it('splits into windows along each operand\'s outer storage dimension (maxBinding 4096 bytes)', async () => {
    const gpu = await freshGpu({ maxBindingBytes: 4096 });
    try {
      const rng = new Rng(7);
      // Every operand is over 4096 bytes; each transpose splits along a different dimension.
      for (const tA of [false, true]) {
        for (const tB of [false, true]) await runCase(gpu, rng, problem(40, 30, 50, { tA, tB }));
      }
      await runCase(gpu, rng, problem(9, 21, 70, { batch: 3, aB: true, tB: true }));
      await runCase(gpu, rng, problem(3, 40, 60, { batch: 2, aB: true, bB: true, tB: true }));
      await runCase(gpu, rng, problem(20, 40, 300, { tB: true }), { bType: 'f16' });
      // Epilogue through windows: bias added once, beta only on the first K part.
      const [M, N, K] = [33, 40, 60];
      const a = rng.randn(M * K);
      const b = rng.randn(K * N);
      const c0 = rng.randn(M * N);
      const bias = rng.randn(N);
      const A = gpu.tensor([M, K], 'f32', a);
      const B = gpu.tensor([K, N], 'f32', b);
      const C = gpu.tensor([M, N], 'f32', c0);
      matmul(gpu, A, B, { out: C, beta: 0.5, alpha: 2, bias: gpu.tensor([N], 'f32', bias) });
      const want = matmulRef(a, b, { ...problem(M, N, K), alpha: 2, beta: 0.5, bias }, c0);
      expectClose(await C.read(), want, TOL, 'windowed epilogue');
    } finally {
      gpu.destroy();
    }
    // A fresh device compiles every window's kernels anew: minutes with a cold Mesa shader cache on 2 cores.
  }, 400_000);
});

describe('matmul on CPU adapters, operands larger than one binding', () => {
  it('keeps the cpu-gemv and cpu-tiled kernels for the windows they can run (maxBinding 1 MiB)', async () => {
    const gpu = await freshGpu({ maxBindingBytes: 1 << 20 });
    try {
      if (!isCpuAdapter(gpu)) return;
      const rng = new Rng(17);
      // B is 2 MiB of f32 in both: decode's LM head shape (B stored [N, K]) and a prefill-sized product.
      for (const [p, kernel] of [
        [problem(3, 1024, 512, { tB: true }), 'matmul-cpu-gemv'],
        [problem(40, 1024, 512), 'matmul-cpu-tiled'],
      ] as const) {
        gpu.profiling = true;
        await runCase(gpu, rng, p);
        const ops = new Set((await gpu.takeTimings()).map((t) => t.op));
        gpu.profiling = false;
        expect(ops.has(kernel), `${kernel} among ${[...ops].join(', ')}`).toBe(true);
      }
    } finally {
      gpu.destroy();
    }
  }, 400_000);
});

describe('matmul with K = 0', () => {
  it('gives beta·C + bias on every path (as BLAS does), binding neither empty operand', async () => {
    const gpu = await testGpu();
    const rng = new Rng(19);
    const paths: MatmulOptions['path'][] = ['auto', 'tiled', 'gemv', ...(cpuTiledHere(gpu) ? (['cpu-tiled', 'cpu-gemv'] as const) : [])];
    for (const path of paths) {
      for (const cType of ['f32', 'f16'] as const) {
        // Two batch items of [3, 5] at row stride 7, C offset 2: elements outside them must stay as they were.
        const c0 = Float32Array.from(roundToF16(rng.randn(2 + 2 * 21)));
        const bias = rng.randn(5);
        const C = gpu.tensor([c0.length], cType, c0);
        const A = gpu.tensor([2, 3, 0], 'f32');
        const B = gpu.tensor([5, 0], 'f16');
        matmul(gpu, A, B, { transB: true, out: C, beta: -0.5, alpha: 3, bias: gpu.tensor([5], 'f32', bias), ldc: 7, strideC: 21, offsetC: 2, batch: 2, m: 3, n: 5, k: 0, path });
        const want = Float64Array.from(c0);
        for (let z = 0; z < 2; z++) for (let m = 0; m < 3; m++) for (let n = 0; n < 5; n++) {
          const i = 2 + z * 21 + m * 7 + n;
          want[i] = -0.5 * c0[i] + bias[n];
        }
        expectClose(await C.read(), cType === 'f16' ? roundToF16(want) : want, { atol: 2e-3, rtol: 2e-3 }, `K = 0 ${path} ${cType}`);
      }
    }
  });
});

describe('matmul backward', () => {
  const cases: Array<[string, number, number, number, { tA?: boolean; tB?: boolean; batch?: number; aB?: boolean; bB?: boolean }]> = [
    ['NN', 17, 9, 13, {}],
    ['NT', 5, 33, 7, { tB: true }],
    ['TN', 3, 8, 19, { tA: true }],
    ['TT', 12, 6, 9, { tA: true, tB: true }],
    ['batched, B broadcast (stacked)', 6, 5, 7, { batch: 3, aB: true, tB: true }],
    ['batched, B broadcast, A transposed', 6, 5, 7, { batch: 2, aB: true, tA: true }],
    ['batched, A broadcast', 4, 9, 6, { batch: 2, bB: true }],
    ['both batched', 7, 3, 5, { batch: 2, aB: true, bB: true, tA: true, tB: true }],
  ];
  for (const [name, M, N, K, o] of cases) {
    it(`matches the reference and finite differences: ${name}`, async () => {
      const gpu = await testGpu();
      const rng = new Rng(M * 100 + N);
      const p = { ...problem(M, N, K, o), alpha: 0.75 };
      const aShape = shapeOf(o.tA ? K : M, o.tA ? M : K, !!o.aB, p.batch);
      const bShape = shapeOf(o.tB ? N : K, o.tB ? K : N, !!o.bB, p.batch);
      const a = rng.randn(aShape.reduce((x, y) => x * y, 1));
      const b = rng.randn(bShape.reduce((x, y) => x * y, 1));
      const dc = rng.randn(p.batch * M * N);
      const A = gpu.tensor(aShape, 'f32', a);
      const B = gpu.tensor(bShape, 'f32', b);
      const dC = gpu.tensor([p.batch, M, N], 'f32', dc);
      const g = matmulBackward(gpu, A, B, dC, { transA: o.tA, transB: o.tB, alpha: 0.75, needBias: true });
      const ref = matmulBackwardRef(a, b, dc, p);
      const [dA, dB, dBias] = [await g.dA!.read(), await g.dB!.read(), await g.dBias!.read()];
      expectClose(dA, ref.dA, TOL, 'dA');
      expectClose(dB, ref.dB, TOL, 'dB');
      expectClose(dBias, ref.dBias, TOL, 'dBias');
      // GPU forward, loss = <dC, C>: its directional derivatives are the gradients' projections.
      const loss = async (aa: Float32Array, bb: Float32Array) => {
        const At = gpu.tensor(aShape, 'f32', aa);
        const Bt = gpu.tensor(bShape, 'f32', bb);
        const C = matmul(gpu, At, Bt, { transA: o.tA, transB: o.tB, alpha: 0.75 });
        const l = dot(await C.read(), dc);
        [At, Bt, C].forEach((t) => t.dispose());
        return l;
      };
      await checkDirectional((x) => loss(x, b), a, dA, rng, { what: 'dA (gpu fd)' });
      await checkDirectional((x) => loss(a, x), b, dB, rng, { what: 'dB (gpu fd)' });
      // Reference backward against finite differences of the reference forward (bilinear: only rounding error).
      const refLoss = (aa: ArrayLike<number>, bb: ArrayLike<number>) => dot(matmulRef(aa, bb, p, undefined, p.batch * M * N), dc);
      await checkDirectional((x) => refLoss(x, b), a, ref.dA, rng, { eps: 1e-2, rtol: 1e-4, what: 'dA (ref fd)' });
      await checkDirectional((x) => refLoss(a, x), b, ref.dB, rng, { eps: 1e-2, rtol: 1e-4, what: 'dB (ref fd)' });
      [A, B, dC, g.dA, g.dB, g.dBias].forEach((t) => (t as Tensor).dispose());
    });
  }

  it('skips gradients that are not wanted', async () => {
    const gpu = await testGpu();
    const A = gpu.tensor([3, 4], 'f32');
    const W = gpu.tensor([5, 4], 'f16');
    const dC = gpu.tensor([3, 5], 'f32');
    const g = matmulBackward(gpu, A, W, dC, { transB: true, needB: false });
    expect(g.dB).toBeUndefined();
    expect(g.dA?.shape).toEqual([3, 4]);
    expect(() => matmulBackward(gpu, A, W, gpu.tensor([3, 4], 'f32'), { transB: true })).toThrowError(ShapeError);
  });
});

describe('matmul cpu-gemv path (software adapters: few rows times a [N, K] weight)', () => {
  it('is picked for M <= 8 with B stored [N, K] and K in fours, on this adapter only', async () => {
    const gpu = await testGpu();
    const here = cpuTiledHere(gpu) ? 'cpu-gemv' : 'gemv';
    expect(selectMatmulPath(gpu, 'f32', 'f32', 1, 151936, 64, { transB: true })).toBe(here);
    expect(selectMatmulPath(gpu, 'f32', 'f16', GEMV_MAX_M, 100, 36, { transB: true })).toBe(here);
    expect(selectMatmulPath(gpu, 'f32', 'f32', CPU_GEMV_MAX_M, 100, 36, { transB: true })).toBe(cpuTiledHere(gpu) ? 'cpu-gemv' : 'tiled');
    expect(selectMatmulPath(gpu, 'f32', 'f32', CPU_GEMV_MAX_M + 1, 100, 36, { transB: true })).toBe(cpuTiledHere(gpu) ? 'cpu-tiled' : 'tiled');
    expect(selectMatmulPath(gpu, 'f32', 'f32', 1, 100, 38, { transB: true })).toBe('gemv');
    expect(selectMatmulPath(gpu, 'f32', 'f32', 1, 100, 36)).toBe('gemv');
    expect(selectMatmulPath(gpu, 'f32', 'f32', 1, 100, 36, { transB: true, lda: 38 })).toBe('gemv');
    const hw = {
      features: { shaderF16: true, subgroups: true, timestampQuery: false, subgroupMatrix: false, subgroupMatrixConfigs: [] },
      variants: chooseVariants({ shaderF16: true, subgroups: true, timestampQuery: false, subgroupMatrix: false, subgroupMatrixConfigs: [] }),
      adapter: { vendor: 'nvidia', architecture: 'hopper', device: 'H200', description: '', backend: 'vulkan' },
    };
    expect(selectMatmulPath(hw, 'f32', 'f32', 1, 100, 36, { transB: true })).toBe('gemv');
  });

  it('matches the reference for N not a multiple of 8 and K not a multiple of 32, f32 and f16 weights', async () => {
    const gpu = await testGpu();
    const rng = new Rng(21);
    for (const [M, N, K] of [
      [1, 1, 4],
      [1, 1001, 36],
      [2, 37, 100],
      [3, 517, 64],
      [4, 9, 260],
      [7, 45, 36],
      // Past 8 rows the kernel is compiled for M rounded up to a multiple of 4; the extra rows are never stored.
      [9, 37, 20],
      [16, 45, 36],
      [21, 100, 12],
      [24, 9, 8],
    ]) {
      await runCase(gpu, rng, problem(M, N, K, { tB: true }), { path: 'cpu-gemv' });
    }
    await runCase(gpu, rng, problem(2, 301, 68, { tB: true }), { path: 'cpu-gemv', bType: 'f16' });
    await runCase(gpu, rng, problem(1, 77, 12, { tB: true }), { path: 'cpu-gemv', aType: 'f16', bType: 'f16' });
  });

  it('batches, with either operand broadcast', async () => {
    const gpu = await testGpu();
    const rng = new Rng(22);
    await runCase(gpu, rng, problem(3, 50, 12, { tB: true, batch: 2, aB: true }), { path: 'cpu-gemv' });
    await runCase(gpu, rng, problem(1, 19, 8, { tB: true, batch: 3, bB: true }), { path: 'cpu-gemv' });
    await runCase(gpu, rng, problem(2, 21, 40, { tB: true, batch: 2, aB: true, bB: true }), { path: 'cpu-gemv' });
  });

  // 10 rows: a padded kernel (12 rows), whose extra rows must not reach the next batch item's C.
  it.each([3, 10])('fuses alpha, beta, bias and f16 output, on strided sub-matrices (M %i)', async (M) => {
    const gpu = await testGpu();
    const rng = new Rng(23);
    const [N, K] = [45, 20];
    const [lda, ldb, ldc] = [K + 4, K + 8, N + 2];
    const p: MatmulRefProblem = {
      batch: 2, M, N, K, transB: true, lda, ldb, ldc, strideA: M * lda + 4, strideB: N * ldb + 8, strideC: M * ldc + 1,
      offsetA: 4, offsetB: 8, offsetC: 5, alpha: 0.5, beta: -1.5, offsetBias: 2,
    };
    const a = rng.randn(4 + 2 * p.strideA);
    const b = rng.randn(8 + 2 * p.strideB);
    const c0 = roundToF16(rng.randn(5 + 2 * p.strideC));
    const bias = rng.randn(N + 2);
    const A = gpu.tensor([1, a.length], 'f32', a);
    const B = gpu.tensor([1, b.length], 'f32', b);
    const C = gpu.tensor([1, c0.length], 'f16', c0);
    const Bias = gpu.tensor([N + 2], 'f32', bias);
    matmul(gpu, A, B, {
      out: C, bias: Bias, batch: 2, m: M, n: N, k: K, transB: true, lda, ldb, ldc, strideA: p.strideA, strideB: p.strideB,
      strideC: p.strideC, offsetA: 4, offsetB: 8, offsetC: 5, offsetBias: 2, alpha: 0.5, beta: -1.5, path: 'cpu-gemv',
    });
    const want = roundToF16(matmulRef(a, b, { ...p, bias }, c0));
    expectClose(await C.read(), want, { atol: 1e-2, rtol: 2e-3 }, 'cpu-gemv epilogue');
    [A, B, C, Bias].forEach((t) => t.dispose());
  });

  it('refuses layouts it cannot run, naming the reason', async () => {
    const gpu = await testGpu();
    const a = gpu.tensor([CPU_GEMV_MAX_M + 1, 8], 'f32');
    expect(() => matmul(gpu, a, gpu.tensor([6, 8], 'f32'), { transB: true, path: 'cpu-gemv' })).toThrowError(/cpu-gemv path takes M <= 24/);
    const a2 = gpu.tensor([2, 6], 'f32');
    expect(() => matmul(gpu, a2, gpu.tensor([7, 6], 'f32'), { transB: true, path: 'cpu-gemv' })).toThrowError(/cpu-gemv path needs K/);
    expect(() => matmul(gpu, gpu.tensor([2, 8], 'f32'), gpu.tensor([8, 7], 'f32'), { path: 'cpu-gemv' })).toThrowError(/B \[N, K\] only/);
  });
});
