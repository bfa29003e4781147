import type { LoraAdapter, QwenModel, TrainOptimizer, ValueHead } from '@mlagent/policy';
import { maskedNllBackward, policyForward, valueForward } from '@mlagent/policy';
import { durationWeights } from '@mlagent/reward';
import { mixSeed } from '../collect/seeds.js';
import type { PpoConfig } from '../config/train-config.js';
import { shuffledIndices } from '../sft/batches.js';
import type { EncodedExample } from '../sft/tokenize.js';
import { gaeSingleStep, grpoAdvantages, klPenalizedRewards, rlooAdvantages, type AdvantageResult } from './advantages.js';
import { explainedVariance, klToReference, minibatchTotals, ppoLoss, valueLoss, type PpoLossConfig, type PpoLossResult, type PpoStats } from './loss.js';

/**
 * One policy update of step-wise PPO from a batch of scored one-step samples, CleanRL-style:
 *   1. reference log-probs (LoRA off) and old values V_old(s) before anything changes;
 *   2. rewards, minus β·KL(π_old ‖ π_ref) when the KL is in the reward;
 *   3. advantages: r − V_old(s) whitened over the batch (GAE, γ = λ = 1), or GRPO/RLOO over each state's samples;
 *   4. `epochs` passes over shuffled minibatches: per micro-batch (microBatchSize), policy forward, ppoLoss and the
 *      backward of its coefficients, then the critic's forward, value loss and backward; then one AdamW step for the
 *      actor and one for the critic (each with its own learning rate and gradient clipping). With ptxCoef > 0, each
 *      actor step also takes ptxCoef × the SFT loss (mean NLL per target token) on a few expert steps (PPO-ptx).
 * The value of a state is the critic's value at the last prompt token.
 */

export interface PpoSample {
  /** The state this action was sampled from: the samples of one state form a GRPO/RLOO group. */
  group: number;
  prompt: readonly number[];
  response: readonly number[];
  /** log π_old of each response token, recorded at generation time (same temperature). */
  oldLogp: ArrayLike<number>;
  reward: number;
  /** Task name, for per-task statistics. */
  task?: string;
  /** Wall seconds of the code the action ran, for durationWeighting; absent (or null) when it ran none. */
  durationSec?: number | null;
}

export interface PpoLearner {
  model: QwenModel;
  actor: LoraAdapter;
  actorOptimizer: TrainOptimizer;
  /** The KL reference policy's adapter (never updated); absent: the base model with LoRA off. */
  reference?: LoraAdapter;
  /** Required when the advantage is 'gae'. */
  critic?: ValueHead;
  criticOptimizer?: TrainOptimizer;
}

export interface PpoUpdateOptions {
  /** Mixed with the iteration and epoch into the minibatch order and dropout seeds. */
  seed: number;
  iteration: number;
  /** Expert steps for the SFT loss of PPO-ptx (required when config.ptxCoef > 0): token ids and target masks. */
  ptxExamples?: readonly PtxExample[];
}

/** One expert step tokenized as SFT tokenizes it (`mask[t] = 1` marks token t as one of its `targets`). */
export type PtxExample = Pick<EncodedExample, 'ids' | 'mask' | 'targets'>;

export interface PpoUpdateStats {
  samples: number;
  /** Samples left out (zero-variance groups with skipZeroVarianceGroups). */
  skipped: number;
  zeroVarianceGroups: number;
  reward: number;
  rewardStd: number;
  /** Reward after the KL penalty (equal to reward unless klMode is 'reward'). */
  penalizedReward: number;
  advantage: number;
  loss: number;
  policyLoss: number;
  valueLoss: number;
  kl: number;
  entropy: number;
  clipFrac: number;
  approxKl: number;
  explainedVariance: number;
  actorGradNorm: number;
  criticGradNorm: number;
  /** PPO-ptx: mean NLL per target token of the expert steps, averaged over the actor steps (NaN when off). */
  ptxLoss: number;
  /**
   * oldLogprobs 'actor': the mean and largest |sampler's − actor's| log-prob over the response tokens, the gap
   * between generation's numerics and training's (NaN with 'sampler').
   */
  oldLogpGap: number;
  oldLogpGapMax: number;
  /** samplerRatioCap: the mean truncated weight min(π_old / π_sampler, cap) over the response tokens (NaN when off). */
  samplerWeight: number;
  /** durationWeighting: the largest sample weight (NaN when off). */
  durationWeightMax: number;
  /** The learning rate of the iteration's last actor step (NaN when the actor did not step). */
  actorLr: number;
  optimizerSteps: number;
  responseTokens: number;
  /** Mean reward per task, when samples carry one. */
  rewardByTask: Record<string, number>;
}

export async function ppoUpdate(learner: PpoLearner, samples: PpoSample[], config: PpoConfig, options: PpoUpdateOptions): Promise<PpoUpdateStats> {
  const { model, actor } = learner;
  const useCritic = config.advantage === 'gae';
  if (useCritic && (!learner.critic || !learner.criticOptimizer)) throw new Error("ppoUpdate: advantage 'gae' needs a critic and its optimizer");
  if (samples.length === 0) throw new Error('ppoUpdate: no samples');
  const ptx = config.ptxCoef > 0 ? (options.ptxExamples ?? []) : [];
  if (config.ptxCoef > 0 && ptx.length === 0) throw new Error('ppoUpdate: ptxCoef > 0 needs expert steps (options.ptxExamples) for its SFT loss');
  samples.forEach((s, i) => {
    if (s.prompt.length === 0) throw new Error(`ppoUpdate: sample ${i} has an empty prompt`);
    if (s.response.length === 0) throw new Error(`ppoUpdate: sample ${i} has an empty response`);
    if (s.oldLogp.length !== s.response.length) throw new Error(`ppoUpdate: sample ${i} has ${s.oldLogp.length} old log-probs for ${s.response.length} response tokens`);
    if (!Number.isFinite(s.reward)) throw new Error(`ppoUpdate: sample ${i} has reward ${s.reward}`);
  });
  const temperature = config.temperature;
  const seqs = samples.map((s) => [...s.prompt, ...s.response]);
  // Only the response tokens are scored, so the LM head runs on those rows alone.
  const responseMasks = samples.map((s, i) => Uint8Array.from(seqs[i], (_, t) => (t >= s.prompt.length ? 1 : 0)));
  const mb = config.minibatchSize;
  const micro = Math.min(mb, config.microBatchSize ?? mb);
  if (!Number.isInteger(micro) || micro < 1) throw new Error(`ppoUpdate: microBatchSize must be a positive integer or null, got ${config.microBatchSize}`);

  // 1. Reference log-probs and old values, before any update.
  const refLogp: Float32Array[] = [];
  if (config.klMode !== 'none') {
    for (let b = 0; b < samples.length; b += micro) {
      const pass = await policyForward(model, seqs.slice(b, b + micro), { adapter: learner.reference, grad: false, temperature, scoredTokens: responseMasks.slice(b, b + micro) });
      samples.slice(b, b + micro).forEach((s, k) => refLogp.push(pass.logprobs[k].slice(s.prompt.length)));
    }
  }
  const oldValues = useCritic ? await stateValues(learner, samples, micro) : null;
  // π_old: the sampler's log-probs, or the actor's own before any step ('actor'), then optionally the truncated
  // importance weights of the sampler's draws against it (samplerRatioCap).
  const oldLogp: ArrayLike<number>[] = samples.map((s) => s.oldLogp);
  const samplerWeights: Float64Array[] = [];
  let weightSum = 0;
  let [gapSum, gapMax, gapTokens] = [0, 0, 0];
  if (config.oldLogprobs === 'actor') {
    for (let b = 0; b < samples.length; b += micro) {
      const pass = await policyForward(model, seqs.slice(b, b + micro), { adapter: actor, grad: false, temperature, scoredTokens: responseMasks.slice(b, b + micro) });
      samples.slice(b, b + micro).forEach((s, k) => {
        const actorLogp = pass.logprobs[k].slice(s.prompt.length);
        for (let t = 0; t < actorLogp.length; t++) {
          const gap = Math.abs(actorLogp[t] - s.oldLogp[t]);
          [gapSum, gapMax, gapTokens] = [gapSum + gap, Math.max(gapMax, gap), gapTokens + 1];
        }
        oldLogp[b + k] = actorLogp;
        const cap = config.samplerRatioCap;
        if (cap !== null) {
          const weights = Float64Array.from(actorLogp, (lp, t) => Math.min(Math.exp(lp - s.oldLogp[t]), cap));
          weights.forEach((x) => (weightSum += x));
          samplerWeights.push(weights);
        }
      });
    }
  }

  // Duration-aware weighting: per sample, folded into the per-token weights of the policy term.
  const durationWeight = config.durationWeighting ? durationWeights(samples.map((s) => s.durationSec ?? undefined)) : null;
  const tokenWeights = (i: number): ArrayLike<number> | undefined => {
    if (!durationWeight) return samplerWeights[i];
    const sampler = samplerWeights[i];
    return Float64Array.from({ length: samples[i].response.length }, (_, t) => durationWeight[i] * (sampler ? sampler[t] : 1));
  };
  const weighted = samplerWeights.length > 0 || durationWeight !== null;

  // 2-3. Rewards and advantages.
  const rewards = samples.map((s) => s.reward);
  const sampleKl = samples.map((_, i) => (refLogp.length ? sumKl(oldLogp[i], refLogp[i], config.klEstimator) : 0));
  const penalized = config.klMode === 'reward' ? klPenalizedRewards(rewards, sampleKl, config.klCoef) : Float64Array.from(rewards);
  const groups = samples.map((s) => s.group);
  const adv: AdvantageResult =
    config.advantage === 'gae'
      ? gaeSingleStep(penalized, oldValues!, config.normalizeAdvantages)
      : (config.advantage === 'grpo' ? grpoAdvantages : rlooAdvantages)(penalized, groups, { skipZeroVariance: config.skipZeroVarianceGroups });
  const kept = samples.map((_, i) => i).filter((i) => adv.keep[i]);

  const lossConfig: PpoLossConfig = {
    clipRatio: config.clipRatio,
    dualClip: config.dualClip,
    valueClip: config.valueClip,
    // The value loss is the critic's own pass's (valueLoss below), so ppoLoss sees only the policy's terms.
    valueCoef: 0,
    klCoef: config.klMode === 'loss' ? config.klCoef : 0,
    klEstimator: config.klEstimator,
    entropyCoef: config.entropyCoef,
    lossAggregation: config.lossAggregation,
  };
  const trainActor = options.iteration >= config.criticWarmupIterations;
  const checkpoint = config.activationCheckpointing;

  // 4. Minibatch epochs. Each minibatch runs in micro-batches whose losses are normalized by the whole minibatch,
  //    so their gradients add up to its gradient before the one optimizer step. In a micro-batch the actor's pass
  //    runs and backpropagates before the critic's, so the two never hold memory at once.
  const acc = { loss: 0, policyLoss: 0, valueLoss: 0, entropy: 0, clipFrac: 0, approxKl: 0, kl: 0, actorGradNorm: 0, criticGradNorm: 0, ptxLoss: 0, n: 0 };
  let steps = 0;
  let actorLr = NaN;
  for (let epoch = 0; epoch < config.epochs; epoch++) {
    const order = shuffledIndices(kept.length, mixSeed(options.seed, `ppo/${options.iteration}/${epoch}`)).map((k) => kept[k]);
    for (let b = 0; b < order.length; b += mb) {
      const idx = order.slice(b, b + mb);
      const totals = minibatchTotals(idx.map((i) => samples[i].response.length));
      // The first micro-batch keeps the minibatch's seed, so a whole-minibatch pass draws what it always did.
      const dropoutSeed = (m: number) => mixSeed(options.seed, `ppo/${options.iteration}/${epoch}/${b}${m === 0 ? '' : `/${m}`}`);
      const parts: { loss: number; policyLoss: number; valueLoss: number; tokens: number; stats: PpoStats }[] = [];
      for (let m = 0; m < idx.length; m += micro) {
        const sub = idx.slice(m, m + micro);
        const pass = await policyForward(
          model,
          sub.map((i) => seqs[i]),
          { adapter: actor, temperature, dropoutSeed: dropoutSeed(m), grad: trainActor, checkpoint, scoredTokens: sub.map((i) => responseMasks[i]) },
        );
        let result: PpoLossResult;
        try {
          const responseOf = (arr: Float32Array, k: number) => arr.subarray(samples[sub[k]].prompt.length);
          result = ppoLoss(
            {
              lengths: sub.map((i) => samples[i].response.length),
              logp: concat(sub.map((_, k) => responseOf(pass.logprobs[k], k))),
              oldLogp: concat(sub.map((i) => oldLogp[i])),
              samplerWeights: weighted ? concat(sub.map((i) => tokenWeights(i)!)) : undefined,
              refLogp: refLogp.length ? concat(sub.map((i) => refLogp[i])) : undefined,
              entropy: concat(sub.map((_, k) => responseOf(pass.entropies[k], k))),
              advantages: sub.map((i) => adv.advantages[i]),
              totals,
            },
            lossConfig,
          );
          if (trainActor) {
            // Scatter the per-response-token coefficients back to full-sequence positions (the prompt gets 0).
            const scatter = (flat: Float64Array) => {
              let t = 0;
              return sub.map((i) => {
                const out = new Float32Array(seqs[i].length);
                for (let k = 0; k < samples[i].response.length; k++) out[samples[i].prompt.length + k] = flat[t++];
                return out;
              });
            };
            pass.backward({ dLogprob: scatter(result.dLogp), dEntropy: lossConfig.entropyCoef !== 0 ? scatter(result.dEntropy) : undefined });
          }
        } finally {
          pass.dispose();
        }
        let valueTerm = 0;
        if (useCritic) {
          const valuePass = await valueForward(
            model,
            learner.critic!,
            sub.map((i) => samples[i].prompt),
            { dropoutSeed: dropoutSeed(m), checkpoint },
          );
          try {
            const value = valueLoss(
              {
                values: sub.map((i, k) => valuePass.values[k][samples[i].prompt.length - 1]),
                oldValues: sub.map((i) => oldValues![i]),
                returns: sub.map((i) => adv.returns![i]),
              },
              config.valueClip,
              totals.samples,
            );
            valueTerm = value.loss;
            valuePass.backward(
              sub.map((i, k) => {
                const d = new Float32Array(samples[i].prompt.length);
                d[d.length - 1] = config.valueCoef * value.dValue[k];
                return d;
              }),
            );
          } finally {
            valuePass.dispose();
          }
        }
        parts.push({ loss: result.loss + config.valueCoef * valueTerm, policyLoss: result.policyLoss, valueLoss: valueTerm, tokens: result.stats.tokens, stats: result.stats });
      }
      if (trainActor) {
        if (ptx.length > 0) {
          // The gradients add up in the adapter, so one optimizer step takes both losses.
          const pick = shuffledIndices(ptx.length, mixSeed(options.seed, `ptx/${options.iteration}/${epoch}/${b}`)).slice(0, config.ptxBatchSize);
          const targets = pick.reduce((n, i) => n + ptx[i].targets, 0);
          for (let m = 0; m < pick.length; m += micro) {
            const sub = pick.slice(m, m + micro);
            const nll = await maskedNllBackward(
              model,
              sub.map((i) => ptx[i].ids),
              sub.map((i) => ptx[i].mask),
              { adapter: actor, dropoutSeed: dropoutSeed(m), checkpoint, normalizer: targets / config.ptxCoef },
            );
            acc.ptxLoss += nll.loss / config.ptxCoef;
          }
        }
        const stepped = await learner.actorOptimizer.step();
        acc.actorGradNorm += stepped.gradNorm;
        actorLr = stepped.lr;
      }
      if (useCritic) acc.criticGradNorm += (await learner.criticOptimizer!.step()).gradNorm;
      // Losses add up over micro-batches (each is normalized by the minibatch); per-token means are weighted.
      const sum = (f: (p: (typeof parts)[number]) => number) => parts.reduce((a, p) => a + f(p), 0);
      const tokenMean = (f: (s: PpoStats) => number) => (parts.length === 1 ? f(parts[0].stats) : sum((p) => f(p.stats) * p.tokens) / Math.max(1, totals.tokens));
      acc.loss += sum((p) => p.loss);
      acc.policyLoss += sum((p) => p.policyLoss);
      acc.valueLoss += sum((p) => p.valueLoss);
      acc.entropy += tokenMean((s) => s.entropy);
      acc.clipFrac += tokenMean((s) => s.clipFrac);
      acc.approxKl += tokenMean((s) => s.approxKl);
      acc.kl += tokenMean((s) => s.refKl);
      acc.n++;
      steps++;
    }
  }

  const mean = (x: ArrayLike<number>) => Array.from(x).reduce((a, b) => a + b, 0) / Math.max(1, x.length);
  const rewardMean = mean(rewards);
  const byTask = new Map<string, number[]>();
  for (const s of samples) if (s.task !== undefined) byTask.set(s.task, [...(byTask.get(s.task) ?? []), s.reward]);
  const n = Math.max(1, acc.n);
  return {
    samples: samples.length,
    skipped: samples.length - kept.length,
    zeroVarianceGroups: adv.zeroVarianceGroups.length,
    reward: rewardMean,
    rewardStd: Math.sqrt(mean(rewards.map((r) => (r - rewardMean) ** 2))),
    penalizedReward: mean(penalized),
    advantage: mean(kept.map((i) => adv.advantages[i])),
    loss: acc.loss / n,
    policyLoss: acc.policyLoss / n,
    valueLoss: acc.valueLoss / n,
    kl: acc.kl / n,
    entropy: acc.entropy / n,
    clipFrac: acc.clipFrac / n,
    approxKl: acc.approxKl / n,
    explainedVariance: oldValues && adv.returns ? explainedVariance(oldValues, adv.returns) : NaN,
    actorGradNorm: trainActor ? acc.actorGradNorm / n : NaN,
    criticGradNorm: useCritic ? acc.criticGradNorm / n : NaN,
    ptxLoss: ptx.length > 0 && trainActor ? acc.ptxLoss / n : NaN,
    oldLogpGap: gapTokens > 0 ? gapSum / gapTokens : NaN,
    oldLogpGapMax: gapTokens > 0 ? gapMax : NaN,
    samplerWeight: samplerWeights.length > 0 && gapTokens > 0 ? weightSum / gapTokens : NaN,
    durationWeightMax: durationWeight ? Math.max(...durationWeight) : NaN,
    actorLr,
    optimizerSteps: steps,
    responseTokens: samples.reduce((t, s) => t + s.response.length, 0),
    rewardByTask: Object.fromEntries([...byTask].map(([task, r]) => [task, mean(r)])),
  };
}

/** V(s) per sample: the critic's value at the last prompt token, without gradients. */
async function stateValues(learner: PpoLearner, samples: PpoSample[], micro: number): Promise<Float64Array> {
  const out = new Float64Array(samples.length);
  for (let b = 0; b < samples.length; b += micro) {
    const batch = samples.slice(b, b + micro);
    const pass = await valueForward(
      learner.model,
      learner.critic!,
      batch.map((s) => s.prompt),
      { grad: false },
    );
    batch.forEach((s, k) => (out[b + k] = pass.values[k][s.prompt.length - 1]));
  }
  return out;
}

function sumKl(oldLogp: ArrayLike<number>, refLogp: ArrayLike<number>, estimator: 'k1' | 'k3'): number {
  let kl = 0;
  for (let t = 0; t < oldLogp.length; t++) kl += klToReference(oldLogp[t], refLogp[t], estimator).kl;
  return kl;
}

function concat(parts: ArrayLike<number>[]): Float64Array {
  const out = new Float64Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) for (let i = 0; i < p.length; i++) out[o++] = p[i];
  return out;
}
