import type { Gpu } from '../runtime/gpu.js';
import { Params } from '../runtime/params.js';
import { GpuLimitError, ShapeError } from '../runtime/errors.js';
import type { Tensor } from '../runtime/tensor.js';
import { DTYPE_BYTES } from '../runtime/dtype.js';
import { rowBinding } from '../runtime/windows.js';
import { isCpuAdapter, matmul as packageMatmul, type PackedMatmulB } from './matmul.js';
import { LINEAR_WORKGROUP, enableF16, wgslType } from './wgsl.js';
import { ticketCounter, ticketWorkgroups } from './tickets.js';
import { CPU_MERGE_WGSL, FOLD_STATE, cpuDhWgsl, cpuHeadPlan, cpuPartialBytes, cpuHeadUnfit, cpuStatsWgsl, cpuTokenBlock } from './head-cpu.js';

/*
 * Fused LM head: z = h·Wᵀ/τ over a large vocabulary, then per token log p(target), entropy and logsumexp,
 * without ever holding the [T, V] logits. Tokens and vocabulary go in chunks; each (token chunk, vocab chunk)
 * pair computes a logits tile of at most `chunkTokens × chunkVocab` f32 into one scratch buffer.
 *
 * Forward, per vocab chunk: tile = h·Wᵀ/τ, then per row the chunk's max m', s' = Σ e^(z-m'),
 * t' = Σ e^(z-m')·(z-m'), merged online into the running (m, s, t). At the end lse = m + log s and
 * entropy = log s - t/s (t is kept relative to m so the subtraction does not cancel).
 *
 * Backward recomputes each tile and turns it into dz in place:
 *   dz = gLP·(onehot(y) - p) - gEnt·p·(log p + H),   dh += dz·W / τ.
 *
 * Usage (SFT: mean NLL; PPO: per-token coefficients on logprob plus an entropy bonus):
 *   const fwd = headForward(gpu, hidden, lmHead, targets, { temperature });
 *   const dh = headBackward(gpu, hidden, lmHead, targets, fwd, { dLoss: 1 });               // SFT
 *   const dh = headBackward(gpu, hidden, lmHead, targets, fwd, { dLogprob: a, dEntropy: b }); // PPO
 */

/** Default budget for the logits tile (bytes of f32). */
const TILE_BYTES = 16 << 20;
/** Workgroups a matmul dispatch should have before it takes bigger register tiles (fills a large GPU). */
const MIN_WORKGROUPS = 256;
/** Smallest slice of K worth a workgroup of its own when K is split. */
const MIN_SPLIT_K = 256;
const WG = 256;
/** Start of a running max: finite, so exp(m - M) of an empty partial is 0, not NaN from -inf - -inf. */
const LOWEST = '-3.0e38';

export interface HeadOptions {
  /** Divides the logits before the softmax (sampling temperature). Default 1. */
  temperature?: number;
  /** Tokens per chunk. Default min(T, 512), lowered to fit bindings. */
  chunkTokens?: number;
  /** Vocabulary rows per chunk. Default: what fills a 16 MiB f32 tile, lowered to fit bindings. */
  chunkVocab?: number;
  /**
   * Force the tiled path's own matmul kernel and its register tile (rows x cols per thread), for tests and tuning.
   * Default: by shape, and on a CPU adapter the cpu-tiled matmul instead.
   */
  tiles?: HeadTiles;
  /**
   * 'cpu': the fused kernels for CPU adapters (head-cpu.ts; logits stay in registers, no tile); 'tiled': a logits
   * tile, then reductions (on a CPU adapter its matmuls are the cpu-tiled matmul's). Default 'auto': 'cpu' where it
   * can run and its token block is full enough (see useCpu), else 'tiled'.
   */
  kernel?: 'auto' | 'tiled' | 'cpu';
  /**
   * The weight packed once for the cpu-tiled matmul (`packMatmulB(gpu, weight, { transB: true })`): on a CPU adapter
   * the tiled path's logits then read it instead of packing each vocabulary chunk of the weight again. It must be
   * current (see PackedMatmulB). Vocabulary chunks are cut on its column groups. A function giving it is called
   * only where that path runs, so a caller can pack on first use.
   */
  packedWeight?: PackedMatmulB | (() => PackedMatmulB | undefined);
}

/** The packed weight where the tiled path's logits run on the cpu-tiled matmul, else undefined (not asked for). */
function packedFor(gpu: Gpu, opts: HeadOptions, cpu: boolean): PackedMatmulB | undefined {
  if (cpu || !cpuTileMatmuls(gpu, opts.tiles)) return undefined;
  return typeof opts.packedWeight === 'function' ? opts.packedWeight() : opts.packedWeight;
}

export type HeadTiles = readonly [1 | 4 | 8, 4 | 8];

export interface HeadForwardOptions extends HeadOptions {
  /**
   * Keep the raw logits h·Wᵀ (before the temperature) as `logits` [T, V] f32 for headBackward, which then reads
   * them instead of recomputing them: about half of its time on lavapipe (docs/BENCHMARKS.md, session 27). Only on
   * the fused CPU kernels and where T·V·4 bytes fit one binding; elsewhere `logits` stays undefined.
   */
  keepLogits?: boolean;
  /**
   * Keep them here instead of in a new tensor (implies keepLogits): f32 [T, V], e.g. a view of a buffer reused from
   * call to call. On lavapipe a fresh buffer of tens of MB costs more to touch first than the backward saves.
   */
  logitsOut?: Tensor;
}

export interface HeadForwardResult {
  /** log p(target) per token; 0 where the target is negative (ignored); NaN where it is >= V. */
  logprob: Tensor<'f32'>;
  /** Entropy of the (tempered) next-token distribution per token, ignored positions included. */
  entropy: Tensor<'f32'>;
  /** logsumexp of the tempered logits per token, saved for backward. */
  lse: Tensor<'f32'>;
  /** [1]: mean of -logprob over tokens with a target >= 0 (0 when there are none). */
  loss: Tensor<'f32'>;
  /** [1]: number of tokens with a target >= 0, as f32. */
  count: Tensor<'f32'>;
  /** [T, V] raw logits, where `keepLogits` asked for them and they were kept; the caller disposes them. */
  logits?: Tensor<'f32'>;
}

/** What backward needs from forward; a `HeadForwardResult` serves. */
export interface HeadSaved {
  lse: Tensor<'f32'>;
  /** Needed when `dEntropy` is given. */
  entropy?: Tensor<'f32'>;
  /** Needed when `dLoss` is given. */
  count?: Tensor<'f32'>;
  /** The forward's kept logits (keepLogits): read instead of recomputed where the fused CPU kernels run. */
  logits?: Tensor<'f32'>;
}

/** Upstream gradients; the loss is any linear combination of per-token logprob, entropy and the mean loss. */
export interface HeadGrads {
  /** [T] dL/dlogprob. Positions with a negative target get none (their logprob is constant 0). */
  dLogprob?: Tensor<'f32'>;
  /** [T] dL/dentropy, applied at every position: mask it yourself where entropy should not count. */
  dEntropy?: Tensor<'f32'>;
  /** dL/dloss for the mean-NLL loss, i.e. adds -dLoss/count to dLogprob of every unmasked token. */
  dLoss?: number;
}

export interface HeadBackwardOptions extends HeadOptions {
  /** Write dHidden here instead of a new tensor. */
  out?: Tensor<'f32'>;
  /** Add into `out` instead of overwriting it. */
  accumulate?: boolean;
}

/**
 * Forward of the fused LM head. hidden [T, H] f32|f16, weight [V, H] f32|f16 (may exceed one binding; vocab
 * rows are bound window by window), targets [T] i32 with negative values ignored.
 */
export function headForward(
  gpu: Gpu,
  hidden: Tensor,
  weight: Tensor,
  targets: Tensor,
  opts: HeadForwardOptions = {},
): HeadForwardResult {
  const op = 'headForward';
  const { T, V, tau } = validate(op, hidden, weight, targets, opts);
  const cpu = useCpu(gpu, op, hidden, weight, opts);
  const packed = packedFor(gpu, opts, cpu);
  const { tc: TC, vc: VC } = plan(gpu, op, hidden, weight, opts, cpu, packed);

  const logprob = gpu.tensor([T], 'f32', undefined, op);
  const entropy = gpu.tensor([T], 'f32', undefined, op);
  const lse = gpu.tensor([T], 'f32', undefined, op);
  const loss = gpu.tensor([1], 'f32', undefined, op);
  const count = gpu.tensor([1], 'f32', undefined, op);
  const tile = cpu ? undefined : gpu.tensor([TC, VC], 'f32', undefined, `${op} tile`);
  const state = gpu.tensor([TC, 4], 'f32', undefined, `${op} state`);
  const acc = gpu.zeros([2], 'f32', `${op} acc`);
  const out = opts.logitsOut;
  if (out && (out.dtype !== 'f32' || out.shape.join() !== `${T},${V}`)) {
    throw new ShapeError(`logitsOut must be f32[${T},${V}], got ${out}`, { op, shapes: `hidden ${hidden}, weight ${weight}` });
  }
  const keep = cpu && (opts.keepLogits || out) && T * V * 4 <= gpu.maxBinding;
  const logits = keep ? ((out as Tensor<'f32'> | undefined) ?? gpu.tensor([T, V], 'f32', undefined, `${op} logits`)) : undefined;
  const shapes = `h${hidden} w${weight} y${targets} ${cpu ? 'cpu' : 'tile'} ${TC}x${VC}`;

  const statsPipe = gpu.pipeline('head:stats', () => STATS_WGSL);
  const finalPipe = gpu.pipeline('head:final', () => FINAL_WGSL);
  for (let t0 = 0; t0 < T; t0 += TC) {
    const tc = Math.min(TC, T - t0);
    const y = rowBinding(targets, t0, tc, 1);
    for (let v0 = 0; v0 < V; v0 += VC) {
      const vc = Math.min(VC, V - v0);
      if (!tile) {
        cpuStats(gpu, op, shapes, { hidden, weight, y, t0, tc, v0, vc, tau, maxBinding: gpu.maxBinding, logits }, state);
        continue;
      }
      logitsTile(gpu, op, shapes, hidden, weight, t0, tc, v0, vc, tile, tau, opts.tiles, packed);
      gpu.dispatch({
        op: `${op}:stats`,
        shapes,
        pipeline: statsPipe,
        params: new Params().u32(vc).u32(v0).u32(y.skip).u32(v0 === 0 ? 1 : 0).bytes(),
        bindings: [tile.binding(0, tc * vc * 4), y.binding, state.binding(0, tc * 16)],
        workgroups: gpu.grid(tc),
      });
    }
    const [lp, ent, ls] = [logprob, entropy, lse].map((t) => rowBinding(t, t0, tc, 1));
    gpu.dispatch({
      op: `${op}:final`,
      shapes,
      pipeline: finalPipe,
      params: new Params().u32(tc).u32(V).u32(y.skip).u32(lp.skip).u32(ent.skip).u32(ls.skip).u32(0x7fc00000).bytes(),
      bindings: [state.binding(0, tc * 16), y.binding, lp.binding, ent.binding, ls.binding, acc.binding(), loss.binding(), count.binding()],
      workgroups: [1],
    });
  }
  tile?.dispose();
  state.dispose();
  acc.dispose();
  return { logprob, entropy, lse, loss, count, logits };
}

/**
 * dHidden [T, H] f32 of L = Σ_t dLogprob_t·logprob_t + dEntropy_t·entropy_t + dLoss·loss, recomputing the
 * logits chunk by chunk (or, on the fused CPU kernels, reading `saved.logits` where the forward kept them). The
 * weight is frozen: no dW.
 */
export function headBackward(
  gpu: Gpu,
  hidden: Tensor,
  weight: Tensor,
  targets: Tensor,
  saved: HeadSaved,
  grads: HeadGrads,
  opts: HeadBackwardOptions = {},
): Tensor<'f32'> {
  const op = 'headBackward';
  const { T, H, V, tau } = validate(op, hidden, weight, targets, opts);
  const shapes = `h${hidden} w${weight} y${targets}`;
  const perToken = (name: string, t: Tensor | undefined, shape: number[] = [T]) => {
    if (t && (t.dtype !== 'f32' || t.shape.join() !== shape.join())) {
      throw new ShapeError(`${name} must be f32[${shape}], got ${t}`, { op, shapes });
    }
  };
  perToken('lse', saved.lse);
  perToken('entropy', saved.entropy);
  perToken('count', saved.count, [1]);
  perToken('logits', saved.logits, [T, V]);
  perToken('dLogprob', grads.dLogprob);
  perToken('dEntropy', grads.dEntropy);
  perToken('out', opts.out, [T, H]);
  if (grads.dEntropy && !saved.entropy) throw new ShapeError('dEntropy needs saved.entropy', { op, shapes });
  const dLoss = grads.dLoss ?? 0;
  if (!Number.isFinite(dLoss)) throw new ShapeError(`dLoss must be finite, got ${dLoss}`, { op, shapes });
  if (dLoss !== 0 && !saved.count) throw new ShapeError('dLoss needs saved.count', { op, shapes });
  const cpu = useCpu(gpu, op, hidden, weight, opts);
  const packed = packedFor(gpu, opts, cpu);
  const { tc: TC, vc: VC } = plan(gpu, op, hidden, weight, opts, cpu, packed);

  const dh = opts.out ?? gpu.tensor([T, H], 'f32', undefined, op);
  const tile = cpu ? undefined : gpu.tensor([TC, VC], 'f32', undefined, `${op} tile`);
  const coef = gpu.tensor([TC, 4], 'f32', undefined, `${op} coef`);
  const fullShapes = `${shapes} ${cpu ? 'cpu' : 'tile'} ${TC}x${VC}`;
  const coefPipe = gpu.pipeline('head:coef', () => COEF_WGSL);
  const dzPipe = gpu.pipeline('head:dz', () => DZ_WGSL);
  for (let t0 = 0; t0 < T; t0 += TC) {
    const tc = Math.min(TC, T - t0);
    const y = rowBinding(targets, t0, tc, 1);
    const ls = rowBinding(saved.lse, t0, tc, 1);
    // Absent inputs bind the lse window in their place; flags keep the kernel from reading them.
    const ent = saved.entropy ? rowBinding(saved.entropy, t0, tc, 1) : ls;
    const dlp = grads.dLogprob ? rowBinding(grads.dLogprob, t0, tc, 1) : ls;
    const dent = grads.dEntropy ? rowBinding(grads.dEntropy, t0, tc, 1) : ls;
    gpu.dispatch({
      op: `${op}:coef`,
      shapes: fullShapes,
      pipeline: coefPipe,
      params: new Params()
        .u32(tc)
        .u32(y.skip)
        .u32(ls.skip)
        .u32(ent.skip)
        .u32(dlp.skip)
        .u32(dent.skip)
        .u32(grads.dLogprob ? 1 : 0)
        .u32(grads.dEntropy ? 1 : 0)
        .f32(dLoss)
        .bytes(),
      bindings: [y.binding, ls.binding, ent.binding, dlp.binding, dent.binding, (saved.count ?? saved.lse).binding(0, 4), coef.binding(0, tc * 16)],
      workgroups: gpu.grid(Math.ceil(tc / WG)),
    });
    const dhw = rowBinding(dh, t0, tc, H);
    for (let v0 = 0; v0 < V; v0 += VC) {
      const vc = Math.min(VC, V - v0);
      const accumulate = v0 > 0 || opts.accumulate === true;
      if (!tile) {
        cpuDh(gpu, op, fullShapes, { hidden, weight, y, t0, tc, v0, vc, tau, maxBinding: gpu.maxBinding, logits: saved.logits }, coef, dhw, accumulate);
        continue;
      }
      logitsTile(gpu, op, fullShapes, hidden, weight, t0, tc, v0, vc, tile, tau, opts.tiles, packed);
      gpu.dispatch({
        op: `${op}:dz`,
        shapes: fullShapes,
        pipeline: dzPipe,
        params: new Params().u32(tc).u32(vc).u32(v0).u32(y.skip).bytes(),
        bindings: [coef.binding(0, tc * 16), y.binding, tile.binding(0, tc * vc * 4)],
        workgroups: gpu.grid(Math.ceil((tc * vc) / WG)),
      });
      // dh[tc, H] (+)= dz[tc, vc] · W[v0:v0+vc, H] / τ
      const wv = cpuTileMatmuls(gpu, opts.tiles) && alignedRows(gpu, weight, v0, vc);
      const dhv = wv && alignedRows(gpu, dh, t0, tc);
      if (wv && dhv) {
        packageMatmul(gpu, tile, wv, { m: tc, n: H, k: vc, lda: vc, out: dhv, alpha: 1 / tau, beta: accumulate ? 1 : 0 });
        continue;
      }
      const w = rowBinding(weight, v0, vc, H);
      matmul(gpu, `${op}:dh`, fullShapes, 'nn', { t: tile, binding: tile.binding(0, tc * vc * 4), skip: 0 }, { t: weight, ...w }, dhw, {
        m: tc,
        n: H,
        k: vc,
        lda: vc,
        ldb: H,
        ldc: H,
        accumulate,
        scale: 1 / tau,
      }, opts.tiles);
    }
  }
  tile?.dispose();
  coef.dispose();
  return dh;
}

// ------------------------------------------------------------------ planning and validation

function validate(op: string, hidden: Tensor, weight: Tensor, targets: Tensor, opts: HeadOptions) {
  const shapes = `hidden ${hidden}, weight ${weight}, targets ${targets}`;
  const fail = (msg: string) => new ShapeError(msg, { op, shapes });
  if (hidden.rank !== 2 || weight.rank !== 2) throw fail('hidden must be [T, H] and weight [V, H]');
  const [T, H] = hidden.shape;
  const V = weight.shape[0];
  if (weight.shape[1] !== H) throw fail('hidden and weight must share H');
  if (targets.dtype !== 'i32' || targets.rank !== 1 || targets.shape[0] !== T) throw fail('targets must be i32[T]');
  for (const t of [hidden, weight]) if (t.dtype !== 'f32' && t.dtype !== 'f16') throw fail('hidden and weight must be f32 or f16');
  if (T < 1 || H < 1 || V < 1) throw fail('T, H and V must be at least 1');
  const tau = opts.temperature ?? 1;
  if (!(tau > 0) || !Number.isFinite(tau)) throw fail(`temperature must be positive and finite, got ${tau}`);
  for (const [k, v] of [['chunkTokens', opts.chunkTokens], ['chunkVocab', opts.chunkVocab]] as const) {
    if (v !== undefined && (!Number.isInteger(v) || v < 1)) throw fail(`${k} must be a positive integer, got ${v}`);
  }
  if (opts.kernel !== undefined && !['auto', 'tiled', 'cpu'].includes(opts.kernel)) {
    throw fail(`kernel must be 'auto', 'tiled' or 'cpu', got ${String(opts.kernel)}`);
  }
  if (opts.tiles && !([1, 4, 8].includes(opts.tiles[0]) && [4, 8].includes(opts.tiles[1]))) {
    throw fail(`tiles must be [1|4|8, 4|8], got [${opts.tiles.join(', ')}]`);
  }
  return { T, H, V, tau };
}

/** Chunk sizes: as asked (or the defaults), lowered so that every window fits one binding. */
function plan(gpu: Gpu, op: string, hidden: Tensor, weight: Tensor, opts: HeadOptions, cpu: boolean, packed?: PackedMatmulB): { tc: number; vc: number } {
  const [T, H] = hidden.shape;
  const V = weight.shape[0];
  // A window may start up to storageAlign - 1 bytes before its first element.
  const fit = (unitBytes: number) => Math.floor((gpu.maxBinding - gpu.storageAlign) / unitBytes);
  // Workgroup counts per dimension stay under the limit even with the smallest tiles (16 rows, 64 columns).
  const maxRows = gpu.maxWorkgroups * 16;
  const maxCols = gpu.maxWorkgroups * 64;
  const tc = Math.min(T, opts.chunkTokens ?? 512, fit(H * DTYPE_BYTES[hidden.dtype]), fit(H * 4), fit(16), maxRows, cpu ? fit(cpuPartialBytes(H, 'fwd')) : T);
  const defaultVc = defaultVocabChunk(tc, V, cpu);
  const tileCols = cpu ? V : Math.min(Math.floor(gpu.maxBinding / (4 * tc)), maxCols);
  let vc = Math.min(V, opts.chunkVocab ?? defaultVc, fit(H * DTYPE_BYTES[weight.dtype]), tileCols);
  // Chunks that start on the packed weight's column groups read its windows.
  const group = packed?.columnGroup ?? 1;
  if (vc < V && vc >= group) vc -= vc % group;
  if (tc < 1 || vc < 1) {
    throw new GpuLimitError(`one row of H=${H} does not fit a binding of ${gpu.maxBinding} bytes`, {
      op,
      shapes: `hidden ${hidden}, weight ${weight}`,
    });
  }
  return { tc, vc };
}

/** What the scratch estimates need of the device, and the head's options that change its scratch. */
export interface HeadScratchOptions {
  /** The fused CPU-adapter kernels (per-lane partials, no logits tile) rather than the tiled path. */
  cpu: boolean;
  /** The device's maxStorageBufferBindingSize. */
  maxBinding: number;
  /** The device's maxComputeWorkgroupsPerDimension. Default 65535. */
  maxWorkgroups?: number;
  /** HeadOptions.tiles, where forced (the tiled path's own matmul; its split-K partials depend on it). */
  tiles?: HeadTiles;
}

/** Chunk sizes the head runs through for `n` items in chunks of `c`: the full one and, if different, the last. */
const chunkSizes = (n: number, c: number) => (n % c === 0 || n < c ? [Math.min(n, c)] : [c, n % c]);

/**
 * Peak scratch bytes headForward allocates beyond its outputs, for memory planners (default chunking): the tiled
 * path's logits tile, row state and split-K partials of its own matmul, or the CPU-adapter path's per-lane
 * partials and row state (`cpu`). Raw bytes: the allocator hands each buffer out in a size class.
 */
export function headForwardScratchBytes(T: number, H: number, V: number, o: HeadScratchOptions): number {
  const tc = Math.min(T, 512);
  const state = tc * 16;
  if (o.cpu) return state + Math.max(...chunkSizes(T, tc).map((m) => m * cpuHeadPlan(m, V, H, 'fwd', o.maxBinding).nwg * 8 * 16));
  const vc = Math.min(V, defaultVocabChunk(tc, V, false));
  let parts = 0;
  for (const m of chunkSizes(T, tc)) for (const n of chunkSizes(V, vc)) parts = Math.max(parts, splitKBytes({ m, n, k: H }, o));
  return state + tc * vc * 4 + parts;
}

/**
 * Peak scratch bytes headBackward allocates beyond dHidden, for memory planners (default chunking): the tiled
 * path's logits tile, row coefficients and its matmuls' split-K partials (one product's at a time), or the
 * CPU-adapter path's per-workgroup dh partials (one chunk's at a time) and coefficients (`cpu`). Raw bytes.
 */
export function headBackwardScratchBytes(T: number, H: number, V: number, o: HeadScratchOptions): number {
  const tc = Math.min(T, 512);
  const coef = tc * 16;
  if (o.cpu) return coef + Math.max(...chunkSizes(T, tc).map((m) => m * cpuHeadPlan(m, V, H, 'bwd', o.maxBinding).nwg * H * 4));
  const vc = Math.min(V, defaultVocabChunk(tc, V, false));
  let parts = 0;
  for (const m of chunkSizes(T, tc)) {
    for (const n of chunkSizes(V, vc)) parts = Math.max(parts, splitKBytes({ m, n, k: H }, o), splitKBytes({ m, n: H, k: n }, o));
  }
  return coef + tc * vc * 4 + parts;
}

/** Vocabulary rows per chunk when none is asked for: the CPU path holds no tile, the tiled one fills TILE_BYTES. */
function defaultVocabChunk(tc: number, V: number, cpu: boolean): number {
  return cpu ? V : Math.max(64, Math.floor(TILE_BYTES / (4 * tc) / 64) * 64);
}

/** A window of rows and `skip`, the element index of its first row inside the (aligned) binding. */
type Span = ReturnType<typeof rowBinding>;

/**
 * Whether to run the fused CPU-adapter kernels: as asked; with 'auto', where they can run and their token block
 * is full (8 tokens, H <= 128), or half full (H <= 256) for calls of under 96 tokens. Past that each W load
 * serves too few tokens. On lavapipe (forward, backward): the tiled path (its matmuls on the cpu-tiled kernel)
 * took 0.11-0.12x the fused kernels' time at T 128, H 896, V 32768, and 0.83x at T 128, H 256, V 151936; the
 * fused kernels took 0.27-0.36x the tiled path's at T 16, H 256, 0.75-0.81x at T 48, and 0.79-0.87x at T 2700,
 * H 128, V 4282 (docs/BENCHMARKS.md, session 12).
 */
function useCpu(gpu: Gpu, op: string, hidden: Tensor, weight: Tensor, opts: HeadOptions): boolean {
  const kernel = opts.kernel ?? 'auto';
  if (kernel === 'tiled') return false;
  const unfit = cpuHeadUnfit(gpu, hidden, weight);
  if (unfit && kernel === 'cpu') throw new ShapeError(`kernel 'cpu' ${unfit}`, { op, shapes: `hidden ${hidden}, weight ${weight}` });
  if (unfit) return false;
  const [T, H] = hidden.shape;
  const tb = cpuTokenBlock(H);
  return kernel === 'cpu' || tb >= 8 || (tb >= 4 && T < 96);
}

/**
 * Whether the tiled path's two matmuls (logits, dh) run through `matmul` (its cpu-tiled kernel on a CPU adapter)
 * rather than this file's own kernel, which is written for GPUs. `tiles` forces this file's kernel (tests, tuning).
 */
function cpuTileMatmuls(gpu: Gpu, tiles: HeadTiles | undefined): boolean {
  return isCpuAdapter(gpu) && !tiles;
}

/**
 * Rows [start, start + count) of t as a view `matmul` can bind: it binds a view from its first byte, which must
 * be storage-aligned; undefined where it is not (this file's matmul then runs, binding windows itself).
 */
function alignedRows(gpu: Gpu, t: Tensor, start: number, count: number): Tensor | undefined {
  const view = t.rows(start, count);
  return view.byteOffset % gpu.storageAlign === 0 ? view : undefined;
}

// ------------------------------------------------------------------ CPU-adapter path (kernels in head-cpu.ts)

/** One (token chunk, vocab chunk) pair of the CPU path. */
interface CpuChunk {
  hidden: Tensor;
  weight: Tensor;
  y: Span;
  t0: number;
  tc: number;
  v0: number;
  vc: number;
  tau: number;
  maxBinding: number;
  /** Kept logits [T, V] (written by the forward, read by the backward), bound whole. */
  logits?: Tensor;
}

/** Binds the chunk's hidden and weight rows and packs the kernels' shared uniforms. */
function cpuChunk(c: CpuChunk, pass: 'fwd' | 'bwd') {
  const H = c.hidden.shape[1];
  const pl = cpuHeadPlan(c.tc, c.vc, H, pass, c.maxBinding);
  const h = rowBinding(c.hidden, c.t0, c.tc, H);
  const w = rowBinding(c.weight, c.v0, c.vc, H);
  const params = new Params()
    .u32(c.vc)
    .u32(pl.iters)
    .u32(c.tc)
    .u32(pl.nwg)
    .u32(h.skip / 4)
    .u32(w.skip / 4)
    .u32(c.y.skip)
    .u32(c.v0)
    .f32(1 / c.tau)
    .u32(8)
    .u32(H / 4);
  const tiles = pl.nwg * pl.blocks;
  const workgroups = ticketWorkgroups(tiles);
  const key = `${pl.tb}:${pl.nck}:${c.hidden.dtype}:${c.weight.dtype}${c.logits ? ':kept' : ''}`;
  const V = c.logits?.shape[1] ?? 0;
  params.u32(tiles).u32(workgroups).u32(c.t0 * V + c.v0).u32(V);
  return { H, pl, h, w, params: params.bytes(), workgroups, key };
}

/** Folds the chunk's softmax statistics into state [tc, 4]. */
function cpuStats(gpu: Gpu, op: string, shapes: string, c: CpuChunk, state: Tensor): void {
  const { pl, h, w, params, workgroups, key } = cpuChunk(c, 'fwd');
  const part = gpu.tensor([c.tc * pl.nwg * 8, 4], 'f32', undefined, `${op} cpu partials`);
  gpu.dispatch({
    op: `${op}:cpu-stats`,
    shapes,
    pipeline: gpu.pipeline(`head:cpu-stats:${key}`, () => cpuStatsWgsl(pl.tb, pl.nck, c.hidden.dtype, c.weight.dtype, !!c.logits)),
    params,
    bindings: [h.binding, w.binding, c.y.binding, part.binding(), ...(c.logits ? [c.logits.binding()] : []), ticketCounter(gpu)],
    workgroups: [workgroups],
  });
  gpu.dispatch({
    op: `${op}:cpu-merge`,
    shapes,
    pipeline: gpu.pipeline('head:cpu-merge', () => CPU_MERGE_WGSL),
    params: new Params().u32(c.tc).u32(pl.nwg * 8).u32(c.v0 === 0 ? 1 : 0).bytes(),
    bindings: [part.binding(), state.binding(0, c.tc * 16)],
    workgroups: [Math.ceil(c.tc / 64)],
  });
  part.dispose();
}

/** dh rows of the chunk (+)= dz·W/τ, with dz from coef [tc, 4]; one partial per workgroup, then their sum. */
function cpuDh(gpu: Gpu, op: string, shapes: string, c: CpuChunk, coef: Tensor, dh: Span, accumulate: boolean): void {
  const { H, pl, h, w, params, workgroups, key } = cpuChunk(c, 'bwd');
  const parts = gpu.tensor([pl.nwg, c.tc, H], 'f32', undefined, `${op} cpu partials`);
  gpu.dispatch({
    op: `${op}:cpu-dh${c.logits ? '-kept' : ''}`,
    shapes,
    pipeline: gpu.pipeline(`head:cpu-dh:${key}`, () => cpuDhWgsl(pl.tb, pl.nck, c.hidden.dtype, c.weight.dtype, !!c.logits)),
    params,
    bindings: [h.binding, w.binding, c.y.binding, coef.binding(0, c.tc * 16), parts.binding(), ...(c.logits ? [c.logits.binding()] : []), ticketCounter(gpu)],
    workgroups: [workgroups],
  });
  gpu.dispatch({
    op: `${op}:cpu-dh-sum`,
    shapes,
    pipeline: gpu.pipeline('head:splitk-sum', () => SPLITK_SUM_WGSL),
    params: new Params().u32(c.tc).u32(H).u32(pl.nwg).u32(dh.skip).u32(H).u32(accumulate ? 1 : 0).f32(1 / c.tau).bytes(),
    bindings: [parts.binding(), dh.binding],
    workgroups: gpu.grid(Math.ceil((c.tc * H) / WG)),
  });
  parts.dispose();
}

// ------------------------------------------------------------------ tiled matmul

/** C[m, n] (+)= scale · A[m, k] · B, with B stored [n, k] ('nt') or [k, n] ('nn'), all f32 accumulation. */
interface MatmulShape {
  m: number;
  n: number;
  k: number;
  lda: number;
  ldb: number;
  ldc: number;
  accumulate: boolean;
  scale: number;
}

function logitsTile(
  gpu: Gpu,
  op: string,
  shapes: string,
  hidden: Tensor,
  weight: Tensor,
  t0: number,
  tc: number,
  v0: number,
  vc: number,
  tile: Tensor,
  tau: number,
  tiles: HeadTiles | undefined,
  packed: PackedMatmulB | undefined,
): void {
  const H = hidden.shape[1];
  const hv = cpuTileMatmuls(gpu, tiles) && alignedRows(gpu, hidden, t0, tc);
  const wv = hv && alignedRows(gpu, weight, v0, vc);
  if (hv && wv) {
    packageMatmul(gpu, hv, wv, { transB: true, m: tc, n: vc, k: H, ldc: vc, out: tile, alpha: 1 / tau, packedB: packed });
    return;
  }
  const h = rowBinding(hidden, t0, tc, H);
  const w = rowBinding(weight, v0, vc, H);
  matmul(gpu, `${op}:logits`, shapes, 'nt', { t: hidden, ...h }, { t: weight, ...w }, { binding: tile.binding(0, tc * vc * 4), skip: 0 }, {
    m: tc,
    n: vc,
    k: H,
    lda: H,
    ldb: H,
    ldc: vc,
    accumulate: false,
    scale: 1 / tau,
  }, tiles);
}

/**
 * Rows x cols per thread (a 16x16 thread grid): the largest register tile that still gives MIN_WORKGROUPS
 * workgroups, else the smallest; one row per thread for few tokens, where bigger tiles would be mostly padding.
 */
function registerTile(m: number, n: number): HeadTiles {
  if (m < 32) return [1, n >= 512 ? 8 : 4];
  const options: HeadTiles[] = [[8, 8], [8, 4], [4, 8], [4, 4]];
  const count = ([rm, rn]: HeadTiles) => Math.ceil(m / (16 * rm)) * Math.ceil(n / (16 * rn));
  return options.find((t) => count(t) >= MIN_WORKGROUPS) ?? [4, 4];
}

/**
 * The register tile, grid and K split of the tiled path's own matmul. Few output tiles over a long K (dh for few
 * tokens: K is the vocab chunk) would leave the GPU idle and run K serially: K is split over workgroups, each
 * writing its partial [m, n], and a second pass sums the partials.
 */
function splitK(s: { m: number; n: number; k: number }, o: { tiles?: HeadTiles; maxBinding: number; maxWorkgroups?: number }) {
  const [rm, rn] = o.tiles ?? registerTile(s.m, s.n);
  const grid: [number, number] = [Math.ceil(s.n / (16 * rn)), Math.ceil(s.m / (16 * rm))];
  const splits = Math.max(
    1,
    Math.min(
      Math.ceil(MIN_WORKGROUPS / (grid[0] * grid[1])),
      Math.floor(s.k / MIN_SPLIT_K),
      Math.floor(o.maxBinding / (4 * s.m * s.n)),
      o.maxWorkgroups ?? 65535,
    ),
  );
  const kSplit = Math.ceil(s.k / splits / 16) * 16;
  return { rm, rn, grid, kSplit, nSplits: Math.ceil(s.k / kSplit) };
}

/** Bytes of the split-K partials splitK asks for (0 where K is not split). */
function splitKBytes(s: { m: number; n: number; k: number }, o: HeadScratchOptions): number {
  const { nSplits } = splitK(s, o);
  return nSplits > 1 ? nSplits * s.m * s.n * 4 : 0;
}

function matmul(
  gpu: Gpu,
  op: string,
  shapes: string,
  layout: 'nt' | 'nn',
  a: Span & { t: Tensor },
  b: Span & { t: Tensor },
  c: Span,
  s: MatmulShape,
  tiles: HeadTiles | undefined,
): void {
  const [at, bt] = [a.t.dtype, b.t.dtype];
  const { rm, rn, grid, kSplit, nSplits } = splitK(s, { tiles, maxBinding: gpu.maxBinding, maxWorkgroups: gpu.maxWorkgroups });
  const pipeline = gpu.pipeline(`head:mm:${layout}:${at}:${bt}:${rm}x${rn}`, () => matmulWgsl(layout, at, bt, rm, rn));
  const params = (cSkip: number, ldc: number, cStride: number, accumulate: boolean, scale: number) =>
    new Params()
      .u32(s.m)
      .u32(s.n)
      .u32(s.k)
      .u32(kSplit)
      .u32(a.skip)
      .u32(b.skip)
      .u32(cSkip)
      .u32(cStride)
      .u32(s.lda)
      .u32(s.ldb)
      .u32(ldc)
      .u32(accumulate ? 1 : 0)
      .f32(scale)
      .bytes();
  if (nSplits === 1) {
    gpu.dispatch({
      op,
      shapes,
      pipeline,
      params: params(c.skip, s.ldc, 0, s.accumulate, s.scale),
      bindings: [a.binding, b.binding, c.binding],
      workgroups: grid,
    });
    return;
  }
  const parts = gpu.tensor([nSplits, s.m, s.n], 'f32', undefined, `${op} split-k`);
  gpu.dispatch({
    op,
    shapes: `${shapes} split-k ${nSplits}`,
    pipeline,
    params: params(0, s.n, s.m * s.n, false, 1),
    bindings: [a.binding, b.binding, parts.binding()],
    workgroups: [...grid, nSplits],
  });
  gpu.dispatch({
    op: `${op}:split-k-sum`,
    shapes: `${shapes} split-k ${nSplits}`,
    pipeline: gpu.pipeline('head:splitk-sum', () => SPLITK_SUM_WGSL),
    params: new Params().u32(s.m).u32(s.n).u32(nSplits).u32(c.skip).u32(s.ldc).u32(s.accumulate ? 1 : 0).f32(s.scale).bytes(),
    bindings: [parts.binding(), c.binding],
    workgroups: gpu.grid(Math.ceil((s.m * s.n) / WG)),
  });
  // Queue order keeps the buffer alive for the dispatches above; the allocator may hand it out again after.
  parts.dispose();
}

/** c[i, j] (+)= scale · Σ_s parts[s, i, j]. */
const SPLITK_SUM_WGSL = /* wgsl */ `
struct P { m: u32, n: u32, splits: u32, c_base: u32, ldc: u32, accumulate: u32, scale: f32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> parts: array<f32>;
@group(0) @binding(2) var<storage, read_write> c: array<f32>;
${LINEAR_WORKGROUP}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
  let idx = linear_wg(wid, nwg) * ${WG}u + li;
  let mn = p.m * p.n;
  if (idx >= mn) { return; }
  var v = 0.0;
  for (var s = 0u; s < p.splits; s++) { v += parts[s * mn + idx]; }
  let i = p.c_base + (idx / p.n) * p.ldc + idx % p.n;
  v *= p.scale;
  if (p.accumulate != 0u) { c[i] += v; } else { c[i] = v; }
}`;

function matmulWgsl(layout: 'nt' | 'nn', at: string, bt: string, rm: number, rn: number): string {
  const BM = 16 * rm;
  const BN = 16 * rn;
  // One 16-deep slice of A and B per step, staged in workgroup memory as [k][row] and [k][col].
  const loadB =
    layout === 'nt'
      ? `let n = e / BK; let kk = e % BK; let gn = col0 + n; let gk = k0 + kk;
      var v = 0.0;
      if (gn < p.n && gk < k_end) { v = f32(b[p.b_base + gn * p.ldb + gk]); }
      bs[kk * SB + n] = v;`
      : `let kk = e / BN; let n = e % BN; let gn = col0 + n; let gk = k0 + kk;
      var v = 0.0;
      if (gn < p.n && gk < k_end) { v = f32(b[p.b_base + gk * p.ldb + gn]); }
      bs[kk * SB + n] = v;`;
  return /* wgsl */ `
${enableF16([at, bt])}
struct P { m: u32, n: u32, k: u32, k_split: u32, a_base: u32, b_base: u32, c_base: u32, c_stride: u32,
           lda: u32, ldb: u32, ldc: u32, accumulate: u32, scale: f32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> a: array<${wgslType(at)}>;
@group(0) @binding(2) var<storage, read> b: array<${wgslType(bt)}>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;
const RM = ${rm}u;
const RN = ${rn}u;
const BM = ${BM}u;
const BN = ${BN}u;
const BK = 16u;
// Rows padded by one so the k-major stores of 16 consecutive k do not all land in one bank.
const SA = ${BM + 1}u;
const SB = ${BN + 1}u;
var<workgroup> as_: array<f32, ${16 * (BM + 1)}>;
var<workgroup> bs: array<f32, ${16 * (BN + 1)}>;

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
  let row0 = wid.y * BM;
  let col0 = wid.x * BN;
  // This workgroup's slice of K (all of it unless K is split over wid.z).
  let k_begin = wid.z * p.k_split;
  let k_end = min(p.k, k_begin + p.k_split);
  var acc: array<f32, ${rm * rn}>;
  for (var k0 = k_begin; k0 < k_end; k0 += BK) {
    for (var q = 0u; q < RM; q++) {
      let e = li + 256u * q;
      let r = e / BK; let kk = e % BK; let gr = row0 + r; let gk = k0 + kk;
      var v = 0.0;
      if (gr < p.m && gk < k_end) { v = f32(a[p.a_base + gr * p.lda + gk]); }
      as_[kk * SA + r] = v;
    }
    for (var q = 0u; q < RN; q++) {
      let e = li + 256u * q;
      ${loadB}
    }
    workgroupBarrier();
    for (var kk = 0u; kk < BK; kk++) {
      var av: array<f32, ${rm}>;
      var bv: array<f32, ${rn}>;
      for (var r = 0u; r < RM; r++) { av[r] = as_[kk * SA + lid.y + 16u * r]; }
      for (var j = 0u; j < RN; j++) { bv[j] = bs[kk * SB + lid.x + 16u * j]; }
      for (var r = 0u; r < RM; r++) {
        for (var j = 0u; j < RN; j++) { acc[r * RN + j] = fma(av[r], bv[j], acc[r * RN + j]); }
      }
    }
    workgroupBarrier();
  }
  for (var r = 0u; r < RM; r++) {
    let gr = row0 + lid.y + 16u * r;
    for (var j = 0u; j < RN; j++) {
      let gc = col0 + lid.x + 16u * j;
      if (gr < p.m && gc < p.n) {
        let i = p.c_base + wid.z * p.c_stride + gr * p.ldc + gc;
        let v = acc[r * RN + j] * p.scale;
        if (p.accumulate != 0u) { c[i] += v; } else { c[i] = v; }
      }
    }
  }
}`;
}

// ------------------------------------------------------------------ reductions

/** One workgroup per tile row: the chunk's (max, Σe, Σe·(z-max)) merged into the running state [tc, 4]. */
const STATS_WGSL = /* wgsl */ `
struct P { vc: u32, v0: u32, y_base: u32, first: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> z: array<f32>;
@group(0) @binding(2) var<storage, read> targets: array<i32>;
@group(0) @binding(3) var<storage, read_write> state: array<f32>;
var<workgroup> r0: array<f32, ${WG}>;
var<workgroup> r1: array<f32, ${WG}>;
${LINEAR_WORKGROUP}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
  let i = linear_wg(wid, nwg);
  let row = i * p.vc;
  var m = ${LOWEST};
  for (var j = li; j < p.vc; j += ${WG}u) { m = max(m, z[row + j]); }
  r0[li] = m;
  workgroupBarrier();
  ${reduce('max', ['r0'])}
  m = r0[0];
  workgroupBarrier();
  var s = 0.0;
  var t = 0.0;
  for (var j = li; j < p.vc; j += ${WG}u) {
    let d = z[row + j] - m;
    let e = exp(d);
    s += e;
    t += e * d;
  }
  r0[li] = s;
  r1[li] = t;
  workgroupBarrier();
  ${reduce('sum', ['r0', 'r1'])}
  if (li != 0u) { return; }
  s = r0[0];
  t = r1[0];
  let y = targets[p.y_base + i];
  let hit = y >= i32(p.v0) && y < i32(p.v0 + p.vc);
  var zy = 0.0;
  if (hit) { zy = z[row + u32(y) - p.v0]; }
  ${FOLD_STATE}
  if (hit) { state[4u * i + 3u] = zy; }
}`;

/** One workgroup per token chunk: per-token outputs, and the chunk's NLL sum and count added to acc. */
const FINAL_WGSL = /* wgsl */ `
struct P { tc: u32, vocab: u32, y_base: u32, lp_base: u32, ent_base: u32, lse_base: u32, nan_bits: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> state: array<f32>;
@group(0) @binding(2) var<storage, read> targets: array<i32>;
@group(0) @binding(3) var<storage, read_write> logprob: array<f32>;
@group(0) @binding(4) var<storage, read_write> entropy: array<f32>;
@group(0) @binding(5) var<storage, read_write> lse: array<f32>;
@group(0) @binding(6) var<storage, read_write> acc: array<f32>;
@group(0) @binding(7) var<storage, read_write> loss: array<f32>;
@group(0) @binding(8) var<storage, read_write> count: array<f32>;
var<workgroup> r0: array<f32, ${WG}>;
var<workgroup> r1: array<f32, ${WG}>;
@compute @workgroup_size(${WG})
fn main(@builtin(local_invocation_index) li: u32) {
  var nll = 0.0;
  var n = 0.0;
  for (var i = li; i < p.tc; i += ${WG}u) {
    let m = state[4u * i];
    let s = state[4u * i + 1u];
    let t = state[4u * i + 2u];
    let ls = log(s);
    let l = m + ls;
    let y = targets[p.y_base + i];
    var lp = 0.0;
    if (y >= 0) {
      // A target past the vocabulary is a caller bug: make it visible as NaN rather than a plausible number.
      // (The NaN comes in as a uniform: WGSL refuses a NaN constant.)
      lp = select(state[4u * i + 3u] - l, bitcast<f32>(p.nan_bits), u32(y) >= p.vocab);
      nll -= lp;
      n += 1.0;
    }
    logprob[p.lp_base + i] = lp;
    entropy[p.ent_base + i] = ls - t / s;
    lse[p.lse_base + i] = l;
  }
  r0[li] = nll;
  r1[li] = n;
  workgroupBarrier();
  ${reduce('sum', ['r0', 'r1'])}
  if (li == 0u) {
    let total = acc[0] + r0[0];
    let cnt = acc[1] + r1[0];
    acc[0] = total;
    acc[1] = cnt;
    loss[0] = total / max(cnt, 1.0);
    count[0] = cnt;
  }
}`;

/** Per token: gLP (0 where the target is ignored, plus the mean-loss term), gEnt, lse, entropy. */
const COEF_WGSL = /* wgsl */ `
struct P { tc: u32, y_base: u32, lse_base: u32, ent_base: u32, dlp_base: u32, dent_base: u32,
           has_dlp: u32, has_dent: u32, dloss: f32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> targets: array<i32>;
@group(0) @binding(2) var<storage, read> lse: array<f32>;
@group(0) @binding(3) var<storage, read> entropy: array<f32>;
@group(0) @binding(4) var<storage, read> dlp: array<f32>;
@group(0) @binding(5) var<storage, read> dent: array<f32>;
@group(0) @binding(6) var<storage, read> count: array<f32>;
@group(0) @binding(7) var<storage, read_write> coef: array<f32>;
${LINEAR_WORKGROUP}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
  let i = linear_wg(wid, nwg) * ${WG}u + li;
  if (i >= p.tc) { return; }
  var g = 0.0;
  var ge = 0.0;
  var ent = 0.0;
  if (p.has_dlp != 0u) { g = dlp[p.dlp_base + i]; }
  if (p.dloss != 0.0) { g -= p.dloss / max(count[0], 1.0); }
  if (targets[p.y_base + i] < 0) { g = 0.0; }
  if (p.has_dent != 0u) {
    ge = dent[p.dent_base + i];
    ent = entropy[p.ent_base + i];
  }
  coef[4u * i] = g;
  coef[4u * i + 1u] = ge;
  coef[4u * i + 2u] = lse[p.lse_base + i];
  coef[4u * i + 3u] = ent;
}`;

/** The logits tile, in place, becomes dz = gLP·(onehot - p) - gEnt·p·(log p + H). */
const DZ_WGSL = /* wgsl */ `
struct P { tc: u32, vc: u32, v0: u32, y_base: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> coef: array<f32>;
@group(0) @binding(2) var<storage, read> targets: array<i32>;
@group(0) @binding(3) var<storage, read_write> z: array<f32>;
${LINEAR_WORKGROUP}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
  let idx = linear_wg(wid, nwg) * ${WG}u + li;
  if (idx >= p.tc * p.vc) { return; }
  let i = idx / p.vc;
  let j = idx % p.vc;
  let g = coef[4u * i];
  let ge = coef[4u * i + 1u];
  let lp = z[idx] - coef[4u * i + 2u];
  let pr = exp(lp);
  var d = -g * pr - ge * pr * (lp + coef[4u * i + 3u]);
  if (targets[p.y_base + i] == i32(p.v0 + j)) { d += g; }
  z[idx] = d;
}`;

function reduce(kind: 'max' | 'sum', arrays: string[]): string {
  const combine = (a: string) => (kind === 'max' ? `max(${a}[li], ${a}[li + w])` : `${a}[li] + ${a}[li + w]`);
  return `for (var w = ${WG / 2}u; w > 0u; w >>= 1u) {
    if (li < w) { ${arrays.map((a) => `${a}[li] = ${combine(a)};`).join(' ')} }
    workgroupBarrier();
  }`;
}
