import type { Gpu } from '../runtime/gpu.js';
import { Params } from '../runtime/params.js';
import { ShapeError } from '../runtime/errors.js';
import type { Tensor } from '../runtime/tensor.js';
import { shapeSize } from '../runtime/dtype.js';
import { enableF16, itemTypes, strideGrid, vec4Rows } from './wgsl.js';
import { rowBinding, rowWindows } from '../runtime/windows.js';

const WG = 256;

// silu(g) = g·σ(g): exp overflows to inf for g < −88, which gives σ = 0 and silu = −0, no NaN.

function check(op: string, shapes: string, ...ts: Tensor[]): void {
  for (const t of ts) {
    if (t.dtype !== 'f32' && t.dtype !== 'f16') throw new ShapeError(`${op} needs f32 or f16 tensors, got ${t}`, { op, shapes });
    if (t.dtype !== ts[0].dtype) throw new ShapeError(`${op} needs one dtype for all tensors`, { op, shapes });
  }
}

function output(gpu: Gpu, op: string, shapes: string, like: Tensor, shape: readonly number[], out: Tensor | undefined, inputs: Tensor[]): Tensor {
  const y = out ?? gpu.tensor(shape, like.dtype, undefined, op);
  if (y.size !== shapeSize(shape) || y.dtype !== like.dtype || inputs.some((t) => t.buffer === y.buffer)) {
    throw new ShapeError(`${op} output must be ${like.dtype}[${shape.join(',')}] and not alias an input, got ${y}`, { op, shapes });
  }
  return y;
}

/**
 * The pieces of the two layouts: gate and up as two tensors of one shape, or fused as one [..., 2I] tensor with
 * gate in the first half of each row and up in the second (a merged gate_up projection).
 */
interface Layout {
  rows: number;
  /** Elements of gate (and of up) per row. */
  inner: number;
  fused: boolean;
}

/**
 * SwiGLU activation of the MLP: y = silu(gate)·up, elementwise, f32 or f16 (all tensors one dtype), f32 math.
 * `up` omitted means `gate` is fused: [..., 2I] with gate then up in each row, and y is [..., I].
 */
export function swiglu(gpu: Gpu, gate: Tensor, up?: Tensor, out?: Tensor): Tensor {
  const op = 'swiglu';
  const shapes = up ? `gate=${gate} up=${up}` : `gate_up=${gate}`;
  const lay = layout(op, shapes, gate, up);
  check(op, shapes, gate, ...(up ? [up] : []));
  const shape = up ? gate.shape : [...gate.shape.slice(0, -1), lay.inner];
  const y = output(gpu, op, shapes, gate, shape, out, up ? [gate, up] : [gate]);
  run(gpu, op, shapes, lay, false, gate.dtype, up ? [gate, up] : [gate], [y]);
  return y;
}

/**
 * Backward of `swiglu`: dgate = dy·up·σ(g)·(1 + g·(1 − σ(g))), dup = dy·silu(g). With a fused input the two
 * come back fused too, as `dgate` [..., 2I] (and `dup` undefined).
 */
export function swigluBackward(gpu: Gpu, dy: Tensor, gate: Tensor, up?: Tensor): { dgate: Tensor; dup: Tensor | undefined } {
  const op = 'swigluBackward';
  const shapes = `dy=${dy} ${up ? `gate=${gate} up=${up}` : `gate_up=${gate}`}`;
  const lay = layout(op, shapes, gate, up);
  check(op, shapes, dy, gate, ...(up ? [up] : []));
  if (dy.size !== lay.rows * lay.inner) throw new ShapeError(`${op} dy must have the output's size`, { op, shapes });
  const dgate = gpu.tensor(gate.shape, gate.dtype, undefined, op);
  const dup = up ? gpu.tensor(up.shape, up.dtype, undefined, op) : undefined;
  run(gpu, op, shapes, lay, true, gate.dtype, up ? [dy, gate, up] : [dy, gate], dup ? [dgate, dup] : [dgate]);
  return { dgate, dup };
}

function layout(op: string, shapes: string, gate: Tensor, up: Tensor | undefined): Layout {
  if (up) {
    if (up.size !== gate.size || up.shape.join() !== gate.shape.join()) throw new ShapeError(`${op} needs gate and up of one shape`, { op, shapes });
    return { rows: 1, inner: gate.size, fused: false };
  }
  const last = gate.shape[gate.rank - 1] ?? 0;
  if (gate.rank < 1 || last % 2 !== 0) throw new ShapeError(`${op} needs a fused gate_up [..., 2I]`, { op, shapes });
  return { rows: last === 0 ? 0 : gate.size / last, inner: last / 2, fused: true };
}

/**
 * A grid-stride loop over output items: single elements, or vec4s of 4 where the layout allows (each storage
 * access on llvmpipe is a loop over the lanes, which a vec4 shares among 4 elements). Separate tensors are windowed
 * as rows of one item; fused ones as rows of 2I (input) and I (output) elements, so both halves of a row are
 * always in the window. A fused item's row and column advance with the loop, without a division per item (llvmpipe
 * divides lane by lane).
 */
function run(gpu: Gpu, op: string, shapes: string, lay: Layout, backward: boolean, dtype: string, ins: Tensor[], outs: Tensor[]): void {
  const total = lay.rows * lay.inner;
  if (total === 0) return;
  const bytes = dtype === 'f16' ? 2 : 4;
  const vec = vec4Rows(lay.fused ? lay.inner : total, [...ins, ...outs]);
  const { t, f } = itemTypes(dtype, vec);
  const names = backward ? (lay.fused ? ['dy', 'gu'] : ['dy', 'g', 'u']) : lay.fused ? ['gu'] : ['g', 'u'];
  const outNames = backward ? (lay.fused ? ['dgu'] : ['dg', 'du']) : ['y'];
  const all = [...names, ...outNames];
  // Item e of the window: row r, column c (fused: rows 2I long, with up at +I; all in items).
  const gi = lay.fused ? 's_gu + r * 2u * p.inner + c' : 's_g + e';
  const ui = lay.fused ? 's_gu + r * 2u * p.inner + c + p.inner' : 's_u + e';
  const g = lay.fused ? `gu[${gi}]` : `g[${gi}]`;
  const u = lay.fused ? `gu[${ui}]` : `u[${ui}]`;
  let body: string;
  if (!backward) {
    body = `let gv = ${f}(${g}); y[s_y + e] = ${t}(gv * sigmoid(gv) * ${f}(${u}));`;
  } else {
    const dgi = lay.fused ? 's_dgu + r * 2u * p.inner + c' : 's_dg + e';
    const dui = lay.fused ? `${dgi} + p.inner` : 's_du + e';
    body = `let gv = ${f}(${g});
    let sg = sigmoid(gv);
    let d = ${f}(dy[s_dy + e]);
    ${lay.fused ? 'dgu' : 'dg'}[${dgi}] = ${t}(d * ${f}(${u}) * sg * (1.0 + gv * (1.0 - sg)));
    ${lay.fused ? 'dgu' : 'du'}[${dui}] = ${t}(d * gv * sg);`;
  }
  const pipeline = gpu.pipeline(`${op}:${dtype}:${lay.fused}:${vec}`, () => /* wgsl */ `
${enableF16([dtype])}
struct P { n: u32, inner: u32, ${all.map((n) => `s_${n}: u32`).join(', ')} }
@group(0) @binding(0) var<uniform> p: P;
${names.map((n, i) => `@group(0) @binding(${i + 1}) var<storage, read> ${n}: array<${t}>;`).join('\n')}
${outNames.map((n, i) => `@group(0) @binding(${names.length + i + 1}) var<storage, read_write> ${n}: array<${t}>;`).join('\n')}
fn sigmoid(g: ${f}) -> ${f} { return 1.0 / (1.0 + exp(-g)); }
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
  ${all.map((n) => `let s_${n} = p.s_${n};`).join(' ')}
  let first = (wid.x + wid.y * nwg.x) * ${WG}u + li;
  let stride = nwg.x * nwg.y * ${WG}u;
  var r = first / p.inner;
  var c = first % p.inner;
  let dr = stride / p.inner;
  let dc = stride % p.inner;
  for (var e = first; e < p.n; e += stride) {
    ${body}
    c += dc;
    r += dr;
    if (c >= p.inner) { c -= p.inner; r += 1u; }
  }
}`);
  // Separate tensors: rows of one item; fused: whole rows (2I in, I out).
  const rows = lay.fused ? lay.rows : total / vec;
  const inner = lay.fused ? lay.inner : vec;
  for (const win of rowWindows(gpu, rows, 2 * inner * bytes, op)) {
    const bound = [...ins, ...outs].map((ts, i) => rowBinding(ts, win.start, win.count, all[i] === 'gu' || all[i] === 'dgu' ? 2 * inner : inner));
    const n = (win.count * inner) / vec;
    const params = new Params().u32(n).u32(lay.fused ? inner / vec : n);
    for (const b of bound) params.u32(b.skip / vec);
    gpu.dispatch({
      op,
      shapes,
      pipeline,
      params: params.bytes(),
      bindings: bound.map((b) => b.binding),
      workgroups: strideGrid(gpu, n, WG),
    });
  }
}
