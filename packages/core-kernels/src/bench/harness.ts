import type { Gpu } from '../runtime/gpu.js';
import type { BenchCase, PreparedBench } from './types.js';
import type { TorchTimer } from './torch-session.js';
import { isSoftwareAdapter } from '../runtime/features.js';
import type { BenchCheck } from './check.js';

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
  /**
   * Our throughput / torch throughput. Unpaired: torchMs / ms. Paired: the median over rounds of each round's
   * torch median / our median, which host drift between rounds does not move.
   */
  ratio?: number;
  /** Paired timing: how many alternating rounds, and the lowest and highest round's ratio. */
  rounds?: number;
  ratioRange?: [number, number];
  /** Why torch could not time this case (paired timing). */
  torchError?: string;
  skipped?: string;
  /** With BenchOptions.check: a sample of the output against float64, and whether it is within its bound. */
  check?: BenchCheck & { ok: boolean };
}

export interface BenchOptions {
  /** Run only cases whose family or name contains one of these; `=NAME` matches one case's name exactly. */
  filter?: string[];
  /** Include 'gpu'-sized cases even on lavapipe. */
  all?: boolean;
  /** Timed iterations per case (after one warm-up); with `torch`, per side per round. */
  iterations?: number;
  /** Time torch in rounds that alternate with our kernels' (paired timing); see BenchResult.ratio. */
  torch?: TorchTimer;
  /** Paired rounds per case (default 5). */
  rounds?: number;
  /** After timing each case, compare a sample of its output with float64 (cases that have a check). */
  check?: boolean;
  /** Called after each case, for progress output. */
  onResult?: (r: BenchResult, index: number, total: number) => void;
}

/** A case's names often prefix its variants' ('... D128' and '... D128 (subgroup-matrix path)'): '=' picks one. */
function matchesFilter(c: BenchCase, f: string): boolean {
  return f.startsWith('=') ? c.name === f.slice(1) : c.family.includes(f) || c.name.includes(f);
}

export function selectCases(gpu: Gpu, cases: BenchCase[], opts: BenchOptions): BenchCase[] {
  const software = isSoftwareAdapter(gpu.adapter);
  return cases.filter((c) => {
    if (opts.filter?.length && !opts.filter.some((f) => matchesFilter(c, f))) return false;
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

/** One timed iteration of ours: summed GPU timestamps of its dispatches, copies and clears where the adapter has them, else wall clock. */
async function timeOurs(gpu: Gpu, prepared: PreparedBench): Promise<number> {
  if (gpu.features.timestampQuery) {
    gpu.profiling = true;
    try {
      prepared.run();
      const t = await gpu.takeTimings();
      return t.reduce((s, x) => s + x.ms, 0);
    } finally {
      gpu.profiling = false;
    }
  }
  const s = performance.now();
  prepared.run();
  await gpu.sync();
  return performance.now() - s;
}

/** Iterations that take about `budgetMs`, from one timed run, within [lo, hi]. */
function itersFor(onceMs: number, budgetMs: number, lo: number, hi: number): number {
  return Math.max(lo, Math.min(hi, Math.ceil(budgetMs / Math.max(onceMs, 1e-3))));
}

/**
 * Times each case on our kernels. With `opts.torch`, every case with a torch snippet is timed in alternating
 * rounds against torch (paired: see BenchResult.ratio); otherwise torch timings are merged in by the caller.
 */
export async function runBenchmarks(gpu: Gpu, cases: BenchCase[], opts: BenchOptions = {}): Promise<BenchResult[]> {
  const selected = selectCases(gpu, cases, opts);
  const results: BenchResult[] = [];
  const timer = gpu.features.timestampQuery ? 'gpu-timestamps' : 'wall';
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
      const t0 = performance.now();
      prepared.run();
      await gpu.sync();
      const once = performance.now() - t0;
      const r: BenchResult = { family: c.family, name: c.name, ms: NaN, timer };
      if (opts.torch && c.torch) {
        await timePaired(gpu, c, prepared, once, opts.torch, opts, r);
      } else {
        r.ms = median(await timeAlone(gpu, prepared, once, opts));
      }
      if (opts.check && prepared.check) {
        const k = await prepared.check();
        r.check = { ...k, ok: k.err <= k.tol };
      }
      if (c.flops) r.gflops = c.flops / (r.ms * 1e6);
      if (c.bytes) r.gbps = c.bytes / (r.ms * 1e6);
      results.push(r);
      opts.onResult?.(r, i, selected.length);
    } finally {
      gpu.profiling = false;
      prepared.dispose();
    }
  }
  return results;
}

/** Our samples alone: `opts.iterations`, else enough to pass ~1 s (at least 3), estimated from one timed run. */
async function timeAlone(gpu: Gpu, prepared: PreparedBench, onceMs: number, opts: BenchOptions): Promise<number[]> {
  const iters = opts.iterations ?? itersFor(onceMs, 1000, 3, 50);
  const samples: number[] = [];
  for (let k = 0; k < iters; k++) samples.push(await timeOurs(gpu, prepared));
  return samples;
}

/** An error from the torch side, which costs a case its ratio; ours propagate. */
class TorchFailure extends Error {}

async function viaTorch<T>(p: Promise<T>): Promise<T> {
  try {
    return await p;
  } catch (e) {
    throw new TorchFailure((e as Error).message);
  }
}

/**
 * Rounds of: our iterations, then torch's (the order flips every round), each side about 0.2 s a round. The
 * ratio is the median of the rounds' ratios; ms and torchMs the medians of all samples of each side.
 */
async function timePaired(
  gpu: Gpu,
  c: BenchCase,
  prepared: PreparedBench,
  onceMs: number,
  torch: TorchTimer,
  opts: BenchOptions,
  r: BenchResult,
): Promise<void> {
  const rounds = opts.rounds ?? 5;
  const ours: number[] = [];
  try {
    await viaTorch(torch.setup(c));
    const torchOnce = (await viaTorch(torch.time(c.name, 1)))[0];
    const ourIters = opts.iterations ?? itersFor(onceMs, 200, 1, 20);
    const torchIters = opts.iterations ?? itersFor(torchOnce, 200, 1, 20);
    const theirs: number[] = [];
    const ratios: number[] = [];
    for (let round = 0; round < rounds; round++) {
      const mine: number[] = [];
      let other: number[] = [];
      const runOurs = async () => {
        for (let k = 0; k < ourIters; k++) mine.push(await timeOurs(gpu, prepared));
      };
      const runTorch = async () => {
        other = await viaTorch(torch.time(c.name, torchIters));
      };
      if (round % 2 === 0) {
        await runOurs();
        await runTorch();
      } else {
        await runTorch();
        await runOurs();
      }
      ours.push(...mine);
      theirs.push(...other);
      ratios.push(median(other) / median(mine));
    }
    r.torchMs = median(theirs);
    r.torchDevice = torch.device;
    r.ratio = median(ratios);
    r.rounds = rounds;
    r.ratioRange = [Math.min(...ratios), Math.max(...ratios)];
  } catch (e) {
    // Torch failing on a case (a bad snippet, out of memory) costs that case its ratio, not the run.
    if (!(e instanceof TorchFailure)) throw e;
    r.torchError = e.message;
  } finally {
    await torch.drop(c.name).catch(() => undefined);
  }
  if (ours.length === 0) ours.push(...(await timeAlone(gpu, prepared, onceMs, opts)));
  r.ms = median(ours);
}
