import type { Gpu } from '@mlagent/core-kernels';

const GIB = 2 ** 30;

/** The memory metrics each SFT step and PPO iteration logs (charted in that order by the report). */
export const MEMORY_METRICS = ['rssGiB', 'gpuPeakGiB', 'gpuCachedGiB'] as const;

/**
 * Memory now, in GiB: the trainer's resident set (on a software adapter the GPU buffers live in it too), the
 * allocator's peak of bytes in use so far, and the released buffers it keeps for reuse. A curve that climbs from
 * iteration to iteration is a leak a person sees at once in the report.
 */
export function memoryMetrics(gpu: Gpu): Record<(typeof MEMORY_METRICS)[number], number> {
  const m = gpu.memory();
  return { rssGiB: process.memoryUsage.rss() / GIB, gpuPeakGiB: m.peak / GIB, gpuCachedGiB: m.cached / GIB };
}
