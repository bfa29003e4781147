import { formatBytes, isSoftwareAdapter, type Gpu } from '@mlagent/core-kernels';
import { MemoryPlanError, assertFits, nvidiaFreeBytes, planMemory, type LoraModule, type MemoryPlan, type MemoryPlanOptions, type QwenConfig } from '@mlagent/policy';
import type { TrainConfig } from '../config/train-config.js';

/** What the plan needs to know of the device, and the memory it may use (undefined: unknown, nothing refused). */
export interface PlanDevice {
  /** A software adapter (lavapipe): the fused CPU LM head and packed weights. */
  software: boolean;
  maxBinding: number;
  budgetBytes?: number;
}

/**
 * The device's memory budget: the allocator's when one was set, else, on a GPU, what nvidia-smi reports free plus
 * what this device already holds. Undefined where neither is known (WebGPU reports no device memory; a software
 * adapter's buffers are host memory).
 */
function deviceBudget(gpu: Gpu): number | undefined {
  if (Number.isFinite(gpu.allocator.budgetBytes)) return gpu.allocator.budgetBytes;
  if (isSoftwareAdapter(gpu.adapter)) return undefined;
  const free = nvidiaFreeBytes();
  return free === undefined ? undefined : free + gpu.memory().inUse;
}

/** The device as the plan sees it; `budgetBytes` (e.g. --memory-budget) wins over deviceBudget's. */
export function planDevice(gpu: Gpu, budgetBytes?: number): PlanDevice {
  return { software: isSoftwareAdapter(gpu.adapter), maxBinding: gpu.maxBinding, budgetBytes: budgetBytes ?? deviceBudget(gpu) };
}

/** What every plan of a run shares: the weights' dtype, the run's LoRA, and the device's head kernels and packs. */
export function planOptions(config: TrainConfig, device: PlanDevice): Omit<MemoryPlanOptions, 'batch' | 'seqLen'> {
  return {
    dtype: config.dtype,
    lora: { r: config.lora.rank, targets: config.lora.targets as LoraModule[] },
    headKernel: device.software ? 'cpu' : 'tiled',
    maxBinding: device.maxBinding,
    packedWeights: device.software,
  };
}

/**
 * Plans the peak GPU memory of one SFT micro-batch of `batch` sequences of `seqLen` tokens (planMemory, every
 * token scored: an upper bound) and, where the device's budget is known, refuses a run that will not fit, naming
 * the config fields that shrink it. Returns the plan and a line for the log.
 */
export function checkSftMemory(cfg: QwenConfig, config: TrainConfig, shape: { batch: number; seqLen: number }, device: PlanDevice): { plan: MemoryPlan; line: string } {
  const c = config.sft;
  const plan = planMemory(cfg, { ...shape, ...planOptions(config, device), training: true, checkpointing: c.activationCheckpointing });
  const what = `sft: a micro-batch of ${shape.batch} x ${shape.seqLen} tokens needs about ${formatBytes(plan.total)} of GPU memory`;
  try {
    assertFits(plan, { budgetBytes: device.budgetBytes ?? Number.POSITIVE_INFINITY });
  } catch (e) {
    if (!(e instanceof MemoryPlanError)) throw e;
    throw new MemoryPlanError(
      `${what}: ${e.message}\n  in the config: sft.batchSize (now ${c.batchSize}), sft.maxSeqLen (now ${c.maxSeqLen}), ` +
        `sft.activationCheckpointing (now ${c.activationCheckpointing}), dtype (now ${config.dtype}).`,
    );
  }
  const budget = device.budgetBytes === undefined ? 'the device reports no memory size, so this is not checked' : `${formatBytes(device.budgetBytes)} available`;
  return { plan, line: `${what} (weights ${formatBytes(plan.weights)}, activations ${formatBytes(plan.activations)}; ${budget})` };
}
