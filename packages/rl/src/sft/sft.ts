import { createHash } from 'node:crypto';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { Gpu, cosineLr } from '@mlagent/core-kernels';
import {
  LoraAdapter,
  QwenModel,
  QwenTokenizer,
  TrainOptimizer,
  loadAdapter,
  loadQwenConfig,
  maskedNllBackward,
  policyForward,
  saveAdapter,
  type ChatMessage,
  type LoraModule,
  makeDirs,
} from '@mlagent/policy';
import { mixSeed } from '../collect/seeds.js';
import { listCheckpoints, resumeCheckpoint, saveCheckpoint, type Json, type LoadedCheckpoint } from '../checkpoint/checkpoint.js';
import { syncFile, syncTree, writeFileAtomic } from '../checkpoint/atomic.js';
import { lockRunDir } from '../train/lock.js';
import { parseTrainConfig, type TrainConfig, type TrainConfigInput } from '../config/train-config.js';
import { METRICS_FILE, MetricsLogger, truncateMetricsAfter } from '../metrics/jsonl.js';
import { ProgressMeter } from '../metrics/progress.js';
import { memoryMetrics } from '../metrics/memory.js';
import { epochBatches, trainEvalSplit } from './batches.js';
import { readSftData } from './data.js';
import { encodeChat, type EncodedExample } from './tokenize.js';
import { checkSftMemory, planDevice } from './memory-check.js';

/**
 * LoRA supervised fine-tuning, the paper's first stage: loss on assistant tokens only, AdamW with linear warmup
 * and cosine decay, gradient accumulation, length bucketing, held-out loss, a checkpoint each epoch (and every
 * `checkpointEvery` steps), and exact resume: the data order and dropout masks are functions of (seed, step), and
 * the adapter and optimizer state are restored bit for bit, so a resumed run ends where an uninterrupted one does.
 *
 * Writes to `out`: adapter/ (PEFT), metrics.jsonl, tb/ (TensorBoard), checkpoints/, sft-summary.json.
 */

export interface SftOptions {
  /** Base model directory (Hugging Face layout). */
  modelDir: string;
  /** A .jsonl/.json data file (see readSftData), or chats already loaded. */
  data: string | ChatMessage[][];
  out: string;
  /** The `lora`, `sft` and `seed` parts are used; defaults and presets apply as in the config file. */
  config?: TrainConfigInput;
  /** Continue from the newest checkpoint in `out`. Without it, `out` must not hold checkpoints. */
  resume?: boolean;
  /** Reuse a GPU and/or a loaded base model (the pipeline does); what is not given is created and released. */
  gpu?: Gpu;
  model?: QwenModel;
  /** Stops after the current optimizer step, without a final save (for tests and Ctrl-C handlers). */
  signal?: AbortSignal;
  /** Called after every optimizer step. */
  onStep?: (info: SftStepInfo) => void;
  /** Progress meter on stderr (default true). */
  progress?: boolean;
  /** Where to print one-line notices (resume, truncation); default stderr. */
  log?: (line: string) => void;
  /**
   * GPU bytes the largest micro-batch's memory plan must fit before the model is loaded (--memory-budget). Default:
   * the device's (its allocator's budget, else on a GPU nvidia-smi's free memory; unknown on lavapipe: not checked).
   */
  memoryBudgetBytes?: number;
}

export interface SftStepInfo {
  step: number;
  epoch: number;
  loss: number;
  lr: number;
  gradNorm: number;
  targetTokens: number;
  tokensPerSecond: number;
}

export interface SftResult {
  /** The final PEFT adapter directory (absent when stopped early). */
  adapterDir: string | null;
  /** Optimizer steps completed (in total, across resumes). */
  steps: number;
  totalSteps: number;
  stopped: boolean;
  /** Mean loss of the last step. */
  trainLoss: number;
  /** Held-out loss before training (null when resumed past it or no eval split) and at the end. */
  initialEvalLoss: number | null;
  evalLoss: number | null;
  examples: { train: number; eval: number; truncated: number; dropped: number };
  resumedFrom: number | null;
}

const ADAPTER_DIR = 'adapter';
const SUMMARY_FILE = 'sft-summary.json';
/** Optimizer steps skipped in a row (non-finite gradients) after which SFT gives up. */
const MAX_SKIPPED_IN_A_ROW = 10;
const OPTIMIZER_FILE = 'optimizer.safetensors';

export async function sft(options: SftOptions): Promise<SftResult> {
  const config = parseTrainConfig(options.config ?? {}, { source: '(sft options)' });
  const c = config.sft;
  const log = options.log ?? ((line: string) => process.stderr.write(line + '\n'));

  // Data: tokenize every chat with assistant-only targets, drop what has no target left, split off eval.
  const tokenizer = QwenTokenizer.fromDir(options.modelDir);
  const chats = typeof options.data === 'string' ? readSftData(options.data) : options.data;
  const encoded = chats.map((m) => encodeChat(tokenizer, m, c.template, c.maxSeqLen));
  const usable = encoded.filter((e) => e.targets > 0);
  const truncated = encoded.filter((e) => e.truncated).length;
  const dropped = encoded.length - usable.length;
  if (truncated > 0) log(`sft: ${truncated} of ${encoded.length} examples are longer than maxSeqLen ${c.maxSeqLen} and were truncated`);
  if (dropped > 0) log(`sft: ${dropped} examples have no assistant token within maxSeqLen and were dropped`);
  if (usable.length === 0) throw new Error('sft: no example has an assistant token to learn from');
  const split = trainEvalSplit(usable.length, c.evalFraction, config.seed);
  const train = split.train.map((i) => usable[i]);
  const evalSet = split.eval.map((i) => usable[i]);

  const microPerEpoch = Math.ceil(train.length / c.batchSize);
  const stepsPerEpoch = Math.ceil(microPerEpoch / c.gradAccum);
  const totalSteps = stepsPerEpoch * c.epochs;
  const warmupSteps = Math.ceil(c.warmupRatio * totalSteps);
  const fingerprint = fingerprintOf(config, usable, options.modelDir);

  // Start fresh or from the newest checkpoint.
  const checkpoint = options.resume ? resumeCheckpoint(options.out, 'sft', log) : null;
  if (!options.resume && listCheckpoints(options.out).length > 0) {
    throw new Error(`sft: ${options.out} already holds checkpoints of a run; pass resume (--resume) to continue it, or choose another output directory`);
  }
  if (!checkpoint && existsSync(join(options.out, SUMMARY_FILE))) {
    throw new Error(`sft: ${options.out} holds a finished run (${SUMMARY_FILE}) and no checkpoint to resume; choose another output directory`);
  }
  if (checkpoint && (checkpoint.extra as { fingerprint?: string } | undefined)?.fingerprint !== fingerprint) {
    throw new Error(`sft: the checkpoint ${checkpoint.dir} was made with other data, config or model; use a new output directory`);
  }

  // Only now, so bad data or a refused resume leaves no empty output directory behind.
  makeDirs(options.out);
  // One writer: two runs resuming the same directory at once (two `train --resume`) wrote each other's checkpoints.
  const unlock = lockRunDir(options.out, 'sft');
  try {
    return await sftLocked(options, config, log, { checkpoint, usable, train, evalSet, stepsPerEpoch, totalSteps, warmupSteps, fingerprint, truncated, dropped });
  } finally {
    unlock();
  }
}

interface Prepared {
  checkpoint: LoadedCheckpoint | null;
  usable: EncodedExample[];
  train: EncodedExample[];
  evalSet: EncodedExample[];
  stepsPerEpoch: number;
  totalSteps: number;
  warmupSteps: number;
  fingerprint: string;
  truncated: number;
  dropped: number;
}

async function sftLocked(options: SftOptions, config: TrainConfig, log: (line: string) => void, p: Prepared): Promise<SftResult> {
  const { checkpoint, usable, train, evalSet, stepsPerEpoch, totalSteps, warmupSteps, fingerprint, truncated, dropped } = p;
  const c = config.sft;
  const ownGpu = !options.gpu && !options.model;
  const gpu = options.gpu ?? options.model?.gpu ?? (await Gpu.create());
  if (options.model && options.model.gpu !== gpu) throw new Error('sft: the given model lives on another GPU than the given gpu');
  let model: QwenModel;
  try {
    // Before loading: the largest micro-batch's memory, refused where the device's budget is known and it won't fit.
    const longest = usable.reduce((n, e) => Math.max(n, e.ids.length), 0);
    const modelConfig = options.model?.config ?? loadQwenConfig(options.modelDir);
    log(checkSftMemory(modelConfig, config, { batch: Math.max(1, Math.min(c.batchSize, train.length)), seqLen: longest }, planDevice(gpu, options.memoryBudgetBytes)).line);
    // Training multiplies the frozen weights many times: keep them packed on a CPU adapter (a no-op on GPUs).
    model = options.model ?? (await QwenModel.load(gpu, options.modelDir, { packWeights: true, dtype: config.dtype }));
    if (model.dtype !== config.dtype) throw new Error(`sft: the given model holds ${model.dtype} weights but the config's dtype is ${config.dtype}`);
  } catch (e) {
    if (ownGpu) gpu.destroy();
    throw e;
  }
  const loraConfig = { r: config.lora.rank, alpha: config.lora.alpha, dropout: config.lora.dropout, targetModules: config.lora.targets as LoraModule[] };

  let adapter: LoraAdapter | undefined;
  let optimizer: TrainOptimizer | undefined;
  let metrics: MetricsLogger | undefined;
  try {
    adapter = checkpoint ? loadAdapter(model, join(checkpoint.dir, ADAPTER_DIR)) : LoraAdapter.create(model, loraConfig, { seed: config.seed });
    optimizer = new TrainOptimizer(gpu, [adapter], {
      lr: c.lr,
      weightDecay: c.weightDecay,
      maxGradNorm: c.gradClip,
      schedule: (i) => cosineLr(i, { lr: c.lr, warmupSteps, totalSteps, minLrRatio: c.minLrRatio }),
    });
    if (checkpoint) {
      optimizer.load(checkpoint.path(OPTIMIZER_FILE));
      if (optimizer.stepCount !== checkpoint.step) throw new Error(`sft: checkpoint ${checkpoint.dir} is at step ${checkpoint.step} but its optimizer state at ${optimizer.stepCount}`);
      truncateMetricsAfter(join(options.out, METRICS_FILE), checkpoint.step);
      log(`sft: resuming from ${checkpoint.dir} (step ${checkpoint.step} of ${totalSteps})`);
    } else {
      // Curves of a run that left no checkpoint (killed before its first) would run twice over the same steps.
      rmSync(join(options.out, METRICS_FILE), { force: true });
      rmSync(join(options.out, 'tb'), { recursive: true, force: true });
    }
    metrics = new MetricsLogger(options.out, { restartAt: checkpoint ? checkpoint.step + 1 : undefined });
    return await trainLoop({ options, config, model, adapter, optimizer, metrics, train, evalSet, stepsPerEpoch, totalSteps, fingerprint, startStep: checkpoint?.step ?? 0, resumedFrom: checkpoint?.step ?? null, resumed: savedLosses(checkpoint?.extra), truncated, dropped });
  } finally {
    metrics?.close();
    optimizer?.dispose();
    adapter?.dispose();
    if (!options.model) model.dispose();
    if (ownGpu) gpu.destroy();
  }
}

interface LoopState {
  options: SftOptions;
  config: TrainConfig;
  model: QwenModel;
  adapter: LoraAdapter;
  optimizer: TrainOptimizer;
  metrics: MetricsLogger;
  train: EncodedExample[];
  evalSet: EncodedExample[];
  stepsPerEpoch: number;
  totalSteps: number;
  fingerprint: string;
  startStep: number;
  resumedFrom: number | null;
  /** The losses the checkpoint resumed from recorded. */
  resumed: SavedLosses;
  truncated: number;
  dropped: number;
}

/** The optimizer steps from `startStep` to the end (or to an abort), with evals and checkpoints. */
async function trainLoop(s: LoopState): Promise<SftResult> {
  const { options, config, model, adapter, optimizer, metrics, train, evalSet, stepsPerEpoch, totalSteps, fingerprint, startStep } = s;
  const c = config.sft;
  const meter = options.progress === false ? null : new ProgressMeter({ total: totalSteps, label: 'sft', unit: 'step' });
  meter?.update(startStep);

  const evaluate = async () => (evalSet.length > 0 ? heldOutLoss(model, adapter, evalSet, c.batchSize) : null);
  const initialEvalLoss = startStep === 0 ? await evaluate() : s.resumed.initialEvalLoss;
  if (initialEvalLoss !== null && startStep === 0) metrics.log(0, { evalLoss: initialEvalLoss });
  // Resumed, the losses are the checkpoint's: resumed from the last one (a kill before sft-summary.json), the
  // summary gave the untrained model's held-out loss as the final one, and no training loss.
  let evalLoss: number | null = startStep === 0 ? initialEvalLoss : s.resumed.evalLoss ?? initialEvalLoss;
  let trainLoss = startStep === 0 ? NaN : s.resumed.trainLoss;
  let step = startStep;
  let batches: number[][] = [];
  let batchesEpoch = -1;
  let stopped = false;
  // Steps the optimizer skipped in a row for non-finite gradients: past a few, nothing is being learned.
  let skippedInARow = 0;

  const save = async (epoch: number) => {
    // The curves up to this step are on disk before the checkpoint that will not log them again (page-cached
    // lines were lost to a power cut, the checkpoint not).
    syncFile(metrics.path);
    return saveCheckpoint(options.out, {
      step,
      config: config as unknown as Json,
      extra: { fingerprint, epoch, evalLoss, initialEvalLoss, trainLoss: Number.isFinite(trainLoss) ? trainLoss : null },
      keep: c.keepCheckpoints,
      write: async (dir) => {
        await saveAdapter(adapter, join(dir, ADAPTER_DIR), { baseModel: options.modelDir });
        await optimizer.save(join(dir, OPTIMIZER_FILE));
      },
    });
  };

  while (step < totalSteps) {
    const epoch = Math.floor(step / stepsPerEpoch);
    if (epoch !== batchesEpoch) {
      batches = epochBatches(
        train.map((_, i) => i),
        (i) => train[i].ids.length,
        { batchSize: c.batchSize, seed: config.seed, epoch, bucketing: c.lengthBucketing },
      );
      batchesEpoch = epoch;
    }
    const inEpoch = step % stepsPerEpoch;
    const micro = batches.slice(inEpoch * c.gradAccum, (inEpoch + 1) * c.gradAccum);
    // One mean over every target token of the optimizer step, however it is split into micro-batches.
    const normalizer = micro.flat().reduce((n, i) => n + train[i].targets, 0);
    const started = Date.now();
    let loss = 0;
    let tokens = 0;
    for (let j = 0; j < micro.length; j++) {
      const examples = micro[j].map((i) => train[i]);
      const r = await maskedNllBackward(
        model,
        examples.map((e) => e.ids),
        examples.map((e) => e.mask),
        { adapter, normalizer, checkpoint: c.activationCheckpointing, dropoutSeed: mixSeed(config.seed, `sft/${step}/${j}`) },
      );
      loss += r.loss;
      tokens += examples.reduce((n, e) => n + e.ids.length, 0);
    }
    const { lr, gradNorm, skipped } = await optimizer.step();
    step++;
    skippedInARow = skipped ? skippedInARow + 1 : 0;
    trainLoss = loss;
    const seconds = Math.max(1e-9, (Date.now() - started) / 1000);
    const info: SftStepInfo = { step, epoch, loss, lr, gradNorm, targetTokens: normalizer, tokensPerSecond: tokens / seconds };
    metrics.log(step, { loss, lr, gradNorm, epoch, targetTokens: normalizer, tokensPerSecond: info.tokensPerSecond, skipped: skipped ? 1 : 0, ...memoryMetrics(model.gpu) });
    meter?.update(step, { epoch: epoch + 1, loss, 'tok/s': info.tokensPerSecond });
    options.onStep?.(info);

    const endOfEpoch = step % stepsPerEpoch === 0;
    if (endOfEpoch) {
      evalLoss = await evaluate();
      if (evalLoss !== null) metrics.log(step, { evalLoss });
    }
    if (skippedInARow >= Math.min(MAX_SKIPPED_IN_A_ROW, totalSteps - startStep)) {
      throw new Error(
        `sft: the loss or gradients were not finite for ${skippedInARow} steps in a row (to step ${step}), so nothing was learned: ` +
          `the model's weights may hold NaN or Inf values, or the learning rate (${c.lr}) is far too high`,
      );
    }
    const saved = endOfEpoch || (c.checkpointEvery > 0 && step % c.checkpointEvery === 0);
    if (saved) await save(epoch);
    if (options.signal?.aborted && step < totalSteps) {
      // Stopped by the caller: the steps done so far are kept, so a resume starts here.
      if (!saved) await save(epoch);
      stopped = true;
      break;
    }
  }
  meter?.finish({ loss: trainLoss, ...(evalLoss !== null ? { 'eval loss': evalLoss } : {}) });
  let adapterDir: string | null = null;
  if (!stopped) {
    adapterDir = join(options.out, ADAPTER_DIR);
    await saveAdapter(adapter, adapterDir, { baseModel: options.modelDir });
    // Durable before sft-summary.json says it is there: the pipeline then never writes it again.
    syncTree(adapterDir);
  }
  const result: SftResult = {
    adapterDir,
    steps: step,
    totalSteps,
    stopped,
    trainLoss,
    initialEvalLoss,
    evalLoss,
    examples: { train: train.length, eval: evalSet.length, truncated: s.truncated, dropped: s.dropped },
    resumedFrom: s.resumedFrom,
  };
  // The pipeline skips SFT once this file exists: it must never be there torn.
  if (!stopped) writeFileAtomic(join(options.out, SUMMARY_FILE), JSON.stringify(result, null, 2) + '\n');
  return result;
}

interface SavedLosses {
  initialEvalLoss: number | null;
  evalLoss: number | null;
  trainLoss: number;
}

/** A checkpoint's record of the held-out losses and the last step's loss; null / NaN where it has none (older checkpoints). */
function savedLosses(extra: unknown): SavedLosses {
  const e = (extra ?? {}) as { initialEvalLoss?: unknown; evalLoss?: unknown; trainLoss?: unknown };
  const finite = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) ? v : null);
  return { initialEvalLoss: finite(e.initialEvalLoss), evalLoss: finite(e.evalLoss), trainLoss: finite(e.trainLoss) ?? NaN };
}

/** Mean NLL per target token over held-out examples, with the adapter and no dropout. */
export async function heldOutLoss(model: QwenModel, adapter: LoraAdapter | undefined, examples: EncodedExample[], batchSize: number): Promise<number> {
  let nll = 0;
  let count = 0;
  for (let b = 0; b < examples.length; b += batchSize) {
    const batch = examples.slice(b, b + batchSize);
    const pass = await policyForward(
      model,
      batch.map((e) => e.ids),
      { adapter, grad: false, scoredTokens: batch.map((e) => e.mask) },
    );
    batch.forEach((e, k) => {
      for (let t = 1; t < e.ids.length; t++) {
        if (e.mask[t]) {
          nll -= pass.logprobs[k][t];
          count++;
        }
      }
    });
  }
  return count > 0 ? nll / count : NaN;
}

/** What must not change between a checkpoint and its resume: the data, the SFT/LoRA config, the seed, the model. */
function fingerprintOf(config: TrainConfig, examples: EncodedExample[], modelDir: string): string {
  const h = createHash('sha256');
  // Recomputing activations changes no result: a run resumes with checkpointing turned on or off (and runs from
  // before the field existed resume).
  const { activationCheckpointing: _recompute, ...sftConfig } = config.sft;
  // f16 weights give other numbers; f32 stays out, so runs from before the field existed resume.
  const dtype = config.dtype === 'f32' ? {} : { dtype: config.dtype };
  h.update(JSON.stringify({ sft: { ...sftConfig, checkpointEvery: 0, keepCheckpoints: 0 }, lora: config.lora, seed: config.seed, ...dtype }));
  for (const e of examples) h.update(Int32Array.from(e.ids)).update(e.mask);
  const modelConfig = join(modelDir, 'config.json');
  if (existsSync(modelConfig)) h.update(readFileSync(modelConfig));
  return h.digest('hex');
}
