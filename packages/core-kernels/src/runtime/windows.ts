import type { ElementWindow, Gpu } from './gpu.js';
import { GpuLimitError } from './errors.js';
import type { Tensor } from './tensor.js';
import { DTYPE_BYTES } from './dtype.js';

// Windows over rows, for tensors larger than one storage binding. Ops loop over the windows and pass `skip`
// (the element offset of the first row inside its aligned binding) to the kernel as a uniform.

/**
 * Rows [start, start+count) of a tensor with rows of `rowElems` elements, as a binding that starts at the aligned
 * offset at or before the first row, plus `skip`: the element index of that row inside the binding. Unlike
 * `Tensor.binding`, any row length (and any view offset) can be windowed this way.
 */
export function rowBinding(t: Tensor, start: number, count: number, rowElems: number): { binding: GPUBufferBinding; skip: number } {
  t.assertLive('bind');
  const eb = DTYPE_BYTES[t.dtype];
  const abs = t.byteOffset + start * rowElems * eb;
  const aligned = abs - (abs % t.gpu.storageAlign);
  const size = Math.max(4, Math.ceil((abs - aligned + count * rowElems * eb) / 4) * 4);
  return { binding: { buffer: t.buffer, offset: aligned, size }, skip: (abs - aligned) / eb };
}

/**
 * Splits `rows` into windows so that, for each tensor bound through `rowBinding`, a window of rows (at most
 * `maxRowBytes` bytes each) plus the alignment slack fits one storage binding.
 */
export function rowWindows(gpu: Gpu, rows: number, maxRowBytes: number, op = 'rowWindows'): ElementWindow[] {
  const room = gpu.maxBinding - gpu.storageAlign;
  if (rows * maxRowBytes <= room) return [{ start: 0, count: rows }];
  const per = Math.floor(room / maxRowBytes);
  if (per < 1) throw new GpuLimitError(`a row of ${maxRowBytes} bytes does not fit a binding of ${gpu.maxBinding}`, { op, bytes: maxRowBytes });
  const out: ElementWindow[] = [];
  for (let s = 0; s < rows; s += per) out.push({ start: s, count: Math.min(per, rows - s) });
  return out;
}
