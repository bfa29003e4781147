import { describe, expect, it } from 'vitest';
import { ShapeError, roundToF16, type Gpu } from '../src/index.js';
import { GEMV_MAX_M, matmul, type MatmulOptions } from '../src/kernels/matmul.js';
import { gemvVecCols, gemvVecSplit, gemvVecUnfit, gemvVecWgsl } from '../src/kernels/gemv.js';
import { matmulRef } from '../src/reference/matmul.js';
import { Rng, expectClose, freshGpu, testGpu } from './helpers.js';

/** The GPU GEMV kernels, forced here (lavapipe would pick cpu-gemv): y = alpha·x·Wᵀ + beta·y + bias, W [N, K]. */

interface Case {
  M: number;
  N: number;
  K: number;
  batch?: number;
  /** Batch strides (0 broadcasts); offsets of A, B, C; padding past each row (lda - K, ldb - K). */
  sA?: number;
  sB?: number;
  offA?: number;
  offB?: number;
  padA?: number;
  padB?: number;
  aType?: 'f32' | 'f16';
  bType?: 'f32' | 'f16';
  cType?: 'f32' | 'f16';
  epilogue?: boolean;
}

/** Runs one case through matmul with `opts` and returns the dispatched op names. */
async function runGemv(gpu: Gpu, rng: Rng, c: Case, opts: Pick<MatmulOptions, 'gemv'>): Promise<Set<string>> {
  const batch = c.batch ?? 1;
  const lda = c.K + (c.padA ?? 0);
  const ldb = c.K + (c.padB ?? 0);
  const offA = c.offA ?? 0;
  const offB = c.offB ?? 0;
  const sA = c.sA ?? (batch > 1 ? c.M * lda : 0);
  const sB = c.sB ?? 0;
  const offC = c.epilogue ? 3 : 0;
  const sC = c.M * c.N;
  const round = (t: 'f32' | 'f16' | undefined, v: Float32Array) => (t === 'f16' ? roundToF16(v) : v);
  const a = round(c.aType, rng.randn(offA + (batch - 1) * sA + c.M * lda));
  const b = round(c.bType, rng.randn(offB + (batch - 1) * sB + c.N * ldb));
  const c0 = round(c.cType, rng.randn(offC + batch * sC));
  const bias = rng.randn(c.N + 1);
  const A = gpu.tensor([1, a.length], c.aType ?? 'f32', a);
  const B = gpu.tensor([1, b.length], c.bType ?? 'f32', b);
  const C = gpu.tensor([1, c0.length], c.cType ?? 'f32', c0);
  const Bias = gpu.tensor([bias.length], 'f32', bias);
  const epi = c.epilogue ? { alpha: 0.75, beta: -0.5, bias: Bias, offsetBias: 1 } : {};
  gpu.profiling = true;
  matmul(gpu, A, B, {
    out: C, batch, m: c.M, n: c.N, k: c.K, lda, ldb, ldc: c.N, transB: true, strideA: sA, strideB: sB, strideC: sC,
    offsetA: offA, offsetB: offB, offsetC: offC, path: 'gemv', ...opts, ...epi,
  });
  const got = await C.read();
  // The readback's copy is timed too; the kernels are what this asks about.
  const ops = new Set((await gpu.takeTimings()).map((t) => t.op).filter((op) => op.startsWith('matmul')));
  gpu.profiling = false;
  const want = matmulRef(a, b, {
    batch, M: c.M, N: c.N, K: c.K, transB: true, lda, ldb, ldc: c.N, strideA: sA, strideB: sB, strideC: sC,
    offsetA: offA, offsetB: offB, offsetC: offC, ...(c.epilogue ? { alpha: 0.75, beta: -0.5, bias, offsetBias: 1 } : {}),
  }, c0);
  const low = c.aType === 'f16' || c.bType === 'f16' || c.cType === 'f16';
  expectClose(got, c.cType === 'f16' ? roundToF16(want) : want, low ? { atol: 1e-2, rtol: 2e-3 } : { atol: 1e-4, rtol: 1e-4 }, `gemv ${JSON.stringify(c)} ${JSON.stringify(opts)}`);
  [A, B, C, Bias].forEach((t) => t.dispose());
  return ops;
}

describe('matmul gemv path, vec kernel (16-byte loads of W [N, K])', () => {
  it('matches the float64 reference over M, odd N, K of many units, both weight dtypes', async () => {
    const gpu = await testGpu();
    const rng = new Rng(41);
    const cases: Case[] = [
      // N odd: the last thread's second row lies past N. K of 1 unit, a few, and more than a split's worth.
      { M: 1, N: 37, K: 8, bType: 'f16' },
      { M: 2, N: 301, K: 72, bType: 'f16' },
      { M: GEMV_MAX_M, N: 5, K: 2056, bType: 'f16' },
      { M: 3, N: 64, K: 1000, bType: 'f32' },
      { M: 1, N: 1, K: 4, bType: 'f32' },
      { M: 4, N: 129, K: 40, aType: 'f16', bType: 'f16' },
      { M: 2, N: 33, K: 520, aType: 'f16', bType: 'f32' },
    ];
    for (const c of cases) {
      const ops = await runGemv(gpu, rng, c, {});
      expect([...ops], JSON.stringify(c)).toEqual(['matmul-gemv-vec']);
    }
  });

  it('takes batches, broadcast weights, padded rows, offsets and the epilogue (alpha, beta, bias, f16 C)', async () => {
    const gpu = await testGpu();
    const rng = new Rng(42);
    const cases: Case[] = [
      { M: 2, N: 45, K: 80, batch: 3, offA: 4, offB: 16, padA: 12, padB: 8, bType: 'f16', epilogue: true },
      { M: 3, N: 20, K: 24, batch: 2, sB: 20 * 32, padB: 8, offB: 8, bType: 'f16', cType: 'f16', epilogue: true },
      { M: 1, N: 77, K: 44, batch: 2, sA: 0, offA: 8, padA: 4, padB: 4, bType: 'f32', epilogue: true },
    ];
    for (const c of cases) expect([...(await runGemv(gpu, rng, c, {}))]).toEqual(['matmul-gemv-vec']);
  });

  it('leaves layouts it cannot load in 16-byte units to the scalar kernel, and refuses them when forced', async () => {
    const gpu = await testGpu();
    const rng = new Rng(43);
    // K not a multiple of 8 f16; B's offset off a unit; A's offset off a vec4.
    const misaligned: Case[] = [
      { M: 2, N: 19, K: 12, bType: 'f16' },
      { M: 1, N: 19, K: 16, offB: 4, bType: 'f16' },
      { M: 1, N: 19, K: 16, offA: 2, bType: 'f32' },
    ];
    for (const c of misaligned) {
      expect([...(await runGemv(gpu, rng, c, {}))]).toEqual(['matmul-gemv']);
      await expect(runGemv(gpu, rng, c, { gemv: 'vec' })).rejects.toThrow(ShapeError);
    }
    // An aligned case forced onto the scalar kernel.
    expect([...(await runGemv(gpu, rng, { M: 2, N: 19, K: 16, bType: 'f16' }, { gemv: 'scalar' }))]).toEqual(['matmul-gemv']);
  });

  it('runs each window of a weight larger than one binding (maxBinding 4096 bytes)', async () => {
    const gpu = await freshGpu({ maxBindingBytes: 4096 });
    try {
      const rng = new Rng(44);
      // W is 300 rows of 64 f16 (38 KB): windows of whole rows, each starting on a 16-byte unit.
      expect([...(await runGemv(gpu, rng, { M: 3, N: 300, K: 64, bType: 'f16', epilogue: true }, {}))]).toEqual(['matmul-gemv-vec']);
    } finally {
      gpu.destroy();
    }
  });

  it('splits K more for narrow weights, and never below two units a thread', () => {
    // Qwen2.5-7B decode: gate_proj's 18944 rows fill the GPU with the fewest threads a row; over a long K, 512 rows
    // take more threads a row than 3584 do.
    expect(gemvVecSplit(18944, 3584, 'f16')).toBe(32);
    expect(gemvVecSplit(3584, 3584, 'f16')).toBeGreaterThan(32);
    expect(gemvVecSplit(512, 18944, 'f16')).toBeGreaterThan(gemvVecSplit(3584, 18944, 'f16'));
    for (const [n, k, t] of [[512, 3584, 'f16'], [8, 64, 'f32'], [8, 4096, 'f16'], [1, 8, 'f16']] as const) {
      const s = gemvVecSplit(n, k, t);
      expect(Number.isInteger(Math.log2(s)) && s >= 32 && s <= 256).toBe(true);
      if (s > 32) expect(k / (t === 'f16' ? 8 : 4) / s).toBeGreaterThanOrEqual(2);
      expect(gemvVecCols(s) * s).toBe(512);
    }
  });

  it('names why a layout does not fit', () => {
    const base = { M: 1, K: 64, transA: false, transB: true, lda: 64, ldb: 64, offA: 0, offB: 0, sA: 0, sB: 0 };
    const types = { a: 'f32', b: 'f16' } as const;
    expect(gemvVecUnfit(types, base, 256)).toBeUndefined();
    expect(gemvVecUnfit(types, { ...base, transB: false }, 256)).toMatch(/B \[N, K\]/);
    expect(gemvVecUnfit(types, { ...base, ldb: 68 }, 256)).toMatch(/multiples of 8/);
    expect(gemvVecUnfit({ a: 'f32', b: 'f32' }, { ...base, ldb: 68 }, 256)).toBeUndefined();
    expect(gemvVecUnfit(types, { ...base, sA: 6 }, 256)).toMatch(/multiples of 4/);
    expect(gemvVecUnfit(types, { ...base, M: GEMV_MAX_M + 1 }, 256)).toMatch(/M <=/);
    expect(gemvVecUnfit(types, base, 8)).toMatch(/16-byte/);
  });

  it('reads f16 weights as 16-byte units and converts them without f16 arithmetic', () => {
    const spec = { aType: 'f32', bType: 'f16', cType: 'f32', biasType: undefined, transA: false, transB: true, beta: false } as const;
    const wgsl = gemvVecWgsl(spec, 2, 64);
    expect(wgsl).toMatch(/var<storage, read> B: array<vec4<u32>>/);
    expect(wgsl).toMatch(/unpack2x16float/);
    expect(wgsl).not.toMatch(/enable f16/);
  });
});
