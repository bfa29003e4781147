import { OptionError, PREFILL_TOKENS } from './generate.js';
import { KEEP_LOGITS_MAX_BYTES, keptLogitsRows } from './model.js';
import {
  formatBytes,
  headBackwardScratchBytes,
  headForwardScratchBytes,
  packedMatmulBBytes,
  sizeClass,
  type Gpu,
  type MemoryStats,
} from '@mlagent/core-kernels';
import { expectedShapes, type QwenConfig } from './config.js';
import { LORA_MODULES, moduleShape, type LoraModule } from './lora/config.js';

export interface MemoryPlanOptions {
  /** Sequences per step (generation: prompts decoded together). */
  batch: number;
  /** Tokens per sequence: the longest prompt + new tokens for generation, the training context otherwise. */
  seqLen: number;
  /** dtype of the base matrices on the GPU (QwenModel.load's dtype). Default f32. */
  dtype?: 'f32' | 'f16';
  /** LoRA adapters (f32), with AdamW state and gradients when `training`. */
  lora?: { r: number; targets: readonly LoraModule[] };
  /** Forward + backward of a LoRA step; otherwise inference. */
  training?: boolean;
  /** Activation checkpointing per layer: only each layer's input is kept, the layer is recomputed in backward. */
  checkpointing?: boolean;
  /**
   * Training: the head on the trunk. 'lm' is policyForward's fused LM head; 'value' is the PPO critic's value head
   * (valueForward: v = w·hn + b, whose w, b and their gradients and moments count with the LoRA). Default 'lm'.
   */
  head?: 'lm' | 'value';
  /**
   * Training with the 'lm' head: the rows its LM head scores (policyForward's scoredTokens: SFT's target tokens,
   * PPO's response tokens), at most batch·seqLen. Default: every token scored, without a row selection.
   */
  scoredRows?: number;
  /** Generation with a KV cache ([B, seqLen, Hkv, D] per layer for K and V). */
  kvCache?: boolean;
  /** The KV caches' dtype (generate()'s kvDtype). Default: dtype, as generate() does. */
  kvDtype?: 'f32' | 'f16';
  /** Generation: generate()'s prefillTokens (default PREFILL_TOKENS). */
  prefillTokens?: number;
  /**
   * Inference only: the LM head writes logits for every position ('all', QwenModel.forward), for the last
   * position of each sequence ('last', generation), or goes through the fused head that never holds them
   * ('fused', sequenceLogprobs and training). Default: 'last' with kvCache, else 'all'; training is always fused.
   */
  logits?: 'all' | 'last' | 'fused';
  /**
   * Which fused-head kernels run: 'tiled' (GPUs: a logits tile) or 'cpu' (software adapters such as lavapipe:
   * per-lane partials, no tile; needs `maxBinding`). Default 'tiled'.
   */
  headKernel?: 'tiled' | 'cpu';
  /** The device's maxStorageBufferBindingSize, for the 'cpu' head's partials. Default 128 MiB. */
  maxBinding?: number;
  /**
   * QwenModel.packWeights on a software adapter: the frozen matrices packed for the cpu-tiled matmul (f32 windows).
   * Counted for every projection, and for the LM head unless the fused CPU head reads it ('fused' logits with
   * headKernel 'cpu'); an upper bound: a matrix is packed once a product runs it there.
   * Default false.
   */
  packedWeights?: boolean;
}

export interface MemoryItem {
  name: string;
  bytes: number;
}

/** Estimated peak GPU bytes, by item, as the caching allocator would hand them out (size classes included). */
export interface MemoryPlan {
  weights: number;
  /** Packs of the frozen matrices (packedWeights), 0 without. */
  packedWeights: number;
  lora: number;
  /** LoRA gradients plus AdamW's two moments (f32). */
  optimizer: number;
  activations: number;
  /**
   * The model's kept-logits buffer among the activations (a training pass on the fused CPU head, where the scored
   * rows' logits fit KEEP_LOGITS_MAX_BYTES); the model keeps it after the pass, for the next one. 0 otherwise.
   */
  keptLogits: number;
  kvCache: number;
  total: number;
  /** Every item, biggest first. */
  items: MemoryItem[];
  /** The largest single buffer: it must fit the device's maxBufferSize. */
  largestBuffer: MemoryItem;
  options: Required<Omit<MemoryPlanOptions, 'lora' | 'scoredRows'>> & { lora?: MemoryPlanOptions['lora']; scoredRows: number | null };
}

const f32 = (n: number) => sizeClass(n * 4);
const f16 = (n: number) => sizeClass(n * 2);

/** Scratch (as core-kernels' headForward sizes it) and outputs (logprob/entropy/lse per token) of the fused LM head. */
function fusedHeadBytes(N: number, H: number, V: number, head: { cpu: boolean; maxBinding: number }): number {
  return sizeClass(headForwardScratchBytes(N, H, V, head)) + 3 * f32(N) + 3 * f32(2);
}

/**
 * Peak bytes of one training pass (policyForward or valueForward with grad, then backward), everything but the
 * weights, LoRA and optimizer state, following what TrunkPass, PolicyPass and ValuePass allocate: the larger of the
 * head's forward, its backward, and the trunk's backward of one layer. The LM head runs on `scored` rows: every
 * row (null), or the rows policyForward's scoredTokens selects.
 */
/** The kept-logits buffer a training pass on the fused CPU head borrows from the model (borrowLogitsScratch). */
function keptLogitsBytes(rows: number, V: number, cpu: boolean): number {
  return cpu && rows * V * 4 <= KEEP_LOGITS_MAX_BYTES ? f32(keptLogitsRows(rows, V) * V) : 0;
}

function trainingActivations(
  cfg: QwenConfig,
  B: number,
  T: number,
  lora: { r: number; targets: readonly LoraModule[] },
  checkpointing: boolean,
  head: { cpu: boolean; maxBinding: number; kind: 'lm' | 'value'; scored: number | null },
): number {
  const { hiddenSize: H, intermediateSize: I, numLayers: L, numHeads: nh, numKvHeads: nkv, headDim: D, vocabSize: V } = cfg;
  const N = B * T;
  const [NH, NI, rows] = [f32(N * H), f32(N * I), f32(N)];
  const [q, kv] = [f32(N * nh * D), f32(N * nkv * D)];
  const qkNorm = cfg.qkNorm ? q + kv + f32(N * nh) + f32(N * nkv) : 0;
  const loraH = lora.targets.length * f32(N * lora.r);
  // What a layer keeps for backward (its LayerTape): the two norms' outputs and rstd, each adapted linear's
  // h = x·Aᵀ, q/k (before and after qk-norm) and v, q and k after rope, attention's o and lse, h1, gate/up/act,
  // and the layer's output.
  const tape = 4 * NH + 2 * rows + loraH + qkNorm + 2 * q + 2 * kv + f32(B * nh * T) + 3 * NI;
  // Freed as the layer's scope closes: q and k before rope, the o- and down-projections' outputs.
  const temps = q + kv + 2 * NH;
  // A layer's backward: every gradient it makes lives until its scope closes (MLP, norms and residual adds, the
  // attention input and output gradients, rope's, qk-norm's, the q/k/v projections').
  const layerGrads = 3 * NI + 12 * NH + 3 * q + 3 * kv + (cfg.qkNorm ? q + kv : 0);
  // Freed inside one adapted linear's backward: dA, dB, dh and the sum into each grad. (Its input's dropout copy,
  // N·in, is freed there too, but the largest, down_proj's, comes first, while few of the layer's gradients exist.)
  let loraTransient = 0;
  for (const m of lora.targets) {
    const [outF, inF] = moduleShape(cfg, m);
    const [dA, dB] = [f32(lora.r * inF), f32(outF * lora.r)];
    loraTransient = Math.max(loraTransient, dA + dB + f32(N * lora.r) + Math.max(dA, dB));
  }
  // Kept until backward ends: the embedding output and each layer's output (with checkpointing), or the embedding
  // output and every layer's tape; the final norm's output and rstd; the batch lengths. (Not rope's table: 8·D KiB,
  // once per device.)
  const saved = checkpointing ? (L + 1) * NH : NH + L * tape;
  const trunkPass = saved + NH + rows + f32(B);
  // The trunk's backward of one layer: dhn and dh upstream, with checkpointing the recomputed layer.
  const trunkBackward = 2 * NH + (checkpointing ? tape + temps : 0) + layerGrads + loraTransient;
  if (head.kind === 'value') {
    // The values [N, 1] live while they are read back; backward makes dv, dhn and dw, db.
    const valueBackward = f32(N) + NH + f32(H) + f32(1);
    return trunkPass + Math.max(f32(N), valueBackward, trunkBackward);
  }
  // The LM head on R rows: with a selection, their ids and hidden states are kept too, and its backward scatters
  // dh [R, H] back to every row of dhn. Kept: targets, lse and entropy per row, the kept logits (CPU head, where
  // they fit).
  const R = head.scored ?? N;
  const selection = head.scored === null ? 0 : f32(R) + f32(R * H);
  const kept = keptLogitsBytes(R, V, head.cpu);
  const pass = trunkPass + selection + 3 * f32(R) + kept;
  // The head's forward (logprob, loss, count, accumulator, scratch) and its backward (dLogprob, dEntropy, dh,
  // the scatter to every row, scratch).
  const headForward = f32(R) + 3 * f32(2) + sizeClass(headForwardScratchBytes(R, H, V, head));
  const headBackward = 2 * f32(R) + f32(R * H) + (head.scored === null ? 0 : NH) + sizeClass(headBackwardScratchBytes(R, H, V, head));
  return pass + Math.max(headForward, headBackward, trunkBackward);
}

/**
 * Estimates the peak GPU memory of inference or a LoRA training step before anything is allocated. The model
 * follows how QwenModel and generate() allocate: in a forward every layer's output stays alive until the pass ends
 * (the residual stream, (L + 1)·B·T·H f32), in generate()'s prefill only a run's current layer input (runs of
 * prompts within prefillTokens), with one layer's intermediates at a time on top (norms, q/k/v, attention output
 * and its logsumexp, o-projection, MLP gate/up/act/down), then the LM head. Training follows TrunkPass
 * and PolicyPass (trainingActivations): every layer's tape is kept for backward, or with checkpointing only the
 * layer inputs plus one recomputed layer, and the peak is the largest of the head's forward, its backward and
 * one layer's backward.
 */
export function planMemory(cfg: QwenConfig, opts: MemoryPlanOptions): MemoryPlan {
  /** Throws an OptionError naming `option` (by default the word that leads the message). */
  const fail = (msg: string, option = /^[\w.]+/.exec(msg)?.[0] ?? 'opts'): never => {
    throw new OptionError(`planMemory: ${msg}`, 'planMemory', option);
  };
  const { batch: B, seqLen: T } = opts;
  if (!Number.isInteger(B) || B <= 0) fail(`batch must be a positive integer, got ${B}`);
  if (!Number.isInteger(T) || T <= 0) fail(`seqLen must be a positive integer, got ${T}`);
  const dtype = opts.dtype ?? 'f32';
  if (dtype !== 'f32' && dtype !== 'f16') fail(`dtype must be 'f32' or 'f16', got ${String(dtype)}`);
  if (opts.logits !== undefined && !['all', 'last', 'fused'].includes(opts.logits)) {
    // Any other value was planned as the fused head, silently.
    fail(`logits must be 'all', 'last' or 'fused', got ${String(opts.logits)}`);
  }
  if (opts.maxBinding !== undefined && !(Number.isInteger(opts.maxBinding) && opts.maxBinding > 0)) {
    // NaN made the total NaN, which every budget comparison (assertFits) lets through.
    fail(`maxBinding must be a positive integer (bytes), got ${opts.maxBinding}`);
  }
  const training = opts.training ?? false;
  const checkpointing = opts.checkpointing ?? false;
  const kvCache = opts.kvCache ?? false;
  const kvDtype = opts.kvDtype ?? dtype;
  if (kvDtype !== 'f32' && kvDtype !== 'f16') fail(`kvDtype must be 'f32' or 'f16', got ${String(kvDtype)}`);
  const logits = training ? 'fused' : (opts.logits ?? (kvCache ? 'last' : 'all'));
  const prefillTokens = opts.prefillTokens ?? PREFILL_TOKENS;
  if (!Number.isInteger(prefillTokens) || prefillTokens < 1) fail(`prefillTokens must be a positive integer, got ${prefillTokens}`);
  const headKernel = opts.headKernel ?? 'tiled';
  if (headKernel !== 'tiled' && headKernel !== 'cpu') fail(`headKernel must be 'tiled' or 'cpu', got ${String(headKernel)}`);
  const headKind = { cpu: headKernel === 'cpu', maxBinding: opts.maxBinding ?? 128 * 2 ** 20 };
  if (opts.lora) {
    if (!Number.isInteger(opts.lora.r) || opts.lora.r <= 0) fail(`lora.r must be a positive integer, got ${opts.lora.r}`);
    if (!Array.isArray(opts.lora.targets)) fail(`lora.targets must be an array of module names, got ${typeof opts.lora.targets}`);
    if (opts.lora.targets.length === 0) fail('lora.targets is empty');
  }
  if (training && !opts.lora) fail('training needs lora: the base is frozen, only LoRA weights train', 'lora');
  const headKindOpt = opts.head ?? 'lm';
  if (headKindOpt !== 'lm' && headKindOpt !== 'value') fail(`head must be 'lm' or 'value', got ${String(headKindOpt)}`);
  if (headKindOpt === 'value' && !training) fail("head 'value' is for training (valueForward with grad)");
  const scored = opts.scoredRows ?? null;
  if (scored !== null) {
    if (!training || headKindOpt !== 'lm') fail('scoredRows is for training with the LM head');
    if (!Number.isInteger(scored) || scored < 1 || scored > B * T) fail(`scoredRows must be an integer in [1, batch·seqLen = ${B * T}], got ${scored}`);
  }

  const { hiddenSize: H, intermediateSize: I, numLayers: L, numHeads: nh, numKvHeads: nkv, headDim: D, vocabSize: V } = cfg;
  const N = B * T;
  const items: MemoryItem[] = [];
  let largest: MemoryItem = { name: '', bytes: 0 };
  const buffer = (name: string, bytes: number) => {
    if (bytes > largest.bytes) largest = { name, bytes };
    return bytes;
  };

  // Weights: matrices in dtype, norms and biases in f32, one buffer each; a tied lm_head is not a second copy.
  let weights = 0;
  for (const [name, shape] of expectedShapes(cfg)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const matrix = shape.length === 2;
    weights += buffer(name, sizeClass(n * (matrix && dtype === 'f16' ? 2 : 4)));
  }
  items.push({ name: `weights (${dtype} matrices)`, bytes: weights });

  let packed = 0;
  if (opts.packedWeights) {
    for (const m of LORA_MODULES) {
      const [outF, inF] = moduleShape(cfg, m);
      packed += L * sizeClass(packedMatmulBBytes(inF, outF));
    }
    // The fused CPU head kernels read the LM head as it is; its logits matmul (all or last) and the tiled head pack it.
    const headPacked = headKindOpt === 'lm' && (logits !== 'fused' || !headKind.cpu);
    if (headPacked) packed += buffer('packed LM head', sizeClass(packedMatmulBBytes(H, V)));
    items.push({ name: `packed weights (every projection${headPacked ? ' and the LM head' : ''}, f32 windows; at most)`, bytes: packed });
  }

  let lora = 0;
  let optimizer = 0;
  if (opts.lora) {
    const { r } = opts.lora;
    // Each module once, as LoraConfig keeps them (checkLoraConfig): a repeated name was counted twice.
    for (const t of new Set(opts.lora.targets)) {
      if (!LORA_MODULES.includes(t)) fail(`unknown LoRA target '${t}' (${LORA_MODULES.join(', ')})`, 'lora.targets');
      const [outF, inF] = moduleShape(cfg, t);
      lora += L * (f32(r * inF) + f32(outF * r));
    }
    // The critic's value head: w [1, H] and b, f32.
    if (headKindOpt === 'value') lora += f32(H) + f32(1);
    items.push({ name: `LoRA r=${opts.lora.r} on ${opts.lora.targets.join(',')}${headKindOpt === 'value' ? ' and the value head' : ''} (f32)`, bytes: lora });
    if (training) {
      optimizer = 3 * lora;
      items.push({ name: 'LoRA gradients + AdamW moments (f32)', bytes: optimizer });
    }
  }

  let activations: number;
  let keptLogits = 0;
  if (!training) {
    // Generation prefills in runs of whole prompts within prefillTokens (a longer prompt alone; seqLen bounds it), each
    // layer's output replacing its input; a plain forward keeps every layer's output until the pass ends.
    // A run of n prompts whose longest has Tr tokens takes n·Tr <= prefillTokens, or holds one prompt (Tr <= seqLen).
    // Planning whole runs of seqLen-token prompts (floor(prefillTokens / seqLen) of them) undercounted shorter
    // prompts that pack more per run: 4 prompts of 90 + 12 new tokens in runs of 192 measured 23% over that plan.
    const Np = kvCache ? Math.max(T, Math.min(N, prefillTokens)) : N;
    // One layer's intermediates (f32), as model.layer allocates them inside its scope.
    const qkv = f32(Np * nh * D) + 2 * f32(Np * nkv * D);
    const qkNorm = cfg.qkNorm ? qkv + f32(Np * nh) + f32(Np * nkv) : 0;
    const attn = f32(Np * nh * D) + f32(Np * nh); // output and logsumexp [n, nh, Tr]
    const mlp = 3 * f32(Np * I);
    const rows = 4 * f32(Np * H) + 2 * f32(Np); // o-proj, h1, mlp out, output; norm rstd
    const norms = 2 * f32(Np * H);
    const layerWork = qkv + qkNorm + attn + mlp + rows + norms;
    // Generation: a run's layer input, and every prompt's last hidden state for the LM head.
    const residual = kvCache ? f32(Np * H) + f32(B * H) : (L + 1) * f32(N * H);
    const headRows = kvCache ? B : N;
    const head = f32(headRows * H) + f32(headRows);
    const logitsBytes = logits === 'all' ? buffer('logits', f32(N * V)) : logits === 'last' ? buffer('logits', f32(B * V)) : fusedHeadBytes(N, H, V, headKind) + f32(N);
    const lora1 = opts.lora ? f32(Np * opts.lora.r) * new Set(opts.lora.targets).size : 0;
    activations = residual + Math.max(layerWork + lora1, head + logitsBytes);
    const run = kvCache && Np < N ? `, prefill in runs of ${Np % T === 0 ? Np / T : `at most ${Np} tokens`}` : '';
    items.push({ name: `activations (batch ${B} x ${T} tokens${run}, inference, logits: ${logits})`, bytes: activations });
    buffer('activation: MLP gate/up (one)', f32(Np * I));
  } else {
    activations = trainingActivations(cfg, B, T, opts.lora!, checkpointing, { ...headKind, kind: headKindOpt, scored });
    if (headKindOpt === 'lm') keptLogits = keptLogitsBytes(scored ?? N, V, headKind.cpu);
    const what = headKindOpt === 'value' ? ', value head' : scored === null ? '' : `, ${scored} scored`;
    items.push({
      name: `activations (batch ${B} x ${T} tokens${what}, training, ${checkpointing ? 'checkpointed per layer' : 'no checkpointing'})`,
      bytes: activations,
    });
    buffer('activation: MLP gate/up (one)', f32(N * I));
  }

  let kv = 0;
  if (kvCache) {
    const perBuffer = buffer('KV cache (one layer, K or V)', (kvDtype === 'f16' ? f16 : f32)(B * T * nkv * D));
    kv = 2 * L * perBuffer;
    items.push({ name: `KV cache (${kvDtype}, ${L} layers x K,V x [${B}, ${T}, ${nkv}, ${D}])`, bytes: kv });
  }

  items.sort((a, b) => b.bytes - a.bytes);
  const total = weights + packed + lora + optimizer + activations + kv;
  return {
    weights,
    packedWeights: packed,
    lora,
    optimizer,
    activations,
    keptLogits,
    kvCache: kv,
    total,
    items,
    largestBuffer: largest,
    options: {
      batch: B,
      seqLen: T,
      dtype,
      training,
      checkpointing,
      kvCache,
      kvDtype,
      prefillTokens,
      logits,
      headKernel,
      maxBinding: headKind.maxBinding,
      packedWeights: opts.packedWeights ?? false,
      head: headKindOpt,
      scoredRows: scored,
      lora: opts.lora,
    },
  };
}

export interface MemoryLimits {
  /** Bytes the run may use on the device. */
  budgetBytes: number;
  /** Largest single buffer the device allows (WebGPU's maxBufferSize). */
  maxBufferSize?: number;
}

export class MemoryPlanError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MemoryPlanError';
  }
}

/** The limits of a device: its allocator budget (or `budgetBytes`) and maxBufferSize. */
export function deviceLimits(gpu: Gpu, budgetBytes?: number): MemoryLimits {
  // A budget the caller gives must be one (NaN was reported as "WebGPU does not report device memory; pass budgetBytes").
  if (budgetBytes !== undefined && (typeof budgetBytes !== 'number' || !(budgetBytes >= 0) || budgetBytes === Infinity)) {
    throw new OptionError(`deviceLimits: budgetBytes must be a finite number >= 0, got ${budgetBytes}`, 'deviceLimits', 'budgetBytes');
  }
  const budget = budgetBytes ?? gpu.allocator.budgetBytes;
  if (!Number.isFinite(budget)) {
    throw new MemoryPlanError('deviceLimits: WebGPU does not report device memory; pass budgetBytes (e.g. --memory-budget)');
  }
  return { budgetBytes: budget, maxBufferSize: gpu.limits.maxBufferSize };
}

/**
 * Throws a MemoryPlanError when the plan does not fit: it names the total against the budget, the biggest items
 * and what would shrink them.
 */
export function assertFits(plan: MemoryPlan, limits: MemoryLimits): void {
  // NaN compares false with everything, so a NaN (or missing) budget or plan used to fit anything. +Infinity stays
  // allowed: callers pass it for a device that reports no memory size.
  const bad = (option: string, msg: string): never => {
    throw new OptionError(`assertFits: ${msg}`, 'assertFits', option);
  };
  if (typeof limits?.budgetBytes !== 'number' || !(limits.budgetBytes >= 0)) bad('budgetBytes', `budgetBytes must be a number >= 0 (or Infinity), got ${limits?.budgetBytes}`);
  const maxBuf = limits.maxBufferSize;
  if (maxBuf !== undefined && (typeof maxBuf !== 'number' || !(maxBuf >= 0))) bad('maxBufferSize', `maxBufferSize must be a number >= 0, got ${maxBuf}`);
  if (!Number.isFinite(plan?.total) || !Number.isFinite(plan.largestBuffer?.bytes)) bad('plan', `the plan's total is ${plan?.total} bytes (largest buffer ${plan?.largestBuffer?.bytes}); it is not a planMemory result`);
  const problems: string[] = [];
  if (plan.total > limits.budgetBytes) {
    problems.push(`it needs about ${formatBytes(plan.total)} but the budget is ${formatBytes(limits.budgetBytes)}`);
  }
  if (limits.maxBufferSize !== undefined && plan.largestBuffer.bytes > limits.maxBufferSize) {
    problems.push(
      `its largest buffer (${plan.largestBuffer.name}, ${formatBytes(plan.largestBuffer.bytes)}) exceeds the device's maxBufferSize of ${formatBytes(limits.maxBufferSize)}`,
    );
  }
  if (problems.length === 0) return;
  const o = plan.options;
  const biggest = plan.items.slice(0, 3).map((i) => `${i.name}: ${formatBytes(i.bytes)}`);
  const advice: string[] = [];
  if (o.batch > 1) advice.push(`a smaller batch (now ${o.batch})`);
  advice.push(`a shorter sequence (now ${o.seqLen} tokens)`);
  if (o.training && !o.checkpointing) advice.push('activation checkpointing');
  if (o.dtype === 'f32') advice.push('f16 weights');
  if (!o.training && o.logits === 'all') advice.push('the fused LM head (sequenceLogprobs) instead of full logits');
  throw new MemoryPlanError(
    `this will not fit: ${problems.join('; ')}.\n` +
      `  biggest items:\n    ${biggest.join('\n    ')}\n` +
      `  to fit, try ${advice.join(', ')}.`,
  );
}

export interface MeasuredMemory<T> {
  result: T;
  /** Highest bytes in use during `fn` (everything in use when it started included). */
  peak: number;
  stats: MemoryStats;
}

/** Runs `fn` (synced at the end) and reports the allocator's peak in-use bytes during it. */
export async function measurePeak<T>(gpu: Gpu, fn: () => Promise<T> | T): Promise<MeasuredMemory<T>> {
  gpu.allocator.resetPeak();
  const result = await fn();
  await gpu.sync();
  const stats = gpu.memory();
  return { result, peak: stats.peak, stats };
}

/** A two-column table of the plan's items and total, with the measured peak when given. */
export function formatMemoryReport(plan: MemoryPlan, measuredPeak?: number): string {
  const lines = plan.items.map((i) => `  ${i.name.padEnd(72)} ${formatBytes(i.bytes)}`);
  lines.push(`  ${'estimated total'.padEnd(72)} ${formatBytes(plan.total)}`);
  if (measuredPeak !== undefined) {
    const ratio = measuredPeak / plan.total;
    lines.push(`  ${'measured peak (allocator)'.padEnd(72)} ${formatBytes(measuredPeak)} (${(ratio * 100).toFixed(1)}% of the estimate)`);
  }
  return lines.join('\n');
}
