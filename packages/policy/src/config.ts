import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { RopeScaling } from '@mlagent/core-kernels';
import { ropeSettings } from './rope-scaling.js';

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
  /** rope_theta, from the top level or (transformers 5) rope_parameters. */
  ropeTheta: number;
  /** The frequencies and cos/sin factor of a linear or yarn rope_scaling; undefined for plain RoPE. */
  ropeScaling?: RopeScaling;
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

/** How a JSON value is described in errors: 'null', 'an array', 'a string', ... */
export function jsonKind(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return `a ${typeof v}`;
}

/**
 * Throws `error('<source>: expected a JSON object, got null')` unless `v` is a plain object: a user file that
 * parses to null or a list would otherwise fail later as a TypeError naming no file.
 */
export function requireJsonObject(v: unknown, source: string, error: new (message: string) => Error): asserts v is Record<string, unknown> {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new error(`${source}: expected a JSON object, got ${jsonKind(v)}`);
}

/** Qwen2Config's default: layers at or above it use the sliding window when use_sliding_window is set. */
const HF_MAX_WINDOW_LAYERS = 28;

/** Parses and checks a config.json object. Every missing or inconsistent field is an error naming the field. */
export function parseQwenConfig(raw: Record<string, unknown>, source = 'config.json'): QwenConfig {
  requireJsonObject(raw, source, ConfigError);
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
  // Fields that change the computation: refused rather than silently computed another way.
  const act = raw.hidden_act;
  if (act !== undefined && act !== null && act !== 'silu' && act !== 'swish') {
    throw new ConfigError(`${source}: hidden_act ${JSON.stringify(act)} is not supported (only silu)`);
  }
  const bool = (key: string, fallback: boolean): boolean => {
    const v = raw[key];
    if (v === undefined || v === null) return fallback;
    if (typeof v !== 'boolean') throw new ConfigError(`${source}: '${key}' must be true or false, got ${JSON.stringify(v)}`);
    return v;
  };
  const numLayers = int('num_hidden_layers');
  const maxPositionEmbeddings = int('max_position_embeddings', 32768);
  const rope = ropeSettings(raw, headDim, maxPositionEmbeddings, source, (message) => {
    throw new ConfigError(message);
  });
  if (bool('use_sliding_window', false)) {
    // HF windows layers >= max_window_layers with a window of sliding_window tokens; a window covering the whole
    // context, or no such layer, is full attention.
    const window = raw.sliding_window;
    const fromLayer = raw.max_window_layers ?? HF_MAX_WINDOW_LAYERS;
    const noEffect = window === null || (typeof window === 'number' && window >= maxPositionEmbeddings) || (typeof fromLayer === 'number' && fromLayer >= numLayers);
    if (!noEffect) {
      throw new ConfigError(
        `${source}: use_sliding_window is true (sliding_window ${JSON.stringify(window)}, max_window_layers ${JSON.stringify(fromLayer)}, ` +
          `${numLayers} layers, max_position_embeddings ${maxPositionEmbeddings}); sliding-window attention is not supported`,
      );
    }
  }
  const isId = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0;
  // null reads as absent, as in HF: no such token.
  const bos = raw.bos_token_id ?? undefined;
  if (bos !== undefined && !isId(bos)) throw new ConfigError(`${source}: 'bos_token_id' must be a non-negative integer, got ${JSON.stringify(bos)}`);
  const eos = raw.eos_token_id ?? undefined;
  if (eos !== undefined && !isId(eos) && !(Array.isArray(eos) && eos.every(isId))) {
    throw new ConfigError(`${source}: 'eos_token_id' must be an integer or a list of integers, got ${JSON.stringify(eos)}`);
  }
  return {
    arch,
    vocabSize: int('vocab_size'),
    hiddenSize,
    intermediateSize: int('intermediate_size'),
    numLayers,
    numHeads,
    numKvHeads,
    headDim,
    rmsNormEps: num('rms_norm_eps', 1e-6),
    ropeTheta: rope.theta,
    ropeScaling: rope.scaling,
    maxPositionEmbeddings,
    tieWordEmbeddings: bool('tie_word_embeddings', false),
    attentionBias: bool('attention_bias', arch === 'qwen2'),
    qkNorm: arch === 'qwen3',
    torchDtype: typeof raw.torch_dtype === 'string' ? raw.torch_dtype : typeof raw.dtype === 'string' ? raw.dtype : 'float32',
    bosTokenId: bos,
    eosTokenId: eos as number | number[] | undefined,
  };
}

export function loadQwenConfig(dir: string): QwenConfig {
  const path = join(dir, 'config.json');
  if (!existsSync(path)) throw new ConfigError(`${dir}: no config.json (is this a Hugging Face model directory?)`);
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new ConfigError(`${path}: not valid JSON (${(e as Error).message})`);
  }
  requireJsonObject(raw, path, ConfigError);
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
