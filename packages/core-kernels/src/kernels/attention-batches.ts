/**
 * Attention past one storage binding. The attention kernels bind q, k, v, the caches and their outputs whole, but
 * every attention op treats its batch items independently, so where some tensor's bytes exceed
 * maxStorageBufferBindingSize (128 MiB on lavapipe, 2 GiB − 4 on NVIDIA: a 7B KV cache of 32 sequences of 32k
 * tokens in f32 is 2 GiB a layer) the op runs on runs of batch items that fit, one after the other. Each run binds
 * views of the inputs where their offsets are aligned for binding (a KV cache's items are, for Qwen's head shapes),
 * else copies, and its outputs are copied into place.
 */
import type { Gpu } from '../runtime/gpu.js';
import { GpuLimitError } from '../runtime/errors.js';
import type { Tensor } from '../runtime/tensor.js';

/** Runs of batch items [b0, b0 + n), each within one binding, or undefined when every tensor fits whole. */
export function batchRuns(gpu: Gpu, op: string, shapes: string, tensors: readonly Tensor[]): { b0: number; n: number }[] | undefined {
  if (tensors.every((t) => t.byteLength <= gpu.maxBinding)) return undefined;
  const B = tensors[0].shape[0];
  const itemBytes = Math.max(...tensors.map((t) => t.byteLength / B));
  const per = Math.floor(gpu.maxBinding / itemBytes);
  if (per < 1) {
    throw new GpuLimitError(`one batch item takes ${itemBytes} bytes, over maxStorageBufferBindingSize ${gpu.maxBinding}`, { op, shapes, bytes: itemBytes });
  }
  // Copies of runs move whole 4-byte words.
  const odd = tensors.find((t) => (t.byteLength / B) % 4 !== 0);
  if (odd) throw new GpuLimitError(`${odd} exceeds one binding and its batch items are not whole 4-byte words`, { op, shapes, bytes: odd.byteLength });
  const runs: { b0: number; n: number }[] = [];
  for (let b0 = 0; b0 < B; b0 += per) runs.push({ b0, n: Math.min(per, B - b0) });
  return runs;
}

/**
 * Batch items [b0, b0 + n) of t ([B, ...]): a view where its offset can be bound, else a copy (`copied`). Either is
 * freed by the caller's gpu.scope (a view owns no buffer).
 */
export function batchItems<T extends Tensor>(gpu: Gpu, t: T, b0: number, n: number): { t: T; copied: boolean } {
  const view = itemsView(t, b0, n).reshape([n, ...t.shape.slice(1)]) as T;
  if (view.byteOffset % gpu.storageAlign === 0) return { t: view, copied: false };
  const copy = gpu.tensor(view.shape, view.dtype, undefined, 'attention batch run') as T;
  gpu.copyTensor(view, copy);
  return { t: copy, copied: true };
}

/** Copies a run's result (items [b0, b0 + part's batch)) into the whole output. */
export function copyBatchItems(gpu: Gpu, part: Tensor, whole: Tensor, b0: number): void {
  gpu.copyTensor(part, itemsView(whole, b0, part.shape[0]));
}

/** Items [b0, b0 + n) of t ([B, ...]) as a [n, item] view. */
function itemsView(t: Tensor, b0: number, n: number): Tensor {
  const B = t.shape[0];
  return t.reshape([B, t.size / B]).rows(b0, n);
}
