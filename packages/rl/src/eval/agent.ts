// Who is evaluated: an agent answers the current turn of several trajectories at once (one round of the
// evaluation), which lets the policy batch its generation. The scripted expert and any OpenAI-compatible endpoint
// are agents too, so they can be compared with the policy on the same tasks.
import type { PreparedTask } from '@mlagent/env';
import { EndpointError, chatCompletionsUrl, chatWithRetry, checkEndpointOptions, type EndpointExpertOptions } from '../experts/endpoint.js';
import type { Expert, ExpertTurn, TrajectoryExpert } from '../experts/types.js';
import { mixSeed, seedPlan, taskIdeas, type TaskIdeas } from '../collect/seeds.js';

/** A value in EvalAgent.settings (compared as JSON). */
export type AgentSetting = string | number | boolean | null | readonly string[];

/** One trajectory's turn in a round. */
export interface AgentRequest {
  /** "<task>/<index>", unique within an evaluation. */
  id: string;
  task: PreparedTask;
  /** 0-based index of the trajectory within its task. */
  index: number;
  /** The episode's messages(), the previous step's result and the steps left. */
  turn: ExpertTurn;
  /** The same state as one text (the episode's prompt(), what step-wise RL acts on). */
  prompt: string;
}

export interface EvalAgent {
  /** The column name in the tables, e.g. "policy:sft", "scripted", "endpoint:gpt-4o-mini". */
  readonly name: string;
  /** 'policy', 'endpoint' or 'expert'. */
  readonly kind: string;
  /** What identifies it (model and adapter directories, URL), for the result file. */
  readonly detail: string;
  /** Sampling temperature, when the agent samples. */
  readonly temperature: number | null;
  /**
   * Everything else that decides its responses (response length, prompt form, ...), by name: a resumed evaluation
   * must give the same, so its trajectories are all of one agent.
   */
  readonly settings?: Readonly<Record<string, AgentSetting>>;
  /** Called once with all tasks before any episode starts: per-task setup that can fail early. */
  prepare?(tasks: readonly PreparedTask[]): void;
  /** Called before a trajectory's first turn. */
  begin?(id: string, task: PreparedTask, index: number): void;
  /** Called when a trajectory has ended, whatever the reason. */
  end?(id: string): void;
  /**
   * One response per request, in order. An Error in place of a response fails only that trajectory; a rejected
   * promise fails every trajectory of the round. `seed` is the round's sampling seed.
   */
  respond(requests: readonly AgentRequest[], round: { seed: number }): Promise<(string | Error)[]>;
  /** A line about how it went (e.g. tokens generated), for the result file. */
  summary?(): string;
}

/**
 * Cuts a response where the model starts writing the environment's part: one response is one step. The default
 * stop is MLAgentBench's: the "Observation:" line that follows the Action Input.
 */
export function cutAtStop(text: string, stops: readonly string[] = DEFAULT_STOP_STRINGS): string {
  let end = text.length;
  for (const s of stops) {
    const i = text.indexOf(s);
    if (s.length > 0 && i >= 0 && i < end) end = i;
  }
  return text.slice(0, end);
}

export const DEFAULT_STOP_STRINGS: readonly string[] = ['\nObservation:'];

async function settle(promises: Promise<string>[]): Promise<(string | Error)[]> {
  const r = await Promise.allSettled(promises);
  return r.map((x) => (x.status === 'fulfilled' ? x.value : x.reason instanceof Error ? x.reason : new Error(String(x.reason))));
}

export interface ExpertAgentOptions {
  /** K: diverse candidate plans kept per task, as in collection (default 10). */
  ideas?: number;
  /** Candidate plans generated per task (default 100). */
  candidates?: number;
  /** Seed of the plans drawn per trajectory (default 0); the same seed and index give collection's plan. */
  seed?: number;
  /** Column name (default the expert's name). */
  name?: string;
}

/**
 * An expert as an agent: each trajectory gets a seed plan drawn exactly as collection draws it (the K most diverse
 * candidate plans of the task, then 1-3 of them for trajectory `index`), so the scripted expert's scores are
 * those of the data the policy was trained on.
 */
export function expertAgent(expert: Expert, options: ExpertAgentOptions = {}): EvalAgent {
  const k = options.ideas ?? 10;
  const candidates = options.candidates ?? 100;
  const seed = options.seed ?? 0;
  const ideas = new Map<string, TaskIdeas>();
  const live = new Map<string, TrajectoryExpert>();
  return {
    name: options.name ?? expert.name,
    kind: 'expert',
    detail: `${expert.name}, ${k} of ${candidates} idea plans, seed ${seed}`,
    temperature: null,
    prepare(tasks) {
      for (const t of tasks) if (!ideas.has(t.spec.name)) ideas.set(t.spec.name, taskIdeas(t, k, seed, candidates));
    },
    begin(id, task, index) {
      let ti = ideas.get(task.spec.name);
      if (!ti) ideas.set(task.spec.name, (ti = taskIdeas(task, k, seed, candidates)));
      live.set(id, expert.begin(task, seedPlan(ti, index, seed)));
    },
    end(id) {
      live.delete(id);
    },
    respond(requests) {
      return settle(requests.map((r) => live.get(r.id)!.respond(r.turn)));
    },
  };
}

export interface EndpointAgentOptions extends Omit<EndpointExpertOptions, 'seedHint'> {
  /** Column name (default "endpoint:<model>"). */
  name?: string;
  /** Cut each answer at these strings (default: the "Observation:" line). */
  stopStrings?: readonly string[];
}

/** Any OpenAI-compatible chat endpoint as an agent: the episode's messages as they are, retried on failures. */
export function endpointAgent(options: EndpointAgentOptions): EvalAgent {
  if (!options.model) throw new EndpointError('the endpoint agent needs a model name (--endpoint-model)');
  chatCompletionsUrl(options.url); // fails early on a bad URL
  checkEndpointOptions(options); // and on a time limit or attempt count that would hang or spin
  const stops = options.stopStrings ?? DEFAULT_STOP_STRINGS;
  return {
    name: options.name ?? `endpoint:${options.model}`,
    kind: 'endpoint',
    detail: `${options.url} (${options.model})`,
    temperature: options.temperature ?? null,
    settings: { maxTokens: options.maxTokens ?? null, stopStrings: stops },
    respond(requests) {
      return settle(requests.map(async (r) => cutAtStop(await chatWithRetry(options, r.turn.messages), stops)));
    },
  };
}

/** The sampling seed of round `round` of an evaluation seeded with `seed` (a u32). */
export function roundSeed(seed: number, round: number): number {
  return mixSeed(seed, `eval-round/${round}`);
}
