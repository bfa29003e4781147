import { formatBytes } from '@mlagent/core-kernels';
import { MemoryPlanError, planMemory, type MemoryPlan, type QwenConfig } from '@mlagent/policy';
import type { TrainConfig } from '../config/train-config.js';
import { planOptions, type PlanDevice } from '../sft/memory-check.js';

/** The lengths a PPO iteration works on. */
export interface PpoMemoryShape {
  /** Prompt and response tokens of each sample of the iteration. */
  samples: readonly { prompt: number; response: number }[];
  /** Tokens and target tokens of each PPO-ptx expert step (with ptxCoef > 0). */
  ptx?: readonly { tokens: number; targets: number }[];
}

export interface PpoMemoryPhase {
  name: string;
  /** Peak bytes of the phase, the state every phase holds included. */
  bytes: number;
}

export interface PpoMemoryPlan {
  microBatchSize: number;
  /** The base weights, their packs (software adapters), the actor's, the critic's and the reference's LoRA, and
   * the optimizers' gradients and moments: held through every phase. */
  state: number;
  /** Generation, then the update's passes, one at a time; each with `state`. */
  phases: PpoMemoryPhase[];
  /** The largest phase. */
  total: number;
  largest: PpoMemoryPhase;
}

/** The sum of the `k` largest of `xs`. */
function topSum(xs: readonly number[], k: number): number {
  return [...xs]
    .sort((a, b) => b - a)
    .slice(0, k)
    .reduce((a, b) => a + b, 0);
}

/**
 * Plans the peak GPU memory of a PPO iteration run in micro-batches of `microBatchSize` samples, from planMemory's
 * passes. ppoUpdate runs one pass at a time (the actor's forward and backward, then the critic's, then PPO-ptx's),
 * so the peak is the largest pass on top of what every phase holds. Each pass is planned at its worst
 * micro-batch: the iteration's longest sequence padding it, the longest responses scored. Generation is planned at
 * a full generate() call of the longest prompt plus maxNewTokens. The reference log-probs and old values passes
 * (no gradient) are smaller than the training passes and are not planned.
 */
export function planPpoMemory(
  cfg: QwenConfig,
  config: TrainConfig,
  shape: PpoMemoryShape,
  microBatchSize: number,
  device: PlanDevice,
  opts: { reference: boolean },
): PpoMemoryPlan {
  const c = config.ppo;
  if (shape.samples.length === 0) throw new Error('planPpoMemory: no samples');
  if (!Number.isInteger(microBatchSize) || microBatchSize < 1) throw new Error(`planPpoMemory: microBatchSize must be a positive integer, got ${microBatchSize}`);
  const common = planOptions(config, device);
  const train = { ...common, training: true, checkpointing: c.activationCheckpointing };
  const B = Math.min(microBatchSize, c.minibatchSize, shape.samples.length);
  const longest = Math.max(...shape.samples.map((s) => s.prompt + s.response));
  const longestPrompt = Math.max(...shape.samples.map((s) => s.prompt));
  const scored = Math.min(B * longest, topSum(shape.samples.map((s) => s.response), B));

  const perCall = Math.max(1, Math.floor(c.generationBatch / c.samplesPerState)) * c.samplesPerState;
  const generation = planMemory(cfg, { ...common, batch: perCall, seqLen: longestPrompt + c.maxNewTokens, kvCache: true });
  const actor = planMemory(cfg, { ...train, batch: B, seqLen: longest, scoredRows: scored });
  const critic = c.advantage === 'gae' ? planMemory(cfg, { ...train, batch: B, seqLen: longestPrompt, head: 'value' }) : null;
  const ptx = c.ptxCoef > 0 && shape.ptx && shape.ptx.length > 0 ? shape.ptx : null;
  let ptxPlan: MemoryPlan | null = null;
  let ptxB = 0;
  if (ptx) {
    ptxB = Math.min(microBatchSize, c.ptxBatchSize, ptx.length);
    const T = Math.max(...ptx.map((e) => e.tokens));
    ptxPlan = planMemory(cfg, { ...train, batch: ptxB, seqLen: T, scoredRows: Math.max(1, Math.min(ptxB * T, topSum(ptx.map((e) => e.targets), ptxB))) });
  }

  // Packs (software adapters): every projection; not the LM head, which the fused training head reads as it is
  // and generation's last-token logits (a few rows) multiply unpacked.
  const state =
    actor.weights +
    actor.packedWeights +
    actor.lora * (opts.reference ? 2 : 1) +
    actor.optimizer +
    (critic ? critic.lora + critic.optimizer : 0);
  // The model keeps the training passes' logits buffer (fused CPU head) once it is made.
  const keptLogits = Math.max(actor.keptLogits, ptxPlan?.keptLogits ?? 0);
  const phases: PpoMemoryPhase[] = [
    { name: `generation (${perCall} sequences of up to ${longestPrompt} + ${c.maxNewTokens} tokens)`, bytes: state + generation.activations + generation.kvCache },
    { name: `actor pass (${B} x ${longest} tokens, ${scored} scored)`, bytes: state + actor.activations },
  ];
  if (critic) phases.push({ name: `critic pass (${B} x ${longestPrompt} tokens)`, bytes: state + keptLogits + critic.activations });
  if (ptxPlan) phases.push({ name: `PPO-ptx pass (${ptxB} x ${ptxPlan.options.seqLen} tokens)`, bytes: state + ptxPlan.activations });
  const largest = phases.reduce((a, b) => (b.bytes > a.bytes ? b : a));
  return { microBatchSize: B, state, phases, total: largest.bytes, largest };
}

export interface PpoMemoryCheck {
  /** The micro-batch size the update runs with. */
  microBatchSize: number;
  plan: PpoMemoryPlan;
  line: string;
}

/**
 * Picks the micro-batch size of a PPO iteration and checks that it fits the device's budget (where it is known):
 * ppo.microBatchSize when set, else the whole minibatch, or the largest micro-batch whose plan fits. Throws a
 * MemoryPlanError naming the config fields that shrink the phase that does not fit.
 */
export function checkPpoMemory(cfg: QwenConfig, config: TrainConfig, shape: PpoMemoryShape, device: PlanDevice, opts: { reference: boolean; where?: string }): PpoMemoryCheck {
  const c = config.ppo;
  const where = opts.where ?? 'ppo';
  const budget = device.budgetBytes ?? Number.POSITIVE_INFINITY;
  const plan = (micro: number) => planPpoMemory(cfg, config, shape, micro, device, opts);
  let chosen = plan(c.microBatchSize ?? c.minibatchSize);
  if (c.microBatchSize === null) {
    for (let micro = chosen.microBatchSize - 1; micro >= 1 && chosen.total > budget; micro--) chosen = plan(micro);
  }
  const micro = chosen.microBatchSize;
  const phases = chosen.phases.map((p) => `${p.name}: ${formatBytes(p.bytes)}`).join(', ');
  if (chosen.total > budget) {
    const advice =
      chosen.largest === chosen.phases[0]
        ? `ppo.generationBatch (now ${c.generationBatch}), ppo.maxNewTokens (now ${c.maxNewTokens})`
        : `ppo.microBatchSize (now ${c.microBatchSize ?? 'null: the largest that fits'}), ppo.maxNewTokens (now ${c.maxNewTokens}), ` +
          `ppo.activationCheckpointing (now ${c.activationCheckpointing})${c.ptxCoef > 0 ? `, ppo.ptxBatchSize (now ${c.ptxBatchSize})` : ''}`;
    throw new MemoryPlanError(
      `${where}: micro-batches of ${micro} need about ${formatBytes(chosen.total)} of GPU memory at their largest, the ${chosen.largest.name}, ` +
        `but the budget is ${formatBytes(budget)} (${phases}; ${formatBytes(chosen.state)} of it weights, adapters and optimizer state).\n` +
        `  in the config: ${advice}, ppo.historyWindow (now ${c.historyWindow}) and ppo.maxObservationChars (now ${c.maxObservationChars}) for shorter prompts, dtype (now ${config.dtype}).`,
    );
  }
  const auto = c.microBatchSize === null && micro < Math.min(c.minibatchSize, shape.samples.length) ? ' (the largest that fits)' : '';
  const known = device.budgetBytes === undefined ? 'the device reports no memory size, so this is not checked' : `${formatBytes(device.budgetBytes)} available`;
  return { microBatchSize: micro, plan: chosen, line: `${where}: micro-batches of ${micro}${auto} need about ${formatBytes(chosen.total)} of GPU memory (${phases}; ${known})` };
}
