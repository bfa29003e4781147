/**
 * Causal GQA attention, forward and backward, for CPU adapters (lavapipe/llvmpipe): the 'cpu-tiled' path.
 *
 * Same contract, layouts and masking as the workgroup kernels in attention.ts (flash style: an online softmax over
 * key blocks, no T x S scores in global memory), shaped for how llvmpipe runs a shader (matmul-cpu.ts has the
 * measurements): a workgroup is one 8-lane subgroup, which llvmpipe runs as one AVX2 vector with no barriers and no
 * workgroup memory, and each lane owns whole rows, so a row's softmax never leaves its lane.
 *
 * Forward and dQ: lane l owns R query rows (q0 + 8r + l). Per block of 8 keys, lane l loads key k0 + l's K and V
 * rows (vec4 storage loads, the cheapest storage load per float here) and subgroupShuffle hands each key to every
 * lane, so a key's load serves 8·R rows. The block's 8·R scores are plain values (no loop-carried variable, which
 * llvmpipe loads, blends and stores at every update); O or dQ is updated once per block.
 * dK/dV: lane l owns R key rows and the same walk runs over blocks of 8 queries of each query head of the group.
 *
 * D is compiled in (the loops over it are unrolled), so each head dim has its own pipelines. D must be a multiple
 * of 4; other head dims take the workgroup kernels.
 */
import { enableF16 } from './wgsl.js';
import { SUBGROUP_UNIFORMITY_OFF, ticketWgsl } from './tickets.js';
import { CPU_LANES } from './cpu-lanes.js';

const NEG = '-1.0e30';
/** A workgroup is one subgroup, so the drawn tile reaches the lanes by a broadcast, with no barrier. */
const TICKETS = ticketWgsl('subgroup');

export type CpuAttentionKernel = 'fwd' | 'dq' | 'dkv';

/**
 * Rows (query rows, or key rows for dK/dV) per lane. More rows share each key's loads and shuffles, but the
 * unrolled shader grows with R·D and llvmpipe's compile time faster than that (D 32, shader cache off: forward
 * 3.1 / 6.4 / 17.1 s at R = 2 / 4 / 8, dQ and dK/dV together 12.5 / 30.4 / 113.5 s; docs/BENCHMARKS.md). The
 * backward kernels hold three and four row arrays to the forward's two, so they take half the rows.
 */
export function cpuAttentionRows(kernel: CpuAttentionKernel, D: number): number {
  const budget = kernel === 'fwd' ? 128 : 64;
  return Math.max(1, Math.min(8, Math.floor(budget / D)));
}

/** Why the cpu-tiled attention cannot take this head dim, or undefined. */
export function cpuAttentionUnfit(D: number): string | undefined {
  if (D % 4) return `head dim ${D} is not a multiple of 4`;
  // Compile time grows with D (88 s for forward and backward at D 128); no Qwen model has a head dim over 256.
  if (D > 256) return `head dim ${D} is over 256`;
  return undefined;
}

export interface CpuAttentionSpec {
  dtype: 'f32' | 'f16';
  /** The dtype of 'kv-rows' bindings (decode's caches), where it is not dtype. */
  kvDtype?: 'f32' | 'f16';
  D: number;
  /** Rows per lane (cpuAttentionRows by default). */
  R: number;
}

export const cpuAttentionKey = (k: CpuAttentionKernel, s: CpuAttentionSpec) => `attention:cpu-${k}:${s.dtype}:D${s.D}:R${s.R}`;

const range = (n: number) => Array.from({ length: n }, (_, i) => i);
const sum = (terms: string[]) => (terms.length ? terms.join(' + ') : '0.0');
/** max() of the terms as a balanced tree. */
function maxOf(terms: string[]): string {
  if (terms.length === 1) return terms[0];
  const half = Math.ceil(terms.length / 2);
  return `max(${maxOf(terms.slice(0, half))}, ${maxOf(terms.slice(half))})`;
}

/** The index ranges the generators unroll over: rows of a lane, the 8 lanes' rows, vec4 columns of a row. */
function unrolled(s: CpuAttentionSpec) {
  const C = s.D / 4;
  return { R: s.R, D: s.D, C, rows: range(s.R), lanes: range(CPU_LANES), cols: range(C) };
}

/** Name, access, and element: 'rows' is vec4 of the spec's dtype, the others as written. */
type Binding = [string, 'read' | 'read_write', 'rows' | 'kv-rows' | 'f32' | 'i32' | 'vec4<f32>' | 'vec2<f32>'];

/** What both backward kernels read, bound first. */
const GRAD_INPUTS: Binding[] = [
  ['q', 'read', 'rows'],
  ['k', 'read', 'rows'],
  ['v', 'read', 'rows'],
  ['dout', 'read', 'rows'],
  ['lse', 'read', 'f32'],
  ['dvec', 'read', 'f32'],
];

function header(params: string, s: CpuAttentionSpec, bindings: Binding[]): string {
  const decl = bindings
    .map(([name, access, kind], i) => {
      const elem = kind === 'rows' ? `vec4<${s.dtype}>` : kind === 'kv-rows' ? `vec4<${s.kvDtype ?? s.dtype}>` : kind;
      return `@group(0) @binding(${i + 1}) var<storage, ${access}> ${name}: array<${elem}>;`;
    })
    .join('\n');
  return `enable subgroups;
${enableF16([s.dtype, s.kvDtype ?? s.dtype])}${SUBGROUP_UNIFORMITY_OFF}
${params}
${decl}
${TICKETS.decl(bindings.length + 1)}
const DQ = ${s.D / 4}u;`;
}

/** The ticket loop's head: `wid` = (block, head, batch), blocks walked from the last when `lastFirst`. */
function mainHead(lastFirst: boolean): string {
  return `@compute @workgroup_size(${CPU_LANES})
fn main(@builtin(local_invocation_index) li: u32) {
  ${TICKETS.open('p.tiles', 'p.workgroups')}
  let bx = tile % p.gx;
  let wid = vec3<u32>(${lastFirst ? 'p.gx - 1u - bx' : 'bx'}, (tile / p.gx) % p.gy, tile / (p.gx * p.gy));
  var len = p.s;
  if (p.has_len != 0u) { len = min(u32(max(lens[wid.z], 0)), p.s); }`;
}

/** `let <name>_<r>_<c> = vec4<f32>(...)` for rows r of a [.., H, D] tensor; `rowBase(r)` is the row's vec4 offset. */
function loadRows(name: string, src: string, R: number, D: number, rowBase: (r: number) => string): string {
  return range(R)
    .map((r) =>
      range(D / 4)
        .map((c) => `  let ${name}_${r}_${c} = vec4<f32>(${src}[${rowBase(r)} + ${c}u]);`)
        .join('\n'),
    )
    .join('\n');
}

/** Row r of `a` (its vec4s a_<r>_<c>) dotted with another row, whose vec4 c is the WGSL expression b(c). */
const dotRow = (a: string, r: number, b: (c: number) => string, D: number) => sum(range(D / 4).map((c) => `dot(${a}_${r}_${c}, ${b(c)})`));

/** Whether query row `i` (u32) may see key `j` (u32): inside the sequence, and causal where asked. */
const visible = (i: string, j: string) => `(${j} < len && i32(${i}) + p.off < i32(len) && (p.causal == 0u || i32(${j}) <= i32(${i}) + p.off))`;

/**
 * The forward's and dQ's tile: block wid.x of 8R query rows of head wid.y, batch item wid.z. Lane l owns rows
 * i_r = q0 + 8r + l; ic_r is i_r clamped into the sequence, for loads (rows past T are never stored).
 */
function queryBlockHead(R: number): string {
  return `${mainHead(true)}
  let h = wid.y;
  let b = wid.z;
  let g = h / (p.hq / p.hkv);
  let q0 = wid.x * ${8 * R}u;
${range(R)
  .map((r) => `  let i_${r} = q0 + ${8 * r}u + li;\n  let ic_${r} = min(i_${r}, p.t - 1u);`)
  .join('\n')}`;
}

/** Lane l's key of the block, k0 + l (clamped into the block's keys): its K and V rows as k_<c>, v_<c>. */
function keyBlockLoads(C: number): string {
  return `    let kb = ((b * p.s + min(k0 + li, kend - 1u)) * p.hkv + g) * DQ;
${range(C)
  .map((c) => `    let k_${c} = vec4<f32>(k[kb + ${c}u]);\n    let v_${c} = vec4<f32>(v[kb + ${c}u]);`)
  .join('\n')}`;
}

/** Last key (plus one) that rows below `rowEnd` may see: the block's loop bound, uniform across the lanes. */
const keyEnd = (rowEnd: string) => `var kend = len;
  if (p.causal != 0u) { kend = min(kend, u32(clamp(i32(${rowEnd}) + p.off, 0, i32(len)))); }`;

/**
 * Forward. Bindings: q (1), k (2), v (3), o (4), lse (5), lens (6), tickets (7). Grid: (ceil(T / 8R), Hq, B).
 */
export function cpuForwardWgsl(params: string, s: CpuAttentionSpec): string {
  const { R, D, C, rows, lanes: keys, cols } = unrolled(s);
  const perKey = keys
    .map(
      (jj) => `${cols.map((c) => `    let kj${jj}_${c} = subgroupShuffle(k_${c}, ${jj}u);`).join('\n')}
${rows.map((r) => `    let s_${r}_${jj} = select(${NEG}, (${dotRow('q', r, (c) => `kj${jj}_${c}`, D)}) * p.scale2, ${visible(`i_${r}`, `k0 + ${jj}u`)});`).join('\n')}`,
    )
    .join('\n');
  return `${header(params, s, [
    ['q', 'read', 'rows'],
    ['k', 'read', 'rows'],
    ['v', 'read', 'rows'],
    ['o', 'read_write', 'rows'],
    ['lse', 'read_write', 'f32'],
    ['lens', 'read', 'i32'],
  ])}
${queryBlockHead(R)}
${loadRows('q', 'q', R, D, (r) => `((b * p.t + ic_${r}) * p.hq + h) * DQ`)}
${rows.map((r) => `  var m_${r} = ${NEG};\n  var l_${r} = 0.0;\n${cols.map((c) => `  var o_${r}_${c} = vec4<f32>();`).join('\n')}`).join('\n')}
  ${keyEnd(`q0 + ${8 * R}u`)}
  for (var k0 = 0u; k0 < kend; k0 += 8u) {
${keyBlockLoads(C)}
    // Scores in log2 units; masked ones stay at ${NEG}.
${perKey}
${rows
  .map(
    (r) => `    let mx_${r} = ${maxOf([`m_${r}`, ...keys.map((jj) => `s_${r}_${jj}`)])};
    let a_${r} = exp2(m_${r} - mx_${r});
${keys.map((jj) => `    let p_${r}_${jj} = select(0.0, exp2(s_${r}_${jj} - mx_${r}), s_${r}_${jj} > -1.0e29);`).join('\n')}
    l_${r} = l_${r} * a_${r} + ${sum(keys.map((jj) => `p_${r}_${jj}`))};
    m_${r} = mx_${r};`,
  )
  .join('\n')}
${cols
  .map(
    (c) => `    {
${keys.map((jj) => `      let vj_${jj} = subgroupShuffle(v_${c}, ${jj}u);`).join('\n')}
${rows.map((r) => `      o_${r}_${c} = o_${r}_${c} * a_${r} + ${sum(keys.map((jj) => `p_${r}_${jj} * vj_${jj}`))};`).join('\n')}
    }`,
  )
  .join('\n')}
  }
${rows
  .map(
    (r) => `  if (i_${r} < p.t) {
    let ok = i32(i_${r}) + p.off < i32(len) && l_${r} > 0.0;
    let inv = select(0.0, 1.0 / l_${r}, ok);
    let ob = ((b * p.t + i_${r}) * p.hq + h) * DQ;
${cols.map((c) => `    o[ob + ${c}u] = vec4<${s.dtype}>(o_${r}_${c} * inv);`).join('\n')}
    lse[(b * p.hq + h) * p.t + i_${r}] = select(0.0, (m_${r} + log2(l_${r})) * ${Math.LN2}, ok);
  }`,
  )
  .join('\n')}
  ${TICKETS.close}
}`;
}

/**
 * dQ. Bindings: q (1), k (2), v (3), dO (4), lse (5), dvec (6), dq (7), lens (8), tickets (9). Grid as the forward.
 * dS = P·(dP − Dvec) with P = exp(S − lse) recomputed, dQ = scale · dS·K.
 */
export function cpuDqWgsl(params: string, s: CpuAttentionSpec): string {
  const { R, D, C, rows, lanes: keys, cols } = unrolled(s);
  return `${header(params, s, [
    ...GRAD_INPUTS,
    ['dq', 'read_write', 'rows'],
    ['lens', 'read', 'i32'],
  ])}
${queryBlockHead(R)}
${loadRows('q', 'q', R, D, (r) => `((b * p.t + ic_${r}) * p.hq + h) * DQ`)}
${loadRows('do', 'dout', R, D, (r) => `((b * p.t + ic_${r}) * p.hq + h) * DQ`)}
${rows.map((r) => `  let lse2_${r} = lse[(b * p.hq + h) * p.t + ic_${r}] * ${Math.LOG2E};\n  let dd_${r} = dvec[(b * p.hq + h) * p.t + ic_${r}];`).join('\n')}
${rows.map((r) => cols.map((c) => `  var dq_${r}_${c} = vec4<f32>();`).join('\n')).join('\n')}
  ${keyEnd(`q0 + ${8 * R}u`)}
  for (var k0 = 0u; k0 < kend; k0 += 8u) {
${keyBlockLoads(C)}
${keys
  .map(
    (jj) => `${cols.map((c) => `    let kj${jj}_${c} = subgroupShuffle(k_${c}, ${jj}u);\n    let vj${jj}_${c} = subgroupShuffle(v_${c}, ${jj}u);`).join('\n')}
${rows
  .map(
    (r) => `    let p_${r}_${jj} = select(0.0, exp2((${dotRow('q', r, (c) => `kj${jj}_${c}`, D)}) * p.scale2 - lse2_${r}), ${visible(`i_${r}`, `k0 + ${jj}u`)});
    let ds_${r}_${jj} = p_${r}_${jj} * ((${dotRow('do', r, (c) => `vj${jj}_${c}`, D)}) - dd_${r});`,
  )
  .join('\n')}`,
  )
  .join('\n')}
${rows.map((r) => cols.map((c) => `    dq_${r}_${c} += ${sum(keys.map((jj) => `ds_${r}_${jj} * kj${jj}_${c}`))};`).join('\n')).join('\n')}
  }
${rows
  .map(
    (r) => `  if (i_${r} < p.t) {
    let qb = ((b * p.t + i_${r}) * p.hq + h) * DQ;
${cols.map((c) => `    dq[qb + ${c}u] = vec4<${s.dtype}>(dq_${r}_${c} * p.scale);`).join('\n')}
  }`,
  )
  .join('\n')}
  ${TICKETS.close}
}`;
}

/**
 * dK and dV. Bindings: q (1), k (2), v (3), dO (4), lse (5), dvec (6), dk (7), dv (8), lens (9), tickets (10).
 * Grid: (ceil(S / 8R), Hkv, B); each tile sums over the query heads of its KV group.
 */
export function cpuDkvWgsl(params: string, s: CpuAttentionSpec): string {
  const { R, D, rows, lanes: queries, cols } = unrolled(s);
  return `${header(params, s, [
    ...GRAD_INPUTS,
    ['dk', 'read_write', 'rows'],
    ['dv', 'read_write', 'rows'],
    ['lens', 'read', 'i32'],
  ])}
${mainHead(false)}
  let g = wid.y;
  let b = wid.z;
  let group = p.hq / p.hkv;
  let j0 = wid.x * ${8 * R}u;
${rows.map((r) => `  let j_${r} = j0 + ${8 * r}u + li;`).join('\n')}
${loadRows('k', 'k', R, D, (r) => `((b * p.s + min(j_${r}, p.s - 1u)) * p.hkv + g) * DQ`)}
${loadRows('v', 'v', R, D, (r) => `((b * p.s + min(j_${r}, p.s - 1u)) * p.hkv + g) * DQ`)}
${rows.map((r) => cols.map((c) => `  var dk_${r}_${c} = vec4<f32>();\n  var dv_${r}_${c} = vec4<f32>();`).join('\n')).join('\n')}
  // Query rows that can see these keys: valid rows (i + off < len), and under causality i + off >= j0.
  let row_hi = select(0u, u32(clamp(i32(len) - p.off, 0, i32(p.t))), j0 < len);
  var row_lo = 0u;
  if (p.causal != 0u) { row_lo = u32(clamp(i32(j0) - p.off, 0, i32(p.t))) & ~7u; }
  for (var hh = 0u; hh < group; hh++) {
    let h = g * group + hh;
    for (var i0 = row_lo; i0 < row_hi; i0 += 8u) {
      let ic = min(i0 + li, row_hi - 1u);
      let qb = ((b * p.t + ic) * p.hq + h) * DQ;
${cols.map((c) => `      let q_${c} = vec4<f32>(q[qb + ${c}u]);\n      let do_${c} = vec4<f32>(dout[qb + ${c}u]);`).join('\n')}
      let lse2 = lse[(b * p.hq + h) * p.t + ic] * ${Math.LOG2E};
      let dd = dvec[(b * p.hq + h) * p.t + ic];
  ${queries
  .map(
    (ii) => `${cols.map((c) => `      let qi${ii}_${c} = subgroupShuffle(q_${c}, ${ii}u);\n      let oi${ii}_${c} = subgroupShuffle(do_${c}, ${ii}u);`).join('\n')}
      let lse2_${ii} = subgroupShuffle(lse2, ${ii}u);
      let dd_${ii} = subgroupShuffle(dd, ${ii}u);
${rows
  .map(
    (r) => `      let p_${r}_${ii} = select(0.0, exp2((${dotRow('k', r, (c) => `qi${ii}_${c}`, D)}) * p.scale2 - lse2_${ii}), ${visible(`(i0 + ${ii}u)`, `j_${r}`)});
      let ds_${r}_${ii} = p_${r}_${ii} * ((${dotRow('v', r, (c) => `oi${ii}_${c}`, D)}) - dd_${ii});`,
  )
  .join('\n')}`,
  )
  .join('\n')}
${rows
  .map((r) =>
    cols
      .map(
        (c) => `      dv_${r}_${c} += ${sum(queries.map((ii) => `p_${r}_${ii} * oi${ii}_${c}`))};
      dk_${r}_${c} += ${sum(queries.map((ii) => `ds_${r}_${ii} * qi${ii}_${c}`))};`,
      )
      .join('\n'),
  )
  .join('\n')}
      }
  }
${rows
  .map(
    (r) => `  if (j_${r} < p.s) {
    let kb = ((b * p.s + j_${r}) * p.hkv + g) * DQ;
${cols.map((c) => `    dk[kb + ${c}u] = vec4<${s.dtype}>(dk_${r}_${c} * p.scale);\n    dv[kb + ${c}u] = vec4<${s.dtype}>(dv_${r}_${c});`).join('\n')}
  }`,
  )
  .join('\n')}
  ${TICKETS.close}
}`;
}

/**
 * Decode against a KV cache, for CPU adapters: a block of the (Hq/Hkv)·T query rows of one KV head (all of them
 * where they fit, see cpuDecodeRowBlock), all in every lane. The
 * workgroup kernel (attention.ts) stages key tiles through workgroup memory behind barriers and runs each row's
 * softmax on one thread, which llvmpipe serializes; here lane l walks its own keys (k0 + l, k0 + 8 + l, ...) with
 * its own online softmax, so a key's K and V rows are loaded once, by one lane, and the 8 lanes' states are folded
 * by subgroup reductions at the end of the chunk.
 */
export interface CpuDecodeSpec {
  /** q's and o's dtype. */
  dtype: 'f32' | 'f16';
  /** The caches' dtype (default dtype): f16 caches under f32 queries. */
  kvDtype?: 'f32' | 'f16';
  D: number;
  /** New tokens per sequence. */
  T: number;
  /** Query heads per KV head. */
  group: number;
  /** One chunk per (sequence, KV head): o is written here, with no combine pass. */
  direct: boolean;
  /**
   * Query rows a workgroup holds, a divisor of group·T (default all of them). A KV head's rows past what a lane can
   * hold go to several workgroups, each reading the chunk's K and V again for its own rows.
   */
  rowBlock?: number;
}

/**
 * Most row vec4s (rows·D/4) the decode kernel holds per lane; a KV head's (Hq/Hkv)·T rows are cut into blocks of
 * at most this many (cpuDecodeRowBlock), one workgroup each. The shader is unrolled over rows and head dim, and
 * llvmpipe's compile time grows faster than its size: 2.4 s at D 16 and 5.1 s at D 32 with 2 rows, 20 s at D 64
 * with 2 rows, 147 s at D 64 with 7 (shader cache off, session 13).
 */
export const CPU_DECODE_MAX_ROW_VEC4 = 16;
/**
 * A block of one row may hold up to this many vec4s: D 128 (Qwen3, Qwen2.5 from 1.5B). One row at D 128 took
 * 11.7 s to compile, cold, and ran 2.2x as fast as the workgroup kernel (session 28).
 */
export const CPU_DECODE_MAX_ONE_ROW_VEC4 = 32;

/**
 * Rows per workgroup for R query rows per KV head at head dim D: the largest divisor of R whose rows fit
 * CPU_DECODE_MAX_ROW_VEC4, else 1 where one row fits CPU_DECODE_MAX_ONE_ROW_VEC4, else 0 (the workgroup kernel).
 */
export function cpuDecodeRowBlock(R: number, D: number): number {
  const C = Math.ceil(D / 4);
  for (let rb = Math.min(R, Math.floor(CPU_DECODE_MAX_ROW_VEC4 / C)); rb >= 1; rb--) if (R % rb === 0) return rb;
  return C <= CPU_DECODE_MAX_ONE_ROW_VEC4 ? 1 : 0;
}


export const cpuDecodeKey = (s: CpuDecodeSpec) =>
  `attention:cpu-decode:${s.dtype}${s.kvDtype && s.kvDtype !== s.dtype ? `/kv=${s.kvDtype}` : ''}:D${s.D}:T${s.T}:G${s.group}:${s.direct ? 'o' : 'parts'}${s.rowBlock && s.rowBlock < s.group * s.T ? `:RB${s.rowBlock}` : ''}`;

const CPU_DECODE_PARAMS = `struct P { smax: u32, hq: u32, hkv: u32, chunk: u32, splits: u32, scale2: f32, tiles: u32, workgroups: u32, blocks: u32 }
@group(0) @binding(0) var<uniform> p: P;`;

/**
 * Bindings: q (1), k cache (2), v cache (3), lens (4), then o (5) when `direct`, else part_o (5) and part_ml (6)
 * in the combine pass's layout; tickets last. Tiles: (chunk, KV head, sequence), chunk fastest.
 */
export function cpuDecodeWgsl(s: CpuDecodeSpec): string {
  const C = s.D / 4;
  const RA = s.group * s.T;
  const R = s.rowBlock ?? RA;
  if (RA % R !== 0) throw new Error(`cpuDecodeWgsl: rowBlock ${R} does not divide the ${RA} rows of a KV head`);
  const rows = range(R);
  const cols = range(C);
  const outputs: Binding[] = s.direct
    ? [['o', 'read_write', 'rows']]
    : [
        ['part_o', 'read_write', 'vec4<f32>'],
        ['part_ml', 'read_write', 'vec2<f32>'],
      ];
  const decl = header(CPU_DECODE_PARAMS, { dtype: s.dtype, kvDtype: s.kvDtype, D: s.D, R }, [['q', 'read', 'rows'], ['k', 'read', 'kv-rows'], ['v', 'read', 'kv-rows'], ['lens', 'read', 'i32'], ...outputs]);
  // Row r of the KV head's rows is query head g·group + r / T, new token r % T, at position len − T + r % T; a
  // workgroup of one row block holds rows rb·R .. rb·R + R − 1.
  const blocked = R < RA;
  const head = (r: number) => (blocked ? `g * ${s.group}u + (rb * ${R}u + ${r}u) / ${s.T}u` : `g * ${s.group}u + ${Math.floor(r / s.T)}u`);
  const tok = (r: number) => (blocked ? `((rb * ${R}u + ${r}u) % ${s.T}u)` : `${r % s.T}u`);
  // How many positions before len the row's token sits (T − token).
  const fromEnd = (r: number) => (blocked ? `i32(${s.T}u - ${tok(r)})` : `${s.T - (r % s.T)}`);
  const store = s.direct
    ? rows
        .map(
          (r) => `    let ob_${r} = ((b * ${s.T}u + ${tok(r)}) * p.hq + ${head(r)}) * DQ;
    let inv_${r} = select(0.0, 1.0 / L_${r}, L_${r} > 0.0);
${cols.map((c) => `    o[ob_${r} + ${c}u] = vec4<${s.dtype}>(O_${r}_${c} * inv_${r});`).join('\n')}`,
        )
        .join('\n')
    : rows
        .map(
          (r) => `    let n_${r} = ((b * p.hq + ${head(r)}) * ${s.T}u + ${tok(r)}) * p.splits + split;
${cols.map((c) => `    part_o[n_${r} * DQ + ${c}u] = O_${r}_${c};`).join('\n')}
    part_ml[n_${r}] = vec2<f32>(M_${r}, L_${r});`,
        )
        .join('\n');
  return `${decl}

@compute @workgroup_size(${CPU_LANES})
fn main(@builtin(local_invocation_index) li: u32) {
  ${TICKETS.open('p.tiles', 'p.workgroups')}
  let split = tile % p.splits;
  ${blocked ? 'let rb = (tile / p.splits) % p.blocks;' : ''}
  let g = (tile / (p.splits * p.blocks)) % p.hkv;
  let b = tile / (p.splits * p.blocks * p.hkv);
  let len = min(u32(max(lens[b], 0)), p.smax);
  let c0 = split * p.chunk;
  let c1 = min(c0 + p.chunk, len);
${rows
  .map(
    (r) => `  let qb_${r} = ((b * ${s.T}u + ${tok(r)}) * p.hq + ${head(r)}) * DQ;
${cols.map((c) => `  let q_${r}_${c} = vec4<f32>(q[qb_${r} + ${c}u]);`).join('\n')}
  let pos_${r} = i32(len) - ${fromEnd(r)};
  var m_${r} = ${NEG};
  var l_${r} = 0.0;
${cols.map((c) => `  var o_${r}_${c} = vec4<f32>();`).join('\n')}`,
  )
  .join('\n')}
  // One key a lane per pass: 2 or 4 shared each pass's blend of the row states but were no faster at the mini
  // policy's shape, and compiled 2-3x longer.
  for (var k0 = c0; k0 < c1; k0 += ${CPU_LANES}u) {
    let j = k0 + li;
    let kb = ((b * p.smax + min(j, c1 - 1u)) * p.hkv + g) * DQ;
${cols.map((c) => `    let k_${c} = vec4<f32>(k[kb + ${c}u]);\n    let v_${c} = vec4<f32>(v[kb + ${c}u]);`).join('\n')}
${rows
  .map(
    (r) => `    let s_${r} = select(${NEG}, (${dotRow('q', r, (c) => `k_${c}`, s.D)}) * p.scale2, j < c1 && i32(j) <= pos_${r});
    let mx_${r} = max(m_${r}, s_${r});
    let a_${r} = exp2(m_${r} - mx_${r});
    let p_${r} = select(0.0, exp2(s_${r} - mx_${r}), s_${r} > -1.0e29);
    l_${r} = l_${r} * a_${r} + p_${r};
    m_${r} = mx_${r};
${cols.map((c) => `    o_${r}_${c} = o_${r}_${c} * a_${r} + p_${r} * v_${c};`).join('\n')}`,
  )
  .join('\n')}
  }
  // Fold the lanes' softmax states: rescale each to the workgroup's max, then sum.
${rows
  .map(
    (r) => `  let M_${r} = subgroupMax(m_${r});
  let f_${r} = exp2(m_${r} - M_${r});
  let L_${r} = subgroupAdd(l_${r} * f_${r});
${cols.map((c) => `  let O_${r}_${c} = subgroupAdd(o_${r}_${c} * f_${r});`).join('\n')}`,
  )
  .join('\n')}
  if (li == 0u) {
${store}
  }
  ${TICKETS.close}
}`;
}
