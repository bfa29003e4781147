import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export type QwenArch = 'qwen2' | 'qwen3';

/** The model hyper-parameters we use, read from a Hugging Face `config.json`. */
export interface QwenConfig {
  arch: QwenArch;
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  rmsNormEps: number;
  ropeTheta: number;
  maxPositionEmbeddings: number;
  tieWordEmbeddings: boolean;
  /** Qwen2 has biases on q/k/v projections; Qwen3 has none but RMS-normalizes q and k per head. */
  attentionBias: boolean;
  qkNorm: boolean;
  torchDtype: string;
  bosTokenId?: number;
  eosTokenId?: number | number[];
}

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

const ARCHS: Record<string, QwenArch> = { Qwen2ForCausalLM: 'qwen2', Qwen3ForCausalLM: 'qwen3' };

/** Parses and checks a config.json object. Every missing or inconsistent field is an error naming the field. */
export function parseQwenConfig(raw: Record<string, unknown>, source = 'config.json'): QwenConfig {
  const archs = raw.architectures;
  const archName = Array.isArray(archs) ? archs.find((a) => typeof a === 'string' && a in ARCHS) : undefined;
  if (!archName) {
    throw new ConfigError(
      `${source}: unsupported architecture ${JSON.stringify(archs ?? raw.model_type)}; supported: ${Object.keys(ARCHS).join(', ')}`,
    );
  }
  const arch = ARCHS[archName as string];
  const int = (key: string, fallback?: number): number => {
    const v = raw[key] ?? fallback;
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) {
      throw new ConfigError(`${source}: '${key}' must be a positive integer, got ${JSON.stringify(raw[key])}`);
    }
    return v;
  };
  const num = (key: string, fallback?: number): number => {
    const v = raw[key] ?? fallback;
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) {
      throw new ConfigError(`${source}: '${key}' must be a positive number, got ${JSON.stringify(raw[key])}`);
    }
    return v;
  };
  const hiddenSize = int('hidden_size');
  const numHeads = int('num_attention_heads');
  const numKvHeads = int('num_key_value_heads', numHeads);
  const headDim = raw.head_dim === undefined || raw.head_dim === null ? hiddenSize / numHeads : int('head_dim');
  if (!Number.isInteger(headDim)) {
    throw new ConfigError(`${source}: hidden_size ${hiddenSize} is not divisible by num_attention_heads ${numHeads}`);
  }
  if (numHeads % numKvHeads !== 0) {
    throw new ConfigError(`${source}: num_attention_heads ${numHeads} is not a multiple of num_key_value_heads ${numKvHeads}`);
  }
  if (headDim % 2 !== 0) throw new ConfigError(`${source}: head_dim ${headDim} must be even for RoPE`);
  const scaling = raw.rope_scaling as { type?: string; rope_type?: string } | null | undefined;
  if (scaling && (scaling.rope_type ?? scaling.type) && (scaling.rope_type ?? scaling.type) !== 'default') {
    throw new ConfigError(`${source}: rope_scaling ${JSON.stringify(scaling)} is not supported (only plain RoPE)`);
  }
  return {
    arch,
    vocabSize: int('vocab_size'),
    hiddenSize,
    intermediateSize: int('intermediate_size'),
    numLayers: int('num_hidden_layers'),
    numHeads,
    numKvHeads,
    headDim,
    rmsNormEps: num('rms_norm_eps', 1e-6),
    ropeTheta: num('rope_theta', 10000),
    maxPositionEmbeddings: int('max_position_embeddings', 32768),
    tieWordEmbeddings: raw.tie_word_embeddings === true,
    attentionBias: arch === 'qwen2' ? raw.attention_bias !== false : raw.attention_bias === true,
    qkNorm: arch === 'qwen3',
    torchDtype: typeof raw.torch_dtype === 'string' ? raw.torch_dtype : typeof raw.dtype === 'string' ? raw.dtype : 'float32',
    bosTokenId: typeof raw.bos_token_id === 'number' ? raw.bos_token_id : undefined,
    eosTokenId: raw.eos_token_id as number | number[] | undefined,
  };
}

export function loadQwenConfig(dir: string): QwenConfig {
  const path = join(dir, 'config.json');
  if (!existsSync(path)) throw new ConfigError(`${dir}: no config.json (is this a Hugging Face model directory?)`);
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new ConfigError(`${path}: not valid JSON (${(e as Error).message})`);
  }
  return parseQwenConfig(raw, path);
}

/** HF tensor names of one decoder layer, for loading and for PEFT adapter names. */
export function layerTensorNames(cfg: QwenConfig, layer: number): Record<string, string> {
  const p = `model.layers.${layer}`;
  const names: Record<string, string> = {
    inputNorm: `${p}.input_layernorm.weight`,
    postNorm: `${p}.post_attention_layernorm.weight`,
    q: `${p}.self_attn.q_proj.weight`,
    k: `${p}.self_attn.k_proj.weight`,
    v: `${p}.self_attn.v_proj.weight`,
    o: `${p}.self_attn.o_proj.weight`,
    gate: `${p}.mlp.gate_proj.weight`,
    up: `${p}.mlp.up_proj.weight`,
    down: `${p}.mlp.down_proj.weight`,
  };
  if (cfg.attentionBias) {
    names.qBias = `${p}.self_attn.q_proj.bias`;
    names.kBias = `${p}.self_attn.k_proj.bias`;
    names.vBias = `${p}.self_attn.v_proj.bias`;
  }
  if (cfg.qkNorm) {
    names.qNorm = `${p}.self_attn.q_norm.weight`;
    names.kNorm = `${p}.self_attn.k_norm.weight`;
  }
  return names;
}

/** Expected shape of every tensor of a checkpoint with this config. */
export function expectedShapes(cfg: QwenConfig): Map<string, number[]> {
  const { hiddenSize: h, intermediateSize: i, numHeads: nh, numKvHeads: nkv, headDim: d, vocabSize: v } = cfg;
  const m = new Map<string, number[]>([
    ['model.embed_tokens.weight', [v, h]],
    ['model.norm.weight', [h]],
  ]);
  if (!cfg.tieWordEmbeddings) m.set('lm_head.weight', [v, h]);
  for (let l = 0; l < cfg.numLayers; l++) {
    const n = layerTensorNames(cfg, l);
    m.set(n.inputNorm, [h]);
    m.set(n.postNorm, [h]);
    m.set(n.q, [nh * d, h]);
    m.set(n.k, [nkv * d, h]);
    m.set(n.v, [nkv * d, h]);
    m.set(n.o, [h, nh * d]);
    m.set(n.gate, [i, h]);
    m.set(n.up, [i, h]);
    m.set(n.down, [h, i]);
    if (n.qBias) {
      m.set(n.qBias, [nh * d]);
      m.set(n.kBias!, [nkv * d]);
      m.set(n.vBias!, [nkv * d]);
    }
    if (n.qNorm) {
      m.set(n.qNorm, [d]);
      m.set(n.kNorm!, [d]);
    }
  }
  return m;
}
