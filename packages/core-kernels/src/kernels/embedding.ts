import type { Gpu } from '../runtime/gpu.js';
import { Params } from '../runtime/params.js';
import { GpuLimitError, ShapeError } from '../runtime/errors.js';
import { DTYPE_BYTES } from '../runtime/dtype.js';
import { Tensor } from '../runtime/tensor.js';
import { LINEAR_WORKGROUP, enableF16, itemTypes, strideGrid, vec4Rows, wgslType } from './wgsl.js';
import { CPU_LANES } from './cpu-lanes.js';
import { rowBinding, rowWindows } from '../runtime/windows.js';

const WG = 256;
/** Marks "no next token" in the backward's token chains. */
const NONE = 0xffffffff;

/**
 * Token ids: an i32 tensor already on the GPU (out-of-range ids are clamped into [0, V) in the kernel, since
 * they cannot be checked without a readback), or host ids, which are validated and uploaded.
 */
export type TokenIds = Tensor | Int32Array | readonly number[];

/**
 * How the row copies run: 'elements' (one invocation per element, the GPU default) or 'rows' (the software-adapter
 * default: a workgroup of CPU_LANES invocations per token in a loop over tokens, vec4s of a row per invocation where
 * rows start on a vec4, so no division per element and one id load per row; llvmpipe divides lane by lane and pays
 * microseconds per workgroup).
 */
export type EmbeddingPath = 'elements' | 'rows';

const pathFor = (gpu: Gpu, asked?: EmbeddingPath): EmbeddingPath => asked ?? (gpu.softwareAdapter ? 'rows' : 'elements');

function resolveIds(gpu: Gpu, ids: TokenIds, vocab: number, op: string, shapes: string): { t: Tensor; temp: boolean } {
  if (ids instanceof Tensor) {
    if (ids.dtype !== 'i32') throw new ShapeError(`${op} needs i32 ids, got ${ids}`, { op, shapes });
    return { t: ids, temp: false };
  }
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i];
    if (!Number.isInteger(id) || id < 0 || id >= vocab) {
      throw new ShapeError(`${op} id ${id} at position ${i} is outside the vocabulary [0, ${vocab})`, { op, shapes });
    }
  }
  return { t: gpu.tensor([ids.length], 'i32', ids, op), temp: true };
}

const CLAMP_ID = /* wgsl */ `
fn clamp_id(raw: i32) -> u32 { return u32(clamp(raw, 0, i32(p.v) - 1)); }
`;

/**
 * Embedding lookup: y[..., :] = table[ids[...], :] for ids of any shape and table [V, H] (f32 or f16); y is f32
 * [...ids.shape, H]. Tables over the binding limit (152064 × 3584 f16 is 1.09 GB) are bound window by window of
 * rows: each pass copies the rows of the tokens whose id falls in its window.
 */
export function embedding(gpu: Gpu, ids: TokenIds, table: Tensor, opts: { out?: Tensor; path?: EmbeddingPath } = {}): Tensor<'f32'> {
  const op = 'embedding';
  const shapes = `ids=${ids instanceof Tensor ? ids : `[${ids.length}]`} table=${table}`;
  if (table.rank !== 2 || (table.dtype !== 'f32' && table.dtype !== 'f16') || table.shape[0] < 1) {
    throw new ShapeError(`${op} needs an f32 or f16 table [V, H] with V >= 1`, { op, shapes });
  }
  const [vocab, h] = table.shape;
  const { t: tid, temp } = resolveIds(gpu, ids, vocab, op, shapes);
  const shape = [...tid.shape, h];
  const y = (opts.out ?? gpu.tensor(shape, 'f32', undefined, op)) as Tensor<'f32'>;
  if (y.dtype !== 'f32' || y.size !== tid.size * h) {
    if (temp) tid.dispose();
    throw new ShapeError(`${op} output must be f32[${shape.join(',')}], got ${y}`, { op, shapes });
  }
  const n = tid.size;
  if (pathFor(gpu, opts.path) === 'rows') {
    embeddingRows(gpu, op, shapes, tid, table, y);
    if (temp) tid.dispose();
    return y;
  }
  const pipeline = gpu.pipeline(`embedding:${table.dtype}`, () => /* wgsl */ `
${enableF16([table.dtype])}
struct P { n: u32, h: u32, v: u32, tok0: u32, row0: u32, rows: u32, st: u32, sy: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> ids: array<i32>;
@group(0) @binding(2) var<storage, read> table: array<${wgslType(table.dtype)}>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
${LINEAR_WORKGROUP}
${CLAMP_ID}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
  let e = linear_wg(wid, nwg) * ${WG}u + li;
  if (e >= p.n) { return; }
  let id = clamp_id(ids[p.tok0 + e / p.h]);
  if (id < p.row0 || id >= p.row0 + p.rows) { return; }
  y[p.sy + e] = f32(table[p.st + (id - p.row0) * p.h + e % p.h]);
}`);
  if (n > 0 && h > 0) {
    const tableWins = rowWindows(gpu, vocab, h * 4, op);
    for (const tw of rowWindows(gpu, n, h * 4, op)) {
      const by = rowBinding(y, tw.start, tw.count, h);
      for (const vw of tableWins) {
        const bt = rowBinding(table, vw.start, vw.count, h);
        const count = tw.count * h;
        gpu.dispatch({
          op,
          shapes,
          pipeline,
          params: new Params().u32(count).u32(h).u32(vocab).u32(tw.start).u32(vw.start).u32(vw.count).u32(bt.skip).u32(by.skip).bytes(),
          bindings: [tid, bt.binding, by.binding],
          workgroups: gpu.grid(Math.ceil(count / WG)),
        });
      }
    }
  }
  // Queue order keeps the dispatches above ahead of any later write into the recycled buffer.
  if (temp) tid.dispose();
  return y;
}

export interface EmbeddingBackwardOptions {
  /** Add the gradient into this f32 [V, H] tensor (gradient accumulation) instead of a new zeroed one. */
  accumulate?: Tensor;
  /** How the sums over each id's tokens run (EmbeddingPath). */
  path?: EmbeddingPath;
  /**
   * Every id occurs once (a scatter of rows, as in putting selected rows back into a batch): no linking of tokens
   * by id. Host ids are checked (a ShapeError names the first repeat); GPU ids cannot be, and a repeated id then
   * loses all but one of its rows' sums.
   */
  distinctIds?: boolean;
}

/**
 * The token chains of the backward from host ids, in O(N): link[k] = the next token with k's id (or NONE), and
 * link[N + k] = 1 where k is the first token of its id. The GPU kernel below computes the same from GPU ids.
 */
function hostIdLinks(ids: ArrayLike<number>): Uint32Array {
  const n = ids.length;
  const link = new Uint32Array(2 * n).fill(NONE, 0, n);
  const last = new Map<number, number>();
  for (let k = 0; k < n; k++) {
    const prev = last.get(ids[k]);
    if (prev === undefined) link[n + k] = 1;
    else link[prev] = k;
    last.set(ids[k], k);
  }
  return link;
}

/**
 * Backward of `embedding`: dTable[v, :] = Σ over tokens with id v of dy[token, :], into an f32 [V, H] tensor
 * (zeroed first, or `accumulate`d into). Deterministic and without float atomics:
 *  1. per token, the next token with the same id and whether it is the first of its id: on the host in O(N) for
 *     host ids (hostIdLinks); for GPU ids O(N²) id comparisons (16.7M for N = 4096: a few microseconds of GPU
 *     time, ~12 ms on lavapipe at N = 2700), through workgroup tiles of the ids; none with `distinctIds`;
 *  2. per (first token of an id, column): walk that id's chain in token order and add up dy: O(N·H) adds in all,
 *     one writer per dTable element. The critical path is the largest count of one id among the tokens.
 * dTable is bound in windows of rows; a dy past one binding is summed in runs of tokens (byTokenWindows).
 */
export function embeddingBackward(gpu: Gpu, ids: TokenIds, dy: Tensor, vocab: number, opts: EmbeddingBackwardOptions = {}): Tensor<'f32'> {
  const op = 'embeddingBackward';
  const shapes = `ids=${ids instanceof Tensor ? ids : `[${ids.length}]`} dy=${dy} V=${vocab}`;
  if (!Number.isInteger(vocab) || vocab < 1 || (dy.dtype !== 'f32' && dy.dtype !== 'f16') || dy.rank < 1) {
    throw new ShapeError(`${op} needs f32 or f16 dy [..., H] and a vocabulary size >= 1`, { op, shapes });
  }
  const h = dy.shape[dy.rank - 1];
  const acc = opts.accumulate;
  if (acc && (acc.dtype !== 'f32' || acc.rank !== 2 || acc.shape[0] !== vocab || acc.shape[1] !== h)) {
    throw new ShapeError(`${op} accumulates into f32[${vocab},${h}], got ${acc}`, { op, shapes });
  }
  const n = ids instanceof Tensor ? ids.size : ids.length;
  if (dy.size !== n * h) throw new ShapeError(`${op} needs dy [N, H] for N = ${n} ids`, { op, shapes });
  // Host ids' chains, made before any GPU work so that a repeat under distinctIds (a token not the first of its id)
  // is refused first.
  const hostLinks = ids instanceof Tensor ? undefined : hostIdLinks(ids);
  const repeat = opts.distinctIds && hostLinks ? hostLinks.subarray(n).indexOf(0) : -1;
  if (repeat >= 0) throw new ShapeError(`${op} distinctIds: id ${(ids as ArrayLike<number>)[repeat]} occurs again at position ${repeat}`, { op, shapes });
  if (dy.byteLength > gpu.maxBinding) return byTokenWindows(gpu, ids, dy, vocab, opts, op, shapes);
  const { t: tid, temp } = resolveIds(gpu, ids, vocab, op, shapes);
  const dTable = (acc ?? gpu.zeros([vocab, h], 'f32', op)) as Tensor<'f32'>;
  if (n === 0 || h === 0) {
    if (temp) tid.dispose();
    return dTable;
  }

  const link = hostLinks || opts.distinctIds ? gpu.tensor([2 * n], 'u32', hostLinks ?? distinctLinks(n), op) : linkOnGpu(gpu, op, shapes, tid, vocab);

  const sumPipeline = gpu.pipeline(`embedding_bwd_sum:${dy.dtype}`, () => /* wgsl */ `
${enableF16([dy.dtype])}
struct P { n: u32, h: u32, v: u32, row0: u32, rows: u32, sd: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> ids: array<i32>;
@group(0) @binding(2) var<storage, read> link: array<u32>;
@group(0) @binding(3) var<storage, read> dy: array<${wgslType(dy.dtype)}>;
@group(0) @binding(4) var<storage, read_write> dt: array<f32>;
${LINEAR_WORKGROUP}
${CLAMP_ID}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
  let e = linear_wg(wid, nwg) * ${WG}u + li;
  if (e >= p.n * p.h) { return; }
  let k = e / p.h;
  let j = e % p.h;
  if (link[p.n + k] == 0u) { return; }
  let id = clamp_id(ids[k]);
  if (id < p.row0 || id >= p.row0 + p.rows) { return; }
  var s = 0.0;
  var m = k;
  loop {
    s += f32(dy[m * p.h + j]);
    m = link[m];
    if (m == ${NONE}u) { break; }
  }
  let o = p.sd + (id - p.row0) * p.h + j;
  dt[o] = dt[o] + s;
}`);
  if (pathFor(gpu, opts.path) === 'rows') {
    embeddingSumRows(gpu, op, shapes, tid, link, dy, dTable);
    link.dispose();
    if (temp) tid.dispose();
    return dTable;
  }
  for (const vw of rowWindows(gpu, vocab, h * 4, op)) {
    const bt = rowBinding(dTable, vw.start, vw.count, h);
    gpu.dispatch({
      op,
      shapes,
      pipeline: sumPipeline,
      params: new Params().u32(n).u32(h).u32(vocab).u32(vw.start).u32(vw.count).u32(bt.skip).bytes(),
      bindings: [tid, link, dy, bt.binding],
      workgroups: gpu.grid(Math.ceil((n * h) / WG)),
    });
  }
  link.dispose();
  if (temp) tid.dispose();
  return dTable;
}

/**
 * embeddingBackward of a dy past one binding: runs of tokens whose rows fit, each summed into dTable after the
 * runs before it (so a repeated id's sum is grouped by run: the same up to rounding). Runs start on multiples of
 * 64 tokens, which keeps the views of dy and of GPU ids aligned for binding (64 · 4 bytes).
 */
function byTokenWindows(gpu: Gpu, ids: TokenIds, dy: Tensor, vocab: number, opts: EmbeddingBackwardOptions, op: string, shapes: string): Tensor<'f32'> {
  const h = dy.shape[dy.rank - 1];
  const n = dy.size / h;
  const per = Math.floor(gpu.maxBinding / (h * DTYPE_BYTES[dy.dtype]) / 64) * 64;
  if (per < 64) throw new GpuLimitError(`64 rows of dy (${64 * h * DTYPE_BYTES[dy.dtype]} bytes) do not fit one binding`, { op, shapes, bytes: dy.byteLength });
  const rows = dy.reshape([n, h]);
  let dTable = opts.accumulate;
  for (let t0 = 0; t0 < n; t0 += per) {
    const c = Math.min(per, n - t0);
    const part = ids instanceof Tensor ? ids.reshape([n]).rows(t0, c) : Array.from({ length: c }, (_, i) => ids[t0 + i]);
    dTable = embeddingBackward(gpu, part, rows.rows(t0, c), vocab, { ...opts, accumulate: dTable });
  }
  return dTable as Tensor<'f32'>;
}

/** embedding on the 'rows' path: y[token] = table[id] row by row, table bound in windows of rows. */
function embeddingRows(gpu: Gpu, op: string, shapes: string, tid: Tensor, table: Tensor, y: Tensor): void {
  const [vocab, h] = table.shape;
  const n = tid.size;
  if (n === 0 || h === 0) return;
  const vec = vec4Rows(h, [table, y]);
  const [T, Y] = [itemTypes(table.dtype, vec), itemTypes('f32', vec)];
  const pipeline = gpu.pipeline(`embedding-rows:${table.dtype}:${vec}`, () => /* wgsl */ `
${enableF16([table.dtype])}
struct P { n: u32, items: u32, v: u32, tok0: u32, row0: u32, rows: u32, st: u32, sy: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> ids: array<i32>;
@group(0) @binding(2) var<storage, read> table: array<${T.t}>;
@group(0) @binding(3) var<storage, read_write> y: array<${Y.t}>;
${CLAMP_ID}
@compute @workgroup_size(${CPU_LANES})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
  for (var k = wid.x + wid.y * nwg.x; k < p.n; k += nwg.x * nwg.y) {
    let id = clamp_id(ids[p.tok0 + k]);
    if (id < p.row0 || id >= p.row0 + p.rows) { continue; }
    let src = p.st + (id - p.row0) * p.items;
    let dst = p.sy + k * p.items;
    for (var j = li; j < p.items; j += ${CPU_LANES}u) { y[dst + j] = ${Y.f}(table[src + j]); }
  }
}`);
  const tableWins = rowWindows(gpu, vocab, h * 4, op);
  for (const tw of rowWindows(gpu, n, h * 4, op)) {
    const by = rowBinding(y, tw.start, tw.count, h);
    for (const vw of tableWins) {
      const bt = rowBinding(table, vw.start, vw.count, h);
      gpu.dispatch({
        op,
        shapes,
        pipeline,
        params: new Params().u32(tw.count).u32(h / vec).u32(vocab).u32(tw.start).u32(vw.start).u32(vw.count).u32(bt.skip / vec).u32(by.skip / vec).bytes(),
        bindings: [tid, bt.binding, by.binding],
        workgroups: strideGrid(gpu, tw.count, 1),
      });
    }
  }
}

/** Chains of distinct ids: every token is the first and last of its id. */
function distinctLinks(n: number): Uint32Array {
  return new Uint32Array(2 * n).fill(NONE, 0, n).fill(1, n);
}

/** hostIdLinks for GPU ids: O(N²) comparisons through workgroup tiles of the ids. */
function linkOnGpu(gpu: Gpu, op: string, shapes: string, tid: Tensor, vocab: number): Tensor {
  const n = tid.size;
  const link = gpu.tensor([2 * n], 'u32', undefined, op);
  const pipeline = gpu.pipeline('embedding_bwd_link', () => /* wgsl */ `
struct P { n: u32, v: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> ids: array<i32>;
// [0, n): next token with the same id, or NONE; [n, 2n): 1 where the token is the first of its id.
@group(0) @binding(2) var<storage, read_write> link: array<u32>;
var<workgroup> tile: array<u32, ${WG}>;
${LINEAR_WORKGROUP}
${CLAMP_ID}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
  let k = linear_wg(wid, nwg) * ${WG}u + li;
  // Past-the-end threads still help load tiles; their own id matches nothing (ids are < 2^31).
  var me = 0xfffffffeu;
  if (k < p.n) { me = clamp_id(ids[k]); }
  var next = ${NONE}u;
  var first = 1u;
  for (var base = 0u; base < p.n; base += ${WG}u) {
    var v = ${NONE}u;
    if (base + li < p.n) { v = clamp_id(ids[base + li]); }
    tile[li] = v;
    workgroupBarrier();
    for (var j = 0u; j < ${WG}u; j++) {
      let m = base + j;
      if (tile[j] == me) {
        if (m < k) { first = 0u; }
        if (m > k && next == ${NONE}u) { next = m; }
      }
    }
    workgroupBarrier();
  }
  if (k < p.n) {
    link[k] = next;
    link[p.n + k] = first;
  }
}`);
  gpu.dispatch({
    op: `${op}.link`,
    shapes,
    pipeline,
    params: new Params().u32(n).u32(vocab).bytes(),
    bindings: [tid, link],
    workgroups: gpu.grid(Math.ceil(n / WG)),
  });
  return link;
}

/** embeddingBackward's sums on the 'rows' path: each first token of an id walks its chain, a row of vec4s at a time. */
function embeddingSumRows(gpu: Gpu, op: string, shapes: string, tid: Tensor, link: Tensor, dy: Tensor, dTable: Tensor): void {
  const [vocab, h] = dTable.shape;
  const n = tid.size;
  const vec = vec4Rows(h, [dy, dTable]);
  const [D, f] = [itemTypes(dy.dtype, vec), itemTypes('f32', vec).f];
  const pipeline = gpu.pipeline(`embedding_bwd_sum-rows:${dy.dtype}:${vec}`, () => /* wgsl */ `
${enableF16([dy.dtype])}
struct P { n: u32, items: u32, v: u32, row0: u32, rows: u32, sd: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> ids: array<i32>;
@group(0) @binding(2) var<storage, read> link: array<u32>;
@group(0) @binding(3) var<storage, read> dy: array<${D.t}>;
@group(0) @binding(4) var<storage, read_write> dt: array<${f}>;
${CLAMP_ID}
@compute @workgroup_size(${CPU_LANES})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
  for (var k = wid.x + wid.y * nwg.x; k < p.n; k += nwg.x * nwg.y) {
    if (link[p.n + k] == 0u) { continue; }
    let id = clamp_id(ids[k]);
    if (id < p.row0 || id >= p.row0 + p.rows) { continue; }
    let o = p.sd + (id - p.row0) * p.items;
    for (var j = li; j < p.items; j += ${CPU_LANES}u) {
      var s = ${f}();
      var m = k;
      loop {
        s += ${f}(dy[m * p.items + j]);
        m = link[m];
        if (m == ${NONE}u) { break; }
      }
      dt[o + j] = dt[o + j] + s;
    }
  }
}`);
  for (const vw of rowWindows(gpu, vocab, h * 4, op)) {
    const bt = rowBinding(dTable, vw.start, vw.count, h);
    gpu.dispatch({
      op,
      shapes,
      pipeline,
      params: new Params().u32(n).u32(h / vec).u32(vocab).u32(vw.start).u32(vw.count).u32(bt.skip / vec).bytes(),
      bindings: [tid, link, dy, bt.binding],
      workgroups: strideGrid(gpu, n, 1),
    });
  }
}
