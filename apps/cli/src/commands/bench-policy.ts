import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Gpu, findTorchPython, formatBytes, formatProfile, isSoftwareAdapter } from '@mlagent/core-kernels';
import {
  INIT_MODEL_CONTEXT,
  LORA_MODULES,
  QWEN25_7B_CONFIG,
  QwenModel,
  assertFits,
  initModel,
  nvidiaFreeBytes,
  planMemory,
  qwen25_7bConfig,
  randomModel,
  timeGeneration,
  timeTraining,
  torchGenerationTiming,
  torchTrainingTiming,
  type GenerationTiming,
  type MemoryPlanOptions,
  type QwenArch,
  type QwenConfig,
  type TorchBenchSource,
  type TrainingTiming,
  makeDirs,
} from '@mlagent/policy';
import { UsageError, checkOutputFile, parse } from '../args.js';

export const benchPolicyUsage = `mlagent bench policy [--mode generate|train|all] [--presets tiny,small,7b] [--arch qwen2|qwen3] [--dtype f32|f16]
    [--batch 1,4] [--prompt-len N] [--new-tokens N] [--train-batch N] [--seq-len N] [--checkpoint on|off|both]
    [--lora-r N] [--iterations N] [--kv-dtype f32|f16] [--memory-budget GIB] [--profile] [--no-torch] [--json] [--out FILE]
  generate: prefill and decode tokens/s of greedy KV-cache generation; train: tokens/s of LoRA SFT steps (r on all
  seven linears, forward + backward + AdamW, with and/or without activation checkpointing). On init-model models
  (random weights), or 7b: a Qwen2.5-7B-shaped model whose random weights are made on the GPU (no checkpoint;
  f16 by default). PyTorch runs the same shapes (and weights, except 7b) in the same run; ratio = ours / torch.
  --kv-dtype: generate()'s KV caches (default the weights' dtype; torch keeps its own).
  Peak memory is the allocator's (ours) and torch.cuda.max_memory_allocated (torch on CUDA); plan is what the
  memory planner (planMemory, as mlagent's memory checks use it) expected of ours. --profile adds one
  more run or step per row with every dispatch timed on the GPU, and reports its GPU time by op (not timed itself).`;

type Preset = 'tiny' | 'small' | '7b';
type Mode = 'generate' | 'train' | 'all';

interface GenerationRow {
  preset: Preset;
  arch: QwenArch;
  dtype: 'f32' | 'f16';
  /** The KV caches' dtype. */
  kvDtype: 'f32' | 'f16';
  batch: number;
  promptLen: number;
  newTokens: number;
  ours: GenerationTiming;
  /** The memory planner's estimate of the peak (planMemory), beside the measured one. */
  plannedBytes: number;
  torch?: GenerationTiming;
}

interface TrainingRow {
  preset: Preset;
  arch: QwenArch;
  dtype: 'f32' | 'f16';
  batch: number;
  seqLen: number;
  checkpoint: boolean;
  r: number;
  ours: TrainingTiming;
  plannedBytes: number;
  torch?: TrainingTiming;
}

interface PolicyBenchReport {
  command: string;
  date: string;
  mode: Mode;
  adapter: string;
  host: string;
  torch: string;
  rows: GenerationRow[];
  training: TrainingRow[];
}

const GIB = 2 ** 30;

export async function benchPolicy(argv: string[]): Promise<void> {
  const cmd = 'bench policy';
  const { values } = parse(cmd, argv, {
    mode: { type: 'string', default: 'generate' },
    presets: { type: 'string', default: 'tiny,small' },
    arch: { type: 'string', default: 'qwen2' },
    dtype: { type: 'string' },
    batch: { type: 'string', default: '1,4' },
    'prompt-len': { type: 'string', default: '64' },
    'new-tokens': { type: 'string', default: '16' },
    'train-batch': { type: 'string', default: '1' },
    'seq-len': { type: 'string', default: '128' },
    checkpoint: { type: 'string', default: 'both' },
    'lora-r': { type: 'string', default: '16' },
    iterations: { type: 'string', default: '3' },
    'memory-budget': { type: 'string' },
    'kv-dtype': { type: 'string' },
    profile: { type: 'boolean', default: false },
    'no-torch': { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
    out: { type: 'string' },
  });
  if (values.out !== undefined) checkOutputFile(cmd, 'out', values.out);
  const mode = values.mode as Mode;
  if (!['generate', 'train', 'all'].includes(mode)) throw new UsageError(`${cmd}: --mode must be generate, train or all, got '${values.mode}'`);
  const presets = values.presets.split(',') as Preset[];
  for (const p of presets) if (!['tiny', 'small', '7b'].includes(p)) throw new UsageError(`${cmd}: --presets takes tiny, small and/or 7b, got '${p}'`);
  if (values.arch !== 'qwen2' && values.arch !== 'qwen3') throw new UsageError(`${cmd}: --arch must be qwen2 or qwen3`);
  const arch: QwenArch = values.arch;
  if (arch === 'qwen3' && presets.includes('7b')) throw new UsageError(`${cmd}: the 7b preset is Qwen2.5-7B-shaped (qwen2); drop --arch qwen3 or the 7b preset`);
  if (values.dtype !== undefined && values.dtype !== 'f32' && values.dtype !== 'f16') throw new UsageError(`${cmd}: --dtype must be f32 or f16, got '${values.dtype}'`);
  const kvDtype = values['kv-dtype'] as 'f32' | 'f16' | undefined;
  if (kvDtype !== undefined && kvDtype !== 'f32' && kvDtype !== 'f16') throw new UsageError(`${cmd}: --kv-dtype must be f32 or f16, got '${values['kv-dtype']}'`);
  const dtypeOf = (p: Preset): 'f32' | 'f16' => (values.dtype as 'f32' | 'f16' | undefined) ?? (p === '7b' ? 'f16' : 'f32');
  const int = (name: string, v: string, min: number) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new UsageError(`${cmd}: --${name} must be an integer >= ${min}, got '${v}'`);
    return n;
  };
  const batches = values.batch.split(',').map((b) => int('batch', b, 1));
  const promptLen = int('prompt-len', values['prompt-len'], 1);
  const newTokens = int('new-tokens', values['new-tokens'], 2);
  if (mode !== 'train') {
    // Checked for every preset before any model is made: generate() would refuse it only after.
    for (const p of presets) {
      const context = p === '7b' ? qwen25_7bConfig().maxPositionEmbeddings : INIT_MODEL_CONTEXT;
      if (promptLen + newTokens > context) {
        throw new UsageError(`${cmd}: --prompt-len ${promptLen} + --new-tokens ${newTokens} exceed the ${p} model's ${context}-token context; lower --prompt-len or --new-tokens`);
      }
    }
  }
  const trainBatch = int('train-batch', values['train-batch'], 1);
  const seqLen = int('seq-len', values['seq-len'], 2);
  const r = int('lora-r', values['lora-r'], 1);
  const iterations = int('iterations', values.iterations, 1);
  const ckpt = { on: [true], off: [false], both: [false, true] }[values.checkpoint];
  if (!ckpt) throw new UsageError(`${cmd}: --checkpoint must be on, off or both, got '${values.checkpoint}'`);
  let budgetBytes: number | undefined;
  if (values['memory-budget'] !== undefined) {
    const gib = Number(values['memory-budget']);
    if (!(gib > 0) || !Number.isFinite(gib)) throw new UsageError(`${cmd}: --memory-budget must be a positive number of GiB, got '${values['memory-budget']}'`);
    budgetBytes = gib * GIB;
  }
  const python = values['no-torch'] ? undefined : findTorchPython();
  const log = (s: string) => process.stderr.write(s + '\n');
  const doGenerate = mode !== 'train';
  const doTrain = mode !== 'generate';

  const tmp = mkdtempSync(join(tmpdir(), 'mlagent-bench-policy-'));
  const gpu = await Gpu.create(budgetBytes !== undefined ? { budgetBytes } : {});
  const rows: GenerationRow[] = [];
  const training: TrainingRow[] = [];
  let torchDevice = values['no-torch'] ? 'not measured (--no-torch)' : 'not measured: no python3 with torch found';
  // Rewritten after each measurement (ours, then torch's), so a run cut short (a device time limit) still leaves what it measured.
  const writeReport = (): string => {
    const a = gpu.adapter;
    const report: PolicyBenchReport = {
      command: `mlagent bench policy ${argv.join(' ')}`.trim(),
      date: new Date().toISOString(),
      mode,
      adapter: [a.description || a.device, a.vendor, a.architecture].filter(Boolean).join(' / '),
      host: `${cpus().length} x ${cpus()[0]?.model ?? 'cpu'}`,
      torch: torchDevice,
      rows,
      training,
    };
    const text = values.json ? JSON.stringify(report, null, 2) : markdown(report);
    if (values.out) writeFileSync(values.out, text + '\n');
    return text;
  };
  try {
    for (const preset of presets) {
      const dtype = dtypeOf(preset);
      const dir = join(tmp, preset);
      // 7b: config.json only (torch draws its own weights on its device from a seed); else a full init-model dir.
      const src: TorchBenchSource = { modelDir: dir, dtype: dtype === 'f16' ? 'float16' : 'float32', ...(preset === '7b' ? { randomSeed: 0 } : {}) };
      let cfg: QwenConfig | undefined;
      if (preset === '7b') {
        makeDirs(dir);
        writeFileSync(join(dir, 'config.json'), JSON.stringify(QWEN25_7B_CONFIG, null, 2) + '\n');
        cfg = qwen25_7bConfig();
        checkMemory(cmd, cfg, dtype, { budgetBytes: budgetBytes ?? nvidiaFreeBytes(), maxBufferSize: gpu.limits.maxBufferSize }, {
          generate: doGenerate ? { batch: Math.max(...batches), seqLen: promptLen + newTokens } : undefined,
          train: doTrain ? { batch: trainBatch, seqLen, r, checkpointing: ckpt.every(Boolean) } : undefined,
        }, log);
        log(`7b: making random ${dtype} weights on the GPU ...`);
      } else {
        initModel({ arch, preset, outDir: dir, seed: 0, dtype: dtype === 'f16' ? 'float16' : 'float32' });
      }
      const model = cfg ? await randomModel(gpu, cfg, { dtype, seed: 0, onProgress: log }) : await QwenModel.load(gpu, dir, { dtype });
      const name = `${preset} ${preset === '7b' ? 'qwen2' : arch}`;
      // As the memory checks plan it on this device: its head kernels, and packed weights where training packs them.
      const plan = (o: MemoryPlanOptions) =>
        planMemory(model.config, { dtype, headKernel: isSoftwareAdapter(gpu.adapter) ? 'cpu' : 'tiled', maxBinding: gpu.maxBinding, ...o }).total;
      try {
        for (const batch of doGenerate ? batches : []) {
          const shape = { batch, promptLen, newTokens, iterations };
          log(`${name} ${dtype} generate: batch ${batch}, prompt ${promptLen}, ${newTokens} new tokens ...`);
          const ours = await timeGeneration(model, { ...shape, profile: values.profile, kvDtype });
          const kv = kvDtype ?? dtype;
          const row: GenerationRow = { preset, arch: model.config.arch, dtype, kvDtype: kv, ...shape, ours, plannedBytes: plan({ batch, seqLen: promptLen + newTokens, kvCache: true, kvDtype: kv }) };
          rows.push(row);
          writeReport();
          if (python) {
            const { device, ...t } = await torchGenerationTiming(python, src, shape, log);
            torchDevice = device;
            row.torch = t;
          }
          log(`  prefill ${fmt(row.ours.prefillTokPerS)} tok/s (torch ${fmt(row.torch?.prefillTokPerS)}), decode ${fmt(row.ours.decodeTokPerS)} tok/s (torch ${fmt(row.torch?.decodeTokPerS)}), peak ${gib(row.ours.peakBytes)} (planned ${gib(row.plannedBytes)}; torch ${gib(row.torch?.peakBytes)})`);
          writeReport();
        }
        // As mlagent's trainers run it: frozen weights packed once on a CPU adapter (a no-op on GPUs).
        model.packWeights = true;
        for (const checkpoint of doTrain ? ckpt : []) {
          const shape = { batch: trainBatch, seqLen, checkpoint, r, iterations, onProgress: log };
          log(`${name} ${dtype} LoRA train: batch ${trainBatch} x ${seqLen} tokens, r=${r} on ${LORA_MODULES.length} linears, checkpointing ${checkpoint ? 'on' : 'off'} ...`);
          const ours = await timeTraining(model, { ...shape, profile: values.profile });
          const plannedBytes = plan({ batch: trainBatch, seqLen, training: true, checkpointing: checkpoint, lora: { r, targets: LORA_MODULES }, packedWeights: isSoftwareAdapter(gpu.adapter) });
          const row: TrainingRow = { preset, arch: model.config.arch, dtype, batch: trainBatch, seqLen, checkpoint, r, ours, plannedBytes };
          training.push(row);
          writeReport();
          if (python) {
            const { device, ...t } = await torchTrainingTiming(python, src, shape);
            torchDevice = device;
            row.torch = t;
          }
          log(`  ${fmt(row.ours.tokPerS)} tok/s (torch ${fmt(row.torch?.tokPerS)}), peak ${gib(row.ours.peakBytes)} (planned ${gib(row.plannedBytes)}; torch ${gib(row.torch?.peakBytes)})`);
          writeReport();
        }
      } finally {
        model.dispose();
      }
    }
  } finally {
    gpu.destroy();
    rmSync(tmp, { recursive: true, force: true });
  }
  console.log(writeReport());
}

/**
 * Refuses a 7B-shaped run before any weight is allocated when its largest planned step (per the memory planner)
 * exceeds the budget (--memory-budget, else nvidia-smi's free memory; without either it only warns) or its
 * largest buffer exceeds the adapter's maxBufferSize.
 */
function checkMemory(
  cmd: string,
  cfg: QwenConfig,
  dtype: 'f32' | 'f16',
  limits: { budgetBytes: number | undefined; maxBufferSize: number },
  runs: { generate?: { batch: number; seqLen: number }; train?: { batch: number; seqLen: number; r: number; checkpointing: boolean } },
  log: (s: string) => void,
): void {
  const plans: MemoryPlanOptions[] = [];
  if (runs.generate) plans.push({ ...runs.generate, dtype, kvCache: true });
  if (runs.train) {
    const { r, ...rest } = runs.train;
    plans.push({ ...rest, dtype, training: true, lora: { r, targets: LORA_MODULES } });
  }
  const planned = plans.map((o) => planMemory(cfg, o)).sort((x, y) => y.total - x.total);
  if (planned.length === 0) return;
  const budget = limits.budgetBytes;
  if (budget === undefined) log(`7b: needs about ${formatBytes(planned[0].total)}; no --memory-budget and no nvidia-smi, so only buffer sizes are checked`);
  else log(`7b: needs about ${formatBytes(planned[0].total)} of ${formatBytes(budget)} available`);
  try {
    for (const p of planned) assertFits(p, { budgetBytes: budget ?? Number.POSITIVE_INFINITY, maxBufferSize: limits.maxBufferSize });
  } catch (e) {
    // A usage problem: other options (--seq-len, --batch, --checkpoint, --memory-budget) make it fit.
    throw new UsageError(`${cmd}: --presets 7b: ${(e as Error).message}`);
  }
}

function fmt(x: number | undefined): string {
  if (x === undefined || !Number.isFinite(x)) return '-';
  return x >= 100 ? x.toFixed(0) : x.toPrecision(3);
}

const gib = (b: number | null | undefined) => (b == null ? '-' : `${(b / GIB).toFixed(2)} GiB`);
const ratio = (ours: number, torch: number | undefined) => (torch === undefined ? '-' : `${(ours / torch).toFixed(2)}x`);

function markdown(rep: PolicyBenchReport): string {
  const out = [`Command: \`${rep.command}\`  `, `Date: ${rep.date}  `, `Adapter: ${rep.adapter}; host: ${rep.host}  `, `Reference: ${rep.torch}, ${[...rep.rows, ...rep.training].some((r) => r.preset === '7b') ? 'same shapes (7b: weights drawn by torch, other values)' : 'same weights and shapes'}  `];
  if (rep.rows.length > 0) {
    out.push(
      '',
      '| model | dtype | batch | prompt | new | prefill tok/s | torch | ratio | decode tok/s | torch | ratio | peak | plan | torch peak |',
      '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
      ...rep.rows.map(
        (r) =>
          `| ${r.arch} ${r.preset} | ${r.dtype}${r.kvDtype && r.kvDtype !== r.dtype ? ` (KV ${r.kvDtype})` : ''} | ${r.batch} | ${r.promptLen} | ${r.newTokens} | ${fmt(r.ours.prefillTokPerS)} | ${fmt(r.torch?.prefillTokPerS)} | ${ratio(r.ours.prefillTokPerS, r.torch?.prefillTokPerS)} | ${fmt(r.ours.decodeTokPerS)} | ${fmt(r.torch?.decodeTokPerS)} | ${ratio(r.ours.decodeTokPerS, r.torch?.decodeTokPerS)} | ${gib(r.ours.peakBytes)} | ${gib(r.plannedBytes)} | ${gib(r.torch?.peakBytes)} |`,
      ),
    );
  }
  if (rep.training.length > 0) {
    out.push(
      '',
      '| model | dtype | LoRA | batch | seq | checkpointing | step ms | train tok/s | torch | ratio | peak | plan | torch peak |',
      '|---|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|',
      ...rep.training.map(
        (r) =>
          `| ${r.arch} ${r.preset} | ${r.dtype} | r=${r.r} all linears | ${r.batch} | ${r.seqLen} | ${r.checkpoint ? 'on' : 'off'} | ${fmt(r.ours.stepMs)} | ${fmt(r.ours.tokPerS)} | ${fmt(r.torch?.tokPerS)} | ${ratio(r.ours.tokPerS, r.torch?.tokPerS)} | ${gib(r.ours.peakBytes)} | ${gib(r.plannedBytes)} | ${gib(r.torch?.peakBytes)} |`,
      ),
    );
  }
  const profiled = [
    ...rep.rows.map((r) => [`${r.arch} ${r.preset} ${r.dtype} generate, batch ${r.batch}, prompt ${r.promptLen}, ${r.newTokens} new tokens`, r.ours.profile] as const),
    ...rep.training.map((r) => [`${r.arch} ${r.preset} ${r.dtype} LoRA step, batch ${r.batch} x ${r.seqLen}, checkpointing ${r.checkpoint ? 'on' : 'off'}`, r.ours.profile] as const),
  ];
  for (const [label, profile] of profiled) if (profile) out.push('', `GPU time by op, one profiled ${label}:`, '', formatProfile(profile));
  return out.join('\n');
}
