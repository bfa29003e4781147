import type { Gpu } from '../runtime/gpu.js';
import { Params } from '../runtime/params.js';
import { ShapeError } from '../runtime/errors.js';
import type { Tensor } from '../runtime/tensor.js';
import { strideGrid, strideLoop } from './wgsl.js';
import { CPU_LANES, cpuLanesUnfit } from './cpu-lanes.js';

const WG = 256;
/** Most workgroups one tensor (window) gets in the first norm stage; each writes one partial sum. */
const NORM_MAX_WG = 64;
/** Elements per thread before the first norm stage adds another workgroup. */
const NORM_PER_THREAD = 8;

// ------------------------------------------------------------------ global gradient norm

/**
 * Invocations per first-stage workgroup: one 8-lane subgroup on a software adapter that has them (its sum is one
 * subgroupAdd; llvmpipe switches coroutines at each of a 256-thread tree's 9 barriers), else WG.
 */
function normLanes(gpu: Gpu): number {
  return gpu.softwareAdapter && !cpuLanesUnfit(gpu) ? CPU_LANES : WG;
}

function normGroups(n: number, lanes: number): number {
  return Math.max(1, Math.min(NORM_MAX_WG, Math.ceil(n / (lanes * NORM_PER_THREAD))));
}

/** Elements per item of a tensor's first-stage loads: vec4s where its size allows. */
const normVec = (g: Tensor) => (g.size % 4 === 0 ? 4 : 1);

/** A tensor's windows in the first stage (whole items). */
const normWindows = (gpu: Gpu, g: Tensor) => gpu.windows(g.size, 4, normVec(g));

/** Number of partial sums the first stage writes for these tensors: the size of the `partials` buffer. */
export function gradNormPartials(gpu: Gpu, grads: readonly Tensor[]): number {
  let slots = 0;
  for (const g of grads) for (const w of normWindows(gpu, g)) slots += normGroups(w.count, normLanes(gpu));
  return slots;
}

function checkF32(op: string, ts: readonly Tensor[], what: string): void {
  for (const [i, t] of ts.entries()) {
    if (t.dtype !== 'f32') throw new ShapeError(`${what}[${i}] must be f32`, { op, shapes: `${t}` });
  }
}

export interface GradNormOptions {
  /** f32[1] that receives the norm; made when absent. */
  out?: Tensor;
  /**
   * u32[2] status: [0] = 1 if this norm is NaN or Inf (else 0), [1] += that flag (a running count of non-finite
   * norms, i.e. of steps AdamW skipped). Not touched when absent.
   */
  status?: Tensor;
  /** f32 scratch with at least `gradNormPartials(gpu, grads)` elements; made when absent. */
  partials?: Tensor;
}

/**
 * Global L2 norm over a list of gradient tensors, as torch.nn.utils.clip_grad_norm_ computes it, all on the GPU:
 * stage one writes per-workgroup sums of squares of each tensor into a small buffer, stage two reduces them and
 * writes sqrt(sum) to `out`. Nothing is read back; read `out` if you want to log it.
 */
export function globalGradNorm(gpu: Gpu, grads: readonly Tensor[], opts: GradNormOptions = {}): Tensor<'f32'> {
  const op = 'globalGradNorm';
  const shapes = grads.map(String).join(', ');
  if (grads.length === 0) throw new ShapeError('needs at least one tensor', { op, shapes });
  checkF32(op, grads, 'grads');
  const slots = gradNormPartials(gpu, grads);
  const { out, status } = opts;
  if (out && (out.dtype !== 'f32' || out.size !== 1)) throw new ShapeError('out must be f32[1]', { op, shapes: `${out}` });
  if (status && (status.dtype !== 'u32' || status.size !== 2)) throw new ShapeError('status must be u32[2]', { op, shapes: `${status}` });
  if (opts.partials && (opts.partials.dtype !== 'f32' || opts.partials.size < slots)) {
    throw new ShapeError(`partials must be f32 with >= ${slots} elements`, { op, shapes: `${opts.partials}` });
  }
  // At least one element: with every tensor empty the final pass sums no partials, but still binds the buffer.
  const partials = opts.partials ?? gpu.tensor([Math.max(1, slots)], 'f32', undefined, op);
  const norm = (out ?? gpu.tensor([1], 'f32', undefined, op)) as Tensor<'f32'>;

  // vec4 loads where a tensor's size allows (its windows then hold whole vec4s).
  const lanes = normLanes(gpu);
  const stage1 = (vec: number) =>
    gpu.pipeline(`gradnorm:partial:${vec}:${lanes}`, () => /* wgsl */ `
${lanes === CPU_LANES ? 'enable subgroups;' : ''}
struct P { n: u32, base: u32, groups: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> g: array<${vec === 4 ? 'vec4<f32>' : 'f32'}>;
@group(0) @binding(2) var<storage, read_write> partials: array<f32>;
${lanes === CPU_LANES ? '' : `var<workgroup> red: array<f32, ${WG}>;`}
@compute @workgroup_size(${lanes})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  var s = 0.0;
  for (var i = wid.x * ${lanes}u + li; i < p.n; i += p.groups * ${lanes}u) { let x = g[i]; s += ${vec === 4 ? 'dot(x, x)' : 'x * x'}; }
  ${
    lanes === CPU_LANES
      ? `let t = subgroupAdd(s);
  if (li == 0u) { partials[p.base + wid.x] = t; }`
      : `red[li] = s;
  workgroupBarrier();
  for (var k = ${WG / 2}u; k > 0u; k >>= 1u) {
    if (li < k) { red[li] += red[li + k]; }
    workgroupBarrier();
  }
  if (li == 0u) { partials[p.base + wid.x] = red[0]; }`
  }
}`);
  let base = 0;
  for (const g of grads) {
    const vec = normVec(g);
    for (const w of normWindows(gpu, g)) {
      const groups = normGroups(w.count, lanes);
      gpu.dispatch({
        op: `${op}.partial`,
        shapes: `${g}`,
        pipeline: stage1(vec),
        params: new Params().u32(w.count / vec).u32(base).u32(groups).bytes(),
        bindings: [g.binding(w.start * 4, w.count * 4), partials],
        workgroups: [groups],
      });
      base += groups;
    }
  }

  const withStatus = status !== undefined;
  const stage2 = gpu.pipeline(`gradnorm:final:${withStatus}`, () => /* wgsl */ `
struct P { count: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> partials: array<f32>;
@group(0) @binding(2) var<storage, read_write> norm: array<f32>;
${withStatus ? '@group(0) @binding(3) var<storage, read_write> status: array<u32>;' : ''}
var<workgroup> red: array<f32, ${WG}>;
@compute @workgroup_size(${WG})
fn main(@builtin(local_invocation_index) li: u32) {
  var s = 0.0;
  for (var i = li; i < p.count; i += ${WG}u) { s += partials[i]; }
  red[li] = s;
  workgroupBarrier();
  for (var k = ${WG / 2}u; k > 0u; k >>= 1u) {
    if (li < k) { red[li] += red[li + k]; }
    workgroupBarrier();
  }
  if (li == 0u) {
    let n = sqrt(red[0]);
    norm[0] = n;
    ${withStatus ? 'let bad = u32(!finite(n)); status[0] = bad; status[1] += bad;' : ''}
  }
}
${FINITE}`);
  gpu.dispatch({
    op: `${op}.final`,
    shapes,
    pipeline: stage2,
    params: new Params().u32(slots).bytes(),
    bindings: withStatus ? [partials, norm, status] : [partials, norm],
    workgroups: [1],
  });
  if (!opts.partials) partials.dispose();
  return norm;
}

/** Bit test, not x != x: compilers may assume floats are finite and fold comparisons away. */
const FINITE = /* wgsl */ `
fn finite(x: f32) -> bool { return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u; }
`;

// ------------------------------------------------------------------ AdamW update

export interface AdamWHyper {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** 1-based step count, for bias correction. */
  step: number;
  /** Clip to this global norm (read from `norm` on the GPU); 0 or absent: no clipping. */
  maxGradNorm?: number;
  /** Leave the parameter and state untouched when `norm` is NaN/Inf. Needs `norm`. */
  skipNonFinite?: boolean;
}

const zeroNorms = new WeakMap<Gpu, Tensor>();

/** torch.optim.AdamW's ranges: a NaN or a beta of 1 would silently write NaN into every parameter. */
function checkHyper(op: string, h: Pick<AdamWHyper, 'lr' | 'beta1' | 'beta2' | 'eps' | 'weightDecay' | 'maxGradNorm'>, shapes?: string): void {
  const bad = (msg: string) => new ShapeError(msg, { op, ...(shapes ? { shapes } : {}) });
  for (const [name, x] of [['lr', h.lr], ['eps', h.eps], ['weightDecay', h.weightDecay], ['maxGradNorm', h.maxGradNorm ?? 0]] as const) {
    if (!(x >= 0) || !Number.isFinite(x)) throw bad(`${name} must be finite and >= 0, got ${x}`);
  }
  for (const [name, x] of [['beta1', h.beta1], ['beta2', h.beta2]] as const) {
    if (!(x >= 0 && x < 1)) throw bad(`${name} must be in [0, 1), got ${x}`);
  }
}

/**
 * One fused AdamW update of one f32 parameter tensor, in place, with torch.optim.AdamW's semantics:
 *   p *= 1 - lr·wd;  m = β1·m + (1-β1)·g;  v = β2·v + (1-β2)·g²;
 *   p -= lr/(1-β1^t) · m / (sqrt(v)/sqrt(1-β2^t) + eps)
 * where g = grad · min(1, maxGradNorm/(norm+1e-6)) when clipping. `norm` is an f32[1] GPU tensor (from
 * `globalGradNorm`), so clipping and the non-finite skip need no readback. `grad` is not modified.
 */
export function adamwUpdate(gpu: Gpu, param: Tensor, grad: Tensor, m: Tensor, v: Tensor, h: AdamWHyper, norm?: Tensor): void {
  const op = 'adamwUpdate';
  const shapes = `p ${param}, g ${grad}, m ${m}, v ${v}`;
  checkF32(op, [param, grad, m, v], 'tensor');
  if (grad.size !== param.size || m.size !== param.size || v.size !== param.size) {
    throw new ShapeError('param, grad, m and v need equal sizes', { op, shapes });
  }
  if (norm && (norm.dtype !== 'f32' || norm.size !== 1)) throw new ShapeError('norm must be f32[1]', { op, shapes: `${norm}` });
  if (!(h.step >= 1) || !Number.isInteger(h.step)) throw new ShapeError(`step must be an integer >= 1, got ${h.step}`, { op, shapes });
  checkHyper(op, h, shapes);
  const clip = (h.maxGradNorm ?? 0) > 0;
  if ((clip || h.skipNonFinite) && !norm) throw new ShapeError('clipping and skipNonFinite need the norm tensor', { op, shapes });
  let normT = norm;
  if (!normT) {
    normT = zeroNorms.get(gpu);
    if (!normT || normT.isDisposed) zeroNorms.set(gpu, (normT = gpu.tensor([1], 'f32', [0], op)));
  }
  // vec4 items where the size allows (windows then hold whole vec4s): the same arithmetic per component, and on
  // llvmpipe a storage access, a loop over the lanes, shared by 4 elements.
  const vec = param.size % 4 === 0 ? 4 : 1;
  const t = vec === 4 ? 'vec4<f32>' : 'f32';
  const pipeline = gpu.pipeline(`adamw:f32:${vec}`, () => /* wgsl */ `
struct P { n: u32, decay: f32, step_size: f32, beta1: f32, beta2: f32, inv_bc2_sqrt: f32, eps: f32,
           max_norm: f32, skip_nonfinite: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> param: array<${t}>;
@group(0) @binding(2) var<storage, read> grad: array<${t}>;
@group(0) @binding(3) var<storage, read_write> m: array<${t}>;
@group(0) @binding(4) var<storage, read_write> v: array<${t}>;
@group(0) @binding(5) var<storage, read> norm: array<f32>;
${FINITE}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
  let total = norm[0];
  if (p.skip_nonfinite != 0u && !finite(total)) { return; }
  var scale = 1.0;
  if (p.max_norm > 0.0) { scale = min(1.0, p.max_norm / (total + 1e-6)); }
  ${strideLoop(WG, 'i', 'p.n')} {
    let g = grad[i] * scale;
    let mi = m[i] + (1.0 - p.beta1) * (g - m[i]);
    let vi = p.beta2 * v[i] + (1.0 - p.beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    param[i] = param[i] * p.decay - p.step_size * mi / (sqrt(vi) * p.inv_bc2_sqrt + p.eps);
  }
}`);
  // Bias corrections in float64 on the host, as torch does for non-capturable steps.
  const bc1 = 1 - h.beta1 ** h.step;
  const bc2 = 1 - h.beta2 ** h.step;
  for (const w of gpu.windows(param.size, 4, vec)) {
    const [s, len] = [w.start * 4, w.count * 4];
    gpu.dispatch({
      op,
      shapes,
      pipeline,
      params: new Params()
        .u32(w.count / vec)
        .f32(1 - h.lr * h.weightDecay)
        .f32(h.lr / bc1)
        .f32(h.beta1)
        .f32(h.beta2)
        .f32(1 / Math.sqrt(bc2))
        .f32(h.eps)
        .f32(clip ? h.maxGradNorm! : 0)
        .u32(h.skipNonFinite ? 1 : 0)
        .bytes(),
      bindings: [param.binding(s, len), grad.binding(s, len), m.binding(s, len), v.binding(s, len), normT],
      workgroups: strideGrid(gpu, w.count / vec, WG),
    });
  }
}

// ------------------------------------------------------------------ optimizer

export interface AdamWOptions {
  lr: number;
  betas?: [number, number];
  eps?: number;
  weightDecay?: number;
  /** Global gradient-norm clipping threshold; 0 or absent: no clipping (the norm is still computed if skipping). */
  maxGradNorm?: number;
  /** Skip the whole step when the global grad norm is NaN/Inf (default true); counted in `status`. */
  skipNonFinite?: boolean;
  /** Per-parameter switch for weight decay (e.g. false for norms and biases); default all true. */
  decay?: boolean[];
}

export interface AdamWState {
  /** Steps taken so far (the next step uses step + 1 for bias correction). */
  step: number;
  m: Float32Array[];
  v: Float32Array[];
}

/**
 * AdamW over a list of f32 parameters, owning the m/v state. `step(grads)` records, with no readback:
 * the global grad norm (two-stage reduction) and one fused update dispatch per parameter, which reads the norm
 * from the GPU to clip, and skips the update when the norm is not finite.
 *
 * Non-finite gradients: with `skipNonFinite` (default), a step whose global norm is NaN/Inf leaves parameters,
 * m and v untouched, sets status[0] = 1 and increments status[1] (read them with `skipped()`). The host step
 * counter still advances, so bias correction treats the skipped step as taken (it cannot know without a readback).
 */
export class AdamW {
  readonly m: Tensor<'f32'>[];
  readonly v: Tensor<'f32'>[];
  /** f32[1]: the global grad norm (before clipping) of the last step. */
  readonly norm: Tensor<'f32'>;
  /** u32[2]: [last step skipped (0/1), steps skipped so far]. */
  readonly status: Tensor<'u32'>;
  lr: number;
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;
  readonly maxGradNorm: number;
  readonly skipNonFinite: boolean;
  private t = 0;
  private readonly decay: boolean[];
  private readonly partials: Tensor;

  constructor(
    readonly gpu: Gpu,
    readonly params: readonly Tensor[],
    opts: AdamWOptions,
  ) {
    const op = 'AdamW';
    if (params.length === 0) throw new ShapeError('needs at least one parameter', { op });
    checkF32(op, params, 'params');
    if (opts.decay && opts.decay.length !== params.length) {
      throw new ShapeError(`decay has ${opts.decay.length} entries for ${params.length} params`, { op });
    }
    this.lr = opts.lr;
    [this.beta1, this.beta2] = opts.betas ?? [0.9, 0.999];
    this.eps = opts.eps ?? 1e-8;
    this.weightDecay = opts.weightDecay ?? 0.01;
    this.maxGradNorm = opts.maxGradNorm ?? 0;
    this.skipNonFinite = opts.skipNonFinite ?? true;
    this.decay = opts.decay ?? params.map(() => true);
    checkHyper(op, this);
    this.m = params.map((p) => gpu.zeros(p.shape, 'f32', 'AdamW.m'));
    this.v = params.map((p) => gpu.zeros(p.shape, 'f32', 'AdamW.v'));
    this.norm = gpu.zeros([1], 'f32', 'AdamW.norm');
    this.status = gpu.zeros([2], 'u32', 'AdamW.status');
    this.partials = gpu.tensor([gradNormPartials(gpu, params)], 'f32', undefined, 'AdamW.partials');
  }

  get stepCount(): number {
    return this.t;
  }

  /** One optimizer step; `lr` overrides the current rate (e.g. from a schedule). Returns the norm tensor. */
  step(grads: readonly Tensor[], lr = this.lr): Tensor<'f32'> {
    const op = 'AdamW.step';
    if (grads.length !== this.params.length) {
      throw new ShapeError(`${grads.length} grads for ${this.params.length} params`, { op });
    }
    grads.forEach((g, i) => {
      if (g.size !== this.params[i].size || g.dtype !== 'f32') {
        throw new ShapeError(`grad ${i} does not match its parameter`, { op, shapes: `${g} vs ${this.params[i]}` });
      }
    });
    // Before any work, so a bad rate leaves the step count and the state as they were.
    checkHyper(op, { lr, beta1: this.beta1, beta2: this.beta2, eps: this.eps, weightDecay: this.weightDecay, maxGradNorm: this.maxGradNorm });
    const needNorm = this.maxGradNorm > 0 || this.skipNonFinite;
    if (needNorm) globalGradNorm(this.gpu, grads, { out: this.norm, status: this.status, partials: this.partials });
    this.t++;
    this.lr = lr;
    this.params.forEach((p, i) => {
      adamwUpdate(
        this.gpu,
        p,
        grads[i],
        this.m[i],
        this.v[i],
        {
          lr,
          beta1: this.beta1,
          beta2: this.beta2,
          eps: this.eps,
          weightDecay: this.decay[i] ? this.weightDecay : 0,
          step: this.t,
          maxGradNorm: this.maxGradNorm,
          skipNonFinite: this.skipNonFinite,
        },
        needNorm ? this.norm : undefined,
      );
    });
    return this.norm;
  }

  /** Zeroes gradient tensors on the GPU (for accumulation across micro-batches). */
  zeroGrad(grads: readonly Tensor[]): void {
    for (const g of grads) this.gpu.clear(g);
  }

  /** Reads `status`: whether the last step was skipped for a non-finite norm, and how many were. */
  async skipped(): Promise<{ last: boolean; total: number }> {
    const s = await this.status.read();
    return { last: s[0] !== 0, total: s[1] };
  }

  /** Host copy of the state, for checkpoints. */
  async state(): Promise<AdamWState> {
    return {
      step: this.t,
      m: await Promise.all(this.m.map((t) => t.read())),
      v: await Promise.all(this.v.map((t) => t.read())),
    };
  }

  loadState(s: AdamWState): void {
    if (s.m.length !== this.params.length || s.v.length !== this.params.length) {
      throw new ShapeError(`state has ${s.m.length}/${s.v.length} tensors for ${this.params.length} params`, { op: 'AdamW.loadState' });
    }
    this.t = s.step;
    s.m.forEach((x, i) => this.m[i].write(x));
    s.v.forEach((x, i) => this.v[i].write(x));
  }

  dispose(): void {
    for (const t of [...this.m, ...this.v, this.norm, this.status, this.partials]) t.dispose();
  }
}

/** Zeroes gradient tensors on the GPU. */
export function zeroGrads(gpu: Gpu, grads: readonly Tensor[]): void {
  for (const g of grads) gpu.clear(g);
}

// ------------------------------------------------------------------ learning-rate schedules

export interface CosineScheduleOptions {
  lr: number;
  warmupSteps: number;
  totalSteps: number;
  /** Final rate as a fraction of `lr` (default 0). */
  minLrRatio?: number;
}

/**
 * Linear warmup then cosine decay to lr·minLrRatio. `step` is 0-based (the index of the step about to be taken):
 * warmup gives lr·(step+1)/warmupSteps for step < warmupSteps, so the first step is not wasted at lr 0; decay
 * runs from lr at step = warmupSteps to the minimum at step = totalSteps, and stays there after.
 */
export function cosineLr(step: number, o: CosineScheduleOptions): number {
  checkSchedule('cosineLr', step, o);
  const ratio = o.minLrRatio ?? 0;
  if (!(ratio >= 0 && ratio <= 1)) throw new ShapeError(`minLrRatio must be in [0, 1], got ${ratio}`, { op: 'cosineLr' });
  if (!Number.isInteger(o.totalSteps) || o.totalSteps < 0) throw new ShapeError(`totalSteps must be an integer >= 0, got ${o.totalSteps}`, { op: 'cosineLr' });
  if (step < o.warmupSteps) return (o.lr * (step + 1)) / o.warmupSteps;
  const min = o.lr * ratio;
  const progress = Math.min(1, (step - o.warmupSteps) / Math.max(1, o.totalSteps - o.warmupSteps));
  return min + (o.lr - min) * 0.5 * (1 + Math.cos(Math.PI * progress));
}

/** Constant rate after an optional linear warmup (same warmup convention as `cosineLr`). */
export function constantLr(step: number, o: { lr: number; warmupSteps?: number }): number {
  checkSchedule('constantLr', step, o);
  const w = o.warmupSteps ?? 0;
  return step < w ? (o.lr * (step + 1)) / w : o.lr;
}

function checkSchedule(op: string, step: number, o: { lr: number; warmupSteps?: number }): void {
  if (!Number.isInteger(step) || step < 0) throw new ShapeError(`step must be an integer >= 0, got ${step}`, { op });
  if (!(o.lr >= 0) || !Number.isFinite(o.lr)) throw new ShapeError(`lr must be finite and >= 0, got ${o.lr}`, { op });
  const w = o.warmupSteps ?? 0;
  if (!Number.isInteger(w) || w < 0) throw new ShapeError(`warmupSteps must be an integer >= 0, got ${w}`, { op });
}
