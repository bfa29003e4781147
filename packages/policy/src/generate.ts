import { attention, attentionCacheAppendKV, attentionDecode, embedding, sampleTokens, type Tensor } from '@mlagent/core-kernels';
import { ContextLengthError, NonFiniteError } from './errors.js';
import type { QwenModel } from './model.js';
import { StopStringMatcher } from './stop-strings.js';

export interface GenerateOptions {
  /** Tokens to generate per prompt at most (positive integer). */
  maxNewTokens: number;
  /** Sampling temperature; 0 means greedy (argmax). Default 1. */
  temperature?: number;
  /** Keep the k most likely tokens (0 or absent: off). */
  topK?: number;
  /** Nucleus sampling mass in (0, 1] (absent or 1: off). */
  topP?: number;
  /** u32 seed: the same seed, prompts and options give the same output. Default: a random seed. */
  seed?: number;
  /** A sequence finishes ('stop') right after sampling one of these ids; the stop token is part of `ids`. */
  stopTokenIds?: readonly number[];
  /**
   * A sequence finishes ('stop') as soon as `decode(generated ids)` contains one of these strings; the token that
   * completes it is the last of `ids`. Needs `decode`.
   */
  stopStrings?: readonly string[];
  /**
   * Token ids to text (e.g. a QwenTokenizer's decode), used for `stopStrings`. Each step decodes only a tail of the
   * generated ids, so the text of a tail must be the tail of the text, but for up to 3 characters at its start (true
   * of byte-level BPE tokenizers such as Qwen's; stop-strings.ts).
   */
  decode?: (ids: number[]) => string;
  /**
   * Called for every token as it is sampled (prompt index, id, logprob), e.g. to stream it. Not awaited: an async one
   * that rejects stops the generation at its next step, and generate rejects with that error.
   */
  onToken?: (index: number, id: number, logprob: number) => void;
  /**
   * Stops decoding at the next step once aborted (e.g. a client went away); results so far are returned. Aborted
   * before the call, nothing runs and every result is empty.
   */
  signal?: AbortSignal;
  /**
   * Sample through f32 copies of the weights with `model.adapter` folded in (QwenModel.mergedAdapterLayers): one
   * matmul per linear per step instead of three. Default: when there is an adapter, the weights are f32 and the
   * copies take at most 64 MiB (small models, where a decode step is mostly its dispatches). true needs f32 weights.
   */
  mergeAdapter?: boolean;
  /**
   * Tokens one prefill pass takes at most: the prompts go through the model in runs of consecutive prompts whose
   * padded size (prompts × the run's longest) stays within it (a longer prompt runs alone), so the prefill's
   * activations stay bounded however many prompts are sampled together. Default PREFILL_TOKENS.
   */
  prefillTokens?: number;
  /**
   * dtype of the KV caches: f16 halves generation's largest buffers (K/V are rounded as they are written; scores
   * and softmax stay f32). Default: the model's dtype (f16 caches for f16 weights). 'f16' needs shader-f16.
   */
  kvDtype?: 'f32' | 'f16';
}

/**
 * A bad argument to generate, sequenceLogprobs or planMemory (and assertFits): the caller's input, typed so a
 * command can tell it from a failure of its own, with the option it names (e.g. 'temperature', 'prompts').
 */
export class OptionError extends Error {
  constructor(
    message: string,
    /** The function that refused it, e.g. 'generate'. */
    readonly fn: string,
    /** The option or argument at fault, e.g. 'topP' or 'prompts'. */
    readonly option: string,
  ) {
    super(message);
    this.name = 'OptionError';
  }
}

/**
 * Temperatures the kernels can use: 1/T and logits/T must be finite f32 values. Below the smallest normal f32
 * (2^-126) a GPU may flush T to 0, and above f32's largest T itself rounds to +Infinity; a JS-finite temperature
 * out there used to fail only after the prefill, as a kernel's error or as "non-finite logits" blamed on the weights.
 */
export const MIN_TEMPERATURE = 2 ** -126;
export const MAX_TEMPERATURE = 3.4028234663852886e38;

/**
 * Checks that `ids` (a prompt or a sequence) is a real array of in-vocabulary token ids. Indexes every element: a
 * hole (`new Array(n)`, `delete ids[i]`) is skipped by forEach and used to reach the GPU as token 0.
 */
export function checkTokenIds(fn: string, option: string, what: string, ids: unknown, b: number, vocabSize: number): void {
  const fail = (msg: string): never => {
    throw new OptionError(`${fn}: ${msg}`, fn, option);
  };
  if (!Array.isArray(ids)) {
    const kind = ids === null ? 'null' : typeof ids === 'object' ? (ids.constructor?.name ?? 'object') : typeof ids;
    fail(`${what} ${b} must be an array of token ids, got ${kind}${ArrayBuffer.isView(ids) ? ' (use Array.from)' : ''}`);
  }
  const arr = ids as unknown[];
  if (arr.length === 0) fail(`${what} ${b} is empty; every ${what} needs at least one token`);
  for (let t = 0; t < arr.length; t++) {
    const id = arr[t];
    if (!(t in arr)) fail(`${what} ${b} has a hole at [${b}, ${t}] (no token id there)`);
    if (!Number.isInteger(id) || (id as number) < 0 || (id as number) >= vocabSize) {
      fail(`token id ${String(id)} at [${b}, ${t}] is outside the vocabulary [0, ${vocabSize})`);
    }
  }
}

/** A bad option's value for a message: numbers as they are, anything else with its type (a string '0.5' is not 0.5). */
export function shown(v: unknown): string {
  if (typeof v === 'number') return String(v);
  const text = typeof v === 'string' ? JSON.stringify(v) : v === null || v === undefined ? String(v) : typeof v === 'object' ? (v.constructor?.name ?? 'object') : String(v);
  return `${v === null || v === undefined ? '' : `${typeof v} `}${text.length > 40 ? `${text.slice(0, 40)}...` : text}`;
}

/** generate()'s default prefillTokens: on Qwen2.5-7B, about 3 GiB of prefill activations. */
export const PREFILL_TOKENS = 8192;

/** Consecutive runs [start, end) of `lens` whose count × longest stays within `budget` (at least one each). */
export function prefillRuns(lens: readonly number[], budget: number): [number, number][] {
  const runs: [number, number][] = [];
  let start = 0;
  let longest = 0;
  lens.forEach((n, b) => {
    const next = Math.max(longest, n);
    if (b > start && (b - start + 1) * next > budget) {
      runs.push([start, b]);
      [start, longest] = [b, n];
    } else longest = next;
  });
  runs.push([start, lens.length]);
  return runs;
}

/** Largest merged-weight copy generate() makes by default. */
export const MERGE_ADAPTER_AUTO_BYTES = 64 * 2 ** 20;

export interface GenerateResult {
  /** The generated tokens only (not the prompt). */
  ids: number[];
  /**
   * log p of each token of `ids` under the temperature-scaled policy, log softmax(logits / T) (top-k/top-p
   * ignored: what PPO-style training wants); for greedy decoding (T = 0) under log softmax(logits).
   */
  logprobs: number[];
  /**
   * 'stop': a stop token or stop string ended it; 'length': maxNewTokens were generated, or `signal` was aborted
   * first (then `ids` has fewer, none when it was aborted before the first token).
   */
  finishReason: 'stop' | 'length';
}

/**
 * Batched sampling with per-layer KV caches [B, Smax, Hkv, D], Smax = longest prompt + maxNewTokens.
 * Prefill: the prompts, right padded, run through the model in runs of at most prefillTokens padded tokens (RoPE
 * at positions 0..len-1, attention masked by each prompt's length) writing K/V into the caches; the logits of each
 * prompt's last token give its first sampled token. Decode: one token per sequence per step, at position = the sequence's current length,
 * against the caches (attentionDecode). Sequences that have finished keep decoding a padding token until all
 * have finished, but their output is ignored. Each step reads back only the sampled ids and log-probabilities.
 */
export async function generate(model: QwenModel, prompts: readonly (readonly number[])[], opts: GenerateOptions): Promise<GenerateResult[]> {
  const cfg = model.config;
  const V = cfg.vocabSize;
  /** Throws an OptionError naming `option`. */
  const fail = (option: string, msg: string): never => {
    throw new OptionError(`generate: ${msg}`, 'generate', option);
  };
  if (model.isDisposed) fail('model', 'model was disposed');
  if (!Array.isArray(prompts) || prompts.length === 0) fail('prompts', 'needs at least one prompt');
  prompts.forEach((p, b) => checkTokenIds('generate', 'prompts', 'prompt', p, b, V));
  if (opts === null || typeof opts !== 'object') fail('opts', 'needs options with at least maxNewTokens');
  const { maxNewTokens } = opts;
  if (!Number.isInteger(maxNewTokens) || maxNewTokens <= 0) fail('maxNewTokens', `maxNewTokens must be a positive integer, got ${shown(maxNewTokens)}`);
  const temperature = opts.temperature ?? 1;
  if (typeof temperature !== 'number' || !Number.isFinite(temperature) || temperature < 0) fail('temperature', `temperature must be a finite number >= 0, got ${shown(temperature)}`);
  if (temperature !== 0 && (temperature < MIN_TEMPERATURE || temperature > MAX_TEMPERATURE)) {
    fail('temperature', `temperature must be 0 (greedy) or within f32's normal range [2^-126, 3.4e38], got ${shown(temperature)}`);
  }
  const topK = opts.topK ?? 0;
  if (!Number.isInteger(topK) || topK < 0) fail('topK', `topK must be a non-negative integer, got ${shown(topK)}`);
  const topP = opts.topP ?? 1;
  if (typeof topP !== 'number' || !(topP > 0 && topP <= 1)) fail('topP', `topP must be in (0, 1], got ${shown(topP)}`);
  const seed = opts.seed ?? Math.floor(Math.random() * 2 ** 32);
  if (!Number.isInteger(seed) || seed < 0 || seed >= 2 ** 32) fail('seed', `seed must be a u32 integer, got ${shown(seed)}`);
  // A single id or string in place of a list used to fail as "not iterable", and a non-string stop was dropped
  // silently (the caller's stop never fired).
  const stopIdList: unknown = opts.stopTokenIds ?? [];
  if (!Array.isArray(stopIdList)) fail('stopTokenIds', `stopTokenIds must be an array of token ids, got ${typeof stopIdList}`);
  const stopIds = new Set(stopIdList as number[]);
  for (const id of stopIds) if (!Number.isInteger(id)) fail('stopTokenIds', `stopTokenIds must be integers, got ${id}`);
  const stopList: unknown = opts.stopStrings ?? [];
  if (!Array.isArray(stopList)) fail('stopStrings', `stopStrings must be an array of strings, got ${typeof stopList}`);
  (stopList as unknown[]).forEach((s, i) => {
    if (typeof s !== 'string') fail('stopStrings', `stopStrings[${i}] must be a string, got ${typeof s}`);
  });
  const stopStrings = (stopList as string[]).filter((s) => s.length > 0);
  if (stopStrings.length > 0 && !opts.decode) fail('decode', 'stopStrings needs a decode(ids) function (e.g. a tokenizer)');
  for (const name of ['decode', 'onToken'] as const) {
    if (opts[name] !== undefined && typeof opts[name] !== 'function') fail(name, `${name} must be a function, got ${typeof opts[name]}`);
  }
  const stopMatcher = stopStrings.length > 0 ? new StopStringMatcher(stopStrings, opts.decode!) : undefined;
  const prefillTokens = opts.prefillTokens ?? PREFILL_TOKENS;
  if (!Number.isInteger(prefillTokens) || prefillTokens < 1) fail('prefillTokens', `prefillTokens must be a positive integer, got ${shown(prefillTokens)}`);
  const kvDtype = opts.kvDtype ?? model.dtype;
  if (kvDtype !== 'f32' && kvDtype !== 'f16') fail('kvDtype', `kvDtype must be 'f32' or 'f16', got ${String(kvDtype)}`);
  if (kvDtype === 'f16' && !model.gpu.features.shaderF16) fail('kvDtype', "kvDtype 'f16' needs the shader-f16 feature, which this adapter lacks; use 'f32'");

  const gpu = model.gpu;
  const B = prompts.length;
  const lens = prompts.map((p) => p.length);
  const T = Math.max(...lens);
  const Smax = T + maxNewTokens;
  if (Smax > cfg.maxPositionEmbeddings) {
    const msg = `generate: longest prompt (${T}) + maxNewTokens (${maxNewTokens}) = ${Smax} exceeds max_position_embeddings ${cfg.maxPositionEmbeddings}`;
    throw new ContextLengthError(msg, T, maxNewTokens, cfg.maxPositionEmbeddings);
  }
  const { numKvHeads: nkv, headDim: D, hiddenSize: H } = cfg;
  const sampleOpts = { temperature, topK, topP, seed, greedy: temperature === 0 };

  const results: GenerateResult[] = prompts.map(() => ({ ids: [], logprobs: [], finishReason: 'length' }));
  const done = new Array<boolean>(B).fill(false);
  let callbackFailed: { error: unknown } | null = null;
  const caches: Tensor[] = [];
  const f32 = model.weights.layers.every((L) => L.q.dtype === 'f32');
  const merge = opts.mergeAdapter ?? (model.adapter !== null && f32 && model.mergedAdapterBytes() <= MERGE_ADAPTER_AUTO_BYTES);
  if (merge && !model.adapter) fail('mergeAdapter', 'mergeAdapter needs model.adapter');
  // Aborted before it started: nothing to sample, so no caches and no prefill (which used to run in full and then
  // sample and stream one token per prompt for a caller that had already gone).
  if (opts.signal?.aborted) return results;
  const merged = merge ? model.mergedAdapterLayers() : undefined;
  const layers = merged?.layers ?? model.weights.layers;
  try {
    const kc: Tensor[] = [];
    const vc: Tensor[] = [];
    for (let l = 0; l < cfg.numLayers; l++) {
      kc.push(gpu.keep(gpu.zeros([B, Smax, nkv, D], kvDtype, 'generate kCache')));
      vc.push(gpu.keep(gpu.zeros([B, Smax, nkv, D], kvDtype, 'generate vCache')));
      caches.push(kc[l], vc[l]);
    }

    /** Samples from logits [B, V], reads back ids and tempLogprobs, and records them for unfinished sequences. */
    const sample = async (logits: Tensor, step: number): Promise<number[]> => {
      if (callbackFailed) throw callbackFailed.error;
      const s = sampleTokens(gpu, logits, { ...sampleOpts, step });
      const [ids, lps] = await Promise.all([s.ids.read(), s.tempLogprobs.read()]);
      s.ids.dispose();
      s.logprobs.dispose();
      s.tempLogprobs.dispose();
      const next = Array.from(ids as ArrayLike<number>);
      // A row with NaN or +inf logits samples the sentinel id -1 with a NaN logprob: fail rather than emit it.
      for (let b = 0; b < B; b++) {
        if (!done[b] && !Number.isFinite(lps[b])) throw new NonFiniteError(`logits at step ${step} of prompt ${b}`, { fn: 'generate' });
      }
      for (let b = 0; b < B; b++) {
        if (done[b]) continue;
        const r = results[b];
        r.ids.push(next[b]);
        r.logprobs.push(lps[b]);
        const ret: unknown = opts.onToken?.(b, next[b], lps[b]);
        // A rejection nobody handles ends the Node process: keep the first one and stop at the next step.
        if (ret !== null && typeof ret === 'object' && typeof (ret as PromiseLike<unknown>).then === 'function') {
          (ret as PromiseLike<unknown>).then(undefined, (error: unknown) => {
            callbackFailed ??= { error };
          });
        }
        if (stopIds.has(next[b]) || stopMatcher?.matches(r.ids)) {
          r.finishReason = 'stop';
          done[b] = true;
        } else if (r.ids.length >= maxNewTokens) {
          done[b] = true;
        }
      }
      return next;
    };

    // Prefill, in runs of prompts (prefillTokens): right-padded, positions 0..T-1, keys past each length masked.
    // Each layer's output replaces its input, and each run's K/V rows are written into the caches, so one run's
    // activations are alive at a time. The last real token's hidden state of every prompt is gathered into
    // `last` [B, H], for one LM head over all of them.
    const last = gpu.keep(gpu.tensor([B, H], 'f32', undefined, 'generate last hidden'));
    let prefillLogits: Tensor;
    try {
      for (const [b0, b1] of prefillRuns(lens, prefillTokens)) {
        const n = b1 - b0;
        const runLens = lens.slice(b0, b1);
        const Tr = Math.max(...runLens);
        const flat = new Int32Array(n * Tr);
        for (let b = b0; b < b1; b++) flat.set(prompts[b], (b - b0) * Tr);
        const lengths = gpu.keep(gpu.tensor([n], 'i32', runLens, 'generate lengths'));
        const atStart = gpu.keep(gpu.zeros([n], 'i32', 'generate prefill positions'));
        // h owns its buffer (a reshape view would not free it).
        let h: Tensor = gpu.keep(embedding(gpu, flat, model.weights.embed));
        try {
          layers.forEach((L, l) => {
            const owner = h;
            const input = h.reshape([n, Tr, H]);
            h = gpu.keep(
              gpu.scope(() =>
                model.layer(L, input, {}, (q, k, v) => {
                  // Row b of k [n, Tr, Hkv, D] goes to positions 0..Tr-1 of cache row b0 + b.
                  attentionCacheAppendKV(gpu, kc[l], vc[l], k, v, atStart, { batchStart: b0 });
                  return attention(gpu, q, k, v, { causal: true, lengths }).o;
                }),
              ),
            );
            owner.dispose();
          });
          gpu.scope(() => {
            const rows = embedding(gpu, runLens.map((len, b) => b * Tr + len - 1), h.reshape([n * Tr, H]));
            gpu.copyTensor(rows, last.rows(b0, n));
          });
        } finally {
          h.dispose();
          lengths.dispose();
          atStart.dispose();
        }
      }
      prefillLogits = model.head(last);
    } finally {
      last.dispose();
    }
    let next: number[];
    try {
      next = await sample(prefillLogits, 0);
    } finally {
      prefillLogits.dispose();
    }

    // Decode: one token per sequence per step; every sequence advances (finished ones on padding).
    const cur = [...lens];
    for (let step = 1; step < maxNewTokens && done.some((d) => !d) && !opts.signal?.aborted; step++) {
      const tokens = next.map((id, b) => (done[b] ? 0 : id));
      const logits = gpu.scope(() => {
        const positions = gpu.tensor([B], 'i32', cur, 'generate positions');
        const lengths = gpu.tensor([B], 'i32', cur.map((n) => n + 1), 'generate lengths');
        let h: Tensor = embedding(gpu, tokens, model.weights.embed).reshape([B, 1, H]);
        layers.forEach((L, l) => {
          h = model.layer(L, h, { positions }, (q, k, v) => {
            attentionCacheAppendKV(gpu, kc[l], vc[l], k, v, positions);
            return attentionDecode(gpu, q, kc[l] as Tensor<'f32' | 'f16'>, vc[l] as Tensor<'f32' | 'f16'>, lengths);
          });
        });
        return model.head(h.reshape([B, H]));
      });
      try {
        next = await sample(logits, step);
      } finally {
        logits.dispose();
      }
      for (let b = 0; b < B; b++) cur[b]++;
    }
  } finally {
    for (const t of caches) t.dispose();
    merged?.dispose();
  }
  // A rejection of the last step's callbacks arrives some microtasks later: let them all run.
  if (opts.onToken) await new Promise((resolve) => setImmediate(resolve));
  if (callbackFailed) throw (callbackFailed as { error: unknown }).error;
  return results;
}
