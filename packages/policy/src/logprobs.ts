import { attention, embedding, headForward, rmsnorm, type Tensor } from '@mlagent/core-kernels';
import { ContextLengthError, NonFiniteError } from './errors.js';
import { MIN_TEMPERATURE, OptionError, checkTokenIds, shown } from './generate.js';
import type { QwenModel } from './model.js';

export interface SequenceLogprobsOptions {
  /** Scores under log softmax(logits / temperature) (default 1), as generate() reports them. */
  temperature?: number;
}

/** Per-token scores of one sequence, aligned with its ids; index 0 is null (nothing predicts the first token). */
export interface SequenceLogprobs {
  /** logprobs[i] = log p(ids[i] | ids[<i]). */
  logprobs: (number | null)[];
  /** entropy[i] = entropy of the next-token distribution that ids[i] was drawn from. */
  entropy: (number | null)[];
}

/**
 * Teacher-forced per-token log-probabilities of whole sequences (of any lengths, batched together): one causal
 * pass through the layers, then the fused LM head (headForward), which never holds the [T, V] logits. This is
 * what PPO's ratio and the reference KL need, and what `mlagent logprobs` prints.
 */
export async function sequenceLogprobs(
  model: QwenModel,
  sequences: readonly (readonly number[])[],
  opts: SequenceLogprobsOptions = {},
): Promise<SequenceLogprobs[]> {
  const cfg = model.config;
  const fail = (option: string, msg: string): never => {
    throw new OptionError(`sequenceLogprobs: ${msg}`, 'sequenceLogprobs', option);
  };
  if (model.isDisposed) fail('model', 'model was disposed');
  if (!Array.isArray(sequences) || sequences.length === 0) fail('sequences', 'needs at least one sequence');
  sequences.forEach((s, b) => {
    checkTokenIds('sequenceLogprobs', 'sequences', 'sequence', s, b, cfg.vocabSize);
    if (s.length > cfg.maxPositionEmbeddings) {
      const msg = `sequenceLogprobs: sequence ${b} has ${s.length} tokens, more than max_position_embeddings ${cfg.maxPositionEmbeddings}`;
      throw new ContextLengthError(msg, s.length, 0, cfg.maxPositionEmbeddings);
    }
  });
  if (opts === null || typeof opts !== 'object') fail('opts', `options must be an object, got ${opts === null ? 'null' : typeof opts}`);
  const temperature = opts.temperature ?? 1;
  if (typeof temperature !== 'number' || !(Number.isFinite(temperature) && temperature > 0)) fail('temperature', `temperature must be a finite number > 0, got ${shown(temperature)}`);
  // Below the smallest normal f32 the head's logits/T overflow (or T flushes to 0), which used to surface as a
  // NonFiniteError blaming the weights. (Above f32's largest, T rounds to +Infinity: the uniform limit, fine.)
  if (temperature < MIN_TEMPERATURE) fail('temperature', `temperature must be at least 2^-126 (the smallest normal f32), got ${temperature}`);

  const gpu = model.gpu;
  const B = sequences.length;
  const lens = sequences.map((s) => s.length);
  const T = Math.max(...lens);
  const H = cfg.hiddenSize;
  // Right padded; the target of position t is the token at t + 1, none (-1) past each sequence's end.
  const flat = new Int32Array(B * T);
  const targets = new Int32Array(B * T).fill(-1);
  sequences.forEach((s, b) => {
    flat.set(s, b * T);
    for (let t = 0; t + 1 < s.length; t++) targets[b * T + t] = s[t + 1];
  });
  const { logprob, entropy } = gpu.scope(() => {
    const lengths = gpu.tensor([B], 'i32', lens, 'sequenceLogprobs lengths');
    let h: Tensor = embedding(gpu, flat, model.weights.embed).reshape([B, T, H]);
    for (const L of model.weights.layers) {
      h = model.layer(L, h, {}, (q, k, v) => attention(gpu, q, k, v, { causal: true, lengths }).o);
    }
    const hn = rmsnorm(gpu, h, model.weights.norm, { eps: cfg.rmsNormEps }).y.reshape([B * T, H]);
    const y = gpu.tensor([B * T], 'i32', targets, 'sequenceLogprobs targets');
    const r = headForward(gpu, hn, model.weights.lmHead, y, { temperature, packedWeight: () => model.packedWeight(model.weights.lmHead) });
    return { logprob: r.logprob, entropy: r.entropy };
  });
  let lp: Float32Array;
  let ent: Float32Array;
  try {
    [lp, ent] = (await Promise.all([logprob.read(), entropy.read()])) as [Float32Array, Float32Array];
  } finally {
    logprob.dispose();
    entropy.dispose();
  }
  return sequences.map((s, b) => {
    const out: SequenceLogprobs = { logprobs: [null], entropy: [null] };
    for (let t = 0; t + 1 < s.length; t++) {
      // NaN would print as null, the value of 'no prediction' (index 0); check what is already read back.
      if (!Number.isFinite(lp[b * T + t])) throw new NonFiniteError(`log-probability of token ${t + 1} of sequence ${b}`, { fn: 'sequenceLogprobs' });
      out.logprobs.push(lp[b * T + t]);
      out.entropy.push(ent[b * T + t]);
    }
    return out;
  });
}
