import { describe, expect, it } from 'vitest';
import { roundToF16, type Gpu } from '../src/index.js';
import { matmul, pickSgmTile, sgmRowExponents, SGM_TILES } from '../src/kernels/matmul.js';
import { SGM_SCALE_TARGET_EXP, sgmBlock, sgmFromStorage, sgmSharedBytes, sgmTileKey, sgmTileUnfit, type SgmAF32, type SgmTile } from '../src/kernels/matmul-sgm.js';
import { matmulRef, rowExponentRef, type MatmulRefProblem } from '../src/reference/matmul.js';
import { Rng, expectClose, skipShaderOptimization, testGpu } from './helpers.js';

// Test-only kernels (emulated matrix operations), which lavapipe spends most of this file compiling.
skipShaderOptimization();

const CFG = { componentType: 'f16', resultComponentType: 'f32', M: 16, N: 16, K: 16 };
// The emulated kernel uses 4x4x4 fragments, and every invocation does whole products: small tiles keep it quick
// (each pipeline still takes lavapipe ~8 s to compile).
const T1: SgmTile = { wm: 2, wn: 1, fm: 1, fn: 2, bk: 4 };
const T2: SgmTile = { wm: 1, wn: 2, fm: 2, fn: 1, bk: 8 };

interface Case {
  M: number;
  N: number;
  K: number;
  tA?: boolean;
  tB?: boolean;
  aType?: 'f32' | 'f16';
  batch?: number;
  tile: SgmTile;
  /** Extra elements per row (unaligned leading dimensions force the scalar loads). */
  padA?: number;
  padB?: number;
  /** How the kernel takes f32 A (unrounded then): 'split' and 'scaled' should keep near-f32 accuracy. */
  aF32?: SgmAF32;
  /** Multiplies row m of A (all batch items) by rowScale(m): rows far from 1 in magnitude. */
  rowScale?: (m: number) => number;
  /** Bias: unit normal (default), scaled by this factor, or 0 for none (no bias binding). */
  biasScale?: number;
  /** K split over this many layers of workgroups (partial sums added by a second pass). */
  splitK?: number;
}

/** Runs the emulated subgroup-matrix kernel (lavapipe has no subgroup matrices) against the f64 reference. */
async function runEmulated(gpu: Gpu, rng: Rng, c: Case) {
  const batch = c.batch ?? 1;
  const [aRows, aCols] = c.tA ? [c.K, c.M] : [c.M, c.K];
  const [bRows, bCols] = c.tB ? [c.N, c.K] : [c.K, c.N];
  const lda = aCols + (c.padA ?? 0);
  const ldb = bCols + (c.padB ?? 0);
  const p: MatmulRefProblem = {
    batch, M: c.M, N: c.N, K: c.K, transA: c.tA, transB: c.tB, lda, ldb, ldc: c.N,
    strideA: aRows * lda, strideB: 0, strideC: c.M * c.N, alpha: 0.5,
  };
  const exact = c.aF32 === 'split' || c.aF32 === 'scaled';
  const a = exact ? rng.randn(batch * aRows * lda) : roundToF16(rng.randn(batch * aRows * lda));
  if (c.rowScale) {
    for (let i = 0; i < a.length; i++) {
      const [r, col] = [Math.floor(i / lda) % aRows, i % lda];
      a[i] = Math.fround(a[i] * c.rowScale(c.tA ? col : r));
    }
  }
  const b = roundToF16(rng.randn(bRows * ldb));
  const bias = rng.randn(c.N, c.biasScale ?? 1);
  const A = gpu.tensor([batch * aRows, lda], c.aType ?? 'f16', a);
  const B = gpu.tensor([bRows, ldb], 'f16', b);
  const Bias = gpu.tensor([c.N], 'f32', bias);
  const C = matmul(gpu, A, B, {
    transA: c.tA, transB: c.tB, batch, m: c.M, n: c.N, k: c.K, lda, ldb, strideA: p.strideA, strideB: 0, alpha: 0.5,
    bias: c.biasScale === 0 ? undefined : Bias, out: gpu.tensor([batch, c.M, c.N], 'f32'), path: 'subgroup-matrix', sgmTile: c.tile, sgmEmulate: true, sgmAF32: c.aF32, splitK: c.splitK,
  });
  const want = matmulRef(a, b, { ...p, bias: c.biasScale === 0 ? undefined : bias }, undefined, batch * c.M * c.N);
  const got = await C.read();
  [A, B, C, Bias].forEach((t) => t.dispose());
  if (c.rowScale) return { got, want, bias };
  const tol = exact ? { atol: 1e-4, rtol: 1e-4 } : { atol: 2e-3, rtol: 2e-3 };
  expectClose(got, want, tol, `sgm ${JSON.stringify(c)}`);
  return { got, want, bias };
}

/** The worst row's error relative to that row's largest magnitude (C rows of N). */
function worstRowError(got: ArrayLike<number>, want: ArrayLike<number>, N: number): number {
  let worst = 0;
  for (let r = 0; r * N < want.length; r++) {
    let d = 0;
    let m = 0;
    for (let n = r * N; n < (r + 1) * N; n++) {
      d = Math.max(d, Number.isFinite(got[n]) ? Math.abs(got[n] - want[n]) : Infinity);
      m = Math.max(m, Math.abs(want[n]));
    }
    if (m > 0) worst = Math.max(worst, d / m);
  }
  return worst;
}

describe('subgroup-matrix matmul (emulated matrix operations)', () => {
  it('matches the reference for both layouts of each operand, edge tiles, vec4 and scalar loads, batches, the epilogue', async () => {
    const gpu = await testGpu();
    const rng = new Rng(11);
    // Three pipelines (each ~8 s to compile on lavapipe) between them cover both layouts of each operand.
    await runEmulated(gpu, rng, { M: 19, N: 21, K: 20, tile: T1, batch: 2 });
    await runEmulated(gpu, rng, { M: 20, N: 9, K: 13, tA: true, tB: true, tile: T2, padA: 1 });
    // f32 activations are rounded to f16 as they are staged; unaligned B rows take the scalar loads.
    await runEmulated(gpu, rng, { M: 10, N: 19, K: 17, tB: true, aType: 'f32', tile: T1, padB: 3, aF32: 'round' });
  }, 240_000);

  it('reads whole blocks straight from storage where the tile asks, staging the partial ones, in every layout', async () => {
    const gpu = await testGpu();
    const rng = new Rng(17);
    // 8x8 blocks: of 19x21 four are whole; K 24 = 6 steps of 4. Rows padded to multiples of 8 elements.
    const tile: SgmTile = { ...T1, from: 'storage' };
    await runEmulated(gpu, rng, { M: 19, N: 21, K: 24, tile, batch: 2, padB: 3 });
    await runEmulated(gpu, rng, { M: 19, N: 21, K: 24, tA: true, tB: true, tile, padA: 5 });
    expect(sgmTileKey(tile)).toBe('2x1.1x2.k4.st');
  }, 240_000);

  it('splits K over layers whose partial sums a second pass adds: staged, from storage, and with scaled f32 A', async () => {
    const gpu = await testGpu();
    const rng = new Rng(19);
    // K 44 in 3 layers of 16 (4-steps of T1's bk 4 -> kPer 16; the last 12); 2 batches, alpha, bias.
    await runEmulated(gpu, rng, { M: 19, N: 21, K: 44, tile: T1, batch: 2, splitK: 3 });
    // Fragments from storage in whole blocks and layers (K 48 = 2 layers of 24).
    await runEmulated(gpu, rng, { M: 19, N: 21, K: 48, tile: { ...T1, from: 'storage' }, padB: 3, splitK: 2 });
    // f32 A scaled per row: the row exponents serve every layer.
    const { got, want } = await runEmulated(gpu, rng, { M: 12, N: 9, K: 40, tB: true, aType: 'f32', tile: T1, aF32: 'scaled', splitK: 4, rowScale: (m) => 10 ** ((m % 7) - 4) });
    expect(worstRowError(got, want, 9)).toBeLessThan(1e-5);
  }, 240_000);

  it('takes fragments from storage only for f16 operands with 16-byte rows, offsets and strides', () => {
    const st: SgmTile = { ...T1, from: 'storage' };
    expect(sgmFromStorage(st, 'f16', 'f16', 24, 16, 0, 8, 456, 0)).toBe(true);
    expect(sgmFromStorage(st, 'f16', 'f16', 24, 20, 0, 8, 456, 0)).toBe(false);
    expect(sgmFromStorage(st, 'f32', 'f16', 24, 16, 0, 8, 456, 0)).toBe(false);
    expect(sgmFromStorage(T1, 'f16', 'f16', 24, 16, 0, 8, 456, 0)).toBe(false);
    expect(sgmTileUnfit({ ...SGM_TILES[0], from: 'texture' as 'storage' }, CFG)).toMatch(/from must be/);
  });

  it('double-buffers the stages and rasterizes workgroups in groups of block rows, in every layout', async () => {
    const gpu = await testGpu();
    const rng = new Rng(13);
    // 5 block rows in groups of 3 (one partial group), 3 block columns, K over 6 steps with a tail, 2 batches.
    await runEmulated(gpu, rng, { M: 37, N: 19, K: 23, tile: { ...T1, stages: 2, group: 3 }, batch: 2 });
    await runEmulated(gpu, rng, { M: 20, N: 9, K: 13, tA: true, tB: true, tile: { ...T2, stages: 2, group: 2 }, padA: 1 });
    // The split-A second stage buffer sits at the same offsets as A's.
    await runEmulated(gpu, rng, { M: 13, N: 18, K: 40, tB: true, aType: 'f32', tile: { ...T1, stages: 2 }, aF32: 'split' });
  }, 240_000);

  it('keeps f32 accuracy for f32 A split into two f16 parts', async () => {
    const gpu = await testGpu();
    // Rounding A to f16 would miss this tolerance by about 10x (K = 40, unit normal values).
    await runEmulated(gpu, new Rng(12), { M: 13, N: 18, K: 40, tB: true, aType: 'f32', tile: T1, aF32: 'split' });
  }, 240_000);

  it('keeps f32 accuracy in every row when f32 A is scaled per row, from gradient-sized rows to huge ones', async () => {
    const gpu = await testGpu();
    // Rows from 1e-12 to 1e6 in magnitude, one of zeros: f16 alone (max 65504, subnormal below 6e-5) loses the
    // small ones and overflows on the big ones.
    const rowScale = (m: number) => (m === 3 ? 0 : 10 ** ((m % 10) * 2 - 12));
    // A bias too small to hide any row's error (it moves the exponents' binding), and none.
    const cases: Case[] = [
      { M: 13, N: 18, K: 40, tB: true, aType: 'f32', tile: T1, rowScale, batch: 2, biasScale: 1e-20 },
      { M: 11, N: 9, K: 21, tA: true, aType: 'f32', tile: T2, rowScale, padA: 2, biasScale: 0 },
    ];
    for (const c of cases) {
      const scaled = await runEmulated(gpu, new Rng(14), { ...c, aF32: 'scaled' });
      expect(worstRowError(scaled.got, scaled.want, c.N)).toBeLessThan(2e-5);
      // The row of zeros gives exactly the bias.
      for (let z = 0; z < (c.batch ?? 1); z++) {
        for (let n = 0; n < c.N; n++) expect(scaled.got[(z * c.M + 3) * c.N + n]).toBe(c.biasScale ? Math.fround(scaled.bias[n]) : 0);
      }
    }
    // The same rows unscaled: the test would catch a scale that is not applied.
    const split = await runEmulated(gpu, new Rng(14), { ...cases[0], aF32: 'split' });
    expect(worstRowError(split.got, split.want, cases[0].N)).toBeGreaterThan(1e-2);
  }, 240_000);
});

describe('row exponents of the scaled split', () => {
  it('match the reference for zero, subnormal, inf, NaN and ordinary rows, transposed, batched and offset', async () => {
    const gpu = await testGpu();
    const rng = new Rng(15);
    for (const transA of [false, true]) {
      const [M, K, batch, lda, offA] = [9, 70, 2, 75, 3];
      const rows = transA ? K : M;
      const strideA = rows * lda + 5;
      const a = new Float32Array(offA + batch * strideA);
      for (let i = 0; i < a.length; i++) a[i] = rng.normal() * 10 ** rng.int(-20, 20);
      const at = (z: number, m: number, k: number) => offA + z * strideA + (transA ? k * lda + m : m * lda + k);
      for (let z = 0; z < batch; z++) {
        for (let k = 0; k < K; k++) {
          a[at(z, 0, k)] = 0;
          a[at(z, 1, k)] = k === 5 ? -3e-40 : 0; // subnormal maximum
          a[at(z, 4, k)] = k === 7 ? Infinity : 1;
          a[at(z, 5, k)] = k === 60 ? NaN : -2;
          a[at(z, 6, k)] = k === 9 ? -(2 ** 15) : 2 ** 14; // the maximum is exactly a power of two
        }
      }
      const A = gpu.tensor([a.length], 'f32', a);
      const exps = sgmRowExponents(gpu, A.binding(), { M, K, lda, offA, sA: strideA, batch, transA });
      const got = await exps.read();
      const want = rowExponentRef(a, { batch, M, K, transA, lda, strideA, offsetA: offA }, SGM_SCALE_TARGET_EXP);
      expect(Array.from(got)).toEqual(Array.from(want));
      expect(want[1]).toBe(126);
      expect([want[0], want[4], want[5]]).toEqual([0, 0, 0]);
      expect(want[6]).toBe(-1);
      [A, exps].forEach((t) => t.dispose());
    }
  });
});

describe('subgroup-matrix tiles', () => {
  it('are valid for the 16x16x16 config and fit 48 KiB of workgroup memory in every layout', () => {
    for (const t of SGM_TILES) {
      expect(sgmTileUnfit(t, CFG)).toBeUndefined();
      for (const transA of [false, true]) {
        for (const transB of [false, true]) expect(sgmSharedBytes(t, CFG, { transA, transB })).toBeLessThanOrEqual(48 * 1024);
      }
    }
    expect(sgmTileUnfit({ wm: 1, wn: 1, fm: 1, fn: 1, bk: 24 }, CFG)).toMatch(/multiple of 16/);
    const t = SGM_TILES[0];
    expect(sgmTileUnfit({ ...t, stages: 3 as 2 }, CFG)).toMatch(/stages must be 1 or 2, got 3/);
    expect(sgmTileUnfit({ ...t, group: -1 }, CFG)).toMatch(/group must be a non-negative integer/);
    // Two stages double the A and B buffers, not the epilogue scratch.
    const one = sgmSharedBytes(t, CFG, { transA: false, transB: false });
    const two = sgmSharedBytes({ ...t, stages: 2 }, CFG, { transA: false, transB: false });
    const scratch = 4 * t.wm * t.wn * CFG.M * CFG.N;
    expect(two - scratch).toBe(2 * (one - scratch));
    expect(two).toBeLessThanOrEqual(48 * 1024);
    expect(sgmTileKey({ ...t, stages: 2, group: 8 })).toBe(`${sgmTileKey(t)}.s2.g8`);
  });

  it('takes 128-thread tiles where the grid fills the GPU and 256-thread ones where it does not', () => {
    // 4096² in 128x128 tiles: 1024 workgroups; T=512 x 3584: 112 (the H200 measurements behind SGM_TILES).
    expect(pickSgmTile(CFG, 4096, 4096, 1)).toBe(SGM_TILES[0]);
    expect(pickSgmTile(CFG, 512, 18944, 1)).toBe(SGM_TILES[0]);
    expect(pickSgmTile(CFG, 512, 3584, 1)).toBe(SGM_TILES[1]);
    expect(pickSgmTile(CFG, 512, 3584, 4)).toBe(SGM_TILES[0]);
    expect(sgmBlock(SGM_TILES[0], CFG)).toEqual(sgmBlock(SGM_TILES[1], CFG));
  });
});
