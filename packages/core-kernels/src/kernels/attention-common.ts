/**
 * What the attention kernels share (attention.ts forward, attention-backward.ts, attention-decode.ts): input
 * checks, the WGSL pieces that load and store rows and tiles of q/k/v-like tensors, the workgroup kernels' entry
 * point and dispatch (with the tile counter on CPU adapters), tile fitting, and which kernels run where.
 */
import type { Gpu } from '../runtime/gpu.js';
import { ShapeError } from '../runtime/errors.js';
import type { Tensor } from '../runtime/tensor.js';
import type { DType } from '../runtime/dtype.js';
import { f16MatrixConfig, subgroupSizes, type SubgroupMatrixConfig } from '../runtime/features.js';
import { ticketCounter, ticketWgsl, ticketWorkgroups } from './tickets.js';
import { mhaParams, type Dims, type FloatDType } from './attention-params.js';
import { cpuLanesUnfit } from './cpu-lanes.js';
import { cpuAttentionRows, cpuAttentionUnfit, type CpuAttentionKernel, type CpuAttentionSpec } from './attention-cpu.js';
import type { AttentionOptions, AttentionTile } from './attention.js';

/** The emulated kernel's fragment shape (every invocation does whole products; small keeps tests quick). */
export const EMULATED_CONFIG: SubgroupMatrixConfig = { componentType: 'f16', resultComponentType: 'f32', M: 4, N: 4, K: 4 };

export const LOG2E = Math.LOG2E;

/** Masked scores: finite so that max/exp2 arithmetic never makes NaN. */
export const NEG = '-1.0e30';

export const ceilDiv = (a: number, b: number) => Math.ceil(a / b);

export const roundUp = (a: number, b: number) => ceilDiv(a, b) * b;

export const range = (n: number) => Array.from({ length: n }, (_, i) => i);

export const XYZW = ['x', 'y', 'z', 'w'];

export function isFloat(t: Tensor): t is Tensor<FloatDType> {
  return t.dtype === 'f32' || t.dtype === 'f16';
}

export function checkQkv(op: string, q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions, f16Kv = false): Dims {
  const shapes = `q=${q} k=${k} v=${v}${opts.lengths ? ` lengths=${opts.lengths}` : ''}`;
  const fail = (msg: string) => new ShapeError(msg, { op, shapes });
  if (q.rank !== 4 || k.rank !== 4 || v.rank !== 4) throw fail('q, k, v must be [B, T, H, D]');
  const [B, T, Hq, D] = q.shape;
  const [Bk, S, Hkv, Dk] = k.shape;
  if (Bk !== B || Dk !== D || v.shape.join() !== k.shape.join()) throw fail('k and v must be [B, S, Hkv, D] matching q');
  // f16Kv: decode's f16 caches may serve f32 queries.
  const kvOk = k.dtype === q.dtype || (f16Kv && q.dtype === 'f32' && k.dtype === 'f16');
  if (!isFloat(q) || !kvOk || v.dtype !== k.dtype) throw fail(f16Kv ? 'q, k, v must share one dtype, f32 or f16, or k and v be f16 under f32 q' : 'q, k, v must share one dtype, f32 or f16');
  if (Hkv === 0 || Hq % Hkv !== 0) throw fail('Hq must be a multiple of Hkv');
  if (D === 0) throw fail('head dim must be positive');
  if ((opts.causal ?? true) && S < T) throw fail('causal attention needs S >= T (queries are the last T positions)');
  if (opts.lengths && (opts.lengths.dtype !== 'i32' || opts.lengths.size !== B)) throw fail('lengths must be i32 [B]');
  if (opts.scale !== undefined && !Number.isFinite(opts.scale)) throw fail(`scale must be finite, got ${opts.scale}`);
  checkTile(op, shapes, opts.tile);
  return { B, T, S, Hq, Hkv, D, dtype: q.dtype };
}

export function checkTile(op: string, shapes: string, tile?: AttentionTile): void {
  if (tile && (tile.bq % 4 !== 0 || tile.bk % 4 !== 0 || tile.bq < 4 || tile.bk < 4 || tile.bq * tile.bk > 64 * 64)) {
    throw new ShapeError(`tile ${tile.bq}x${tile.bk} must be multiples of 4 with bq*bk <= 4096`, { op, shapes });
  }
}

export function checkSame(op: string, name: string, t: Tensor, ref: Tensor, dtype: DType = ref.dtype): void {
  if (t.shape.join() !== ref.shape.join() || t.dtype !== dtype) {
    throw new ShapeError(`${name} must be ${dtype}[${ref.shape.join(', ')}]`, { op, shapes: `${name}=${t} ref=${ref}` });
  }
}

/**
 * How rows of D elements sit in workgroup memory. D itself is a runtime parameter (p.d, and p.d4 = ceil(D/4)
 * vec4 columns): pipelines specialize only on the padded width, so head dims share pipelines and loops over D
 * stay loops (unrolling them makes huge shaders that lavapipe takes many seconds to compile).
 */
export interface Layout {
  /** vec4 columns per row: ceil(D/4) padded so it splits evenly over the threads' column groups. */
  DP4: number;
  /** Row stride; one spare vec4 staggers rows across memory banks. */
  RS: number;
  /** Whether global rows are read/written as vec4 (D % 4 == 0). */
  vec: boolean;
  st: FloatDType;
}

export function layout(D: number, dtype: FloatDType, colGroups: number): Layout {
  const DP4 = roundUp(ceilDiv(D, 4), colGroups);
  return { DP4, RS: DP4 + 1, vec: D % 4 === 0, st: dtype };
}

/** Binding declaration of a q/k/v-like tensor: vec4 elements when rows are whole vec4s. */
export function bindRows(binding: number, name: string, l: Layout, access: 'read' | 'read_write'): string {
  const elem = l.vec ? `vec4<${l.st}>` : l.st;
  return `@group(0) @binding(${binding}) var<storage, ${access}> ${name}: array<${elem}>;`;
}

/** fn ld_<name>(base, d4) -> vec4<st>: 4 elements of a row starting at element `base`, zero past D. */
export function loadFn(name: string, l: Layout): string {
  if (l.vec) {
    return `fn ld_${name}(base: u32, d4: u32) -> vec4<${l.st}> {
  if (d4 >= p.d4) { return vec4<${l.st}>(); }
  return ${name}[(base >> 2u) + d4];
}`;
  }
  const parts = range(4)
    .map((c) => `  if (d + ${c}u < p.d) { r.${XYZW[c]} = ${name}[base + d + ${c}u]; }`)
    .join('\n');
  return `fn ld_${name}(base: u32, d4: u32) -> vec4<${l.st}> {
  var r = vec4<${l.st}>();
  let d = d4 * 4u;
${parts}
  return r;
}`;
}

/** fn st_<name>(base, d4, value): stores 4 elements of a row, dropping those past D. */
export function storeFn(name: string, l: Layout): string {
  if (l.vec) {
    return `fn st_${name}(base: u32, d4: u32, x: vec4<f32>) {
  if (d4 < p.d4) { ${name}[(base >> 2u) + d4] = vec4<${l.st}>(x); }
}`;
  }
  const parts = range(4)
    .map((c) => `  if (d + ${c}u < p.d) { ${name}[base + d + ${c}u] = ${l.st}(x.${XYZW[c]}); }`)
    .join('\n');
  return `fn st_${name}(base: u32, d4: u32, x: vec4<f32>) {
  let d = d4 * 4u;
${parts}
}`;
}

/**
 * Copies `rows` rows of a global tensor into workgroup array `dst` (row stride RS). `rowBase` is a WGSL
 * expression for the global element offset of local row $r; `rowOk` says whether that row exists (else
 * zeros). Only the p.d4 data columns are written: padding columns are never read into a stored result.
 * Groups of up to 8 threads read consecutive vec4s of a row, so global reads coalesce.
 */
export function tileLoad(dst: string, src: string, rows: number, nt: number, l: Layout, rowOk: string, rowBase: string): string {
  const ct = gcd(nt, 8);
  return `for (var rr = li / ${ct}u; rr < ${rows}u; rr += ${nt / ct}u) {
    let ok = ${rowOk.replaceAll('$r', 'rr')};
    let base = ${rowBase.replaceAll('$r', 'rr')};
    for (var d4 = li % ${ct}u; d4 < p.d4; d4 += ${ct}u) {
      var x = vec4<${l.st}>();
      if (ok) { x = ld_${src}(base, d4); }
      ${dst}[rr * ${l.RS}u + d4] = x;
    }
  }`;
}

export function gcd(a: number, b: number): number {
  while (b) [a, b] = [b, a % b];
  return a;
}

/**
 * The sequence length as a workgroup-uniform value (loop bounds around barriers must be uniform).
 * `hasLen` is a WGSL condition: false where no lengths were given (then `lens` is a stand-in, never read).
 */
export function lenPrologue(hasLen: string, sExpr: string, bExpr: string): string {
  return `if (li == 0u) {
    var n = ${sExpr};
    if (${hasLen}) { n = min(u32(max(lens[${bExpr}], 0)), ${sExpr}); }
    wg_len = n;
  }
  let len = workgroupUniformLoad(&wg_len);`;
}

export function lensBinding(binding: number): string {
  return `@group(0) @binding(${binding}) var<storage, read> lens: array<i32>;`;
}

/**
 * The MHA kernels' entry point. On a CPU adapter (`s.tickets`) one workgroup per shader thread loops over the
 * dispatch's (block, head, batch) tiles, drawing them from a counter (tickets.ts): llvmpipe's equal runs of
 * workgroups fixed up front left a thread idle whenever the other was preempted. `lastFirst` walks the blocks from
 * the last, which under causality has the most work, so the long tiles do not come at the end.
 */
export function mhaMain(s: MhaSpec, threads: number, ticketBinding: number, lastFirst: boolean): { head: string; tail: string } {
  const signature = `@compute @workgroup_size(${threads})
fn main(@builtin(workgroup_id) grid_id: vec3<u32>, @builtin(local_invocation_index) li: u32) {`;
  if (!s.tickets) return { head: `${signature}
  let wid = grid_id;`, tail: '' };
  return {
    head: `${MHA_TICKETS.decl(ticketBinding)}
${signature}
  ${MHA_TICKETS.open('p.tiles', 'p.workgroups')}
  let bx = tile % p.gx;
  let wid = vec3<u32>(${lastFirst ? 'p.gx - 1u - bx' : 'bx'}, (tile / p.gx) % p.gy, tile / (p.gx * p.gy));`,
    tail: MHA_TICKETS.close,
  };
}

/** Their workgroups have several subgroups, so the ticket reaches them through workgroup memory. */
export const MHA_TICKETS = ticketWgsl('workgroup');

/** Dispatches an MHA kernel over `grid`, or over one workgroup per shader thread with the tile counter bound last. */
export function mhaDispatch(
  gpu: Gpu,
  op: string,
  shapes: string,
  tickets: boolean,
  pipeline: GPUComputePipeline,
  uniforms: { d: Dims; opts: AttentionOptions },
  grid: readonly [number, number, number],
  bindings: Tensor[],
): void {
  if (!tickets) {
    gpu.dispatch({ op, shapes, pipeline, params: mhaParams(uniforms.d, uniforms.opts, grid), bindings, workgroups: [...grid] });
    return;
  }
  const workgroups = ticketWorkgroups(grid[0] * grid[1] * grid[2]);
  const params = mhaParams(uniforms.d, uniforms.opts, grid, workgroups);
  gpu.dispatch({ op, shapes, pipeline, params, bindings: [...bindings, ticketCounter(gpu)], workgroups: [workgroups] });
}

/** The lengths binding, or a stand-in read-only buffer (q) that the kernel never reads. */
export function lensOrStandIn(opts: AttentionOptions, q: Tensor): Tensor {
  return opts.lengths ?? q;
}

/** Workgroup bytes of each kernel, to pick tiles that fit the device. WGSL alignment adds a little; keep slack. */
export function vecBytes(dtype: FloatDType): number {
  return dtype === 'f16' ? 8 : 16;
}

export function pickTile(gpu: Gpu, presets: AttentionTile[], bytes: (t: AttentionTile) => number, op: string, shapes: string): AttentionTile {
  const limit = gpu.limits.maxComputeWorkgroupStorageSize ?? 16384;
  const t = presets.find((x) => bytes(x) <= limit);
  if (!t) throw new ShapeError(`head dim too large for ${limit} bytes of workgroup memory`, { op, shapes });
  return t;
}

export function fitTile(gpu: Gpu, tile: AttentionTile, bytes: number, op: string, shapes: string): void {
  const limit = gpu.limits.maxComputeWorkgroupStorageSize ?? 16384;
  if (bytes > limit) throw new ShapeError(`tile ${tile.bq}x${tile.bk} needs ${bytes} bytes of workgroup memory, over ${limit}`, { op, shapes });
}

export interface MhaSpec {
  dtype: FloatDType;
  /** Head dim, for the layout; the pipeline key holds only what the WGSL specializes on (see mhaKey). */
  D: number;
  bq: number;
  bk: number;
  /** Tiles drawn from a counter (CPU adapters; see mhaMain). */
  tickets: boolean;
}

/** Everything the MHA kernels specialize on: the layout for `colGroups`, not D itself. */
export function mhaKey(s: MhaSpec, colGroups: number): string {
  const l = layout(s.D, s.dtype, colGroups);
  return `${s.dtype}:dp4=${l.DP4}:vec=${l.vec}:${s.bq}x${s.bk}${s.tickets ? ':tickets' : ''}`;
}

/** Score validity for query row i and key j (u32 WGSL expressions); `len` and `p` in scope. */
export function maskExpr(i: string, j: string, rowCheck: boolean): string {
  const parts = [`${j} < len`, `(p.causal == 0u || i32(${j}) <= i32(${i}) + p.off)`];
  if (rowCheck) parts.push(`${i} < p.t`, `i32(${i}) + p.off < i32(len)`);
  return parts.join(' && ');
}

/**
 * The cpu-tiled kernels' spec where they run (AttentionOptions.path), else undefined. 'auto' leaves them out where
 * a scalar-kernel knob (tile, tickets) was given, since those ask for the workgroup kernels.
 */
export function cpuSpec(gpu: Gpu, d: Dims, opts: AttentionOptions, kernel: CpuAttentionKernel, op: string, shapes: string): CpuAttentionSpec | undefined {
  const path = opts.path ?? 'auto';
  if (path === 'scalar' || path === 'subgroup-matrix') return undefined;
  if (path === 'cpu-tiled') {
    const why = cpuTiledUnfit(gpu, d.D);
    if (why) throw new ShapeError(`cpu-tiled attention ${why}`, { op, shapes });
  } else if (attentionPath(gpu, d.D) !== 'cpu-tiled' || opts.tile || opts.tickets === false) {
    return undefined;
  }
  const R = opts.cpuRows ?? cpuAttentionRows(kernel, d.D);
  if (!Number.isInteger(R) || R < 1 || R > 8) throw new ShapeError(`cpuRows must be an integer from 1 to 8, got ${R}`, { op, shapes });
  return { dtype: d.dtype, D: d.D, R };
}

export function cpuTiledUnfit(gpu: Gpu, D: number): string | undefined {
  return cpuLanesUnfit(gpu) ?? cpuAttentionUnfit(D);
}

/**
 * The kernels `attentionBackward` runs by default ('auto') for a head dim on this device, and `attention` too
 * where the subgroup-matrix forward does not apply (attentionForwardPath).
 */
export function attentionPath(gpu: Gpu, D: number): 'cpu-tiled' | 'scalar' {
  return gpu.softwareAdapter && !cpuTiledUnfit(gpu, D) ? 'cpu-tiled' : 'scalar';
}

/** Whether a subgroup-matrix kernel's tile fits a fragment shape, subgroup size and head dim, and its memory. */
export interface SgmFit {
  unfit(cfg: SubgroupMatrixConfig, D: number, sg: number): string | undefined;
  bytes(cfg: SubgroupMatrixConfig, D: number): number;
}

/** The fragment shape and subgroup size a subgroup-matrix attention kernel runs with here, and why it cannot, if so. */
export function sgmPlan(gpu: Gpu, D: number, dtype: FloatDType, fit: SgmFit, emulate = false): { cfg?: SubgroupMatrixConfig; sg: number; why?: string } {
  const cfg = emulate ? EMULATED_CONFIG : gpu.variants.matmulF16 === 'subgroup-matrix' ? f16MatrixConfig(gpu.features) : undefined;
  const sg = emulate ? 8 : (subgroupSizes(gpu.device).max ?? 32);
  const why = !cfg
    ? 'needs an adapter with f16 subgroup matrices'
    : dtype !== 'f16'
      ? 'takes f16 q, k, v only'
      : (fit.unfit(cfg, D, sg) ?? (fit.bytes(cfg, D) > (gpu.limits.maxComputeWorkgroupStorageSize ?? 16384) ? 'tile over the workgroup memory limit' : undefined));
  return { cfg, sg, why };
}
