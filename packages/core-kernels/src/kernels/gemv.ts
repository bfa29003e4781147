import type { Gpu } from '../runtime/gpu.js';
import type { DType } from '../runtime/dtype.js';
import { ShapeError } from '../runtime/errors.js';
import { common, specKey, type KernelSpec, type Problem } from './matmul-wgsl.js';

/*
 * GEMV on GPUs: C = alpha·op(A)·op(B) (+ beta·C + bias) for a few rows of A (decoding: the batch's new tokens
 * times a weight). Two kernels:
 * - scalar: any layout. A workgroup owns a few output columns and splits K over its threads, each loading one
 *   element of B per step.
 * - vec: B stored [N, K] (a weight [out, in]) with rows 16-byte aligned, A's rows 16-byte aligned. Each thread
 *   loads 16 bytes of B per step (8 f16 or 4 f32) for two rows of B and reuses each A load for both. A GEMV is
 *   bound by reading B once; on an H200 the scalar kernel's 2-byte loads read f16 weights at ~850 GB/s
 *   (session 14: q_proj T=1 0.030 ms for 25.7 MB).
 */

/** Largest M the GEMV path takes (one accumulator per row and column). */
export const GEMV_MAX_M = 4;
/** Threads of the scalar kernel's workgroup. */
const GEMV_THREADS = 64;

/**
 * Scalar layout: a workgroup owns `cols` output columns and splits K over `split` threads, reducing the partial
 * sums in shared memory. Neighbouring threads read neighbouring elements of B's contiguous dimension: along K
 * for B stored [N, K] (decode: weights stored [out, in]), along N for B stored [K, N].
 */
function gemvShape(transB: boolean): { cols: number; split: number } {
  return transB ? { cols: 2, split: 32 } : { cols: 16, split: 4 };
}

function gemvWgsl(s: KernelSpec, rows: number): string {
  const { cols, split } = gemvShape(s.transB);
  const lane = s.transB ? `let kl = li % ${split}u; let c = li / ${split}u;` : `let c = li % ${cols}u; let kl = li / ${cols}u;`;
  const slot = (kl: string) => (s.transB ? `(c * ${split}u + (${kl}))` : `((${kl}) * ${cols}u + c)`);
  let accumulate = '';
  let reduce = '';
  let store = '';
  for (let r = 0; r < rows; r++) {
    accumulate += `acc[${r}] = fma(a_at(z, ${r}u, k), bv, acc[${r}]);\n`;
    reduce += `red[${r}u * ${GEMV_THREADS}u + ${slot('kl')}] += red[${r}u * ${GEMV_THREADS}u + ${slot('kl + s')}];\n`;
    store += `store_c(z, ${r}u, n, red[${r}u * ${GEMV_THREADS}u + ${slot('0u')}]);\n`;
  }
  // Tree reduction over the K split, unrolled.
  let steps = '';
  for (let h = split / 2; h > 0; h >>= 1) {
    steps += `workgroupBarrier();\n  if (kl < ${h}u) {\n    let s = ${h}u;\n    ${reduce}  }\n  `;
  }
  return /* wgsl */ `${common(s)}
var<workgroup> red: array<f32, ${rows * GEMV_THREADS}>;

@compute @workgroup_size(${GEMV_THREADS})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
  let z = wid.z;
  ${lane}
  let n = (wid.x + wid.y * nwg.x) * ${cols}u + c;
  var acc: array<f32, ${rows}>;
  if (n < p.N) {
    for (var k = kl; k < p.K; k += ${split}u) {
      let bv = b_at(z, k, n);
      ${accumulate}
    }
  }
  for (var r = 0u; r < ${rows}u; r++) { red[r * ${GEMV_THREADS}u + li] = acc[r]; }
  ${steps}
  workgroupBarrier();
  if (kl == 0u && n < p.N) {
    ${store}
  }
}`;
}

/**
 * The kernel a GEMV problem runs: `choice` where given, else 'vec' where it fits. Forcing 'vec' on a layout it
 * cannot take is a ShapeError naming why.
 */
export function gemvKernel(
  types: { a: DType; b: DType },
  p: GemvVecLayout,
  storageAlign: number,
  choice: 'vec' | 'scalar' | undefined,
  shapes = '',
): 'vec' | 'scalar' {
  const unfit = gemvVecUnfit(types, p, storageAlign);
  if (choice === 'vec' && unfit) throw new ShapeError(`vec gemv ${unfit}`, { op: 'matmul', shapes });
  return choice ?? (unfit ? 'scalar' : 'vec');
}

/** The pipeline, grid (columns per workgroup along N) and profile name of a GEMV launch. */
export function gemvLaunch(
  gpu: Gpu,
  spec: KernelSpec,
  p: Problem,
  choice: 'vec' | 'scalar' | undefined,
  shapes: string,
): { pipeline: GPUComputePipeline; cols: number; op: string } {
  if (gemvKernel({ a: spec.aType, b: spec.bType }, p, gpu.storageAlign, choice, shapes) === 'scalar') {
    const pipeline = gpu.pipeline(`matmul-gemv:${specKey(spec)}:m${p.M}`, () => gemvWgsl(spec, p.M));
    return { pipeline, cols: gemvShape(p.transB).cols, op: 'matmul-gemv' };
  }
  const split = gemvVecSplit(p.N, p.K, spec.bType);
  const pipeline = gpu.pipeline(`matmul-gemv-vec:${specKey(spec)}:m${p.M}:s${split}`, () => gemvVecWgsl(spec, p.M, split));
  return { pipeline, cols: gemvVecCols(split), op: 'matmul-gemv-vec' };
}

// ---------------------------------------------------------------- vec: 16-byte loads of B stored [N, K]

/** Threads of the vec kernel's workgroup. */
const VEC_THREADS = 256;
/** Rows of B (output columns) each thread reads, sharing its loads of A. */
const VEC_ROWS_PER_THREAD = 2;
/**
 * Threads the split along K aims for, so that enough 16-byte loads are in flight to keep HBM busy, and the fewest
 * units of K a thread keeps, below which the reduction would cost more than the loads. Both are reasoned, not yet
 * tuned on a GPU (session 16).
 */
const VEC_TARGET_THREADS = 1 << 17;
const VEC_MIN_UNITS = 2;

/** Elements of B in one 16-byte load. */
const unitOf = (bType: DType) => (bType === 'f16' ? 8 : 4);

/** The layout fields the vec kernel needs. */
export interface GemvVecLayout {
  M: number;
  K: number;
  transA: boolean;
  transB: boolean;
  lda: number;
  ldb: number;
  offA: number;
  offB: number;
  sA: number;
  sB: number;
}

/**
 * Why the vec kernel cannot take a problem: it reads B stored [N, K] in 16-byte units along K and A's rows as
 * vec4, so K, ldb and B's offsets must be multiples of one unit (8 f16 or 4 f32), A's of 4 elements, and bindings
 * must start on 16 bytes.
 */
export function gemvVecUnfit(types: { a: DType; b: DType }, p: GemvVecLayout, storageAlign: number): string | undefined {
  if (p.M > GEMV_MAX_M) return `takes M <= ${GEMV_MAX_M}`;
  if (!p.transB || p.transA) return 'takes A [M, K] and B [N, K] only';
  if ((types.a !== 'f32' && types.a !== 'f16') || (types.b !== 'f32' && types.b !== 'f16')) return 'takes f32 or f16 operands';
  const u = unitOf(types.b);
  if ([p.K, p.ldb, p.offB, p.sB].some((v) => v % u)) return `needs K, ldb and B's offsets multiples of ${u}`;
  if ([p.lda, p.offA, p.sA].some((v) => v % 4)) return "needs lda and A's offsets multiples of 4";
  if (storageAlign % 16) return 'needs 16-byte binding alignment';
  return undefined;
}

/**
 * Threads along K per pair of B rows: a power of two from 32 to VEC_THREADS, larger for narrow N (k_proj's 512 rows
 * need more than gate_proj's 18944 to have enough loads in flight), with at least VEC_MIN_UNITS units a thread.
 */
export function gemvVecSplit(n: number, k: number, bType: DType): number {
  const units = k / unitOf(bType);
  const pairs = Math.ceil(n / VEC_ROWS_PER_THREAD);
  let split = 32;
  while (split < VEC_THREADS && pairs * split < VEC_TARGET_THREADS && units / (split * 2) >= VEC_MIN_UNITS) split *= 2;
  return split;
}

/** Output columns one workgroup of the vec kernel computes. */
export const gemvVecCols = (split: number) => (VEC_THREADS / split) * VEC_ROWS_PER_THREAD;

export function gemvVecWgsl(s: KernelSpec, rows: number, split: number): string {
  const u = unitOf(s.bType);
  const cpt = VEC_ROWS_PER_THREAD;
  // B as 16-byte units: vec4<u32> holding 8 f16 (unpacked in registers; no f16 arithmetic needed), or vec4<f32>.
  const header = common({ ...s, bType: s.bType === 'f16' ? 'u32' : s.bType }, true, true);
  const aVec = (idx: string) => (s.aType === 'f16' ? `vec4<f32>(A[${idx}])` : `A[${idx}]`);
  const halves = u / 4;
  let loadB = '';
  for (let c = 0; c < cpt; c++) {
    if (s.bType === 'f16') {
      loadB += `let wr${c} = B[wb${c} + ku];\n`;
      loadB += `let w${c}_0 = vec4<f32>(unpack2x16float(wr${c}.x), unpack2x16float(wr${c}.y));\n`;
      loadB += `let w${c}_1 = vec4<f32>(unpack2x16float(wr${c}.z), unpack2x16float(wr${c}.w));\n`;
    } else {
      loadB += `let w${c}_0 = B[wb${c} + ku];\n`;
    }
  }
  let fma = '';
  for (let r = 0; r < rows; r++) {
    for (let h = 0; h < halves; h++) fma += `let a${r}_${h} = ${aVec(`ab + ${r}u * lda4 + ku * ${halves}u + ${h}u`)};\n`;
    for (let c = 0; c < cpt; c++) {
      const terms = Array.from({ length: halves }, (_, h) => `dot(a${r}_${h}, w${c}_${h})`).join(' + ');
      fma += `acc[${r * cpt + c}] += ${terms};\n`;
    }
  }
  const slots = rows * cpt;
  let store = '';
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cpt; c++) store += `if (n0 + ${c}u < p.N) { store_c(z, ${r}u, n0 + ${c}u, red[${r * cpt + c}u * ${VEC_THREADS}u + li]); }\n`;
  }
  return /* wgsl */ `${header}
var<workgroup> red: array<f32, ${slots * VEC_THREADS}>;

@compute @workgroup_size(${VEC_THREADS})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
  let z = wid.z;
  let kl = li % ${split}u;
  let n0 = ((wid.x + wid.y * nwg.x) * ${VEC_THREADS / split}u + li / ${split}u) * ${cpt}u;
  // Rows past N read the last row (in bounds) and are not stored.
${Array.from({ length: cpt }, (_, c) => `  let wb${c} = (p.offB + z * p.sB + min(n0 + ${c}u, p.N - 1u) * p.ldb) / ${u}u;`).join('\n')}
  let ab = (p.offA + z * p.sA) / 4u;
  let lda4 = p.lda / 4u;
  let units = p.K / ${u}u;
  // Indexed by constants only, so the accumulators can stay in registers.
  var acc: array<f32, ${slots}>;
  for (var ku = kl; ku < units; ku += ${split}u) {
    ${loadB}
    ${fma}
  }
  ${Array.from({ length: slots }, (_, i) => `red[${i * VEC_THREADS}u + li] = acc[${i}];`).join('\n  ')}
  // Tree reduction over the split; a thread's partners are in its own group of split threads.
  for (var h = ${split / 2}u; h > 0u; h >>= 1u) {
    workgroupBarrier();
    if (kl < h) {
      for (var i = 0u; i < ${slots}u; i++) { red[i * ${VEC_THREADS}u + li] += red[i * ${VEC_THREADS}u + li + h]; }
    }
  }
  workgroupBarrier();
  if (kl == 0u) {
    ${store}
  }
}`;
}
