import { subgroupSizes } from '../runtime/features.js';

/**
 * The subgroup the CPU kernels (matmul-cpu, gemv-cpu, head-cpu, attention-cpu) are written for: llvmpipe's at its
 * default 256-bit vectors, one AVX2 register of f32 lanes. With LP_NATIVE_VECTOR_WIDTH=512 llvmpipe makes them 16
 * lanes, and those kernels step aside.
 */
export const CPU_LANES = 8;

/** What the check reads of a device; a Gpu is one. */
export interface SubgroupTarget {
  features: { subgroups: boolean };
  device?: { adapterInfo?: { subgroupMinSize?: number; subgroupMaxSize?: number } };
}

/** Why the CPU kernels cannot run on this device's subgroups, or undefined when they can. */
export function cpuLanesUnfit(gpu: SubgroupTarget): string | undefined {
  const sizes = subgroupSizes(gpu.device);
  if (!gpu.features.subgroups || sizes.min !== CPU_LANES || sizes.max !== CPU_LANES) {
    return `needs subgroups of exactly ${CPU_LANES} lanes`;
  }
  return undefined;
}
