import type { Gpu } from '../runtime/gpu.js';
import { Params } from '../runtime/params.js';
import { DTYPE_BYTES, type DType } from '../runtime/dtype.js';
import type { Tensor } from '../runtime/tensor.js';
import { enableF16, wgslType } from './wgsl.js';
import type { CpuGemvProblem } from './gemv-cpu.js';
import { ticketCounter, ticketWgsl, ticketWorkgroups } from './tickets.js';
import { CPU_LANES } from './cpu-lanes.js';

/*
 * Matmul for CPU adapters (lavapipe/llvmpipe), with B read from uniform buffers.
 *
 * What llvmpipe (Mesa 25, LLVM 15) makes of loads, read from its generated code (GALLIVM_DEBUG=asm): every
 * storage-buffer load in a loop, even one whose address is the same for all lanes, is a loop over the 8 SIMD
 * lanes with a mask test and a buffer-size check per lane (~15 instructions per element); a uniform-buffer load
 * with a per-lane address is 8 plain scalar loads with one clamp. So B, the operand every FMA step needs, is
 * copied into 64 KB windows of a uniform-capable scratch buffer (one panel of 8·V·4 columns by up to 4096/(8·V)
 * rows of K, or several whole panels when K is small), just before the dispatch that reads them; a dispatch binds
 * up to WINDOWS windows (K up to WINDOWS · 4096/(8·V)) and adds into C where K is longer. The packing also makes
 * transposed and f16 B free: the pack kernel reads B however it is stored. An f32 B stored [K, N] with rows 256
 * bytes apart is not packed by a kernel but copied, through a texture (cpuBCopies): 1024³ took 0.89–0.98x the time.
 *
 * A is read from storage, or, where its layout allows a copy, from a texture (cpuATexture): 1024³ took 0.87–0.88×
 * the time.
 *
 * Each dispatch launches one workgroup per shader thread, which take tiles (32 or 64 rows of a panel of a batch item)
 * from an atomic counter (tickets.ts) rather than llvmpipe's equal runs fixed up front.
 *
 * The tile: one 8-lane workgroup computes 32 or 64 rows (tileRows) of one panel; lane l owns vec4 columns
 * l·V..l·V+V-1. For every 8 steps along K, lane l loads A[m, k0 + l] for each row and subgroupShuffle (one AVX2
 * permute) hands each value to all lanes (from a texture, lane l loads A[m, k0 + 4l .. 4l + 3] for every 32
 * steps). The K loop is unrolled by 4 or 8 (unrollFor) with the accumulators updated once per unrolled run:
 * llvmpipe blends every loop-carried update with the lane mask, and the 256 to 1024 accumulators live on the
 * stack. V is 2 or 4 (tileV).
 * Measured on 1024³ (CPU time per product, one shader thread): 14-15 GFLOP per CPU-second against 6-10 for the
 * storage-buffer kernel (docs/BENCHMARKS.md, lavapipe section).
 *
 * C is written a vec4 at a time where its layout allows (cpuCVec4): 1024³ took 0.92–1.0× the time, the mini
 * policy's small-K shapes 0.93–0.98×. The multiplies and adds run from a loop body of 67 KB (130 KB at 64 rows),
 * over the 32 KB instruction cache (session 24's section in docs/BENCHMARKS.md); tiles small enough to fit it load
 * B more often per multiply-add, and came out no faster.
 */

const LANES = CPU_LANES;
/** The tile counter's loop; 'workgroup' ran faster here than 'subgroup' (tickets.ts). */
const TICKETS = ticketWgsl('workgroup');
/**
 * vec4 columns per lane: a workgroup computes rows × (LANES · V · 4) of C. V = 4 (128 columns) halves A's
 * storage loads per FMA next to V = 2 and was faster on 1024³ (109–125 ms against 113–145), but slower by ~14%
 * on the tiny policy's SFT, whose projections are 64–352 wide (a half-empty panel, fewer workgroups); so the
 * wide tile is used from N = 512.
 */
export function tileV(N: number): 2 | 4 {
  return N >= 512 ? 4 : 2;
}
/** Columns per panel: 8 lanes × V vec4. */
const panelOf = (v: number) => LANES * v * 4;
/**
 * Rows of C a workgroup computes: 64 for the wide tile from M = 64, where each B value a lane loads (a third of the
 * loop, lane by lane) then serves twice the rows; 32 otherwise. 64 rows took 0.87–1.01× the time of 32 in 11 paired
 * runs of 1024³ (median ~0.91) and 0.88–0.98× at Qwen2.5-0.5B's shapes (T 128–512), and cost ~4 s more to compile.
 */
export function tileRows(M: number, V: number): 32 | 64 {
  return V === 4 && M >= 64 ? 64 : 32;
}
/**
 * Steps of K between accumulator updates (llvmpipe loads, blends and stores an accumulator at every update): 8 for
 * the wide tile, whose 1024³ product took 0.93–0.97× the time of 4 (0.94× with A from storage); 4 for the narrow
 * one, where 8 took 1.01–1.04× on the mini policy's shapes. A multiple of 4, the components of a texel of A.
 */
const unrollFor = (V: number) => (V === 4 ? 8 : 4);
/** One uniform window: 64 KB of vec4, the WebGPU default limit (and lavapipe's). */
const WINDOW_VEC4 = 4096;
/** Rows of K one window holds for one panel. */
const windowK = (v: number) => WINDOW_VEC4 / (panelOf(v) / 4);
/**
 * Windows bound per dispatch (of 12 uniform buffers a stage may have; params take one): one dispatch covers up to
 * WINDOWS windows of K (2048 rows at V = 2, 1024 at V = 4), so C is read and written once per dispatch rather
 * than once per window (on llvmpipe each pass over C costs as much as ~30 steps of K).
 */
const WINDOWS = 8;

/** Bytes of the scratch buffer at most (WINDOWS windows), which the pack kernel binds as storage. */
export const CPU_SCRATCH_BYTES = WINDOWS * WINDOW_VEC4 * 16;

/** What the kernels need of a resolved matmul problem: the same fields as the CPU GEMV's. */
export type CpuMatmulProblem = CpuGemvProblem;

export interface CpuMatmulTypes {
  a: DType;
  b: DType;
  c: DType;
  bias?: DType;
}

/** Where A's rows go in its texture: K / 4 texels a row, rows per batch item in the source, layers. */
export interface ATextureLayout {
  width: number;
  rowsPerImage: number;
  layers: number;
}

/** Largest A texture, in bytes, kept per device; a larger A is read from storage. */
export const A_TEXTURE_MAX_BYTES = 64 * 1024 * 1024;

/**
 * How A is copied into an rgba32float texture, or undefined when it is read from storage. A texel holds 4 steps of
 * K, so lanes load A 4 steps at a time: on llvmpipe a storage load is a loop over the 8 lanes with a mask test and
 * a bounds check per lane, ~41 ns per 8-lane f32, and a texel fetch ~50 ns per 8-lane vec4
 * (tools/bench/load-probe.ts). The copy is a copyBufferToTexture, so it takes f32 A stored [M, K] with K a
 * multiple of 4, rows 256 bytes apart (lda a multiple of 64) from a 16-byte boundary, and batch items a whole
 * number of rows apart (or one A for all).
 */
export function cpuATexture(
  limits: Record<string, number>,
  types: Pick<CpuMatmulTypes, 'a'>,
  p: Pick<CpuMatmulProblem, 'M' | 'K' | 'batch' | 'transA' | 'lda' | 'offA' | 'sA'>,
  bindingOffset: number,
): ATextureLayout | undefined {
  if (types.a !== 'f32' || p.transA || p.K % 4 || p.lda % 64 || (bindingOffset + p.offA * 4) % 16) return undefined;
  const layered = p.batch > 1 && p.sA !== 0;
  if (layered && (p.sA % p.lda || p.sA / p.lda < p.M)) return undefined;
  const t = { width: p.K / 4, rowsPerImage: layered ? p.sA / p.lda : p.M, layers: layered ? p.batch : 1 };
  const max2d = limits.maxTextureDimension2D ?? 0;
  if (t.width > max2d || p.M > max2d || t.layers > (limits.maxTextureArrayLayers ?? 0)) return undefined;
  if (t.width * 16 * p.M * t.layers > A_TEXTURE_MAX_BYTES) return undefined;
  return t;
}

/**
 * One A texture and one B texture per device, each grown to the largest extent asked for and reused: the queue runs
 * copies and dispatches in order, so the next matmul's copy cannot overwrite what an earlier one still reads.
 */
const deviceTextures = { a: new WeakMap<Gpu, GPUTexture>(), b: new WeakMap<Gpu, GPUTexture>() };

function deviceTexture(gpu: Gpu, which: 'a' | 'b', width: number, height: number, layers: number): GPUTexture {
  const cache = deviceTextures[which];
  let tex = cache.get(gpu);
  if (!tex || tex.width < width || tex.height < height || tex.depthOrArrayLayers < layers) {
    const size = {
      width: Math.max(width, tex?.width ?? 0),
      height: Math.max(height, tex?.height ?? 0),
      depthOrArrayLayers: Math.max(layers, tex?.depthOrArrayLayers ?? 0),
    };
    if (tex) {
      // Submitted work that reads the old texture finishes before it is freed; unsubmitted work must be submitted.
      gpu.flush();
      tex.destroy();
    }
    // A is sampled by the kernel; B is only copied through, into the uniform windows.
    const usage = GPUTextureUsage.COPY_DST | (which === 'a' ? GPUTextureUsage.TEXTURE_BINDING : GPUTextureUsage.COPY_SRC);
    tex = gpu.device.createTexture({ size, format: 'rgba32float', usage, label: `matmul-cpu ${which.toUpperCase()}` });
    cache.set(gpu, tex);
  }
  return tex;
}

/** Largest B copied through a texture, in bytes; a larger B is packed by the pack kernel. */
export const B_TEXTURE_MAX_BYTES = 64 * 1024 * 1024;

/**
 * Whether B's windows can be filled by copies instead of the pack kernel: B f32 stored [K, N] (not transposed), N
 * a multiple of 4, rows 256 bytes apart (ldb a multiple of 64) from a 16-byte boundary. B goes into an
 * rgba32float texture with one copyBufferToTexture, and each panel's rows come out of it into the windows with one
 * copyTextureToBuffer (a window row is a panel's 256 or 512 bytes). On llvmpipe both are row memcpys: 1024x1024
 * took ~1 ms where the pack kernel, whose storage loads go lane by lane, took ~5 ms.
 */
export function cpuBCopies(
  limits: Record<string, number>,
  types: Pick<CpuMatmulTypes, 'b'>,
  p: Pick<CpuMatmulProblem, 'K' | 'N' | 'transB' | 'ldb' | 'offB'>,
  bindingOffset: number,
): boolean {
  if (types.b !== 'f32' || p.transB || p.N % 4 || p.ldb % 64 || (bindingOffset + p.offB * 4) % 16) return false;
  const max2d = limits.maxTextureDimension2D ?? 0;
  return p.N / 4 <= max2d && p.K <= max2d && p.K * p.N * 4 <= B_TEXTURE_MAX_BYTES;
}

/** Steps of K one pass of the kernel's K loop covers: a value of A per lane, or a texel. */
const kStep = (aTex: boolean) => LANES * (aTex ? 4 : 1);

/** How K is cut into windows: rows per chunk, chunks, and whole panels per window. */
export type CpuWindowLayout = ReturnType<typeof layout>;

function layout(K: number, N: number, aTex = false) {
  const v = tileV(N);
  const step = kStep(aTex);
  const kpad = Math.max(step, Math.ceil(K / step) * step);
  const chunk = Math.min(windowK(v), kpad);
  const chunks = Math.ceil(kpad / chunk);
  const panels = Math.ceil(N / panelOf(v));
  const perWindow = chunks === 1 ? Math.max(1, Math.floor(windowK(v) / chunk)) : 1;
  return { v, panel: panelOf(v), chunk, chunks, panels, perWindow };
}

/**
 * Why this kernel cannot run a problem, or undefined when it can: f32/f16 operands in any layout; a batch of B
 * matrices must be one matrix broadcast (strideB 0), and an f16 C must come out of one dispatch along K (no f16
 * partial sums).
 */
export function cpuMatmulUnfit(types: CpuMatmulTypes, p: Pick<CpuMatmulProblem, 'batch' | 'K' | 'N' | 'sB'>): string | undefined {
  if (![types.a, types.b, types.c, types.bias ?? 'f32'].every((t) => t === 'f32' || t === 'f16')) return 'takes f32 or f16 tensors only';
  if (p.batch > 1 && p.sB !== 0) return 'takes one B matrix (strideB 0) for a batch';
  // The chunk count does not depend on A's path: windows are a multiple of 32 rows of K.
  const L = layout(p.K, p.N);
  if (types.c === 'f16' && L.chunks > WINDOWS) return `writes f16 C only for K <= ${WINDOWS * windowK(L.v)}`;
  return undefined;
}

/**
 * A B packed once into all of its windows (packCpuB), for a B that many products read unchanged (frozen weights):
 * window slot g·chunks + c holds chunk c of K for panel group g (perWindow panels). Its layout is the one a texture
 * A uses (K padded to 32 steps), which the storage-A kernel reads as well: it never reads past K.
 */
export interface CpuPackedWindows {
  windows: Tensor;
  layout: CpuWindowLayout;
  /** The product's first panel group within the packed B (its columns start at firstGroup·perWindow·panel). */
  firstGroup: number;
}

/** The window layout a packed B [K, N] has (packCpuB), whatever way A is later read. */
export const cpuPackedLayout = (K: number, N: number): CpuWindowLayout => layout(K, N, true);

/** Bytes of the windows packCpuB fills for a B of K x N. */
export function cpuPackedBytes(K: number, N: number): number {
  const L = cpuPackedLayout(K, N);
  return Math.ceil(L.panels / L.perWindow) * L.chunks * WINDOW_VEC4 * 16;
}

/**
 * Packs all of B into `windows` (cpuPackedBytes long) in the layout cpuPackedLayout describes. Each pack dispatch
 * binds only the span of B its windows read, so a B larger than one storage binding packs too.
 */
export function packCpuB(
  gpu: Gpu,
  bType: DType,
  p: Pick<CpuMatmulProblem, 'K' | 'N' | 'transB' | 'ldb' | 'offB'>,
  b: Tensor,
  windows: Tensor,
  op: string,
): void {
  const L = cpuPackedLayout(p.K, p.N);
  const variant = cpuPackVariant(p);
  const pipeline = gpu.pipeline(`matmul-cpu-pack:${bType}${p.transB ? 'T' : 'N'}:${variant}:v${L.v}`, () => packWgsl(bType, p.transB, variant, L.v));
  const eb = DTYPE_BYTES[bType];
  const windowBytes = WINDOW_VEC4 * 16;
  const shapes = `${b} ${p.transB ? 'tB ' : ''}K=${p.K} N=${p.N} packed`;
  for (let g = 0; g * L.perWindow < L.panels; g++) {
    const pan = g * L.perWindow;
    const count = Math.min(L.perWindow, L.panels - pan);
    const [n0, n1] = [pan * L.panel, Math.min(p.N, (pan + count) * L.panel)];
    for (let c0 = 0; c0 < L.chunks; c0 += WINDOWS) {
      const nch = Math.min(WINDOWS, L.chunks - c0);
      const [k0, k1] = [c0 * L.chunk, Math.min(p.K, (c0 + nch) * L.chunk)];
      // The elements these windows read, bound from a storage-aligned start; the kernel's offset is taken from that
      // start (mod 2^32: its index sums wrap back into the span).
      const lo = p.offB + (p.transB ? n0 * p.ldb + k0 : k0 * p.ldb + n0);
      const hi = p.offB + (p.transB ? (n1 - 1) * p.ldb + k1 : (k1 - 1) * p.ldb + n1);
      const start = Math.floor((b.byteOffset + lo * eb) / gpu.storageAlign) * gpu.storageAlign - b.byteOffset;
      const span = b.binding(start, hi * eb - start);
      gpu.dispatch({
        op: `${op}-pack`,
        shapes,
        pipeline,
        params: new Params().u32(p.K).u32(p.N).u32(p.ldb).u32((p.offB - start / eb) >>> 0).u32(L.chunk).u32(pan).u32(k0).bytes(),
        bindings: [span, windows.binding((g * L.chunks + c0) * windowBytes, nch * windowBytes)],
        workgroups: [L.chunk / PACK_ROWS, nch, count],
      });
    }
  }
}

/**
 * Packs B into windows (or takes them from `packed`) and runs the dispatches over them; `bindings` are A, B,
 * C[, bias] as bound by matmul.
 */
export function launchCpuMatmul(
  gpu: Gpu,
  types: CpuMatmulTypes,
  p: CpuMatmulProblem,
  bindings: GPUBufferBinding[],
  op: string,
  shapes: string,
  packed?: CpuPackedWindows,
): void {
  const [aBind, bBind, cBind, biasBind] = bindings;
  const aTex = cpuATexture(gpu.limits, types, p, aBind.offset ?? 0);
  const L = packed ? { ...packed.layout, panels: Math.ceil(p.N / packed.layout.panel) } : layout(p.K, p.N, !!aTex);
  // Each dispatch takes one panel (or one window of panels, for a small K) and up to WINDOWS chunks of K; its
  // windows are packed just before it into one scratch buffer that every dispatch reuses (the queue runs them in
  // order), so the extra memory is at most WINDOWS · 64 KB whatever the size of B.
  const chunksPer = Math.min(L.chunks, WINDOWS);
  const scratch = packed ? undefined : gpu.tensor([chunksPer * WINDOW_VEC4 * 4], 'f32', undefined, op);
  const c4 = cpuCVec4(p, cBind.offset ?? 0);
  const key = `${types.a}${aTex ? 'tex' : p.transA ? 'T' : 'N'}:${types.c}${c4 ? 'x4' : ''}:${types.bias ?? '-'}:${p.beta !== 0 ? 'beta' : ''}`;
  const rows = tileRows(p.M, L.v);
  const pipeline = gpu.pipeline(`matmul-cpu-ubo:${key}:v${L.v}:r${rows}`, () => matmulWgsl(types, p.transA, !!aTex, p.beta !== 0, L.v, c4, rows));
  // Row-major f32 rows of `ld` elements from element `off` of `bind`, copied into the device's A or B texture.
  const upload = (which: 'a' | 'b', bind: GPUBufferBinding, off: number, ld: number, size: { width: number; height: number; layers: number }, rowsPerImage: number) => {
    const texture = deviceTexture(gpu, which, size.width, size.height, size.layers);
    gpu.copyToTexture(
      `${op}-${which}-texture`,
      { buffer: bind.buffer, offset: (bind.offset ?? 0) + off * 4, bytesPerRow: ld * 4, rowsPerImage },
      { texture },
      { width: size.width, height: size.height, depthOrArrayLayers: size.layers },
    );
    return texture;
  };
  const aSource: GPUBufferBinding | GPUTextureView = aTex
    ? upload('a', aBind, p.offA, p.lda, { width: aTex.width, height: p.M, layers: aTex.layers }, aTex.rowsPerImage).createView({
        dimension: '2d-array',
      })
    : aBind;
  const bTexture = !packed && cpuBCopies(gpu.limits, types, p, bBind.offset ?? 0)
    ? upload('b', bBind, p.offB, p.ldb, { width: p.N / 4, height: p.K, layers: 1 }, p.K)
    : undefined;
  const variant = cpuPackVariant(p);
  // Compiled only where B is packed by a kernel (a first compile costs lavapipe seconds).
  const packPipeline = bTexture || packed
    ? undefined
    : gpu.pipeline(`matmul-cpu-pack:${types.b}${p.transB ? 'T' : 'N'}:${variant}:v${L.v}`, () => packWgsl(types.b, p.transB, variant, L.v));
  const windowBytes = WINDOW_VEC4 * 16;
  const rowBlocks = Math.ceil(p.M / rows);
  const tickets = ticketCounter(gpu);
  for (let c0 = 0; c0 < L.chunks; c0 += chunksPer) {
    const nch = Math.min(chunksPer, L.chunks - c0);
    const kStart = c0 * L.chunk;
    const kLen = Math.min(nch * L.chunk, p.K - kStart);
    for (let pan = 0; pan < L.panels; pan += L.perWindow) {
      const count = Math.min(L.perWindow, L.panels - pan);
      if (!scratch) {
        // Packed already.
      } else if (bTexture) {
        // The pack kernel's layout (see packWgsl), copied: each panel's kLen rows, windows back to back (a window is
        // one chunk of one panel when there are several chunks, else several panels of one chunk). Rows past K and
        // columns past N must read as zeros.
        if (kLen < nch * L.chunk || (pan + count) * L.panel > p.N) gpu.clear(scratch);
        for (let z = 0; z < count; z++) {
          const n0 = (pan + z) * L.panel;
          gpu.copyFromTexture(
            `${op}-b-copy`,
            { texture: bTexture, origin: { x: n0 / 4, y: kStart } },
            { buffer: scratch.buffer, offset: scratch.byteOffset + z * L.chunk * L.panel * 4, bytesPerRow: L.panel * 4 },
            { width: Math.min(L.panel, p.N - n0) / 4, height: kLen },
          );
        }
      } else if (packPipeline) {
        gpu.dispatch({
          op: `${op}-pack`,
          shapes,
          pipeline: packPipeline,
          params: new Params().u32(p.K).u32(p.N).u32(p.ldb).u32(p.offB).u32(L.chunk).u32(pan).u32(kStart).bytes(),
          bindings: [bBind, scratch],
          workgroups: [L.chunk / PACK_ROWS, nch, count],
        });
      }
      // Window w holds chunk w of this dispatch; slots past nch repeat the first (every binding must be bound).
      const first = packed ? ((packed.firstGroup + pan / L.perWindow) * L.chunks + c0) * windowBytes : 0;
      const source = packed?.windows ?? scratch!;
      const windows: GPUBufferBinding[] = [];
      for (let w = 0; w < WINDOWS; w++) {
        windows.push({ buffer: source.buffer, offset: source.byteOffset + first + (w < nch ? w : 0) * windowBytes, size: windowBytes });
      }
      const params = new Params()
        .u32(p.M)
        .u32(p.N)
        .u32(Math.max(0, kLen))
        .u32(p.lda)
        .u32(p.ldc)
        .u32(aTex ? kStart / 4 : p.offA + (p.transA ? kStart * p.lda : kStart))
        .u32(p.offC)
        .u32(aTex ? Number(aTex.layers > 1) : p.sA)
        .u32(p.sC)
        .u32(pan * L.panel)
        .u32(L.chunk * (L.panel / 4))
        .u32(p.offBias)
        .f32(p.alpha)
        .f32(p.beta)
        .u32(c0 === 0 ? 1 : 0)
        // k0 / chunk and k0 % chunk as a shift and a mask (llvmpipe divides lane by lane): several chunks are each
        // a whole window (a power of two of rows), and with one chunk k0 < chunk.
        .u32(L.chunks === 1 ? 31 : Math.log2(L.chunk))
        .u32(L.chunks === 1 ? 0xffffffff : L.chunk - 1);
      const tiles = count * rowBlocks * p.batch;
      const workgroups = ticketWorkgroups(tiles);
      gpu.dispatch({
        op,
        shapes,
        pipeline,
        params: params.u32(tiles).u32(workgroups).u32(count).u32(rowBlocks).bytes(),
        bindings: [aSource, cBind, ...(biasBind ? [biasBind] : []), ...windows, tickets],
        workgroups: [workgroups, 1, 1],
      });
    }
  }
  scratch?.dispose();
}

/** Rows of K one pack workgroup writes (chunks are multiples of 8): llvmpipe pays a few microseconds a workgroup. */
const PACK_ROWS = 8;

/**
 * How the pack kernel reads B: `rows` reads 4 columns of a row of a row-major B as one vec4, `cols` reads 4 rows
 * of K of a transposed B ([N, K]) as one vec4 per column and writes a 4x4 block, `scalar` reads element by
 * element (any layout). On llvmpipe every storage load is a loop over the 8 lanes with a bounds check, once per
 * load: a vec4 load shares that loop among its 4 elements.
 */
export type CpuPackVariant = 'rows' | 'cols' | 'scalar';

export function cpuPackVariant(p: Pick<CpuMatmulProblem, 'transB' | 'K' | 'N' | 'ldb' | 'offB'>): CpuPackVariant {
  if (p.ldb % 4 || p.offB % 4) return 'scalar';
  if (!p.transB) return p.N % 4 ? 'scalar' : 'rows';
  return p.K % 4 ? 'scalar' : 'cols';
}

/**
 * Window w of the scratch buffer: chunk w of K (rows kStart + w·chunk ..) of the panels from `pan` on, each panel
 * `chunk` rows of panel/4 vec4s; f32, zero past K and N. Lane l writes vec4 column l of PACK_ROWS rows
 * (workgroup_id.x: which rows; .y: the window; .z: the panel within the window), so no index needs an integer
 * division, which llvmpipe does lane by lane.
 */
function packWgsl(bType: DType, transB: boolean, variant: CpuPackVariant, V: number): string {
  const panel = panelOf(V);
  const q = panel / 4;
  const elem = wgslType(bType);
  const at = (k: string, n: string) => `f32(B[p.offB + ${transB ? `(${n}) * p.ldb + ${k}` : `${k} * p.ldb + ${n}`}])`;
  const out = (row: string) => `w * ${WINDOW_VEC4}u + (wid.z * p.chunk + ${row}) * ${q}u + li`;
  let body: string;
  if (variant === 'cols') {
    // Four vec4 along K (one per column n..n+3) make a 4x4 block; K % 4 == 0, so k < K covers all four rows.
    body = `
  for (var g = wid.x * ${PACK_ROWS / 4}u; g < (wid.x + 1u) * ${PACK_ROWS / 4}u; g++) {
    let k = p.kStart + w * p.chunk + g * 4u;
    var c0 = vec4<f32>(); var c1 = vec4<f32>(); var c2 = vec4<f32>(); var c3 = vec4<f32>();
    if (k < p.K) {
      let base = (p.offB + n * p.ldb + k) / 4u;
      let step = p.ldb / 4u;
      if (n < p.N) { c0 = vec4<f32>(B[base]); }
      if (n + 1u < p.N) { c1 = vec4<f32>(B[base + step]); }
      if (n + 2u < p.N) { c2 = vec4<f32>(B[base + 2u * step]); }
      if (n + 3u < p.N) { c3 = vec4<f32>(B[base + 3u * step]); }
    }
    packed[${out('g * 4u')}] = vec4<f32>(c0.x, c1.x, c2.x, c3.x);
    packed[${out('g * 4u + 1u')}] = vec4<f32>(c0.y, c1.y, c2.y, c3.y);
    packed[${out('g * 4u + 2u')}] = vec4<f32>(c0.z, c1.z, c2.z, c3.z);
    packed[${out('g * 4u + 3u')}] = vec4<f32>(c0.w, c1.w, c2.w, c3.w);
  }`;
  } else {
    const read =
      variant === 'rows'
        ? `if (n < p.N) { v = vec4<f32>(B[(p.offB + k * p.ldb + n) / 4u]); }`
        : `for (var c = 0u; c < 4u; c++) {
      if (n + c < p.N) { v[c] = ${at('k', 'n + c')}; }
    }`;
    body = `
  for (var row = wid.x * ${PACK_ROWS}u; row < (wid.x + 1u) * ${PACK_ROWS}u; row++) {
    let k = p.kStart + w * p.chunk + row;
    var v = vec4<f32>();
    if (k < p.K) {
      ${read}
    }
    packed[${out('row')}] = v;
  }`;
  }
  return /* wgsl */ `${enableF16([bType])}
struct P { K: u32, N: u32, ldb: u32, offB: u32, chunk: u32, pan: u32, kStart: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> B: array<${variant === 'scalar' ? elem : `vec4<${elem}>`}>;
@group(0) @binding(2) var<storage, read_write> packed: array<vec4<f32>>;

@compute @workgroup_size(${q})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let w = wid.y;
  let n = (p.pan + wid.z) * ${panel}u + li * 4u;${body}
}`;
}

/**
 * Whether C is written as vec4s: N, ldc, offC and sC multiples of 4 from a 16-byte boundary, so each lane's column
 * groups are whole vec4s of C. On llvmpipe a storage access is a loop over the lanes with a bounds check per lane,
 * once per load or store, so a vec4 shares it among 4 elements.
 */
export function cpuCVec4(p: Pick<CpuMatmulProblem, 'N' | 'ldc' | 'offC' | 'sC' | 'batch'>, bindingOffset: number): boolean {
  return p.N % 4 === 0 && p.ldc % 4 === 0 && p.offC % 4 === 0 && (p.batch === 1 || p.sC % 4 === 0) && bindingOffset % 16 === 0;
}

function matmulWgsl(types: CpuMatmulTypes, transA: boolean, aTex: boolean, beta: boolean, V: number, c4: boolean, rows: number): string {
  const panel = panelOf(V);
  let decl = '';
  let loadA = '';
  let loadB = '';
  let step = '';
  let stash = '';
  // With A's texels, step j·unroll + u of this pass is component u % 4 of lane j·unroll/4 + u/4's texel; with
  // scalar A, lane kk + u holds step kk + u.
  const unroll = unrollFor(V);
  const shuffle = (r: number, u: number) =>
    aTex ? `subgroupShuffle(a${r}[${u % 4}], j * ${unroll / 4}u + ${Math.floor(u / 4)}u)` : `subgroupShuffle(a${r}, kk + ${u}u)`;
  for (let r = 0; r < rows; r++) {
    const m = `min(m0 + ${r}u, p.M - 1u)`;
    loadA += aTex
      ? `let a${r} = select(vec4<f32>(), textureLoad(A, vec2<u32>(kq, ${m}), layer, 0), in_k);\n`
      : `let a${r} = select(0.0, f32(A[base_a + ${transA ? `kl * p.lda + ${m}` : `${m} * p.lda + kl`}]), in_k);\n`;
    step += `{ ${Array.from({ length: unroll }, (_, u) => `let s${u} = vec4<f32>(${shuffle(r, u)});`).join(' ')}\n`;
    for (let v = 0; v < V; v++) {
      decl += `var acc${r}_${v} = vec4<f32>();\n`;
      let e = `acc${r}_${v}`;
      for (let u = 0; u < unroll; u++) e = `fma(s${u}, b${u}_${v}, ${e})`;
      step += `acc${r}_${v} = ${e};\n`;
      stash += `res[${r * V + v}] = acc${r}_${v};\n`;
    }
    step += '}\n';
  }
  let declB = '';
  for (let u = 0; u < unroll; u++) for (let v = 0; v < V; v++) declB += `var b${u}_${v}: vec4<f32>;\n`;
  // The window comes from an if-chain (WGSL cannot index bindings); llvmpipe skips the branches no lane takes.
  for (let w = 0; w < WINDOWS; w++) {
    loadB += `${w ? ' else ' : ''}if (win == ${w}u) {\n`;
    for (let u = 0; u < unroll; u++) {
      for (let v = 0; v < V; v++) loadB += `b${u}_${v} = W${w}.v[row + ${(u * panel) / 4 + v}u];\n`;
    }
    loadB += '}';
  }
  const cType = wgslType(types.c);
  // C is stored a vec4 at a time (c4) or element by element; store_c takes the accumulators in the same units.
  const accT = c4 ? 'vec4<f32>' : 'f32';
  const cElem = c4 ? `vec4<${cType}>` : cType;
  const biasAt = c4 ? 'vec4<f32>(f32(bias[b]), f32(bias[b + 1u]), f32(bias[b + 2u]), f32(bias[b + 3u]))' : 'f32(bias[b])';
  return /* wgsl */ `enable subgroups;
${enableF16([types.a, types.c, types.bias ?? 'f32'])}
struct P { M: u32, N: u32, kc: u32, lda: u32, ldc: u32, offA: u32, offC: u32, sA: u32, sC: u32, n0: u32,
           panelVec4: u32, offBias: u32, alpha: f32, beta: f32, first: u32, chunkShift: u32, chunkMask: u32,
           tiles: u32, workgroups: u32, panels: u32, rowBlocks: u32 }
struct Window { v: array<vec4<f32>, ${WINDOW_VEC4}> }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) ${aTex ? 'var A: texture_2d_array<f32>;' : `var<storage, read> A: array<${wgslType(types.a)}>;`}
@group(0) @binding(2) var<storage, read_write> C: array<${cElem}>;
${types.bias ? `@group(0) @binding(3) var<storage, read> bias: array<${wgslType(types.bias)}>;` : ''}
${Array.from({ length: WINDOWS }, (_, w) => `@group(0) @binding(${w + (types.bias ? 4 : 3)}) var<uniform> W${w}: Window;`).join('\n')}
${TICKETS.decl(WINDOWS + (types.bias ? 4 : 3))}

// The first dispatch along K applies alpha, beta·C and the bias; later ones (K > 8 windows) add alpha times theirs.
fn store_c(i: u32, n: u32, acc: ${accT}) {
  var v = p.alpha * acc;
  if (p.first == 1u) {
    ${beta ? `v += p.beta * ${accT}(C[i]);` : ''}
    ${types.bias ? `let b = p.offBias + n; v += ${biasAt};` : ''}
  } else {
    v += ${accT}(C[i]);
  }
  C[i] = ${cElem}(v);
}

@compute @workgroup_size(${LANES})
fn main(@builtin(local_invocation_index) li: u32) {
  ${TICKETS.open('p.tiles', 'p.workgroups')}
  // Tile = (panel within the window, block of ${rows} rows, batch item).
  let wid = vec3<u32>(tile % p.panels, (tile / p.panels) % p.rowBlocks, tile / (p.panels * p.rowBlocks));
  let z = wid.z;
  let m0 = wid.y * ${rows}u;
  let base_a = p.offA + z * p.sA;
  // A's texture has a layer per batch item, or one shared by all (sA 0).
  ${aTex ? 'let layer = select(0u, z, p.sA != 0u);' : ''}
  // Window c holds chunk c of K; several panels share a window when K is small.
  let base_b = wid.x * p.panelVec4 + li * ${V}u;
  ${decl}
  ${declB}
  // Rows past kc read zeros from the window and A is zeroed there, so whole passes are safe.
  for (var k0 = 0u; k0 < p.kc; k0 += ${kStep(aTex)}u) {
${
  aTex
    ? `    // Lane li holds steps 4li..4li+3 (clamped into the row; zeroed past kc); offA is the first texel.
    let kq = p.offA + min(k0 + li * 4u, (p.kc - 1u) & ~3u) / 4u;
    let in_k = vec4<u32>(k0 + li * 4u) + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(p.kc);`
    : `    let in_k = k0 + li < p.kc;
    let kl = min(k0 + li, p.kc - 1u);`
}
    let win = k0 >> p.chunkShift;
    let kw = k0 & p.chunkMask;
    ${loadA}
    // Not unrolled further: the body is ~2000-4000 instructions; 8 copies spill out of the instruction cache.
    for (var ${aTex ? `j = 0u; j < ${(LANES * 4) / unroll}u; j++` : `kk = 0u; kk < ${LANES}u; kk += ${unroll}u`}) {
      let row = base_b + (kw + ${aTex ? `j * ${unroll}u` : 'kk'}) * ${panel / 4}u;
      ${loadB}
      ${step}
    }
  }
  // One store loop instead of ${rows * V} unrolled ones keeps compile time down.
  var res: array<vec4<f32>, ${rows * V}>;
  ${stash}
  let n_lane = p.n0 + wid.x * ${panel}u + li * ${V * 4}u;
  for (var i = 0u; i < ${rows * V}u; i++) {
    let m = m0 + i / ${V}u;
    let n = n_lane + (i % ${V}u) * 4u;
    ${
      c4
        ? `if (m < p.M && n < p.N) { store_c((p.offC + z * p.sC + m * p.ldc + n) / 4u, n, res[i]); }`
        : `if (m < p.M) {
      for (var j = 0u; j < 4u; j++) {
        if (n + j < p.N) { store_c(p.offC + z * p.sC + m * p.ldc + n + j, n + j, res[i][j]); }
      }
    }`
    }
  }
  ${TICKETS.close}
}`;
}
