import { describe, expect, it } from 'vitest';
import { roundToF16 } from '../src/index.js';
import { attention, attentionForwardPath } from '../src/kernels/attention.js';
import { attentionBackward } from '../src/kernels/attention-backward.js';
import type { Gpu } from '../src/runtime/gpu.js';
import { sgmAttentionBytes, sgmAttentionKey, sgmAttentionUnfit, sgmAttentionWgsl, type SgmAttentionTile } from '../src/kernels/attention-sgm.js';
import { sgmMatmulWgsl } from '../src/kernels/matmul-sgm.js';
import { attentionRef, type AttentionDims } from '../src/reference/attention.js';
import { SGM_ATTENTION_BWD_TILE, sgmAttentionBwdBytes, sgmAttentionBwdUnfit, sgmDkvWgsl, sgmDqWgsl } from '../src/kernels/attention-sgm-bwd.js';
import { Rng, expectClose, skipShaderOptimization, testGpu } from './helpers.js';

// Test-only kernels (emulated matrix operations), which lavapipe spends most of this file compiling.
skipShaderOptimization();

interface Case extends AttentionDims {
  causal?: boolean;
  lengths?: number[];
  /** Multiplies q: large scores make row maxima jump between key tiles (the rescale path). */
  qScale?: number;
}

// Emulated 4x4x4 fragments with 8-lane subgroups (lavapipe): 2 subgroups = 8 query rows, 8-key tiles, so these
// small problems still span several query blocks and key tiles. One pipeline (D = 8) per way of keeping O.
const TILE = { nsub: 2, bk: 8 };
// Three pipelines cover each way of keeping O and each K layout (K in rows: the fragments tile); a fourth reads K
// and V from storage (two passes: both products from storage), whose emulated loads take lavapipe about a minute
// to compile. The cases' lengths leave partial key tiles, which it stages.
const TILES: SgmAttentionTile[] = [
  { ...TILE, kLayout: 'transposed' },
  { ...TILE, accum: 'fragments' },
  { ...TILE, accum: 'two-pass', kLayout: 'transposed' },
  { ...TILE, accum: 'two-pass', kvFrom: 'storage' },
];
const CASES: Case[] = [
  { B: 2, T: 21, S: 21, Hq: 6, Hkv: 2, D: 8, lengths: [21, 13] },
  { B: 1, T: 11, S: 30, Hq: 2, Hkv: 1, D: 8, causal: false },
  { B: 1, T: 26, S: 26, Hq: 2, Hkv: 2, D: 8, qScale: 6 },
  // Causal with S > T: a cached prefix every query row sees.
  { B: 1, T: 11, S: 30, Hq: 4, Hkv: 2, D: 8 },
];

describe('subgroup-matrix attention forward (emulated matrix operations)', () => {
  it('matches the float64 reference: GQA, causal and not, padding, rescaled rows; O in registers, in fragments, or two passes; K in rows or transposed', async () => {
    const gpu = await testGpu();
    for (const tile of TILES) for (const c of CASES) {
      const rng = new Rng(500 + c.T);
      const r = (n: number, s = 1) => roundToF16(rng.randn(n).map((x) => x * s));
      const x = { q: r(c.B * c.T * c.Hq * c.D, c.qScale ?? 1), k: r(c.B * c.S * c.Hkv * c.D), v: r(c.B * c.S * c.Hkv * c.D) };
      const q = gpu.tensor([c.B, c.T, c.Hq, c.D], 'f16', x.q);
      const k = gpu.tensor([c.B, c.S, c.Hkv, c.D], 'f16', x.k);
      const v = gpu.tensor([c.B, c.S, c.Hkv, c.D], 'f16', x.v);
      const lengths = c.lengths ? gpu.tensor([c.B], 'i32', c.lengths) : undefined;
      const { o, lse } = attention(gpu, q, k, v, { causal: c.causal, lengths, path: 'subgroup-matrix', sgmTile: tile, sgmEmulate: true });
      const ref = attentionRef(x.q, x.k, x.v, c, { causal: c.causal, lengths: c.lengths });
      const what = `${sgmAttentionKey(tile)} ${JSON.stringify(c)}`;
      // P is rounded to f16 before P·V, as on the tensor cores.
      expectClose(await o.read(), ref.o, { atol: 4e-3, rtol: 1e-2 }, `o ${what}`);
      expectClose(await lse.read(), ref.lse, { atol: 1e-4, rtol: 1e-4 }, `lse ${what}`);
      [q, k, v, lengths, o, lse].forEach((t) => t?.dispose());
    }
  }, 300_000);

  it('keeps O in registers by default, loading no result-type matrix', () => {
    const cfg = { componentType: 'f16', resultComponentType: 'f32', M: 16, N: 16, K: 16 };
    const params = 'struct P { t: u32 }\n@group(0) @binding(0) var<uniform> p: P;';
    const regs = sgmAttentionWgsl(params, { nsub: 4, bk: 32 }, cfg, 128, 32);
    const frag = sgmAttentionWgsl(params, { nsub: 4, bk: 32, accum: 'fragments' }, cfg, 128, 32);
    expect(regs).not.toMatch(/subgroupMatrixLoad<subgroup_matrix_result/);
    expect(frag).toMatch(/subgroupMatrixLoad<subgroup_matrix_result/);
    // What the registers variant uses instead: left/right loads, multiply-accumulate and result stores only.
    const matmulOps = new Set(['subgroupMatrixLoad', 'subgroupMatrixMultiplyAccumulate', 'subgroupMatrixStore']);
    expect(new Set(regs.match(/subgroupMatrix\w+/g))).toEqual(matmulOps);
    // So does the two-pass variant, which keeps O in fragments without ever rescaling them.
    const twoPass = sgmAttentionWgsl(params, { nsub: 4, bk: 32, accum: 'two-pass' }, cfg, 128, 32);
    expect(twoPass).not.toMatch(/subgroupMatrixLoad<subgroup_matrix_result/);
    expect(new Set(twoPass.match(/subgroupMatrix\w+/g))).toEqual(matmulOps);
    expect(sgmAttentionKey({ nsub: 4, bk: 32, accum: 'two-pass' })).toBe('s4.k32.2p');
    expect(sgmAttentionKey({ nsub: 4, bk: 32 })).toBe('s4.k32');
    expect(sgmAttentionKey({ nsub: 4, bk: 32, accum: 'fragments' })).toBe('s4.k32.frag');
    // K staged transposed: every load row-major, as in the matmul kernel; the default reads K column-major.
    const kt = sgmAttentionWgsl(params, { nsub: 4, bk: 32, kLayout: 'transposed' }, cfg, 128, 32);
    expect(kt).not.toMatch(/subgroupMatrixLoad<[^>]*>>\([^;]*, true,/);
    expect(regs).toMatch(/subgroupMatrixLoad<subgroup_matrix_right[^>]*>>\([^;]*, true,/);
    expect(sgmAttentionKey({ nsub: 4, bk: 32, kLayout: 'transposed' })).toBe('s4.k32.kt');
    // K and V from storage: whole key tiles read k (column-major, one key ks elements after the next) and v
    // (row-major) as fragments; partial ones read the staged buffer.
    const kvs = sgmAttentionWgsl(params, { nsub: 4, bk: 64, kvFrom: 'storage' }, cfg, 128, 32);
    expect(kvs).toMatch(/let full = k0 \+ 64u <= len;/);
    expect(kvs).toMatch(/subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>>\(&k, kb \+ 16u \* ks \+ 32u, true, ks\)/);
    expect(kvs).toMatch(/subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>>\(&v, kb \+ 48u \* ks \+ 112u, false, ks\)/);
    expect(kvs).toMatch(/subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>>\(&kv, /);
    expect(kvs).toMatch(/var<storage, read> k: array<f16>;/);
    expect(sgmAttentionKey({ nsub: 4, bk: 64, kvFrom: 'storage' })).toBe('s4.k64.kvs');
  });

  it('gives every workgroup variable a multiple of 16 bytes (matrix loads and stores of a misaligned one were off by 4 bytes on the H200)', () => {
    const cfg = { componentType: 'f16', resultComponentType: 'f32', M: 16, N: 16, K: 16 };
    const params = 'struct P { t: u32 }\n@group(0) @binding(0) var<uniform> p: P;';
    const bytes: Record<string, number> = { f16: 2, f32: 4, u32: 4, i32: 4 };
    // [name, bytes] of each var<workgroup>: arrays of scalars, or lone scalars.
    const vars = (wgsl: string) =>
      [...wgsl.matchAll(/var<workgroup>\s+(\w+)\s*:\s*(?:array<(\w+),\s*(\d+)>|(\w+))\s*;/g)].map((m) => [m[1], m[2] ? bytes[m[2]] * Number(m[3]) : bytes[m[4]]] as const);
    const tiles: SgmAttentionTile[] = [
      { nsub: 4, bk: 32 },
      { nsub: 4, bk: 32, kLayout: 'rows' },
      { nsub: 4, bk: 32, accum: 'fragments' },
      { nsub: 4, bk: 32, accum: 'two-pass' },
      { nsub: 2, bk: 64 },
      { nsub: 4, bk: 64, kvFrom: 'storage' },
      { nsub: 4, bk: 64, kvFrom: 'storage', accum: 'fragments' },
    ];
    const shaders = [
      ...tiles.flatMap((t) => [64, 80, 128].map((D) => sgmAttentionWgsl(params, t, cfg, D, 32))),
      ...[64, 128].flatMap((D) => [sgmDqWgsl(params, SGM_ATTENTION_BWD_TILE, cfg, D, 32), sgmDkvWgsl(params, SGM_ATTENTION_BWD_TILE, cfg, D, 32)]),
      ...[false, true].map((transB) =>
        sgmMatmulWgsl(params, { aType: 'f32', bType: 'f16', transA: false, transB, aVec: true, bVec: true, aF32: 'scaled', scaleBinding: 4 }, { wm: 2, wn: 2, fm: 4, fn: 4, bk: 32 }, cfg, 32),
      ),
    ];
    for (const wgsl of shaders) {
      const found = vars(wgsl);
      expect(found.length).toBeGreaterThan(2);
      for (const [name, size] of found) expect(size % 16, `${name}: ${size} bytes`).toBe(0);
    }
  });

  it("is the forward's default ('auto') for f16 where the adapter has f16 subgroup matrices", () => {
    const cfg = { componentType: 'f16', resultComponentType: 'f32', M: 16, N: 16, K: 16 };
    const h200Like = (limit: number) =>
      ({
        softwareAdapter: false,
        variants: { matmulF16: 'subgroup-matrix' },
        features: { subgroupMatrixConfigs: [cfg] },
        device: { adapterInfo: { subgroupMaxSize: 32 } },
        limits: { maxComputeWorkgroupStorageSize: limit },
      }) as unknown as Gpu;
    expect(attentionForwardPath(h200Like(49152), 128, 'f16')).toBe('subgroup-matrix');
    expect(attentionForwardPath(h200Like(49152), 64, 'f16')).toBe('subgroup-matrix');
    expect(attentionForwardPath(h200Like(49152), 128, 'f32')).toBe('scalar');
    expect(attentionForwardPath(h200Like(49152), 120, 'f16')).toBe('scalar');
    expect(attentionForwardPath(h200Like(16384), 128, 'f16')).toBe('scalar');
    const noMatrices = { ...h200Like(49152), variants: { matmulF16: 'tiled' } } as unknown as Gpu;
    expect(attentionForwardPath(noMatrices, 128, 'f16')).toBe('scalar');
  });

  it('refuses shapes it cannot run when forced, and checks its tiles', async () => {
    const gpu = await testGpu();
    const q = gpu.tensor([1, 4, 2, 8], 'f32');
    const k = gpu.tensor([1, 4, 1, 8], 'f32');
    expect(() => attention(gpu, q, k, k, { path: 'subgroup-matrix', sgmTile: TILE, sgmEmulate: true })).toThrow(/f16/);
    const cfg = { componentType: 'f16', resultComponentType: 'f32', M: 16, N: 16, K: 16 };
    expect(sgmAttentionUnfit({ nsub: 4, bk: 32 }, cfg, 128, 32)).toBeUndefined();
    expect(sgmAttentionUnfit({ nsub: 4, bk: 32 }, cfg, 120, 32)).toMatch(/head dim/);
    expect(sgmAttentionUnfit({ nsub: 8, bk: 32 }, cfg, 128, 32)).toMatch(/query rows/);
    // Transposed K leaves the V tile's rows free, so Q fits more than 2*bk rows.
    expect(sgmAttentionUnfit({ nsub: 8, bk: 32, kLayout: 'transposed' }, cfg, 128, 32)).toBeUndefined();
    expect(sgmAttentionBytes({ nsub: 4, bk: 32, kLayout: 'transposed' }, cfg, 128)).toBeLessThanOrEqual(48 * 1024);
    expect(sgmAttentionBytes({ nsub: 4, bk: 32 }, cfg, 128)).toBeLessThanOrEqual(48 * 1024);
    // The backward kernels: the default tile fits 48 KiB at D 128 and refuses head dims off the fragment size.
    expect(sgmAttentionBwdBytes(SGM_ATTENTION_BWD_TILE, cfg, 128)).toBeLessThanOrEqual(48 * 1024);
    expect(sgmAttentionBwdUnfit(SGM_ATTENTION_BWD_TILE, cfg, 120, 32)).toMatch(/head dim/);
    expect(sgmAttentionBwdUnfit({ nsub: 4, bt: 24 }, cfg, 128, 32)).toMatch(/bt 24/);
    const o = gpu.tensor([1, 4, 2, 8], 'f32');
    const lse = gpu.tensor([1, 2, 4], 'f32');
    expect(() => attentionBackward(gpu, q, k, k, o, lse, o, { sgmBackward: { nsub: 2, bt: 8 }, sgmEmulate: true })).toThrow(/backward takes f16/);
    expect(() => attentionBackward(gpu, q, k, k, o, lse, o, { sgmBackward: { nsub: 2, bt: 8 } })).toThrow(/needs an adapter with f16 subgroup matrices/);
    [o, lse].forEach((t) => t.dispose());
    // K and V from storage stage no whole tiles: 64-key tiles fit 4 subgroups; K has no staged layout to transpose.
    expect(sgmAttentionUnfit({ nsub: 4, bk: 64, kvFrom: 'storage' }, cfg, 128, 32)).toBeUndefined();
    expect(sgmAttentionBytes({ nsub: 4, bk: 64, kvFrom: 'storage' }, cfg, 128)).toBeLessThanOrEqual(48 * 1024);
    expect(sgmAttentionBytes({ nsub: 4, bk: 64 }, cfg, 128)).toBeGreaterThan(48 * 1024);
    expect(sgmAttentionUnfit({ nsub: 4, bk: 32, kvFrom: 'storage', kLayout: 'transposed' }, cfg, 128, 32)).toMatch(/transpose/);
    [q, k].forEach((t) => t.dispose());
  });
});
