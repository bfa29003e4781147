import type { Gpu } from '../runtime/gpu.js';
import { Params } from '../runtime/params.js';
import type { DType } from '../runtime/dtype.js';
import { isSoftwareAdapter } from '../runtime/features.js';
import { enableF16, wgslType } from './wgsl.js';
import { CPU_LANES, cpuLanesUnfit, type SubgroupTarget } from './cpu-lanes.js';

/*
 * GEMV for CPU adapters (lavapipe/llvmpipe): C[m, n] = alpha·Σ_k A[m, k]·B[n, k] (+ beta·C + bias[n]) for up to
 * CPU_GEMV_MAX_M rows of A and B stored [N, K] (a linear layer's weight, the LM head in decode, a batch of
 * sequences decoding). One 8-lane workgroup walks a run of B's rows, lane l owning row n0 + 8i + l and reading it
 * as vec4 along K; lane l also loads every 8th vec4 of each A row and subgroupShuffle (one AVX2 permute there) hands it to the others. No shared memory, no
 * barriers, no cross-lane reductions: on llvmpipe each non-constant load is a scalar loop over the lanes, so this
 * is what keeps the count of loaded lane-elements near the size of B.
 */

const LANES = CPU_LANES;
/**
 * Largest M: one accumulator per row, B read once for all of them. Against the cpu-tiled kernel (which packs B into
 * windows at every call) on lavapipe: M 16 took 0.35-0.7x its time (decode shapes of the mini policy, 896x896,
 * 1024x1024), M 24 at N 4282 K 128 0.35-0.55x, M 32 about the same, M 64 1.7x (session 13).
 */
export const CPU_GEMV_MAX_M = 24;
/** Rows compiled into a kernel: M itself up to 8, then M rounded up to a multiple of 4 (fewer pipelines to compile). */
const compiledRows = (m: number) => (m <= 8 ? m : Math.ceil(m / 4) * 4);
/** Workgroups to aim for: both CPU threads busy, each workgroup long enough to amortize its start. */
const TARGET_WORKGROUPS = 64;

/** What the kernel needs to know of a matmul problem (matmul.ts's resolved problem has these fields). */
export interface CpuGemvProblem {
  M: number;
  N: number;
  K: number;
  batch: number;
  transA: boolean;
  transB: boolean;
  lda: number;
  ldb: number;
  ldc: number;
  offA: number;
  offB: number;
  offC: number;
  sA: number;
  sB: number;
  sC: number;
  offBias: number;
  alpha: number;
  beta: number;
}

type Layout = Partial<Pick<CpuGemvProblem, 'transA' | 'transB' | 'lda' | 'ldb' | 'offA' | 'offB' | 'sA' | 'sB'>>;

/** Why the CPU GEMV cannot run a problem, or undefined when it can. */
export function cpuGemvUnfit(
  gpu: SubgroupTarget & { adapter?: Parameters<typeof isSoftwareAdapter>[0] },
  m: number,
  k: number,
  l: Layout,
): string | undefined {
  if (!isSoftwareAdapter(gpu.adapter)) return 'needs a CPU (software) adapter';
  const lanes = cpuLanesUnfit(gpu);
  if (lanes) return lanes;
  if (m > CPU_GEMV_MAX_M) return `takes M <= ${CPU_GEMV_MAX_M}`;
  if (l.transA || !l.transB) return 'takes A [M, K] and B [N, K] only';
  // A and B rows are read as vec4 along K.
  const strides = [k, l.lda ?? k, l.ldb ?? k, l.offA ?? 0, l.offB ?? 0, l.sA ?? 0, l.sB ?? 0];
  if (strides.some((v) => v % 4)) return 'needs K, lda, ldb, offsets and batch strides of A and B multiples of 4';
  return undefined;
}

/** Runs one problem whose operands are already bound (A, B, C[, bias]). */
export function launchCpuGemv(
  gpu: Gpu,
  types: { a: DType; b: DType; c: DType; bias?: DType },
  p: CpuGemvProblem,
  bindings: GPUBufferBinding[],
  op: string,
  shapes: string,
): void {
  const groups = Math.ceil(p.N / LANES);
  const wanted = Math.max(1, Math.ceil(TARGET_WORKGROUPS / p.batch));
  const iters = Math.ceil(groups / Math.min(groups, wanted));
  const nwg = Math.ceil(groups / iters);
  const rows = compiledRows(p.M);
  const key = `${types.a}:${types.b}:${types.c}:${types.bias ?? '-'}:${p.beta !== 0 ? 'beta' : ''}:m${rows}`;
  const params = new Params()
    .u32(p.N)
    .u32(p.K / 4)
    .u32(p.lda / 4)
    .u32(p.ldb / 4)
    .u32(p.ldc)
    .u32(p.offA / 4)
    .u32(p.offB / 4)
    .u32(p.offC)
    .u32(p.sA / 4)
    .u32(p.sB / 4)
    .u32(p.sC)
    .u32(p.offBias)
    .f32(p.alpha)
    .f32(p.beta)
    .u32(iters)
    .u32(LANES)
    .u32(p.M)
    .bytes();
  const [gx, gy] = gpu.grid(nwg);
  gpu.dispatch({
    op,
    shapes,
    pipeline: gpu.pipeline(`matmul-cpu-gemv:${key}`, () => cpuGemvWgsl(types, rows, p.beta !== 0)),
    params,
    bindings,
    workgroups: [gx, gy, p.batch],
  });
}

function cpuGemvWgsl(types: { a: DType; b: DType; c: DType; bias?: DType }, rows: number, beta: boolean): string {
  let loadA = '';
  let dots = '';
  let store = '';
  for (let r = 0; r < rows; r++) {
    // Rows past p.m (a padded kernel) read row p.m - 1 and are not stored.
    const row = r === 0 ? '0u' : `min(${r}u, p.m - 1u)`;
    loadA += `let a${r} = vec4<f32>(A[base_a + ${row} * p.lda + min(k0 + li, p.kq - 1u)]);\n`;
    dots += `acc${r} += dot(subgroupShuffle(a${r}, j), bv);\n`;
    store += `${r === 0 ? '' : `if (${r}u < p.m) `}{ store_c(base_c + ${r}u * p.ldc + n, n, acc${r}); }\n`;
  }
  const cType = wgslType(types.c);
  return /* wgsl */ `enable subgroups;
${enableF16([types.a, types.b, types.c, types.bias ?? 'f32'])}
struct P { N: u32, kq: u32, lda: u32, ldb: u32, ldc: u32, offA: u32, offB: u32, offC: u32, sA: u32, sB: u32, sC: u32,
           offBias: u32, alpha: f32, beta: f32, iters: u32, lanes: u32, m: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> A: array<vec4<${wgslType(types.a)}>>;
@group(0) @binding(2) var<storage, read> B: array<vec4<${wgslType(types.b)}>>;
@group(0) @binding(3) var<storage, read_write> C: array<${cType}>;
${types.bias ? `@group(0) @binding(4) var<storage, read> bias: array<${wgslType(types.bias)}>;` : ''}

fn store_c(i: u32, n: u32, acc: f32) {
  var v = p.alpha * acc;
  ${beta ? 'v += p.beta * f32(C[i]);' : ''}
  ${types.bias ? 'v += f32(bias[p.offBias + n]);' : ''}
  C[i] = ${cType}(v);
}

@compute @workgroup_size(${LANES})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
  let z = wid.z;
  let base_a = p.offA + z * p.sA;
  let base_b = p.offB + z * p.sB;
  let base_c = p.offC + z * p.sC;
  let r0 = (wid.x + wid.y * nwg.x) * p.iters * ${LANES}u;
  for (var it = 0u; it < p.iters; it++) {
    let n = r0 + it * ${LANES}u + li;
    let brow = base_b + min(n, p.N - 1u) * p.ldb;
    ${Array.from({ length: rows }, (_, r) => `var acc${r} = 0.0;`).join('\n    ')}
    for (var k0 = 0u; k0 < p.kq; k0 += ${LANES}u) {
      ${loadA}
      // p.lanes (= 8) rather than a constant keeps llvmpipe from unrolling (compile time).
      for (var j = 0u; j < min(p.lanes, p.kq - k0); j++) {
        let bv = vec4<f32>(B[brow + k0 + j]);
        ${dots}
      }
    }
    if (n < p.N) {
      ${store}
    }
  }
}`;
}
