/**
 * Attention decode (flash-decoding; layouts as in attention.ts, q the new tokens, k/v the cache): the keys of the
 * cache are split into chunks across workgroups; each workgroup runs all Hq/Hkv * T query rows of one KV head over
 * its chunk (so a K/V tile is read once per group) and writes a partial (max, sum, unnormalized output); a second
 * pass combines the partials. Also the cache append.
 */
import { batchItems, batchRuns, copyBatchItems } from './attention-batches.js';
import type { Gpu } from '../runtime/gpu.js';
import { Params } from '../runtime/params.js';
import { ShapeError } from '../runtime/errors.js';
import type { Tensor } from '../runtime/tensor.js';
import { LINEAR_WORKGROUP, enableF16 } from './wgsl.js';
import { ticketCounter, ticketWorkgroups } from './tickets.js';
import type { Dims, FloatDType } from './attention-params.js';
import { CPU_LANES } from './cpu-lanes.js';
import { CPU_DECODE_MAX_ONE_ROW_VEC4, cpuDecodeKey, cpuDecodeRowBlock, cpuDecodeWgsl } from './attention-cpu.js';
import {
  LOG2E, NEG, ceilDiv, range, roundUp, checkQkv, isFloat, layout, bindRows, loadFn, storeFn,
  tileLoad, lenPrologue, vecBytes, cpuTiledUnfit, type Layout,
} from './attention-common.js';

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
   * chunk of keys with a softmax per lane for a block of a KV head's (Hq/Hkv)·T query rows, for CPU adapters and
   * head dims that are a multiple of 4 up to 128 (rows·D/4 <= 16, or one row up to 32: llvmpipe's compile
   * time). 'auto' (default): cpu-tiled where it can run on a software adapter and no `bk` is given.
   */
  path?: 'auto' | 'scalar' | 'cpu-tiled';
}

interface DecodeSpec {
  /** q's and o's dtype. */
  dtype: FloatDType;
  /** The caches' dtype: dtype, or f16 under f32 queries. */
  kvDtype: FloatDType;
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

function decodeBytes(kvDtype: FloatDType, D: number, R: number, bk: number): number {
  const l = layout(D, kvDtype, DECODE_COLS);
  return 16 * R * l.DP4 + 2 * vecBytes(kvDtype) * bk * l.RS + 4 * R * bk + 12 * R + 64;
}

function decodeWgsl(s: DecodeSpec): string {
  const lq = layout(s.D, s.dtype, DECODE_COLS);
  const l = layout(s.D, s.kvDtype, DECODE_COLS);
  const st = s.kvDtype;
  const NT = DECODE_NT;
  const NP = ceilDiv(s.R * l.DP4, NT);
  const f = (x: string) => (st === 'f32' ? x : `vec4<f32>(${x})`);
  const ps = range(NP);
  return /* wgsl */ `
${enableF16([s.dtype, st])}
struct P { t: u32, smax: u32, hq: u32, hkv: u32, chunk: u32, splits: u32, scale2: f32, d: u32, d4: u32 }
@group(0) @binding(0) var<uniform> p: P;
${bindRows(1, 'q', lq, 'read')}
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
${loadFn('q', lq)}
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
 * `attentionCacheAppend`), and lengths[b] (i32 [B]) counts the valid cache rows including the new ones. The
 * caches have q's dtype, or are f16 under f32 queries (half the memory; scores and sums stay f32).
 * Token t of sequence b sits at position lengths[b] - T + t and attends cache rows j <= that position.
 * Returns o [B, T, Hq, D].
 */
export function attentionDecode<D extends FloatDType>(
  gpu: Gpu,
  q: Tensor<D>,
  kCache: Tensor<FloatDType>,
  vCache: Tensor<FloatDType>,
  lengths: Tensor<'i32'>,
  opts: AttentionDecodeOptions = {},
): Tensor<D> {
  const op = 'attentionDecode';
  const shapes = `q=${q} kCache=${kCache} vCache=${vCache} lengths=${lengths}`;
  const d = checkQkv(op, q, kCache, vCache, { causal: false, lengths, scale: opts.scale }, true);
  const kvDtype = kCache.dtype as FloatDType;
  const group = d.Hq / d.Hkv;
  const R = group * d.T;
  if (R > DECODE_MAX_ROWS) {
    throw new ShapeError(`decode runs (Hq/Hkv)*T <= ${DECODE_MAX_ROWS} rows per KV head; use attention() for longer chunks`, { op, shapes });
  }
  if (d.T > d.S) throw new ShapeError('more new tokens than cache rows', { op, shapes });
  if (opts.splits !== undefined && !(Number.isInteger(opts.splits) && opts.splits >= 1)) {
    throw new ShapeError(`splits must be a positive integer, got ${opts.splits}`, { op, shapes });
  }
  const runs = batchRuns(gpu, op, shapes, [q, kCache, vCache]);
  if (runs) {
    const o = gpu.tensor(q.shape, q.dtype, undefined, op) as Tensor<D>;
    for (const { b0, n } of runs) {
      gpu.scope(() => {
        const [qr, kr, vr] = [q, kCache, vCache].map((t) => batchItems(gpu, t, b0, n).t);
        copyBatchItems(gpu, attentionDecode(gpu, qr, kr, vr, batchItems(gpu, lengths, b0, n).t, opts), o, b0);
      });
    }
    return o;
  }
  if (useCpuDecode(gpu, d, R, opts, op, shapes)) return cpuDecode(gpu, q, kCache, vCache, lengths, d, kvDtype, opts, shapes);
  const limit = gpu.limits.maxComputeWorkgroupStorageSize ?? 16384;
  const bk = opts.bk ?? [64, 32, 16, 8, 4].find((x) => decodeBytes(kvDtype, d.D, R, x) <= limit);
  if (bk === undefined || bk % 4 !== 0 || decodeBytes(kvDtype, d.D, R, bk) > limit) {
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
  const spec: DecodeSpec = { dtype: d.dtype, kvDtype, D: d.D, R, T: d.T, bk };
  const dl = layout(d.D, d.dtype, DECODE_COLS);
  const kv = kvDtype === d.dtype ? '' : `/kv=${kvDtype}`;
  gpu.dispatch({
    op: `${op}.split`,
    shapes,
    pipeline: gpu.pipeline(`attention:decode:${d.dtype}${kv}:dp4=${dl.DP4}:vec=${dl.vec}:R=${R}:T=${d.T}:bk=${bk}`, () => decodeWgsl(spec)),
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
  const unfit = cpuTiledUnfit(gpu, D);
  if (unfit) return unfit;
  return cpuDecodeRowBlock(rows, D) ? undefined : `holds a query row of D/4 <= ${CPU_DECODE_MAX_ONE_ROW_VEC4} vec4s, got head dim ${D}`;
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

/** The cpu-tiled decode: one dispatch over (chunk, row block, KV head, sequence) tiles, plus the combine pass when K is split. */
function cpuDecode<D extends FloatDType>(
  gpu: Gpu,
  q: Tensor<D>,
  kCache: Tensor<FloatDType>,
  vCache: Tensor<FloatDType>,
  lengths: Tensor<'i32'>,
  d: Dims,
  kvDtype: FloatDType,
  opts: AttentionDecodeOptions,
  shapes: string,
): Tensor<D> {
  const op = 'attentionDecode';
  const group = d.Hq / d.Hkv;
  const rowBlock = cpuDecodeRowBlock(group * d.T, d.D);
  const blocks = (group * d.T) / rowBlock;
  // Both shader threads busy, with some slack for sequences of different lengths; chunks of at least one pass (a
  // key per lane).
  const splits = Math.min(ceilDiv(d.S, CPU_LANES), Math.max(1, opts.splits ?? ceilDiv(8, d.B * d.Hkv * blocks)));
  const chunk = roundUp(ceilDiv(d.S, splits), CPU_LANES);
  const nsplit = ceilDiv(d.S, chunk);
  const o = gpu.tensor(q.shape, q.dtype, undefined, op) as Tensor<D>;
  if (q.size === 0) return o;
  const direct = nsplit === 1;
  const rows = d.B * d.Hq * d.T;
  const parts = direct ? undefined : [gpu.tensor([rows, nsplit, d.D], 'f32', undefined, op), gpu.tensor([rows, nsplit, 2], 'f32', undefined, op)];
  const spec = { dtype: d.dtype, kvDtype, D: d.D, T: d.T, group, direct, rowBlock };
  const tiles = nsplit * blocks * d.Hkv * d.B;
  const workgroups = ticketWorkgroups(tiles);
  const scale = opts.scale ?? 1 / Math.sqrt(d.D);
  gpu.dispatch({
    op: `${op}.cpu`,
    shapes,
    pipeline: gpu.pipeline(cpuDecodeKey(spec), () => cpuDecodeWgsl(spec)),
    params: new Params().u32(d.S).u32(d.Hq).u32(d.Hkv).u32(chunk).u32(nsplit).f32(scale * LOG2E).u32(tiles).u32(workgroups).u32(blocks).bytes(),
    bindings: [q, kCache, vCache, lengths, ...(parts ?? [o]), ticketCounter(gpu)],
    workgroups: [workgroups],
  });
  if (parts) {
    combine(gpu, d, nsplit, parts[0], parts[1], o, shapes);
    parts.forEach((t) => t.dispose());
  }
  return o;
}

export interface CacheAppendOptions {
  /**
   * x's sequences are the cache's batchStart .. batchStart + n - 1 (x [n, T, Hkv, D], positions i32 [n]): a
   * prefill run of some of the batch. Default 0, with n the cache's batch.
   */
  batchStart?: number;
}

/**
 * Writes x [B, T, Hkv, D] into cache [B, Smax, Hkv, D] at rows positions[b] .. positions[b] + T - 1 of each
 * sequence (positions: i32 [B], usually the lengths before this step). Rows that would fall past Smax are
 * dropped. x and the cache are f32 or f16, each its own: x is rounded to an f16 cache as it is written. Call once
 * for k and once for v (or attentionCacheAppendKV for both), then advance the lengths by T.
 */
export function attentionCacheAppend(gpu: Gpu, cache: Tensor, x: Tensor, positions: Tensor<'i32'>, opts: CacheAppendOptions = {}): void {
  appendItems(gpu, 'attentionCacheAppend', [[cache, x]], positions, opts.batchStart);
}

/** attentionCacheAppend of k into kCache and v into vCache (the same shapes) in one dispatch. */
export function attentionCacheAppendKV(gpu: Gpu, kCache: Tensor, vCache: Tensor, k: Tensor, v: Tensor, positions: Tensor<'i32'>, opts: CacheAppendOptions = {}): void {
  appendItems(gpu, 'attentionCacheAppendKV', [[kCache, k], [vCache, v]], positions, opts.batchStart);
}

/** appendRows into the cache items x covers: views where they can be bound, else copies put back after. */
function appendItems(gpu: Gpu, op: string, pairs: Array<[Tensor, Tensor]>, positions: Tensor<'i32'>, batchStart = 0): void {
  const [cache, x] = pairs[0];
  const n = x.shape[0];
  if (batchStart === 0 && n === cache.shape[0]) return appendRows(gpu, op, pairs, positions);
  const shapes = `${pairs.map(([c, t]) => `cache=${c} x=${t}`).join(' ')} positions=${positions} batchStart=${batchStart}`;
  if (!Number.isInteger(batchStart) || batchStart < 0 || cache.rank !== 4 || x.rank !== 4 || batchStart + n > cache.shape[0]) {
    throw new ShapeError(`x's ${n} sequences from batchStart ${batchStart} must lie within the cache's batch`, { op, shapes });
  }
  gpu.scope(() => {
    const items = pairs.map(([c]) => batchItems(gpu, c, batchStart, n));
    appendRows(gpu, op, pairs.map(([, t], j) => [items[j].t, t]), positions);
    items.forEach((c, j) => c.copied && copyBatchItems(gpu, c.t, pairs[j][0], batchStart));
  });
}

function appendRows(gpu: Gpu, op: string, pairs: Array<[Tensor, Tensor]>, positions: Tensor<'i32'>): void {
  const [cache, x] = pairs[0];
  const shapes = `${pairs.map(([c, t]) => `cache=${c} x=${t}`).join(' ')} positions=${positions}`;
  for (const [c, t] of pairs) {
    if (c.rank !== 4 || t.rank !== 4) throw new ShapeError('cache and x must be [B, S, Hkv, D]', { op, shapes });
    if (c.shape.join() !== cache.shape.join() || t.shape.join() !== x.shape.join()) {
      throw new ShapeError('k and v, and their caches, must have the same shapes', { op, shapes });
    }
  }
  const [B, Smax, H, D] = cache.shape;
  const T = x.shape[1];
  for (const [c, t] of pairs) {
    if (t.shape[0] !== B || t.shape[2] !== H || t.shape[3] !== D || t.dtype !== x.dtype || c.dtype !== cache.dtype || !isFloat(t) || !isFloat(c)) {
      throw new ShapeError('x must be [B, T, Hkv, D], k and v of one dtype and their caches of one dtype (f32 or f16)', { op, shapes });
    }
  }
  if (pairs.length > 1 && pairs[0][0].overlaps(pairs[1][0])) throw new ShapeError('the k and v caches must be separate tensors', { op, shapes });
  if (positions.dtype !== 'i32' || positions.size !== B) throw new ShapeError('positions must be i32 [B]', { op, shapes });
  const runs = batchRuns(gpu, op, shapes, pairs.flat());
  if (runs) {
    for (const { b0, n } of runs) {
      gpu.scope(() => {
        const parts = pairs.map(([c, t]) => [batchItems(gpu, c, b0, n), batchItems(gpu, t, b0, n).t] as const);
        appendRows(gpu, op, parts.map(([c, t]) => [c.t, t]), batchItems(gpu, positions, b0, n).t);
        // A cache run that had to be copied (its offset not aligned for binding) goes back into place.
        parts.forEach(([c], j) => c.copied && copyBatchItems(gpu, c.t, pairs[j][0], b0));
      });
    }
    return;
  }
  if (x.size === 0) return;
  const WG = 256;
  const [dtype, cdtype] = [x.dtype, cache.dtype];
  const n = pairs.length;
  const pipeline = gpu.pipeline(`attention:append:${dtype}${cdtype === dtype ? '' : `>${cdtype}`}:${n}`, () => /* wgsl */ `
${enableF16([dtype, cdtype])}
struct P { n: u32, t: u32, smax: u32, row: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> pos: array<i32>;
${pairs
  .map((_, j) => `@group(0) @binding(${2 + 2 * j}) var<storage, read> x${j}: array<${dtype}>;
@group(0) @binding(${3 + 2 * j}) var<storage, read_write> cache${j}: array<${cdtype}>;`)
  .join('\n')}
${LINEAR_WORKGROUP}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let i = linear_wg(wid, nwg) * ${WG}u + li;
  if (i >= p.n) { return; }
  let e = i % p.row;
  let bt = i / p.row;
  let b = bt / p.t;
  let at = pos[b] + i32(bt % p.t);
  if (at >= 0 && at < i32(p.smax)) {
    let d = (b * p.smax + u32(at)) * p.row + e;
    ${pairs.map((_, j) => (cdtype === dtype ? `cache${j}[d] = x${j}[i];` : `cache${j}[d] = ${cdtype}(x${j}[i]);`)).join(' ')}
  }
}`);
  gpu.dispatch({
    op,
    shapes,
    pipeline,
    params: new Params().u32(x.size).u32(T).u32(Smax).u32(H * D).bytes(),
    bindings: [positions, ...pairs.flatMap(([c, t]) => [t, c])],
    workgroups: gpu.grid(ceilDiv(x.size, WG)),
  });
}
