import type { AdapterSummary, Gpu } from '../runtime/gpu.js';
import { Params } from '../runtime/params.js';
import { GpuLimitError, ShapeError } from '../runtime/errors.js';
import type { Tensor } from '../runtime/tensor.js';
import { DTYPE_BYTES, shapeSize, type DType } from '../runtime/dtype.js';
import { f16MatrixConfig, isSoftwareAdapter, subgroupSizes, type GpuFeatures, type KernelVariants, type SubgroupMatrixConfig } from '../runtime/features.js';
import { common, layersOf, matmulParams, specKey, type KernelSpec, type Problem } from './matmul-wgsl.js';
import { BK, BM, BN, CPU_BN, CPU_R, cpuTiledWgsl, tiledWgsl } from './matmul-tiled.js';
import { epilogueOnly, launchSplitK, sgmSplitK, tiledSplitK } from './matmul-splitk.js';
import { GEMV_MAX_M, gemvKernel, gemvLaunch } from './gemv.js';
import { cpuLanesUnfit } from './cpu-lanes.js';
import { cpuGemvUnfit, launchCpuGemv } from './gemv-cpu.js';
import {
  CPU_SCRATCH_BYTES,
  cpuATexture,
  cpuMatmulUnfit,
  cpuPackedBytes,
  cpuPackedLayout,
  launchCpuMatmul,
  packCpuB,
  tileV,
  type CpuMatmulTypes,
  type CpuPackedWindows,
} from './matmul-cpu.js';
import {
  sgmBlock,
  sgmFromStorage,
  sgmMatmulWgsl,
  sgmRowExponentWgsl,
  sgmSharedBytes,
  sgmTileKey,
  sgmTileUnfit,
  type SgmAF32,
  type SgmSpec,
  type SgmTile,
} from './matmul-sgm.js';

/**
 * C = alpha·op(A)·op(B) + beta·C (+ bias along N), batched.
 *
 * Shapes are inferred from the tensors for the common cases: A is [..., M, K] ([..., K, M] with transA), B is
 * [K, N] ([N, K] with transB) or batched [..., K, N]; a rank-2 operand is broadcast over the batch (stride 0).
 * Explicit m/n/k, leading dimensions, batch strides and element offsets address strided sub-matrices.
 */
export interface MatmulOptions {
  transA?: boolean;
  transB?: boolean;
  alpha?: number;
  /** Needs `out`; its old contents are scaled by beta and added. */
  beta?: number;
  /**
   * Output, f32 or f16, in no buffer of A, B or the bias. Without ldc, strideC or offsetC it must hold batch × [M, N]
   * (leading dimensions merged or split as the caller likes); with them, any tensor holding the addressed elements.
   */
  out?: Tensor;
  /** dtype of a new output (default f32). */
  outDType?: 'f32' | 'f16';
  /** Added along N: bias[n] (f32 or f16). */
  bias?: Tensor;
  batch?: number;
  m?: number;
  n?: number;
  k?: number;
  /** Leading dimensions (elements between rows as stored). */
  lda?: number;
  ldb?: number;
  ldc?: number;
  /** Batch strides in elements; 0 broadcasts one matrix over the batch. */
  strideA?: number;
  strideB?: number;
  strideC?: number;
  /** Element offsets of the first matrix in each tensor. */
  offsetA?: number;
  offsetB?: number;
  offsetC?: number;
  offsetBias?: number;
  /** Force a kernel (tests, benchmarks); 'auto' picks by shape and `gpu.variants`. */
  path?: MatmulPath | 'auto';
  /**
   * Workgroup tile of the subgroup-matrix path (benchmarks, tuning); default by shape (pickSgmTile). A forced
   * 'subgroup-matrix' path also takes an f32 B, rounded to f16 as it is staged.
   */
  sgmTile?: SgmTile;
  /** Tests: run the subgroup-matrix kernel with its matrix operations emulated in plain WGSL (slow). */
  sgmEmulate?: boolean;
  /** Subgroup-matrix path with f32 A: 'scaled' (default) for f32 accuracy, or 'split' / 'round' (see SgmAF32). */
  sgmAF32?: SgmAF32;
  /**
   * The 'tiled' path: split K over this many workgroup layers, whose partial sums a second pass adds (1: no
   * split). Default by shape on GPUs (tiledSplitK): grids too small to fill the GPU, like LoRA's x·Aᵀ with N = r.
   */
  splitK?: number;
  /**
   * The GPU 'gemv' path's kernel: 'vec' (16-byte loads of a B stored [N, K]; the default where the layout allows,
   * gemvVecUnfit) or 'scalar' (any layout).
   */
  gemv?: 'vec' | 'scalar';
  /**
   * B already packed for the cpu-tiled kernel (packMatmulB), which then skips packing it: B must be the packed
   * matrix or a run of its columns (rows of a B stored [N, K]), unchanged since it was packed. Other paths ignore it.
   */
  packedB?: PackedMatmulB;
}

export { GEMV_MAX_M };

/** Kernel choices passed down to the launch. */
type KernelChoice = Pick<MatmulOptions, 'sgmTile' | 'sgmEmulate' | 'sgmAF32' | 'splitK' | 'gemv'> & { cpuPacked?: CpuPackedWindows };

/** The config the emulated kernel uses on adapters without subgroup matrices. */
const EMULATED_CONFIG: SubgroupMatrixConfig = { componentType: 'f16', resultComponentType: 'f32', M: 4, N: 4, K: 4 };

export type MatmulPath = 'tiled' | 'gemv' | 'subgroup-matrix' | 'cpu-tiled' | 'cpu-gemv';

/**
 * Tiles of the subgroup-matrix path. Measured on an H200 (16x16x16 f16->f32 fragments, docs/BENCHMARKS.md):
 * 2x2 subgroups of 4x4 fragments (128x128, 128 threads) won where the grid fills the GPU (4096³: 1.06 ms,
 * 130 TFLOP/s); 2x4 subgroups of 4x2 fragments (the same 128x128 with 256 threads) won where it does not
 * (T=512 projections with N = 3584: 0.73 ms against 1.05 ms). 64x64 tiles and K steps of 16 or 64 were slower.
 */
export const SGM_TILES: readonly SgmTile[] = [
  { wm: 2, wn: 2, fm: 4, fn: 4, bk: 32 },
  { wm: 2, wn: 4, fm: 4, fn: 2, bk: 32 },
  { wm: 2, wn: 2, fm: 2, fn: 2, bk: 32 },
];

/** Fewest workgroups for the 128-thread tile (about two per SM on an H200's 132). */
const SGM_MIN_WORKGROUPS = 256;

/** What path selection looks at; a real Gpu is one. */
export interface MatmulTarget {
  variants: KernelVariants;
  features: GpuFeatures;
  /** What isSoftwareAdapter reads. */
  adapter?: Pick<AdapterSummary, 'vendor' | 'architecture' | 'device' | 'description'>;
  device?: { adapterInfo?: { subgroupMinSize?: number; subgroupMaxSize?: number } };
  /** Largest storage binding, in bytes (a Gpu's; absent: assumed large). */
  maxBinding?: number;
}

/** Software rasterizers (lavapipe/llvmpipe, SwiftShader) run invocations as SIMD lanes on CPU threads. */
export function isCpuAdapter(gpu: MatmulTarget): boolean {
  return isSoftwareAdapter(gpu.adapter);
}

/** What the cpu-tiled path looks at in a problem. */
type CpuTiledLayout = Pick<Problem, 'N' | 'K' | 'batch' | 'transA' | 'transB' | 'ldb' | 'offB' | 'sB'>;

/** Why the cpu-tiled path's uniform-window kernel (matmul-cpu.ts) cannot run a problem, or undefined when it can. */
function windowedUnfit(gpu: MatmulTarget, types: CpuMatmulTypes, p: Parameters<typeof cpuMatmulUnfit>[1]): string | undefined {
  // Only a software adapter's buffers carry the uniform usage the windows need (Gpu's allocator).
  if (!isCpuAdapter(gpu)) return 'binds uniform windows, which needs a software adapter';
  // The pack kernel writes the windows through one storage binding (tests shrink maxBinding to 4096 bytes).
  if ((gpu.maxBinding ?? Infinity) < CPU_SCRATCH_BYTES) return `binds ${CPU_SCRATCH_BYTES} bytes of windows as storage, over maxBinding ${gpu.maxBinding}`;
  return cpuMatmulUnfit(types, p);
}

/**
 * Why the cpu-tiled path cannot run a problem, or undefined when it can. It runs the uniform-window kernel
 * (matmul-cpu.ts) where that fits, else the older storage-buffer kernel (cpuTiledWgsl).
 */
function cpuTiledUnfit(gpu: MatmulTarget, types: CpuMatmulTypes, p: CpuTiledLayout): string | undefined {
  const lanes = cpuLanesUnfit(gpu);
  if (lanes) return lanes;
  const windowed = windowedUnfit(gpu, types, p);
  if (!windowed) return undefined;
  const storage = cpuStorageUnfit(types, p);
  return storage ? `${windowed}; ${storage}` : undefined;
}

/** Why the storage-buffer cpu-tiled kernel cannot run a problem. */
function cpuStorageUnfit(types: CpuMatmulTypes, p: CpuTiledLayout): string | undefined {
  if (types.a !== 'f32' || types.b !== 'f32') return 'takes f32 inputs only';
  if (p.transA || p.transB) return 'takes non-transposed A and B only';
  // B is read as vec4 along N.
  if (p.N % 4 || p.ldb % 4 || p.offB % 4 || p.sB % 4) return 'needs N, ldb, offsetB and strideB multiples of 4';
  return undefined;
}

/** Which kernel a problem runs on: GEMV for few rows, tensor cores for f16×f16 where offered, else tiled. */
export function selectMatmulPath(
  gpu: MatmulTarget,
  aType: DType,
  bType: DType,
  m: number,
  n: number,
  k: number,
  layout: {
    transA?: boolean;
    transB?: boolean;
    lda?: number;
    ldb?: number;
    offA?: number;
    offB?: number;
    sA?: number;
    sB?: number;
    batch?: number;
    cType?: DType;
    biasType?: DType;
  } = {},
): MatmulPath {
  if (isCpuAdapter(gpu) && !cpuGemvUnfit(gpu, m, k, layout)) return 'cpu-gemv';
  if (m <= GEMV_MAX_M) return 'gemv';
  if (isCpuAdapter(gpu)) {
    const l = { N: n, K: k, batch: 1, transA: false, transB: false, ldb: n, offB: 0, sB: 0, ...layout };
    if (!cpuTiledUnfit(gpu, { a: aType, b: bType, c: layout.cType ?? 'f32', bias: layout.biasType }, l)) return 'cpu-tiled';
  }
  const cfg = f16MatrixConfig(gpu.features);
  // Tiles are staged with bounds checks: any shape. f32 A (activations, gradients against f16 weights) is split
  // into two scaled f16 parts: 2.4-4.7x the scalar kernel's speed at the 7B projections on an H200 (unscaled
  // split, docs/BENCHMARKS.md) at near-f32 accuracy.
  const aOk = aType === 'f16' || aType === 'f32';
  if (gpu.variants.matmulF16 === 'subgroup-matrix' && cfg && aOk && bType === 'f16' && k > 0) return 'subgroup-matrix';
  return 'tiled';
}

/** A matmul path, and on the cpu-tiled path where its kernel reads A from. */
export interface MatmulPathInfo {
  path: MatmulPath;
  /** cpu-tiled only: A copied into a texture (row-major f32 with rows 256 bytes apart) or read from storage. */
  aFrom?: 'texture' | 'storage';
  /** subgroup-matrix with f32 A only: how A reaches the f16 products (the default, 'scaled'). */
  aF32?: SgmAF32;
  /** gemv only: the kernel, 16-byte loads of B ('vec') where the layout allows, else 'scalar'. */
  gemv?: 'vec' | 'scalar';
}

/** The path `matmul` takes for a problem on `gpu` (operands at offset 0), with where A is read from; for `doctor`. */
export function describeMatmulPath(
  gpu: MatmulTarget & { limits: Record<string, number> },
  aType: DType,
  bType: DType,
  m: number,
  n: number,
  k: number,
  layout: Parameters<typeof selectMatmulPath>[6] = {},
): MatmulPathInfo {
  const path = selectMatmulPath(gpu, aType, bType, m, n, k, layout);
  if (path === 'subgroup-matrix' && aType === 'f32') return { path, aF32: 'scaled' };
  if (path === 'gemv') {
    const l = { M: m, K: k, transA: false, transB: false, lda: k, ldb: k, offA: 0, offB: 0, sA: 0, sB: 0, ...layout };
    return { path, gemv: gemvKernel({ a: aType, b: bType }, l, gpu.limits.minStorageBufferOffsetAlignment ?? 256, undefined) };
  }
  if (path !== 'cpu-tiled') return { path };
  const p = { M: m, N: n, K: k, batch: layout.batch ?? 1, transA: !!layout.transA, sB: layout.sB ?? 0, sA: layout.sA ?? 0 };
  const types = { a: aType, b: bType, c: layout.cType ?? 'f32', bias: layout.biasType };
  // The storage-buffer fallback of the cpu-tiled path always reads storage.
  const lda = layout.lda ?? (layout.transA ? m : k);
  const texture = !windowedUnfit(gpu, types, p) && cpuATexture(gpu.limits, types, { ...p, lda, offA: layout.offA ?? 0 }, 0);
  return { path, aFrom: texture ? 'texture' : 'storage' };
}

/** The default subgroup-matrix tile: 128 threads where the grid fills the GPU, else 256 threads per workgroup. */
export function pickSgmTile(cfg: SubgroupMatrixConfig, m: number, n: number, batch: number): SgmTile {
  const { bm, bn } = sgmBlock(SGM_TILES[0], cfg);
  return Math.ceil(m / bm) * Math.ceil(n / bn) * batch >= SGM_MIN_WORKGROUPS ? SGM_TILES[0] : SGM_TILES[1];
}

export function matmul(gpu: Gpu, a: Tensor, b: Tensor, opts: MatmulOptions = {}): Tensor {
  const p = resolve(a, b, opts);
  const shapes = `${a} x ${b}${p.transA ? ' tA' : ''}${p.transB ? ' tB' : ''} M=${p.M} N=${p.N} K=${p.K} batch=${p.batch}`;
  const fail = (msg: string): never => {
    throw new ShapeError(msg, { op: 'matmul', shapes });
  };
  // Everything is checked before the output is allocated or anything recorded, so a refused call leaks nothing.
  for (const t of [a, b]) if (t.dtype !== 'f32' && t.dtype !== 'f16') fail(`inputs must be f32 or f16, got ${t.dtype}`);
  // Before the extent checks: a NaN or negative offset would pass them.
  const counts = { m: p.M, n: p.N, k: p.K, batch: p.batch, lda: p.lda, ldb: p.ldb, ldc: p.ldc, strideA: p.sA, strideB: p.sB, strideC: p.sC,
    offsetA: p.offA, offsetB: p.offB, offsetC: p.offC, offsetBias: p.offBias };
  for (const [name, v] of Object.entries(counts)) {
    if (!Number.isInteger(v) || v < 0) fail(`dimensions, strides and offsets must be non-negative integers, got ${name}=${v}`);
  }
  if (opts.bias) {
    if (opts.bias.dtype !== 'f32' && opts.bias.dtype !== 'f16') fail(`bias must be f32 or f16, got ${opts.bias.dtype}`);
    if (p.offBias + p.N > opts.bias.size) fail(`bias ${opts.bias} shorter than N=${p.N}`);
  }
  if (!Number.isFinite(p.alpha) || !Number.isFinite(p.beta)) fail(`alpha and beta must be finite, got ${p.alpha} and ${p.beta}`);
  if (p.beta !== 0 && !opts.out) fail('beta != 0 needs out');
  const out = opts.out;
  const cType = out?.dtype ?? opts.outDType ?? 'f32';
  if (cType !== 'f32' && cType !== 'f16') fail(`out must be f32 or f16, got ${cType}`);
  // One buffer bound read-only and read-write in one dispatch is a Dawn validation error that surfaces only at the
  // next read, and fails the whole batch.
  if (out && [a, b, opts.bias].some((t) => t?.buffer === out.buffer)) fail(`out ${out} must not alias a, b or bias`);
  const outShape = out?.shape ?? defaultOutShape(a, b, p);
  // Every element each operand is addressed at must lie inside its tensor.
  const extent = (off: number, stride: number, rows: number, ld: number, cols: number) =>
    off + (p.batch - 1) * stride + (rows - 1) * ld + cols;
  const [aRows, aCols] = p.transA ? [p.K, p.M] : [p.M, p.K];
  const [bRows, bCols] = p.transB ? [p.N, p.K] : [p.K, p.N];
  if (p.lda < aCols || p.ldb < bCols || p.ldc < p.N) fail(`leading dimensions ${p.lda},${p.ldb},${p.ldc} below row lengths`);
  if (p.M * p.N * p.batch > 0) {
    if (p.K > 0 && extent(p.offA, p.sA, aRows, p.lda, aCols) > a.size) fail(`A ${a} too small for the addressed matrix`);
    if (p.K > 0 && extent(p.offB, p.sB, bRows, p.ldb, bCols) > b.size) fail(`B ${b} too small for the addressed matrix`);
    if (extent(p.offC, p.sC, p.M, p.ldc, p.N) > shapeSize(outShape)) fail(`out ${out ?? `[${outShape.join(',')}]`} too small for the result`);
  }
  // Without explicit addressing of C, an out big enough but of another shape (C transposed, flat) would silently
  // hold the result row-major; its leading dimensions may be merged or split, as in add.
  const addressed = opts.ldc !== undefined || opts.strideC !== undefined || opts.offsetC !== undefined;
  if (out && !addressed && (out.size !== p.batch * p.M * p.N || (out.size > 0 && out.shape.at(-1) !== p.N))) {
    fail(`out ${out} must be ${p.batch > 1 ? `${p.batch} x ` : ''}[${p.M},${p.N}] (or pass ldc, strideC or offsetC to address part of it)`);
  }
  const alloc = () => out ?? gpu.tensor(outShape, cType, undefined, 'matmul');
  if (p.M * p.N * p.batch === 0) return alloc();
  const cpuPacked = opts.packedB && opts.packedB.windowsFor(b, p, shapes);
  const types = { a: a.dtype, b: b.dtype, c: cType, bias: opts.bias?.dtype };
  const path = opts.path && opts.path !== 'auto' ? opts.path : selectMatmulPath(gpu, a.dtype, b.dtype, p.M, p.N, p.K, { ...p, cType, biasType: opts.bias?.dtype });
  if (path === 'gemv' && p.M > GEMV_MAX_M) fail(`gemv path takes M <= ${GEMV_MAX_M}`);
  const unfit = path === 'cpu-tiled' ? cpuTiledUnfit(gpu, types, p) : path === 'cpu-gemv' ? cpuGemvUnfit(gpu, p.M, p.K, p) : undefined;
  if (unfit) fail(`${path} path ${unfit}`);
  const c = alloc();
  if (p.K === 0) epilogueOnly(gpu, c, opts.bias, p, shapes);
  else run(gpu, a, b, c, opts.bias, p, path, shapes, { ...opts, cpuPacked });
  return c;
}

/**
 * A matrix B [K, N] (or [N, K] with transB) packed once into the cpu-tiled kernel's uniform windows, for a B that
 * many products read unchanged: frozen weights. On lavapipe packing B is a pass over it per product (28% of a small
 * model's LoRA step, docs/BENCHMARKS.md); `matmul(..., { packedB })` reads these windows instead. The windows
 * follow B only through `refresh()`: whoever writes B must call it before the next product, or the product
 * reads the old values. Costs about B's size in f32 (`byteLength`).
 */
export class PackedMatmulB {
  private packed: Tensor | undefined;

  /** Use packMatmulB. */
  constructor(
    private readonly gpu: Gpu,
    /** The matrix packed; products take it or a run of its columns as B. */
    readonly source: Tensor,
    readonly transB: boolean,
  ) {
    const [K, N] = this.dims;
    this.packed = gpu.keep(gpu.tensor([cpuPackedBytes(K, N) / 4], 'f32', undefined, 'packed matmul B'));
    this.refresh();
  }

  /** [K, N] of the packed B. */
  get dims(): [number, number] {
    const [r, c] = this.source.shape;
    return this.transB ? [c, r] : [r, c];
  }

  get byteLength(): number {
    return this.packed?.byteLength ?? 0;
  }

  get isDisposed(): boolean {
    return !this.packed;
  }

  /** Columns of a window group: a product over a run of columns reads the packed windows where the run starts on one. */
  get columnGroup(): number {
    const L = cpuPackedLayout(...this.dims);
    return L.panel * L.perWindow;
  }

  /** Packs `source` again (after something wrote it). */
  refresh(): void {
    if (!this.packed) throw new ShapeError('packed B used after dispose()', { op: 'packMatmulB', shapes: `${this.source}` });
    const [K, N] = this.dims;
    packCpuB(this.gpu, this.source.dtype, { K, N, transB: this.transB, ldb: this.source.shape[1], offB: 0 }, this.source, this.packed, 'matmul-cpu-tiled');
  }

  dispose(): void {
    this.packed?.dispose();
    this.packed = undefined;
  }

  /**
   * The windows for a product whose B is `b` addressed as `p`, or undefined where its columns do not start on a
   * packed window group (it then packs B itself). Throws where `b` is not this matrix or a run of its columns.
   */
  windowsFor(b: Tensor, p: Problem, shapes: string): CpuPackedWindows | undefined {
    const fail = (msg: string): never => {
      throw new ShapeError(`packedB ${msg}`, { op: 'matmul', shapes });
    };
    if (!this.packed) return fail('was disposed');
    const [K, N] = this.dims;
    const src = this.source;
    if (b.buffer !== src.buffer || b.dtype !== src.dtype || p.transB !== this.transB) fail(`was packed from another matrix (${src}${this.transB ? ' tB' : ''})`);
    if (p.K !== K || p.ldb !== src.shape[1] || (p.batch > 1 && p.sB !== 0)) fail(`holds K=${K}, ldb=${src.shape[1]}, one matrix`);
    const delta = (b.byteOffset - src.byteOffset) / DTYPE_BYTES[b.dtype] + p.offB;
    const n0 = this.transB ? delta / p.ldb : delta;
    if (!Number.isInteger(n0) || n0 < 0 || n0 + p.N > N) fail(`holds ${N} columns; this B is not a run of them`);
    const L = cpuPackedLayout(K, N);
    const group = this.columnGroup;
    if (tileV(p.N) !== L.v || n0 % group !== 0) return undefined;
    return { windows: this.packed, layout: L, firstGroup: n0 / group };
  }
}

/** Bytes packMatmulB allocates for a B of K x N (memory planners). */
export function packedMatmulBBytes(K: number, N: number): number {
  return K * N === 0 ? 0 : cpuPackedBytes(K, N);
}

/**
 * B packed for products on a CPU adapter's cpu-tiled kernel (see PackedMatmulB), or undefined where that kernel
 * would not pack it (a GPU, or operands it does not take). `b` is a matrix [K, N], or [N, K] with transB.
 */
export function packMatmulB(gpu: Gpu, b: Tensor, opts: { transB?: boolean } = {}): PackedMatmulB | undefined {
  const transB = opts.transB ?? false;
  if (b.rank !== 2) throw new ShapeError(`packMatmulB takes a matrix, got ${b}`, { op: 'packMatmulB', shapes: `${b}` });
  const [K, N] = transB ? [b.shape[1], b.shape[0]] : b.shape;
  const layout = { N, K, batch: 1, transA: false, transB, ldb: b.shape[1], offB: 0, sB: 0 };
  if (K * N === 0 || cpuLanesUnfit(gpu) || windowedUnfit(gpu, { a: 'f32', b: b.dtype, c: 'f32' }, layout)) return undefined;
  return new PackedMatmulB(gpu, b, transB);
}

function resolve(a: Tensor, b: Tensor, opts: MatmulOptions): Problem {
  const transA = opts.transA ?? false;
  const transB = opts.transB ?? false;
  const fail = (msg: string): never => {
    throw new ShapeError(msg, { op: 'matmul', shapes: `${a} x ${b}` });
  };
  if (a.rank < 2 || b.rank < 2) fail('operands need rank >= 2');
  const [ar, ac] = a.shape.slice(-2);
  const [br, bc] = b.shape.slice(-2);
  const batchA = a.size / Math.max(1, ar * ac);
  const batchB = b.size / Math.max(1, br * bc);
  const M = opts.m ?? (transA ? ac : ar);
  const K = opts.k ?? (transA ? ar : ac);
  const N = opts.n ?? (transB ? br : bc);
  const explicit = opts.m !== undefined || opts.k !== undefined || opts.n !== undefined;
  if (!explicit && (transB ? bc : br) !== K) fail(`inner dimensions differ: K=${K} vs ${transB ? bc : br}`);
  if (a.rank > 2 && b.rank > 2 && batchA !== batchB && opts.batch === undefined) {
    fail(`batch sizes differ: ${batchA} vs ${batchB}`);
  }
  const batch = opts.batch ?? Math.max(a.rank > 2 ? batchA : 1, b.rank > 2 ? batchB : 1);
  const lda = opts.lda ?? ac;
  const ldb = opts.ldb ?? bc;
  const ldc = opts.ldc ?? N;
  return {
    batch,
    M,
    N,
    K,
    transA,
    transB,
    lda,
    ldb,
    ldc,
    sA: opts.strideA ?? (a.rank > 2 && batchA > 1 ? ar * ac : 0),
    sB: opts.strideB ?? (b.rank > 2 && batchB > 1 ? br * bc : 0),
    sC: opts.strideC ?? M * ldc,
    offA: opts.offsetA ?? 0,
    offB: opts.offsetB ?? 0,
    offC: opts.offsetC ?? 0,
    offBias: opts.offsetBias ?? 0,
    alpha: opts.alpha ?? 1,
    beta: opts.beta ?? 0,
  };
}

function defaultOutShape(a: Tensor, b: Tensor, p: Problem): number[] {
  const lead = a.rank > 2 ? a.shape.slice(0, -2) : b.rank > 2 ? b.shape.slice(0, -2) : [];
  const leadSize = lead.reduce((x, y) => x * y, 1);
  return leadSize === p.batch ? [...lead, p.M, p.ldc] : [p.batch, p.M, p.ldc];
}

interface Bound {
  binding: GPUBufferBinding;
  /** Element offset of the window's start inside the tensor. */
  start: number;
}

/** Binds elements [lo, hi) of t, starting the window on an aligned byte offset. */
function bindRange(gpu: Gpu, t: Tensor, lo: number, hi: number): Bound {
  const eb = DTYPE_BYTES[t.dtype];
  const byteStart = Math.floor((lo * eb) / gpu.storageAlign) * gpu.storageAlign;
  return { binding: t.binding(byteStart, Math.max(4, hi * eb - byteStart)), start: byteStart / eb };
}

function run(gpu: Gpu, a: Tensor, b: Tensor, c: Tensor, bias: Tensor | undefined, p: Problem, path: MatmulPath, shapes: string, sgmc: KernelChoice = {}) {
  const fits = [a, b, c, bias].every((t) => !t || Math.ceil(t.byteLength / 4) * 4 <= gpu.maxBinding);
  if (fits) {
    // Whole tensors bound once; the batch runs in z, in chunks of the workgroup-count limit.
    const bindings = [a.binding(), b.binding(), c.binding(), ...(bias ? [bias.binding()] : [])];
    for (let b0 = 0; b0 < p.batch; b0 += gpu.maxWorkgroups) {
      const sub = { ...p, batch: Math.min(gpu.maxWorkgroups, p.batch - b0) };
      sub.offA += b0 * p.sA;
      sub.offB += b0 * p.sB;
      sub.offC += b0 * p.sC;
      launch(gpu, a.dtype, b.dtype, c.dtype, bias?.dtype, sub, bindings, path, shapes, sgmc);
    }
    return;
  }
  // Too large for one binding: each batch item, split along the outer storage dimension of every operand —
  // rows of A (or K when A is stored transposed), N for B stored [N, K] (or K for [K, N]), rows of C — so that
  // every window fits. A K split accumulates with beta = 1 after the first part.
  const budget = gpu.maxBinding - gpu.storageAlign;
  const rowsFit = (ld: number, cols: number, eb: number, what: string) => {
    const r = Math.floor((Math.floor(budget / eb) - cols) / ld) + 1;
    if (r < 1) throw new GpuLimitError(`one row of ${what} (${cols} elements) does not fit a binding`, { op: 'matmul', shapes });
    return r;
  };
  const ea = DTYPE_BYTES[a.dtype];
  const eb = DTYPE_BYTES[b.dtype];
  let mc = rowsFit(p.ldc, p.N, DTYPE_BYTES[c.dtype], 'C');
  let nc = p.N;
  let kc = p.K;
  if (p.transA) kc = Math.min(kc, rowsFit(p.lda, p.M, ea, 'A'));
  else mc = Math.min(mc, rowsFit(p.lda, p.K, ea, 'A'));
  if (p.transB) nc = Math.min(nc, rowsFit(p.ldb, p.K, eb, 'B'));
  else kc = Math.min(kc, rowsFit(p.ldb, p.N, eb, 'B'));
  mc = Math.min(mc, p.M);
  for (let bi = 0; bi < p.batch; bi++) {
    for (let m0 = 0; m0 < p.M; m0 += mc) {
      for (let n0 = 0; n0 < p.N; n0 += nc) {
        for (let k0 = 0; k0 < Math.max(p.K, 1); k0 += Math.max(kc, 1)) {
          const [m, n, k] = [Math.min(mc, p.M - m0), Math.min(nc, p.N - n0), Math.min(kc, p.K - k0)];
          const aOrig = p.offA + bi * p.sA + (p.transA ? k0 * p.lda + m0 : m0 * p.lda + k0);
          const bOrig = p.offB + bi * p.sB + (p.transB ? n0 * p.ldb + k0 : k0 * p.ldb + n0);
          const cOrig = p.offC + bi * p.sC + m0 * p.ldc + n0;
          const aw = bindRange(gpu, a, aOrig, aOrig + Math.max(0, (p.transA ? (k - 1) * p.lda + m : (m - 1) * p.lda + k)));
          const bw = bindRange(gpu, b, bOrig, bOrig + Math.max(0, (p.transB ? (n - 1) * p.ldb + k : (k - 1) * p.ldb + n)));
          const cw = bindRange(gpu, c, cOrig, cOrig + (m - 1) * p.ldc + n);
          const first = k0 === 0;
          const biasW = bias && first ? bindRange(gpu, bias, p.offBias + n0, p.offBias + n0 + n) : undefined;
          const sub: Problem = {
            ...p,
            batch: 1,
            M: m,
            N: n,
            K: Math.max(k, 0),
            sA: 0,
            sB: 0,
            sC: 0,
            offA: aOrig - aw.start,
            offB: bOrig - bw.start,
            offC: cOrig - cw.start,
            offBias: biasW ? p.offBias + n0 - biasW.start : 0,
            beta: first ? p.beta : 1,
          };
          const bindings = [aw.binding, bw.binding, cw.binding, ...(biasW ? [biasW.binding] : [])];
          const subTypes = { a: a.dtype, b: b.dtype, c: c.dtype, bias: biasW && bias ? bias.dtype : undefined };
          // A packed B's windows are addressed from B's start, not from these bindings.
          launch(gpu, a.dtype, b.dtype, c.dtype, subTypes.bias, sub, bindings, windowPath(gpu, path, subTypes, sub), shapes, { ...sgmc, cpuPacked: undefined });
        }
      }
    }
  }
}

/**
 * The kernel one window of a split problem runs. Windows need not start on vec4 boundaries: the CPU kernels keep
 * the windows they can run (cpu-gemv checks its vec4 offsets, the window kernel takes any), the generic kernels
 * run the rest, and the subgroup-matrix kernel checks alignment itself.
 */
function windowPath(gpu: Gpu, path: MatmulPath, types: CpuMatmulTypes, sub: Problem): MatmulPath {
  if (path === 'cpu-gemv') return cpuGemvUnfit(gpu, sub.M, sub.K, sub) ? 'gemv' : path;
  if (path === 'cpu-tiled') return windowedUnfit(gpu, types, sub) ? 'tiled' : path;
  return path;
}

function launch(
  gpu: Gpu,
  aType: DType,
  bType: DType,
  cType: DType,
  biasType: DType | undefined,
  p: Problem,
  bindings: GPUBufferBinding[],
  path: MatmulPath,
  shapes: string,
  sgmc: KernelChoice = {},
) {
  const spec: KernelSpec = { aType, bType, cType, biasType, transA: p.transA, transB: p.transB, beta: p.beta !== 0 };
  if (path === 'cpu-gemv') return launchCpuGemv(gpu, { a: aType, b: bType, c: cType, bias: biasType }, p, bindings, `matmul-${path}`, shapes);
  if ((path === 'tiled' || path === 'subgroup-matrix') && p.kPer === undefined) {
    const { splits, kStep } = splitPlan(gpu, path, p, sgmc);
    if (!Number.isInteger(splits) || splits < 1) throw new ShapeError(`splitK must be a positive integer, got ${splits}`, { op: 'matmul', shapes });
    if (splits > 1) {
      // Each layer's partial sums: the same kernel with an f32 C and no epilogue, then one pass adds them.
      return launchSplitK(gpu, spec, p, bindings, splits, kStep, shapes, (q, partBindings) =>
        launch(gpu, aType, bType, 'f32', undefined, q, partBindings, path, shapes, sgmc),
      );
    }
  }
  const params = matmulParams(p, p.kPer ?? p.K);
  let pipeline: GPUComputePipeline;
  let workgroups: [number, number, number];
  /** The scaled split's per-row exponents, bound after the others. */
  let rowExponents: Tensor | undefined;
  let op = `matmul-${path}`;
  if (path === 'gemv') {
    const g = gemvLaunch(gpu, spec, p, sgmc.gemv, shapes);
    pipeline = g.pipeline;
    op = g.op;
    // A vocabulary-sized N (152k / 2 columns per workgroup) exceeds one grid dimension: spread it over x and y.
    const [gx, gy] = gpu.grid(Math.ceil(p.N / g.cols));
    workgroups = [gx, gy, p.batch];
  } else if (path === 'subgroup-matrix') {
    const emulate = sgmc.sgmEmulate ?? false;
    const cfg = emulate ? EMULATED_CONFIG : f16MatrixConfig(gpu.features);
    if (!cfg || !gpu.features.shaderF16) throw new ShapeError('subgroup-matrix path needs an f16 matrix config', { op: 'matmul', shapes });
    const t = sgmc.sgmTile ?? pickSgmTile(cfg, p.M, p.N, p.batch);
    const unfit = sgmTileUnfit(t, cfg);
    if (unfit) throw new ShapeError(`subgroup-matrix tile ${sgmTileKey(t)}: ${unfit}`, { op: 'matmul', shapes });
    const sg = emulate ? 8 : (subgroupSizes(gpu.device).max ?? 32);
    const aF32: SgmAF32 = aType === 'f32' ? (sgmc.sgmAF32 ?? 'scaled') : 'round';
    const bytes = sgmSharedBytes(t, cfg, { ...spec, aF32 });
    if (bytes > (gpu.limits.maxComputeWorkgroupStorageSize ?? 16384)) {
      throw new GpuLimitError(`subgroup-matrix tile ${sgmTileKey(t)} needs ${bytes} bytes of workgroup memory`, { op: 'matmul', shapes });
    }
    // vec4 loads where the contiguous dimension, leading dimension, offset and batch stride allow.
    const al = (...v: number[]) => v.every((x) => x % 4 === 0);
    // Fragments from storage read A and B as f16 scalars; their partial blocks then stage with scalar loads.
    const direct = sgmFromStorage(t, aType, bType, p.lda, p.ldb, p.offA, p.offB, p.sA, p.sB);
    const sgm: SgmSpec = {
      aType,
      bType,
      transA: p.transA,
      transB: p.transB,
      aVec: !direct && al(p.transA ? p.M : p.K, p.lda, p.offA, p.sA),
      bVec: !direct && al(p.transB ? p.K : p.N, p.ldb, p.offB, p.sB),
      direct,
      aF32,
      // After the uniforms, A, B, C and the bias.
      scaleBinding: aF32 === 'scaled' ? 4 + (biasType ? 1 : 0) : undefined,
    };
    const key = `matmul-sgm${emulate ? '-emu' : ''}:${specKey(spec)}:${direct ? 'd' : `${sgm.aVec ? 'v' : 's'}${sgm.bVec ? 'v' : 's'}`}:${aF32}:${cfg.M}x${cfg.N}x${cfg.K}:${sgmTileKey(t)}:sg${sg}`;
    pipeline = gpu.pipeline(key, () => sgmMatmulWgsl(common(spec, sgm.bVec, sgm.aVec), sgm, t, cfg, sg, emulate));
    const { bm, bn } = sgmBlock(t, cfg);
    workgroups = [Math.ceil(p.N / bn), Math.ceil(p.M / bm), p.batch * layersOf(p)];
    if (aF32 === 'scaled') {
      // Checked before the exponents are allocated, so a refused launch leaks nothing.
      checkGrid(workgroups, gpu, shapes);
      rowExponents = sgmRowExponents(gpu, bindings[0], p, shapes);
    }
  } else if (path === 'cpu-tiled') {
    const types = { a: aType, b: bType, c: cType, bias: biasType };
    if (!windowedUnfit(gpu, types, p)) return launchCpuMatmul(gpu, types, p, bindings, `matmul-${path}`, shapes, sgmc.cpuPacked);
    pipeline = gpu.pipeline(`matmul-cpu:${specKey(spec)}`, () => cpuTiledWgsl(spec));
    workgroups = [Math.ceil(p.N / CPU_BN), Math.ceil(p.M / CPU_R), p.batch];
  } else {
    pipeline = gpu.pipeline(`matmul-tiled:${specKey(spec)}`, () => tiledWgsl(spec));
    workgroups = [Math.ceil(p.N / BN), Math.ceil(p.M / BM), p.batch * layersOf(p)];
  }
  checkGrid(workgroups, gpu, shapes);
  const bound = rowExponents ? [...bindings, rowExponents.binding()] : bindings;
  gpu.dispatch({ op, shapes, pipeline, params, bindings: bound, workgroups });
  // Later work that reuses the buffer is queued after this dispatch.
  rowExponents?.dispose();
}

function checkGrid(workgroups: [number, number, number], gpu: Gpu, shapes: string) {
  if (workgroups[0] > gpu.maxWorkgroups || workgroups[1] > gpu.maxWorkgroups) {
    throw new GpuLimitError(`matmul grid ${workgroups.join('x')} over the workgroup limit`, { op: 'matmul', shapes });
  }
}

/**
 * Per-row exponents of an f32 A for the scaled split (sgmRowExponentWgsl): an i32 tensor [batch · M], E[z·M + m]
 * the power of two that brings row m of batch item z to at most 2^15. `a` is A's binding as the matmul binds it.
 */
export function sgmRowExponents(gpu: Gpu, a: GPUBufferBinding, p: Pick<Problem, 'M' | 'K' | 'lda' | 'offA' | 'sA' | 'batch' | 'transA'>, shapes = ''): Tensor {
  if (p.batch > gpu.maxWorkgroups) throw new GpuLimitError(`row exponents: batch ${p.batch} over the workgroup limit`, { op: 'matmul', shapes });
  const [gx, gy] = gpu.grid(p.M);
  const exps = gpu.tensor([p.batch * p.M], 'i32', undefined, 'matmul row exponents');
  const params = new Params().u32(p.M).u32(p.K).u32(p.lda).u32(p.offA).u32(p.sA).bytes();
  const pipeline = gpu.pipeline(`matmul-sgm-rowexp:${p.transA ? 'T' : 'N'}`, () => sgmRowExponentWgsl(p.transA));
  gpu.dispatch({ op: 'matmul-sgm-rowexp', shapes, pipeline, params, bindings: [a, exps.binding()], workgroups: [gx, gy, p.batch] });
  return exps;
}

/** How many layers a tiled or subgroup-matrix launch splits K into (options.splitK, else by shape), in steps of kStep. */
function splitPlan(gpu: Gpu, path: 'tiled' | 'subgroup-matrix', p: Problem, choice: KernelChoice): { splits: number; kStep: number } {
  if (path === 'tiled') return { splits: choice.splitK ?? tiledSplitK(gpu, p), kStep: BK };
  const cfg = choice.sgmEmulate ? EMULATED_CONFIG : f16MatrixConfig(gpu.features);
  // Without a config the launch itself refuses the path.
  if (!cfg) return { splits: 1, kStep: 1 };
  const t = choice.sgmTile ?? pickSgmTile(cfg, p.M, p.N, p.batch);
  return { splits: choice.splitK ?? sgmSplitK(gpu, p, sgmBlock(t, cfg), t.bk), kStep: t.bk };
}

export interface MatmulBackwardOptions {
  transA?: boolean;
  transB?: boolean;
  alpha?: number;
  /** Skip a gradient (e.g. frozen weights). */
  needA?: boolean;
  needB?: boolean;
  /** Also return dBias = column sums of dC. */
  needBias?: boolean;
}

/**
 * Gradients of C = alpha·op(A)·op(B) (+ bias) for the shape-inferred case (contiguous operands, batched or with
 * a rank-2 operand broadcast over the batch), each with the same matmul kernel:
 *   d op(A) = alpha·dC·op(B)ᵀ,   d op(B) = alpha·op(A)ᵀ·dC,   dBias = 1ᵀ·dC,
 * written in each operand's own storage layout. A broadcast operand's gradient sums over the batch: one call over
 * the batch stacked into rows where the layouts allow (the usual shared weight), else one accumulating call
 * (beta = 1) per batch item. Gradients are f32.
 */
export function matmulBackward(
  gpu: Gpu,
  a: Tensor,
  b: Tensor,
  dC: Tensor,
  opts: MatmulBackwardOptions = {},
): { dA?: Tensor; dB?: Tensor; dBias?: Tensor } {
  const tA = opts.transA ?? false;
  const tB = opts.transB ?? false;
  const alpha = opts.alpha ?? 1;
  const p = resolve(a, b, { transA: tA, transB: tB });
  const { M, N, K, batch } = p;
  if (dC.size !== batch * M * N || dC.shape[dC.rank - 1] !== N) {
    throw new ShapeError(`dC must hold ${batch} x [${M},${N}]`, { op: 'matmulBackward', shapes: `${a} x ${b}, dC ${dC}` });
  }
  const sDC = M * N;
  // One call: all batch items (z undefined) or item z alone; `rows` > M stacks the batch into rows.
  const dA = (g: Tensor, z: number | undefined, beta: number) => {
    const one = z !== undefined;
    const base = { alpha, beta, out: g, batch: one ? 1 : batch };
    const offDC = one ? z * sDC : 0;
    const offB = one ? z * p.sB : 0;
    if (!tA) {
      matmul(gpu, dC, b, { ...base, m: M, n: K, k: N, transB: !tB, lda: N, ldb: tB ? K : N, ldc: K,
        strideA: sDC, strideB: p.sB, strideC: M * K, offsetA: offDC, offsetB: offB });
    } else {
      matmul(gpu, b, dC, { ...base, m: K, n: M, k: N, transA: tB, transB: true, lda: tB ? K : N, ldb: N, ldc: M,
        strideA: p.sB, strideB: sDC, strideC: K * M, offsetA: offB, offsetB: offDC });
    }
  };
  const dB = (g: Tensor, z: number | undefined, beta: number, rows = M) => {
    const one = z !== undefined || rows !== M;
    const base = { alpha, beta, out: g, batch: one ? 1 : batch };
    const offDC = z !== undefined ? z * sDC : 0;
    const offA = z !== undefined ? z * p.sA : 0;
    if (!tB) {
      matmul(gpu, a, dC, { ...base, m: K, n: N, k: rows, transA: !tA, lda: tA ? M : K, ldb: N, ldc: N,
        strideA: p.sA, strideB: sDC, strideC: K * N, offsetA: offA, offsetB: offDC });
    } else {
      matmul(gpu, dC, a, { ...base, m: N, n: K, k: rows, transA: true, transB: tA, lda: N, ldb: tA ? M : K, ldc: K,
        strideA: sDC, strideB: p.sA, strideC: N * K, offsetA: offDC, offsetB: offA });
    }
  };
  const out: { dA?: Tensor; dB?: Tensor; dBias?: Tensor } = {};
  if (opts.needA ?? true) {
    const g = gpu.tensor(a.shape, 'f32', undefined, 'matmulBackward');
    if (p.sA !== 0 || batch === 1) dA(g, undefined, 0);
    else for (let z = 0; z < batch; z++) dA(g, z, z === 0 ? 0 : 1);
    out.dA = g;
  }
  if (opts.needB ?? true) {
    const g = gpu.tensor(b.shape, 'f32', undefined, 'matmulBackward');
    if (p.sB !== 0 || batch === 1) dB(g, undefined, 0);
    else if (!tA) dB(g, undefined, 0, batch * M); // A [batch, M, K] and dC [batch, M, N] stack into rows
    else for (let z = 0; z < batch; z++) dB(g, z, z === 0 ? 0 : 1);
    out.dB = g;
  }
  if (opts.needBias) {
    const rows = batch * M;
    const ones = gpu.tensor([1, rows], 'f32', new Float32Array(rows).fill(1), 'matmulBackward');
    out.dBias = matmul(gpu, ones, dC, { m: 1, n: N, k: rows, lda: rows, ldb: N, batch: 1, out: gpu.tensor([N], 'f32') });
    ones.dispose();
  }
  return out;
}
