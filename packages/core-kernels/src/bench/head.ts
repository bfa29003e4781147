import type { BenchCase } from './types.js';

/** Benchmarks for the head kernels. */
export const headBenches: BenchCase[] = [];
