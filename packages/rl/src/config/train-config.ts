import { readFileSync } from 'node:fs';
import { extname } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { TrainConfigError, didYouMean, isPlainObject, jsonErrorMessage, readSection, sectionTable, type Field, type Section } from './schema.js';

/**
 * The training config: one file (YAML or JSON) with sections for each stage. Defaults follow verl's PPO trainer
 * (clip 0.2, dual clip 3, value clip 0.5, KL 0.001, actor lr 1e-6, critic lr 1e-5, entropy 0, grad clip 1.0);
 * `preset: tiny` overrides what a randomly initialised tiny model on a CPU needs (see TINY_PRESET).
 */

export type Preset = 'default' | 'tiny';

export interface LoraSettings {
  rank: number;
  alpha: number;
  dropout: number;
  targets: string[];
}

export interface SftConfig {
  epochs: number;
  lr: number;
  warmupRatio: number;
  minLrRatio: number;
  batchSize: number;
  gradAccum: number;
  maxSeqLen: number;
  evalFraction: number;
  weightDecay: number;
  gradClip: number;
  template: 'ml-agent' | 'hf';
  lengthBucketing: boolean;
  activationCheckpointing: boolean;
  checkpointEvery: number;
  keepCheckpoints: number;
  probeStates: number;
  probeSamples: number;
}

export interface PpoConfig {
  iterations: number;
  rollout: 'step' | 'episode';
  statesPerIteration: number;
  samplesPerState: number;
  generationBatch: number;
  epochs: number;
  minibatchSize: number;
  microBatchSize: number | null;
  actorLr: number;
  actorWarmupSteps: number;
  actorMinLrRatio: number;
  criticLr: number;
  weightDecay: number;
  gradClip: number;
  advantage: 'gae' | 'grpo' | 'rloo';
  normalizeAdvantages: boolean;
  skipZeroVarianceGroups: boolean;
  clipRatio: number;
  dualClip: number | null;
  valueClip: number | null;
  valueCoef: number;
  klMode: 'loss' | 'reward' | 'none';
  reference: 'initial' | 'base';
  klEstimator: 'k1' | 'k3';
  klCoef: number;
  entropyCoef: number;
  ptxCoef: number;
  ptxBatchSize: number;
  lossAggregation: 'token-mean' | 'seq-mean-token-mean';
  criticWarmupIterations: number;
  temperature: number;
  topP: number;
  maxNewTokens: number;
  maxPromptTokens: number | null;
  oldLogprobs: 'sampler' | 'actor';
  samplerRatioCap: number | null;
  durationWeighting: boolean;
  validateEvery: number | null;
  validationStates: number;
  validationHoldout: boolean;
  envConcurrency: number;
  episodeMaxSteps: number;
  historyWindow: number;
  compactPrompts: boolean;
  maxObservationChars: number;
  poolSampling: 'by-task' | 'uniform';
  editStateShare: number | null;
  rewardVariant: 'v1' | 'v2' | 'milestones';
  rewardAlphaNumerator: number;
  scoreEdits: boolean;
  reuseIdenticalResponses: boolean;
  activationCheckpointing: boolean;
  checkpointEvery: number;
  keepCheckpoints: number;
}

export interface CollectionConfig {
  tasks: string[] | string;
  expert: string;
  trajectories: number;
  candidateIdeas: number;
  ideas: number;
  maxSteps: number;
  concurrency: number;
}

export interface EvalConfig {
  tasks: string[] | string;
  trajectories: number;
  maxSteps: number;
  timeBudget: number;
  temperature: number;
  shareIdenticalSteps: boolean;
}

/** The random model `mlagent train` starts from when no `model` is given. */
export interface InitConfig {
  arch: 'qwen2' | 'qwen3';
  size: 'tiny' | 'mini' | 'small';
  vocabMerges: number;
  headInitStd: number;
}

export interface TrainConfig {
  preset: Preset;
  seed: number;
  model: string | null;
  dtype: 'f32' | 'f16';
  init: InitConfig;
  lora: LoraSettings;
  sft: SftConfig;
  ppo: PpoConfig;
  collection: CollectionConfig;
  eval: EvalConfig;
}

type SectionOf<T> = { [K in keyof T]: Field };

const TASK_GROUPS = ['held-in', 'held-out', 'all'] as const;

export const LORA_SECTION: SectionOf<LoraSettings> = {
  rank: { kind: 'number', int: true, min: 1, default: 8, doc: 'LoRA rank r.' },
  alpha: { kind: 'number', gt: 0, default: 16, doc: 'LoRA alpha; the update is scaled by alpha / rank.' },
  dropout: { kind: 'number', min: 0, lt: 1, default: 0.05, doc: 'Dropout on the LoRA input during training.' },
  targets: {
    kind: 'strings',
    default: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'],
    doc: 'Projections that get adapters (PEFT target_modules).',
  },
};

export const SFT_SECTION: SectionOf<SftConfig> = {
  epochs: { kind: 'number', int: true, min: 1, default: 3, doc: 'Passes over the training split; a checkpoint after each.' },
  lr: { kind: 'number', gt: 0, default: 1e-4, doc: 'Peak learning rate (LoRA).' },
  warmupRatio: { kind: 'number', min: 0, lt: 1, default: 0.03, doc: 'Fraction of optimizer steps of linear warmup before the cosine decay.' },
  minLrRatio: { kind: 'number', min: 0, max: 1, default: 0, doc: 'The cosine decays to lr · minLrRatio.' },
  batchSize: { kind: 'number', int: true, min: 1, default: 4, doc: 'Sequences per micro-batch.' },
  gradAccum: { kind: 'number', int: true, min: 1, default: 4, doc: 'Micro-batches per optimizer step.' },
  maxSeqLen: { kind: 'number', int: true, min: 8, default: 4096, doc: 'Longer examples are truncated from the end of the response (and counted).' },
  evalFraction: { kind: 'number', min: 0, lt: 1, default: 0.05, doc: 'Held-out fraction of the data for eval loss.' },
  weightDecay: { kind: 'number', min: 0, default: 0, doc: 'AdamW weight decay.' },
  gradClip: { kind: 'number', gt: 0, default: 1.0, doc: 'Global gradient-norm clip.' },
  template: { kind: 'enum', values: ['ml-agent', 'hf'], default: 'ml-agent', doc: "Chat template: the ML-Agent SFT template or the model's own." },
  lengthBucketing: { kind: 'boolean', default: true, doc: 'Batch examples of similar length together (less padding).' },
  activationCheckpointing: {
    kind: 'boolean',
    default: true,
    doc: "Keep only each decoder layer's input through the forward and recompute the layer in the backward: one more forward per step for far less memory. A Qwen2.5-7B step (f16 weights, rank 8) of 4 x 4096 tokens needs about 36 GiB with it and 168 GiB without (the memory planner's estimates, `planMemory`).",
  },
  checkpointEvery: { kind: 'number', int: true, min: 0, default: 0, doc: 'Optimizer steps between checkpoints within an epoch; 0: only at the end of each epoch.' },
  keepCheckpoints: { kind: 'number', int: true, min: 1, default: 2, doc: 'Most recent checkpoints kept.' },
  probeStates: { kind: 'number', int: true, min: 0, default: 16, doc: "`mlagent train`: collected states at which actions are sampled before and after SFT to measure the format-error rate (with ppo's maxNewTokens and temperature); 0: skip." },
  probeSamples: { kind: 'number', int: true, min: 1, default: 2, doc: 'Actions sampled per probe state.' },
};

export const PPO_SECTION: SectionOf<PpoConfig> = {
  iterations: { kind: 'number', int: true, min: 1, default: 100, doc: 'RL iterations (sample states, act, score, update).' },
  rollout: { kind: 'enum', values: ['step', 'episode'], default: 'step', doc: "'step': one action from pooled states (ML-Agent); 'episode': full multi-step rollouts (baseline)." },
  statesPerIteration: { kind: 'number', int: true, min: 1, default: 32, doc: 'States B sampled from the pool per iteration.' },
  samplesPerState: { kind: 'number', int: true, min: 1, default: 4, doc: 'Actions n sampled per state.' },
  generationBatch: {
    kind: 'number',
    int: true,
    min: 1,
    default: 32,
    doc: "Sequences sampled in one generate() call: each iteration's states go in fixed runs of max(1, floor(generationBatch / samplesPerState)), one call a run, and a run's scripts execute while the next run is sampled. On the H200 the small preset decoded 2498 tok/s at batch 32 and 101 at batch 1, so a step of 32 sequences took 1.3 times a step of one (decoding reads every weight once per token); the KV caches grow with the batch. samplesPerState samples one state per call.",
  },
  epochs: { kind: 'number', int: true, min: 1, default: 1, doc: 'Passes over each iteration’s samples (PPO epochs).' },
  minibatchSize: { kind: 'number', int: true, min: 1, default: 16, doc: 'Samples per optimizer step.' },
  microBatchSize: {
    kind: 'number',
    int: true,
    min: 1,
    nullable: true,
    default: null,
    doc: "Samples per forward and backward pass within a minibatch (and expert steps per PPO-ptx pass); their gradients add up to the minibatch's before its optimizer step, so a smaller one trades speed for memory, with the same loss and gradients up to rounding and the dropout draws. null: the whole minibatch, or, where the device's memory budget is known (--memory-budget, or nvidia-smi) and the memory plan of the iteration's longest samples exceeds it, the largest micro-batch whose plan fits.",
  },
  actorLr: { kind: 'number', gt: 0, default: 1e-6, doc: 'Policy (LoRA) learning rate.' },
  actorWarmupSteps: { kind: 'number', int: true, min: 0, default: 0, doc: "Actor optimizer steps over which its learning rate rises linearly to actorLr. Adam's first steps move every weight by about the learning rate whatever its gradient, which can throw a fine-tuned adapter far from where it was." },
  actorMinLrRatio: {
    kind: 'number',
    min: 0,
    max: 1,
    default: 1,
    doc: 'The actor learning rate falls by a cosine over the iterations from actorLr to actorLr × this (1: constant), so the last iterations move the policy less.',
  },
  criticLr: { kind: 'number', gt: 0, default: 1e-5, doc: 'Value-head learning rate.' },
  weightDecay: { kind: 'number', min: 0, default: 0.01, doc: 'AdamW weight decay.' },
  gradClip: { kind: 'number', gt: 0, default: 1.0, doc: 'Global gradient-norm clip.' },
  advantage: { kind: 'enum', values: ['gae', 'grpo', 'rloo'], default: 'gae', doc: "'gae': r − V(s) with the critic; 'grpo' / 'rloo': critic-free, over the n samples of a state." },
  normalizeAdvantages: { kind: 'boolean', default: true, doc: 'Whiten GAE advantages over the batch.' },
  skipZeroVarianceGroups: { kind: 'boolean', default: false, doc: 'GRPO/RLOO: drop states whose n rewards are all equal (they are always reported).' },
  clipRatio: { kind: 'number', gt: 0, lt: 1, default: 0.2, doc: 'PPO ratio clip ε.' },
  dualClip: { kind: 'number', gt: 1, nullable: true, default: 3, doc: 'Dual-clip bound c for negative advantages; null disables.' },
  valueClip: { kind: 'number', gt: 0, nullable: true, default: 0.5, doc: 'Value clipping around the old values; null disables.' },
  valueCoef: { kind: 'number', min: 0, default: 1, doc: 'Weight of the value loss (which already has the ½).' },
  klMode: { kind: 'enum', values: ['loss', 'reward', 'none'], default: 'loss', doc: 'KL to the reference policy (LoRA off) as a loss term, subtracted from the reward, or off.' },
  reference: { kind: 'enum', values: ['initial', 'base'], default: 'initial', doc: "KL reference policy: 'initial' is the policy RL starts from (the SFT adapter, kept frozen), as verl's reference model; 'base' is the model with LoRA off, the pre-SFT model when SFT was LoRA." },
  klEstimator: { kind: 'enum', values: ['k1', 'k3'], default: 'k3', doc: 'KL estimator: k1 = log ratio, k3 = low-variance non-negative.' },
  klCoef: { kind: 'number', min: 0, default: 0.001, doc: 'KL coefficient β.' },
  entropyCoef: { kind: 'number', min: 0, default: 0, doc: 'Entropy bonus coefficient.' },
  ptxCoef: {
    kind: 'number',
    min: 0,
    default: 0,
    doc: "Weight of the SFT loss on the collection's expert steps added to every actor update (PPO-ptx, as in InstructGPT); 0 turns it off.",
  },
  ptxBatchSize: { kind: 'number', int: true, min: 1, default: 4, doc: 'Expert steps in the SFT loss of each actor minibatch (with ptxCoef > 0).' },
  lossAggregation: { kind: 'enum', values: ['token-mean', 'seq-mean-token-mean'], default: 'token-mean', doc: 'How per-token losses are averaged.' },
  criticWarmupIterations: { kind: 'number', int: true, min: 0, default: 0, doc: 'Iterations that train only the critic.' },
  temperature: { kind: 'number', gt: 0, default: 1.0, doc: 'Sampling temperature of the actions.' },
  topP: { kind: 'number', gt: 0, max: 1, default: 1.0, doc: 'Nucleus sampling of the actions.' },
  maxNewTokens: { kind: 'number', int: true, min: 1, default: 1024, doc: 'Longest action response.' },
  maxPromptTokens: {
    kind: 'number',
    int: true,
    min: 1,
    nullable: true,
    default: null,
    doc: "Longest prompt the policy is given in RL and in mlagent train's evaluation; a longer one keeps its end, and RL's iteration metrics count them (truncatedPrompts). It bounds generation's KV caches and the update's passes, which the memory plan sizes. null: the model's max_position_embeddings − maxNewTokens, the most generate() takes.",
  },
  oldLogprobs: {
    kind: 'enum',
    values: ['sampler', 'actor'],
    default: 'sampler',
    doc: "Where π_old's log-probs (the ratio's denominator, and the KL's sampled side) come from: 'sampler', those generate() recorded as it sampled; 'actor', a forward of the actor before the update, as verl recomputes them, so the first epoch's ratio starts at 1 whatever the sampler's numerics (f16 weights and KV caches, other kernels) give. 'actor' costs one more forward per sample and logs the mean and largest gap between the two (oldLogpGap, oldLogpGapMax).",
  },
  samplerRatioCap: {
    kind: 'number',
    gt: 0,
    nullable: true,
    default: null,
    doc: "With oldLogprobs 'actor': each response token's policy term is weighted by min(π_old / π_sampler, this), the actor's probability of the token over the sampler's, capped (truncated importance sampling, as verl's tis_imp_ratio_cap), so responses drawn under the sampler's numerics count as if drawn from π_old. null: no weighting. The iteration logs the weights' mean (samplerWeight).",
  },
  durationWeighting: {
    kind: 'boolean',
    default: false,
    doc: "Weight each sample's policy term by how long the code its action ran took, over the mean of the iteration's samples that ran code (duration-aware weighting, arXiv 2509.01684; @mlagent/reward's durationWeights): fast actions come back first and would otherwise dominate. Samples that ran no code weigh as the mean; the weights average to 1 over the iteration. The iteration logs their largest (durationWeightMax).",
  },
  validateEvery: {
    kind: 'number',
    int: true,
    min: 1,
    nullable: true,
    default: null,
    doc: 'Every this many iterations (and before the first and after the last), the policy answers validationStates fixed states greedily, one response each, executed and rewarded as rollouts are; the metrics log the mean (valReward, also per task) and the format-error rate (valFormatErrorRate). A curve free of sampling noise and of which states an iteration drew. null: no validation.',
  },
  validationStates: { kind: 'number', int: true, min: 1, default: 8, doc: "States of the validation set, drawn once from the pool by task with the run's seed." },
  validationHoldout: { kind: 'boolean', default: true, doc: 'With validateEvery: the validation states are never drawn for training, so the curve measures states the policy did not learn from. false: they stay in the training pool.' },
  envConcurrency: { kind: 'number', int: true, min: 1, default: 8, doc: 'Actions executed in the environment at once.' },
  episodeMaxSteps: { kind: 'number', int: true, min: 1, default: 10, doc: "Steps per episode when rollout = 'episode'." },
  historyWindow: { kind: 'number', int: true, min: 0, default: 5, doc: 'Past steps shown in full in the prompt of a restored state (older ones one line each); shorter prompts are cheaper.' },
  compactPrompts: { kind: 'boolean', default: false, doc: "Leave the env's system message (action list and format) out of the policy's prompts and keep only the Action / Action Input part of assistant turns, in SFT targets too. For tiny models, where every token costs; SFT, RL and evaluation all see the same compact form." },
  maxObservationChars: { kind: 'number', int: true, min: 100, default: 10000, doc: 'Longest observation shown to the policy (head and tail kept), in collection, RL and evaluation alike.' },
  poolSampling: { kind: 'enum', values: ['by-task', 'uniform'], default: 'by-task', doc: "How states are drawn from the pool: tasks taking turns, or uniformly over all states." },
  editStateShare: { kind: 'number', min: 0, max: 1, nullable: true, default: null, doc: "Share of each iteration's states drawn from those where the expert edited a file, the rest from the others; null draws from the whole pool (the paper). Valid non-editing actions all earn 0.5 under v1, so groups there rarely have a reward spread; the other states stay in the batch as the KL's anchor." },
  rewardVariant: { kind: 'enum', values: ['v1', 'v2', 'milestones'], default: 'v1', doc: "The reward module's variant: 'v1' the paper's 0 / 0.5 / sigmoid; 'v2' signed; 'milestones' partial credit for failed runs." },
  rewardAlphaNumerator: { kind: 'number', gt: 0, default: 100, doc: "The 100 in the reward's alpha = 100 / gap, where gap = abs(m_best - m_init). At 100, sigmoid(alpha * gain) is about 1 for any gain above 5% of that gap; a smaller value keeps larger gains earning more." },
  scoreEdits: { kind: 'boolean', default: true, doc: "Run the edited script right after a successful edit, so the edit is rewarded with sigmoid(alpha * (m' - m)) as in the paper (false: edits earn the neutral 0.5 and only Execute Script is scored)." },
  reuseIdenticalResponses: {
    kind: 'boolean',
    default: true,
    doc: "Execute a state's sampled responses that make the same action call (the same Action and Action Input, whatever the text around them; unparsable ones only when identical) once, and give every copy that result, as a deterministic env would. In session 22's main job, 62 of 62 sets of identical responses had identical results, and the copies took 64% of the env's time. false executes every sample (tasks whose scripts are not seeded).",
  },
  activationCheckpointing: {
    kind: 'boolean',
    default: true,
    doc: "As sft.activationCheckpointing, for the actor's and the critic's passes (and the PPO-ptx SFT loss): a minibatch of 16 sequences of 2048 tokens on Qwen2.5-7B needs about 56 GiB for the actor's step with it and 319 GiB without.",
  },
  checkpointEvery: { kind: 'number', int: true, min: 1, default: 5, doc: 'Iterations between checkpoints.' },
  keepCheckpoints: { kind: 'number', int: true, min: 1, default: 3, doc: 'Most recent checkpoints kept.' },
};

export const COLLECTION_SECTION: SectionOf<CollectionConfig> = {
  tasks: { kind: 'strings', groups: TASK_GROUPS, default: 'held-in', doc: 'Tasks to collect expert trajectories on.' },
  expert: { kind: 'string', default: 'scripted', doc: "'scripted' or the URL of an OpenAI-compatible endpoint." },
  trajectories: { kind: 'number', int: true, min: 1, default: 8, doc: 'Expert trajectories per task.' },
  candidateIdeas: { kind: 'number', int: true, min: 1, default: 100, doc: 'Candidate improvement ideas generated per task.' },
  ideas: { kind: 'number', int: true, min: 1, default: 10, doc: 'Most diverse ideas kept per task (K).' },
  maxSteps: { kind: 'number', int: true, min: 1, default: 10, doc: 'Steps per expert trajectory.' },
  concurrency: { kind: 'number', int: true, min: 1, default: 4, doc: 'Trajectories run at once.' },
};

export const INIT_SECTION: SectionOf<InitConfig> = {
  arch: { kind: 'enum', values: ['qwen2', 'qwen3'], default: 'qwen2', doc: 'Architecture of the random model written when `model` is not set.' },
  size: { kind: 'enum', values: ['tiny', 'mini', 'small'], default: 'tiny', doc: "init-model's size preset: tiny (hidden 64, 2 layers), mini (hidden 128, 2 layers) or small (hidden 256, 4 layers)." },
  vocabMerges: { kind: 'number', int: true, min: 0, default: 0, doc: "Keep the Qwen tokenizer's first N BPE merges (vocabulary 256 + N + 26 special tokens); 0 keeps all 151k." },
  headInitStd: { kind: 'number', gt: 0, default: 0.02, doc: 'Std of the random LM head; LoRA leaves the head frozen, so it sets how confident the model can become.' },
};

export const EVAL_SECTION: SectionOf<EvalConfig> = {
  tasks: { kind: 'strings', groups: TASK_GROUPS, default: ['held-in', 'held-out'], doc: 'Task groups or names to evaluate on.' },
  trajectories: { kind: 'number', int: true, min: 1, default: 8, doc: 'Trajectories per task (average and best are reported).' },
  maxSteps: { kind: 'number', int: true, min: 1, default: 10, doc: 'Steps per evaluation episode.' },
  timeBudget: { kind: 'number', gt: 0, default: 3600, doc: 'Seconds per episode.' },
  temperature: { kind: 'number', gt: 0, default: 0.7, doc: 'Sampling temperature during evaluation.' },
  shareIdenticalSteps: {
    kind: 'boolean',
    default: true,
    doc: "Trajectories of a task that start together and give the same responses share one episode, so each such step runs once; they fork when their responses differ, after the run when only the wording of the action call differs. Each trajectory's outcomes keep their distribution, but identical trajectories no longer draw independent outcomes from a nondeterministic script; false runs every trajectory in its own episode.",
  },
};

export const TOP_SECTION: Section = {
  preset: { kind: 'enum', values: ['default', 'tiny'], default: 'default', doc: 'Overrides applied on top of the defaults, before this file.' },
  // Every generator keeps only the seed's low 32 bits (SeededRng, mixSeed, the data order): 2^32 would repeat seed 0.
  seed: { kind: 'number', int: true, min: 0, max: 2 ** 32 - 1, default: 0, doc: 'Seed of every random choice (data order, sampling, dropout).' },
  model: { kind: 'string', nullable: true, default: null, doc: 'Model directory (Hugging Face layout); the CLI may give it instead.' },
  dtype: {
    kind: 'enum',
    values: ['f32', 'f16'],
    default: 'f32',
    doc: "The frozen base weights on the GPU, in SFT, RL and evaluation: 'f16' halves their memory (Qwen2.5-7B: about 16 GiB instead of 31, as the allocator hands them out) where the adapter has shader-f16; activations, LoRA weights and optimizer state stay f32, and bf16 checkpoints are converted on load.",
  },
};

const SECTIONS = { init: INIT_SECTION, lora: LORA_SECTION, sft: SFT_SECTION, ppo: PPO_SECTION, collection: COLLECTION_SECTION, eval: EVAL_SECTION } as const;

/** A config with every field optional, as written in a file or passed as overrides. */
export type TrainConfigInput = Partial<Pick<TrainConfig, 'preset' | 'seed' | 'model' | 'dtype'>> & {
  [S in keyof typeof SECTIONS]?: Partial<TrainConfig[S]>;
};

/** What `preset: tiny` changes, so that a randomly initialised model learns the agent's response format in
 * minutes on a 2-core CPU (docs/TRAINING.md has the measurements behind each choice):
 * - the model: init-model's `mini` size with Qwen's tokenizer cut to its first 4000 merges (4282 tokens instead of
 *   151k, so the LM head is cheap) and a head at std 0.2, whose logits can become confident while LoRA keeps it
 *   frozen; LoRA of rank 64 (full rank for most projections of a 128-wide model);
 * - short inputs: compact prompts, one step of history, observations clipped to 300 characters;
 * - far larger learning rates and far smaller batches than a 7B model; actions sampled at temperature 0.7;
 * - three fast tabular tasks to collect on, each with its 2 most diverse idea plans (out of 100 candidates), so a
 *   model this small sees each edit several times; two held-in and two held-out tabular tasks to evaluate on;
 * - RL where it has something to learn: half of each iteration's states are states where the expert edited (the
 *   rest keep the KL anchored elsewhere), alpha = 5 / gap so a bigger gain earns more instead of every working edit
 *   scoring ~1, a KL coefficient of 0.05, and an actor learning rate warmed up, then decayed by a cosine to 10%;
 * - PPO-ptx: half the SFT loss on the expert steps in every actor step, without which RL corrupted edits that no
 *   sample of an iteration got right (nothing in GRPO pulls an all-failing group back);
 * - no activation checkpointing: a model this small needs little memory, and recomputing costs time. */
export const TINY_PRESET: TrainConfigInput = {
  init: { size: 'mini', vocabMerges: 4000, headInitStd: 0.2 },
  lora: { rank: 64, alpha: 128, dropout: 0 },
  sft: { epochs: 10, lr: 3e-3, warmupRatio: 0.05, minLrRatio: 0.1, batchSize: 4, gradAccum: 1, maxSeqLen: 1024, evalFraction: 0.1, probeStates: 12, probeSamples: 2, activationCheckpointing: false },
  ppo: {
    iterations: 12,
    statesPerIteration: 6,
    samplesPerState: 4,
    // One state per call: on lavapipe a batch of 24 took 0.5-1.2x the time of six batches of 4 (session 22), as
    // every sequence waits for the longest.
    generationBatch: 4,
    editStateShare: 0.5,
    minibatchSize: 12,
    advantage: 'grpo',
    actorLr: 3e-4,
    actorWarmupSteps: 6,
    actorMinLrRatio: 0.1,
    ptxCoef: 0.5,
    ptxBatchSize: 4,
    klCoef: 0.05,
    rewardAlphaNumerator: 5,
    criticLr: 1e-3,
    temperature: 0.7,
    maxNewTokens: 288,
    envConcurrency: 2,
    episodeMaxSteps: 8,
    historyWindow: 1,
    compactPrompts: true,
    maxObservationChars: 300,
    checkpointEvery: 1,
    activationCheckpointing: false,
  },
  collection: { tasks: ['house-prices', 'spaceship-titanic', 'nomad-conductors'], trajectories: 6, candidateIdeas: 100, ideas: 2, maxSteps: 8, concurrency: 2 },
  eval: { tasks: ['house-prices', 'spaceship-titanic', 'tabular-playground', 'insult-detection'], trajectories: 4, maxSteps: 8, timeBudget: 300, temperature: 0.5 },
};

const PRESETS: Record<Preset, TrainConfigInput> = { default: {}, tiny: TINY_PRESET };

/**
 * Validates a config object (from a file) on top of the defaults and the preset it names; `overrides` (from the
 * CLI) win over the file. Every problem is reported at once, each naming its field.
 */
export function parseTrainConfig(raw: unknown, options: { source?: string; overrides?: TrainConfigInput } = {}): TrainConfig {
  const problems: string[] = [];
  const file = raw === undefined || raw === null ? {} : raw;
  if (!isPlainObject(file)) throw new TrainConfigError([`the top level must be a mapping of sections, got ${Array.isArray(file) ? 'a list' : typeof file}`], options.source);
  const overrides: unknown = options.overrides ?? {};
  // Overrides are checked like the file: an unknown section or top-level key in them (a typo such as `ppoo`, or a
  // non-mapping) used to be dropped without a word, and the run went on with the value it meant to change.
  if (!isPlainObject(overrides)) throw new TrainConfigError([`overrides: must be a mapping of sections, got ${Array.isArray(overrides) ? 'a list' : typeof overrides}`], options.source);
  const layers = [file, overrides];
  const known = [...Object.keys(TOP_SECTION), ...Object.keys(SECTIONS)];
  for (const key of Object.keys(file)) if (!known.includes(key)) problems.push(`${key}: unknown top-level key${didYouMean(key, known)} (known: ${known.join(', ')})`);
  for (const key of Object.keys(overrides)) if (!known.includes(key)) problems.push(`overrides.${key}: unknown top-level key${didYouMean(key, known)} (known: ${known.join(', ')})`);
  const top = Object.fromEntries(Object.entries(file).filter(([k]) => Object.hasOwn(TOP_SECTION, k)));
  const config: Record<string, unknown> = readSection(TOP_SECTION, { ...top, ...pickTop(overrides as TrainConfigInput) }, 'config', problems);
  const preset = PRESETS[config.preset as Preset] ?? {};
  for (const [name, section] of Object.entries(SECTIONS)) {
    const fromPreset = (preset as Record<string, object | undefined>)[name];
    let merged: Record<string, unknown> = { ...fromPreset };
    for (const layer of layers) {
      const value = (layer as Record<string, unknown>)[name];
      if (value === undefined || value === null) continue;
      if (!isPlainObject(value)) {
        problems.push(`${name}: must be a mapping of fields, got ${Array.isArray(value) ? 'a list' : typeof value}`);
        continue;
      }
      // Spread, not Object.assign: assigning an own `__proto__` key (JSON and YAML both make one) set merged's
      // prototype instead, so the key vanished without the unknown-field problem every other typo gets.
      merged = { ...merged, ...value };
    }
    config[name] = readSection(section, merged, name, problems);
  }
  if (problems.length === 0) problems.push(...crossFieldProblems(config as unknown as TrainConfig));
  if (problems.length > 0) throw new TrainConfigError(problems.map((p) => p.replace(/^config\./, '')), options.source);
  return config as unknown as TrainConfig;
}

/** Reads a .yaml/.yml/.json config file and validates it. */
export function loadTrainConfig(path: string, overrides?: TrainConfigInput): TrainConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new TrainConfigError([`cannot read the file: ${(e as Error).message}`], path);
  }
  const ext = extname(path).toLowerCase();
  let raw: unknown;
  try {
    // A BOM (Notepad's) failed JSON.parse as an unexpected token; the YAML parser skips it.
    if (ext === '.json') {
      const json = text.replace(/^\uFEFF/, '');
      try {
        raw = JSON.parse(json);
      } catch (e) {
        throw new Error(jsonErrorMessage(json, e));
      }
      // JSON.parse keeps the last of a repeated key, so a second `"ppo": {...}` dropped the first one's settings
      // without a word (YAML refuses repeats). JSON is YAML, whose parser names the repeat.
      const docs = parseAllDocuments(json, { uniqueKeys: true });
      const repeat = (Array.isArray(docs) ? docs : []).flatMap((d) => d.errors).find((err) => err.code === 'DUPLICATE_KEY');
      if (repeat) throw new Error(`a key is repeated, and JSON would keep only the last: ${repeat.message.split('\n')[0].replace(/^Map keys must be unique /, '')}`);
    } else if (ext === '.yaml' || ext === '.yml') {
      // parseAllDocuments: a second document (a `---` line) is named as such rather than as the library's advice.
      // merge: YAML merge keys (`<<: *common`) were read as a field named '<<'.
      const docs = parseAllDocuments(text, { merge: true });
      if (!Array.isArray(docs)) raw = null;
      else if (docs.length > 1) throw new Error(`the file holds ${docs.length} YAML documents (separated by '---' lines); a config is one`);
      else if (docs[0]?.errors.length) throw docs[0].errors[0];
      else raw = docs[0]?.toJS();
    } else throw new Error(`unknown extension '${ext}': use .yaml, .yml or .json`);
  } catch (e) {
    throw new TrainConfigError([`cannot parse: ${(e as Error).message}`], path);
  }
  // An empty file (or one of comments only) ran every stage with the default config, whatever was meant.
  if (raw === null || raw === undefined) throw new TrainConfigError(['the file holds no settings; write {} to mean every default'], path);
  return parseTrainConfig(raw, { source: path, overrides });
}

/** The defaults (with a preset applied). */
export function defaultTrainConfig(preset: Preset = 'default'): TrainConfig {
  return parseTrainConfig({ preset });
}

/** Markdown reference of every field, its default, accepted values and meaning (the README embeds it). */
export function trainConfigReference(): string {
  const parts = [sectionTable(TOP_SECTION, 'config').replace(/`config\./g, '`')];
  for (const [name, section] of Object.entries(SECTIONS)) parts.push(sectionTable(section, name));
  return parts.join('\n\n');
}

function pickTop(overrides: TrainConfigInput | undefined): Record<string, unknown> {
  if (!overrides) return {};
  const out: Record<string, unknown> = {};
  for (const k of ['preset', 'seed', 'model', 'dtype'] as const) if (overrides[k] !== undefined) out[k] = overrides[k];
  return out;
}

function crossFieldProblems(c: TrainConfig): string[] {
  const problems: string[] = [];
  const samples = c.ppo.statesPerIteration * c.ppo.samplesPerState;
  if (c.ppo.microBatchSize !== null && c.ppo.microBatchSize > c.ppo.minibatchSize) {
    problems.push(`ppo.microBatchSize: ${c.ppo.microBatchSize} is more than ppo.minibatchSize (${c.ppo.minibatchSize}), the samples a micro-batch splits`);
  }
  if (c.ppo.samplerRatioCap !== null && c.ppo.oldLogprobs !== 'actor') {
    problems.push("ppo.samplerRatioCap: weighs the actor's π_old against the sampler's, so it needs ppo.oldLogprobs: actor");
  }
  if (c.ppo.minibatchSize > samples) {
    problems.push(`ppo.minibatchSize: ${c.ppo.minibatchSize} is more than the ${samples} samples of an iteration (statesPerIteration × samplesPerState)`);
  }
  if (c.ppo.advantage !== 'gae' && c.ppo.samplesPerState < 2) {
    problems.push(`ppo.samplesPerState: ${c.ppo.advantage} needs at least 2 samples per state, got ${c.ppo.samplesPerState}`);
  }
  if (c.ppo.advantage === 'gae' && c.ppo.normalizeAdvantages && samples < 2) {
    problems.push('ppo.normalizeAdvantages: needs at least 2 samples per iteration (statesPerIteration × samplesPerState)');
  }
  return problems;
}
