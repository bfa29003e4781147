/**
 * Tensor-core matmul (Dawn's chromium_experimental_subgroup_matrix), f16 products with f32 accumulation.
 *
 * One workgroup = WM x WN subgroups computes a BM x BN tile of C (BM = WM·FM·cfg.M, BN = WN·FN·cfg.N); each
 * subgroup owns FM x FN result fragments. K advances BK at a time: every thread loads its share of the A and B
 * tiles from global memory (4 contiguous elements at a time, zero-filled past the matrix edges, converted to
 * f16), then the subgroups read their fragments from workgroup memory. The next tile's global loads are issued
 * before the current tile's matrix products (register prefetch), so the loads overlap the tensor-core work.
 * Transposed operands are staged as stored and read with column-major fragment loads, so global reads stay
 * contiguous either way. The epilogue passes each fragment through a per-subgroup scratch for alpha, beta,
 * bias, the output dtype and bounds. Any M, N, K, strides and offsets work; aligned operands load as vec4.
 */
import type { SubgroupMatrixConfig } from '../runtime/features.js';

/** Workgroup shape of the tensor-core kernel. */
export interface SgmTile {
  /** Subgroups along M and N. */
  wm: number;
  wn: number;
  /** Result fragments per subgroup along M and N. */
  fm: number;
  fn: number;
  /** K per shared-memory stage (multiple of cfg.K). */
  bk: number;
  /**
   * Shared-memory stages: 1 (default) stores the next K step after the current one's products, two barriers a
   * step; 2 double-buffers, storing the next step into the other buffer while the products read this one, one
   * barrier a step, twice the workgroup memory.
   */
  stages?: 1 | 2;
  /**
   * Rows of workgroups per raster group (0 or undefined: row by row). Launching blocks `group` rows at a time,
   * column by column, lets consecutive workgroups share A rows and B columns in L2.
   */
  group?: number;
  /**
   * Where the fragments come from: 'workgroup' (default) stages each K step in workgroup memory; 'storage' reads
   * them straight from A and B, no staging and no barrier, in every block that lies wholly inside C when K is a
   * multiple of bk (the others stage). Only for f16 A and B whose leading dimensions, offsets and batch strides
   * are multiples of 8 (16-byte rows); other operands stage throughout.
   */
  from?: 'workgroup' | 'storage';
}

/** What the generated WGSL depends on besides the tile. */
export interface SgmSpec {
  aType: string;
  bType: string;
  transA: boolean;
  transB: boolean;
  /** Operands whose contiguous dimension, leading dimension, offset and batch stride are multiples of 4. */
  aVec: boolean;
  bVec: boolean;
  /** How an f32 A reaches the f16 products (default 'round'; see SgmAF32). */
  aF32?: SgmAF32;
  /** 'scaled' only: the binding of the per-row exponents (i32, batch-major, from sgmRowExponentWgsl). */
  scaleBinding?: number;
  /** Whole blocks read their fragments from storage (tile.from 'storage', where sgmFromStorage allows; scalar A and B). */
  direct?: boolean;
}

/** Whether a tile's 'storage' fragments apply: f16 operands, 16-byte rows, offsets and batch strides. */
export function sgmFromStorage(t: SgmTile, aType: string, bType: string, ...strides: number[]): boolean {
  return t.from === 'storage' && aType === 'f16' && bType === 'f16' && strides.every((x) => x % 8 === 0);
}

/**
 * f32 A on the f16 tensor cores:
 * - 'round': rounded to f16 (11 significant bits; overflows past 65504, flushes below 6e-8);
 * - 'split': the sum of two f16 parts, hi + lo, two products per fragment: ~22 significant bits for values near
 *   1, but the parts overflow or lose bits (f16 subnormals) outside about [0.06, 65504] in magnitude;
 * - 'scaled': each row of A multiplied by a power of two that brings its largest magnitude into [2^14, 2^15)
 *   before the split, and the row of C divided by it again (exact, powers of two): ~22 bits whatever the row's
 *   scale, for gradients (1e-6 and below) as for activations. Costs one pass over A for the row maxima.
 */
export type SgmAF32 = 'round' | 'split' | 'scaled';

/** Power of two the scaled split brings a row's largest magnitude to (scaled values stay below 2^15 < 65504). */
export const SGM_SCALE_TARGET_EXP = 14;

/** Padding of shared-memory rows, in f16 elements: keeps 16-byte alignment and staggers banks. */
const PAD = 8;

export const sgmTileKey = (t: SgmTile): string =>
  `${t.wm}x${t.wn}.${t.fm}x${t.fn}.k${t.bk}${(t.stages ?? 1) > 1 ? `.s${t.stages}` : ''}${t.group ? `.g${t.group}` : ''}${t.from === 'storage' ? '.st' : ''}`;

/** Rows and columns of C one workgroup computes. */
export function sgmBlock(t: SgmTile, cfg: SubgroupMatrixConfig): { bm: number; bn: number } {
  return { bm: t.wm * t.fm * cfg.M, bn: t.wn * t.fn * cfg.N };
}

/** Workgroup memory in bytes (A and B stages in f16, f32 epilogue scratch). */
export function sgmSharedBytes(t: SgmTile, cfg: SubgroupMatrixConfig, s: Pick<SgmSpec, 'transA' | 'transB' | 'aF32'>): number {
  const { bm, bn } = sgmBlock(t, cfg);
  const mode = s.aF32 ?? 'round';
  const a = stage(s.transA, bm, t.bk).size * (mode === 'round' ? 1 : 2);
  const exps = mode === 'scaled' ? 4 * bm : 0;
  return 2 * (t.stages ?? 1) * (a + stage(!s.transB, bn, t.bk).size) + 4 * t.wm * t.wn * cfg.M * cfg.N + exps;
}

/** Why a tile cannot run with this config, or undefined. */
export function sgmTileUnfit(t: SgmTile, cfg: SubgroupMatrixConfig): string | undefined {
  if (t.bk % cfg.K || t.bk < cfg.K) return `bk ${t.bk} must be a multiple of ${cfg.K}`;
  if ([t.wm, t.wn, t.fm, t.fn].some((v) => !Number.isInteger(v) || v < 1)) return 'tile counts must be positive integers';
  if (t.stages !== undefined && t.stages !== 1 && t.stages !== 2) return `stages must be 1 or 2, got ${t.stages}`;
  if (t.group !== undefined && (!Number.isInteger(t.group) || t.group < 0)) return `group must be a non-negative integer, got ${t.group}`;
  if (t.from !== undefined && t.from !== 'workgroup' && t.from !== 'storage') return `from must be 'workgroup' or 'storage', got ${String(t.from)}`;
  return undefined;
}

/**
 * Layout of one operand's stage: `rows` x `cols` f16 with `cols` contiguous (plus padding). `kOuter` says the
 * operand is stored with K as its outer (row) dimension: A transposed, or B not transposed.
 */
function stage(kOuter: boolean, mn: number, bk: number): { rows: number; cols: number; stride: number; size: number } {
  const [rows, cols] = kOuter ? [bk, mn] : [mn, bk];
  const stride = cols + PAD;
  return { rows, cols, stride, size: rows * stride };
}

/**
 * WGSL of the kernel. `header` declares the uniforms P, bindings A (1), B (2), C (3) and bias (4) (vec4 arrays
 * where aVec / bVec) and `store_c(z, m, n, acc)`; `sg` is the adapter's subgroup size.
 */
export function sgmMatmulWgsl(header: string, s: SgmSpec, t: SgmTile, cfg: SubgroupMatrixConfig, sg: number, emulate = false): string {
  const { bm, bn } = sgmBlock(t, cfg);
  const nsub = t.wm * t.wn;
  const nt = nsub * sg;
  const sa = stage(s.transA, bm, t.bk);
  const sb = stage(!s.transB, bn, t.bk);
  const unitsA = (sa.rows * sa.cols) / 4;
  const unitsB = (sb.rows * sb.cols) / 4;
  const itA = Math.ceil(unitsA / nt);
  const itB = Math.ceil(unitsB / nt);
  const left = `subgroup_matrix_left<f16, ${cfg.K}, ${cfg.M}>`;
  const right = `subgroup_matrix_right<f16, ${cfg.N}, ${cfg.K}>`;
  const result = `subgroup_matrix_result<f32, ${cfg.N}, ${cfg.M}>`;
  const em = emulate ? EMULATED : NATIVE;
  const mode = s.aType === 'f32' ? (s.aF32 ?? 'round') : 'round';
  const split = mode !== 'round';
  const scaled = mode === 'scaled';
  if (scaled && s.scaleBinding === undefined) throw new Error('scaled f32 A needs scaleBinding');

  // Four contiguous elements of an operand at storage (row r, column c), zero past (rl, cl).
  const loader = (name: string, vec: boolean, el: string) => {
    const body = vec
      ? `if (r < rl && c < cl) { return vec4<${el}>(${name}[(base + r * ld + c) / 4u]); }
  return vec4<${el}>();`
      : `var v = vec4<${el}>();
  if (r < rl) {
    for (var j = 0u; j < 4u; j++) { if (c + j < cl) { v[j] = ${el}(${name}[base + r * ld + c + j]); } }
  }
  return v;`;
    return `fn ld_${name}(base: u32, ld: u32, r: u32, c: u32, rl: u32, cl: u32) -> vec4<${el}> {
  ${body}
}`;
  };
  // Storage extents of each operand: rows x contiguous columns.
  // K ends at this split layer's end (ke; the whole of K unless split), zero-filled past it.
  const aExt = s.transA ? ['ke', 'p.M'] : ['p.M', 'ke'];
  const bExt = s.transB ? ['p.N', 'ke'] : ['ke', 'p.N'];
  // Tile origin in storage coordinates for K offset k0.
  const aOrg = s.transA ? ['k0', 'm0'] : ['m0', 'k0'];
  const bOrg = s.transB ? ['n0', 'k0'] : ['k0', 'n0'];
  const aOrgN = aOrg.map((x) => (x === 'k0' ? 'kn' : x));
  const bOrgN = bOrg.map((x) => (x === 'k0' ? 'kn' : x));
  const fetch = (name: string, st: typeof sa, units: number, it: number, ext: string[], org: string[], base: string, ld: string) => {
    let code = '';
    for (let i = 0; i < it; i++) {
      const guard = (i + 1) * nt > units ? `if (u${i} < ${units}u) ` : '';
      code += `{ let u${i} = li + ${i * nt}u; ${guard}{ let r = u${i} / ${st.cols / 4}u; let c = (u${i} % ${st.cols / 4}u) * 4u;
      reg_${name}[${i}] = ld_${name === 'a' ? 'A' : 'B'}(${base}, ${ld}, ${org[0]} + r, ${org[1]} + c, ${ext[0]}, ${ext[1]}); } }\n`;
    }
    return code;
  };
  const stages = t.stages ?? 1;
  // The exponents of A's 4 staged elements at stage (row r, column c): one row of A, or 4 when A is transposed.
  const rowExps = (r: string, c: string) =>
    s.transA ? `vec4<i32>(sh_e[${c}], sh_e[${c} + 1u], sh_e[${c} + 2u], sh_e[${c} + 3u])` : `vec4<i32>(sh_e[${r}])`;
  // Where stage buffer `buf` (a WGSL expression) starts in an operand's workgroup array.
  const at = (st: typeof sa, buf: string) => (stages > 1 ? ` + ${buf} * ${st.size}u` : '');
  const put = (name: string, st: typeof sa, units: number, it: number, buf = '0u') => {
    let code = '';
    for (let i = 0; i < it; i++) {
      const guard = (i + 1) * nt > units ? `if (u < ${units}u) ` : '';
      code += `{ let u = li + ${i * nt}u; ${guard}{ let d = (u / ${st.cols / 4}u) * ${st.stride}u + (u % ${st.cols / 4}u) * 4u${at(st, buf)};
      ${split && name === 'a' ? `let x = ${scaled ? `ldexp(reg_a[${i}], ${rowExps(`u / ${st.cols / 4}u`, `(u % ${st.cols / 4}u) * 4u`)})` : `reg_a[${i}]`};
      // hi keeps the top 10 mantissa bits (exact in f16 over its normal range), by masking rather than a
      // round trip through f16, which compilers may fold away (lavapipe does); lo = x - hi is exact in f32.
      let hi = bitcast<vec4<f32>>(bitcast<vec4<u32>>(x) & vec4<u32>(0xffffe000u));
      let v = vec4<f16>(hi);
      let w = vec4<f16>(x - hi);
      sh_al[d] = w.x; sh_al[d + 1u] = w.y; sh_al[d + 2u] = w.z; sh_al[d + 3u] = w.w;` : `let v = reg_${name}[${i}];`}
      sh_${name}[d] = v.x; sh_${name}[d + 1u] = v.y; sh_${name}[d + 2u] = v.z; sh_${name}[d + 3u] = v.w; } }\n`;
    }
    return code;
  };
  // Fragment loads from the stages for K step kk.
  const leftOff = (i: number, kk: number) =>
    (s.transA ? `${kk * cfg.K * sa.stride}u + am + ${i * cfg.M}u` : `(am + ${i * cfg.M}u) * ${sa.stride}u + ${kk * cfg.K}u`) + at(sa, 'cur');
  const rightOff = (j: number, kk: number) =>
    (s.transB ? `(bn + ${j * cfg.N}u) * ${sb.stride}u + ${kk * cfg.K}u` : `${kk * cfg.K * sb.stride}u + bn + ${j * cfg.N}u`) + at(sb, 'cur');
  // The products of one stage: for each K step kk, the subgroup's left fragments (`loadL(arr, i, kk)`; the lo parts
  // of a split A from sh_al as well) and right fragments (`loadR(j, kk)`), then every pair's product.
  const products = (aArr: string, loadL: (arr: string, i: number, kk: number) => string, loadR: (j: number, kk: number) => string) => {
    let code = '';
    for (let kk = 0; kk < t.bk / cfg.K; kk++) {
      code += '{\n';
      for (let i = 0; i < t.fm; i++) {
        code += `let l${i} = ${loadL(aArr, i, kk)};\n`;
        if (split) code += `let h${i} = ${loadL('sh_al', i, kk)};\n`;
      }
      for (let j = 0; j < t.fn; j++) code += `let r${j} = ${loadR(j, kk)};\n`;
      for (let i = 0; i < t.fm; i++) {
        for (let j = 0; j < t.fn; j++) {
          code += `c${i}_${j} = ${em.mma(`l${i}`, `r${j}`, `c${i}_${j}`)};\n`;
          if (split) code += `c${i}_${j} = ${em.mma(`h${i}`, `r${j}`, `c${i}_${j}`)};\n`;
        }
      }
      code += '}\n';
    }
    return code;
  };
  const mma = products(
    'sh_a',
    (arr, i, kk) => em.load(left, arr, leftOff(i, kk), s.transA, sa.stride),
    (j, kk) => em.load(right, 'sh_b', rightOff(j, kk), s.transB, sb.stride),
  );
  // Whole blocks with fragments from storage: A's rows / B's columns of this subgroup at K offset k0 + kk·K.
  const direct = !!s.direct;
  if (direct && (s.aVec || s.bVec || split)) throw new Error('fragments from storage need scalar f16 A and B');
  const kAt = (kk: number) => `k0 + ${kk * cfg.K}u`;
  const mmaDirect = products(
    'A',
    (arr, i, kk) => {
      const m = `m0 + am + ${i * cfg.M}u`;
      return em.load(left, arr, s.transA ? `base_a + (${kAt(kk)}) * p.lda + ${m}` : `base_a + (${m}) * p.lda + ${kAt(kk)}`, s.transA, 'p.lda');
    },
    (j, kk) => {
      const n = `n0 + bn + ${j * cfg.N}u`;
      return em.load(right, 'B', s.transB ? `base_b + (${n}) * p.ldb + ${kAt(kk)}` : `base_b + (${kAt(kk)}) * p.ldb + ${n}`, s.transB, 'p.ldb');
    },
  );
  let decl = '';
  let epilogue = '';
  const frag = cfg.M * cfg.N;
  for (let i = 0; i < t.fm; i++) {
    for (let j = 0; j < t.fn; j++) {
      decl += `var c${i}_${j} = ${em.zero(result)};\n`;
      epilogue += `${em.store('scr', `sgid * ${frag}u`, `c${i}_${j}`, cfg.N)};
  workgroupBarrier();
  for (var e = lane; e < ${frag}u; e += ${sg}u) {
    let m = m0 + am + ${i * cfg.M}u + e / ${cfg.N}u;
    let n = n0 + bn + ${j * cfg.N}u + e % ${cfg.N}u;
    if (m < p.M && n < p.N) { store_c(wid.z, m, n, ${scaled ? `ldexp(scr[sgid * ${frag}u + e], -sh_e[m - m0])` : `scr[sgid * ${frag}u + e]`}); }
  }
  workgroupBarrier();
`;
    }
  }
  // Directives first; the header starts with its own `enable f16;` when its operands use f16.
  const enables = `${header.includes('enable f16;') ? '' : 'enable f16;\n'}${emulate ? '' : `enable subgroups;\nenable chromium_experimental_subgroup_matrix;\n${DIRECTIVE}`}`;
  return /* wgsl */ `${enables}
${header}
${
  emulate
    ? emulation(
        cfg,
        [
          { kind: 'l', arr: 'sh_a', size: sa.size * stages },
          ...(split ? [{ kind: 'l' as const, arr: 'sh_al', size: sa.size * stages }] : []),
          { kind: 'r', arr: 'sh_b', size: sb.size * stages },
          ...(direct ? [{ kind: 'l' as const, arr: 'A', size: 'arrayLength(&A)' }, { kind: 'r' as const, arr: 'B', size: 'arrayLength(&B)' }] : []),
        ],
        [{ arr: 'scr', size: nsub * frag }],
      )
    : ''
}
var<workgroup> sh_a: array<f16, ${sa.size * stages}>;
var<workgroup> sh_b: array<f16, ${sb.size * stages}>;
${split ? `var<workgroup> sh_al: array<f16, ${sa.size * stages}>;` : ''}
var<workgroup> scr: array<f32, ${nsub * frag}>;
${scaled ? `@group(0) @binding(${s.scaleBinding}) var<storage, read> E: array<i32>;
var<workgroup> sh_e: array<i32, ${bm}>;` : ''}
${loader('A', s.aVec, split ? 'f32' : 'f16')}
${loader('B', s.bVec, 'f16')}

@compute @workgroup_size(${nt})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  // Subgroups are consecutive invocations (workgroup_size.x is a multiple of the subgroup size).
  let sgid = li / ${sg}u;
  let lane = li % ${sg}u;
  // Grid z: split layer x batch item; layer l sums K from l·kPer (one layer of all of K unless split).
  let z = wid.z % p.zb;
  let kb = (wid.z / p.zb) * p.kPer;
  let ke = min(p.K, kb + p.kPer);
  ${
    t.group
      ? `// Raster groups of ${t.group} block rows, walked column by column.
  let pid = wid.y * nwg.x + wid.x;
  let width = ${t.group}u * nwg.x;
  let first = (pid / width) * ${t.group}u;
  let rows = min(nwg.y - first, ${t.group}u);
  let m0 = (first + (pid % width) % rows) * ${bm}u;
  let n0 = ((pid % width) / rows) * ${bn}u;`
      : `let m0 = wid.y * ${bm}u;
  let n0 = wid.x * ${bn}u;`
  }
  let base_a = p.offA + z * p.sA;
  let base_b = p.offB + z * p.sB;
  ${scaled ? `// This block's row exponents, read once.
  for (var i = li; i < ${bm}u; i += ${nt}u) {
    var e = 0;
    if (m0 + i < p.M) { e = E[z * p.M + m0 + i]; }
    sh_e[i] = e;
  }
  workgroupBarrier();` : ''}
  // This subgroup's fragment origin inside the block.
  let am = (sgid / ${t.wn}u) * ${t.fm * cfg.M}u;
  let bn = (sgid % ${t.wn}u) * ${t.fn * cfg.N}u;
  var reg_a: array<vec4<${split ? 'f32' : 'f16'}>, ${itA}>;
  var reg_b: array<vec4<f16>, ${itB}>;
  ${decl}
  ${
    direct
      ? `// Whole blocks: fragments straight from A and B.
  let full = m0 + ${bm}u <= p.M && n0 + ${bn}u <= p.N && (ke - kb) % ${t.bk}u == 0u;
  if (full) {
    for (var k0 = kb; k0 < ke; k0 += ${t.bk}u) {
      ${mmaDirect}
    }
  } else {`
      : ''
  }
  var k0 = kb;
  ${fetch('a', sa, unitsA, itA, aExt, aOrg, 'base_a', 'p.lda')}
  ${fetch('b', sb, unitsB, itB, bExt, bOrg, 'base_b', 'p.ldb')}
  ${
    stages > 1
      ? `${put('a', sa, unitsA, itA)}
  ${put('b', sb, unitsB, itB)}
  workgroupBarrier();
  var cur = 0u;
  for (; k0 < ke; k0 += ${t.bk}u) {
    let more = k0 + ${t.bk}u < ke;
    if (more) {
      let kn = k0 + ${t.bk}u;
      ${fetch('a', sa, unitsA, itA, aExt, aOrgN, 'base_a', 'p.lda')}
      ${fetch('b', sb, unitsB, itB, bExt, bOrgN, 'base_b', 'p.ldb')}
    }
    ${mma}
    // The other buffer was last read before the previous barrier.
    if (more) {
      ${put('a', sa, unitsA, itA, '(1u - cur)')}
      ${put('b', sb, unitsB, itB, '(1u - cur)')}
    }
    workgroupBarrier();
    cur = 1u - cur;
  }`
      : `for (; k0 < ke; k0 += ${t.bk}u) {
    ${put('a', sa, unitsA, itA)}
    ${put('b', sb, unitsB, itB)}
    workgroupBarrier();
    if (k0 + ${t.bk}u < ke) {
      let kn = k0 + ${t.bk}u;
      ${fetch('a', sa, unitsA, itA, aExt, aOrgN, 'base_a', 'p.lda')}
      ${fetch('b', sb, unitsB, itB, bExt, bOrgN, 'base_b', 'p.ldb')}
    }
    ${mma}
    workgroupBarrier();
  }`
  }
  ${direct ? '}' : ''}
  ${epilogue}
}`;
}

/**
 * WGSL of the pass that feeds 'scaled' f32 A: E[z·M + m] = the power of two that brings max_k |A[z, m, k]| into
 * [2^14, 2^15) (SGM_SCALE_TARGET_EXP), or 0 for a row of zeros or one holding an inf or NaN, which then propagates
 * as it would in f32. Magnitudes compare as the bits of |x| (monotonic, so no float max and its NaN rules). One
 * 64-thread workgroup per row, rows spread over x and y, batch items in z. Bindings: Q, A (f32), E (i32).
 */
export function sgmRowExponentWgsl(transA: boolean): string {
  return /* wgsl */ `struct Q { M: u32, K: u32, lda: u32, offA: u32, sA: u32 }
@group(0) @binding(0) var<uniform> q: Q;
@group(0) @binding(1) var<storage, read> A: array<f32>;
@group(0) @binding(2) var<storage, read_write> E: array<i32>;
var<workgroup> red: array<u32, 64>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let m = wid.y * nwg.x + wid.x;
  if (m >= q.M) { return; }
  let base = q.offA + wid.z * q.sA;
  var mx = 0u;
  for (var k = li; k < q.K; k += 64u) {
    mx = max(mx, bitcast<u32>(A[base + ${transA ? 'k * q.lda + m' : 'm * q.lda + k'}]) & 0x7fffffffu);
  }
  red[li] = mx;
  workgroupBarrier();
  for (var h = 32u; h > 0u; h >>= 1u) {
    if (li < h) { red[li] = max(red[li], red[li + h]); }
    workgroupBarrier();
  }
  if (li == 0u) {
    let field = i32(red[0] >> 23u);
    var e = 0;
    if (red[0] != 0u && field < 255) { e = clamp(${SGM_SCALE_TARGET_EXP + 127} - field, -126, 126); }
    E[wid.z * q.M + m] = e;
  }
}`;
}

// Fragment offsets come from the subgroup index: subgroup-uniform, not workgroup-uniform, as intended. Tint's
// check is workgroup-level; the rule is `chromium.subgroup_matrix_uniformity` in the Dawn of npm `webgpu` (an
// H200 run refused the offsets with the other spelling).
export const DIRECTIVE = 'diagnostic(off, chromium.subgroup_matrix_uniformity);\ndiagnostic(off, subgroup_uniformity);';

/** How the kernel spells matrix operations: natively, or emulated for tests on adapters without them. */
export interface MatrixOps {
  /** `stride`: a constant, or a u32 expression. */
  load(type: string, arr: string, off: string, colMajor: boolean, stride: number | string): string;
  mma(l: string, r: string, c: string): string;
  zero(type: string): string;
  store(arr: string, off: string, v: string, stride: number): string;
}

const u32Expr = (x: number | string) => (typeof x === 'number' ? `${x}u` : x);

export const NATIVE: MatrixOps = {
  load: (type, arr, off, cm, stride) => `subgroupMatrixLoad<${type}>(&${arr}, ${off}, ${cm}, ${u32Expr(stride)})`,
  mma: (l, r, c) => `subgroupMatrixMultiplyAccumulate(${l}, ${r}, ${c})`,
  zero: (type) => `${type}()`,
  store: (arr, off, v, stride) => `subgroupMatrixStore(&${arr}, ${off}, ${v}, false, ${stride}u)`,
};

/**
 * Emulation: every invocation holds whole fragments (row-major f32 arrays) and does the whole product, so the
 * kernel's staging, fragment addressing and epilogue can be checked on lavapipe (tests only; slow).
 */
export const EMULATED: MatrixOps = {
  load: (type, arr, off, cm, stride) => `emu_load_${type.includes('left') ? 'l' : type.includes('right') ? 'r' : 'c'}_${arr}(${off}, ${cm}, ${u32Expr(stride)})`,
  mma: (l, r, c) => `emu_mma(${l}, ${r}, ${c})`,
  zero: () => 'EmuC()',
  store: (arr, off, v, stride) => `emu_store_${arr}(${off}, ${v}, ${stride}u)`,
};

/**
 * WGSL of the emulated matrix operations for the given arrays (see EMULATED): workgroup arrays of a constant size,
 * or storage bindings sized by an expression (`arrayLength(&k)`).
 */
export function emulation(
  cfg: SubgroupMatrixConfig,
  loads: { kind: 'l' | 'r' | 'c'; arr: string; size: number | string }[],
  stores: { arr: string; size: number }[],
): string {
  const { M, N, K } = cfg;
  const dims = { l: [M, K, 'EmuL'], r: [K, N, 'EmuR'], c: [M, N, 'EmuC'] } as const;
  const load = (kind: 'l' | 'r' | 'c', arr: string, size: number | string) => {
    const [rows, cols, type] = dims[kind];
    return `
fn emu_load_${kind}_${arr}(off: u32, cm: bool, stride: u32) -> ${type} {
  var out: ${type};
  for (var r = 0u; r < ${rows}u; r++) {
    for (var c = 0u; c < ${cols}u; c++) {
      let i = select(off + r * stride + c, off + c * stride + r, cm);
      out.v[r * ${cols}u + c] = f32(${arr}[min(i, ${typeof size === 'number' ? `${size - 1}u` : `${size} - 1u`})]);
    }
  }
  return out;
}`;
  };
  const store = (arr: string, size: number) => `
fn emu_store_${arr}(off: u32, m: EmuC, stride: u32) {
  for (var r = 0u; r < ${M}u; r++) {
    for (var c = 0u; c < ${N}u; c++) { ${arr}[min(off + r * stride + c, ${size - 1}u)] = m.v[r * ${N}u + c]; }
  }
}`;
  return `alias EmuL = EmuMat${M * K};
alias EmuR = EmuMat${K * N};
alias EmuC = EmuMat${M * N};
${[...new Set([M * K, K * N, M * N])].map((n) => `struct EmuMat${n} { v: array<f32, ${n}> }`).join('\n')}
${loads.map((l) => load(l.kind, l.arr, l.size)).join('\n')}
fn emu_mma(l: EmuL, r: EmuR, c: EmuC) -> EmuC {
  var out = c;
  for (var i = 0u; i < ${M}u; i++) {
    for (var j = 0u; j < ${N}u; j++) {
      var acc = 0.0;
      for (var k = 0u; k < ${K}u; k++) { acc += l.v[i * ${K}u + k] * r.v[k * ${N}u + j]; }
      out.v[i * ${N}u + j] += acc;
    }
  }
  return out;
}
${stores.map((x) => store(x.arr, x.size)).join('\n')}`;
}
