/**
 * Causal grouped-query attention (Qwen2.5: 28 query heads over 4 KV heads, head_dim 128), flash style.
 *
 * Layouts (row-major, the q/k/v projections' outputs reshaped, no transposes):
 *   q  [B, T, Hq, D]      k, v [B, S, Hkv, D]      o [B, T, Hq, D]      lse [B, Hq, T] (f32, natural log)
 * Query head h reads KV head floor(h / (Hq / Hkv)). Scores are scaled by 1/sqrt(D) unless `scale` is given.
 * Storage is f32 or f16 (all of q, k, v alike); all arithmetic is f32.
 *
 * Masking: the T queries are the last T of S positions, so query i sits at position i + (S - T) and, when
 * causal, sees keys j <= i + (S - T) (a chunk of queries after cached keys). Batches of different lengths are
 * right padded: `lengths[b]` (i32 tensor [B]) is the valid length of sequence b; keys j >= lengths[b] are
 * masked, and query rows at positions >= lengths[b] are padding: their output, lse and gradients are zero.
 *
 * Forward: one workgroup per (block of BQ queries, query head, batch) walks key tiles of BK keys in workgroup
 * memory with an online softmax (running max and sum, base 2), so no T x S scores reach global memory. Each
 * thread owns a 4x4 block of scores and a 4-row block of the output accumulator.
 * Backward (FlashAttention-2 without atomics): Dvec = rowsum(dO * O); then a dQ pass over query blocks and a
 * dK/dV pass over key blocks, each recomputing P = exp(S - lse) tile by tile, so each workgroup owns the rows
 * it writes. The dK/dV workgroup loops over every query head of its KV group and sums them.
 * Decode (flash-decoding): the keys of the cache are split into chunks across workgroups; each workgroup runs
 * all Hq/Hkv * T query rows of one KV head over its chunk (so a K/V tile is read once per group) and writes a
 * partial (max, sum, unnormalized output); a second pass combines the partials.
 * No subgroup operations are used: reductions are a small part of the work and go through workgroup memory,
 * which works on every adapter.
 */
import type { Gpu } from '../runtime/gpu.js';
import { Params } from '../runtime/params.js';
import { ShapeError } from '../runtime/errors.js';
import type { Tensor } from '../runtime/tensor.js';
import type { DType } from '../runtime/dtype.js';
import { LINEAR_WORKGROUP, enableF16 } from './wgsl.js';
import { f16MatrixConfig, type SubgroupMatrixConfig } from '../runtime/features.js';
import { ticketCounter, ticketWgsl, ticketWorkgroups } from './tickets.js';
import { sgmAttentionBytes, sgmAttentionKey, sgmAttentionUnfit, sgmAttentionWgsl, type SgmAttentionTile } from './attention-sgm.js';
import { sgmAttentionBwdBytes, sgmAttentionBwdKey, sgmAttentionBwdUnfit, sgmDkvWgsl, sgmDqWgsl, type SgmAttentionBwdTile } from './attention-sgm-bwd.js';
import { MHA_PARAMS, mhaParams, type Dims, type FloatDType } from './attention-params.js';
import { CPU_LANES, cpuLanesUnfit } from './cpu-lanes.js';
import {
  cpuAttentionKey,
  cpuAttentionRows,
  cpuAttentionUnfit,
  CPU_DECODE_MAX_ROW_VEC4,
  cpuDecodeKey,
  cpuDecodeWgsl,
  cpuDkvWgsl,
  cpuDqWgsl,
  cpuForwardWgsl,
  type CpuAttentionKernel,
  type CpuAttentionSpec,
} from './attention-cpu.js';

export interface AttentionTile {
  /** Query rows per workgroup (multiple of 4). */
  bq: number;
  /** Keys per tile (multiple of 4). */
  bk: number;
}

export interface AttentionOptions {
  /** Causal mask with offset S - T. Default true. */
  causal?: boolean;
  /** Score scale; default 1/sqrt(D). */
  scale?: number;
  /** Valid length of each sequence, i32 [B] (right padding). Default: all S. */
  lengths?: Tensor<'i32'>;
  /** Tile override, mainly for tests; default: the largest preset that fits workgroup memory. */
  tile?: AttentionTile;
  /**
   * Kernels. 'auto' (the default): the forward takes 'subgroup-matrix' where it applies (f16, an adapter with f16
   * subgroup matrices, no scalar-kernel knob given), else 'cpu-tiled' where it fits, else 'scalar'
   * (attentionForwardPath, attentionPath). 'scalar': the workgroup kernels, for any adapter. 'cpu-tiled'
   * (attention-cpu.ts): forward and backward for CPU adapters (lavapipe), one 8-lane subgroup per workgroup with rows
   * owned by lanes; it needs subgroups of exactly 8 lanes and a head dim that is a multiple of 4, and 'auto' takes it
   * on software adapters. 'subgroup-matrix' (attention-sgm.ts; forward only, the backward runs 'auto'): tensor
   * cores; f16, head dim a multiple of 16. Correct on an H200 since session 14 (docs/BENCHMARKS.md), where it runs
   * the 7B shape in 0.48x the scalar kernel's time.
   */
  path?: 'auto' | 'scalar' | 'cpu-tiled' | 'subgroup-matrix';
  /** Rows a lane owns in the cpu-tiled kernels (tests, tuning), 1 to 8; default by head dim (cpuAttentionRows). */
  cpuRows?: number;
  /** Workgroup shape of the subgroup-matrix forward (benchmarks, tuning). */
  sgmTile?: SgmAttentionTile;
  /** Tests: run the subgroup-matrix kernels with their matrix operations emulated in plain WGSL (slow). */
  sgmEmulate?: boolean;
  /**
   * attentionBackward only: run on the subgroup-matrix backward kernels (attention-sgm-bwd.ts) with this tile
   * (SGM_ATTENTION_BWD_TILE, say). f16, head dim a multiple of the fragment size. A candidate, correct under
   * emulation (session 15) and not yet timed on a GPU, so never the default.
   */
  sgmBackward?: SgmAttentionBwdTile;
  /**
   * Scalar kernels: one workgroup per CPU thread drawing (block, head, batch) tiles from a counter instead of one
   * workgroup per tile. Default: on software adapters (lavapipe), where it balances the threads; false elsewhere.
   */
  tickets?: boolean;
}

/**
 * Default workgroup of the subgroup-matrix forward: 4 subgroups (64 query rows), 32-key tiles (fastest of 3 in
 * session 3), O in registers, K staged transposed: the tile the H200 benchmark measured once the kernel was
 * correct (session 14; the other variants are benchmark cases of their own, not yet run against it).
 */
export const SGM_ATTENTION_TILE: SgmAttentionTile = { nsub: 4, bk: 32, kLayout: 'transposed' };
export type { SgmAttentionTile, SgmAttentionBwdTile };
export { SGM_ATTENTION_BWD_TILE } from './attention-sgm-bwd.js';
/** The emulated kernel's fragment shape (every invocation does whole products; small keeps tests quick). */
const EMULATED_CONFIG: SubgroupMatrixConfig = { componentType: 'f16', resultComponentType: 'f32', M: 4, N: 4, K: 4 };

export interface AttentionDecodeOptions {
  scale?: number;
  /**
   * Number of key chunks (workgroups per KV head and sequence); default aims at ~256 workgroups, or on the
   * cpu-tiled path at 8 tiles (one chunk each when there are 8 (sequence, KV head) pairs or more).
   */
  splits?: number;
  /** Keys per tile inside a chunk (multiple of 4) of the workgroup kernel; default: the largest that fits workgroup memory. */
  bk?: number;
  /**
   * 'scalar': the workgroup kernel, any adapter. 'cpu-tiled' (attention-cpu.ts): each 8-lane workgroup walks a
   * chunk of keys with a softmax per lane, for CPU adapters, head dims that are a multiple of 4 and
   * (Hq/Hkv)·T·D/4 <= 16 (CPU_DECODE_MAX_ROW_VEC4: llvmpipe's compile time). 'auto' (default): cpu-tiled where it
   * can run on a software adapter and no `bk` is given.
   */
  path?: 'auto' | 'scalar' | 'cpu-tiled';
}


const LOG2E = Math.LOG2E;
/** Masked scores: finite so that max/exp2 arithmetic never makes NaN. */
const NEG = '-1.0e30';
const FWD_TILES: AttentionTile[] = [
  { bq: 64, bk: 32 },
  { bq: 64, bk: 16 },
  { bq: 32, bk: 32 },
  { bq: 32, bk: 16 },
  { bq: 16, bk: 16 },
  { bq: 16, bk: 8 },
  { bq: 8, bk: 8 },
  { bq: 8, bk: 4 },
];
const BWD_TILES: AttentionTile[] = [
  { bq: 32, bk: 32 },
  { bq: 32, bk: 16 },
  { bq: 16, bk: 16 },
  { bq: 16, bk: 8 },
  { bq: 8, bk: 8 },
  { bq: 8, bk: 4 },
];

const ceilDiv = (a: number, b: number) => Math.ceil(a / b);
const roundUp = (a: number, b: number) => ceilDiv(a, b) * b;
const range = (n: number) => Array.from({ length: n }, (_, i) => i);
const XYZW = ['x', 'y', 'z', 'w'];

// ------------------------------------------------------------------------------------------- validation

function isFloat(t: Tensor): t is Tensor<FloatDType> {
  return t.dtype === 'f32' || t.dtype === 'f16';
}

function checkQkv(op: string, q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions): Dims {
  const shapes = `q=${q} k=${k} v=${v}${opts.lengths ? ` lengths=${opts.lengths}` : ''}`;
  const fail = (msg: string) => new ShapeError(msg, { op, shapes });
  if (q.rank !== 4 || k.rank !== 4 || v.rank !== 4) throw fail('q, k, v must be [B, T, H, D]');
  const [B, T, Hq, D] = q.shape;
  const [Bk, S, Hkv, Dk] = k.shape;
  if (Bk !== B || Dk !== D || v.shape.join() !== k.shape.join()) throw fail('k and v must be [B, S, Hkv, D] matching q');
  if (!isFloat(q) || k.dtype !== q.dtype || v.dtype !== q.dtype) throw fail('q, k, v must share one dtype, f32 or f16');
  if (Hkv === 0 || Hq % Hkv !== 0) throw fail('Hq must be a multiple of Hkv');
  if (D === 0) throw fail('head dim must be positive');
  if ((opts.causal ?? true) && S < T) throw fail('causal attention needs S >= T (queries are the last T positions)');
  if (opts.lengths && (opts.lengths.dtype !== 'i32' || opts.lengths.size !== B)) throw fail('lengths must be i32 [B]');
  checkTile(op, shapes, opts.tile);
  return { B, T, S, Hq, Hkv, D, dtype: q.dtype };
}

function checkTile(op: string, shapes: string, tile?: AttentionTile): void {
  if (tile && (tile.bq % 4 !== 0 || tile.bk % 4 !== 0 || tile.bq < 4 || tile.bk < 4 || tile.bq * tile.bk > 64 * 64)) {
    throw new ShapeError(`tile ${tile.bq}x${tile.bk} must be multiples of 4 with bq*bk <= 4096`, { op, shapes });
  }
}

function checkSame(op: string, name: string, t: Tensor, ref: Tensor, dtype: DType = ref.dtype): void {
  if (t.shape.join() !== ref.shape.join() || t.dtype !== dtype) {
    throw new ShapeError(`${name} must be ${dtype}[${ref.shape.join(', ')}]`, { op, shapes: `${name}=${t} ref=${ref}` });
  }
}

// ------------------------------------------------------------------------------------------- WGSL pieces

/**
 * How rows of D elements sit in workgroup memory. D itself is a runtime parameter (p.d, and p.d4 = ceil(D/4)
 * vec4 columns): pipelines specialize only on the padded width, so head dims share pipelines and loops over D
 * stay loops (unrolling them makes huge shaders that lavapipe takes many seconds to compile).
 */
interface Layout {
  /** vec4 columns per row: ceil(D/4) padded so it splits evenly over the threads' column groups. */
  DP4: number;
  /** Row stride; one spare vec4 staggers rows across memory banks. */
  RS: number;
  /** Whether global rows are read/written as vec4 (D % 4 == 0). */
  vec: boolean;
  st: FloatDType;
}

function layout(D: number, dtype: FloatDType, colGroups: number): Layout {
  const DP4 = roundUp(ceilDiv(D, 4), colGroups);
  return { DP4, RS: DP4 + 1, vec: D % 4 === 0, st: dtype };
}

/** Binding declaration of a q/k/v-like tensor: vec4 elements when rows are whole vec4s. */
function bindRows(binding: number, name: string, l: Layout, access: 'read' | 'read_write'): string {
  const elem = l.vec ? `vec4<${l.st}>` : l.st;
  return `@group(0) @binding(${binding}) var<storage, ${access}> ${name}: array<${elem}>;`;
}

/** fn ld_<name>(base, d4) -> vec4<st>: 4 elements of a row starting at element `base`, zero past D. */
function loadFn(name: string, l: Layout): string {
  if (l.vec) {
    return `fn ld_${name}(base: u32, d4: u32) -> vec4<${l.st}> {
  if (d4 >= p.d4) { return vec4<${l.st}>(); }
  return ${name}[(base >> 2u) + d4];
}`;
  }
  const parts = range(4)
    .map((c) => `  if (d + ${c}u < p.d) { r.${XYZW[c]} = ${name}[base + d + ${c}u]; }`)
    .join('\n');
  return `fn ld_${name}(base: u32, d4: u32) -> vec4<${l.st}> {
  var r = vec4<${l.st}>();
  let d = d4 * 4u;
${parts}
  return r;
}`;
}

/** fn st_<name>(base, d4, value): stores 4 elements of a row, dropping those past D. */
function storeFn(name: string, l: Layout): string {
  if (l.vec) {
    return `fn st_${name}(base: u32, d4: u32, x: vec4<f32>) {
  if (d4 < p.d4) { ${name}[(base >> 2u) + d4] = vec4<${l.st}>(x); }
}`;
  }
  const parts = range(4)
    .map((c) => `  if (d + ${c}u < p.d) { ${name}[base + d + ${c}u] = ${l.st}(x.${XYZW[c]}); }`)
    .join('\n');
  return `fn st_${name}(base: u32, d4: u32, x: vec4<f32>) {
  let d = d4 * 4u;
${parts}
}`;
}

/**
 * Copies `rows` rows of a global tensor into workgroup array `dst` (row stride RS). `rowBase` is a WGSL
 * expression for the global element offset of local row $r; `rowOk` says whether that row exists (else
 * zeros). Only the p.d4 data columns are written: padding columns are never read into a stored result.
 * Groups of up to 8 threads read consecutive vec4s of a row, so global reads coalesce.
 */
function tileLoad(dst: string, src: string, rows: number, nt: number, l: Layout, rowOk: string, rowBase: string): string {
  const ct = gcd(nt, 8);
  return `for (var rr = li / ${ct}u; rr < ${rows}u; rr += ${nt / ct}u) {
    let ok = ${rowOk.replaceAll('$r', 'rr')};
    let base = ${rowBase.replaceAll('$r', 'rr')};
    for (var d4 = li % ${ct}u; d4 < p.d4; d4 += ${ct}u) {
      var x = vec4<${l.st}>();
      if (ok) { x = ld_${src}(base, d4); }
      ${dst}[rr * ${l.RS}u + d4] = x;
    }
  }`;
}

function gcd(a: number, b: number): number {
  while (b) [a, b] = [b, a % b];
  return a;
}

/**
 * The sequence length as a workgroup-uniform value (loop bounds around barriers must be uniform).
 * `hasLen` is a WGSL condition: false where no lengths were given (then `lens` is a stand-in, never read).
 */
function lenPrologue(hasLen: string, sExpr: string, bExpr: string): string {
  return `if (li == 0u) {
    var n = ${sExpr};
    if (${hasLen}) { n = min(u32(max(lens[${bExpr}], 0)), ${sExpr}); }
    wg_len = n;
  }
  let len = workgroupUniformLoad(&wg_len);`;
}

function lensBinding(binding: number): string {
  return `@group(0) @binding(${binding}) var<storage, read> lens: array<i32>;`;
}

/**
 * The MHA kernels' entry point. On a CPU adapter (`s.tickets`) one workgroup per shader thread loops over the
 * dispatch's (block, head, batch) tiles, drawing them from a counter (tickets.ts): llvmpipe's equal runs of
 * workgroups fixed up front left a thread idle whenever the other was preempted. `lastFirst` walks the blocks from
 * the last, which under causality has the most work, so the long tiles do not come at the end.
 */
function mhaMain(s: MhaSpec, threads: number, ticketBinding: number, lastFirst: boolean): { head: string; tail: string } {
  const signature = `@compute @workgroup_size(${threads})
fn main(@builtin(workgroup_id) grid_id: vec3<u32>, @builtin(local_invocation_index) li: u32) {`;
  if (!s.tickets) return { head: `${signature}
  let wid = grid_id;`, tail: '' };
  return {
    head: `${MHA_TICKETS.decl(ticketBinding)}
${signature}
  ${MHA_TICKETS.open('p.tiles', 'p.workgroups')}
  let bx = tile % p.gx;
  let wid = vec3<u32>(${lastFirst ? 'p.gx - 1u - bx' : 'bx'}, (tile / p.gx) % p.gy, tile / (p.gx * p.gy));`,
    tail: MHA_TICKETS.close,
  };
}

/** Their workgroups have several subgroups, so the ticket reaches them through workgroup memory. */
const MHA_TICKETS = ticketWgsl('workgroup');

/** Dispatches an MHA kernel over `grid`, or over one workgroup per shader thread with the tile counter bound last. */
function mhaDispatch(
  gpu: Gpu,
  op: string,
  shapes: string,
  tickets: boolean,
  pipeline: GPUComputePipeline,
  uniforms: { d: Dims; opts: AttentionOptions },
  grid: readonly [number, number, number],
  bindings: Tensor[],
): void {
  if (!tickets) {
    gpu.dispatch({ op, shapes, pipeline, params: mhaParams(uniforms.d, uniforms.opts, grid), bindings, workgroups: [...grid] });
    return;
  }
  const workgroups = ticketWorkgroups(grid[0] * grid[1] * grid[2]);
  const params = mhaParams(uniforms.d, uniforms.opts, grid, workgroups);
  gpu.dispatch({ op, shapes, pipeline, params, bindings: [...bindings, ticketCounter(gpu)], workgroups: [workgroups] });
}

/** The lengths binding, or a stand-in read-only buffer (q) that the kernel never reads. */
function lensOrStandIn(opts: AttentionOptions, q: Tensor): Tensor {
  return opts.lengths ?? q;
}

/** Workgroup bytes of each kernel, to pick tiles that fit the device. WGSL alignment adds a little; keep slack. */
function vecBytes(dtype: FloatDType): number {
  return dtype === 'f16' ? 8 : 16;
}

function fwdBytes(t: AttentionTile, D: number, dtype: FloatDType): number {
  const l = layout(D, dtype, t.bk / 4);
  return vecBytes(dtype) * (t.bq + 2 * t.bk) * l.RS + 4 * t.bq * t.bk + 12 * t.bq + 64;
}

function dqBytes(t: AttentionTile, D: number, dtype: FloatDType): number {
  const l = layout(D, dtype, t.bk / 4);
  return vecBytes(dtype) * (2 * t.bq + 2 * t.bk) * l.RS + 4 * t.bq * t.bk + 8 * t.bq + 64;
}

function dkvBytes(t: AttentionTile, D: number, dtype: FloatDType): number {
  const l = layout(D, dtype, t.bq / 4);
  return vecBytes(dtype) * (2 * t.bq + 2 * t.bk) * l.RS + 8 * t.bq * t.bk + 8 * t.bq + 64;
}

function pickTile(gpu: Gpu, presets: AttentionTile[], bytes: (t: AttentionTile) => number, op: string, shapes: string): AttentionTile {
  const limit = gpu.limits.maxComputeWorkgroupStorageSize ?? 16384;
  const t = presets.find((x) => bytes(x) <= limit);
  if (!t) throw new ShapeError(`head dim too large for ${limit} bytes of workgroup memory`, { op, shapes });
  return t;
}

function fitTile(gpu: Gpu, tile: AttentionTile, bytes: number, op: string, shapes: string): void {
  const limit = gpu.limits.maxComputeWorkgroupStorageSize ?? 16384;
  if (bytes > limit) throw new ShapeError(`tile ${tile.bq}x${tile.bk} needs ${bytes} bytes of workgroup memory, over ${limit}`, { op, shapes });
}

// ------------------------------------------------------------------------------------------- forward

interface MhaSpec {
  dtype: FloatDType;
  /** Head dim, for the layout; the pipeline key holds only what the WGSL specializes on (see mhaKey). */
  D: number;
  bq: number;
  bk: number;
  /** Tiles drawn from a counter (CPU adapters; see mhaMain). */
  tickets: boolean;
}

/** Everything the MHA kernels specialize on: the layout for `colGroups`, not D itself. */
function mhaKey(s: MhaSpec, colGroups: number): string {
  const l = layout(s.D, s.dtype, colGroups);
  return `${s.dtype}:dp4=${l.DP4}:vec=${l.vec}:${s.bq}x${s.bk}${s.tickets ? ':tickets' : ''}`;
}

/** Score validity for query row i and key j (u32 WGSL expressions); `len` and `p` in scope. */
function maskExpr(i: string, j: string, rowCheck: boolean): string {
  const parts = [`${j} < len`, `(p.causal == 0u || i32(${j}) <= i32(${i}) + p.off)`];
  if (rowCheck) parts.push(`${i} < p.t`, `i32(${i}) + p.off < i32(len)`);
  return parts.join(' && ');
}

function fwdWgsl(s: MhaSpec): string {
  const RG = s.bq / 4;
  const CG = s.bk / 4;
  const NT = RG * CG;
  const main = mhaMain(s, NT, 7, true);
  const l = layout(s.D, s.dtype, CG);
  const RD = l.DP4 / CG;
  const st = s.dtype;
  const f = (x: string) => (st === 'f32' ? x : `vec4<f32>(${x})`);
  const rows4 = range(4);
  const ks = range(RD);
  return /* wgsl */ `
${enableF16([st])}
${MHA_PARAMS}
${bindRows(1, 'q', l, 'read')}
${bindRows(2, 'k', l, 'read')}
${bindRows(3, 'v', l, 'read')}
${bindRows(4, 'o', l, 'read_write')}
@group(0) @binding(5) var<storage, read_write> lse: array<f32>;
${lensBinding(6)}
const BQ = ${s.bq}u;
const BK = ${s.bk}u;
const RG = ${RG}u;
const CG = ${CG}u;
const RS = ${l.RS}u;
var<workgroup> qs: array<vec4<${st}>, ${s.bq * l.RS}>;
var<workgroup> ks: array<vec4<${st}>, ${s.bk * l.RS}>;
var<workgroup> vs: array<vec4<${st}>, ${s.bk * l.RS}>;
// Scores, then probabilities, of the tile: ps[key * RG + rg] holds rows 4rg..4rg+3.
var<workgroup> ps: array<vec4<f32>, ${s.bk * RG}>;
var<workgroup> row_m: array<f32, ${s.bq}>;
var<workgroup> row_l: array<f32, ${s.bq}>;
var<workgroup> row_a: array<f32, ${s.bq}>;
var<workgroup> wg_len: u32;
${loadFn('q', l)}
${loadFn('k', l)}
${loadFn('v', l)}
${storeFn('o', l)}

${main.head}
  let h = wid.y;
  let b = wid.z;
  let g = h / (p.hq / p.hkv);
  let q0 = wid.x * BQ;
  let rg = li / CG;
  let cg = li % CG;
  ${lenPrologue('p.has_len != 0u', 'p.s', 'b')}
  // Last key any row of this block may see, plus one.
  var kend = len;
  if (p.causal != 0u) { kend = min(kend, u32(max(i32(q0 + BQ) + p.off, 0))); }
  let ntiles = (kend + BK - 1u) / BK;

  ${tileLoad('qs', 'q', s.bq, NT, l, 'q0 + $r < p.t', '((b * p.t + q0 + $r) * p.hq + h) * p.d')}
  for (var r = li; r < BQ; r += ${NT}u) { row_m[r] = ${NEG}; row_l[r] = 0.0; }
${rows4.map((r) => ks.map((k) => `  var acc${r}_${k} = vec4<f32>();`).join('\n')).join('\n')}

  for (var kt = 0u; kt < ntiles; kt++) {
    let k0 = kt * BK;
    // Keys past kend are masked for every row of the block.
    let nk = min(BK, kend - k0);
    workgroupBarrier();
    ${tileLoad('ks', 'k', s.bk, NT, l, 'k0 + $r < len', '((b * p.s + k0 + $r) * p.hkv + g) * p.d')}
    ${tileLoad('vs', 'v', s.bk, NT, l, 'k0 + $r < len', '((b * p.s + k0 + $r) * p.hkv + g) * p.d')}
    workgroupBarrier();

    // This thread's scores: rows 4rg+r, keys cg + CG*c.
${rows4.map((r) => `    var s${r} = vec4<f32>();`).join('\n')}
    for (var d4 = 0u; d4 < p.d4; d4++) {
${rows4.map((r) => `      let qa${r} = ${f(`qs[(4u * rg + ${r}u) * RS + d4]`)};`).join('\n')}
${rows4.map((c) => `      let kb${c} = ${f(`ks[(cg + ${c}u * CG) * RS + d4]`)};`).join('\n')}
${rows4.map((r) => `      s${r} += vec4<f32>(dot(qa${r}, kb0), dot(qa${r}, kb1), dot(qa${r}, kb2), dot(qa${r}, kb3));`).join('\n')}
    }
${rows4
  .map((c) => {
    const j = `(k0 + cg + ${c}u * CG)`;
    const vals = rows4.map((r) => `select(${NEG}, s${r}.${XYZW[c]} * p.scale2, ${maskExpr(`(q0 + 4u * rg + ${r}u)`, j, false)})`);
    return `    ps[(cg + ${c}u * CG) * RG + rg] = vec4<f32>(${vals.join(', ')});`;
  })
  .join('\n')}
    workgroupBarrier();

    // Online softmax, one row per thread.
    for (var r = li; r < BQ; r += ${NT}u) {
      let pr = r / 4u;
      let pc = r % 4u;
      let m_old = row_m[r];
      var mx = m_old;
      for (var j = 0u; j < nk; j++) { mx = max(mx, ps[j * RG + pr][pc]); }
      var sum = 0.0;
      for (var j = 0u; j < nk; j++) {
        let sv = ps[j * RG + pr][pc];
        let e = select(0.0, exp2(sv - mx), sv > -1.0e29);
        ps[j * RG + pr][pc] = e;
        sum += e;
      }
      let a = exp2(m_old - mx);
      row_a[r] = a;
      row_l[r] = row_l[r] * a + sum;
      row_m[r] = mx;
    }
    workgroupBarrier();

    // O = O * alpha + P V, for rows 4rg+r and columns cg + CG*k (vec4s).
${rows4.map((r) => `    let al${r} = row_a[4u * rg + ${r}u];`).join('\n')}
${rows4.map((r) => ks.map((k) => `    acc${r}_${k} *= al${r};`).join(' ')).join('\n')}
    for (var j = 0u; j < nk; j++) {
      let pv = ps[j * RG + rg];
${ks.map((k) => `      let vv${k} = ${f(`vs[j * RS + cg + ${k}u * CG]`)};`).join('\n')}
${rows4.map((r) => ks.map((k) => `      acc${r}_${k} += pv.${XYZW[r]} * vv${k};`).join(' ')).join('\n')}
    }
  }
  // Also orders the row stats' initialization before these reads when there were no tiles.
  workgroupBarrier();

${rows4
  .map(
    (r) => `  {
    let i = q0 + 4u * rg + ${r}u;
    if (i < p.t) {
      let l = row_l[4u * rg + ${r}u];
      let inv = select(0.0, 1.0 / l, i32(i) + p.off < i32(len) && l > 0.0);
      let base = ((b * p.t + i) * p.hq + h) * p.d;
${ks.map((k) => `      st_o(base, cg + ${k}u * CG, acc${r}_${k} * inv);`).join('\n')}
    }
  }`,
  )
  .join('\n')}
  for (var r = li; r < BQ; r += ${NT}u) {
    let i = q0 + r;
    if (i < p.t) {
      let ok = i32(i) + p.off < i32(len) && row_l[r] > 0.0;
      lse[(b * p.hq + h) * p.t + i] = select(0.0, (row_m[r] + log2(row_l[r])) * ${Math.LN2}, ok);
    }
  }
  ${main.tail}
}`;
}

/**
 * Attention forward. Returns o [B, T, Hq, D] (dtype of q) and lse [B, Hq, T] (f32, natural-log
 * logsumexp of each row's scaled scores; 0 for padded rows), which the backward needs.
 */
export function attention<D extends FloatDType>(
  gpu: Gpu,
  q: Tensor<D>,
  k: Tensor<D>,
  v: Tensor<D>,
  opts: AttentionOptions = {},
): { o: Tensor<D>; lse: Tensor<'f32'> } {
  const op = 'attention';
  const d = checkQkv(op, q, k, v, opts);
  const shapes = `q=${q} k=${k} v=${v}`;
  // Every check runs before the outputs are allocated.
  const sgm = sgmForward(gpu, d, opts, shapes);
  const cpu = sgm ? undefined : cpuSpec(gpu, d, opts, 'fwd', op, shapes);
  const tile = sgm || cpu ? undefined : (opts.tile ?? pickTile(gpu, FWD_TILES, (t) => fwdBytes(t, d.D, d.dtype), op, shapes));
  if (tile) fitTile(gpu, tile, fwdBytes(tile, d.D, d.dtype), op, shapes);
  const o = gpu.tensor(q.shape, q.dtype, undefined, op) as Tensor<D>;
  const lse = gpu.tensor([d.B, d.Hq, d.T], 'f32', undefined, op);
  if (q.size === 0 || k.size === 0) {
    gpu.clear(o);
    gpu.clear(lse);
    return { o, lse };
  }
  const bindings = [q, k, v, o, lse, lensOrStandIn(opts, q)];
  if (cpu) {
    const pipeline = gpu.pipeline(cpuAttentionKey('fwd', cpu), () => cpuForwardWgsl(MHA_PARAMS, cpu));
    mhaDispatch(gpu, op, shapes, true, pipeline, { d, opts }, [ceilDiv(d.T, CPU_LANES * cpu.R), d.Hq, d.B], bindings);
  } else if (sgm) {
    const grid = [ceilDiv(d.T, sgm.rows), d.Hq, d.B] as const;
    gpu.dispatch({ op, shapes, pipeline: sgm.pipeline, params: mhaParams(d, opts, grid), bindings, workgroups: [...grid] });
  } else if (tile) {
    const spec: MhaSpec = { dtype: d.dtype, D: d.D, bq: tile.bq, bk: tile.bk, tickets: opts.tickets ?? gpu.softwareAdapter };
    const pipeline = gpu.pipeline(`attention:fwd:${mhaKey(spec, spec.bk / 4)}`, () => fwdWgsl(spec));
    mhaDispatch(gpu, op, shapes, spec.tickets, pipeline, { d, opts }, [ceilDiv(d.T, tile.bq), d.Hq, d.B], bindings);
  }
  return { o, lse };
}

/**
 * The cpu-tiled kernels' spec where they run (AttentionOptions.path), else undefined. 'auto' leaves them out where
 * a scalar-kernel knob (tile, tickets) was given, since those ask for the workgroup kernels.
 */
function cpuSpec(gpu: Gpu, d: Dims, opts: AttentionOptions, kernel: CpuAttentionKernel, op: string, shapes: string): CpuAttentionSpec | undefined {
  const path = opts.path ?? 'auto';
  if (path === 'scalar' || path === 'subgroup-matrix') return undefined;
  if (path === 'cpu-tiled') {
    const why = cpuTiledUnfit(gpu, d.D);
    if (why) throw new ShapeError(`cpu-tiled attention ${why}`, { op, shapes });
  } else if (attentionPath(gpu, d.D) !== 'cpu-tiled' || opts.tile || opts.tickets === false) {
    return undefined;
  }
  const R = opts.cpuRows ?? cpuAttentionRows(kernel, d.D);
  if (!Number.isInteger(R) || R < 1 || R > 8) throw new ShapeError(`cpuRows must be an integer from 1 to 8, got ${R}`, { op, shapes });
  return { dtype: d.dtype, D: d.D, R };
}

function cpuTiledUnfit(gpu: Gpu, D: number): string | undefined {
  return cpuLanesUnfit(gpu) ?? cpuAttentionUnfit(D);
}

/**
 * The kernels `attentionBackward` runs by default ('auto') for a head dim on this device, and `attention` too
 * where the subgroup-matrix forward does not apply (attentionForwardPath).
 */
export function attentionPath(gpu: Gpu, D: number): 'cpu-tiled' | 'scalar' {
  return gpu.softwareAdapter && !cpuTiledUnfit(gpu, D) ? 'cpu-tiled' : 'scalar';
}

/** The kernel `attention` runs by default ('auto') for a head dim and dtype on this device. */
export function attentionForwardPath(gpu: Gpu, D: number, dtype: FloatDType): 'subgroup-matrix' | 'cpu-tiled' | 'scalar' {
  return sgmPlan(gpu, D, dtype, forwardFit(SGM_ATTENTION_TILE)).why ? attentionPath(gpu, D) : 'subgroup-matrix';
}

/** Whether a subgroup-matrix kernel's tile fits a fragment shape, subgroup size and head dim, and its memory. */
interface SgmFit {
  unfit(cfg: SubgroupMatrixConfig, D: number, sg: number): string | undefined;
  bytes(cfg: SubgroupMatrixConfig, D: number): number;
}

const forwardFit = (t: SgmAttentionTile): SgmFit => ({ unfit: (c, D, sg) => sgmAttentionUnfit(t, c, D, sg), bytes: (c, D) => sgmAttentionBytes(t, c, D) });

/** The fragment shape and subgroup size a subgroup-matrix attention kernel runs with here, and why it cannot, if so. */
function sgmPlan(gpu: Gpu, D: number, dtype: FloatDType, fit: SgmFit, emulate = false): { cfg?: SubgroupMatrixConfig; sg: number; why?: string } {
  const cfg = emulate ? EMULATED_CONFIG : gpu.variants.matmulF16 === 'subgroup-matrix' ? f16MatrixConfig(gpu.features) : undefined;
  const sg = emulate ? 8 : (gpu.device.adapterInfo?.subgroupMaxSize ?? 32);
  const why = !cfg
    ? 'needs an adapter with f16 subgroup matrices'
    : dtype !== 'f16'
      ? 'takes f16 q, k, v only'
      : (fit.unfit(cfg, D, sg) ?? (fit.bytes(cfg, D) > (gpu.limits.maxComputeWorkgroupStorageSize ?? 16384) ? 'tile over the workgroup memory limit' : undefined));
  return { cfg, sg, why };
}

/**
 * The subgroup-matrix forward's pipeline and query rows per workgroup, else undefined: when asked for, and by
 * default ('auto') for f16 on adapters with f16 subgroup matrices (correct on the H200 since session 14), unless a
 * scalar-kernel knob (tile, tickets) asks for the workgroup kernels.
 */
function sgmForward(gpu: Gpu, d: Dims, opts: AttentionOptions, shapes: string): { pipeline: GPUComputePipeline; rows: number } | undefined {
  const path = opts.path ?? 'auto';
  if (path !== 'auto' && path !== 'subgroup-matrix') return undefined;
  if (path === 'auto' && (opts.sgmEmulate || opts.tile || opts.tickets !== undefined)) return undefined;
  const emulate = opts.sgmEmulate ?? false;
  const t = opts.sgmTile ?? SGM_ATTENTION_TILE;
  const { cfg, sg, why } = sgmPlan(gpu, d.D, d.dtype, forwardFit(t), emulate);
  if (why) {
    if (path === 'auto') return undefined;
    throw new ShapeError(`subgroup-matrix attention ${why}`, { op: 'attention', shapes });
  }
  const c = cfg as SubgroupMatrixConfig;
  const key = `attention:fwd-sgm${emulate ? '-emu' : ''}:${c.M}x${c.N}x${c.K}:D${d.D}:${sgmAttentionKey(t)}:sg${sg}`;
  return { pipeline: gpu.pipeline(key, () => sgmAttentionWgsl(MHA_PARAMS, t, c, d.D, sg, emulate)), rows: t.nsub * c.M };
}

// ------------------------------------------------------------------------------------------- backward

/** The subgroup-matrix backward's two pipelines and rows per workgroup, or a ShapeError saying why it cannot run. */
function sgmBackwardPlan(gpu: Gpu, d: Dims, t: SgmAttentionBwdTile, emulate: boolean, shapes: string): { dq: GPUComputePipeline; dkv: GPUComputePipeline; rows: number } {
  const fit: SgmFit = { unfit: (c, D, sg) => sgmAttentionBwdUnfit(t, c, D, sg), bytes: (c, D) => sgmAttentionBwdBytes(t, c, D) };
  const { cfg, sg, why } = sgmPlan(gpu, d.D, d.dtype, fit, emulate);
  if (why) throw new ShapeError(`subgroup-matrix attention backward ${why}`, { op: 'attentionBackward', shapes });
  const c = cfg as SubgroupMatrixConfig;
  const key = (which: string) => `attention:${which}-sgm${emulate ? '-emu' : ''}:${c.M}x${c.N}x${c.K}:D${d.D}:${sgmAttentionBwdKey(t)}:sg${sg}`;
  return {
    dq: gpu.pipeline(key('dq'), () => sgmDqWgsl(MHA_PARAMS, t, c, d.D, sg, emulate)),
    dkv: gpu.pipeline(key('dkv'), () => sgmDkvWgsl(MHA_PARAMS, t, c, d.D, sg, emulate)),
    rows: t.nsub * c.M,
  };
}

function dvecWgsl(l: Layout): string {
  return /* wgsl */ `
${enableF16([l.st])}
struct P { rows: u32, t: u32, hq: u32, d: u32, d4: u32 }
@group(0) @binding(0) var<uniform> p: P;
${bindRows(1, 'o', l, 'read')}
${bindRows(2, 'dout', l, 'read')}
@group(0) @binding(3) var<storage, read_write> dvec: array<f32>;
${loadFn('o', l)}
${loadFn('dout', l)}
${LINEAR_WORKGROUP}
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let n = linear_wg(wid, nwg) * 64u + li;
  if (n >= p.rows) { return; }
  var acc = 0.0;
  for (var d4 = 0u; d4 < p.d4; d4++) {
    acc += dot(vec4<f32>(ld_o(n * p.d, d4)), vec4<f32>(ld_dout(n * p.d, d4)));
  }
  // n walks [B, T, Hq]; dvec is [B, Hq, T] like lse.
  let h = n % p.hq;
  let bt = n / p.hq;
  let t = bt % p.t;
  let b = bt / p.t;
  dvec[(b * p.hq + h) * p.t + t] = acc;
}`;
}

function dqWgsl(s: MhaSpec): string {
  const RG = s.bq / 4;
  const CG = s.bk / 4;
  const NT = RG * CG;
  const main = mhaMain(s, NT, 9, true);
  const l = layout(s.D, s.dtype, CG);
  const RD = l.DP4 / CG;
  const st = s.dtype;
  const f = (x: string) => (st === 'f32' ? x : `vec4<f32>(${x})`);
  const rows4 = range(4);
  const ks = range(RD);
  return /* wgsl */ `
${enableF16([st])}
${MHA_PARAMS}
${bindRows(1, 'q', l, 'read')}
${bindRows(2, 'k', l, 'read')}
${bindRows(3, 'v', l, 'read')}
${bindRows(4, 'dout', l, 'read')}
@group(0) @binding(5) var<storage, read> lse: array<f32>;
@group(0) @binding(6) var<storage, read> dvec: array<f32>;
${bindRows(7, 'dq', l, 'read_write')}
${lensBinding(8)}
const BQ = ${s.bq}u;
const BK = ${s.bk}u;
const RG = ${RG}u;
const CG = ${CG}u;
const RS = ${l.RS}u;
var<workgroup> qs: array<vec4<${st}>, ${s.bq * l.RS}>;
var<workgroup> dos: array<vec4<${st}>, ${s.bq * l.RS}>;
var<workgroup> ks: array<vec4<${st}>, ${s.bk * l.RS}>;
var<workgroup> vs: array<vec4<${st}>, ${s.bk * l.RS}>;
var<workgroup> ds: array<vec4<f32>, ${s.bk * RG}>;
var<workgroup> row_l2: array<f32, ${s.bq}>;
var<workgroup> row_d: array<f32, ${s.bq}>;
var<workgroup> wg_len: u32;
${loadFn('q', l)}
${loadFn('k', l)}
${loadFn('v', l)}
${loadFn('dout', l)}
${storeFn('dq', l)}

${main.head}
  let h = wid.y;
  let b = wid.z;
  let g = h / (p.hq / p.hkv);
  let q0 = wid.x * BQ;
  let rg = li / CG;
  let cg = li % CG;
  ${lenPrologue('p.has_len != 0u', 'p.s', 'b')}
  var kend = len;
  if (p.causal != 0u) { kend = min(kend, u32(max(i32(q0 + BQ) + p.off, 0))); }
  let ntiles = (kend + BK - 1u) / BK;

  ${tileLoad('qs', 'q', s.bq, NT, l, 'q0 + $r < p.t', '((b * p.t + q0 + $r) * p.hq + h) * p.d')}
  ${tileLoad('dos', 'dout', s.bq, NT, l, 'q0 + $r < p.t', '((b * p.t + q0 + $r) * p.hq + h) * p.d')}
  for (var r = li; r < BQ; r += ${NT}u) {
    let i = min(q0 + r, p.t - 1u);
    row_l2[r] = lse[(b * p.hq + h) * p.t + i] * ${LOG2E};
    row_d[r] = dvec[(b * p.hq + h) * p.t + i];
  }
${rows4.map((r) => ks.map((k) => `  var acc${r}_${k} = vec4<f32>();`).join('\n')).join('\n')}

  for (var kt = 0u; kt < ntiles; kt++) {
    let k0 = kt * BK;
    let nk = min(BK, kend - k0);
    workgroupBarrier();
    ${tileLoad('ks', 'k', s.bk, NT, l, 'k0 + $r < len', '((b * p.s + k0 + $r) * p.hkv + g) * p.d')}
    ${tileLoad('vs', 'v', s.bk, NT, l, 'k0 + $r < len', '((b * p.s + k0 + $r) * p.hkv + g) * p.d')}
    workgroupBarrier();

${rows4.map((r) => `    var s${r} = vec4<f32>();\n    var dp${r} = vec4<f32>();`).join('\n')}
    for (var d4 = 0u; d4 < p.d4; d4++) {
${rows4.map((r) => `      let qa${r} = ${f(`qs[(4u * rg + ${r}u) * RS + d4]`)};`).join('\n')}
${rows4.map((r) => `      let oa${r} = ${f(`dos[(4u * rg + ${r}u) * RS + d4]`)};`).join('\n')}
${rows4.map((c) => `      let kb${c} = ${f(`ks[(cg + ${c}u * CG) * RS + d4]`)};`).join('\n')}
${rows4.map((c) => `      let vb${c} = ${f(`vs[(cg + ${c}u * CG) * RS + d4]`)};`).join('\n')}
${rows4.map((r) => `      s${r} += vec4<f32>(dot(qa${r}, kb0), dot(qa${r}, kb1), dot(qa${r}, kb2), dot(qa${r}, kb3));`).join('\n')}
${rows4.map((r) => `      dp${r} += vec4<f32>(dot(oa${r}, vb0), dot(oa${r}, vb1), dot(oa${r}, vb2), dot(oa${r}, vb3));`).join('\n')}
    }
    // dS = P * (dP - Dvec), P recomputed from lse.
${rows4
  .map((r) => {
    const i = `(q0 + 4u * rg + ${r}u)`;
    const js = rows4.map((c) => `select(0.0, exp2(s${r}.${XYZW[c]} * p.scale2 - row_l2[4u * rg + ${r}u]), ${maskExpr(i, `(k0 + cg + ${c}u * CG)`, true)})`);
    return `    let p${r} = vec4<f32>(${js.join(', ')});\n    let ds${r} = p${r} * (dp${r} - row_d[4u * rg + ${r}u]);`;
  })
  .join('\n')}
${rows4.map((c) => `    ds[(cg + ${c}u * CG) * RG + rg] = vec4<f32>(ds0.${XYZW[c]}, ds1.${XYZW[c]}, ds2.${XYZW[c]}, ds3.${XYZW[c]});`).join('\n')}
    workgroupBarrier();

    for (var j = 0u; j < nk; j++) {
      let dv = ds[j * RG + rg];
${ks.map((k) => `      let kk${k} = ${f(`ks[j * RS + cg + ${k}u * CG]`)};`).join('\n')}
${rows4.map((r) => ks.map((k) => `      acc${r}_${k} += dv.${XYZW[r]} * kk${k};`).join(' ')).join('\n')}
    }
  }

${rows4
  .map(
    (r) => `  {
    let i = q0 + 4u * rg + ${r}u;
    if (i < p.t) {
      let base = ((b * p.t + i) * p.hq + h) * p.d;
${ks.map((k) => `      st_dq(base, cg + ${k}u * CG, acc${r}_${k} * p.scale);`).join('\n')}
    }
  }`,
  )
  .join('\n')}
  ${main.tail}
}`;
}

function dkvWgsl(s: MhaSpec): string {
  const QG = s.bq / 4;
  const KG = s.bk / 4;
  const NT = QG * KG;
  const main = mhaMain(s, NT, 10, false);
  const l = layout(s.D, s.dtype, QG);
  const RD = l.DP4 / QG;
  const st = s.dtype;
  const f = (x: string) => (st === 'f32' ? x : `vec4<f32>(${x})`);
  const c4 = range(4);
  const ks = range(RD);
  return /* wgsl */ `
${enableF16([st])}
${MHA_PARAMS}
${bindRows(1, 'q', l, 'read')}
${bindRows(2, 'k', l, 'read')}
${bindRows(3, 'v', l, 'read')}
${bindRows(4, 'dout', l, 'read')}
@group(0) @binding(5) var<storage, read> lse: array<f32>;
@group(0) @binding(6) var<storage, read> dvec: array<f32>;
${bindRows(7, 'dk', l, 'read_write')}
${bindRows(8, 'dv', l, 'read_write')}
${lensBinding(9)}
const BQ = ${s.bq}u;
const BK = ${s.bk}u;
const QG = ${QG}u;
const KG = ${KG}u;
const RS = ${l.RS}u;
var<workgroup> ks: array<vec4<${st}>, ${s.bk * l.RS}>;
var<workgroup> vs: array<vec4<${st}>, ${s.bk * l.RS}>;
var<workgroup> qs: array<vec4<${st}>, ${s.bq * l.RS}>;
var<workgroup> dos: array<vec4<${st}>, ${s.bq * l.RS}>;
// P and dS of the tile: pt[row * KG + kg] holds keys 4kg..4kg+3.
var<workgroup> pt: array<vec4<f32>, ${s.bq * KG}>;
var<workgroup> dst: array<vec4<f32>, ${s.bq * KG}>;
var<workgroup> row_l2: array<f32, ${s.bq}>;
var<workgroup> row_d: array<f32, ${s.bq}>;
var<workgroup> wg_len: u32;
${loadFn('q', l)}
${loadFn('k', l)}
${loadFn('v', l)}
${loadFn('dout', l)}
${storeFn('dk', l)}
${storeFn('dv', l)}

${main.head}
  let g = wid.y;
  let b = wid.z;
  let group = p.hq / p.hkv;
  let k0 = wid.x * BK;
  let kg = li / QG;
  let qg = li % QG;
  ${lenPrologue('p.has_len != 0u', 'p.s', 'b')}
  ${tileLoad('ks', 'k', s.bk, NT, l, 'k0 + $r < len', '((b * p.s + k0 + $r) * p.hkv + g) * p.d')}
  ${tileLoad('vs', 'v', s.bk, NT, l, 'k0 + $r < len', '((b * p.s + k0 + $r) * p.hkv + g) * p.d')}
  // Query rows that can see these keys: valid rows (i + off < len), and under causality i + off >= k0.
  let row_hi = u32(clamp(i32(len) - p.off, 0, i32(p.t)));
  var row_lo = 0u;
  if (p.causal != 0u) { row_lo = u32(clamp(i32(k0) - p.off, 0, i32(p.t))); }
  let t_lo = row_lo / BQ;
  let t_hi = select(0u, (row_hi + BQ - 1u) / BQ, row_hi > row_lo && k0 < len);
${c4.map((c) => ks.map((k) => `  var dk${c}_${k} = vec4<f32>();\n  var dv${c}_${k} = vec4<f32>();`).join('\n')).join('\n')}

  for (var hh = 0u; hh < group; hh++) {
    let h = g * group + hh;
    for (var qt = t_lo; qt < t_hi; qt++) {
      let q0 = qt * BQ;
      workgroupBarrier();
      ${tileLoad('qs', 'q', s.bq, NT, l, 'q0 + $r < p.t', '((b * p.t + q0 + $r) * p.hq + h) * p.d')}
      ${tileLoad('dos', 'dout', s.bq, NT, l, 'q0 + $r < p.t', '((b * p.t + q0 + $r) * p.hq + h) * p.d')}
      for (var r = li; r < BQ; r += ${NT}u) {
        let i = min(q0 + r, p.t - 1u);
        row_l2[r] = lse[(b * p.hq + h) * p.t + i] * ${LOG2E};
        row_d[r] = dvec[(b * p.hq + h) * p.t + i];
      }
      workgroupBarrier();

      // This thread's scores: keys 4kg+c, rows qg + QG*r.
${c4.map((c) => `      var s${c} = vec4<f32>();\n      var dp${c} = vec4<f32>();`).join('\n')}
      for (var d4 = 0u; d4 < p.d4; d4++) {
${c4.map((c) => `        let kb${c} = ${f(`ks[(4u * kg + ${c}u) * RS + d4]`)};`).join('\n')}
${c4.map((c) => `        let vb${c} = ${f(`vs[(4u * kg + ${c}u) * RS + d4]`)};`).join('\n')}
${c4.map((r) => `        let qa${r} = ${f(`qs[(qg + ${r}u * QG) * RS + d4]`)};`).join('\n')}
${c4.map((r) => `        let oa${r} = ${f(`dos[(qg + ${r}u * QG) * RS + d4]`)};`).join('\n')}
${c4.map((c) => `        s${c} += vec4<f32>(dot(kb${c}, qa0), dot(kb${c}, qa1), dot(kb${c}, qa2), dot(kb${c}, qa3));`).join('\n')}
${c4.map((c) => `        dp${c} += vec4<f32>(dot(vb${c}, oa0), dot(vb${c}, oa1), dot(vb${c}, oa2), dot(vb${c}, oa3));`).join('\n')}
      }
${c4
  .map((c) => {
    const j = `(k0 + 4u * kg + ${c}u)`;
    const ps = c4.map((r) => `select(0.0, exp2(s${c}.${XYZW[r]} * p.scale2 - row_l2[qg + ${r}u * QG]), ${maskExpr(`(q0 + qg + ${r}u * QG)`, j, true)})`);
    const dd = c4.map((r) => `row_d[qg + ${r}u * QG]`);
    return `      let p${c} = vec4<f32>(${ps.join(', ')});\n      let ds${c} = p${c} * (dp${c} - vec4<f32>(${dd.join(', ')}));`;
  })
  .join('\n')}
${c4.map((r) => `      pt[(qg + ${r}u * QG) * KG + kg] = vec4<f32>(p0.${XYZW[r]}, p1.${XYZW[r]}, p2.${XYZW[r]}, p3.${XYZW[r]});`).join('\n')}
${c4.map((r) => `      dst[(qg + ${r}u * QG) * KG + kg] = vec4<f32>(ds0.${XYZW[r]}, ds1.${XYZW[r]}, ds2.${XYZW[r]}, ds3.${XYZW[r]});`).join('\n')}
      workgroupBarrier();

      // dV += P^T dO, dK += dS^T Q over the tile's rows, for keys 4kg+c and columns qg + QG*k.
      for (var i = 0u; i < min(BQ, p.t - q0); i++) {
        let pv = pt[i * KG + kg];
        let dsv = dst[i * KG + kg];
${ks.map((k) => `        let qq${k} = ${f(`qs[i * RS + qg + ${k}u * QG]`)};\n        let oo${k} = ${f(`dos[i * RS + qg + ${k}u * QG]`)};`).join('\n')}
${c4.map((c) => ks.map((k) => `        dv${c}_${k} += pv.${XYZW[c]} * oo${k}; dk${c}_${k} += dsv.${XYZW[c]} * qq${k};`).join('\n')).join('\n')}
      }
    }
  }

${c4
  .map(
    (c) => `  {
    let j = k0 + 4u * kg + ${c}u;
    if (j < p.s) {
      let base = ((b * p.s + j) * p.hkv + g) * p.d;
${ks.map((k) => `      st_dk(base, qg + ${k}u * QG, dk${c}_${k} * p.scale);\n      st_dv(base, qg + ${k}u * QG, dv${c}_${k});`).join('\n')}
    }
  }`,
  )
  .join('\n')}
  ${main.tail}
}`;
}

/**
 * Attention backward from the forward's o and lse and the upstream gradient dO (all as in `attention`, same
 * options). Returns dq (like q) and dk, dv (like k, v), in the input dtype. dk/dv sum over the query heads
 * of each KV group; padded rows and masked keys get zero gradient.
 */
export function attentionBackward<D extends FloatDType>(
  gpu: Gpu,
  q: Tensor<D>,
  k: Tensor<D>,
  v: Tensor<D>,
  o: Tensor<D>,
  lse: Tensor<'f32'>,
  dO: Tensor<D>,
  opts: AttentionOptions = {},
): { dq: Tensor<D>; dk: Tensor<D>; dv: Tensor<D> } {
  const op = 'attentionBackward';
  const d = checkQkv(op, q, k, v, opts);
  checkSame(op, 'o', o, q);
  checkSame(op, 'dO', dO, q);
  if (lse.dtype !== 'f32' || lse.shape.join() !== [d.B, d.Hq, d.T].join()) {
    throw new ShapeError(`lse must be f32[${d.B}, ${d.Hq}, ${d.T}]`, { op, shapes: `lse=${lse} q=${q}` });
  }
  const shapes = `q=${q} k=${k} v=${v}`;
  const sgm = opts.sgmBackward ? sgmBackwardPlan(gpu, d, opts.sgmBackward, opts.sgmEmulate ?? false, shapes) : undefined;
  // The subgroup-matrix backward is asked for by its own option: that forward path's backward runs what 'auto'
  // picks otherwise. Every check runs before the outputs are allocated.
  const bopts: AttentionOptions = opts.path === 'subgroup-matrix' ? { ...opts, path: 'auto' } : opts;
  const cq = sgm ? undefined : cpuSpec(gpu, d, bopts, 'dq', op, shapes);
  const ckv = sgm ? undefined : cpuSpec(gpu, d, bopts, 'dkv', op, shapes);
  const tq = sgm || cq ? undefined : (opts.tile ?? pickTile(gpu, BWD_TILES, (t) => dqBytes(t, d.D, d.dtype), op, shapes));
  const tkv = sgm || ckv ? undefined : (opts.tile ?? pickTile(gpu, BWD_TILES, (t) => dkvBytes(t, d.D, d.dtype), op, shapes));
  if (tq) fitTile(gpu, tq, dqBytes(tq, d.D, d.dtype), op, shapes);
  if (tkv) fitTile(gpu, tkv, dkvBytes(tkv, d.D, d.dtype), op, shapes);
  const dq = gpu.tensor(q.shape, q.dtype, undefined, op) as Tensor<D>;
  const dk = gpu.tensor(k.shape, k.dtype, undefined, op) as Tensor<D>;
  const dv = gpu.tensor(v.shape, v.dtype, undefined, op) as Tensor<D>;
  if (q.size === 0 || k.size === 0) {
    [dq, dk, dv].forEach((t) => gpu.clear(t));
    return { dq, dk, dv };
  }
  const lens = lensOrStandIn(opts, q);

  const rows = d.B * d.T * d.Hq;
  const dvec = gpu.tensor([d.B, d.Hq, d.T], 'f32', undefined, op);
  gpu.dispatch({
    op: `${op}.dvec`,
    shapes,
    pipeline: gpu.pipeline(`attention:dvec:${d.dtype}:${d.D % 4 === 0}`, () => dvecWgsl(layout(d.D, d.dtype, 1))),
    params: new Params().u32(rows).u32(d.T).u32(d.Hq).u32(d.D).u32(ceilDiv(d.D, 4)).bytes(),
    bindings: [o, dO, dvec],
    workgroups: gpu.grid(ceilDiv(rows, 64)),
  });

  const tickets = opts.tickets ?? gpu.softwareAdapter;
  const dqBindings = [q, k, v, dO, lse, dvec, dq, lens];
  const dkvBindings = [q, k, v, dO, lse, dvec, dk, dv, lens];
  if (sgm) {
    mhaDispatch(gpu, `${op}.dq-sgm`, shapes, false, sgm.dq, { d, opts }, [ceilDiv(d.T, sgm.rows), d.Hq, d.B], dqBindings);
  } else if (cq) {
    const pipeline = gpu.pipeline(cpuAttentionKey('dq', cq), () => cpuDqWgsl(MHA_PARAMS, cq));
    const grid = [ceilDiv(d.T, CPU_LANES * cq.R), d.Hq, d.B] as const;
    mhaDispatch(gpu, `${op}.dq`, shapes, true, pipeline, { d, opts }, grid, dqBindings);
  } else if (tq) {
    const sq: MhaSpec = { dtype: d.dtype, D: d.D, bq: tq.bq, bk: tq.bk, tickets };
    const pipeline = gpu.pipeline(`attention:dq:${mhaKey(sq, sq.bk / 4)}`, () => dqWgsl(sq));
    mhaDispatch(gpu, `${op}.dq`, shapes, tickets, pipeline, { d, opts }, [ceilDiv(d.T, tq.bq), d.Hq, d.B], dqBindings);
  }
  if (sgm) {
    mhaDispatch(gpu, `${op}.dkv-sgm`, shapes, false, sgm.dkv, { d, opts }, [ceilDiv(d.S, sgm.rows), d.Hkv, d.B], dkvBindings);
  } else if (ckv) {
    const pipeline = gpu.pipeline(cpuAttentionKey('dkv', ckv), () => cpuDkvWgsl(MHA_PARAMS, ckv));
    const grid = [ceilDiv(d.S, CPU_LANES * ckv.R), d.Hkv, d.B] as const;
    mhaDispatch(gpu, `${op}.dkv`, shapes, true, pipeline, { d, opts }, grid, dkvBindings);
  } else if (tkv) {
    const skv: MhaSpec = { dtype: d.dtype, D: d.D, bq: tkv.bq, bk: tkv.bk, tickets };
    const pipeline = gpu.pipeline(`attention:dkv:${mhaKey(skv, skv.bq / 4)}`, () => dkvWgsl(skv));
    mhaDispatch(gpu, `${op}.dkv`, shapes, tickets, pipeline, { d, opts }, [ceilDiv(d.S, tkv.bk), d.Hkv, d.B], dkvBindings);
  }
  // Safe to release now: later work that reuses the buffer is recorded after these dispatches.
  dvec.dispose();
  return { dq, dk, dv };
}

// ------------------------------------------------------------------------------------------- decode

interface DecodeSpec {
  dtype: FloatDType;
  D: number;
  /** Query rows per workgroup: group size * T. */
  R: number;
  T: number;
  bk: number;
}

const DECODE_NT = 128;
const DECODE_MAX_ROWS = 64;
/** Decode rows are padded to a multiple of 8 vec4s, so head dims 1..32 share one pipeline, 33..64 the next. */
const DECODE_COLS = 8;

function decodeBytes(dtype: FloatDType, D: number, R: number, bk: number): number {
  const l = layout(D, dtype, DECODE_COLS);
  return 16 * R * l.DP4 + 2 * vecBytes(dtype) * bk * l.RS + 4 * R * bk + 12 * R + 64;
}

function decodeWgsl(s: DecodeSpec): string {
  const l = layout(s.D, s.dtype, DECODE_COLS);
  const st = s.dtype;
  const NT = DECODE_NT;
  const NP = ceilDiv(s.R * l.DP4, NT);
  const f = (x: string) => (st === 'f32' ? x : `vec4<f32>(${x})`);
  const ps = range(NP);
  return /* wgsl */ `
${enableF16([st])}
struct P { t: u32, smax: u32, hq: u32, hkv: u32, chunk: u32, splits: u32, scale2: f32, d: u32, d4: u32 }
@group(0) @binding(0) var<uniform> p: P;
${bindRows(1, 'q', l, 'read')}
${bindRows(2, 'k', l, 'read')}
${bindRows(3, 'v', l, 'read')}
@group(0) @binding(4) var<storage, read> lens: array<i32>;
@group(0) @binding(5) var<storage, read_write> part_o: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> part_ml: array<vec2<f32>>;
const R = ${s.R}u;
const T = ${s.T}u;
const BK = ${s.bk}u;
const DP4 = ${l.DP4}u;
const RS = ${l.RS}u;
var<workgroup> qsh: array<vec4<f32>, ${s.R * l.DP4}>;
var<workgroup> ksh: array<vec4<${st}>, ${s.bk * l.RS}>;
var<workgroup> vsh: array<vec4<${st}>, ${s.bk * l.RS}>;
var<workgroup> sc: array<f32, ${s.R * s.bk}>;
var<workgroup> row_m: array<f32, ${s.R}>;
var<workgroup> row_l: array<f32, ${s.R}>;
var<workgroup> row_a: array<f32, ${s.R}>;
var<workgroup> wg_len: u32;
${loadFn('q', l)}
${loadFn('k', l)}
${loadFn('v', l)}

// Row r of the workgroup is query head g*group + r / T, new token r % T.
fn row_index(b: u32, g: u32, r: u32) -> u32 {
  let h = g * (R / T) + r / T;
  return (b * p.hq + h) * T + r % T;
}

@compute @workgroup_size(${NT})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let split = wid.x;
  let g = wid.y;
  let b = wid.z;
  ${lenPrologue('true', 'p.smax', 'b')}
  let c0 = split * p.chunk;
  let c1 = min(c0 + p.chunk, len);
  let ntiles = select(0u, (c1 - c0 + BK - 1u) / BK, c1 > c0);

  for (var e = li; e < R * DP4; e += ${NT}u) {
    let r = e / DP4;
    let h = g * (R / T) + r / T;
    qsh[e] = vec4<f32>(ld_q(((b * T + r % T) * p.hq + h) * p.d, e % DP4)) * p.scale2;
  }
  for (var r = li; r < R; r += ${NT}u) { row_m[r] = ${NEG}; row_l[r] = 0.0; }
  // Output pairs of this thread: row pr, vec4 column pd (past p.d4 they are padding and idle).
${ps.map((k) => `  var acc${k} = vec4<f32>();\n  let pr${k} = (li + ${k * NT}u) / DP4;\n  let pd${k} = (li + ${k * NT}u) % DP4;`).join('\n')}

  for (var kt = 0u; kt < ntiles; kt++) {
    let k0 = c0 + kt * BK;
    let nk = min(BK, c1 - k0);
    workgroupBarrier();
    ${tileLoad('ksh', 'k', s.bk, NT, l, 'k0 + $r < c1', '((b * p.smax + k0 + $r) * p.hkv + g) * p.d')}
    ${tileLoad('vsh', 'v', s.bk, NT, l, 'k0 + $r < c1', '((b * p.smax + k0 + $r) * p.hkv + g) * p.d')}
    workgroupBarrier();
    for (var e = li; e < R * BK; e += ${NT}u) {
      let r = e / BK;
      let j = k0 + e % BK;
      var acc = 0.0;
      for (var d4 = 0u; d4 < p.d4; d4++) { acc += dot(qsh[r * DP4 + d4], ${f('ksh[(e % BK) * RS + d4]')}); }
      // New token r % T sits at position len - T + r % T.
      sc[e] = select(${NEG}, acc, j < c1 && i32(j) <= i32(len) - i32(T) + i32(r % T));
    }
    workgroupBarrier();
    for (var r = li; r < R; r += ${NT}u) {
      let m_old = row_m[r];
      var mx = m_old;
      for (var j = 0u; j < nk; j++) { mx = max(mx, sc[r * BK + j]); }
      var sum = 0.0;
      for (var j = 0u; j < nk; j++) {
        let sv = sc[r * BK + j];
        let e = select(0.0, exp2(sv - mx), sv > -1.0e29);
        sc[r * BK + j] = e;
        sum += e;
      }
      let a = exp2(m_old - mx);
      row_a[r] = a;
      row_l[r] = row_l[r] * a + sum;
      row_m[r] = mx;
    }
    workgroupBarrier();
${ps
  .map(
    (k) => `    if (pr${k} < R && pd${k} < p.d4) {
      var a = acc${k} * row_a[pr${k}];
      for (var j = 0u; j < nk; j++) { a += sc[pr${k} * BK + j] * ${f(`vsh[j * RS + pd${k}]`)}; }
      acc${k} = a;
    }`,
  )
  .join('\n')}
  }

${ps.map((k) => `  if (pr${k} < R && pd${k} < p.d4) { part_o[(row_index(b, g, pr${k}) * p.splits + split) * p.d4 + pd${k}] = acc${k}; }`).join('\n')}
  for (var r = li; r < R; r += ${NT}u) { part_ml[row_index(b, g, r) * p.splits + split] = vec2<f32>(row_m[r], row_l[r]); }
}`;
}

function combineWgsl(l: Layout): string {
  return /* wgsl */ `
${enableF16([l.st])}
struct P { t: u32, hq: u32, splits: u32, d: u32, d4: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> part_o: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> part_ml: array<vec2<f32>>;
${bindRows(3, 'o', l, 'read_write')}
${storeFn('o', l)}
${LINEAR_WORKGROUP}
@compute @workgroup_size(32)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  // One workgroup per output row n = (b * hq + h) * t + tok.
  let n = linear_wg(wid, nwg);
  var mx = ${NEG};
  for (var s = 0u; s < p.splits; s++) { mx = max(mx, part_ml[n * p.splits + s].x); }
  var l = 0.0;
  for (var s = 0u; s < p.splits; s++) {
    let ml = part_ml[n * p.splits + s];
    l += ml.y * exp2(ml.x - mx);
  }
  let tok = n % p.t;
  let bh = n / p.t;
  let h = bh % p.hq;
  let b = bh / p.hq;
  let base = ((b * p.t + tok) * p.hq + h) * p.d;
  let inv = select(0.0, 1.0 / l, l > 0.0);
  for (var d4 = li; d4 < p.d4; d4 += 32u) {
    var acc = vec4<f32>();
    for (var s = 0u; s < p.splits; s++) {
      acc += part_o[(n * p.splits + s) * p.d4 + d4] * exp2(part_ml[n * p.splits + s].x - mx);
    }
    st_o(base, d4, acc * inv);
  }
}`;
}

/**
 * Decode step against a KV cache (flash-decoding). q [B, T, Hq, D] holds the newest T tokens of each
 * sequence (T = 1 for plain decoding); kCache, vCache [B, Smax, Hkv, D] already hold them (see
 * `attentionCacheAppend`), and lengths[b] (i32 [B]) counts the valid cache rows including the new ones.
 * Token t of sequence b sits at position lengths[b] - T + t and attends cache rows j <= that position.
 * Returns o [B, T, Hq, D].
 */
export function attentionDecode<D extends FloatDType>(
  gpu: Gpu,
  q: Tensor<D>,
  kCache: Tensor<D>,
  vCache: Tensor<D>,
  lengths: Tensor<'i32'>,
  opts: AttentionDecodeOptions = {},
): Tensor<D> {
  const op = 'attentionDecode';
  const shapes = `q=${q} kCache=${kCache} vCache=${vCache} lengths=${lengths}`;
  const d = checkQkv(op, q, kCache, vCache, { causal: false, lengths });
  const group = d.Hq / d.Hkv;
  const R = group * d.T;
  if (R > DECODE_MAX_ROWS) {
    throw new ShapeError(`decode runs (Hq/Hkv)*T <= ${DECODE_MAX_ROWS} rows per KV head; use attention() for longer chunks`, { op, shapes });
  }
  if (d.T > d.S) throw new ShapeError('more new tokens than cache rows', { op, shapes });
  if (opts.splits !== undefined && !(Number.isInteger(opts.splits) && opts.splits >= 1)) {
    throw new ShapeError(`splits must be a positive integer, got ${opts.splits}`, { op, shapes });
  }
  if (useCpuDecode(gpu, d, R, opts, op, shapes)) return cpuDecode(gpu, q, kCache, vCache, lengths, d, opts, shapes);
  const limit = gpu.limits.maxComputeWorkgroupStorageSize ?? 16384;
  const bk = opts.bk ?? [64, 32, 16, 8, 4].find((x) => decodeBytes(d.dtype, d.D, R, x) <= limit);
  if (bk === undefined || bk % 4 !== 0 || decodeBytes(d.dtype, d.D, R, bk) > limit) {
    throw new ShapeError(`no key tile fits ${limit} bytes of workgroup memory`, { op, shapes });
  }
  const o = gpu.tensor(q.shape, q.dtype, undefined, op) as Tensor<D>;
  if (q.size === 0) return o;
  // Enough chunks to give the GPU ~256 workgroups, each at least one key tile.
  const maxSplits = ceilDiv(d.S, bk);
  const splits = Math.min(maxSplits, Math.max(1, opts.splits ?? ceilDiv(256, d.B * d.Hkv)));
  const chunk = roundUp(ceilDiv(d.S, splits), bk);
  const nsplit = ceilDiv(d.S, chunk);
  const rows = d.B * d.Hq * d.T;
  const partO = gpu.tensor([rows, nsplit, ceilDiv(d.D, 4) * 4], 'f32', undefined, op);
  const partMl = gpu.tensor([rows, nsplit, 2], 'f32', undefined, op);
  const scale = opts.scale ?? 1 / Math.sqrt(d.D);
  const spec: DecodeSpec = { dtype: d.dtype, D: d.D, R, T: d.T, bk };
  const dl = layout(d.D, d.dtype, DECODE_COLS);
  gpu.dispatch({
    op: `${op}.split`,
    shapes,
    pipeline: gpu.pipeline(`attention:decode:${d.dtype}:dp4=${dl.DP4}:vec=${dl.vec}:R=${R}:T=${d.T}:bk=${bk}`, () => decodeWgsl(spec)),
    params: new Params()
      .u32(d.T)
      .u32(d.S)
      .u32(d.Hq)
      .u32(d.Hkv)
      .u32(chunk)
      .u32(nsplit)
      .f32(scale * LOG2E)
      .u32(d.D)
      .u32(ceilDiv(d.D, 4))
      .bytes(),
    bindings: [q, kCache, vCache, lengths, partO, partMl],
    workgroups: [nsplit, d.Hkv, d.B],
  });
  combine(gpu, d, nsplit, partO, partMl, o, shapes);
  partO.dispose();
  partMl.dispose();
  return o;
}

/** Folds the chunks' partial outputs and (max, sum) pairs into o. */
function combine(gpu: Gpu, d: Dims, splits: number, partO: Tensor, partMl: Tensor, o: Tensor, shapes: string): void {
  const dl = layout(d.D, d.dtype, DECODE_COLS);
  gpu.dispatch({
    op: 'attentionDecode.combine',
    shapes,
    pipeline: gpu.pipeline(`attention:combine:${d.dtype}:vec=${dl.vec}`, () => combineWgsl(dl)),
    params: new Params().u32(d.T).u32(d.Hq).u32(splits).u32(d.D).u32(ceilDiv(d.D, 4)).bytes(),
    bindings: [partO, partMl, o],
    workgroups: gpu.grid(d.B * d.Hq * d.T),
  });
}

function cpuDecodeUnfit(gpu: Gpu, D: number, rows: number): string | undefined {
  const vec4s = rows * Math.ceil(D / 4);
  return cpuTiledUnfit(gpu, D) ?? (vec4s > CPU_DECODE_MAX_ROW_VEC4 ? `holds (Hq/Hkv)·T·D/4 <= ${CPU_DECODE_MAX_ROW_VEC4} row vec4s, got ${vec4s}` : undefined);
}

/** The kernel attentionDecode runs by default ('auto') for a head dim and (Hq/Hkv)·T query rows per KV head. */
export function attentionDecodePath(gpu: Gpu, D: number, rowsPerKvHead: number): 'cpu-tiled' | 'scalar' {
  return gpu.softwareAdapter && !cpuDecodeUnfit(gpu, D, rowsPerKvHead) ? 'cpu-tiled' : 'scalar';
}

/** Whether attentionDecode takes the cpu-tiled kernel (AttentionDecodeOptions.path); throws where it was asked for and cannot. */
function useCpuDecode(gpu: Gpu, d: Dims, R: number, opts: AttentionDecodeOptions, op: string, shapes: string): boolean {
  const path = opts.path ?? 'auto';
  if (path === 'scalar') return false;
  const why = cpuDecodeUnfit(gpu, d.D, R);
  if (path === 'cpu-tiled') {
    if (why) throw new ShapeError(`cpu-tiled attention decode ${why}`, { op, shapes });
    return true;
  }
  if (path !== 'auto') throw new ShapeError(`unknown path ${String(path)}`, { op, shapes });
  return attentionDecodePath(gpu, d.D, R) === 'cpu-tiled' && opts.bk === undefined;
}

/** The cpu-tiled decode: one dispatch over (chunk, KV head, sequence) tiles, plus the combine pass when K is split. */
function cpuDecode<D extends FloatDType>(
  gpu: Gpu,
  q: Tensor<D>,
  kCache: Tensor<D>,
  vCache: Tensor<D>,
  lengths: Tensor<'i32'>,
  d: Dims,
  opts: AttentionDecodeOptions,
  shapes: string,
): Tensor<D> {
  const op = 'attentionDecode';
  const group = d.Hq / d.Hkv;
  // Both shader threads busy, with some slack for sequences of different lengths; chunks of at least one pass (a
  // key per lane).
  const splits = Math.min(ceilDiv(d.S, CPU_LANES), Math.max(1, opts.splits ?? ceilDiv(8, d.B * d.Hkv)));
  const chunk = roundUp(ceilDiv(d.S, splits), CPU_LANES);
  const nsplit = ceilDiv(d.S, chunk);
  const o = gpu.tensor(q.shape, q.dtype, undefined, op) as Tensor<D>;
  if (q.size === 0) return o;
  const direct = nsplit === 1;
  const rows = d.B * d.Hq * d.T;
  const parts = direct ? undefined : [gpu.tensor([rows, nsplit, d.D], 'f32', undefined, op), gpu.tensor([rows, nsplit, 2], 'f32', undefined, op)];
  const spec = { dtype: d.dtype, D: d.D, T: d.T, group, direct };
  const tiles = nsplit * d.Hkv * d.B;
  const workgroups = ticketWorkgroups(tiles);
  const scale = opts.scale ?? 1 / Math.sqrt(d.D);
  gpu.dispatch({
    op: `${op}.cpu`,
    shapes,
    pipeline: gpu.pipeline(cpuDecodeKey(spec), () => cpuDecodeWgsl(spec)),
    params: new Params().u32(d.S).u32(d.Hq).u32(d.Hkv).u32(chunk).u32(nsplit).f32(scale * LOG2E).u32(tiles).u32(workgroups).bytes(),
    bindings: [q, kCache, vCache, lengths, ...(parts ?? [o]), ticketCounter(gpu)],
    workgroups: [workgroups],
  });
  if (parts) {
    combine(gpu, d, nsplit, parts[0], parts[1], o, shapes);
    parts.forEach((t) => t.dispose());
  }
  return o;
}

/**
 * Writes x [B, T, Hkv, D] into cache [B, Smax, Hkv, D] at rows positions[b] .. positions[b] + T - 1 of each
 * sequence (positions: i32 [B], usually the lengths before this step). Rows that would fall past Smax are
 * dropped. Call once for k and once for v, then advance the lengths by T.
 */
export function attentionCacheAppend(gpu: Gpu, cache: Tensor, x: Tensor, positions: Tensor<'i32'>): void {
  const op = 'attentionCacheAppend';
  const shapes = `cache=${cache} x=${x} positions=${positions}`;
  if (cache.rank !== 4 || x.rank !== 4) throw new ShapeError('cache and x must be [B, S, Hkv, D]', { op, shapes });
  const [B, Smax, H, D] = cache.shape;
  const T = x.shape[1];
  if (x.shape[0] !== B || x.shape[2] !== H || x.shape[3] !== D || x.dtype !== cache.dtype || !isFloat(x)) {
    throw new ShapeError('x must be [B, T, Hkv, D] with the cache dtype (f32 or f16)', { op, shapes });
  }
  if (positions.dtype !== 'i32' || positions.size !== B) throw new ShapeError('positions must be i32 [B]', { op, shapes });
  if (x.size === 0) return;
  const WG = 256;
  const dtype = x.dtype;
  const pipeline = gpu.pipeline(`attention:append:${dtype}`, () => /* wgsl */ `
${enableF16([dtype])}
struct P { n: u32, t: u32, smax: u32, row: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<${dtype}>;
@group(0) @binding(2) var<storage, read> pos: array<i32>;
@group(0) @binding(3) var<storage, read_write> cache: array<${dtype}>;
${LINEAR_WORKGROUP}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let i = linear_wg(wid, nwg) * ${WG}u + li;
  if (i >= p.n) { return; }
  let e = i % p.row;
  let bt = i / p.row;
  let b = bt / p.t;
  let at = pos[b] + i32(bt % p.t);
  if (at >= 0 && at < i32(p.smax)) { cache[(b * p.smax + u32(at)) * p.row + e] = x[i]; }
}`);
  gpu.dispatch({
    op,
    shapes,
    pipeline,
    params: new Params().u32(x.size).u32(T).u32(Smax).u32(H * D).bytes(),
    bindings: [x, positions, cache],
    workgroups: gpu.grid(ceilDiv(x.size, WG)),
  });
}
