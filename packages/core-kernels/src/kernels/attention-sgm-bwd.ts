/**
 * Flash attention backward on subgroup matrices (tensor cores): f16 q, k, v, o, dO, f32 accumulation; gradients
 * in f16. Same contract, layouts and masking as the scalar kernels in attention.ts, from the forward's lse and
 * dvec = rowsum(dO ∘ O) (attention.ts computes it first). Two kernels, FlashAttention-2's split:
 *
 * dq: a workgroup owns BQ = nsub·cfg.M query rows of one head, each subgroup cfg.M of them, with Q and dO as left
 *   fragments in registers. Per key tile of bt keys, K and V staged (rows, zero past the length):
 *     S = Q·Kᵀ and dP = dO·Vᵀ into scratches; each lane turns its scores into dS = P ∘ (dP − dvec), P = exp(S·scale
 *     − lse), masked; dQ += dS·K in result fragments. dq = scale·dQ.
 * dkv: a workgroup owns nsub·cfg.M keys of one KV head, each subgroup cfg.M, with K and V as left fragments. Per
 *   query head of the group and query tile of bt rows, Q and dO staged with their lse and dvec:
 *     Sᵀ = K·Qᵀ and dPᵀ = V·dOᵀ; Pᵀ and dSᵀ per lane; dV += Pᵀ·dO, dK += dSᵀ·Q in result fragments. dk = scale·dK.
 * P and dS go to the tensor cores in f16, as in FlashAttention. Every workgroup variable spans a multiple of 16
 * bytes (see attention-sgm.ts). Not the default: a candidate, correct under emulation, to be timed on a GPU.
 */
import type { SubgroupMatrixConfig } from '../runtime/features.js';
import { DIRECTIVE, EMULATED, NATIVE, emulation } from './matmul-sgm.js';
import { stageRowsWgsl } from './attention-sgm.js';

export interface SgmAttentionBwdTile {
  /** Subgroups per workgroup: query rows (dq) or keys (dkv) per workgroup = nsub·cfg.M. */
  nsub: number;
  /** Keys (dq) or query rows (dkv) per inner tile: a multiple of cfg.N and cfg.K. */
  bt: number;
}

export const SGM_ATTENTION_BWD_TILE: SgmAttentionBwdTile = { nsub: 4, bt: 32 };

const PAD = 8;

export const sgmAttentionBwdKey = (t: SgmAttentionBwdTile): string => `s${t.nsub}.t${t.bt}`;

/** Why this tile / head dim cannot run on the config and subgroup size, or undefined. */
export function sgmAttentionBwdUnfit(t: SgmAttentionBwdTile, cfg: SubgroupMatrixConfig, D: number, sg: number): string | undefined {
  if (D % cfg.K || D % cfg.N) return `head dim ${D} must be a multiple of ${cfg.K} and ${cfg.N}`;
  if (t.bt % cfg.N || t.bt % cfg.K || t.bt % 4) return `bt ${t.bt} must be a multiple of ${cfg.N}, ${cfg.K} and 4`;
  if (sg % cfg.M || (t.bt * cfg.M) % sg || (cfg.N * cfg.M) % sg) return `subgroup size ${sg} does not divide the row blocks`;
  return undefined;
}

/** f16 elements of the staging buffer: the workgroup's own rows (one operand at a time), or two inner tiles. */
const stageSize = (t: SgmAttentionBwdTile, cfg: SubgroupMatrixConfig, D: number) => Math.max(t.nsub * cfg.M, 2 * t.bt) * (D + PAD);

/** Workgroup memory in bytes of either kernel (dkv's, the larger). */
export function sgmAttentionBwdBytes(t: SgmAttentionBwdTile, cfg: SubgroupMatrixConfig, D: number): number {
  const sc = t.nsub * cfg.M * t.bt;
  return 2 * stageSize(t, cfg, D) + 2 * 4 * sc + 2 * 2 * sc + 4 * 2 * t.bt + 16;
}

interface Shape {
  M: number;
  N: number;
  K: number;
  /** Rows per workgroup, inner tile, row stride in the staging buffer, lanes per row, columns per lane. */
  rows: number;
  bt: number;
  RS: number;
  LPR: number;
  CPL: number;
  OPL: number;
  threads: number;
  scSize: number;
  kvSize: number;
}

function shapeOf(t: SgmAttentionBwdTile, cfg: SubgroupMatrixConfig, D: number, sg: number): Shape {
  const rows = t.nsub * cfg.M;
  const LPR = sg / cfg.M;
  return {
    M: cfg.M,
    N: cfg.N,
    K: cfg.K,
    rows,
    bt: t.bt,
    RS: D + PAD,
    LPR,
    CPL: t.bt / LPR,
    OPL: cfg.N / LPR,
    threads: rows * LPR,
    scSize: rows * t.bt,
    kvSize: stageSize(t, cfg, D),
  };
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i);

/** Bindings, workgroup memory and emulation shared by both kernels; `outs` are the f16 gradient bindings from 6. */
function header(params: string, s: Shape, cfg: SubgroupMatrixConfig, outs: string[], emulate: boolean, leftScratch: string[]): string {
  const enables = `enable f16;\nenable subgroups;\n${emulate ? '' : `enable chromium_experimental_subgroup_matrix;\n${DIRECTIVE}`}`;
  return `${enables}
${params}
@group(0) @binding(1) var<storage, read> q: array<vec4<f16>>;
@group(0) @binding(2) var<storage, read> k: array<vec4<f16>>;
@group(0) @binding(3) var<storage, read> v: array<vec4<f16>>;
@group(0) @binding(4) var<storage, read> dout: array<vec4<f16>>;
@group(0) @binding(5) var<storage, read> lse: array<f32>;
@group(0) @binding(6) var<storage, read> dvec: array<f32>;
${outs.map((o, i) => `@group(0) @binding(${7 + i}) var<storage, read_write> ${o}: array<f16>;`).join('\n')}
@group(0) @binding(${7 + outs.length}) var<storage, read> lens: array<i32>;
// Staged rows: the workgroup's own (one operand at a time, into registers), then each inner tile's two operands.
var<workgroup> kv: array<f16, ${s.kvSize}>;
// Per subgroup: the two products of each tile (M x bt f32; sc is also the output scratch), their f16 results.
var<workgroup> sc: array<f32, ${s.scSize}>;
var<workgroup> sd: array<f32, ${s.scSize}>;
${leftScratch.map((a) => `var<workgroup> ${a}: array<f16, ${s.scSize}>;`).join('\n')}
// The key count (0). Arrays of 16-byte multiples only (attention-sgm.ts).
var<workgroup> wg_u: array<u32, 4>;
${
  emulate
    ? emulation(
        cfg,
        [
          { kind: 'l', arr: 'kv', size: s.kvSize },
          { kind: 'r', arr: 'kv', size: s.kvSize },
          ...leftScratch.map((arr) => ({ kind: 'l' as const, arr, size: s.scSize })),
        ],
        [
          { arr: 'sc', size: s.scSize },
          { arr: 'sd', size: s.scSize },
        ],
      )
    : ''
}`;
}

/** The subgroup's rows of a staged operand as left fragments along D, named `${name}0..`. */
const leftFrags = (em: typeof NATIVE, left: string, s: Shape, D: number, name: string) =>
  range(D / s.K)
    .map((d) => `  let ${name}${d} = ${em.load(left, 'kv', `sgid * ${s.M * s.RS}u + ${d * s.K}u`, false, s.RS)};`)
    .join('\n');

/**
 * One product per N-column block of the inner tile: rows of the subgroup's left fragments `lf` times the staged
 * operand at `off` (rows of D) transposed, into `dst` (M x bt, stride bt).
 */
function rowsTimesT(em: typeof NATIVE, s: Shape, D: number, lf: string, off: number, dst: string, right: string, result: string): string {
  let code = '';
  for (let n = 0; n < s.bt / s.N; n++) {
    code += `{ var acc = ${em.zero(result)};\n`;
    for (let d = 0; d < D / s.K; d++) code += `acc = ${em.mma(`${lf}${d}`, em.load(right, 'kv', `${off + n * s.N * s.RS + d * s.K}u`, true, s.RS), 'acc')};\n`;
    code += `${em.store(dst, `sbase + ${n * s.N}u`, 'acc', s.bt)}; }\n`;
  }
  return code;
}

/**
 * The tile's two products, `a`·(staged rows at 0)ᵀ into sc and `b`·(staged rows at `off`)ᵀ into sd, a barrier, and
 * the head of the per-lane loop over this lane's columns (x: the element in sc, sd and the f16 scratches).
 */
function products(em: typeof NATIVE, s: Shape, D: number, a: string, b: string, off: number, right: string, result: string): string {
  return `${rowsTimesT(em, s, D, a, 0, 'sc', right, result)}
    ${rowsTimesT(em, s, D, b, off, 'sd', right, result)}
    workgroupBarrier();
    for (var c = 0u; c < ${s.CPL}u; c++) {
      let x = sbase + rr * ${s.bt}u + part * ${s.CPL}u + c;`;
}

/** acc_f += (the subgroup's M x bt f16 `src`) · (the staged operand at `off`, bt rows of D), for each of D/N. */
function tileTimesRows(em: typeof NATIVE, s: Shape, D: number, src: string, off: number, acc: string, left: string, right: string): string {
  let code = '';
  for (let kk = 0; kk < s.bt / s.K; kk++) {
    code += `{ let pf = ${em.load(left, src, `sbase + ${kk * s.K}u`, false, s.bt)};\n`;
    for (let f = 0; f < D / s.N; f++) code += `${acc}${f} = ${em.mma('pf', em.load(right, 'kv', `${off + kk * s.K * s.RS + f * s.N}u`, false, s.RS), `${acc}${f}`)};\n`;
    code += '}\n';
  }
  return code;
}

/** Result fragments `acc0..` through the scratch into `out` at row base `obase` (when `ok`), times `scale`. */
function storeRows(em: typeof NATIVE, s: Shape, D: number, acc: string, out: string, ok: string, scale: string): string {
  return range(D / s.N)
    .map(
      (f) => `
  ${em.store('sc', 'sbase', `${acc}${f}`, s.N)};
  workgroupBarrier();
  if (${ok}) {
    for (var c = part * ${s.OPL}u; c < (part + 1u) * ${s.OPL}u; c++) { ${out}[obase + ${f * s.N}u + c] = f16(sc[sbase + rr * ${s.N}u + c]${scale}); }
  }
  workgroupBarrier();`,
    )
    .join('\n');
}

const prologue = (s: Shape, sg: number) => `
  let sgid = li / ${sg}u;
  let lane = li % ${sg}u;
  let b = wid.z;
  let rr = lane / ${s.LPR}u;
  let part = lane % ${s.LPR}u;
  let row = sgid * ${s.M}u + rr;
  let sbase = sgid * ${s.M * s.bt}u;
  if (li == 0u) {
    var n = p.s;
    if (p.has_len != 0u) { n = min(u32(max(lens[b], 0)), p.s); }
    wg_u[0] = n;
  }
  let len = workgroupUniformLoad(&wg_u[0]);`;

/** What both kernels' generators use: the shape, the matrix operations and types, and row staging. */
function parts(t: SgmAttentionBwdTile, cfg: SubgroupMatrixConfig, D: number, sg: number, emulate: boolean) {
  const s = shapeOf(t, cfg, D, sg);
  return {
    s,
    em: emulate ? EMULATED : NATIVE,
    left: `subgroup_matrix_left<f16, ${s.K}, ${s.M}>`,
    right: `subgroup_matrix_right<f16, ${s.N}, ${s.K}>`,
    result: `subgroup_matrix_result<f32, ${s.N}, ${s.M}>`,
    stage: (src: string, rows: number, dst: number, ok: string, base: string) => stageRowsWgsl({ src, rows, dst, ok, base, D, stride: s.RS, threads: s.threads }),
  };
}

/** WGSL of the dq kernel. Bindings: q, k, v, dO, lse, dvec, dq, lens (as the scalar dq kernel's). */
export function sgmDqWgsl(params: string, t: SgmAttentionBwdTile, cfg: SubgroupMatrixConfig, D: number, sg: number, emulate = false): string {
  const { s, em, left, right, result, stage } = parts(t, cfg, D, sg, emulate);
  const vOff = s.bt * s.RS;
  const kvBase = '((b * p.s + k0 + r) * p.hkv + g) * p.d';
  const qBase = (src: string) => stage(src, s.rows, 0, 'q0 + r < p.t', '((b * p.t + q0 + r) * p.hq + h) * p.d');
  return /* wgsl */ `${header(params, s, cfg, ['dq'], emulate, ['pb'])}

@compute @workgroup_size(${s.threads})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  ${prologue(s, sg)}
  let h = wid.y;
  let g = h / (p.hq / p.hkv);
  let q0 = wid.x * ${s.rows}u;
  let i = q0 + row;
  let obase = ((b * p.t + i) * p.hq + h) * p.d;
  // Rows past T or the length, or before any key (causal), have zero gradient: the forward wrote zeros there.
  let live = i < p.t && i32(i) + p.off < i32(len);
  var lse2 = 0.0;
  var dl = 0.0;
  if (i < p.t) {
    lse2 = lse[(b * p.hq + h) * p.t + i] * ${Math.LOG2E};
    dl = dvec[(b * p.hq + h) * p.t + i];
  }
  var kend = len;
  if (p.causal != 0u) { kend = min(kend, u32(max(i32(q0 + ${s.rows}u) + p.off, 0))); }
  let ntiles = (kend + ${s.bt - 1}u) / ${s.bt}u;

  ${qBase('q')}
  workgroupBarrier();
${leftFrags(em, left, s, D, 'qf')}
  workgroupBarrier();
  ${qBase('dout')}
  workgroupBarrier();
${leftFrags(em, left, s, D, 'of')}
${range(D / s.N)
  .map((f) => `  var dqf${f} = ${em.zero(result)};`)
  .join('\n')}

  for (var kt = 0u; kt < ntiles; kt++) {
    let k0 = kt * ${s.bt}u;
    workgroupBarrier();
    ${stage('k', s.bt, 0, 'k0 + r < len', kvBase)}
    ${stage('v', s.bt, vOff, 'k0 + r < len', kvBase)}
    workgroupBarrier();
    ${products(em, s, D, 'qf', 'of', vOff, right, result)}
      let j = k0 + part * ${s.CPL}u + c;
      let ok = live && j < len && (p.causal == 0u || i32(j) <= i32(i) + p.off);
      let pv = select(0.0, exp2(sc[x] * p.scale2 - lse2), ok);
      pb[x] = f16(pv * (sd[x] - dl));
    }
    workgroupBarrier();
    ${tileTimesRows(em, s, D, 'pb', 0, 'dqf', left, right)}
  }
  workgroupBarrier();
${storeRows(em, s, D, 'dqf', 'dq', 'i < p.t', ' * p.scale')}
}`;
}

/** WGSL of the dkv kernel. Bindings: q, k, v, dO, lse, dvec, dk, dv, lens (as the scalar dkv kernel's). */
export function sgmDkvWgsl(params: string, t: SgmAttentionBwdTile, cfg: SubgroupMatrixConfig, D: number, sg: number, emulate = false): string {
  const { s, em, left, right, result, stage } = parts(t, cfg, D, sg, emulate);
  const dOff = s.bt * s.RS;
  const ownBase = '((b * p.s + j0 + r) * p.hkv + g) * p.d';
  const tileBase = '((b * p.t + q0 + r) * p.hq + h) * p.d';
  return /* wgsl */ `${header(params, s, cfg, ['dk', 'dv'], emulate, ['pp', 'pb'])}
// The query tile's lse (log2 units) and dvec.
var<workgroup> qrow: array<f32, ${2 * s.bt}>;

@compute @workgroup_size(${s.threads})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  ${prologue(s, sg)}
  let g = wid.y;
  let j0 = wid.x * ${s.rows}u;
  let j = j0 + row;
  let obase = ((b * p.s + j) * p.hkv + g) * p.d;
  let gsize = p.hq / p.hkv;
  // Causal: the block's first key is seen from query row j0 - off on.
  var qstart = 0u;
  if (p.causal != 0u) { qstart = u32(max(i32(j0) - p.off, 0)) / ${s.bt}u * ${s.bt}u; }

  ${stage('k', s.rows, 0, 'j0 + r < len', ownBase)}
  workgroupBarrier();
${leftFrags(em, left, s, D, 'kf')}
  workgroupBarrier();
  ${stage('v', s.rows, 0, 'j0 + r < len', ownBase)}
  workgroupBarrier();
${leftFrags(em, left, s, D, 'vf')}
${range(D / s.N)
  .map((f) => `  var dkf${f} = ${em.zero(result)};\n  var dvf${f} = ${em.zero(result)};`)
  .join('\n')}

  for (var hh = 0u; hh < gsize; hh++) {
    let h = g * gsize + hh;
    for (var q0 = qstart; q0 < p.t; q0 += ${s.bt}u) {
      workgroupBarrier();
      ${stage('q', s.bt, 0, 'q0 + r < p.t', tileBase)}
      ${stage('dout', s.bt, dOff, 'q0 + r < p.t', tileBase)}
      for (var e = li; e < ${s.bt}u; e += ${s.threads}u) {
        var l2 = 0.0;
        var dl = 0.0;
        if (q0 + e < p.t) {
          l2 = lse[(b * p.hq + h) * p.t + q0 + e] * ${Math.LOG2E};
          dl = dvec[(b * p.hq + h) * p.t + q0 + e];
        }
        qrow[e] = l2;
        qrow[${s.bt}u + e] = dl;
      }
      workgroupBarrier();
      ${products(em, s, D, 'kf', 'vf', dOff, right, result)}
        let qc = part * ${s.CPL}u + c;
        let i = q0 + qc;
        // Query rows past T or the length have zero output in the forward, so no gradient flows from them.
        let ok = i < p.t && i32(i) + p.off < i32(len) && j < len && (p.causal == 0u || i32(j) <= i32(i) + p.off);
        let pv = select(0.0, exp2(sc[x] * p.scale2 - qrow[qc]), ok);
        pp[x] = f16(pv);
        pb[x] = f16(pv * (sd[x] - qrow[${s.bt}u + qc]));
      }
      workgroupBarrier();
      ${tileTimesRows(em, s, D, 'pp', dOff, 'dvf', left, right)}
      ${tileTimesRows(em, s, D, 'pb', 0, 'dkf', left, right)}
    }
  }
  workgroupBarrier();
${storeRows(em, s, D, 'dkf', 'dk', 'j < p.s', ' * p.scale')}
${storeRows(em, s, D, 'dvf', 'dv', 'j < p.s', '')}
}`;
}
