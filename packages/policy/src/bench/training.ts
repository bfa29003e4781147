import { SeededRng, profileWork, type OpProfile } from '@mlagent/core-kernels';
import { LORA_MODULES, type LoraModule } from '../lora/config.js';
import { LoraAdapter } from '../lora/adapter.js';
import type { QwenModel } from '../model.js';
import { TrainOptimizer } from '../train/optimizer.js';
import { maskedNllBackward } from '../train/policy.js';
import { median, runTorchBench, type TorchBenchSource } from './torch-runner.js';

export interface TrainingBenchOptions {
  batch: number;
  /** Tokens per sequence. */
  seqLen: number;
  /** Activation checkpointing per layer. */
  checkpoint: boolean;
  /** LoRA rank (alpha = 2r). Default 16. */
  r?: number;
  /** Adapted linears. Default all seven. */
  targets?: readonly LoraModule[];
  /** Timed steps after one warm-up step; the median is reported. Default 3. */
  iterations?: number;
  /**
   * After the timed steps, one more step with every dispatch timed on the GPU (`timing.profile`): where the step's
   * GPU time goes, by op. Not part of the timed median (the per-dispatch timestamps slow it down).
   */
  profile?: boolean;
  onProgress?: (msg: string) => void;
}

export interface TrainingTiming {
  /** Median wall time of one step: forward, backward, clipping and AdamW, until the grad norm is read back. */
  stepMs: number;
  /** batch·seqLen / step seconds. */
  tokPerS: number;
  /** Highest bytes in use during the steps (weights included); null where not known (torch on CPU). */
  peakBytes: number | null;
  /** GPU time of one profiled step by op (options.profile, on adapters with timestamp queries). */
  profile?: OpProfile[];
}

function checkOptions(o: TrainingBenchOptions): void {
  for (const k of ['batch', 'seqLen'] as const) {
    if (!Number.isInteger(o[k]) || o[k] < 1) throw new Error(`training bench: ${k} must be a positive integer, got ${o[k]}`);
  }
  if (o.seqLen < 2) throw new Error(`training bench: seqLen must be >= 2 (one next-token target), got ${o.seqLen}`);
  const r = o.r ?? 16;
  if (!Number.isInteger(r) || r < 1) throw new Error(`training bench: r must be a positive integer, got ${r}`);
  for (const t of o.targets ?? []) if (!LORA_MODULES.includes(t)) throw new Error(`training bench: unknown target module '${t}' (${LORA_MODULES.join(', ')})`);
}

const timing = (o: TrainingBenchOptions, stepMs: number, peakBytes: number | null): TrainingTiming => ({
  stepMs,
  tokPerS: (o.batch * o.seqLen) / (stepMs / 1000),
  peakBytes,
});

/**
 * The warm-up step compiles the kernels on the first WARMUP_TOKENS tokens only: at 7B and 4k context a full
 * step takes tens of seconds, and shader compilation does not depend on the sequence length.
 */
export const WARMUP_TOKENS = 256;

/**
 * Times LoRA SFT steps on random tokens: maskedNllBackward over every position (forward + backward into the
 * adapter's grads), then TrainOptimizer.step (global-norm clipping to 1 and AdamW), which reads the grad norm
 * back, so each timed step ends with the GPU done. One warm-up step (see WARMUP_TOKENS) compiles the kernels first.
 */
export async function timeTraining(model: QwenModel, opts: TrainingBenchOptions): Promise<TrainingTiming> {
  checkOptions(opts);
  const r = opts.r ?? 16;
  const gpu = model.gpu;
  const rng = new SeededRng(2);
  const seqs = Array.from({ length: opts.batch }, () => Array.from({ length: opts.seqLen }, () => rng.int(0, model.config.vocabSize - 1)));
  const masks = seqs.map((s) => new Float32Array(s.length).fill(1));
  const adapter = LoraAdapter.create(model, { r, alpha: 2 * r, targetModules: opts.targets ?? LORA_MODULES }, { seed: 1 });
  const opt = new TrainOptimizer(gpu, [adapter], { lr: 1e-4, maxGradNorm: 1 });
  try {
    const step = async (n = opts.seqLen): Promise<number> => {
      const t0 = performance.now();
      const cut = (xs: readonly ArrayLike<number>[]) => xs.map((x) => Array.prototype.slice.call(x, 0, n) as number[]);
      await maskedNllBackward(model, cut(seqs), cut(masks), { adapter, checkpoint: opts.checkpoint });
      await opt.step();
      return performance.now() - t0;
    };
    gpu.allocator.resetPeak();
    opts.onProgress?.(`  warm-up step (${Math.min(opts.seqLen, WARMUP_TOKENS)} tokens): ${(await step(Math.min(opts.seqLen, WARMUP_TOKENS))).toFixed(0)} ms`);
    const runs: number[] = [];
    for (let i = 0; i < (opts.iterations ?? 3); i++) {
      runs.push(await step());
      opts.onProgress?.(`  step ${i + 1}/${opts.iterations ?? 3}: ${runs[i].toFixed(0)} ms`);
    }
    const result = timing(opts, median(runs), gpu.memory().peak);
    if (opts.profile) result.profile = await profileWork(gpu, async () => opts.onProgress?.(`  profiled step: ${(await step()).toFixed(0)} ms`));
    return result;
  } finally {
    opt.dispose();
    adapter.dispose();
    model.dropLogitsScratch();
  }
}

/** The same LoRA step, same shapes (and weights unless random), in PyTorch through bench/torch_train_bench.py. */
export async function torchTrainingTiming(
  python: string,
  src: TorchBenchSource,
  opts: TrainingBenchOptions,
): Promise<TrainingTiming & { device: string }> {
  checkOptions(opts);
  const args = [opts.batch, opts.seqLen, opts.iterations ?? 3, '--r', opts.r ?? 16, '--targets', (opts.targets ?? LORA_MODULES).join(',')];
  if (opts.checkpoint) args.push('--checkpoint');
  const out = await runTorchBench<{ step_ms: number; peak_bytes: number | null }>(python, 'torch_train_bench.py', args, src, opts.onProgress);
  return { ...timing(opts, out.step_ms, out.peak_bytes), device: out.device };
}
