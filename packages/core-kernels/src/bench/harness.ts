import type { Gpu } from '../runtime/gpu.js';
import type { BenchCase } from './types.js';
import { isSoftwareAdapter } from '../runtime/features.js';

export interface BenchResult {
  family: string;
  name: string;
  /** Median milliseconds per iteration. */
  ms: number;
  /** How `ms` was measured: summed GPU timestamps of the iteration's dispatches, or wall clock around a sync. */
  timer: 'gpu-timestamps' | 'wall';
  gflops?: number;
  gbps?: number;
  /** PyTorch on the same machine, same run. */
  torchMs?: number;
  torchDevice?: string;
  /** Our throughput / torch throughput (= torchMs / ms). */
  ratio?: number;
  skipped?: string;
}

export interface BenchOptions {
  /** Run only cases whose family or name contains one of these. */
  filter?: string[];
  /** Include 'gpu'-sized cases even on lavapipe. */
  all?: boolean;
  /** Timed iterations per case (after one warm-up). */
  iterations?: number;
  /** Called after each case, for progress output. */
  onResult?: (r: BenchResult, index: number, total: number) => void;
}

export function selectCases(gpu: Gpu, cases: BenchCase[], opts: BenchOptions): BenchCase[] {
  const software = isSoftwareAdapter(gpu.adapter);
  return cases.filter((c) => {
    if (opts.filter?.length && !opts.filter.some((f) => c.family.includes(f) || c.name.includes(f))) return false;
    if (c.size === 'gpu' && software && !opts.all) return false;
    if (c.size === 'cpu' && !software && !opts.all) return false;
    return true;
  });
}

function missingFeature(gpu: Gpu, c: BenchCase): string | undefined {
  for (const n of c.needs ?? []) {
    const ok =
      (n === 'shader-f16' && gpu.features.shaderF16) ||
      (n === 'subgroups' && gpu.features.subgroups) ||
      (n === 'subgroup-matrix' && gpu.variants.matmulF16 === 'subgroup-matrix');
    if (!ok) return n;
  }
  return undefined;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/** Times each case on our kernels. Torch timings are merged in by the caller (see tools/bench). */
export async function runBenchmarks(gpu: Gpu, cases: BenchCase[], opts: BenchOptions = {}): Promise<BenchResult[]> {
  const selected = selectCases(gpu, cases, opts);
  const results: BenchResult[] = [];
  const useTimestamps = gpu.features.timestampQuery;
  for (const [i, c] of selected.entries()) {
    const missing = missingFeature(gpu, c);
    if (missing) {
      const r: BenchResult = { family: c.family, name: c.name, ms: NaN, timer: 'wall', skipped: `needs ${missing}` };
      results.push(r);
      opts.onResult?.(r, i, selected.length);
      continue;
    }
    const prepared = c.prepare(gpu);
    try {
      prepared.run(); // warm-up: compiles pipelines, fills caches
      await gpu.sync();
      // Enough iterations to pass ~1 s (at least 3), estimated from one timed run.
      const t0 = performance.now();
      prepared.run();
      await gpu.sync();
      const once = performance.now() - t0;
      const iters = opts.iterations ?? Math.max(3, Math.min(50, Math.ceil(1000 / Math.max(once, 1e-3))));
      const samples: number[] = [];
      for (let k = 0; k < iters; k++) {
        if (useTimestamps) {
          gpu.profiling = true;
          prepared.run();
          const t = await gpu.takeTimings();
          gpu.profiling = false;
          samples.push(t.reduce((s, x) => s + x.ms, 0));
        } else {
          const s = performance.now();
          prepared.run();
          await gpu.sync();
          samples.push(performance.now() - s);
        }
      }
      const ms = median(samples);
      const r: BenchResult = { family: c.family, name: c.name, ms, timer: useTimestamps ? 'gpu-timestamps' : 'wall' };
      if (c.flops) r.gflops = c.flops / (ms * 1e6);
      if (c.bytes) r.gbps = c.bytes / (ms * 1e6);
      results.push(r);
      opts.onResult?.(r, i, selected.length);
    } finally {
      gpu.profiling = false;
      prepared.dispose();
    }
  }
  return results;
}
