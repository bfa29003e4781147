import type { BenchCase } from './types.js';
import { attentionBenches } from './attention.js';
import { elementwiseBenches } from './elementwise.js';
import { headBenches } from './head.js';
import { matmulBenches } from './matmul.js';
import { opsBenches } from './ops.js';
import { optimBenches } from './optim.js';

export type { BenchCase, PreparedBench } from './types.js';
export { runBenchmarks, selectCases, type BenchResult, type BenchOptions } from './harness.js';
export { torchTimings, findTorchPython, type TorchTimings } from './torch.js';
export { TorchSession, type TorchTimer } from './torch-session.js';
export { benchTensor, benchValues } from './data.js';
export type { BenchCheck } from './check.js';

export const allBenches: BenchCase[] = [
  ...matmulBenches,
  ...attentionBenches,
  ...opsBenches,
  ...elementwiseBenches,
  ...headBenches,
  ...optimBenches,
];
