/**
 * The uniform block of the MHA kernels (forward and backward, every path): its WGSL and its bytes. Internal to
 * core-kernels (not re-exported); tools/device/sgm-sweep.ts dispatches the subgroup-matrix forward with it.
 */
import { Params } from '../runtime/params.js';
import type { AttentionDims } from '../reference/attention.js';

export type FloatDType = 'f32' | 'f16';

/** An attention call's sizes (the float64 reference's) and its q/k/v dtype. */
export interface Dims extends AttentionDims {
  dtype: FloatDType;
}

// Causal masking and lengths are runtime flags, not specializations: fewer pipelines to compile.
export const MHA_PARAMS = `struct P {
  t: u32, s: u32, hq: u32, hkv: u32, off: i32, scale2: f32, scale: f32, d: u32, d4: u32, causal: u32, has_len: u32,
  tiles: u32, workgroups: u32, gx: u32, gy: u32
}
@group(0) @binding(0) var<uniform> p: P;`;

/**
 * The MHA kernels' uniforms; `grid` is the dispatch's [blocks, heads, batch], which the ticket loop walks with
 * `workgroups` of them (0 when the kernel runs one workgroup per tile).
 */
export function mhaParams(
  d: Dims,
  opts: { scale?: number; causal?: boolean; lengths?: unknown },
  grid: readonly [number, number, number],
  workgroups = 0,
): Uint8Array {
  const scale = opts.scale ?? 1 / Math.sqrt(d.D);
  return new Params()
    .u32(d.T)
    .u32(d.S)
    .u32(d.Hq)
    .u32(d.Hkv)
    .i32(d.S - d.T)
    .f32(scale * Math.LOG2E)
    .f32(scale)
    .u32(d.D)
    .u32(Math.ceil(d.D / 4))
    .u32((opts.causal ?? true) ? 1 : 0)
    .u32(opts.lengths ? 1 : 0)
    .u32(grid[0] * grid[1] * grid[2])
    .u32(workgroups)
    .u32(grid[0])
    .u32(grid[1])
    .bytes();
}
