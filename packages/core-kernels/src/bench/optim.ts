import type { BenchCase } from './types.js';

/** Benchmarks for the optim kernels. */
export const optimBenches: BenchCase[] = [];
