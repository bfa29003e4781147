import { formatBytes } from '@mlagent/core-kernels';
import { MemoryPlanError, planMemory, type MemoryPlanOptions, type QwenConfig } from '@mlagent/policy';
import type { TrainConfig } from '../config/train-config.js';
import { planOptions, type PlanDevice } from '../sft/memory-check.js';

export interface EvalBatchOptions {
  /** The LoRA the model runs with, where it is not the config's (e.g. a loaded adapter's); null: none. */
  lora?: MemoryPlanOptions['lora'] | null;
  /** What shrinks a call, for the refusal (default: the config fields ppo.maxPromptTokens, ppo.maxNewTokens, dtype). */
  shrink?: string;
  /** Told (a line) whenever the size a round gets changes and is less than the whole round. */
  log?: (line: string) => void;
}

/**
 * For policyAgent's batchFor: the most of a round's prompts whose generate() call (KV caches at the longest prompt
 * plus ppo.maxNewTokens, the model and its LoRA adapter) the memory plan fits in the device's budget. Undefined
 * where the budget is unknown (every prompt in one call, as before). Throws a MemoryPlanError when not even one
 * prompt fits, naming the config fields that shrink it.
 */
export function evalBatchFor(
  cfg: QwenConfig,
  config: TrainConfig,
  device: PlanDevice,
  options: EvalBatchOptions = {},
): ((prompts: readonly (readonly number[])[]) => number) | undefined {
  const budget = device.budgetBytes;
  if (budget === undefined) return undefined;
  const c = config.ppo;
  const base = planOptions(config, device);
  const lora = options.lora === undefined ? base.lora : (options.lora ?? undefined);
  const shrink = options.shrink ?? `in the config: ppo.maxPromptTokens (now ${c.maxPromptTokens}; it cuts evaluation's prompts too), ppo.maxNewTokens (now ${c.maxNewTokens}), dtype (now ${config.dtype})`;
  const need = (batch: number, seqLen: number) => planMemory(cfg, { batch, seqLen, kvCache: true, ...base, lora }).total;
  let last = 0;
  // A line when a split round's call size differs from the last split round's.
  const logged = (n: number, prompts: readonly (readonly number[])[]) => {
    if (n < prompts.length) {
      const longest = Math.max(...prompts.map((p) => p.length));
      if (n !== last) options.log?.(`eval: generating ${n} of a round's ${prompts.length} prompts a call (prompts up to ${longest} tokens; ${formatBytes(budget)} budget)`);
      last = n;
    }
    return n;
  };
  return (prompts) => {
    if (prompts.length === 0) return 1;
    const seqLen = Math.max(...prompts.map((p) => p.length)) + c.maxNewTokens;
    if (need(1, seqLen) > budget) {
      throw new MemoryPlanError(
        `eval: one generate() of ${seqLen} tokens needs about ${formatBytes(need(1, seqLen))} of GPU memory, but the budget is ${formatBytes(budget)}.\n` +
          `  ${shrink}.`,
      );
    }
    // The plan grows with the batch: the largest batch that fits, by bisection.
    let [lo, hi] = [1, prompts.length];
    while (lo < hi) {
      const mid = Math.ceil((lo + hi) / 2);
      if (need(mid, seqLen) <= budget) lo = mid;
      else hi = mid - 1;
    }
    return logged(lo, prompts);
  };
}
