/**
 * Attention backward (FlashAttention-2 without atomics; layouts and masking as in attention.ts): Dvec =
 * rowsum(dO * O), then a dQ pass over query blocks and a dK/dV pass over key blocks, each recomputing
 * P = exp(S - lse) tile by tile, so each workgroup owns the rows it writes. The dK/dV workgroup loops over every
 * query head of its KV group and sums them.
 */
import { batchItems, batchRuns, copyBatchItems } from './attention-batches.js';
import type { Gpu } from '../runtime/gpu.js';
import { Params } from '../runtime/params.js';
import { ShapeError } from '../runtime/errors.js';
import type { Tensor } from '../runtime/tensor.js';
import { LINEAR_WORKGROUP, enableF16 } from './wgsl.js';
import type { SubgroupMatrixConfig } from '../runtime/features.js';
import { sgmAttentionBwdBytes, sgmAttentionBwdKey, sgmAttentionBwdUnfit, sgmDkvWgsl, sgmDqWgsl, type SgmAttentionBwdTile } from './attention-sgm-bwd.js';
import { MHA_PARAMS, type Dims, type FloatDType } from './attention-params.js';
import { CPU_LANES } from './cpu-lanes.js';
import { cpuAttentionKey, cpuDkvWgsl, cpuDqWgsl } from './attention-cpu.js';
import type { AttentionOptions, AttentionTile } from './attention.js';
import {
  LOG2E, XYZW, ceilDiv, range, checkQkv, checkSame, layout, bindRows, loadFn, storeFn, tileLoad, lenPrologue,
  lensBinding, mhaMain, mhaDispatch, lensOrStandIn, vecBytes, pickTile, fitTile, mhaKey, maskExpr, cpuSpec, sgmPlan,
  type Layout, type MhaSpec, type SgmFit,
} from './attention-common.js';

const BWD_TILES: AttentionTile[] = [
  { bq: 32, bk: 32 },
  { bq: 32, bk: 16 },
  { bq: 16, bk: 16 },
  { bq: 16, bk: 8 },
  { bq: 8, bk: 8 },
  { bq: 8, bk: 4 },
];

function dqBytes(t: AttentionTile, D: number, dtype: FloatDType): number {
  const l = layout(D, dtype, t.bk / 4);
  return vecBytes(dtype) * (2 * t.bq + 2 * t.bk) * l.RS + 4 * t.bq * t.bk + 8 * t.bq + 64;
}

function dkvBytes(t: AttentionTile, D: number, dtype: FloatDType): number {
  const l = layout(D, dtype, t.bq / 4);
  return vecBytes(dtype) * (2 * t.bq + 2 * t.bk) * l.RS + 8 * t.bq * t.bk + 8 * t.bq + 64;
}

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
  const runs = batchRuns(gpu, op, shapes, [q, k, v, o, dO]);
  const dq = gpu.tensor(q.shape, q.dtype, undefined, op) as Tensor<D>;
  const dk = gpu.tensor(k.shape, k.dtype, undefined, op) as Tensor<D>;
  const dv = gpu.tensor(v.shape, v.dtype, undefined, op) as Tensor<D>;
  if (runs) {
    for (const { b0, n } of runs) {
      gpu.scope(() => {
        const [qr, kr, vr, or, dOr] = [q, k, v, o, dO].map((t) => batchItems(gpu, t, b0, n).t);
        const lr = batchItems(gpu, lse, b0, n).t;
        const part = attentionBackward(gpu, qr, kr, vr, or, lr, dOr, { ...opts, lengths: opts.lengths && batchItems(gpu, opts.lengths, b0, n).t });
        copyBatchItems(gpu, part.dq, dq, b0);
        copyBatchItems(gpu, part.dk, dk, b0);
        copyBatchItems(gpu, part.dv, dv, b0);
      });
    }
    return { dq, dk, dv };
  }
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
