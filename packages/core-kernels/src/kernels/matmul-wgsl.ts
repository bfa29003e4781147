import { Params } from '../runtime/params.js';
import { enableF16, wgslType } from './wgsl.js';
import type { DType } from '../runtime/dtype.js';

/*
 * What every matmul kernel shares: the resolved problem and its uniforms (matmulParams), the bindings of A, B, C
 * and the bias, element accessors and the fused epilogue.
 */

export interface KernelSpec {
  aType: DType;
  bType: DType;
  cType: DType;
  biasType: DType | undefined;
  transA: boolean;
  transB: boolean;
  /** beta != 0: the epilogue reads C. With beta = 0 it never does, so stale NaNs in `out` cannot leak in. */
  beta: boolean;
}

export function specKey(s: KernelSpec): string {
  return `${s.aType}${s.transA ? 'T' : 'N'}.${s.bType}${s.transB ? 'T' : 'N'}.${s.cType}${s.beta ? '.beta' : ''}${s.biasType ? `.bias${s.biasType}` : ''}`;
}

/** Binding numbers of A, B, C and the bias. */
export interface Slots {
  a: number;
  b: number;
  c: number;
  bias: number;
}

/**
 * Uniforms, bindings, element accessors and the epilogue shared by every matmul kernel. A kernel that does not
 * read A or B (the split-K sum) moves them out of the way with `at`: unused bindings are not in its layout.
 */
export function common(s: KernelSpec, bVec4 = false, aVec4 = false, at: Slots = { a: 1, b: 2, c: 3, bias: 4 }): string {
  const types = [s.aType, s.bType, s.cType, s.biasType ?? 'f32'];
  const bElem = bVec4 ? `vec4<${wgslType(s.bType)}>` : wgslType(s.bType);
  const aElem = aVec4 ? `vec4<${wgslType(s.aType)}>` : wgslType(s.aType);
  return /* wgsl */ `${enableF16(types)}
struct P { M: u32, N: u32, K: u32, lda: u32, ldb: u32, ldc: u32, offA: u32, offB: u32, offC: u32,
           sA: u32, sB: u32, sC: u32, offBias: u32, alpha: f32, beta: f32, kPer: u32, zb: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(${at.a}) var<storage, read> A: array<${aElem}>;
@group(0) @binding(${at.b}) var<storage, read> B: array<${bElem}>;
@group(0) @binding(${at.c}) var<storage, read_write> C: array<${wgslType(s.cType)}>;
${s.biasType ? `@group(0) @binding(${at.bias}) var<storage, read> bias: array<${wgslType(s.biasType)}>;` : ''}

// op(A)[m, k] and op(B)[k, n] of batch item z; callers keep indices in range.
${aVec4 ? '' : `fn a_at(z: u32, m: u32, k: u32) -> f32 { return f32(A[p.offA + z * p.sA + ${s.transA ? 'k * p.lda + m' : 'm * p.lda + k'}]); }`}
${bVec4 ? '' : `fn b_at(z: u32, k: u32, n: u32) -> f32 { return f32(B[p.offB + z * p.sB + ${s.transB ? 'n * p.ldb + k' : 'k * p.ldb + n'}]); }`}

// Fused epilogue: alpha, beta·C, bias, output dtype.
fn store_c(z: u32, m: u32, n: u32, acc: f32) {
  let i = p.offC + z * p.sC + m * p.ldc + n;
  var v = p.alpha * acc;
  ${s.beta ? 'v += p.beta * f32(C[i]);' : ''}
  ${s.biasType ? 'v += f32(bias[p.offBias + n]);' : ''}
  C[i] = ${wgslType(s.cType)}(v);
}
`;
}

/** One fully resolved problem: what the kernels see. */
export interface Problem {
  batch: number;
  M: number;
  N: number;
  K: number;
  transA: boolean;
  transB: boolean;
  lda: number;
  ldb: number;
  ldc: number;
  sA: number;
  sB: number;
  sC: number;
  offA: number;
  offB: number;
  offC: number;
  offBias: number;
  alpha: number;
  beta: number;
  /** A split-K layer launch only (launchSplitK): K per layer; the grid's z is layers x batch. */
  kPer?: number;
}

/** Split-K layers of a launch: ceil(K / kPer), or 1 outside a split. */
export const layersOf = (p: Problem) => (p.kPer ? Math.ceil(p.K / p.kPer) : 1);

/**
 * The uniforms of every kernel built on `common`: the problem, then `kPer` (K per split layer, all of K unless
 * split; the split-K sum reads its layer count there) and the batch.
 */
export function matmulParams(p: Problem, kPer: number): Uint8Array {
  return new Params()
    .u32(p.M).u32(p.N).u32(p.K).u32(p.lda).u32(p.ldb).u32(p.ldc).u32(p.offA).u32(p.offB).u32(p.offC)
    .u32(p.sA).u32(p.sB).u32(p.sC).u32(p.offBias).f32(p.alpha).f32(p.beta)
    .u32(kPer).u32(p.batch)
    .bytes();
}
