import { embedding, embeddingBackward, headBackward, headForward, type Gpu, type Tensor } from '@mlagent/core-kernels';
import type { QwenModel } from '../model.js';
import { padBatch, rowsToTokens, tokensToRows, type PaddedBatch } from './batch.js';
import { TrunkPass, type TrunkOptions } from './trunk.js';

export interface PolicyForwardOptions extends TrunkOptions {
  /** Divides the logits before the softmax, as in sampling (default 1). */
  temperature?: number;
  /**
   * Per sequence, the tokens that need a logprob and entropy (nonzero entries; index 0 ignored), e.g. SFT's
   * target mask or PPO's response tokens. The LM head, the biggest matmul of a small model, then runs only on
   * their rows; other tokens read back as 0 and take no gradient. Default: every token.
   */
  scoredTokens?: readonly ArrayLike<number>[];
  /**
   * Keep the scored rows' logits from the LM head's forward for backward (fused CPU head kernels only, which then
   * skip recomputing them). Default: for a pass with grad, where they fit the model's reused buffer of
   * KEEP_LOGITS_MAX_BYTES and no other live pass holds it (QwenModel.borrowLogitsScratch).
   */
  keepLogits?: boolean;
}

/** The rows the head runs on when only some tokens are scored: their flat row ids, on the GPU and on the host. */
interface RowSelection {
  rows: Int32Array;
  ids: Tensor<'i32'>;
  /** hn's selected rows, [rows.length, H]. */
  hidden: Tensor<'f32'>;
}

/** Per-token coefficients of the loss L = Σ dLogprob[b][t]·logprob[b][t] + dEntropy[b][t]·entropy[b][t]. */
export interface PolicyGrads {
  /** One array per sequence, of its length; index 0 is ignored (token 0 has no logprob). */
  dLogprob?: readonly ArrayLike<number>[];
  /** Same layout as dLogprob. */
  dEntropy?: readonly ArrayLike<number>[];
}

/**
 * One forward pass of the policy over a batch of variable-length sequences, with the per-token results read back
 * and (unless `grad: false`) what backward needs kept on the GPU until `backward` or `dispose`.
 */
export class PolicyPass {
  private disposed = false;
  private why = 'the pass was disposed or already backpropagated';

  constructor(
    private readonly trunk: TrunkPass,
    private readonly batch: PaddedBatch,
    private readonly targets: Tensor<'i32'>,
    private readonly saved: { lse: Tensor<'f32'>; entropy: Tensor<'f32'>; logits?: Tensor<'f32'>; releaseLogits?: () => void },
    private readonly temperature: number,
    private readonly selection: RowSelection | null,
    /** logprobs[b][t] = log p(ids[b][t] | ids[b][<t]) under softmax(logits / temperature); [b][0] = 0. */
    readonly logprobs: Float32Array[],
    /** entropies[b][t] = entropy of the distribution that token t was drawn from; [b][0] = 0. */
    readonly entropies: Float32Array[],
  ) {}

  /**
   * Backward of Σ dLogprob·logprob + dEntropy·entropy: adds the gradients into the adapter's grad tensors
   * (call `adapter.zeroGrad()` between optimizer steps; several backward calls accumulate). Frees the pass.
   */
  backward(grads: PolicyGrads): void {
    if (this.disposed) throw new Error(`PolicyPass.backward: ${this.why}`);
    if (!grads.dLogprob && !grads.dEntropy) throw new Error('PolicyPass.backward: give dLogprob and/or dEntropy');
    const gpu: Gpu = this.trunk.gpu;
    const b = this.batch;
    const op = 'PolicyPass.backward';
    const dLogprob = grads.dLogprob && tokensToRows(op, 'dLogprob', b, grads.dLogprob);
    const dEntropy = grads.dEntropy && tokensToRows(op, 'dEntropy', b, grads.dEntropy);
    try {
      const sel = this.selection;
      const pick = (rows: Float32Array, name: string) => {
        if (!sel) return rows;
        const picked = Float32Array.from(sel.rows, (r) => rows[r]);
        const rest = rows.slice();
        for (const r of sel.rows) rest[r] = 0;
        if (rest.some((v) => v !== 0)) throw new Error(`${op}: ${name} is nonzero at tokens the forward did not score (scoredTokens)`);
        return picked;
      };
      this.trunk.backwardFrom(() => {
        const n = sel ? sel.rows.length : b.B * b.T;
        const dh = headBackward(
          gpu,
          sel ? sel.hidden : this.trunk.hn,
          this.trunk.model.weights.lmHead,
          this.targets,
          this.saved,
          {
            dLogprob: dLogprob && gpu.tensor([n], 'f32', pick(dLogprob, 'dLogprob'), op),
            dEntropy: dEntropy && gpu.tensor([n], 'f32', pick(dEntropy, 'dEntropy'), op),
          },
          { temperature: this.temperature, packedWeight: () => this.trunk.model.packedWeight(this.trunk.model.weights.lmHead) },
        );
        // Scatter the selected rows' gradient back to every row of hn (the others get 0).
        return sel ? embeddingBackward(gpu, sel.ids, dh, b.B * b.T, { distinctIds: true }) : dh;
      });
    } finally {
      this.dispose();
    }
  }

  /** Frees what the pass keeps for backward; `why` becomes the error of a later backward call. */
  dispose(why?: string): void {
    if (why) this.why = why;
    if (this.disposed) return;
    this.disposed = true;
    this.trunk.dispose();
    for (const t of [this.targets, this.saved.lse, this.saved.entropy, this.saved.logits]) t?.dispose();
    this.saved.releaseLogits?.();
    disposeSelection(this.selection);
  }
}

function disposeSelection(sel: RowSelection | null): void {
  if (sel) for (const t of [sel.ids, sel.hidden]) t.dispose();
}

/** The flat rows (b·T + t − 1) of the tokens marked in `scored`, checked against the batch. */
function scoredRows(batch: PaddedBatch, scored: readonly ArrayLike<number>[]): Int32Array {
  if (!Array.isArray(scored) || scored.length !== batch.B) throw new Error(`policyForward: scoredTokens needs one array per sequence (${batch.B})`);
  const rows: number[] = [];
  scored.forEach((m, b) => {
    if (!m || m.length !== batch.lengths[b]) throw new Error(`policyForward: scoredTokens[${b}] has ${m?.length} values; sequence ${b} has ${batch.lengths[b]} tokens`);
    for (let t = 1; t < m.length; t++) if (m[t]) rows.push(b * batch.T + t - 1);
  });
  if (rows.length === 0) throw new Error('policyForward: scoredTokens marks no token (index 0 does not count)');
  return Int32Array.from(rows);
}

/**
 * Runs the policy (base + `opts.adapter`, or the bare base as the reference policy) over `seqs` and reads back
 * per-token logprobs and entropies. Sequences may differ in length (right-padded internally).
 */
export async function policyForward(model: QwenModel, seqs: readonly (readonly number[])[], opts: PolicyForwardOptions = {}): Promise<PolicyPass> {
  const temperature = opts.temperature ?? 1;
  if (!(temperature > 0) || !Number.isFinite(temperature)) throw new Error(`policyForward: temperature must be > 0, got ${temperature}`);
  const batch = padBatch('policyForward', model.config, seqs);
  const gpu = model.gpu;
  const trunk = new TrunkPass(model, batch, opts);
  let pass: PolicyPass | undefined;
  let targets: Tensor<'i32'>;
  let fwd: ReturnType<typeof headForward>;
  let selection: RowSelection | null = null;
  let scratch: ReturnType<QwenModel['borrowLogitsScratch']>;
  try {
    if (opts.scoredTokens) {
      const rows = scoredRows(batch, opts.scoredTokens);
      const ids = gpu.keep(gpu.tensor([rows.length], 'i32', rows, 'policy scored rows'));
      selection = { rows, ids, hidden: gpu.keep(embedding(gpu, ids, trunk.hn)) };
    }
    const rowTargets = selection ? Int32Array.from(selection.rows, (r) => batch.targets[r]) : batch.targets;
    targets = gpu.keep(gpu.tensor([rowTargets.length], 'i32', rowTargets, 'policy targets'));
    // Kept in the model's reused buffer (a fresh one costs lavapipe more to touch than recomputing saves); by
    // default a pass that cannot have it (too many rows, or another live pass holds it) recomputes.
    scratch = opts.grad !== false && opts.keepLogits !== false ? model.borrowLogitsScratch(rowTargets.length) : undefined;
    fwd = headForward(gpu, selection ? selection.hidden : trunk.hn, model.weights.lmHead, targets, {
      temperature,
      packedWeight: () => model.packedWeight(model.weights.lmHead),
      keepLogits: opts.keepLogits ?? scratch !== undefined,
      logitsOut: scratch?.logits,
    });
    // Not kept (a GPU, or the tiled head): the scratch goes back at once.
    if (!fwd.logits) scratch?.release();
  } catch (e) {
    scratch?.release();
    trunk.dispose();
    disposeSelection(selection);
    throw e;
  }
  for (const t of [fwd.loss, fwd.count, fwd.logprob, fwd.entropy, fwd.lse, fwd.logits]) if (t) gpu.keep(t);
  try {
    let [lp, ent] = await Promise.all([fwd.logprob.read(), fwd.entropy.read()]);
    if (selection) [lp, ent] = [scatterRows(batch, selection.rows, lp), scatterRows(batch, selection.rows, ent)];
    pass = new PolicyPass(trunk, batch, targets, { lse: fwd.lse, entropy: fwd.entropy, logits: fwd.logits, releaseLogits: scratch?.release }, temperature, selection, rowsToTokens(batch, lp), rowsToTokens(batch, ent));
    return pass;
  } finally {
    fwd.loss.dispose();
    fwd.count.dispose();
    fwd.logprob.dispose();
    if (!pass) {
      trunk.dispose();
      for (const t of [targets, fwd.lse, fwd.entropy, fwd.logits]) t?.dispose();
      scratch?.release();
      disposeSelection(selection);
    } else if (opts.grad === false) {
      pass.dispose('the forward ran with grad: false');
    }
  }
}

/** Values of the selected rows placed at their rows of the whole batch (0 elsewhere). */
function scatterRows(batch: PaddedBatch, rows: Int32Array, values: Float32Array): Float32Array {
  const out = new Float32Array(batch.B * batch.T);
  rows.forEach((r, i) => (out[r] = values[i]));
  return out;
}

export interface MaskedNllOptions extends PolicyForwardOptions {
  /**
   * Divides the summed NLL (default: the number of masked tokens in this call). With gradient accumulation over
   * micro-batches, pass the token count of the whole batch so the micro-batches add up to one mean.
   */
  normalizer?: number;
}

/**
 * SFT step on one (micro-)batch: loss = −Σ mask·logprob / normalizer, where mask[b][t] = 1 marks token t as a
 * target (index 0 ignored). Runs forward and backward (gradients added into the adapter's); returns the loss and
 * the number of masked tokens.
 */
export async function maskedNllBackward(
  model: QwenModel,
  seqs: readonly (readonly number[])[],
  masks: readonly ArrayLike<number>[],
  opts: MaskedNllOptions = {},
): Promise<{ loss: number; tokens: number }> {
  if (!Array.isArray(masks) || masks.length !== seqs.length) throw new Error(`maskedNllBackward: needs one mask per sequence (${seqs.length})`);
  let tokens = 0;
  masks.forEach((m, b) => {
    if (!m || m.length !== seqs[b].length) throw new Error(`maskedNllBackward: mask ${b} has ${m?.length} values; sequence ${b} has ${seqs[b].length} tokens`);
    for (let t = 1; t < m.length; t++) tokens += m[t];
  });
  const norm = opts.normalizer ?? tokens;
  if (!(norm > 0)) throw new Error(`maskedNllBackward: normalizer must be > 0 (no masked tokens?), got ${norm}`);
  // Only the masked tokens need the LM head.
  const pass = await policyForward(model, seqs, { ...opts, grad: true, scoredTokens: opts.scoredTokens ?? masks });
  let loss = 0;
  const dLogprob = masks.map((m, b) => {
    const d = new Float32Array(m.length);
    for (let t = 1; t < m.length; t++) {
      d[t] = -m[t] / norm;
      loss -= (m[t] * pass.logprobs[b][t]) / norm;
    }
    return d;
  });
  pass.backward({ dLogprob });
  return { loss, tokens };
}
