import type { Gpu } from '../runtime/gpu.js';
import { GpuLimitError } from '../runtime/errors.js';
import type { Tensor } from '../runtime/tensor.js';
import { common, matmulParams, specKey, type KernelSpec, type Problem } from './matmul-wgsl.js';
import { BM, BN } from './matmul-tiled.js';

/*
 * Split-K: a grid too small to fill the GPU runs K in layers of workgroups, each writing partial sums, and a
 * second pass adds them in order (no atomics) and applies the epilogue. The same pass over no layers is matmul's
 * K = 0 case.
 */

/** Workgroups that keep a GPU busy (about two per SM on an H200's 132): smaller tiled grids split K. */
const SPLITK_GRID = 256;

/**
 * Subgroup-matrix grids split only below this many workgroups (session 15, not yet timed): k_proj at T = 512 (16
 * workgroups) or decoding 32 sequences (28), not the T = 512 projections whose tiles were tuned on the H200.
 */
const SGM_SPLITK_BELOW = 64;

/** Fewest K per split layer: shorter runs spend more on the partial sums than they save. */
const SPLITK_MIN_K = 128;

/** Largest partial-sum buffer split-K allocates. */
const SPLITK_MAX_BYTES = 256 * 2 ** 20;

export type SplitTarget = { softwareAdapter: boolean; maxWorkgroups: number; maxBinding: number };

/**
 * Layers for a grid of `grid` workgroups: enough for SPLITK_GRID workgroups, each layer at least `minK` of K, the
 * partial sums within one binding; 1 (no split) on CPU adapters, where llvmpipe runs a workgroup per core anyway.
 */
function splitKFor(gpu: SplitTarget, p: Pick<Problem, 'M' | 'N' | 'K' | 'batch'>, grid: number, minK: number): number {
  if (gpu.softwareAdapter) return 1;
  let splits = Math.min(Math.ceil(SPLITK_GRID / grid), Math.floor(p.K / minK), Math.floor(gpu.maxWorkgroups / p.batch));
  const layerBytes = 4 * p.batch * p.M * p.N;
  splits = Math.min(splits, Math.floor(Math.min(SPLITK_MAX_BYTES, gpu.maxBinding) / layerBytes));
  return splits >= 2 ? splits : 1;
}

/**
 * The tiled kernel's default layers: LoRA's x·Aᵀ at T = 512 and hidden 3584 (N = r = 16) is a grid of 8 workgroups
 * each running all 3584 of K; split 28 ways it is 224 workgroups of 128.
 */
export function tiledSplitK(gpu: SplitTarget, p: Pick<Problem, 'M' | 'N' | 'K' | 'batch'>): number {
  const grid = Math.ceil(p.N / BN) * Math.ceil(p.M / BM) * p.batch;
  return grid >= SPLITK_GRID ? 1 : splitKFor(gpu, p, grid, SPLITK_MIN_K);
}

/** The subgroup-matrix kernel's default layers for a block of bm x bn and K steps of bk (see SGM_SPLITK_BELOW). */
export function sgmSplitK(gpu: SplitTarget, p: Pick<Problem, 'M' | 'N' | 'K' | 'batch'>, block: { bm: number; bn: number }, bk: number): number {
  const grid = Math.ceil(p.N / block.bn) * Math.ceil(p.M / block.bm) * p.batch;
  // Layers of at least 8 K steps: each starts its pipeline of loads afresh.
  return grid >= SGM_SPLITK_BELOW ? 1 : splitKFor(gpu, p, grid, Math.max(SPLITK_MIN_K, 8 * bk));
}

/**
 * Split-K: `runLayers` launches the kernel over all layers at once, each writing its partial sums (K from
 * l·kPer, alpha 1, no epilogue) into an f32 buffer [layers, batch, M, N]; then one pass adds the layers in order
 * and applies the epilogue (alpha, beta·C, bias, C's dtype). Deterministic: no atomics.
 */
export function launchSplitK(
  gpu: Gpu,
  spec: KernelSpec,
  p: Problem,
  bindings: GPUBufferBinding[],
  splits: number,
  kStep: number,
  shapes: string,
  runLayers: (q: Problem, bindings: GPUBufferBinding[]) => void,
): void {
  const kPer = Math.ceil(p.K / splits / kStep) * kStep;
  const layers = Math.ceil(p.K / kPer);
  const mn = p.M * p.N;
  if (layers * p.batch > gpu.maxWorkgroups) throw new GpuLimitError(`split-K: ${layers} layers x batch ${p.batch} over the workgroup limit`, { op: 'matmul', shapes });
  const partial = gpu.tensor([layers * p.batch * mn], 'f32', undefined, 'matmul split-K partial sums');
  try {
    if (partial.byteLength > gpu.maxBinding) throw new GpuLimitError(`split-K: partial sums of ${partial.byteLength} bytes over one binding`, { op: 'matmul', shapes });
    const [aBind, bBind, cBind, biasBind] = bindings;
    runLayers({ ...p, ldc: p.N, offC: 0, sC: mn, offBias: 0, alpha: 1, beta: 0, kPer }, [aBind, bBind, partial.binding()]);
    const [gx, gy] = gpu.grid(Math.ceil((p.batch * mn) / SUM_THREADS));
    gpu.dispatch({
      op: 'matmul-splitk-sum',
      shapes,
      pipeline: gpu.pipeline(`matmul-splitk-sum:${specKey(spec)}`, () => splitKSumWgsl(spec)),
      params: matmulParams(p, layers),
      bindings: [partial.binding(), cBind, ...(biasBind ? [biasBind] : [])],
      workgroups: [gx, gy, 1],
    });
  } finally {
    // Later work that reuses the buffer is queued after these dispatches.
    partial.dispose();
  }
}

const SUM_THREADS = 256;

/**
 * K = 0: C = beta·C (+ bias), as BLAS defines it. A and B hold no elements, and WebGPU refuses empty bindings, so
 * this is the split-K sum pass over no layers, with a one-element stand-in for the partial sums.
 */
export function epilogueOnly(gpu: Gpu, c: Tensor, bias: Tensor | undefined, p: Problem, shapes: string): void {
  if (c.byteLength > gpu.maxBinding || (bias && bias.byteLength > gpu.maxBinding)) {
    throw new GpuLimitError(`K = 0 with an output over one binding (${c.byteLength} bytes)`, { op: 'matmul', shapes });
  }
  const spec: KernelSpec = { aType: 'f32', bType: 'f32', cType: c.dtype, biasType: bias?.dtype, transA: false, transB: false, beta: p.beta !== 0 };
  const standIn = gpu.tensor([1], 'f32', undefined, 'matmul K=0');
  const [gx, gy] = gpu.grid(Math.ceil((p.batch * p.M * p.N) / SUM_THREADS));
  gpu.dispatch({
    op: 'matmul-k0',
    shapes,
    pipeline: gpu.pipeline(`matmul-splitk-sum:${specKey(spec)}`, () => splitKSumWgsl(spec)),
    params: matmulParams(p, 0),
    bindings: [standIn.binding(), c.binding(), ...(bias ? [bias.binding()] : [])],
    workgroups: [gx, gy, 1],
  });
  // Later work that reuses the buffer is queued after this dispatch.
  standIn.dispose();
}

/** Adds the split-K layers of each element of C in order, then the epilogue. Bindings: partial sums, C, bias. */
function splitKSumWgsl(s: KernelSpec): string {
  return /* wgsl */ `${common(s, false, false, { a: 14, b: 15, c: 2, bias: 3 })}
@group(0) @binding(1) var<storage, read> part: array<f32>;

@compute @workgroup_size(${SUM_THREADS})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * ${SUM_THREADS}u;
  let mn = p.M * p.N;
  if (i >= mn * p.zb) { return; }
  let z = i / mn;
  let r = i % mn;
  var acc = 0.0;
  for (var l = 0u; l < p.kPer; l++) { acc += part[(l * p.zb + z) * mn + r]; }
  store_c(z, r / p.N, r % p.N, acc);
}`;
}
