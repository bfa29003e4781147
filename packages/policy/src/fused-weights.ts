import { DTYPE_BYTES, type Gpu, type Tensor } from '@mlagent/core-kernels';
import type { QwenConfig } from './config.js';

/**
 * Matrices of a decoder layer stored as one, their rows stacked in this order, each part a row view of the whole.
 * One matmul over the whole replaces one per part where nothing tells the parts apart: gate/up always (swiglu
 * reads the fused result), q/k/v when a single token goes through (its q, k and v are then contiguous slices).
 */
export const FUSED_GROUPS = { qkv: ['q', 'k', 'v'], gateUp: ['gate', 'up'] } as const;
export type FusedGroup = keyof typeof FUSED_GROUPS;
export type FusedPart = (typeof FUSED_GROUPS)[FusedGroup][number];

/** The group a layer field belongs to, if any. */
export function groupOf(field: string): FusedGroup | undefined {
  for (const g of Object.keys(FUSED_GROUPS) as FusedGroup[]) if ((FUSED_GROUPS[g] as readonly string[]).includes(field)) return g;
  return undefined;
}

/** Rows of each part of a group. */
export function groupRows(cfg: QwenConfig, g: FusedGroup): number[] {
  const { numHeads: nh, numKvHeads: nkv, headDim: D, intermediateSize: I } = cfg;
  return g === 'qkv' ? [nh * D, nkv * D, nkv * D] : [I, I];
}

/**
 * Whether every part starts on an offset each binding of it may use: storage bindings, and the uniform windows
 * CPU adapters bind weights through. For q/k/v the f32 bias and the f32 output of one token are split the same
 * way, so their part starts must be aligned too.
 */
function fusable(gpu: Gpu, cfg: QwenConfig, g: FusedGroup, dtype: 'f32' | 'f16'): boolean {
  const align = Math.max(gpu.storageAlign, gpu.limits.minUniformBufferOffsetAlignment ?? 256);
  let start = 0;
  for (const rows of groupRows(cfg, g).slice(0, -1)) {
    start += rows;
    if ((start * cfg.hiddenSize * DTYPE_BYTES[dtype]) % align !== 0) return false;
    if (g === 'qkv' && (start * 4) % align !== 0) return false;
  }
  return true;
}

/** Row views of `whole`, one per part. */
export function partViews(whole: Tensor, rows: number[]): Tensor[] {
  let start = 0;
  return rows.map((n) => {
    const view = whole.rows(start, n);
    start += n;
    return view;
  });
}

export interface FusedAllocation {
  whole: Tensor;
  parts: Tensor[];
  /** For q/k/v with attention biases: the f32 biases stacked the same way. */
  bias?: { whole: Tensor; parts: Tensor[] };
}

/** Allocates a group's fused matrix (uninitialized) and its part views, or undefined where it cannot be fused. */
export function allocFused(gpu: Gpu, cfg: QwenConfig, g: FusedGroup, dtype: 'f32' | 'f16', label: string): FusedAllocation | undefined {
  if (!fusable(gpu, cfg, g, dtype)) return undefined;
  const rows = groupRows(cfg, g);
  const total = rows.reduce((a, b) => a + b, 0);
  const whole = gpu.keep(gpu.tensor([total, cfg.hiddenSize], dtype, undefined, label));
  const out: FusedAllocation = { whole, parts: partViews(whole, rows) };
  if (g === 'qkv' && cfg.attentionBias) {
    const bias = gpu.keep(gpu.tensor([total], 'f32', undefined, `${label} bias`));
    out.bias = { whole: bias, parts: partViews(bias, rows) };
  }
  return out;
}
