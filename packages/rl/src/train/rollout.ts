// Sampling and executing actions: one step from pooled states (ML-Agent's step-wise RL), or whole episodes from
// the tasks' initial states (the episode-wise baseline of the paper's Figure 4).
//
// What overlaps (step-wise): every state's n workspaces are restored at once, ahead of generation; the states are
// then sampled in runs of generationBatch / n states, one generate() call a run, and each state's n actions start
// executing in the env (SandboxPool, `envConcurrency` at once) as soon as its run is sampled, while the next run is
// being generated. So the GPU works on run r+1 while the sandboxes run run r's scripts, and the iteration only
// waits for the env at its end, for the last run's scripts.
import { actionCallKey } from '@mlagent/env';
import { defaultStopTokenIds, generate, type GenerateResult, type QwenModel, type QwenTokenizer } from '@mlagent/policy';
import { computeReward, type RewardConfig, type StepFeedback } from '@mlagent/reward';
import { mixSeed } from '../collect/seeds.js';
import type { PpoConfig } from '../config/train-config.js';
import type { PoolState } from '../pool/states-pool.js';
import type { ActingEpisode, ActionEnv } from './env.js';
import { keepPromptEnd, renderPrompt } from './prompt.js';
import type { RolloutGroup, RolloutSample } from './rollouts.js';

export interface RolloutContext {
  model: QwenModel;
  tokenizer: QwenTokenizer;
  env: ActionEnv;
  config: PpoConfig;
  reward: Partial<RewardConfig>;
  seed: number;
  /** Called with each group as soon as it is complete (the caller persists it). */
  onGroup: (group: RolloutGroup) => void;
  /** Prompts cut to maxPromptTokens so far (the caller reads and resets it). */
  truncatedPrompts?: number;
}

/** The longest prompt generate() is given: maxPromptTokens, and room for maxNewTokens in the model's context. */
export function promptRoom(ctx: Pick<RolloutContext, 'model' | 'config'>): number {
  const room = Math.min(ctx.config.maxPromptTokens ?? Infinity, ctx.model.config.maxPositionEmbeddings - ctx.config.maxNewTokens);
  if (room < 1) throw new Error(`ppo: maxNewTokens (${ctx.config.maxNewTokens}) leaves no room for a prompt in the model's ${ctx.model.config.maxPositionEmbeddings}-token context`);
  return room;
}

/** A state's prompt, cut to its last promptRoom() tokens where longer (counted in ctx.truncatedPrompts). */
function statePrompt(ctx: RolloutContext, messages: Parameters<typeof renderPrompt>[1]): number[] {
  const ids = renderPrompt(ctx.tokenizer, messages, ctx.config.compactPrompts);
  const room = promptRoom(ctx);
  if (ids.length > room) ctx.truncatedPrompts = (ctx.truncatedPrompts ?? 0) + 1;
  return keepPromptEnd(ids, room);
}

async function sample(ctx: RolloutContext, prompts: number[][], seed: number) {
  const { model, tokenizer, config } = ctx;
  return generate(model, prompts, {
    maxNewTokens: config.maxNewTokens,
    temperature: config.temperature,
    topP: config.topP,
    seed,
    stopTokenIds: defaultStopTokenIds(model.config, tokenizer),
  });
}

/** The step's duration where it ran code (the env sets feedback.outcome only then), for ppo.durationWeighting. */
function execSeconds(r: { durationSec: number; feedback: StepFeedback }): { execSeconds?: number } {
  return r.feedback.outcome === undefined ? {} : { execSeconds: r.durationSec };
}

function scored(ctx: RolloutContext, task: string, feedback: StepFeedback, metricBefore: number | null) {
  const fb = { ...feedback, previousMetric: feedback.previousMetric ?? metricBefore };
  return computeReward(fb, ctx.env.taskMetric(task), ctx.reward);
}

/**
 * Step-wise: n actions per state, executed and scored; groups reused from `saved` are not executed again. The states
 * are sampled in fixed runs of generationBatch / n per generate() call, whatever was saved: a run with a saved group
 * is sampled whole again (its saved prompt stands in), so a resumed iteration draws what an uninterrupted one did.
 */
export async function stepRollouts(ctx: RolloutContext, iteration: number, states: PoolState[], saved: Map<number, RolloutGroup>): Promise<RolloutGroup[]> {
  const n = ctx.config.samplesPerState;
  states.forEach((s, g) => {
    const old = saved.get(g);
    if (old && old.state !== s.snapshotId) throw new Error(`ppo: the saved rollouts of iteration ${iteration} group ${g} are of state ${old.state}, but the pool now draws ${s.snapshotId}; the collection changed since the run started`);
  });
  const perCall = Math.max(1, Math.floor(ctx.config.generationBatch / n));
  // Restore every workspace up front (file copies), so generation never waits for them.
  const restores = states.map((s, g) => (saved.has(g) ? null : settle(Promise.all(Array.from({ length: n }, () => ctx.env.restore(s))))));
  const pending: Promise<RolloutGroup>[] = [];
  try {
    for (let first = 0; first < states.length; first += perCall) {
      const run = states.slice(first, first + perCall).map((state, i) => ({ state, g: first + i }));
      for (const { g } of run) if (saved.has(g)) pending[g] = Promise.resolve(saved.get(g)!);
      const fresh = run.filter(({ g }) => !saved.has(g));
      if (fresh.length === 0) continue;
      const episodes = new Map<number, ActingEpisode[]>();
      for (const { g } of fresh) episodes.set(g, await unwrap(restores[g]!));
      const started = Date.now();
      const prompts = run.map(({ g }) => saved.get(g)?.prompts[0] ?? statePrompt(ctx, episodes.get(g)![0].messages()));
      // A run of one state keeps the seed a state had before runs existed (`.../${g}`).
      const generated = await sample(ctx, prompts.flatMap((p) => Array.from({ length: n }, () => p)), mixSeed(ctx.seed, `ppo/generate/${iteration}/${first}`));
      // Each group's share of the call, so that the groups' seconds add up to the iteration's generation time.
      const generateSeconds = (Date.now() - started) / 1000 / fresh.length;
      for (const { state, g } of fresh) {
        const i = g - first;
        // Not awaited: the env runs these while the next run is generated.
        const group = executeGroup(ctx, iteration, g, state, episodes.get(g)!, prompts[i], generated.slice(i * n, (i + 1) * n), generateSeconds);
        pending[g] = group;
        group.catch(() => {}); // reported by the Promise.all below
      }
    }
  } catch (e) {
    await Promise.allSettled([...pending, ...restores.map((r) => r && unwrap(r).then((eps) => Promise.all(eps.map((ep) => ep.close()))))]);
    throw e;
  }
  return Promise.all(pending);
}

/** Executes and scores one state's sampled actions, one live episode each, and hands the group to onGroup. */
async function executeGroup(
  ctx: RolloutContext,
  iteration: number,
  g: number,
  state: PoolState,
  episodes: ActingEpisode[],
  prompt: number[],
  generated: GenerateResult[],
  generateSeconds: number,
): Promise<RolloutGroup> {
  // A response that makes the same action call as an earlier one of this state is not executed again: it waits
  // for that one's result.
  const results = new Map<string, ReturnType<ActingEpisode['step']>>();
  const samples = await Promise.all(
    episodes.map(async (ep, k): Promise<RolloutSample> => {
      const gen = generated[k];
      const text = ctx.tokenizer.decode(gen.ids, { skipSpecialTokens: true });
      const key = ctx.config.reuseIdenticalResponses ? actionCallKey(text) : undefined;
      const first = key === undefined ? undefined : results.get(key);
      try {
        const step = first ?? ep.step(text);
        if (key !== undefined && !first) results.set(key, step);
        const r = await step;
        const { reward, reason } = scored(ctx, state.task, r.feedback, state.metric);
        const envSeconds = first ? 0 : r.durationSec;
        return { response: gen.ids, oldLogp: gen.logprobs, text, finishReason: gen.finishReason, reward, reason, outcome: r.outcome, metric: r.metric, formatValid: r.feedback.formatValid, envSeconds, ...execSeconds(r), ...(first ? { reused: true } : {}) };
      } finally {
        await ep.close();
      }
    }),
  );
  const group: RolloutGroup = { iteration, group: g, task: state.task, state: state.snapshotId, metricBefore: state.metric, prompts: samples.map(() => prompt), samples, generateSeconds };
  ctx.onGroup(group);
  return group;
}

/**
 * Episode-wise baseline: per group, n full episodes from a task's initial state, one action per live episode per
 * round (batched), every step of an episode rewarded with the episode's outcome: the reward of its final metric
 * against the initial one.
 */
export async function episodeRollouts(ctx: RolloutContext, iteration: number, tasks: string[], saved: Map<number, RolloutGroup>): Promise<RolloutGroup[]> {
  const out: RolloutGroup[] = [];
  const n = ctx.config.samplesPerState;
  for (const [g, task] of tasks.entries()) {
    const old = saved.get(g);
    if (old) {
      out.push(old);
      continue;
    }
    const episodes: ActingEpisode[] = await Promise.all(Array.from({ length: n }, () => ctx.env.start(task)));
    const started = Date.now();
    try {
      const metricBefore = episodes[0].currentMetric;
      const steps: { episode: number; prompt: number[]; gen: { ids: number[]; logprobs: number[]; finishReason: 'stop' | 'length' }; text: string; outcome: string; metric: number | null; formatValid: boolean; envSeconds: number; execSeconds?: number }[] = [];
      for (let round = 0; round < ctx.config.episodeMaxSteps; round++) {
        const live = episodes.map((ep, k) => ({ ep, k })).filter(({ ep }) => !ep.done);
        if (live.length === 0) break;
        const prompts = live.map(({ ep }) => statePrompt(ctx, ep.messages()));
        const generated = await sample(ctx, prompts, mixSeed(ctx.seed, `ppo/episode/${iteration}/${g}/${round}`));
        const results = await Promise.all(
          live.map(async ({ ep, k }, j) => {
            const text = ctx.tokenizer.decode(generated[j].ids, { skipSpecialTokens: true });
            const r = await ep.step(text);
            return { episode: k, prompt: prompts[j], gen: generated[j], text, outcome: r.outcome, metric: r.metric, formatValid: r.feedback.formatValid, envSeconds: r.durationSec, ...execSeconds(r) };
          }),
        );
        steps.push(...results);
      }
      const episodeReward = episodes.map((ep) => scored(ctx, task, { formatValid: true, isEdit: false, outcome: 'ok', metric: ep.currentMetric, previousMetric: metricBefore }, metricBefore));
      const group: RolloutGroup = {
        iteration,
        group: g,
        task,
        state: 'initial',
        metricBefore,
        prompts: steps.map((s) => s.prompt),
        samples: steps.map((s) => ({ response: s.gen.ids, oldLogp: s.gen.logprobs, text: s.text, finishReason: s.gen.finishReason, reward: episodeReward[s.episode].reward, reason: episodeReward[s.episode].reason, outcome: s.outcome, metric: s.metric, formatValid: s.formatValid, envSeconds: s.envSeconds, ...(s.execSeconds === undefined ? {} : { execSeconds: s.execSeconds }) })),
        generateSeconds: (Date.now() - started) / 1000,
      };
      ctx.onGroup(group);
      out.push(group);
    } finally {
      await Promise.all(episodes.map((ep) => ep.close()));
    }
  }
  return out;
}

type Settled<T> = Promise<{ ok: true; value: T } | { ok: false; error: unknown }>;

/** A promise that never rejects (so a failure surfaces only where it is awaited, not as an unhandled rejection). */
function settle<T>(p: Promise<T>): Settled<T> {
  return p.then(
    (value) => ({ ok: true as const, value }),
    (error: unknown) => ({ ok: false as const, error }),
  );
}

async function unwrap<T>(s: Settled<T>): Promise<T> {
  const r = await s;
  if (!r.ok) throw r.error;
  return r.value;
}
