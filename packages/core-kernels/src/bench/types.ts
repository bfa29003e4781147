import type { Gpu } from '../runtime/gpu.js';
import type { BenchCheck } from './check.js';

/** A prepared benchmark: `run()` records one iteration's dispatches; the harness syncs and times. */
export interface PreparedBench {
  run(): void;
  dispose(): void;
  /** Runs the computation once more and compares a sample of its output with float64 (check.ts). */
  check?(): Promise<BenchCheck>;
}

/**
 * One kernel benchmark at one shape. `torch` gives the same computation as Python snippets, run by
 * tools/bench/torch_bench.py with `torch`, `dev` (cpu or cuda) and `F` (torch.nn.functional) in scope:
 * `setup` builds inputs, `run` is the timed expression.
 */
export interface BenchCase {
  family: string;
  name: string;
  /** Floating-point operations per iteration, for GFLOP/s. */
  flops?: number;
  /** Bytes moved per iteration (minimum: inputs read + outputs written), for GB/s. */
  bytes?: number;
  /** 'cpu' cases are sized for lavapipe; 'gpu' cases only run when a real GPU is present (or with --all). */
  size: 'cpu' | 'gpu';
  /** Features the case needs, e.g. 'shader-f16' or 'subgroup-matrix'. */
  needs?: string[];
  prepare(gpu: Gpu): PreparedBench;
  torch?: { setup: string; run: string };
}
