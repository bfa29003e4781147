import type { BenchCase } from './types.js';

/** Benchmarks for the matmul kernels. */
export const matmulBenches: BenchCase[] = [];
