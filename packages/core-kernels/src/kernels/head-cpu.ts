import type { Gpu } from '../runtime/gpu.js';
import type { Tensor } from '../runtime/tensor.js';
import { DTYPE_BYTES } from '../runtime/dtype.js';
import { isSoftwareAdapter } from '../runtime/features.js';
import { enableF16, wgslType } from './wgsl.js';
import { SUBGROUP_UNIFORMITY_OFF, ticketWgsl } from './tickets.js';
import { CPU_LANES, cpuLanesUnfit } from './cpu-lanes.js';

/*
 * LM-head kernels for CPU adapters (lavapipe/llvmpipe), used by head.ts. There a workgroup of 8 invocations is
 * one 8-wide SIMD chunk; a storage load whose address is not a compile-time constant is a scalar loop over the
 * lanes, while subgroupShuffle is one AVX2 permute. So: one 8-lane workgroup per (token block, run of vocab
 * rows); lane l owns vocab row v0 + 8i + l and reads it as vec4 along H; the token block's hidden rows are
 * loaded once per workgroup (lane l holding every 8th vec4) and handed out with shuffles. Logits never leave
 * registers: forward folds them into per-lane online softmax stats, backward turns them into dz and adds
 * dz·W into per-lane dh accumulators, where lane l owns every 8th vec4 column of H. A dispatch runs one
 * workgroup per shader thread, taking (run of rows, token block) tiles from a counter (tickets.ts).
 */

const LANES = CPU_LANES;
/** The tile counter's loop; 'subgroup' ran faster here than 'workgroup' (tickets.ts). */
const TICKETS = ticketWgsl('subgroup');
/** Start of a running max: finite, so exp(m - M) of an empty partial is 0, not NaN from -inf - -inf. */
const LOWEST = '-3.0e38';
/** Tiles per dispatch to aim for: enough to balance the threads, each long enough to amortize its start. */
const TARGET_WORKGROUPS = 64;
/**
 * Budget in vec4 per lane for hidden slices (forward) or hidden slices plus dh accumulators (backward); it sets
 * the token block. llvmpipe keeps them on the stack either way, and each W load is shared by the block's tokens,
 * so a bigger block is faster until its unrolled shader takes too long to compile. From 16/16 to 32/64 (session
 * 7, docs/BENCHMARKS.md): T=512 H=128 V=4282 backward 260-275 -> 85-119 ms, H=512 forward 271-303 -> 133-139 ms.
 */
const FWD_BUDGET = 32;
const BWD_BUDGET = 64;
/**
 * Largest token block. 16 made H=64's backward faster still (V=151936: 64 -> 50 ms) but its shader took ~8 s to
 * compile, which every fresh machine (and CI, for the tiny test models) pays.
 */
const MAX_TOKEN_BLOCK = 8;

/** Why the CPU head kernels cannot run these operands, or undefined when they can. */
export function cpuHeadUnfit(gpu: Gpu, hidden: Tensor, weight: Tensor): string | undefined {
  if (!isSoftwareAdapter(gpu.adapter)) return 'needs a CPU (software) adapter';
  const lanes = cpuLanesUnfit(gpu);
  if (lanes) return lanes;
  const H = hidden.shape[1];
  if (H % 4) return `needs H a multiple of 4, got ${H}`;
  // Rows are read as vec4: every row must start on a vec4 inside its (storage-aligned) window.
  for (const t of [hidden, weight]) {
    const eb = DTYPE_BYTES[t.dtype];
    if ((t.byteOffset / eb) % 4 || (gpu.storageAlign / eb) % 4) return 'needs vec4-aligned hidden and weight';
  }
  return undefined;
}

export interface CpuHeadPlan {
  /** Tokens per tile and chunks of 8 vec4 along H (both compile-time). */
  tb: number;
  nck: number;
  /** Tiles along the vocabulary (each writes its own partials), and 8-row groups each walks. */
  nwg: number;
  iters: number;
  /** Token blocks; a dispatch has nwg · blocks tiles. */
  blocks: number;
}

/**
 * Tokens per tile: as many as the register budget takes, at most MAX_TOKEN_BLOCK. By H alone, not by the token
 * count: every block size is another shader to compile (seconds on llvmpipe).
 */
export function cpuTokenBlock(H: number, pass: 'fwd' | 'bwd' = 'fwd'): number {
  const nck = Math.ceil(H / 4 / LANES);
  const budget = pass === 'fwd' ? FWD_BUDGET : BWD_BUDGET / 2;
  let tb = MAX_TOKEN_BLOCK;
  while (tb > 1 && tb * nck > budget) tb /= 2;
  return tb;
}

/** Bytes of partials per token and workgroup: forward's per-lane stats, backward's dh row. */
export function cpuPartialBytes(H: number, pass: 'fwd' | 'bwd'): number {
  return pass === 'fwd' ? LANES * 16 : H * 4;
}

/** Token block and vocabulary split for tc tokens over vc rows of H; partials stay within maxBinding. */
export function cpuHeadPlan(tc: number, vc: number, H: number, pass: 'fwd' | 'bwd', maxBinding: number): CpuHeadPlan {
  const nck = Math.ceil(H / 4 / LANES);
  const tb = cpuTokenBlock(H, pass);
  const blocks = Math.ceil(tc / tb);
  const groups = Math.ceil(vc / LANES);
  const wanted = Math.max(1, Math.ceil(TARGET_WORKGROUPS / blocks));
  const fits = Math.max(1, Math.floor(maxBinding / (tc * cpuPartialBytes(H, pass))));
  const iters = Math.ceil(groups / Math.min(groups, wanted, fits));
  return { tb, nck, nwg: Math.ceil(groups / iters), iters, blocks };
}

/**
 * The kernel both passes share: bindings, the token block's hidden slices loaded into registers, then for each
 * of the workgroup's 8-row groups the logits a0..a{tb-1} of lane l's row v (valid: v < vc) and `perRow`.
 */
function kernel(
  tb: number,
  nck: number,
  ht: string,
  wt: string,
  k: { bindings: string; ticketBinding: number; init: string; perRow: string; end: string; keptLogits?: boolean },
): string {
  let load = '';
  let zero = '';
  let logits = '';
  for (let t = 0; t < tb; t++) {
    const row = `min(t0 + ${t}u, p.tc - 1u) * HQ`;
    for (let c = 0; c < nck; c++) load += `let h${t}_${c} = vec4<f32>(h[p.h_base + ${row} + min(${c * LANES}u + li, HQ - 1u)]);\n`;
    zero += `var a${t} = 0.0;\n`;
  }
  // Kept logits (the forward's, in `kept`) are read instead of recomputed: the same f32 values.
  for (let t = 0; k.keptLogits && t < tb; t++) logits += `a${t} = kept[p.l_base + min(t0 + ${t}u, p.tc - 1u) * p.ld + min(v, p.vc - 1u)];\n`;
  for (let c = 0; !k.keptLogits && c < nck; c++) {
    let dots = '';
    for (let t = 0; t < tb; t++) dots += `a${t} += dot(subgroupShuffle(h${t}_${c}, j), wv);\n`;
    // p.lanes (= 8) rather than a constant: an unrolled loop costs tens of seconds of llvmpipe compile time.
    logits += `for (var j = 0u; j < min(p.lanes, HQ - ${c * LANES}u); j++) {
      let wv = vec4<f32>(w[wrow + ${c * LANES}u + j]);
      ${dots}}\n`;
  }
  return /* wgsl */ `enable subgroups;
${SUBGROUP_UNIFORMITY_OFF}
${enableF16([ht, wt])}
struct P { vc: u32, iters: u32, tc: u32, nwg: u32, h_base: u32, w_base: u32, y_base: u32, v0: u32, scale: f32,
           lanes: u32, hq: u32, tiles: u32, workgroups: u32, l_base: u32, ld: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> h: array<vec4<${wgslType(ht)}>>;
@group(0) @binding(2) var<storage, read> w: array<vec4<${wgslType(wt)}>>;
@group(0) @binding(3) var<storage, read> targets: array<i32>;
${k.bindings}
${TICKETS.decl(k.ticketBinding)}
@compute @workgroup_size(${LANES})
fn main(@builtin(local_invocation_index) li: u32) {
  ${TICKETS.open('p.tiles', 'p.workgroups')}
  let wid = vec2<u32>(tile % p.nwg, tile / p.nwg);
  // H / 4 at run time (one shader per count of 8-vec4 chunks, nck = ${nck}, not per H).
  let HQ = p.hq;
  let t0 = wid.y * ${tb}u;
  ${load}
  ${k.init}
  let r0 = wid.x * p.iters * ${LANES}u;
  for (var it = 0u; it < p.iters; it++) {
    let v = r0 + it * ${LANES}u + li;
    let valid = v < p.vc;
    let wrow = p.w_base + min(v, p.vc - 1u) * HQ;
    ${zero}
    ${logits}
    ${k.perRow}
  }
  ${k.end}
  ${TICKETS.close}
}`;
}

/**
 * Forward: per (token, workgroup, lane) the partial (max, Σe^(z-max), Σe^(z-max)·(z-max), z[target] or 0) of
 * the lane's rows, as vec4 in part[(token * nwg + workgroup) * 8 + lane]. h_base, w_base are vec4 indices. With
 * `keep`, also each raw logit h·w (before 1/τ) into kept[l_base + token * ld + row].
 */
export function cpuStatsWgsl(tb: number, nck: number, ht: string, wt: string, keep = false): string {
  let init = '';
  let update = '';
  let merge = '';
  for (let t = 0; t < tb; t++) {
    init += `let y${t} = targets[p.y_base + min(t0 + ${t}u, p.tc - 1u)] - i32(p.v0);
    var m${t} = ${LOWEST}; var s${t} = 0.0; var e${t} = 0.0; var zy${t} = 0.0;\n`;
    // Online merge of one logit; an out-of-range row adds nothing (its x is 0, its z the lowest value).
    // One exp: of m - max and z - max one is 0, the other -|z - m|.
    update += `{ let z = select(${LOWEST}, a${t} * p.scale, valid);
      let mn = max(m${t}, z);
      let q = exp(-abs(z - m${t}));
      let up = z > m${t};
      let a = select(1.0, q, up);
      let x = select(0.0, select(q, 1.0, up), valid);
      e${t} = a * (e${t} + s${t} * (m${t} - mn)) + x * (z - mn);
      s${t} = s${t} * a + x;
      m${t} = mn;
      zy${t} = select(zy${t}, z, valid && i32(v) == y${t}); }\n`;
    if (keep) update += `if (valid && t0 + ${t}u < p.tc) { kept[p.l_base + (t0 + ${t}u) * p.ld + v] = a${t}; }\n`;
    // Per lane: subgroup reductions here would cost more compile time than the merge kernel's extra reads.
    merge += `if (t0 + ${t}u < p.tc) { part[((t0 + ${t}u) * p.nwg + wid.x) * ${LANES}u + li] = vec4<f32>(m${t}, s${t}, e${t}, zy${t}); }\n`;
  }
  let bindings = '@group(0) @binding(4) var<storage, read_write> part: array<vec4<f32>>;';
  if (keep) bindings += '\n@group(0) @binding(5) var<storage, read_write> kept: array<f32>;';
  return kernel(tb, nck, ht, wt, { bindings, ticketBinding: keep ? 6 : 5, init, perRow: update, end: merge });
}

/**
 * WGSL: folds a chunk's (m, s, t) of token i into state [tc, 4] (max, Σe, Σe·(z-max), target logit); on the first
 * chunk it writes them along with zy and returns.
 */
export const FOLD_STATE = /* wgsl */ `if (p.first != 0u) {
    state[4u * i] = m;
    state[4u * i + 1u] = s;
    state[4u * i + 2u] = t;
    state[4u * i + 3u] = zy;
    return;
  }
  let m1 = state[4u * i];
  let s1 = state[4u * i + 1u];
  let t1 = state[4u * i + 2u];
  let mm = max(m1, m);
  let a1 = exp(m1 - mm);
  let a2 = exp(m - mm);
  state[4u * i] = mm;
  state[4u * i + 1u] = s1 * a1 + s * a2;
  state[4u * i + 2u] = a1 * (t1 + s1 * (m1 - mm)) + a2 * (t + s * (m - mm));`;

/** Folds the nwg partials (one per workgroup and lane) of each token into the running state [tc, 4] (as head.ts's stats kernel keeps it). */
export const CPU_MERGE_WGSL = /* wgsl */ `
struct P { tc: u32, nwg: u32, first: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> part: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> state: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x;
  if (i >= p.tc) { return; }
  var m = ${LOWEST};
  for (var j = 0u; j < p.nwg; j++) { m = max(m, part[i * p.nwg + j].x); }
  var s = 0.0;
  var t = 0.0;
  var zy = 0.0;
  for (var j = 0u; j < p.nwg; j++) {
    let q = part[i * p.nwg + j];
    let a = exp(q.x - m);
    s += q.y * a;
    t += a * (q.z + q.y * (q.x - m));
    zy += q.w;
  }
  ${FOLD_STATE}
  state[4u * i + 3u] += zy;
}`;

/**
 * Backward: recomputes each row's logits (or, with `kept`, reads the forward's), turns them into dz = gLP·(onehot - p) - gEnt·p·(log p + H) with
 * coef[token] = (gLP, gEnt, lse, H), and adds dz·W into dpart[workgroup, token, :] (unscaled by 1/τ).
 */
export function cpuDhWgsl(tb: number, nck: number, ht: string, wt: string, kept = false): string {
  let bindings = `@group(0) @binding(4) var<storage, read> coef: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> dpart: array<vec4<f32>>;`;
  if (kept) bindings += '\n@group(0) @binding(6) var<storage, read> kept: array<f32>;';
  let init = '';
  let dz = '';
  let wload = '';
  let acc = '';
  let store = '';
  for (let c = 0; c < nck; c++) wload += `let w${c} = vec4<f32>(w[p.w_base + row * HQ + min(${c * LANES}u + li, HQ - 1u)]);\n`;
  for (let t = 0; t < tb; t++) {
    // Tokens past the end of the chunk get zero coefficients, hence zero dz.
    init += `let y${t} = targets[p.y_base + min(t0 + ${t}u, p.tc - 1u)] - i32(p.v0);
    let c${t} = select(vec4<f32>(), coef[min(t0 + ${t}u, p.tc - 1u)], t0 + ${t}u < p.tc);\n`;
    dz += `var d${t} = 0.0;
    { let lp = a${t} * p.scale - c${t}.z;
      let pr = exp(lp);
      d${t} = select(0.0, -c${t}.x * pr - c${t}.y * pr * (lp + c${t}.w) + select(0.0, c${t}.x, i32(v) == y${t}), valid); }\n`;
    acc += `{ let g = vec4<f32>(subgroupShuffle(d${t}, j));\n`;
    for (let c = 0; c < nck; c++) {
      init += `var acc${t}_${c} = vec4<f32>();\n`;
      acc += `acc${t}_${c} = fma(g, w${c}, acc${t}_${c});\n`;
      store += `if (t0 + ${t}u < p.tc && ${c * LANES}u + li < HQ) { dpart[(wid.x * p.tc + t0 + ${t}u) * HQ + ${c * LANES}u + li] = acc${t}_${c}; }\n`;
    }
    acc += '}\n';
  }
  // Row r0 + 8·it + j's dz from lane j, times that row of W spread over the lanes' columns.
  const perRow = `${dz}
    for (var j = 0u; j < p.lanes; j++) {
      let row = min(r0 + it * ${LANES}u + j, p.vc - 1u);
      ${wload}
      ${acc}
    }`;
  return kernel(tb, nck, ht, wt, { bindings, ticketBinding: kept ? 7 : 6, init, perRow, end: store, keptLogits: kept });
}
