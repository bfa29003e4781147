import { SeededRng, profileWork, type OpProfile } from '@mlagent/core-kernels';
import { generate } from '../generate.js';
import type { QwenModel } from '../model.js';
import { median, runTorchBench, type TorchBenchSource } from './torch-runner.js';

export interface GenerationBenchOptions {
  batch: number;
  promptLen: number;
  /** Tokens generated per sequence (>= 2: the first comes from prefill). */
  newTokens: number;
  /** Timed runs after one warm-up; the median is reported. Default 3. */
  iterations?: number;
  /** After the timed runs, one more with every dispatch timed on the GPU (`timing.profile`, by op). */
  profile?: boolean;
  /** The KV caches' dtype (generate()'s kvDtype; default the model's dtype). */
  kvDtype?: 'f32' | 'f16';
}

/** Median prefill and decode times of greedy generation, and the throughputs they give. */
export interface GenerationTiming {
  prefillMs: number;
  decodeMs: number;
  /** batch·promptLen / prefill seconds. */
  prefillTokPerS: number;
  /** batch·(newTokens − 1) / decode seconds. */
  decodeTokPerS: number;
  /** Highest bytes in use during the runs (weights and KV cache included); null where not known (torch on CPU). */
  peakBytes?: number | null;
  /** GPU time of one profiled run (prefill and decode) by op (options.profile, on adapters with timestamp queries). */
  profile?: OpProfile[];
}

function checkOptions(o: GenerationBenchOptions): void {
  for (const k of ['batch', 'promptLen', 'newTokens'] as const) {
    if (!Number.isInteger(o[k]) || o[k] < 1) throw new Error(`generation bench: ${k} must be a positive integer, got ${o[k]}`);
  }
  if (o.newTokens < 2) throw new Error(`generation bench: newTokens must be >= 2 to time decoding, got ${o.newTokens}`);
}

function rates(o: GenerationBenchOptions, prefillMs: number, decodeMs: number): GenerationTiming {
  return {
    prefillMs,
    decodeMs,
    prefillTokPerS: (o.batch * o.promptLen) / (prefillMs / 1000),
    decodeTokPerS: (o.batch * (o.newTokens - 1)) / (decodeMs / 1000),
  };
}

/**
 * Times generate() on random prompts, greedy and without stop tokens so every sequence runs all steps. Prefill
 * ends when the first token has been read back (prompt pass, LM head on the last positions, sampling); decode
 * spans the remaining newTokens − 1 steps, each of which reads its tokens back, so the times are honest end to
 * end. One warm-up run compiles the kernels first.
 */
export async function timeGeneration(model: QwenModel, opts: GenerationBenchOptions): Promise<GenerationTiming> {
  checkOptions(opts);
  const rng = new SeededRng(1);
  const prompts = Array.from({ length: opts.batch }, () => Array.from({ length: opts.promptLen }, () => rng.int(0, model.config.vocabSize - 1)));
  const once = async (): Promise<[number, number]> => {
    const t0 = performance.now();
    let first = 0;
    let last = 0;
    await generate(model, prompts, {
      maxNewTokens: opts.newTokens,
      temperature: 0,
      kvDtype: opts.kvDtype,
      onToken: () => {
        last = performance.now();
        first ||= last;
      },
    });
    return [first - t0, last - first];
  };
  model.gpu.allocator.resetPeak();
  await once();
  const runs: [number, number][] = [];
  for (let i = 0; i < (opts.iterations ?? 3); i++) runs.push(await once());
  const result: GenerationTiming = { ...rates(opts, median(runs.map((r) => r[0])), median(runs.map((r) => r[1]))), peakBytes: model.gpu.memory().peak };
  if (opts.profile) result.profile = await profileWork(model.gpu, once);
  return result;
}

/**
 * The same generation, same shapes (and weights unless random), in PyTorch (float32 unless `src.dtype`; CUDA where
 * torch has it), through bench/torch_generate_bench.py. `peakBytes` is torch's CUDA allocator peak (null on CPU).
 */
export async function torchGenerationTiming(
  python: string,
  src: TorchBenchSource,
  opts: GenerationBenchOptions,
  onProgress?: (msg: string) => void,
): Promise<GenerationTiming & { device: string }> {
  checkOptions(opts);
  const args = [opts.batch, opts.promptLen, opts.newTokens, opts.iterations ?? 3];
  const out = await runTorchBench<{ prefill_ms: number; decode_ms: number; peak_bytes: number | null }>(python, 'torch_generate_bench.py', args, src, onProgress);
  return { ...rates(opts, out.prefill_ms, out.decode_ms), device: out.device, peakBytes: out.peak_bytes };
}
