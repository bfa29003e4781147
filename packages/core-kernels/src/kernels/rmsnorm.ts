import type { ElementWindow, Gpu } from '../runtime/gpu.js';
import { rowBinding, rowWindows } from '../runtime/windows.js';
import { Params } from '../runtime/params.js';
import { ShapeError } from '../runtime/errors.js';
import type { Tensor } from '../runtime/tensor.js';
import { LINEAR_WORKGROUP, enableF16, itemTypes, strideGrid, vec4Rows, wgslType } from './wgsl.js';
import { CPU_LANES, cpuLanesUnfit } from './cpu-lanes.js';

/** Threads per workgroup for one row of length h: small rows (per-head q/k norms) waste fewer idle threads. */
function rowWorkgroup(h: number): number {
  return h <= 512 ? 64 : 256;
}

/**
 * WGSL `reduce_sum(v, li, sgi, sgs)`: the sum of `v` over the workgroup, returned to every thread. Must be called
 * in uniform control flow. The subgroup variant adds within subgroups first (one barrier instead of log2(WG)).
 */
export function rowReduceWgsl(wg: number, subgroup: boolean): string {
  if (subgroup) {
    return /* wgsl */ `
var<workgroup> red: array<f32, ${wg}>;
fn reduce_sum(v: f32, li: u32, sgi: u32, sgs: u32) -> f32 {
  let s = subgroupAdd(v);
  // Subgroups of a 1D workgroup are consecutive invocations, so li / sgs numbers them.
  if (sgi == 0u) { red[li / sgs] = s; }
  workgroupBarrier();
  var t = 0.0;
  let n = (${wg}u + sgs - 1u) / sgs;
  for (var i = 0u; i < n; i++) { t += red[i]; }
  workgroupBarrier();
  return t;
}`;
  }
  return /* wgsl */ `
var<workgroup> red: array<f32, ${wg}>;
fn reduce_sum(v: f32, li: u32, sgi: u32, sgs: u32) -> f32 {
  red[li] = v;
  workgroupBarrier();
  for (var s = ${wg / 2}u; s > 0u; s >>= 1u) {
    if (li < s) { red[li] += red[li + s]; }
    workgroupBarrier();
  }
  let t = red[0];
  workgroupBarrier();
  return t;
}`;
}

/** Entry-point builtins for `rowReduceWgsl`: subgroup ids where the subgroup variant is used. */
function reduceBuiltins(subgroup: boolean): { decl: string; args: string } {
  return subgroup
    ? { decl: ', @builtin(subgroup_invocation_id) sgi: u32, @builtin(subgroup_size) sgs: u32', args: 'sgi, sgs' }
    : { decl: '', args: '0u, 1u' };
}

/**
 * Which kernel runs the rows: 'workgroup' (one workgroup per row, reduced through workgroup memory or subgroups),
 * or 'cpu-lanes' (one 8-lane subgroup per workgroup looping over rows, vec4 loads where the layout allows, the sum
 * by subgroupAdd with no barrier): on llvmpipe a workgroup costs microseconds and a barrier switches coroutines.
 */
export type RmsNormPath = 'workgroup' | 'cpu-lanes';

function rmsnormPath(gpu: Gpu, asked: RmsNormPath | undefined, op: string): RmsNormPath {
  const unfit = gpu.variants.reduction !== 'subgroup' ? 'needs subgroups' : cpuLanesUnfit(gpu);
  if (asked === 'cpu-lanes' && unfit) throw new ShapeError(`the cpu-lanes path ${unfit}`, { op, shapes: '' });
  return asked ?? (gpu.softwareAdapter && !unfit ? 'cpu-lanes' : 'workgroup');
}


/** Workgroups of the cpu-lanes path: a grid-stride loop over rows, one subgroup each. */
const cpuRowGrid = (gpu: Gpu, rows: number) => strideGrid(gpu, rows, 1);

function checkFloat(op: string, shapes: string, ...ts: Tensor[]): void {
  for (const t of ts) {
    if (t.dtype !== 'f32' && t.dtype !== 'f16') throw new ShapeError(`${op} needs f32 or f16 tensors, got ${t}`, { op, shapes });
  }
}

// ------------------------------------------------------------------ rmsnorm

export interface RmsNormOptions {
  /** Added to mean(x²) before the square root. Qwen2.5 and Qwen3 use 1e-6. */
  eps?: number;
  /** Output, same shape and dtype as x (not x itself). */
  out?: Tensor;
  /**
   * A residual branch r (x's shape and dtype): normalizes s = x + r instead of x and returns s as `sum`, the
   * residual stream's next value. One pass instead of an add and then a norm, with the same results in f32. In f16,
   * s is stored rounded, but the norm may see it before the rounding (the shader reads back what it stored, and
   * a compiler may fold that round trip: lavapipe does). The backward is rmsnormBackward at s (plus the gradient
   * that reaches s directly), the same for x and r.
   */
  residual?: Tensor;
  /** Output for `sum` (with `residual`): x's shape and dtype, none of x, r or y. */
  sum?: Tensor;
  /** The kernel (RmsNormPath); by default cpu-lanes on a CPU adapter with 8-lane subgroups, else workgroup. */
  path?: RmsNormPath;
}

/**
 * RMSNorm over the last dimension: y = x / sqrt(mean(x²) + eps) * w, for x [..., H] and w [H] (f32 or f16 each),
 * y in x's dtype. Statistics in f32. Also returns rstd = 1/sqrt(mean(x²)+eps) per row (f32, x's shape without
 * the last dim), which the backward uses. Unlike HF, which rounds x*rstd to x's dtype before the weight
 * multiply, the product is rounded once. With `residual` r it normalizes x + r and also returns that as `sum`.
 */
export function rmsnorm(gpu: Gpu, x: Tensor, w: Tensor, opts: RmsNormOptions = {}): { y: Tensor; rstd: Tensor<'f32'>; sum?: Tensor } {
  const op = 'rmsnorm';
  const r = opts.residual;
  const shapes = `x=${x} w=${w}${r ? ` residual=${r}` : ''}`;
  checkFloat(op, shapes, x, w);
  const h = x.shape[x.rank - 1];
  if (x.rank < 1 || w.rank !== 1 || w.shape[0] !== h || h < 1) {
    throw new ShapeError('rmsnorm needs x [..., H] and w [H] with H >= 1', { op, shapes });
  }
  const eps = opts.eps ?? 1e-6;
  // eps = 0 is allowed (a zero row then gives inf/NaN, as in torch); a negative one can make any row NaN.
  if (!(eps >= 0) || !Number.isFinite(eps)) throw new ShapeError(`rmsnorm eps must be finite and >= 0, got ${eps}`, { op, shapes });
  const y = opts.out ?? gpu.tensor(x.shape, x.dtype, undefined, op);
  if (y.size !== x.size || y.dtype !== x.dtype || y.buffer === x.buffer) {
    throw new ShapeError(`rmsnorm output must match x and not alias it, got ${y}`, { op, shapes });
  }
  if (opts.sum && !r) throw new ShapeError('rmsnorm: sum is the output of residual, which is missing', { op, shapes });
  if (r && (r.size !== x.size || r.dtype !== x.dtype || r.buffer === y.buffer)) {
    throw new ShapeError(`rmsnorm residual must match x and not alias y, got ${r}`, { op, shapes });
  }
  const sum = r ? (opts.sum ?? gpu.tensor(x.shape, x.dtype, undefined, op)) : undefined;
  if (sum && (sum.size !== x.size || sum.dtype !== x.dtype || [x, r!, y].some((t) => t.buffer === sum.buffer))) {
    throw new ShapeError(`rmsnorm sum must match x and alias none of x, residual and y, got ${sum}`, { op, shapes });
  }
  const rows = x.size / h;
  const rstd = gpu.tensor(x.shape.slice(0, -1), 'f32', undefined, op);
  if (rows === 0) return { y, rstd, ...(sum ? { sum } : {}) };

  if (rmsnormPath(gpu, opts.path, op) === 'cpu-lanes') {
    cpuRmsnorm(gpu, op, shapes, x, w, y, rstd, eps, r, sum);
    return { y, rstd, ...(sum ? { sum } : {}) };
  }
  const wg = rowWorkgroup(h);
  const sub = gpu.variants.reduction === 'subgroup';
  const b = reduceBuiltins(sub);
  const [tx, tw] = [wgslType(x.dtype), wgslType(w.dtype)];
  // With a residual, each thread stores its elements of s = x + r in the first loop and reads them back in the
  // second: the same elements, so no barrier is needed between the two.
  const input = r ? 's' : 'x';
  const pipeline = gpu.pipeline(`rmsnorm:${x.dtype}:${w.dtype}:${wg}:${sub}${r ? ':residual' : ''}`, () => /* wgsl */ `
${enableF16([x.dtype, w.dtype])}${sub ? 'enable subgroups;' : ''}
struct P { rows: u32, h: u32, eps: f32, sx: u32, sy: u32, sr: u32, sres: u32, ss: u32, items: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<${tx}>;
@group(0) @binding(2) var<storage, read> w: array<${tw}>;
@group(0) @binding(3) var<storage, read_write> y: array<${tx}>;
@group(0) @binding(4) var<storage, read_write> rstd: array<f32>;
${r ? `@group(0) @binding(5) var<storage, read> res: array<${tx}>;
@group(0) @binding(6) var<storage, read_write> s: array<${tx}>;` : ''}
${LINEAR_WORKGROUP}
${rowReduceWgsl(wg, sub)}
@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32${b.decl}) {
  let row = linear_wg(wid, nwg);
  if (row >= p.rows) { return; }
  let xo = p.sx + row * p.h;
  ${r ? `let ro = p.sres + row * p.h;
  let so = p.ss + row * p.h;` : 'let so = xo;'}
  var ss = 0.0;
  for (var j = li; j < p.h; j += ${wg}u) {
    ${r ? `s[so + j] = ${tx}(f32(x[xo + j]) + f32(res[ro + j]));` : ''}
    let v = f32(${input}[so + j]);
    ss += v * v;
  }
  let r = inverseSqrt(reduce_sum(ss, li, ${b.args}) / f32(p.h) + p.eps);
  if (li == 0u) { rstd[p.sr + row] = r; }
  let yo = p.sy + row * p.h;
  for (var j = li; j < p.h; j += ${wg}u) { y[yo + j] = ${tx}(f32(${input}[so + j]) * r * f32(w[j])); }
}`);
  dispatchNormRows(gpu, op, shapes, pipeline, { x, w, y, rstd, r, sum }, eps, 1, (count) => gpu.grid(count));
  return { y, rstd, ...(sum ? { sum } : {}) };
}

export interface RmsNormBackwardOptions {
  /** Compute dw (default true). Frozen norm weights (LoRA) skip the reduction over rows. */
  dw?: boolean;
  /** The kernel for dx (RmsNormPath), as for rmsnorm. */
  path?: RmsNormPath;
}

/**
 * Backward of `rmsnorm` from the saved rstd: dx = rstd·(dy∘w) − x·rstd³/H·Σ(dy∘w∘x) per row (dx in x's dtype),
 * and dw = Σ_rows dy∘x·rstd (f32 [H]). dw is reduced in two deterministic stages (partial sums over chunks of
 * rows, then over chunks), with no atomics.
 */
export function rmsnormBackward(
  gpu: Gpu,
  dy: Tensor,
  x: Tensor,
  w: Tensor,
  rstd: Tensor<'f32'>,
  opts: RmsNormBackwardOptions = {},
): { dx: Tensor; dw: Tensor<'f32'> | undefined } {
  const op = 'rmsnormBackward';
  const shapes = `dy=${dy} x=${x} w=${w} rstd=${rstd}`;
  checkFloat(op, shapes, dy, x, w);
  const h = x.shape[x.rank - 1];
  const rows = h > 0 ? x.size / h : 0;
  if (w.rank !== 1 || w.shape[0] !== h || h < 1 || dy.size !== x.size || rstd.dtype !== 'f32' || rstd.size !== rows) {
    throw new ShapeError('rmsnormBackward needs dy and x [..., H], w [H] and f32 rstd [rows]', { op, shapes });
  }
  const dx = gpu.tensor(x.shape, x.dtype, undefined, op);
  const wantDw = opts.dw ?? true;
  if (rows === 0) return { dx, dw: wantDw ? gpu.zeros([h], 'f32', op) : undefined };

  const wins = rowWindows(gpu, rows, h * 4, op);
  if (rmsnormPath(gpu, opts.path, op) === 'cpu-lanes') cpuRmsnormBackward(gpu, op, shapes, dy, x, w, rstd, dx, wins);
  else workgroupRmsnormBackward(gpu, op, shapes, dy, x, w, rstd, dx, wins);
  if (!wantDw) return { dx, dw: undefined };
  return { dx, dw: columnSumScaled(gpu, dy, x, rstd, rows, h, wins, op, shapes) };
}

function workgroupRmsnormBackward(gpu: Gpu, op: string, shapes: string, dy: Tensor, x: Tensor, w: Tensor, rstd: Tensor, dx: Tensor, wins: ElementWindow[]): void {
  const h = x.shape[x.rank - 1];
  const wg = rowWorkgroup(h);
  const sub = gpu.variants.reduction === 'subgroup';
  const b = reduceBuiltins(sub);
  const [td, tx, tw] = [wgslType(dy.dtype), wgslType(x.dtype), wgslType(w.dtype)];
  const rowsPipeline = gpu.pipeline(`rmsnorm_bwd:${dy.dtype}:${x.dtype}:${w.dtype}:${wg}:${sub}`, () => /* wgsl */ `
${enableF16([dy.dtype, x.dtype, w.dtype])}${sub ? 'enable subgroups;' : ''}
struct P { rows: u32, h: u32, sdy: u32, sx: u32, sdx: u32, sr: u32, items: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> dy: array<${td}>;
@group(0) @binding(2) var<storage, read> x: array<${tx}>;
@group(0) @binding(3) var<storage, read> w: array<${tw}>;
@group(0) @binding(4) var<storage, read> rstd: array<f32>;
@group(0) @binding(5) var<storage, read_write> dx: array<${tx}>;
${LINEAR_WORKGROUP}
${rowReduceWgsl(wg, sub)}
@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32${b.decl}) {
  let row = linear_wg(wid, nwg);
  if (row >= p.rows) { return; }
  let o = row * p.h;
  var s = 0.0;
  for (var j = li; j < p.h; j += ${wg}u) { s += f32(dy[p.sdy + o + j]) * f32(w[j]) * f32(x[p.sx + o + j]); }
  let r = rstd[p.sr + row];
  let c = reduce_sum(s, li, ${b.args}) * r * r * r / f32(p.h);
  for (var j = li; j < p.h; j += ${wg}u) {
    dx[p.sdx + o + j] = ${tx}(r * f32(dy[p.sdy + o + j]) * f32(w[j]) - c * f32(x[p.sx + o + j]));
  }
}`);
  dispatchNormBackwardRows(gpu, op, shapes, rowsPipeline, { dy, x, w, rstd, dx }, wins, 1, (count) => gpu.grid(count));
}

/**
 * rmsnormBackward's dx dispatches, one per window of rows; the shader's P: rows, h, the skips of dy, x and dx (in
 * items of `vec` elements) and of rstd (in elements), then h in items.
 */
function dispatchNormBackwardRows(
  gpu: Gpu,
  op: string,
  shapes: string,
  pipeline: GPUComputePipeline,
  t: { dy: Tensor; x: Tensor; w: Tensor; rstd: Tensor; dx: Tensor },
  wins: ElementWindow[],
  vec: number,
  grid: (rows: number) => [number, number, number],
): void {
  const h = t.x.shape[t.x.rank - 1];
  for (const win of wins) {
    const [bdy, bx, br, bdx] = [rowBinding(t.dy, win.start, win.count, h), rowBinding(t.x, win.start, win.count, h), rowBinding(t.rstd, win.start, win.count, 1), rowBinding(t.dx, win.start, win.count, h)];
    gpu.dispatch({
      op,
      shapes,
      pipeline,
      params: new Params().u32(win.count).u32(h).u32(bdy.skip / vec).u32(bx.skip / vec).u32(bdx.skip / vec).u32(br.skip).u32(h / vec).bytes(),
      bindings: [bdy.binding, bx.binding, t.w, br.binding, bdx.binding],
      workgroups: grid(win.count),
    });
  }
}

/** rmsnorm's rows on the cpu-lanes path (RmsNormPath). */
function cpuRmsnorm(gpu: Gpu, op: string, shapes: string, x: Tensor, w: Tensor, y: Tensor, rstd: Tensor, eps: number, r?: Tensor, sum?: Tensor): void {
  const h = x.shape[x.rank - 1];
  const vec = vec4Rows(h, [x, w, y, ...(r && sum ? [r, sum] : [])]);
  const [X, W] = [itemTypes(x.dtype, vec), itemTypes(w.dtype, vec)];
  // With a residual, each lane stores its items of s = x + r in the first loop and reads them back in the second.
  const input = r ? 's' : 'x';
  const pipeline = gpu.pipeline(`rmsnorm-cpu:${x.dtype}:${w.dtype}:${vec}${r ? ':residual' : ''}`, () => /* wgsl */ `
${enableF16([x.dtype, w.dtype])}enable subgroups;
struct P { rows: u32, h: u32, eps: f32, sx: u32, sy: u32, sr: u32, sres: u32, ss: u32, items: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<${X.t}>;
@group(0) @binding(2) var<storage, read> w: array<${W.t}>;
@group(0) @binding(3) var<storage, read_write> y: array<${X.t}>;
@group(0) @binding(4) var<storage, read_write> rstd: array<f32>;
${r ? `@group(0) @binding(5) var<storage, read> res: array<${X.t}>;
@group(0) @binding(6) var<storage, read_write> s: array<${X.t}>;` : ''}
@compute @workgroup_size(${CPU_LANES})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
  for (var row = wid.x + wid.y * nwg.x; row < p.rows; row += nwg.x * nwg.y) {
    let xo = p.sx + row * p.items;
    ${r ? `let ro = p.sres + row * p.items;
    let so = p.ss + row * p.items;` : 'let so = xo;'}
    var ss = 0.0;
    for (var j = li; j < p.items; j += ${CPU_LANES}u) {
      ${r ? `s[so + j] = ${X.t}(${X.f}(x[xo + j]) + ${X.f}(res[ro + j]));` : ''}
      let v = ${X.f}(${input}[so + j]);
      ss += ${vec === 4 ? 'dot(v, v)' : 'v * v'};
    }
    let rs = inverseSqrt(subgroupAdd(ss) / f32(p.h) + p.eps);
    if (li == 0u) { rstd[p.sr + row] = rs; }
    let yo = p.sy + row * p.items;
    for (var j = li; j < p.items; j += ${CPU_LANES}u) { y[yo + j] = ${X.t}(${X.f}(${input}[so + j]) * rs * ${W.f}(w[j])); }
  }
}`);
  dispatchNormRows(gpu, op, shapes, pipeline, { x, w, y, rstd, r, sum }, eps, vec, (count) => cpuRowGrid(gpu, count));
}

/**
 * rmsnorm's dispatches, one per window of rows; the shader's P: rows, h, eps, then the skips of x, y, rstd, the
 * residual and the sum (in items of `vec` elements, rstd's in elements), then h in items.
 */
function dispatchNormRows(
  gpu: Gpu,
  op: string,
  shapes: string,
  pipeline: GPUComputePipeline,
  t: { x: Tensor; w: Tensor; y: Tensor; rstd: Tensor; r?: Tensor; sum?: Tensor },
  eps: number,
  vec: number,
  grid: (rows: number) => [number, number, number],
): void {
  const h = t.x.shape[t.x.rank - 1];
  for (const win of rowWindows(gpu, t.x.size / h, h * 4, op)) {
    const [bx, by, br] = [rowBinding(t.x, win.start, win.count, h), rowBinding(t.y, win.start, win.count, h), rowBinding(t.rstd, win.start, win.count, 1)];
    const bres = t.r ? rowBinding(t.r, win.start, win.count, h) : undefined;
    const bs = t.sum ? rowBinding(t.sum, win.start, win.count, h) : undefined;
    gpu.dispatch({
      op,
      shapes,
      pipeline,
      params: new Params()
        .u32(win.count)
        .u32(h)
        .f32(eps)
        .u32(bx.skip / vec)
        .u32(by.skip / vec)
        .u32(br.skip)
        .u32((bres?.skip ?? 0) / vec)
        .u32((bs?.skip ?? 0) / vec)
        .u32(h / vec)
        .bytes(),
      bindings: [bx.binding, t.w, by.binding, br.binding, ...(bres && bs ? [bres.binding, bs.binding] : [])],
      workgroups: grid(win.count),
    });
  }
}

/** rmsnormBackward's dx on the cpu-lanes path (RmsNormPath). */
function cpuRmsnormBackward(gpu: Gpu, op: string, shapes: string, dy: Tensor, x: Tensor, w: Tensor, rstd: Tensor, dx: Tensor, wins: ElementWindow[]): void {
  const h = x.shape[x.rank - 1];
  const vec = vec4Rows(h, [dy, x, w, dx]);
  const [D, X, W] = [itemTypes(dy.dtype, vec), itemTypes(x.dtype, vec), itemTypes(w.dtype, vec)];
  const pipeline = gpu.pipeline(`rmsnorm_bwd-cpu:${dy.dtype}:${x.dtype}:${w.dtype}:${vec}`, () => /* wgsl */ `
${enableF16([dy.dtype, x.dtype, w.dtype])}enable subgroups;
struct P { rows: u32, h: u32, sdy: u32, sx: u32, sdx: u32, sr: u32, items: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> dy: array<${D.t}>;
@group(0) @binding(2) var<storage, read> x: array<${X.t}>;
@group(0) @binding(3) var<storage, read> w: array<${W.t}>;
@group(0) @binding(4) var<storage, read> rstd: array<f32>;
@group(0) @binding(5) var<storage, read_write> dx: array<${X.t}>;
@compute @workgroup_size(${CPU_LANES})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
  for (var row = wid.x + wid.y * nwg.x; row < p.rows; row += nwg.x * nwg.y) {
    let o = row * p.items;
    var s = 0.0;
    for (var j = li; j < p.items; j += ${CPU_LANES}u) {
      let t = ${D.f}(dy[p.sdy + o + j]) * ${W.f}(w[j]) * ${X.f}(x[p.sx + o + j]);
      s += ${vec === 4 ? 't.x + t.y + t.z + t.w' : 't'};
    }
    let r = rstd[p.sr + row];
    let c = subgroupAdd(s) * r * r * r / f32(p.h);
    for (var j = li; j < p.items; j += ${CPU_LANES}u) {
      dx[p.sdx + o + j] = ${X.t}(r * ${D.f}(dy[p.sdy + o + j]) * ${W.f}(w[j]) - c * ${X.f}(x[p.sx + o + j]));
    }
  }
}`);
  dispatchNormBackwardRows(gpu, op, shapes, pipeline, { dy, x, w, rstd, dx }, wins, vec, (count) => cpuRowGrid(gpu, count));
}

/** Rows per partial sum of dw: enough chunks to fill the GPU, few enough to keep the partials small. */
function chunkRows(rows: number): number {
  return Math.max(16, Math.ceil(rows / 512));
}

const COL_WG = 64;

/** dw[j] = Σ_rows dy[r,j]·x[r,j]·rstd[r], in two stages: per-chunk partials [chunks, H], then a sum over chunks. */
function columnSumScaled(
  gpu: Gpu,
  dy: Tensor,
  x: Tensor,
  rstd: Tensor<'f32'>,
  rows: number,
  h: number,
  wins: ElementWindow[],
  op: string,
  shapes: string,
): Tensor<'f32'> {
  const ch = chunkRows(rows);
  const chunks = Math.ceil(rows / ch);
  const part = gpu.zeros([chunks, h], 'f32', op);
  const [td, tx] = [wgslType(dy.dtype), wgslType(x.dtype)];
  const partPipeline = gpu.pipeline(`rmsnorm_dw_part:${dy.dtype}:${x.dtype}`, () => /* wgsl */ `
${enableF16([dy.dtype, x.dtype])}
struct P { rows: u32, h: u32, ch: u32, r0: u32, c0: u32, sdy: u32, sx: u32, sr: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> dy: array<${td}>;
@group(0) @binding(2) var<storage, read> x: array<${tx}>;
@group(0) @binding(3) var<storage, read> rstd: array<f32>;
@group(0) @binding(4) var<storage, read_write> part: array<f32>;
@compute @workgroup_size(${COL_WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let j = wid.x * ${COL_WG}u + li;
  let c = p.c0 + wid.y;
  if (j >= p.h) { return; }
  // This window holds rows [r0, r0 + rows); chunk c covers [c*ch, (c+1)*ch). Windows run in order, so a chunk
  // split between two windows is summed in row order, as without windows.
  let lo = max(c * p.ch, p.r0);
  let hi = min((c + 1u) * p.ch, p.r0 + p.rows);
  var s = 0.0;
  for (var r = lo; r < hi; r++) {
    let k = r - p.r0;
    s += f32(dy[p.sdy + k * p.h + j]) * f32(x[p.sx + k * p.h + j]) * rstd[p.sr + k];
  }
  part[c * p.h + j] += s;
}`);
  for (const win of wins) {
    const c0 = Math.floor(win.start / ch);
    const c1 = Math.floor((win.start + win.count - 1) / ch);
    const [bdy, bx, br] = [rowBinding(dy, win.start, win.count, h), rowBinding(x, win.start, win.count, h), rowBinding(rstd, win.start, win.count, 1)];
    gpu.dispatch({
      op: `${op}.dw`,
      shapes,
      pipeline: partPipeline,
      params: new Params().u32(win.count).u32(h).u32(ch).u32(win.start).u32(c0).u32(bdy.skip).u32(bx.skip).u32(br.skip).bytes(),
      bindings: [bdy.binding, bx.binding, br.binding, part],
      workgroups: [Math.ceil(h / COL_WG), c1 - c0 + 1],
    });
  }
  const dw = gpu.tensor([h], 'f32', undefined, op);
  const sumPipeline = gpu.pipeline('rmsnorm_dw_sum', () => /* wgsl */ `
struct P { chunks: u32, h: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> part: array<f32>;
@group(0) @binding(2) var<storage, read_write> dw: array<f32>;
@compute @workgroup_size(${COL_WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let j = gid.x;
  if (j >= p.h) { return; }
  var s = 0.0;
  for (var c = 0u; c < p.chunks; c++) { s += part[c * p.h + j]; }
  dw[j] = s;
}`);
  gpu.dispatch({
    op: `${op}.dw`,
    shapes: `${shapes} chunks=${chunks}x${ch}`,
    pipeline: sumPipeline,
    params: new Params().u32(chunks).u32(h).bytes(),
    bindings: [part, dw],
    workgroups: [Math.ceil(h / COL_WG)],
  });
  part.dispose();
  return dw;
}
