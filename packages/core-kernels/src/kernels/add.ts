import type { Gpu } from '../runtime/gpu.js';
import { Params } from '../runtime/params.js';
import { ShapeError } from '../runtime/errors.js';
import type { Tensor } from '../runtime/tensor.js';
import type { DType } from '../runtime/dtype.js';
import { enableF16, itemTypes, strideGrid, strideLoop } from './wgsl.js';

const WG = 256;

/**
 * Residual add: out = a + b, elementwise, one dtype, shapes equal up to how the leading dimensions are split
 * ([B, T, H] + [B·T, H] is fine; [2, 3] + [3, 2] is refused: same size, but rows of another width). The output
 * has a's shape. Backward is the identity for both inputs, so callers pass the upstream gradient on (see
 * `addBackward`). `out` must not share a buffer with a or b (no in-place add).
 */
export function add<D extends DType>(gpu: Gpu, a: Tensor<D>, b: Tensor<D>, out?: Tensor<D>): Tensor<D> {
  const shapes = `${a} + ${b}`;
  const rowsAlike = (x: Tensor, y: Tensor) => x.size === y.size && (x.size === 0 || x.shape.at(-1) === y.shape.at(-1));
  if (!rowsAlike(a, b) || a.dtype !== b.dtype) throw new ShapeError('add needs equal shapes (up to merged leading dimensions) and dtypes', { op: 'add', shapes });
  if (out) {
    if (!rowsAlike(out, a) || out.dtype !== a.dtype) throw new ShapeError('add output mismatch', { op: 'add', shapes: `${shapes} -> ${out}` });
    // A buffer bound both read-only and read-write in one dispatch is a Dawn validation error that only surfaces at
    // the next read, and fails the whole batch: refuse it here.
    if (out.buffer === a.buffer || out.buffer === b.buffer) throw new ShapeError('add output must not alias a or b', { op: 'add', shapes: `${shapes} -> ${out}` });
  }
  const y = out ?? gpu.tensor(a.shape, a.dtype, undefined, 'add');
  // vec4 items where the size allows (windows then hold whole vec4s): on llvmpipe each storage access is a loop over
  // the lanes, so a vec4 shares it among 4 elements.
  const vec = a.size % 4 === 0 ? 4 : 1;
  const { t } = itemTypes(a.dtype, vec);
  const pipeline = gpu.pipeline(`add:${a.dtype}:${vec}`, () => /* wgsl */ `
${enableF16([a.dtype])}
struct P { n: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> a: array<${t}>;
@group(0) @binding(2) var<storage, read> b: array<${t}>;
@group(0) @binding(3) var<storage, read_write> y: array<${t}>;
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
  ${strideLoop(WG, 'i', 'p.n')} { y[i] = a[i] + b[i]; }
}`);
  const bytes = a.byteLength / a.size;
  // Tensors over the binding limit run window by window.
  for (const w of gpu.windows(a.size, bytes, 4)) {
    const [start, len] = [w.start * bytes, w.count * bytes];
    gpu.dispatch({
      op: 'add',
      shapes,
      pipeline,
      params: new Params().u32(w.count / vec).bytes(),
      bindings: [a.binding(start, len), b.binding(start, len), y.binding(start, len)],
      workgroups: strideGrid(gpu, w.count / vec, WG),
    });
  }
  return y;
}

/** d(a+b)/da = d(a+b)/db = 1: both gradients are the upstream gradient. */
export function addBackward(dy: Tensor): { da: Tensor; db: Tensor } {
  return { da: dy, db: dy };
}
