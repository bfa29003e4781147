import { describe, expect, it } from 'vitest';
import { roundToF16, type Gpu } from '../src/index.js';
import { matmul, pickSgmTile, SGM_TILES } from '../src/kernels/matmul.js';
import { sgmBlock, sgmSharedBytes, sgmTileKey, sgmTileUnfit, type SgmTile } from '../src/kernels/matmul-sgm.js';
import { matmulRef, type MatmulRefProblem } from '../src/reference/matmul.js';
import { Rng, expectClose, testGpu } from './helpers.js';

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
  /** f32 A left unrounded and split into hi + lo f16 parts by the kernel: near-f32 accuracy expected. */
  splitA?: boolean;
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
  const a = c.splitA ? rng.randn(batch * aRows * lda) : roundToF16(rng.randn(batch * aRows * lda));
  const b = roundToF16(rng.randn(bRows * ldb));
  const bias = rng.randn(c.N);
  const A = gpu.tensor([batch * aRows, lda], c.aType ?? 'f16', a);
  const B = gpu.tensor([bRows, ldb], 'f16', b);
  const Bias = gpu.tensor([c.N], 'f32', bias);
  const C = matmul(gpu, A, B, {
    transA: c.tA, transB: c.tB, batch, m: c.M, n: c.N, k: c.K, lda, ldb, strideA: p.strideA, strideB: 0, alpha: 0.5,
    bias: Bias, out: gpu.tensor([batch, c.M, c.N], 'f32'), path: 'subgroup-matrix', sgmTile: c.tile, sgmEmulate: true, sgmSplitA: c.splitA,
  });
  const want = matmulRef(a, b, { ...p, bias }, undefined, batch * c.M * c.N);
  const tol = c.splitA ? { atol: 1e-4, rtol: 1e-4 } : { atol: 2e-3, rtol: 2e-3 };
  expectClose(await C.read(), want, tol, `sgm ${JSON.stringify(c)}`);
  [A, B, C, Bias].forEach((t) => t.dispose());
}

describe('subgroup-matrix matmul (emulated matrix operations)', () => {
  it('matches the reference for both layouts of each operand, edge tiles, vec4 and scalar loads, batches, the epilogue', async () => {
    const gpu = await testGpu();
    const rng = new Rng(11);
    // Three pipelines (each ~8 s to compile on lavapipe) between them cover both layouts of each operand.
    await runEmulated(gpu, rng, { M: 19, N: 21, K: 20, tile: T1, batch: 2 });
    await runEmulated(gpu, rng, { M: 20, N: 9, K: 13, tA: true, tB: true, tile: T2, padA: 1 });
    // f32 activations are rounded to f16 as they are staged; unaligned B rows take the scalar loads.
    await runEmulated(gpu, rng, { M: 10, N: 19, K: 17, tB: true, aType: 'f32', tile: T1, padB: 3 });
  }, 240_000);

  it('double-buffers the stages and rasterizes workgroups in groups of block rows, in every layout', async () => {
    const gpu = await testGpu();
    const rng = new Rng(13);
    // 5 block rows in groups of 3 (one partial group), 3 block columns, K over 6 steps with a tail, 2 batches.
    await runEmulated(gpu, rng, { M: 37, N: 19, K: 23, tile: { ...T1, stages: 2, group: 3 }, batch: 2 });
    await runEmulated(gpu, rng, { M: 20, N: 9, K: 13, tA: true, tB: true, tile: { ...T2, stages: 2, group: 2 }, padA: 1 });
    // The split-A second stage buffer sits at the same offsets as A's.
    await runEmulated(gpu, rng, { M: 13, N: 18, K: 40, tB: true, aType: 'f32', tile: { ...T1, stages: 2 }, splitA: true });
  }, 240_000);

  it('keeps f32 accuracy for f32 A split into two f16 parts', async () => {
    const gpu = await testGpu();
    // Rounding A to f16 would miss this tolerance by about 10x (K = 40, unit normal values).
    await runEmulated(gpu, new Rng(12), { M: 13, N: 18, K: 40, tB: true, aType: 'f32', tile: T1, splitA: true });
  }, 240_000);
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
