import type { BenchCase } from './types.js';

/** Benchmarks for the attention kernels. */
export const attentionBenches: BenchCase[] = [];
