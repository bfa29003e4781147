import type { Gpu } from '../runtime/gpu.js';
import { Params } from '../runtime/params.js';
import { ShapeError } from '../runtime/errors.js';
import type { Tensor } from '../runtime/tensor.js';
import { LINEAR_WORKGROUP, enableF16, itemTypes, strideGrid, vec4Rows, wgslType } from './wgsl.js';
import { CPU_LANES } from './cpu-lanes.js';
import { rowBinding, rowWindows } from '../runtime/windows.js';

const WG = 256;
/** Positions are split as p = hi·ROPE_SPLIT + lo, each part looked up in a table. */
const ROPE_SPLIT = 1024;
/** Positions are clamped into [0, ROPE_MAX_POSITION]. */
export const ROPE_MAX_POSITION = ROPE_SPLIT * ROPE_SPLIT - 1;

/**
 * Rescaled RoPE, as HF's rope_scaling types that fix the frequencies up front (linear, YaRN) compute it: the
 * inverse frequency of each of the D/2 pairs, in place of theta^(-2i/D), and a factor on cos and sin (YaRN's
 * attention factor; default 1).
 */
export interface RopeScaling {
  invFreq: ArrayLike<number>;
  attentionFactor?: number;
}

export interface RopeOptions {
  /** Base of the inverse frequencies, inv_freq[i] = theta^(-2i/D): rope_theta from the config (1e6 for Qwen2.5). */
  theta: number;
  /** Frequencies and a cos/sin factor that replace theta's (a model's rope_scaling). */
  scaling?: RopeScaling;
  /**
   * i32 positions: [B, T] per token (padded batches), or [B] per sequence, where token t of sequence b sits at
   * positions[b] + t (decode with a KV cache). Without it, token t sits at t. Read on the GPU, so not validated:
   * positions are clamped into [0, ROPE_MAX_POSITION].
   */
  positions?: Tensor;
  /** Added to every position (e.g. the decode step). Default 0. */
  offset?: number;
  /** Output, same shape and dtype as x. May be x itself: the rotation is then done in place. */
  out?: Tensor;
  /**
   * 'elements' (one invocation per pair, the GPU default) or 'rows' (the software-adapter default: a workgroup of
   * 8 per token in a loop over tokens; each invocation makes cos/sin for its pairs once and rotates them in every
   * head, 4 pairs at a time where the head dim allows, with no division per element). Same results, bit for bit.
   */
  path?: 'elements' | 'rows';
}

/**
 * Rotary position embedding as in HF's apply_rotary_pos_emb (Qwen2/Qwen3): x·cos + rotate_half(x)·sin, where
 * rotate_half([x1, x2]) = [−x2, x1] over the two halves of the head dim, and angle = position·inv_freq[i] for
 * both index i and i + D/2. x is [B, T, H, D] (or [T, H, D]), f32 or f16; arithmetic in f32.
 *
 * Angles: cos and sin are not computed from an f32 angle, whose rounding alone is |angle|·2⁻²⁴ (2e-3 rad at
 * position 32768 with inv_freq 1). Instead the position is split p = 1024·hi + lo and cos/sin of hi·1024·f and
 * lo·f come from a table computed on the host in float64, combined by the angle-sum identity: an error of a few
 * f32 ulps (~3e-7) at any position below 2^20. The table is 2048·D/2 (cos, sin) pairs per (theta, D), made once.
 * HF rounds inv_freq and the angle to f32, so at long context its cos/sin differ from these exact ones by up to
 * |angle|·2⁻²³ (a few 1e-3 at 32k positions).
 */
export function rope(gpu: Gpu, x: Tensor, opts: RopeOptions): Tensor {
  return rotate(gpu, x, opts, false, 'rope');
}

/** Backward of `rope`: the rotation is orthogonal, so dx is dy rotated by −angle. Same options as the forward. */
export function ropeBackward(gpu: Gpu, dy: Tensor, opts: RopeOptions): Tensor {
  return rotate(gpu, dy, opts, true, 'ropeBackward');
}

/**
 * `rope` of q and k in place, in one dispatch: the same positions, batch, sequence and head dim, each with its own
 * number of heads (GQA) and the same dtype. What a decoder layer does to its queries and keys.
 */
export function ropeQK(gpu: Gpu, q: Tensor, k: Tensor, opts: Omit<RopeOptions, 'out'>): void {
  rotate(gpu, q, { ...opts, out: q }, false, 'ropeQK', k);
}

/** `second` (ropeQK): another tensor rotated in place in the same dispatch, like x but with its own head count. */
function rotate(gpu: Gpu, x: Tensor, opts: RopeOptions, inverse: boolean, op: string, second?: Tensor): Tensor {
  const { positions, theta } = opts;
  const offset = opts.offset ?? 0;
  const shapes = `x=${x}${second ? ` k=${second}` : ''}${positions ? ` positions=${positions}` : ''} offset=${offset}`;
  if (x.dtype !== 'f32' && x.dtype !== 'f16') throw new ShapeError(`${op} needs f32 or f16 x`, { op, shapes });
  if (x.rank !== 3 && x.rank !== 4) throw new ShapeError(`${op} needs x [B, T, H, D] or [T, H, D]`, { op, shapes });
  const [b, t, h, d] = x.rank === 4 ? x.shape : [1, ...x.shape];
  // The second tensor's heads follow the first's in the index space: h2 of them per token.
  let h2 = 0;
  if (second) {
    const [b2, t2, hk, d2] = second.rank === 4 ? second.shape : [1, ...second.shape];
    // Both are written in place: they may share a buffer (slices of one fused q/k/v output) but not bytes.
    if (second.rank !== x.rank || b2 !== b || t2 !== t || d2 !== d || second.dtype !== x.dtype || second.overlaps(x)) {
      throw new ShapeError(`${op} needs q and k with the same batch, sequence, head dim and dtype, in bytes of their own`, { op, shapes });
    }
    h2 = hk;
  }
  if (d % 2 !== 0) throw new ShapeError(`${op} needs an even head dim, got ${d}`, { op, shapes });
  if (!(theta > 1)) throw new ShapeError(`${op} needs theta > 1, got ${theta}`, { op, shapes });
  const scaling = opts.scaling;
  if (scaling) {
    const f = scaling.invFreq;
    if (f.length !== d / 2 || !Array.from(f).every((v) => v > 0 && Number.isFinite(v))) {
      throw new ShapeError(`${op} scaling.invFreq must hold D/2 = ${d / 2} positive finite numbers, got ${f.length}: ${Array.from(f).slice(0, 4).join(', ')}${f.length > 4 ? ', ...' : ''}`, { op, shapes });
    }
    const m = scaling.attentionFactor ?? 1;
    if (!(m > 0) || !Number.isFinite(m)) throw new ShapeError(`${op} scaling.attentionFactor must be a positive finite number, got ${m}`, { op, shapes });
  }
  if (!Number.isInteger(offset) || offset < 0 || offset > ROPE_MAX_POSITION) {
    throw new ShapeError(`${op} offset must be an integer in [0, ${ROPE_MAX_POSITION}]`, { op, shapes });
  }
  let mode: 'none' | 'token' | 'seq' = 'none';
  if (positions) {
    if (positions.dtype !== 'i32') throw new ShapeError(`${op} positions must be i32`, { op, shapes });
    const s = positions.shape.join(',');
    if (s === `${b},${t}` || (x.rank === 3 && s === `${t}`)) mode = 'token';
    else if (s === `${b}`) mode = 'seq';
    else throw new ShapeError(`${op} positions must be [B, T] or [B] for x [B, T, H, D]`, { op, shapes });
  }
  const y = opts.out ?? gpu.tensor(x.shape, x.dtype, undefined, op);
  const inPlace = y.buffer === x.buffer;
  if (y.size !== x.size || y.dtype !== x.dtype || (inPlace && y.byteOffset !== x.byteOffset)) {
    throw new ShapeError(`${op} output must match x (or be x, in place), got ${y}`, { op, shapes });
  }
  const tokens = b * t;
  const half = d / 2;
  if (tokens * (h + h2) === 0 || half === 0) return y;

  const table = ropeTable(gpu, theta, d, scaling);
  if ((opts.path ?? (gpu.softwareAdapter ? 'rows' : 'elements')) === 'rows') {
    rotateRows(gpu, op, shapes, { x, y, second, positions, table, mode, inverse, offset }, [b, t, h, d], h2);
    return y;
  }
  const ty = wgslType(x.dtype);
  const dst = inPlace ? 'x' : 'y';
  const posBinding = mode === 'none' ? '' : `@group(0) @binding(2) var<storage, read> pos: array<i32>;`;
  const nb = mode === 'none' ? 2 : 3;
  const position = {
    none: 'p.offset + i32(tt)',
    token: 'p.offset + pos[tok]',
    seq: 'p.offset + pos[tok / p.t] + i32(tt)',
  }[mode];
  // Rotates the pair at element o of `src` into `out` (skips sIn, sOut).
  const pair = (src: string, out: string, sIn: string, sOut: string) => `
    let x1 = f32(${src}[${sIn} + o]);
    let x2 = f32(${src}[${sIn} + o + p.half]);
    ${out}[${sOut} + o] = ${ty}(x1 * c - x2 * s);
    ${out}[${sOut} + o + p.half] = ${ty}(x2 * c + x1 * s);`;
  const pipeline = gpu.pipeline(`${op}:${x.dtype}:${mode}:${inPlace}`, () => /* wgsl */ `
${enableF16([x.dtype])}
struct P { n: u32, t: u32, heads: u32, half: u32, tok0: u32, offset: i32, sx: u32, sy: u32, heads2: u32, sk: u32, items: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> cs: array<vec2<f32>>;
${posBinding}
@group(0) @binding(${nb}) var<storage, ${inPlace ? 'read_write' : 'read'}> x: array<${ty}>;
${inPlace ? '' : `@group(0) @binding(${nb + 1}) var<storage, read_write> y: array<${ty}>;`}
${second ? `@group(0) @binding(${nb + 1}) var<storage, read_write> k: array<${ty}>;` : ''}
${LINEAR_WORKGROUP}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
  let g = linear_wg(wid, nwg) * ${WG}u + li;
  if (g >= p.n) { return; }
  let i = g % p.half;
  // A token's heads: x's, then (ropeQK) k's.
  let hr = g / p.half;
  let tl = hr / (p.heads + p.heads2);
  let head = hr % (p.heads + p.heads2);
  let tok = p.tok0 + tl;
  let tt = tok % p.t;
  let q = u32(clamp(${position}, 0, ${ROPE_MAX_POSITION}));
  // cos/sin of (lo + 1024 hi)·f from the float64 tables of lo·f and 1024·hi·f.
  let a = cs[(q % ${ROPE_SPLIT}u) * p.half + i];
  let b = cs[(${ROPE_SPLIT}u + q / ${ROPE_SPLIT}u) * p.half + i];
  let c = a.x * b.x - a.y * b.y;
  let s = ${inverse ? '-' : ''}(a.y * b.x + a.x * b.y);
  if (head < p.heads) {
    let o = (tl * p.heads + head) * 2u * p.half + i;${pair('x', dst, 'p.sx', 'p.sy')}
  }${
    second
      ? ` else {
    let o = (tl * p.heads2 + head - p.heads) * 2u * p.half + i;${pair('k', 'k', 'p.sk', 'p.sk')}
  }`
      : ''
  }
}`);
  dispatchRotations(gpu, op, shapes, pipeline, { x, y, second, positions, table, mode, offset }, [b, t, h, d], h2, 1, (count) => {
    const n = count * (h + h2) * half;
    return { n, grid: gpu.grid(Math.ceil(n / WG)) };
  });
  return y;
}

/**
 * rotate's dispatches, one per window of tokens: P's n and grid from `work` (given the window's tokens), then t,
 * heads, half, the first token, the offset, the skips of x, y, (heads2) and k in items of `vec`, and half in items.
 */
function dispatchRotations(
  gpu: Gpu,
  op: string,
  shapes: string,
  pipeline: GPUComputePipeline,
  a: { x: Tensor; y: Tensor; second?: Tensor; positions?: Tensor; table: Tensor; mode: 'none' | 'token' | 'seq'; offset: number },
  [b, t, h, d]: number[],
  h2: number,
  vec: number,
  work: (tokens: number) => { n: number; grid: [number, number, number] },
): void {
  const inPlace = a.y.buffer === a.x.buffer;
  for (const win of rowWindows(gpu, b * t, (h + h2) * d * 4, op)) {
    const bx = rowBinding(a.x, win.start, win.count, h * d);
    const by = inPlace ? bx : rowBinding(a.y, win.start, win.count, h * d);
    const bk = a.second ? rowBinding(a.second, win.start, win.count, h2 * d) : undefined;
    const { n, grid } = work(win.count);
    gpu.dispatch({
      op,
      shapes,
      pipeline,
      params: new Params()
        .u32(n)
        .u32(t)
        .u32(h)
        .u32(d / 2)
        .u32(win.start)
        .i32(a.offset)
        .u32(bx.skip / vec)
        .u32(by.skip / vec)
        .u32(h2)
        .u32((bk?.skip ?? 0) / vec)
        .u32(d / 2 / vec)
        .bytes(),
      bindings: [a.table, ...(a.positions && a.mode !== 'none' ? [a.positions] : []), bx.binding, ...(inPlace ? [] : [by.binding]), ...(bk ? [bk.binding] : [])],
      workgroups: grid,
    });
  }
}

/** rotate on the 'rows' path (RopeOptions.path). */
function rotateRows(
  gpu: Gpu,
  op: string,
  shapes: string,
  a: { x: Tensor; y: Tensor; second?: Tensor; positions?: Tensor; table: Tensor; mode: 'none' | 'token' | 'seq'; inverse: boolean; offset: number },
  [b, t, h, d]: number[],
  h2: number,
): void {
  const { x, y, second, mode, inverse } = a;
  const half = d / 2;
  const inPlace = y.buffer === x.buffer;
  const vec = vec4Rows(half, [x, y, ...(second ? [second] : [])]);
  const { t: ty, f } = itemTypes(x.dtype, vec);
  const dst = inPlace ? 'x' : 'y';
  const nb = mode === 'none' ? 2 : 3;
  const position = { none: 'p.offset + i32(tt)', token: 'p.offset + pos[tok]', seq: 'p.offset + pos[tok / p.t] + i32(tt)' }[mode];
  // cos/sin of (lo + 1024 hi)·f for this invocation's pairs, from the tables of lo·f and 1024·hi·f.
  const angles =
    vec === 4
      ? `let a0 = cs[(lo + 4u * j) / 2u]; let a1 = cs[(lo + 4u * j) / 2u + 1u];
      let b0 = cs[(hi + 4u * j) / 2u]; let b1 = cs[(hi + 4u * j) / 2u + 1u];
      let ac = vec4<f32>(a0.x, a0.z, a1.x, a1.z); let asn = vec4<f32>(a0.y, a0.w, a1.y, a1.w);
      let bc = vec4<f32>(b0.x, b0.z, b1.x, b1.z); let bs = vec4<f32>(b0.y, b0.w, b1.y, b1.w);`
      : `let av = cs[lo + j]; let bv = cs[hi + j];
      let ac = av.x; let asn = av.y; let bc = bv.x; let bs = bv.y;`;
  const heads = (n: string, src: string, out: string, sIn: string, sOut: string, first: string) => `
      for (var hd = 0u; hd < ${n}; hd++) {
        let o = (tl * ${n} + hd) * 2u * p.items + j;
        let x1 = ${f}(${src}[${sIn} + o]);
        let x2 = ${f}(${src}[${sIn} + o + p.items]);
        ${out}[${sOut} + o] = ${ty}(x1 * c - x2 * s);
        ${out}[${sOut} + o + p.items] = ${ty}(x2 * c + x1 * s);
      }${first}`;
  const pipeline = gpu.pipeline(`${op}-rows:${x.dtype}:${mode}:${inPlace}:${vec}`, () => /* wgsl */ `
${enableF16([x.dtype])}
struct P { n: u32, t: u32, heads: u32, half: u32, tok0: u32, offset: i32, sx: u32, sy: u32, heads2: u32, sk: u32, items: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> cs: array<${vec === 4 ? 'vec4<f32>' : 'vec2<f32>'}>;
${mode === 'none' ? '' : '@group(0) @binding(2) var<storage, read> pos: array<i32>;'}
@group(0) @binding(${nb}) var<storage, ${inPlace ? 'read_write' : 'read'}> x: array<${ty}>;
${inPlace ? '' : `@group(0) @binding(${nb + 1}) var<storage, read_write> y: array<${ty}>;`}
${second ? `@group(0) @binding(${nb + 1}) var<storage, read_write> k: array<${ty}>;` : ''}
@compute @workgroup_size(${CPU_LANES})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
  for (var tl = wid.x + wid.y * nwg.x; tl < p.n; tl += nwg.x * nwg.y) {
    let tok = p.tok0 + tl;
    let tt = tok % p.t;
    let q = u32(clamp(${position}, 0, ${ROPE_MAX_POSITION}));
    let lo = (q % ${ROPE_SPLIT}u) * p.half;
    let hi = (${ROPE_SPLIT}u + q / ${ROPE_SPLIT}u) * p.half;
    for (var j = li; j < p.items; j += ${CPU_LANES}u) {
      ${angles}
      let c = ac * bc - asn * bs;
      let s = ${inverse ? '-' : ''}(asn * bc + ac * bs);${heads('p.heads', 'x', dst, 'p.sx', 'p.sy', '')}${second ? heads('p.heads2', 'k', 'k', 'p.sk', 'p.sk', '') : ''}
    }
  }
}`);
  dispatchRotations(gpu, op, shapes, pipeline, a, [b, t, h, d], h2, vec, (count) => ({ n: count, grid: strideGrid(gpu, count, 1) }));
}

const tables = new WeakMap<Gpu, Map<string, Tensor<'f32'>>>();

/**
 * (cos, sin) pairs in float64, rounded once to f32: rows 0..1023 hold angle lo·f[i], rows 1024..2047 hold
 * hi·1024·f[i], each row D/2 pairs. Cached for the life of the device. A scaling's attention factor multiplies
 * only the lo rows: the kernels' angle-sum products then carry it once, into cos and sin alike.
 */
function ropeTable(gpu: Gpu, theta: number, d: number, scaling?: RopeScaling): Tensor<'f32'> {
  let cache = tables.get(gpu);
  if (!cache) tables.set(gpu, (cache = new Map()));
  const factor = scaling?.attentionFactor ?? 1;
  const key = scaling ? `scaled:${d}:${factor}:${Array.from(scaling.invFreq).join(',')}` : `${theta}:${d}`;
  const hit = cache.get(key);
  if (hit) return hit;
  const half = d / 2;
  const invFreq = (i: number) => (scaling ? scaling.invFreq[i] : theta ** ((-2 * i) / d));
  const data = new Float32Array(2 * ROPE_SPLIT * half * 2);
  for (let r = 0; r < 2 * ROPE_SPLIT; r++) {
    const step = r < ROPE_SPLIT ? r : (r - ROPE_SPLIT) * ROPE_SPLIT;
    const m = r < ROPE_SPLIT ? factor : 1;
    for (let i = 0; i < half; i++) {
      const angle = step * invFreq(i);
      data[2 * (r * half + i)] = m * Math.cos(angle);
      data[2 * (r * half + i) + 1] = m * Math.sin(angle);
    }
  }
  const table = gpu.tensor([2 * ROPE_SPLIT, half, 2], 'f32', data, 'ropeTable');
  // Cached beyond any gpu.scope() it happens to be created in.
  gpu.keep(table);
  cache.set(key, table);
  return table;
}
