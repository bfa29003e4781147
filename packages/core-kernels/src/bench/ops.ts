import type { BenchCase } from './types.js';

/** Benchmarks for the ops kernels. */
export const opsBenches: BenchCase[] = [];
