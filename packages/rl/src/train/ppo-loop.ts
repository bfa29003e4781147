import { createHash } from 'node:crypto';
import { existsSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Gpu } from '@mlagent/core-kernels';
import {
  LoraAdapter,
  MemoryPlanError,
  QwenModel,
  QwenTokenizer,
  TrainOptimizer,
  ValueHead,
  loadAdapter,
  loadValueHead,
  saveAdapter,
  saveValueHead,
  type LoraModule,
  makeDirs,
} from '@mlagent/policy';
import { mixSeed } from '../collect/seeds.js';
import { listCheckpoints, resumeCheckpoint, saveCheckpoint, type Json } from '../checkpoint/checkpoint.js';
import { syncFile, syncTree, writeFileAtomic } from '../checkpoint/atomic.js';
import { parseTrainConfig, type TrainConfig, type TrainConfigInput } from '../config/train-config.js';
import { METRICS_FILE, MetricsLogger, truncateMetricsAfter } from '../metrics/jsonl.js';
import { ProgressMeter } from '../metrics/progress.js';
import { memoryMetrics } from '../metrics/memory.js';
import { StateDraws } from '../pool/edit-share.js';
import { StatesPool, type PoolCursor, type PoolState } from '../pool/states-pool.js';
import { checkPpoMemory, type PpoMemoryCheck } from '../ppo/memory-check.js';
import { ppoUpdate, type PpoSample, type PpoUpdateStats } from '../ppo/update.js';
import { planDevice } from '../sft/memory-check.js';
import { collectionEnv, type ActionEnv } from './env.js';
import { TrainInputError } from './errors.js';
import { expertExamples } from './expert-chats.js';
import type { RemoteEpisodes } from './remote.js';
import { lockRunDir } from './lock.js';
import { episodeRollouts, promptRoom, stepRollouts, type RolloutContext } from './rollout.js';
import { ROLLOUTS_FILE, RolloutLog, readRollouts, type RolloutGroup } from './rollouts.js';

/**
 * The RL stage, CleanRL-style: each iteration draws B states from the pool, samples n actions per state with the
 * current policy (old log-probs from generation), executes them in the env, scores them with the reward module,
 * saves them to rollouts.jsonl, and runs one ppoUpdate. `rollout: 'episode'` plays whole episodes from the tasks'
 * initial states instead (the paper's baseline).
 *
 * Resume: a checkpoint (every `checkpointEvery` iterations and at the end) holds the actor adapter, the critic,
 * both optimizer states, the pool cursor, the iteration and the seed from which every sampling seed derives. A
 * resumed run redoes the iterations after its checkpoint, reusing every rollout group saved for them (a kill
 * mid-iteration loses only actions still being generated or executed).
 */

export interface TrainPpoOptions {
  /** Base model directory (Hugging Face layout). */
  modelDir: string;
  /** PEFT adapter the actor starts from (the SFT result); absent: a fresh LoRA adapter. */
  adapter?: string | null;
  /** Collection directory: its states pool (steps.jsonl) and snapshots. */
  collection: string;
  out: string;
  config?: TrainConfigInput;
  /** Continue from the newest checkpoint in `out` (and its saved rollouts). */
  resume?: boolean;
  /** The environment (default: the real env over the collection's snapshots). */
  env?: ActionEnv;
  /** Run the default env's steps on queue workers (same results); the caller closes it. */
  remote?: RemoteEpisodes;
  gpu?: Gpu;
  model?: QwenModel;
  /**
   * GPU bytes each iteration's memory plan must fit (--memory-budget): ppo.microBatchSize null takes the largest
   * micro-batch that fits it, a set one that does not is refused before the update. Default: the allocator's
   * budget, or nvidia-smi's free memory plus what the device holds; unknown on a software adapter.
   */
  memoryBudgetBytes?: number;
  /** Stops after the current iteration (with a checkpoint). */
  signal?: AbortSignal;
  progress?: boolean;
  log?: (line: string) => void;
  onIteration?: (info: PpoIterationInfo) => void;
  /** Called with each rollout group once it is saved (tests use it to kill the process at a precise point). */
  onGroupSaved?: (group: RolloutGroup) => void;
}

export interface PpoIterationInfo {
  iteration: number;
  stats: PpoUpdateStats;
  formatErrorRate: number;
  envSeconds: number;
  seconds: number;
  reusedGroups: number;
}

export interface TrainPpoResult {
  adapterDir: string | null;
  criticDir: string | null;
  iterations: number;
  stopped: boolean;
  resumedFrom: number | null;
  /** Mean reward per iteration, in order (this run's iterations and, after a resume, the earlier ones' from metrics). */
  rewards: number[];
  /** validateEvery: the greedy validation reward after each validated iteration (0: before the first), in order. */
  validation: { iteration: number; reward: number }[];
}

const ADAPTER_DIR = 'adapter';
const CRITIC_DIR = 'critic';
const ACTOR_OPT = 'actor-optimizer.safetensors';
const CRITIC_OPT = 'critic-optimizer.safetensors';

export async function trainPpo(options: TrainPpoOptions): Promise<TrainPpoResult> {
  const config = parseTrainConfig(options.config ?? {}, { source: '(ppo options)' });
  const log = options.log ?? ((line: string) => process.stderr.write(line + '\n'));
  if (!existsSync(join(options.collection, 'steps.jsonl'))) throw new Error(`ppo: ${options.collection} is not a collection directory (no steps.jsonl); run mlagent collect first`);
  const pool = StatesPool.fromCollection(options.collection);
  const tasks = Object.keys(pool.stats().tasks).sort();
  if (tasks.length === 0) throw new Error(`ppo: the collection ${options.collection} has no complete trajectory to draw states from`);
  makeDirs(options.out);
  const fingerprint = fingerprintOf(config, options);
  const unlock = lockRunDir(options.out, 'ppo');
  try {
    return await runLocked(options, config, pool, tasks, fingerprint, log);
  } finally {
    unlock();
  }
}

async function runLocked(options: TrainPpoOptions, config: TrainConfig, pool: StatesPool, tasks: string[], fingerprint: string, log: (line: string) => void): Promise<TrainPpoResult> {
  const c = config.ppo;

  const checkpoint = options.resume ? resumeCheckpoint(options.out, 'ppo', log) : null;
  if (!options.resume && (listCheckpoints(options.out).length > 0 || nonEmpty(join(options.out, ROLLOUTS_FILE)))) {
    throw new Error(`ppo: ${options.out} already holds a run (checkpoints or rollouts); pass resume (--resume) to continue it, or choose another output directory`);
  }
  if (checkpoint && (checkpoint.extra as { fingerprint?: string } | undefined)?.fingerprint !== fingerprint) {
    throw new Error(`ppo: the checkpoint ${checkpoint.dir} was made with another config, model, adapter or collection; use a new output directory`);
  }
  const start = checkpoint?.step ?? 0;

  const ownGpu = !options.gpu && !options.model;
  const gpu = options.gpu ?? options.model?.gpu ?? (await Gpu.create());
  const held: { dispose(): void }[] = [];
  let env: ActionEnv | undefined;
  let metrics: MetricsLogger | undefined;
  let rolloutLog: RolloutLog | undefined;
  try {
    // Training multiplies the frozen weights many times: keep them packed on a CPU adapter (a no-op on GPUs).
    const model = options.model ?? (await QwenModel.load(gpu, options.modelDir, { packWeights: true, dtype: config.dtype }));
    if (!options.model) held.push(model);
    if (model.dtype !== config.dtype) throw new Error(`ppo: the given model holds ${model.dtype} weights but the config's dtype is ${config.dtype}`);
    const tokenizer = QwenTokenizer.fromDir(options.modelDir);
    const lora = { r: config.lora.rank, alpha: config.lora.alpha, dropout: config.lora.dropout, targetModules: config.lora.targets as LoraModule[] };
    const actor = checkpoint ? loadAdapter(model, join(checkpoint.dir, ADAPTER_DIR)) : options.adapter ? loadAdapter(model, options.adapter) : LoraAdapter.create(model, lora, { seed: config.seed });
    held.push(actor);
    // The KL reference: the policy RL starts from (a frozen copy of the SFT adapter), or the base with LoRA off.
    const reference = c.reference === 'initial' && options.adapter ? loadAdapter(model, options.adapter) : undefined;
    if (reference) held.push(reference);
    const critic = c.advantage === 'gae' ? (checkpoint ? loadValueHead(model, join(checkpoint.dir, CRITIC_DIR)) : ValueHead.create(model, lora, { seed: config.seed + 1 })) : undefined;
    if (critic) held.push(critic);
    const warmup = c.actorWarmupSteps;
    // Linear warmup over the first optimizer steps, then a cosine over the iterations down to actorMinLrRatio
    // (constant actorLr when there is neither).
    let progress = 0;
    const actorSchedule = (step: number) =>
      c.actorLr * Math.min(1, (step + 1) / Math.max(1, warmup)) * (c.actorMinLrRatio + (1 - c.actorMinLrRatio) * 0.5 * (1 + Math.cos(Math.PI * progress)));
    const actorOptimizer = new TrainOptimizer(gpu, [actor], { lr: c.actorLr, weightDecay: c.weightDecay, maxGradNorm: c.gradClip, schedule: actorSchedule });
    held.push(actorOptimizer);
    const criticOptimizer = critic ? new TrainOptimizer(gpu, [critic], { lr: c.criticLr, weightDecay: c.weightDecay, maxGradNorm: c.gradClip }) : undefined;
    if (criticOptimizer) held.push(criticOptimizer);
    if (checkpoint) {
      actorOptimizer.load(checkpoint.path(ACTOR_OPT));
      if (criticOptimizer) criticOptimizer.load(checkpoint.path(CRITIC_OPT));
      truncateMetricsAfter(join(options.out, METRICS_FILE), start);
      log(`ppo: resuming from ${checkpoint.dir} (iteration ${start} of ${c.iterations})`);
    } else {
      // Curves of a run killed before its first checkpoint: the iterations are redone (from their saved rollouts),
      // and their lines were logged a second time after the first ones.
      rmSync(join(options.out, METRICS_FILE), { force: true });
      rmSync(join(options.out, 'tb'), { recursive: true, force: true });
    }
    const savedCursors = checkpoint?.poolCursor as unknown as PoolCursor | PoolCursor[] | undefined;
    // The validation set: fixed states answered greedily, one response each, executed and rewarded like rollouts
    // but not trained on or saved; held out of the training draws unless validationHoldout is false.
    const validationStates = c.validateEvery === null ? [] : validationSet(pool, config.seed, c.validationStates);
    let draws: StateDraws;
    try {
      draws = StateDraws.create(options.collection, {
        exclude: c.validationHoldout && validationStates.length > 0 ? new Set(validationStates.map((s) => s.snapshotId)) : undefined,
        perIteration: c.statesPerIteration,
        editShare: c.editStateShare,
        mode: c.poolSampling,
        seed: config.seed,
        cursors: savedCursors ? (Array.isArray(savedCursors) ? savedCursors : [savedCursors]) : null,
        whole: pool,
      });
    } catch (e) {
      // A setting this collection cannot meet (ppo.editStateShare, ppo.validationStates): the message says which.
      const message = (e as Error).message;
      if (/^ppo\.\w+[: ]/.test(message)) throw new TrainInputError(`train: ${message}`);
      throw e;
    }
    // PPO-ptx learns from the expert steps as SFT saw them.
    const ptxExamples = c.ptxCoef > 0 ? expertExamples(tokenizer, join(options.collection, 'steps.jsonl'), c.compactPrompts, config.sft.template, config.sft.maxSeqLen) : undefined;
    const saved = readRollouts(options.out, start);
    for (const [it, groups] of saved) {
      for (const g of groups.values()) {
        if (g.run !== fingerprint) throw new Error(`ppo: ${join(options.out, ROLLOUTS_FILE)} holds rollouts of iteration ${it} made with another config, model, adapter or collection; use a new output directory`);
      }
    }
    const reusable = [...saved.values()].reduce((k, m) => k + m.size, 0);
    if (reusable > 0) log(`ppo: reusing ${reusable} saved rollout groups of iterations ${[...saved.keys()].join(', ')}`);

    env = options.env ?? (await collectionEnv(options.collection, tasks, { maxSteps: pool.maxSteps ?? c.episodeMaxSteps, historyWindow: c.historyWindow, maxObservationChars: c.maxObservationChars, scoreEdits: c.scoreEdits, concurrency: c.envConcurrency, remote: options.remote }));
    metrics = new MetricsLogger(options.out, { restartAt: checkpoint ? start + 1 : undefined });
    rolloutLog = new RolloutLog(options.out);
    const logFile = rolloutLog;
    const ctx: RolloutContext = {
      model,
      tokenizer,
      env,
      config: c,
      reward: { variant: c.rewardVariant, alphaNumerator: c.rewardAlphaNumerator },
      seed: config.seed,
      onGroup: (g) => {
        logFile.append({ ...g, run: fingerprint });
        options.onGroupSaved?.(g);
      },
    };

    const device = planDevice(gpu, options.memoryBudgetBytes);
    const ptxShape = ptxExamples?.map((e) => ({ tokens: e.ids.length, targets: e.targets }));
    let microBatchSize: number | undefined;
    const meter = options.progress === false ? null : new ProgressMeter({ total: c.iterations, label: 'ppo', unit: 'it' });
    meter?.update(start);
    const rewards: number[] = [];
    let iteration = start;
    let stopped = false;
    const save = () => {
      // The curves up to this iteration are on disk before the checkpoint that will not log them again.
      syncFile(metrics!.path);
      return saveCheckpoint(options.out, {
        step: iteration,
        rng: { seed: config.seed, derivation: 'mixSeed(seed, "ppo/generate/<iteration>/<group>"), mixSeed(seed, "ppo/<iteration>/<epoch>")' },
        poolCursor: draws.cursors as unknown as Json,
        config: config as unknown as Json,
        extra: { fingerprint, rewards, validation },
        keep: c.keepCheckpoints,
        write: async (dir) => {
          await saveAdapter(actor, join(dir, ADAPTER_DIR), { baseModel: options.modelDir });
          await actorOptimizer.save(join(dir, ACTOR_OPT));
          if (critic) await saveValueHead(critic, join(dir, CRITIC_DIR), { baseModel: options.modelDir });
          if (criticOptimizer) await criticOptimizer.save(join(dir, CRITIC_OPT));
        },
      });
    };
    const validation: TrainPpoResult['validation'] = [];
    if (checkpoint) rewards.push(...((checkpoint.extra as { rewards?: number[] }).rewards ?? []));
    if (checkpoint) validation.push(...((checkpoint.extra as { validation?: TrainPpoResult['validation'] }).validation ?? []));

    const validate = async (at: number) => {
      const started = Date.now();
      const vctx: RolloutContext = { ...ctx, config: { ...c, samplesPerState: 1, temperature: 0, topP: 1 }, onGroup: () => {}, truncatedPrompts: 0 };
      model.adapter = actor;
      let groups: RolloutGroup[];
      try {
        groups = await stepRollouts(vctx, at, validationStates, new Map());
      } finally {
        model.adapter = null;
      }
      const all = groups.flatMap((g) => g.samples.map((s) => ({ ...s, task: g.task })));
      const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
      const valReward = mean(all.map((s) => s.reward));
      metrics!.log(at, { valReward, valFormatErrorRate: mean(all.map((s) => (s.formatValid ? 0 : 1))) });
      validation.push({ iteration: at, reward: valReward });
      for (const task of new Set(all.map((s) => s.task))) metrics!.log(at, { valReward: mean(all.filter((s) => s.task === task).map((s) => s.reward)) }, { task });
      log(`ppo iteration ${at}: greedy reward ${valReward.toFixed(3)} at the ${all.length} validation states (${((Date.now() - started) / 1000).toFixed(1)} s)`);
    };
    if (c.validateEvery !== null && start === 0) await validate(0);

    while (iteration < c.iterations) {
      const started = Date.now();
      const savedNow = saved.get(iteration) ?? new Map<number, RolloutGroup>();
      model.adapter = actor; // rollouts from the current policy
      let groups: RolloutGroup[];
      try {
        groups =
          c.rollout === 'step'
            ? await stepRollouts(ctx, iteration, draws.take(), savedNow)
            : await episodeRollouts(ctx, iteration, episodeTasks(tasks, iteration, c.statesPerIteration), savedNow);
      } finally {
        model.adapter = null;
      }
      const rolloutSeconds = (Date.now() - started) / 1000;
      const samples: PpoSample[] = groups.flatMap((g) => g.samples.map((s, k) => ({ group: g.group, prompt: g.prompts[k], response: s.response, oldLogp: s.oldLogp, reward: s.reward, task: g.task, durationSec: s.execSeconds })));
      progress = iteration / c.iterations;
      // The micro-batch size (ppo.microBatchSize, or the largest that fits) from the memory plan of these samples.
      let memory: PpoMemoryCheck;
      try {
        memory = checkPpoMemory(model.config, config, { samples: samples.map((s) => ({ prompt: s.prompt.length, response: s.response.length })), ptx: ptxShape }, device, {
          reference: reference !== undefined,
          where: `ppo iteration ${iteration + 1}`,
        });
      } catch (e) {
        if (!(e instanceof MemoryPlanError)) throw e;
        throw new MemoryPlanError(`${e.message}\n  This iteration's rollouts are saved in ${join(options.out, ROLLOUTS_FILE)}: --resume reuses them.`);
      }
      if (memory.microBatchSize !== microBatchSize) log(memory.line);
      microBatchSize = memory.microBatchSize;
      const updateStarted = Date.now();
      const stats = await ppoUpdate({ model, actor, actorOptimizer, critic, criticOptimizer, reference }, samples, { ...c, microBatchSize }, { seed: config.seed, iteration, ptxExamples });
      const updateSeconds = (Date.now() - updateStarted) / 1000;
      iteration++;
      const all = groups.flatMap((g) => g.samples.map((s) => ({ ...s, task: g.task })));
      const formatErrorRate = all.filter((s) => !s.formatValid).length / all.length;
      const envSeconds = all.reduce((t, s) => t + s.envSeconds, 0);
      const generateSeconds = groups.reduce((t, g) => t + g.generateSeconds, 0);
      const seconds = (Date.now() - started) / 1000;
      metrics.log(iteration, {
        reward: stats.reward,
        rewardStd: stats.rewardStd,
        kl: stats.kl,
        entropy: stats.entropy,
        valueLoss: stats.valueLoss,
        policyLoss: stats.policyLoss,
        clipFrac: stats.clipFrac,
        approxKl: stats.approxKl,
        ...(Number.isNaN(stats.ptxLoss) ? {} : { ptxLoss: stats.ptxLoss }),
        ...(Number.isNaN(stats.oldLogpGap) ? {} : { oldLogpGap: stats.oldLogpGap, oldLogpGapMax: stats.oldLogpGapMax }),
        ...(Number.isNaN(stats.samplerWeight) ? {} : { samplerWeight: stats.samplerWeight }),
        ...(Number.isNaN(stats.durationWeightMax) ? {} : { durationWeightMax: stats.durationWeightMax }),
        lr: stats.actorLr,
        explainedVariance: stats.explainedVariance,
        formatErrorRate,
        truncatedPrompts: ctx.truncatedPrompts ?? 0,
        zeroVarianceGroups: stats.zeroVarianceGroups,
        envSeconds,
        generateSeconds,
        tokensPerSecond: all.reduce((t, s) => t + s.response.length, 0) / Math.max(1e-9, generateSeconds),
        responseTokens: stats.responseTokens / all.length,
        reusedSamples: all.filter((s) => s.reused).length,
        rolloutSeconds,
        updateSeconds,
        iterationSeconds: seconds,
        ...rewardByStateKind(groups, draws.editStates),
        ...memoryMetrics(gpu),
      });
      if (ctx.truncatedPrompts) log(`ppo iteration ${iteration}: ${ctx.truncatedPrompts} prompts kept only their last ${promptRoom(ctx)} tokens (ppo.maxPromptTokens, or the model's context less maxNewTokens)`);
      ctx.truncatedPrompts = 0;
      for (const task of new Set(all.map((s) => s.task))) {
        const mine = all.filter((s) => s.task === task);
        metrics.log(iteration, { reward: stats.rewardByTask[task], formatErrorRate: mine.filter((s) => !s.formatValid).length / mine.length }, { task });
      }
      rewards.push(stats.reward);
      if (c.validateEvery !== null && (iteration % c.validateEvery === 0 || iteration === c.iterations) && !options.signal?.aborted) await validate(iteration);
      const info: PpoIterationInfo = { iteration, stats, formatErrorRate, envSeconds, seconds, reusedGroups: savedNow.size };
      options.onIteration?.(info);
      meter?.update(iteration, { reward: stats.reward, kl: stats.kl, 'fmt err': formatErrorRate });
      const last = iteration === c.iterations;
      const aborted = options.signal?.aborted ?? false;
      if (last || aborted || iteration % c.checkpointEvery === 0) await save();
      if (aborted && !last) {
        stopped = true;
        break;
      }
    }
    meter?.finish({ reward: rewards[rewards.length - 1] ?? NaN });
    let adapterDir: string | null = null;
    let criticDir: string | null = null;
    if (!stopped) {
      adapterDir = join(options.out, ADAPTER_DIR);
      await saveAdapter(actor, adapterDir, { baseModel: options.modelDir });
      if (critic) {
        criticDir = join(options.out, CRITIC_DIR);
        await saveValueHead(critic, criticDir, { baseModel: options.modelDir });
      }
      // Durable before ppo-summary.json says they are there: the pipeline then never writes them again.
      syncTree(adapterDir);
      if (criticDir) syncTree(criticDir);
    }
    const result: TrainPpoResult = { adapterDir, criticDir, iterations: iteration, stopped, resumedFrom: checkpoint?.step ?? null, rewards, validation };
    // The pipeline skips PPO once this file exists (and reads it): it must never be there torn.
    if (!stopped) writeFileAtomic(join(options.out, 'ppo-summary.json'), JSON.stringify(result, null, 2) + '\n');
    return result;
  } finally {
    metrics?.close();
    rolloutLog?.close();
    if (!options.env) await env?.close();
    for (const h of held.reverse()) h.dispose();
    if (ownGpu) gpu.destroy();
  }
}

/** With split draws: the mean reward at the edit states and at the others (where the two curves can differ). */
function rewardByStateKind(groups: RolloutGroup[], editStates: ReadonlySet<string> | null): Record<string, number> {
  if (!editStates) return {};
  const mean = (gs: RolloutGroup[]) => {
    const r = gs.flatMap((g) => g.samples.map((s) => s.reward));
    return r.length ? r.reduce((a, b) => a + b, 0) / r.length : NaN;
  };
  const out: Record<string, number> = {};
  const edits = groups.filter((g) => editStates.has(g.state));
  const others = groups.filter((g) => !editStates.has(g.state));
  if (edits.length) out.rewardEditStates = mean(edits);
  if (others.length) out.rewardOtherStates = mean(others);
  return out;
}

/** Episode-wise groups: tasks take turns across iterations. */
function episodeTasks(tasks: string[], iteration: number, count: number): string[] {
  return Array.from({ length: count }, (_, g) => tasks[(iteration * count + g) % tasks.length]);
}

function nonEmpty(path: string): boolean {
  return existsSync(path) && statSync(path).size > 0;
}

/** The validation set of validateEvery: `n` states drawn once from the pool, by task, with the run's seed. */
export function validationSet(pool: StatesPool, seed: number, n: number): PoolState[] {
  const states = pool.sampler({ mode: 'by-task', seed: mixSeed(seed, 'ppo/validation') }).take(Math.min(n, pool.size));
  return [...new Map(states.map((s) => [s.snapshotId, s])).values()];
}

/** What must not change between a checkpoint and its resume. */
function fingerprintOf(config: TrainConfig, options: TrainPpoOptions): string {
  const h = createHash('sha256');
  // PPO-ptx's fields (and the SFT tokenization its examples follow) count only when it is on, so runs from before
  // it existed still resume.
  // How samples are batched, whether identical ones run once and whether activations are recomputed change neither
  // what a saved rollout nor what a checkpoint means, so they stay out too (and runs from before they existed resume).
  // Micro-batches change only rounding and dropout draws, and the size that fits can differ between devices.
  // A prompt cap counts only when set: unset, only prompts generate() would refuse are cut. π_old from the actor
  // counts only when asked for, so runs from before the field existed resume; so does duration weighting.
  // Validation only measures, unless its states are held out of the training draws.
  const { ptxCoef, ptxBatchSize, generationBatch: _batch, reuseIdenticalResponses: _reuse, activationCheckpointing: _recompute, microBatchSize: _micro, validateEvery, validationStates, validationHoldout, maxPromptTokens, oldLogprobs, samplerRatioCap, durationWeighting, ...rest } = config.ppo;
  const heldOut = validateEvery !== null && validationHoldout ? { heldOutValidationStates: validationStates } : {};
  const ppo = { ...rest, ...(maxPromptTokens === null ? {} : { maxPromptTokens }), ...(oldLogprobs === 'sampler' ? {} : { oldLogprobs }), ...(samplerRatioCap === null ? {} : { samplerRatioCap }), ...(durationWeighting ? { durationWeighting } : {}), ...heldOut };
  const ptx = ptxCoef > 0 ? { ptxCoef, ptxBatchSize, ptxTemplate: config.sft.template, ptxMaxSeqLen: config.sft.maxSeqLen } : {};
  // f16 weights give other numbers; f32 stays out, so runs from before the field existed resume.
  const dtype = config.dtype === 'f32' ? {} : { dtype: config.dtype };
  h.update(JSON.stringify({ ppo: { ...ppo, iterations: 0, checkpointEvery: 0, keepCheckpoints: 0, ...ptx }, lora: config.lora, seed: config.seed, ...dtype }));
  for (const f of [join(options.modelDir, 'config.json'), options.adapter ? join(options.adapter, 'adapter_model.safetensors') : '', join(options.collection, 'collection.json')]) {
    if (f && existsSync(f)) h.update(readFileSync(f));
  }
  return h.digest('hex');
}

