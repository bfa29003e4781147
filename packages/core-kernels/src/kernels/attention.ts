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
 * Backward (attention-backward.ts; FlashAttention-2 without atomics): Dvec = rowsum(dO * O); then a dQ pass over
 * query blocks and a dK/dV pass over key blocks, each recomputing P = exp(S - lse) tile by tile, so each
 * workgroup owns the rows it writes. The dK/dV workgroup loops over every query head of its KV group and sums them.
 * Decode (attention-decode.ts; flash-decoding): the keys of the cache are split into chunks across workgroups;
 * each workgroup runs all Hq/Hkv * T query rows of one KV head over its chunk (so a K/V tile is read once per
 * group) and writes a partial (max, sum, unnormalized output); a second pass combines the partials.
 * What the three share is in attention-common.ts. No subgroup operations are used: reductions are a small part of
 * the work and go through workgroup memory, which works on every adapter.
 */
import { batchItems, batchRuns, copyBatchItems } from './attention-batches.js';
import type { Gpu } from '../runtime/gpu.js';
import { ShapeError } from '../runtime/errors.js';
import type { Tensor } from '../runtime/tensor.js';
import { enableF16 } from './wgsl.js';
import type { SubgroupMatrixConfig } from '../runtime/features.js';
import { sgmAttentionBytes, sgmAttentionKey, sgmAttentionUnfit, sgmAttentionWgsl, type SgmAttentionTile } from './attention-sgm.js';
import type { SgmAttentionBwdTile } from './attention-sgm-bwd.js';
import { MHA_PARAMS, mhaParams, type Dims, type FloatDType } from './attention-params.js';
import { CPU_LANES } from './cpu-lanes.js';
import {
  NEG, XYZW, ceilDiv, range, checkQkv, layout, bindRows, loadFn, storeFn, tileLoad, lenPrologue,
  lensBinding, mhaMain, mhaDispatch, lensOrStandIn, vecBytes, pickTile, fitTile, mhaKey, maskExpr, cpuSpec,
  attentionPath, sgmPlan, type MhaSpec, type SgmFit,
} from './attention-common.js';
import {
  cpuAttentionKey,
  cpuForwardWgsl,
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

function fwdBytes(t: AttentionTile, D: number, dtype: FloatDType): number {
  const l = layout(D, dtype, t.bk / 4);
  return vecBytes(dtype) * (t.bq + 2 * t.bk) * l.RS + 4 * t.bq * t.bk + 12 * t.bq + 64;
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
  const runs = batchRuns(gpu, op, shapes, [q, k, v]);
  const o = gpu.tensor(q.shape, q.dtype, undefined, op) as Tensor<D>;
  const lse = gpu.tensor([d.B, d.Hq, d.T], 'f32', undefined, op);
  if (runs) {
    for (const { b0, n } of runs) {
      gpu.scope(() => {
        const [qr, kr, vr] = [q, k, v].map((t) => batchItems(gpu, t, b0, n).t);
        const part = attention(gpu, qr, kr, vr, { ...opts, lengths: opts.lengths && batchItems(gpu, opts.lengths, b0, n).t });
        copyBatchItems(gpu, part.o, o, b0);
        copyBatchItems(gpu, part.lse, lse, b0);
      });
    }
    return { o, lse };
  }
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

/** The kernel `attention` runs by default ('auto') for a head dim and dtype on this device. */
export function attentionForwardPath(gpu: Gpu, D: number, dtype: FloatDType): 'subgroup-matrix' | 'cpu-tiled' | 'scalar' {
  return sgmPlan(gpu, D, dtype, forwardFit(SGM_ATTENTION_TILE)).why ? attentionPath(gpu, D) : 'subgroup-matrix';
}

const forwardFit = (t: SgmAttentionTile): SgmFit => ({ unfit: (c, D, sg) => sgmAttentionUnfit(t, c, D, sg), bytes: (c, D) => sgmAttentionBytes(t, c, D) });

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
