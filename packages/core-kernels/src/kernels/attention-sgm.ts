/**
 * Flash attention forward on subgroup matrices (tensor cores), f16 q/k/v, f32 accumulation and softmax.
 *
 * Same contract, layouts and masking as the scalar kernel in attention.ts. One workgroup runs BQ = nsub·cfg.M
 * query rows of one head; each subgroup owns cfg.M rows end to end (FlashAttention-2 split: no cross-subgroup
 * reductions). Per key tile of BK keys, staged in workgroup memory with V:
 *   S = Q·Kᵀ with Q fragments held in registers and K read as right fragments (tile.kLayout);
 *   the subgroup writes S to a scratch; each row is softmaxed by sg/cfg.M lanes (subgroup shuffles);
 *   P (f16) = exp2(S·scale·log2e − m) goes to workgroup memory and O += P·V on the tensor cores.
 * Every workgroup variable spans a multiple of 16 bytes: on the H200 two lone u32s shifted the matrix loads and
 * stores of the arrays by 4 bytes (session 14), and every variant below was wrong until then.
 * Three ways to keep O (tile.accum):
 * - 'registers' (default): each tile's P·V goes into fresh result fragments that are stored to the scratch, and
 *   each lane adds its row's columns into O held in registers, rescaled there by the exact online-softmax factor.
 *   It loads no result-type matrix.
 * - 'fragments': O stays in result fragments across tiles. Rescaling them (they are opaque) is a round trip
 *   through the scratch that loads a result-type matrix back, so the running max only moves when some row's tile
 *   max exceeds it by more than TAU (log2 units; P then stays below 2^TAU, safe in f16).
 * - 'two-pass': a first pass over the key tiles computes only S = Q·Kᵀ and each row's max and sum of exp; the
 *   second computes S again and P = exp(S − max) / sum, final, so O accumulates in result fragments with no
 *   rescaling at all. 1.5x the Q·Kᵀ products, but no per-tile round trip of O through the scratch.
 */
import type { SubgroupMatrixConfig } from '../runtime/features.js';
import { DIRECTIVE, EMULATED, NATIVE, emulation } from './matmul-sgm.js';

export interface SgmAttentionTile {
  /** Subgroups per workgroup (query rows = nsub·cfg.M). */
  nsub: number;
  /** Keys per tile (multiple of cfg.N and cfg.K; with K in rows 2·bk ≥ query rows, since Q is staged in the K/V buffer). */
  bk: number;
  /** Where O accumulates across key tiles, or two passes (see the file comment); default 'registers'. */
  accum?: 'registers' | 'fragments' | 'two-pass';
  /**
   * How the K tile sits in workgroup memory. 'rows' (when omitted): one key per row, read as column-major right
   * fragments. 'transposed' (SGM_ATTENTION_TILE's): one head-dim element per row, staged transposed and read as
   * row-major right fragments, as the matmul kernel reads B. Both correct on the H200 (session 14).
   */
  kLayout?: 'rows' | 'transposed';
  /**
   * Where the K and V fragments of a key tile come from. 'workgroup' (when omitted): staged in workgroup memory
   * by all lanes, then read as fragments. 'storage': read as fragments straight from the k and v bindings, with no
   * staging and no barrier for it; only a key tile that runs past the sequence's length is staged (zero-filled,
   * K in rows, then V in the same buffer). Less workgroup memory, so larger key tiles fit.
   */
  kvFrom?: 'workgroup' | 'storage';
}

const PAD = 8;
/** Largest rise of a row's scores over its running max before O is rescaled (log2 units: P ≤ 256). */
const TAU = 8;
const NEG = '-1.0e30';

export const sgmAttentionKey = (t: SgmAttentionTile): string =>
  `s${t.nsub}.k${t.bk}${t.accum === 'fragments' ? '.frag' : t.accum === 'two-pass' ? '.2p' : ''}${t.kLayout === 'transposed' ? '.kt' : ''}${t.kvFrom === 'storage' ? '.kvs' : ''}`;

/**
 * WGSL that stages `rows` rows of D elements from a [B, *, H, D] f16 tensor (`src`; vec4 bindings, or f16 ones when
 * !vec) into the workgroup f16 array kv, rows `stride` apart from element `dst` on, zero where `ok` is false;
 * `base` is the row's first element in src (r: the row, c: the column), `threads` the invocations.
 */
export function stageRowsWgsl(o: { src: string; rows: number; dst: number; ok: string; base: string; D: number; stride: number; threads: number; vec?: boolean }): string {
  const load = (o.vec ?? true) ? `x = ${o.src}[(${o.base}) / 4u + c / 4u];` : `let a = ${o.base} + c; x = vec4<f16>(${o.src}[a], ${o.src}[a + 1u], ${o.src}[a + 2u], ${o.src}[a + 3u]);`;
  return `
  for (var e = li; e < ${(o.rows * o.D) / 4}u; e += ${o.threads}u) {
    let r = e / ${o.D / 4}u;
    let c = (e % ${o.D / 4}u) * 4u;
    var x = vec4<f16>();
    if (${o.ok}) { ${load} }
    let d = ${o.dst}u + r * ${o.stride}u + c;
    kv[d] = x.x; kv[d + 1u] = x.y; kv[d + 2u] = x.z; kv[d + 3u] = x.w;
  }`;
}

/**
 * f16 elements of the K/V buffer and where V starts: K tile then V tile, large enough to stage Q first. With K/V
 * from storage it holds one tile in rows (K, then V over it) or Q.
 */
function kvLayout(t: SgmAttentionTile, cfg: SubgroupMatrixConfig, D: number): { size: number; vOff: number; kStride: number } {
  const RS = D + PAD;
  if (t.kvFrom === 'storage') return { size: Math.max(t.bk, t.nsub * cfg.M) * RS, vOff: 0, kStride: RS };
  const transposed = t.kLayout === 'transposed';
  const kStride = transposed ? t.bk + PAD : RS;
  const vOff = transposed ? D * kStride : t.bk * RS;
  return { size: Math.max(vOff + t.bk * RS, t.nsub * cfg.M * RS), vOff, kStride };
}

/** Why this tile / head dim cannot run on the config and subgroup size, or undefined. */
export function sgmAttentionUnfit(t: SgmAttentionTile, cfg: SubgroupMatrixConfig, D: number, sg: number): string | undefined {
  if (D % cfg.K || D % cfg.N) return `head dim ${D} must be a multiple of ${cfg.K} and ${cfg.N}`;
  if (t.bk % cfg.N || t.bk % cfg.K) return `bk ${t.bk} must be a multiple of ${cfg.N} and ${cfg.K}`;
  if (sg % cfg.M || (t.bk * cfg.M) % sg || (cfg.N * cfg.M) % sg) return `subgroup size ${sg} does not divide the row blocks`;
  if (t.kvFrom === 'storage') {
    if (t.kLayout === 'transposed') return 'K from storage has no staged layout to transpose';
  } else if (t.kLayout !== 'transposed' && 2 * t.bk < t.nsub * cfg.M) return `2*bk must hold the ${t.nsub * cfg.M} query rows`;
  return undefined;
}

/** Workgroup memory in bytes. */
export function sgmAttentionBytes(t: SgmAttentionTile, cfg: SubgroupMatrixConfig, D: number): number {
  return 2 * kvLayout(t, cfg, D).size + (4 + 2) * t.nsub * cfg.M * t.bk + 16;
}

/** Where the debug dump (sgmAttentionWgsl's `debug`) puts each part, in f32 elements of binding 7. */
export function sgmAttentionDebugLayout(t: SgmAttentionTile, cfg: SubgroupMatrixConfig, D: number): { scores: number; p: number; kv: number; lanes: number; size: number } {
  const sc = t.nsub * cfg.M * t.bk;
  const kv = kvLayout(t, cfg, D).size;
  const lanes = 2 * sc + kv;
  // Lanes: 8 values for each invocation, subgroups of up to 64.
  return { scores: 0, p: sc, kv: 2 * sc, lanes, size: lanes + 8 * t.nsub * 64 };
}

/**
 * WGSL. `params` declares the uniform P (attention.ts MHA_PARAMS); bindings q (1), k (2), v (3), o (4) as
 * vec4<f16> arrays, lse (5), lens (6). `debug` (hardware diagnosis, tools/device/sgm-sweep.ts): workgroup (0,0,0)
 * also dumps its first key tile's scores, P and K/V buffer, and each lane's ids and softmax totals, to binding 7
 * (sgmAttentionDebugLayout).
 */
export function sgmAttentionWgsl(params: string, t: SgmAttentionTile, cfg: SubgroupMatrixConfig, D: number, sg: number, emulate = false, debug = false): string {
  const mode = t.accum ?? 'registers';
  const regs = mode === 'registers';
  const twoPass = mode === 'two-pass';
  const { M, N, K } = cfg;
  const BQ = t.nsub * M;
  const BK = t.bk;
  const RS = D + PAD;
  const LPR = sg / M; // lanes per row
  const CPL = BK / LPR; // score columns per lane
  const OPL = N / LPR; // output columns per lane per fragment
  const em = emulate ? EMULATED : NATIVE;
  const left = `subgroup_matrix_left<f16, ${K}, ${M}>`;
  const right = `subgroup_matrix_right<f16, ${N}, ${K}>`;
  const result = `subgroup_matrix_result<f32, ${N}, ${M}>`;
  const { size: kvSize, vOff, kStride } = kvLayout(t, cfg, D);
  const kT = t.kLayout === 'transposed';
  const scSize = t.nsub * M * BK;
  const nd = D / K; // Q fragments along D
  const dl = sgmAttentionDebugLayout(t, cfg, D);
  const first = 'kt == 0u && wid.x == 0u && wid.y == 0u && wid.z == 0u';
  const dump = (what: string, at: number, n: number, arr: string) =>
    debug ? `if (${first}) { for (var e = li; e < ${n}u; e += ${BQ * LPR}u) { dbg[${at}u + e] = f32(${arr}[e]); } } // debug ${what}\n` : '';
  const no = D / N; // O fragments along D
  const range = (n: number) => Array.from({ length: n }, (_, i) => i);
  // Sum / max over the LPR lanes of a row.
  const rowReduce = (v: string, op: 'max' | '+') =>
    range(Math.log2(LPR))
      .map((i) => (op === 'max' ? `${v} = max(${v}, subgroupShuffleXor(${v}, ${1 << i}u));` : `${v} += subgroupShuffleXor(${v}, ${1 << i}u);`))
      .join(' ');
  const fromStorage = t.kvFrom === 'storage';
  const stageRows = (src: string, rows: number, dst: number, ok: string, base: string, vec = true) =>
    stageRowsWgsl({ src, rows, dst, ok, base, D, stride: RS, threads: BQ * LPR, vec });
  // Where a key tile's K and V fragments are read: the staged buffer, or (K/V from storage, whole tiles) the
  // bindings themselves, the tile's keys kb on at ks elements apart.
  interface Source { k: string; v: string; kAt(n: number, d: number): string; kCol: boolean; kStride: number | string; vAt(kk: number, f: number): string; vStride: number | string }
  const staged: Source = {
    k: 'kv',
    v: 'kv',
    kAt: (n, d) => (kT ? `${d * K * kStride + n * N}u` : `${n * N * RS + d * K}u`),
    kCol: !kT,
    kStride: kT ? kStride : RS,
    vAt: (kk, f) => `${vOff + kk * K * RS + f * N}u`,
    vStride: RS,
  };
  const storage: Source = { k: 'k', v: 'v', kAt: (n, d) => `kb + ${n * N}u * ks + ${d * K}u`, kCol: true, kStride: 'ks', vAt: (kk, f) => `kb + ${kk * K}u * ks + ${f * N}u`, vStride: 'ks' };
  const sCompute = (src: Source) => {
    let code = '';
    for (let n = 0; n < BK / N; n++) {
      code += `{ var acc = ${em.zero(result)};\n`;
      for (let d = 0; d < nd; d++) code += `acc = ${em.mma(`qf${d}`, em.load(right, src.k, src.kAt(n, d), src.kCol, src.kStride), 'acc')};\n`;
      code += `${em.store('sc', `sbase + ${n * N}u`, 'acc', BK)}; }\n`;
    }
    return code;
  };
  const pv = (src: Source) => {
    let code = '';
    for (let kk = 0; kk < BK / K; kk++) {
      code += `{ let pf = ${em.load(left, 'pb', `sbase + ${kk * K}u`, false, BK)};\n`;
      for (let f = 0; f < no; f++) code += `of${f} = ${em.mma('pf', em.load(right, src.v, src.vAt(kk, f), false, src.vStride), `of${f}`)};\n`;
      code += '}\n';
    }
    return code;
  };
  // Registers: P·V into fresh fragments, BK/N of them at a time through the scratch (M x BK f32 per subgroup),
  // each lane folding its row's OPL columns of each into O: oacc = oacc·alpha + this tile's part.
  const pvRegs = (src: Source) => {
    let code = '';
    for (let f0 = 0; f0 < no; f0 += BK / N) {
      const fs = range(Math.min(BK / N, no - f0)).map((j) => f0 + j);
      code += `{\n${fs.map((f) => `var t${f} = ${em.zero(result)};`).join('\n')}\n`;
      for (let kk = 0; kk < BK / K; kk++) {
        code += `{ let pf = ${em.load(left, 'pb', `sbase + ${kk * K}u`, false, BK)};\n`;
        for (const f of fs) code += `t${f} = ${em.mma('pf', em.load(right, src.v, src.vAt(kk, f), false, src.vStride), `t${f}`)};\n`;
        code += '}\n';
      }
      code += fs.map((f, j) => `${em.store('sc', `sbase + ${j * N}u`, `t${f}`, BK)};`).join('\n');
      code += '\nworkgroupBarrier();\n';
      for (const [j, f] of fs.entries()) {
        for (let c = 0; c < OPL; c++) {
          code += `oacc[${f * OPL + c}] = oacc[${f * OPL + c}] * alpha + sc[sbase + rr * ${BK}u + ${j * N}u + part * ${OPL}u + ${c}u];\n`;
        }
      }
      code += 'workgroupBarrier();\n}\n';
    }
    return code;
  };
  const storeRegs = range(no * OPL)
    .map((x) => `o[obase + ${Math.floor(x / OPL) * N}u + part * ${OPL}u + ${x % OPL}u] = f16(oacc[${x}] * inv);`)
    .join('\n    ');
  // Fragments: per O fragment through the scratch (stride N), each lane touching its row's OPL columns.
  const viaScratch = (f: number, body: string, reload: boolean) => `
    ${em.store('sc', 'sbase', `of${f}`, N)};
    workgroupBarrier();
    for (var c = part * ${OPL}u; c < (part + 1u) * ${OPL}u; c++) { ${body} }
    workgroupBarrier();
    ${reload ? `of${f} = ${em.load(result, 'sc', 'sbase', false, N)};\n    workgroupBarrier();` : ''}`;
  // This lane's scores: row rr, columns part*CPL.., scaled to log2 units and masked; mt their row max.
  const laneScores = `var sv: array<f32, ${CPL}>;
    var mt = ${NEG};
    for (var c = 0u; c < ${CPL}u; c++) {
      let j = k0 + part * ${CPL}u + c;
      let ok = j < len && (p.causal == 0u || i32(j) <= i32(i) + p.off);
      sv[c] = select(${NEG}, sc[sbase + rr * ${BK}u + part * ${CPL}u + c] * p.scale2, ok);
      mt = max(mt, sv[c]);
    }
    ${rowReduce('mt', 'max')}`;
  const kBase = '((b * p.s + k0 + r) * p.hkv + g) * p.d';
  // Transposed K: consecutive lanes take consecutive keys, so their f16 stores land side by side.
  const stageKT = `
  for (var e = li; e < ${(BK * D) / 4}u; e += ${BQ * LPR}u) {
    let r = e % ${BK}u;
    let c = (e / ${BK}u) * 4u;
    var x = vec4<f16>();
    if (k0 + r < len) { x = k[(${kBase}) / 4u + c / 4u]; }
    kv[c * ${kStride}u + r] = x.x; kv[(c + 1u) * ${kStride}u + r] = x.y; kv[(c + 2u) * ${kStride}u + r] = x.z; kv[(c + 3u) * ${kStride}u + r] = x.w;
  }`;
  const stageK = kT ? stageKT : stageRows('k', BK, 0, 'k0 + r < len', kBase, !fromStorage);
  const stageV = stageRows('v', BK, vOff, 'k0 + r < len', kBase, !fromStorage);
  // A key tile up to S = Q·Kᵀ in the scratch and its barrier; `product` then wraps P·V. Staged: K (and V when
  // `withV`) staged first. From storage: whole tiles read the bindings; a tile past the length stages K, and V over
  // it once every subgroup has its scores.
  const scores = (withV: boolean) =>
    fromStorage
      ? `let full = k0 + ${BK}u <= len;
    let kb = ((b * p.s + k0) * p.hkv + g) * ${D}u;
    if (!full) {
      workgroupBarrier();
      ${stageK}
      workgroupBarrier();
    }
    if (full) {
      ${sCompute(storage)}
    } else {
      ${sCompute(staged)}
    }
    workgroupBarrier();
    ${withV ? `if (!full) {
      ${stageV}
    }` : ''}`
      : `workgroupBarrier();
    ${stageK}
    ${withV ? stageV : ''}
    workgroupBarrier();
    ${sCompute(staged)}
    workgroupBarrier();`;
  const product = (code: (src: Source) => string) => (fromStorage ? `if (full) {
${code(storage)}
} else {
${code(staged)}
}` : code(staged));
  // Each row's total over its lanes, whether the row is output, and 1/total (0 for rows with no valid key).
  const rowTotals = `var l = l_part;
  ${rowReduce('l', '+')}
  let ok = i < p.t && i32(i) + p.off < i32(len) && l > 0.0;
  let inv = select(0.0, 1.0 / l, ok);`;
  // O from result fragments, through the scratch, times `scale`.
  const storeFragments = (scale: string) =>
    range(no)
      .map((f) => viaScratch(f, `if (i < p.t) { o[obase + ${f * N}u + c] = f16(sc[sbase + rr * ${N}u + c]${scale}); }`, false))
      .join('\n');
  // Two passes: row statistics first, then P final and O += P·V in fragments.
  const twoPassLoops = `var m_run = ${NEG};
  var l_part = 0.0;
  for (var kt = 0u; kt < ntiles; kt++) {
    let k0 = kt * ${BK}u;
    ${scores(false)}
    ${laneScores}
    let m_new = max(m_run, mt);
    var sum = 0.0;
    for (var c = 0u; c < ${CPL}u; c++) { sum += select(0.0, exp2(sv[c] - m_new), sv[c] > -1.0e29); }
    l_part = l_part * exp2(m_run - m_new) + sum;
    m_run = m_new;
    ${fromStorage ? 'workgroupBarrier(); // the next scores are stored where these were read, with no staging barrier first' : ''}
  }
  ${rowTotals}
  for (var kt = 0u; kt < ntiles; kt++) {
    let k0 = kt * ${BK}u;
    ${scores(true)}
    ${laneScores}
    for (var c = 0u; c < ${CPL}u; c++) {
      pb[sbase + rr * ${BK}u + part * ${CPL}u + c] = f16(select(0.0, exp2(sv[c] - m_run) * inv, sv[c] > -1.0e29));
    }
    workgroupBarrier();
    ${product(pv)}
  }
${storeFragments('')}`;
  // One pass: the online softmax, O rescaled as the running max moves (in registers or in fragments).
  const onePass = `var m_run = ${NEG};
  var l_part = 0.0;

  for (var kt = 0u; kt < ntiles; kt++) {
    let k0 = kt * ${BK}u;
    ${regs ? '' : 'if (li == 0u) { wg_u[1] = 0u; }'}
    ${scores(true)}
    ${dump('scores', dl.scores, scSize, 'sc')}${dump('kv', dl.kv, kvSize, 'kv')}
    ${laneScores}
    ${
      regs
        ? 'let m_new = max(m_run, mt);'
        : `if (mt > m_run + ${TAU}.0) { wg_u[1] = 1u; }
    let resc = workgroupUniformLoad(&wg_u[1]) != 0u;
    let m_new = select(m_run, max(m_run, mt), resc);`
    }
    let alpha = exp2(m_run - m_new);
    m_run = m_new;
    var sum = 0.0;
    for (var c = 0u; c < ${CPL}u; c++) {
      let e = select(0.0, exp2(sv[c] - m_new), sv[c] > -1.0e29);
      pb[sbase + rr * ${BK}u + part * ${CPL}u + c] = f16(e);
      sum += e;
    }
    l_part = l_part * alpha + sum;
    ${
      regs
        ? ''
        : `if (resc && kt > 0u) {
${range(no)
  .map((f) => viaScratch(f, `sc[sbase + rr * ${N}u + c] *= alpha;`, true))
  .join('\n')}
    }`
    }
    workgroupBarrier();
    ${dump('P', dl.p, scSize, 'pb')}
    ${product(regs ? pvRegs : pv)}
  }
  ${rowTotals}
${
  regs
    ? `  if (i < p.t) {
    ${storeRegs}
  }`
    : storeFragments(' * inv')
}`;
  const enables = `enable f16;\nenable subgroups;\n${emulate ? '' : `enable chromium_experimental_subgroup_matrix;\n${DIRECTIVE}`}`;
  return /* wgsl */ `${enables}
${params}
@group(0) @binding(1) var<storage, read> q: array<vec4<f16>>;
@group(0) @binding(2) var<storage, read> k: array<${fromStorage ? 'f16' : 'vec4<f16>'}>;
@group(0) @binding(3) var<storage, read> v: array<${fromStorage ? 'f16' : 'vec4<f16>'}>;
@group(0) @binding(4) var<storage, read_write> o: array<f16>;
@group(0) @binding(5) var<storage, read_write> lse: array<f32>;
@group(0) @binding(6) var<storage, read> lens: array<i32>;
${debug ? '@group(0) @binding(7) var<storage, read_write> dbg: array<f32>;\n' : ''}// K tile from element 0 (one key per row, or transposed), V tile from vOff (one key per row); Q is staged here first.
// With K/V from storage: Q, then only tiles past the length (K in rows, then V over it).
var<workgroup> kv: array<f16, ${kvSize}>;
// Per subgroup: scores (M x BK f32), also the scratch for O fragments; P (M x BK f16).
var<workgroup> sc: array<f32, ${scSize}>;
var<workgroup> pb: array<f16, ${scSize}>;
// The key count (0) and the rescale flag (1). Every workgroup variable spans a multiple of 16 bytes: on the H200
// (session 14) two lone u32s here shifted the matrix loads and stores of the arrays by 4 bytes (16-byte aligned
// addresses, apparently, while the variables were laid out on 4), so S = Q·Kᵀ came out wrong.
var<workgroup> wg_u: array<u32, 4>;
${
  emulate
    ? emulation(
        cfg,
        [
          { kind: 'l', arr: 'kv', size: kvSize },
          { kind: 'r', arr: 'kv', size: kvSize },
          { kind: 'l', arr: 'pb', size: scSize },
          ...(regs ? [] : [{ kind: 'c' as const, arr: 'sc', size: scSize }]),
          ...(fromStorage ? (['k', 'v'] as const).map((arr) => ({ kind: 'r' as const, arr, size: `arrayLength(&${arr})` })) : []),
        ],
        [{ arr: 'sc', size: scSize }],
      )
    : ''
}

@compute @workgroup_size(${BQ * LPR})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32${debug ? ', @builtin(subgroup_invocation_id) sgi: u32' : ''}) {
  // Subgroups are consecutive invocations (workgroup_size.x is a multiple of the subgroup size).
  let sgid = li / ${sg}u;
  let lane = li % ${sg}u;
  let h = wid.y;
  let b = wid.z;
  let g = h / (p.hq / p.hkv);
  let q0 = wid.x * ${BQ}u;
  let rr = lane / ${LPR}u;
  let part = lane % ${LPR}u;
  let row = sgid * ${M}u + rr;
  let i = q0 + row;
  let sbase = sgid * ${M * BK}u;
  let obase = ((b * p.t + i) * p.hq + h) * p.d;
  if (li == 0u) {
    var n = p.s;
    if (p.has_len != 0u) { n = min(u32(max(lens[b], 0)), p.s); }
    wg_u[0] = n;
  }
  let len = workgroupUniformLoad(&wg_u[0]);
  var kend = len;
  if (p.causal != 0u) { kend = min(kend, u32(max(i32(q0 + ${BQ}u) + p.off, 0))); }
  let ntiles = (kend + ${BK - 1}u) / ${BK}u;
  ${fromStorage ? `let ks = p.hkv * ${D}u; // elements from one key to the next in k and v` : ''}

  ${stageRows('q', BQ, 0, 'q0 + r < p.t', '((b * p.t + q0 + r) * p.hq + h) * p.d')}
  workgroupBarrier();
${range(nd)
  .map((d) => `  let qf${d} = ${em.load(left, 'kv', `sgid * ${M * RS}u + ${d * K}u`, false, RS)};`)
  .join('\n')}
${regs ? `  var oacc: array<f32, ${no * OPL}>;` : range(no).map((f) => `  var of${f} = ${em.zero(result)};`).join('\n')}
${twoPass ? twoPassLoops : onePass}
  if (part == 0u && i < p.t) {
    lse[(b * p.hq + h) * p.t + i] = select(0.0, (m_run + log2(l)) * ${Math.LN2}, ok);
  }
${
  debug
    ? `  if (wid.x == 0u && wid.y == 0u && wid.z == 0u) {
    let d0 = ${dl.lanes}u + li * 8u;
    dbg[d0] = f32(li); dbg[d0 + 1u] = f32(sgi); dbg[d0 + 2u] = f32(sgid); dbg[d0 + 3u] = f32(rr);
    dbg[d0 + 4u] = m_run; dbg[d0 + 5u] = l_part; dbg[d0 + 6u] = l; dbg[d0 + 7u] = f32(ntiles);
  }`
    : ''
}
}`;
}
