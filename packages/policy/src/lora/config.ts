import type { QwenConfig } from '../config.js';

/** The linear layers of a Qwen decoder layer that LoRA can adapt, named as in Hugging Face and PEFT. */
export const LORA_MODULES = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] as const;
export type LoraModule = (typeof LORA_MODULES)[number];

/** Key of each module's frozen weight in `QwenLayerWeights`, and its parent in the HF module tree. */
export const MODULE_WEIGHT = {
  q_proj: 'q',
  k_proj: 'k',
  v_proj: 'v',
  o_proj: 'o',
  gate_proj: 'gate',
  up_proj: 'up',
  down_proj: 'down',
} as const satisfies Record<LoraModule, string>;

export const MODULE_PARENT: Record<LoraModule, 'self_attn' | 'mlp'> = {
  q_proj: 'self_attn',
  k_proj: 'self_attn',
  v_proj: 'self_attn',
  o_proj: 'self_attn',
  gate_proj: 'mlp',
  up_proj: 'mlp',
  down_proj: 'mlp',
};

export interface LoraConfig {
  /** Rank of the update B·A. */
  r: number;
  /** Scale numerator: the update is (alpha / r)·B·A. */
  alpha: number;
  /** Dropout probability on the LoRA path's input during training (default 0). */
  dropout?: number;
  /** Which linear layers of every decoder layer get an adapter. */
  targetModules: readonly LoraModule[];
}

export class LoraError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'LoraError';
  }
}

/** Checks a LoRA config; every problem is an error naming the field. Returns it with defaults filled in. */
export function checkLoraConfig(c: LoraConfig, where = 'LoRA config'): Required<LoraConfig> {
  if (!Number.isInteger(c.r) || c.r <= 0) throw new LoraError(`${where}: r must be a positive integer, got ${c.r}`);
  if (!Number.isFinite(c.alpha) || c.alpha <= 0) throw new LoraError(`${where}: alpha must be a positive number, got ${c.alpha}`);
  const dropout = c.dropout ?? 0;
  if (!(dropout >= 0 && dropout < 1)) throw new LoraError(`${where}: dropout must be in [0, 1), got ${dropout}`);
  if (!Array.isArray(c.targetModules) || c.targetModules.length === 0) {
    throw new LoraError(`${where}: targetModules must list at least one of ${LORA_MODULES.join(', ')}`);
  }
  for (const m of c.targetModules) {
    if (!(LORA_MODULES as readonly string[]).includes(m)) {
      throw new LoraError(`${where}: unknown target module '${m}'; choose from ${LORA_MODULES.join(', ')}`);
    }
  }
  const targetModules = LORA_MODULES.filter((m) => c.targetModules.includes(m));
  return { r: c.r, alpha: c.alpha, dropout, targetModules };
}

/** [out, in] of a module's frozen weight. */
export function moduleShape(cfg: QwenConfig, m: LoraModule): [number, number] {
  const { hiddenSize: H, intermediateSize: I, numHeads: nh, numKvHeads: nkv, headDim: D } = cfg;
  switch (m) {
    case 'q_proj':
      return [nh * D, H];
    case 'k_proj':
    case 'v_proj':
      return [nkv * D, H];
    case 'o_proj':
      return [H, nh * D];
    case 'gate_proj':
    case 'up_proj':
      return [I, H];
    case 'down_proj':
      return [H, I];
  }
}

/** PEFT's name of a LoRA tensor in adapter_model.safetensors (adapter name 'default' stripped, as PEFT saves). */
export function peftTensorName(layer: number, m: LoraModule, which: 'A' | 'B'): string {
  return `base_model.model.model.layers.${layer}.${MODULE_PARENT[m]}.${m}.lora_${which}.weight`;
}
