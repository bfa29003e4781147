import type { AdamW } from '../kernels/adamw.js';
import type { Tensor } from '../runtime/tensor.js';
import { gradNormRef } from '../reference/adamw.js';
import { sampleDistRef, type SampleRefOptions } from '../reference/sampling.js';
import { CHECK_TOL, ErrorMeter, readAll, spread, type BenchCheck } from './check.js';

/**
 * Sampled float64 checks of the optimizer benchmarks (see check.ts). The global gradient norm relatively; one AdamW
 * step of fresh parameters, clipped by the global norm, at every element of sampled tensors, its change of each
 * parameter against the reference's in units of the learning rate (a first step moves each by about lr). A
 * sample of tokens: whether each drawn id lies in the set it was drawn from, and both of its log-probabilities.
 */

/** The global norm of `grads` in `norm` [1], relatively. */
export async function checkGradNorm(grads: readonly Tensor[], norm: Tensor): Promise<BenchCheck> {
  const ref = gradNormRef(await Promise.all(grads.map(readAll)));
  const meter = new ErrorMeter();
  meter.add((await readAll(norm))[0], ref, ref);
  return meter.result(CHECK_TOL);
}

/**
 * A first step of `opt` (no step taken yet) from parameters `before` (host values) on `grads`, taken here. The
 * reference follows reference/adamw.ts at t = 1: θ ← θ(1 − lr·λ) − lr·ĝ/(|ĝ| + ε), ĝ the clipped gradient.
 */
export async function checkAdamwFirstStep(opt: AdamW, before: readonly Float32Array[], grads: readonly Tensor[]): Promise<BenchCheck> {
  if (opt.stepCount !== 0) throw new Error('checkAdamwFirstStep needs an optimizer that has taken no step');
  const g = await Promise.all(grads.map(readAll));
  const norm = gradNormRef(g);
  opt.step(grads);
  const meter = new ErrorMeter();
  meter.add((await readAll(opt.norm))[0], norm, norm);
  const clip = opt.maxGradNorm > 0 ? Math.min(1, opt.maxGradNorm / (norm + 1e-6)) : 1;
  for (const k of spread(opt.params.length, 4)) {
    const got = await readAll(opt.params[k]);
    before[k].forEach((p, i) => {
      const gi = g[k][i] * clip;
      const ref = p * (1 - opt.lr * opt.weightDecay) - (opt.lr * gi) / (Math.abs(gi) + opt.eps);
      meter.add(got[i], ref, opt.lr);
    });
  }
  return meter.result(CHECK_TOL);
}

/**
 * sampleTokens' outputs for every row of logits [B, V]: the id must have probability > 0 under the reference's
 * top-k / top-p distribution (else an infinite error), and logprobs / tempLogprobs must match the logs of its
 * probability there and under plain softmax(logits / T), absolutely. One draw cannot show the distribution; the
 * unit tests hold that.
 */
export async function checkSample(
  logits: Tensor,
  o: SampleRefOptions,
  out: { ids: Tensor; logprobs: Tensor; tempLogprobs: Tensor },
): Promise<BenchCheck> {
  const [B, V] = logits.shape;
  const lh = await readAll(logits);
  const ids = (await out.ids.read()) as Int32Array;
  const [lp, tlp] = await Promise.all([out.logprobs, out.tempLogprobs].map(readAll));
  const meter = new ErrorMeter();
  for (let b = 0; b < B; b++) {
    const ref = sampleDistRef(lh.subarray(b * V, (b + 1) * V), o);
    const id = ids[b];
    if (!(id >= 0 && id < V && ref.probs[id] > 0)) {
      meter.add(NaN, 0);
      continue;
    }
    meter.add(lp[b], ref.greedy ? 0 : Math.log(ref.probs[id]));
    meter.add(tlp[b], Math.log(ref.tempProbs[id]));
  }
  return meter.result(CHECK_TOL);
}
