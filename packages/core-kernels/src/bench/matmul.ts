import { matmul, type MatmulOptions, type MatmulPath } from '../kernels/matmul.js';
import { sgmTileKey, type SgmTile } from '../kernels/matmul-sgm.js';
import { loraLinear } from '../kernels/lora.js';
import type { BenchCase } from './types.js';
import { benchTensor, disposeAll } from './data.js';
import { checkLinear, checkLora, checkProduct } from './check.js';

/** Square C = A·B, f32 or f16 inputs (f32 accumulation and output); `path` forces a kernel, for comparison. */
/** `sgmTile` forces a subgroup-matrix tile (candidates for the default). */
function squareCase(n: number, dtype: 'f32' | 'f16', size: 'cpu' | 'gpu', path?: MatmulPath, sgmTile?: SgmTile): BenchCase {
  const torchDt = dtype === 'f16' ? 'torch.bfloat16 if str(dev).startswith("cuda") else torch.float32' : 'torch.float32';
  return {
    family: 'matmul',
    name: `matmul ${dtype} ${n}x${n}x${n}${path ? ` (${path} path)` : ''}${sgmTile ? ` (tile ${sgmTileKey(sgmTile)})` : ''}`,
    flops: 2 * n ** 3,
    bytes: 2 * n * n * (dtype === 'f16' ? 2 : 4) + 4 * n * n,
    size,
    needs: dtype === 'f16' ? ['shader-f16', ...(sgmTile ? ['subgroup-matrix'] : [])] : undefined,
    prepare(gpu) {
      const a = benchTensor(gpu, [n, n], dtype, 2, 1);
      const b = benchTensor(gpu, [n, n], dtype, 2, 2);
      const c = gpu.tensor([n, n], 'f32');
      const opts = sgmTile ? { path: 'subgroup-matrix' as const, sgmTile } : { path };
      const run = () => void matmul(gpu, a, b, { out: c, ...opts });
      return { run, dispose: () => disposeAll(a, b, c), check: () => (run(), checkProduct(a, b, c, n, n, n)) };
    },
    torch: {
      setup: `t=${torchDt}; a=torch.randn(${n},${n},device=dev,dtype=t); b=torch.randn(${n},${n},device=dev,dtype=t)`,
      run: 'a@b',
    },
  };
}

/**
 * A linear layer y = x·Wᵀ with f16 weights W [out, in] and f32 activations x [T, in] (T = 1 is the GEMV path).
 * `sgmTile` forces a subgroup-matrix tile, `splitK: 1` no K split, `gemv: 'scalar'` the scalar GEMV: candidates
 * and former defaults, to compare against torch in one run.
 */
function linearCase(
  label: string,
  T: number,
  inF: number,
  outF: number,
  size: 'cpu' | 'gpu',
  { sgmTile, splitK, gemv }: Pick<MatmulOptions, 'sgmTile' | 'splitK' | 'gemv'> = {},
): BenchCase {
  return {
    family: 'matmul',
    name: `linear ${label} T=${T} ${inF}->${outF} f16 W${sgmTile ? ` (tile ${sgmTileKey(sgmTile)})` : ''}${splitK === 1 ? ' (no split-K)' : ''}${gemv === 'scalar' ? ' (scalar gemv)' : ''}`,
    flops: 2 * T * inF * outF,
    bytes: 2 * inF * outF + 4 * T * (inF + outF),
    size,
    needs: ['shader-f16', ...(sgmTile ? ['subgroup-matrix'] : [])],
    prepare(gpu) {
      const x = benchTensor(gpu, [T, inF], 'f32', 2, 3);
      const w = benchTensor(gpu, [outF, inF], 'f16', 0.1, 4);
      const y = gpu.tensor([T, outF], 'f32');
      const opts = { ...(sgmTile ? { path: 'subgroup-matrix' as const, sgmTile } : {}), splitK, gemv };
      const run = () => void matmul(gpu, x, w, { transB: true, out: y, ...opts });
      return { run, dispose: () => disposeAll(x, w, y), check: () => (run(), checkLinear(x, w, y, T, outF, inF)) };
    },
    torch: {
      setup: `x=torch.randn(${T},${inF},device=dev,dtype=dt); w=torch.randn(${outF},${inF},device=dev,dtype=dt)`,
      run: 'F.linear(x,w)',
    },
  };
}

/** y = x·Wᵀ in f32, x [T, H] and W [V, H]; `opts` forces a path or a K split, for comparisons. */
function f32LinearCase(name: string, T: number, H: number, V: number, size: 'cpu' | 'gpu', opts: Pick<MatmulOptions, 'path' | 'splitK'> = {}): BenchCase {
  return {
    family: 'matmul',
    name,
    flops: 2 * T * H * V,
    bytes: 4 * H * V + 4 * T * (H + V),
    size,
    prepare(gpu) {
      const x = benchTensor(gpu, [T, H], 'f32', 2, 5);
      const w = benchTensor(gpu, [V, H], 'f32', 0.1, 6);
      const y = gpu.tensor([T, V], 'f32');
      const run = () => void matmul(gpu, x, w, { transB: true, out: y, ...opts });
      return { run, dispose: () => disposeAll(x, w, y), check: () => (run(), checkLinear(x, w, y, T, V, H)) };
    },
    torch: {
      setup: `x=torch.randn(${T},${H},device=dev); w=torch.randn(${V},${H},device=dev)`,
      run: 'F.linear(x,w)',
    },
  };
}

/** Decode's LM head: an f32 W [V, H] over Qwen's vocabulary; `path` forces a kernel, for comparison. */
const lmHeadCase = (T: number, H: number, V: number, path?: MatmulPath): BenchCase =>
  f32LinearCase(`lm-head gemv T=${T} ${H}->${V} f32 W${path ? ` (${path} path)` : ''}`, T, H, V, 'cpu', { path });

/**
 * LoRA's down-projection x·Aᵀ (A [r, in]): a grid of few workgroups with a long K, where the tiled kernel splits K
 * by default on GPUs; `splitK: 1` times it unsplit, for the paired comparison.
 */
const loraDownCase = (T: number, inF: number, r: number, splitK?: number): BenchCase =>
  f32LinearCase(`lora down x·Aᵀ T=${T} ${inF}->${r} f32${splitK === 1 ? ' (no split-K)' : ''}`, T, inF, r, 'gpu', { splitK });

/** LoRA linear forward: frozen f16 W plus rank-r adapters with dropout. */
function loraCase(label: string, T: number, inF: number, outF: number, r: number, size: 'cpu' | 'gpu'): BenchCase {
  const s = 32 / r;
  return {
    family: 'matmul',
    name: `lora ${label} T=${T} ${inF}->${outF} r=${r}`,
    flops: 2 * T * inF * outF + 2 * T * r * (inF + outF),
    bytes: 2 * inF * outF + 4 * r * (inF + outF) + 4 * T * (inF + outF),
    size,
    needs: ['shader-f16'],
    prepare(gpu) {
      const x = benchTensor(gpu, [T, inF], 'f32', 2, 7);
      const w = benchTensor(gpu, [outF, inF], 'f16', 0.1, 8);
      const a = benchTensor(gpu, [r, inF], 'f32', 0.1, 9);
      const b = benchTensor(gpu, [outF, r], 'f32', 0.1, 10);
      const settings = { alpha: 32, dropout: 0.05, seed: 1 };
      return {
        run: () => {
          const { y, h } = loraLinear(gpu, x, w, a, b, settings);
          y.dispose();
          h.dispose();
        },
        dispose: () => disposeAll(x, w, a, b),
        check: async () => {
          const { y, h } = loraLinear(gpu, x, w, a, b, settings);
          try {
            return await checkLora({ x, w, a, b, T, inF, outF, r, ...settings }, y, h);
          } finally {
            disposeAll(y, h);
          }
        },
      };
    },
    torch: {
      setup:
        `x=torch.randn(${T},${inF},device=dev); w=torch.randn(${outF},${inF},device=dev,dtype=dt); ` +
        `A=torch.randn(${r},${inF},device=dev); B=torch.randn(${outF},${r},device=dev)`,
      run: `F.linear(x.to(dt),w).float()+${s}*F.linear(F.linear(F.dropout(x,0.05),A),B)`,
    },
  };
}

// Qwen2.5-7B projections: hidden 3584, 4 KV heads x 128, intermediate 18944.
const QWEN = [
  ['q_proj', 3584, 3584],
  ['k_proj', 3584, 512],
  ['gate_proj', 3584, 18944],
  ['down_proj', 18944, 3584],
] as const;

/** Benchmarks for the matmul kernels. */
export const matmulBenches: BenchCase[] = [
  squareCase(1024, 'f32', 'cpu'),
  // The generic kernel on the same shape: what the CPU-adapter path (auto-selected above) gains.
  squareCase(1024, 'f32', 'cpu', 'tiled'),
  linearCase('qwen-like', 64, 3584, 512, 'cpu'),
  linearCase('gemv', 1, 3584, 3584, 'cpu'),
  lmHeadCase(1, 64, 151936),
  lmHeadCase(1, 64, 151936, 'gemv'),
  // Qwen2.5-0.5B's head: a 545 MB weight, over one binding, so matmul splits it into windows (which ran on the
  // generic GEMV before session 12, as the forced 'gemv' path still does).
  lmHeadCase(1, 896, 151936),
  lmHeadCase(1, 896, 151936, 'gemv'),
  loraCase('small', 64, 512, 512, 8, 'cpu'),
  squareCase(4096, 'f16', 'gpu'),
  // Fragments straight from storage, no workgroup staging (session 15): candidates for the f16 default.
  ...([
    { wm: 2, wn: 2, fm: 4, fn: 4, bk: 32, from: 'storage' },
    { wm: 2, wn: 2, fm: 4, fn: 4, bk: 64, from: 'storage' },
    { wm: 2, wn: 4, fm: 4, fn: 4, bk: 32, from: 'storage' },
    { wm: 4, wn: 2, fm: 4, fn: 4, bk: 32, from: 'storage' },
  ] as SgmTile[]).map((t) => squareCase(4096, 'f16', 'gpu', undefined, t)),
  squareCase(4096, 'f32', 'gpu'),
  ...QWEN.flatMap(([label, inF, outF]) => [linearCase(label, 1, inF, outF, 'gpu'), linearCase(label, 512, inF, outF, 'gpu')]),
  // Decode's LM head, the largest GEMV of a token (1.09 GB of f16 weight).
  linearCase('lm_head', 1, 3584, 152064, 'gpu'),
  // Session 16: the vec GEMV is the default above; the scalar kernel it replaced, for the paired comparison.
  ...QWEN.map(([label, inF, outF]) => linearCase(label, 1, inF, outF, 'gpu', { gemv: 'scalar' })),
  linearCase('lm_head', 1, 3584, 152064, 'gpu', { gemv: 'scalar' }),
  // Tiles that beat the defaults at these shapes in session 14's sweep (single timings), for paired numbers.
  linearCase('gate_proj', 512, 3584, 18944, 'gpu', { sgmTile: { wm: 4, wn: 2, fm: 2, fn: 4, bk: 32 } }),
  linearCase('gate_proj', 512, 3584, 18944, 'gpu', { sgmTile: { wm: 2, wn: 2, fm: 4, fn: 4, bk: 32, group: 8 } }),
  linearCase('down_proj', 512, 18944, 3584, 'gpu', { sgmTile: { wm: 4, wn: 2, fm: 2, fn: 4, bk: 32 } }),
  linearCase('down_proj', 512, 18944, 3584, 'gpu', { sgmTile: { wm: 2, wn: 2, fm: 2, fn: 4, bk: 64 } }),
  loraCase('q_proj', 512, 3584, 3584, 16, 'gpu'),
  // Session 15: K split over workgroup layers where the grid is small (the default on GPUs), against no split:
  // LoRA's x·Aᵀ on the tiled kernel; on the tensor cores k_proj at T = 512 and q_proj decoding 32 sequences.
  loraDownCase(512, 3584, 16),
  loraDownCase(512, 3584, 16, 1),
  linearCase('k_proj', 512, 3584, 512, 'gpu', { splitK: 1 }),
  linearCase('q_proj', 32, 3584, 3584, 'gpu'),
  linearCase('q_proj', 32, 3584, 3584, 'gpu', { splitK: 1 }),
];
