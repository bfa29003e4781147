import type { Gpu } from '../runtime/gpu.js';
import { Params } from '../runtime/params.js';
import { ShapeError } from '../runtime/errors.js';
import type { Tensor } from '../runtime/tensor.js';
import { DTYPE_BYTES } from '../runtime/dtype.js';
import { LINEAR_WORKGROUP, enableF16, wgslType } from './wgsl.js';
import { matmul } from './matmul.js';

const WG = 256;

export interface LoraOptions {
  /** LoRA alpha; the low-rank path is scaled by alpha / r. */
  alpha: number;
  /** Dropout probability on the LoRA path's input (default 0). */
  dropout?: number;
  /** Dropout seed: the mask is a hash of (seed, element index), recomputed in backward, never stored. */
  seed?: number;
  /** Bias of the frozen linear layer, [out]. */
  bias?: Tensor;
}

/** Keep threshold on a 32-bit hash: an element survives dropout p when hash >= floor(p·2³²). */
export function loraDropThreshold(p: number): number {
  return Math.min(0xffffffff, Math.floor(p * 4294967296));
}

// PCG-style integer hash; the CPU twin is loraKeep in src/reference/lora.ts.
const HASH_WGSL = /* wgsl */ `
fn pcg_hash(v: u32) -> u32 {
  let s = v * 747796405u + 2891336453u;
  let w = ((s >> ((s >> 28u) + 4u)) ^ s) * 277803737u;
  return (w >> 22u) ^ w;
}`;

/**
 * Inverted dropout with an in-kernel mask: out[i] = keep(seed, i) ? x[i] / (1 - p) : 0, i the flat element index.
 * `out` may be `x` (in place).
 */
export function loraDropout(gpu: Gpu, x: Tensor, p: number, seed: number, out?: Tensor): Tensor {
  const shapes = `${x} p=${p}`;
  if (!(p >= 0 && p < 1)) throw new ShapeError(`dropout probability ${p} outside [0, 1)`, { op: 'loraDropout', shapes });
  if (x.dtype !== 'f32' && x.dtype !== 'f16') throw new ShapeError('dropout takes f32 or f16', { op: 'loraDropout', shapes });
  const y = out ?? gpu.tensor(x.shape, x.dtype, undefined, 'loraDropout');
  if (y.size !== x.size || y.dtype !== x.dtype) throw new ShapeError(`out ${y} mismatch`, { op: 'loraDropout', shapes });
  const t = wgslType(x.dtype);
  const inPlace = y.buffer === x.buffer && y.byteOffset === x.byteOffset;
  const pipeline = gpu.pipeline(`lora-dropout:${x.dtype}:${inPlace}`, () => /* wgsl */ `
${enableF16([x.dtype])}
struct P { n: u32, base: u32, seed: u32, threshold: u32, scale: f32 }
@group(0) @binding(0) var<uniform> p: P;
${inPlace ? `@group(0) @binding(1) var<storage, read_write> y: array<${t}>;` : `@group(0) @binding(1) var<storage, read> x: array<${t}>;
@group(0) @binding(2) var<storage, read_write> y: array<${t}>;`}
${HASH_WGSL}
${LINEAR_WORKGROUP}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
  let i = linear_wg(wid, nwg) * ${WG}u + li;
  if (i >= p.n) { return; }
  let keep = pcg_hash((p.base + i) ^ pcg_hash(p.seed)) >= p.threshold;
  y[i] = select(${t}(0.0), ${inPlace ? 'y' : 'x'}[i] * ${t}(p.scale), keep);
}`);
  const eb = DTYPE_BYTES[x.dtype];
  for (const w of gpu.windows(x.size, eb, 4)) {
    const [start, len] = [w.start * eb, w.count * eb];
    gpu.dispatch({
      op: 'loraDropout',
      shapes,
      pipeline,
      params: new Params().u32(w.count).u32(w.start).u32(seed >>> 0).u32(loraDropThreshold(p)).f32(1 / (1 - p)).bytes(),
      bindings: inPlace ? [y.binding(start, len)] : [x.binding(start, len), y.binding(start, len)],
      workgroups: gpu.grid(Math.ceil(w.count / WG)),
    });
  }
  return y;
}

interface LoraDims {
  T: number;
  inF: number;
  outF: number;
  r: number;
}

function checkLora(op: string, x: Tensor, W: Tensor, A: Tensor, B: Tensor, opts: LoraOptions, dy?: Tensor): LoraDims {
  const shapes = `x ${x}, W ${W}, A ${A}, B ${B}${dy ? `, dy ${dy}` : ''}`;
  const fail = (msg: string): never => {
    throw new ShapeError(msg, { op, shapes });
  };
  if (W.rank !== 2 || A.rank !== 2 || B.rank !== 2) fail('W, A, B must be rank 2');
  const [outF, inF] = W.shape;
  const r = A.shape[0];
  if (x.rank < 1 || x.shape[x.rank - 1] !== inF) fail(`x's last dimension must be in=${inF}`);
  if (A.shape[1] !== inF) fail(`A must be [r, ${inF}]`);
  if (B.shape[0] !== outF || B.shape[1] !== r) fail(`B must be [${outF}, ${r}]`);
  if (x.dtype !== 'f32' || A.dtype !== 'f32' || B.dtype !== 'f32') fail('x, A, B must be f32');
  if (W.dtype !== 'f32' && W.dtype !== 'f16') fail('W must be f32 or f16');
  if (opts.bias && (opts.bias.size !== outF || opts.bias.dtype === 'i32' || opts.bias.dtype === 'u32')) fail(`bias must be [${outF}] float`);
  const p = opts.dropout ?? 0;
  if (!(p >= 0 && p < 1)) fail(`dropout ${p} outside [0, 1)`);
  if (!(r > 0)) fail('rank r must be positive');
  // Checked here, not by the matmul that scales by alpha / r: that one runs after others were recorded.
  if (typeof opts.alpha !== 'number' || !Number.isFinite(opts.alpha)) fail(`alpha must be a finite number, got ${opts.alpha}`);
  const T = x.size / inF;
  if (dy && (dy.size !== T * outF || dy.shape[dy.rank - 1] !== outF || dy.dtype !== 'f32')) fail(`dy must be f32 [..., ${outF}]`);
  return { T, inF, outF, r };
}

/**
 * LoRA linear: y = x·Wᵀ (+ b) + (alpha/r)·(dropout(x)·Aᵀ)·Bᵀ, with x [..., in], frozen W [out, in] (f16 or f32),
 * A [r, in], B [out, r]. Returns y and h = dropout(x)·Aᵀ [T, r], which backward needs.
 *
 * Dispatches: dropout (only when p > 0), h = xd·Aᵀ, y = x·Wᵀ with the bias fused into its epilogue, then
 * y += (alpha/r)·h·Bᵀ with the scaling and the accumulation (beta = 1) fused into the matmul epilogue.
 */
export function loraLinear(gpu: Gpu, x: Tensor, W: Tensor, A: Tensor, B: Tensor, opts: LoraOptions): { y: Tensor; h: Tensor } {
  const { T, inF, outF, r } = checkLora('loraLinear', x, W, A, B, opts);
  const p = opts.dropout ?? 0;
  const x2 = x.reshape([T, inF]);
  const xd = p > 0 ? loraDropout(gpu, x2, p, opts.seed ?? 0) : x2;
  const h = matmul(gpu, xd, A, { transB: true });
  if (xd !== x2) xd.dispose();
  const y = matmul(gpu, x2, W, { transB: true, bias: opts.bias });
  matmul(gpu, h, B, { transB: true, alpha: opts.alpha / r, beta: 1, out: y });
  return { y: y.reshape([...x.shape.slice(0, -1), outF]), h };
}

/**
 * Gradients of loraLinear for upstream dy [..., out]: dx (through W and the LoRA path), dA, dB; W and the bias
 * get none. With s = alpha/r and m the dropout mask (recomputed from the seed):
 *   dB = s·dyᵀ·h,   dh = s·dy·B,   dA = dhᵀ·dropout(x),   dx = dy·W + m ⊙ (dh·A)/(1-p).
 * The last is the LoRA part (masked in place) followed by dy·W accumulated into it (beta = 1).
 */
export function loraLinearBackward(
  gpu: Gpu,
  x: Tensor,
  W: Tensor,
  A: Tensor,
  B: Tensor,
  h: Tensor,
  dy: Tensor,
  opts: LoraOptions,
): { dx: Tensor; dA: Tensor; dB: Tensor } {
  const { T, inF, outF, r } = checkLora('loraLinearBackward', x, W, A, B, opts, dy);
  if (h.size !== T * r || h.dtype !== 'f32') {
    throw new ShapeError(`h must be f32 [${T}, ${r}]`, { op: 'loraLinearBackward', shapes: `h ${h}` });
  }
  const p = opts.dropout ?? 0;
  const s = opts.alpha / r;
  const x2 = x.reshape([T, inF]);
  const dy2 = dy.reshape([T, outF]);
  const h2 = h.reshape([T, r]);
  const dB = matmul(gpu, dy2, h2, { transA: true, alpha: s });
  const dh = matmul(gpu, dy2, B, { alpha: s });
  const xd = p > 0 ? loraDropout(gpu, x2, p, opts.seed ?? 0) : x2;
  const dA = matmul(gpu, dh, xd, { transA: true });
  if (xd !== x2) xd.dispose();
  const dx = matmul(gpu, dh, A);
  dh.dispose();
  if (p > 0) loraDropout(gpu, dx, p, opts.seed ?? 0, dx);
  matmul(gpu, dy2, W, { beta: 1, out: dx });
  return { dx: dx.reshape(x.shape), dA, dB };
}
