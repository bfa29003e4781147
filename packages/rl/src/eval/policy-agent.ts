// Our policy as an agent: each round's prompts are rendered with the policy's chat template and sampled in one
// batched generate() call, stopping at the end of the turn or where the model starts writing the observation.
import { defaultStopTokenIds, generate, type ChatMessage, type ChatTemplateName, type QwenModel, type QwenTokenizer } from '@mlagent/policy';
import { keepPromptEnd, policyMessages } from '../train/prompt.js';
import { DEFAULT_STOP_STRINGS, cutAtStop, type AgentRequest, type EvalAgent } from './agent.js';

export interface PolicyAgentOptions {
  /** The loaded model; set `model.adapter` (loadAdapter) to evaluate a LoRA policy. */
  model: QwenModel;
  tokenizer: QwenTokenizer;
  /** Column name (default "policy"). */
  name?: string;
  /** Model and adapter directories, for the result file. */
  detail?: string;
  /** Chat template (default 'ml-agent', the SFT template). */
  template?: ChatTemplateName;
  /**
   * 'messages' (default): the episode's chat, turn by turn. 'compact': the form of the config's ppo.compactPrompts,
   * which SFT and RL train on: no env system message (the actions and the response format), and past assistant
   * turns cut to their Action / Action Input. 'prompt': the episode's prompt() as one user message, the form of
   * the per-step SFT export.
   */
  promptFormat?: PromptFormat;
  /** Longest response in tokens (default 1024). */
  maxNewTokens?: number;
  /** Default 0.7 (the config's eval.temperature); 0 is greedy. */
  temperature?: number;
  topP?: number;
  /** Default: the "Observation:" line. End-of-turn tokens always stop. */
  stopStrings?: readonly string[];
  /** Most prompts per generate() call (default: the whole round). */
  maxBatch?: number;
  /**
   * How many of a round's prompts (token ids, as cut to the context) one generate() call takes, e.g. the most a
   * memory plan fits (evalBatchFor); within maxBatch. Default: maxBatch.
   */
  batchFor?: (prompts: readonly (readonly number[])[]) => number;
  /** Prompt + response tokens at most (default: the model's max_position_embeddings); longer prompts keep their end. */
  maxContext?: number;
}

export type PromptFormat = 'messages' | 'compact' | 'prompt';
export const PROMPT_FORMATS: readonly PromptFormat[] = ['messages', 'compact', 'prompt'];

export interface PolicyAgentStats {
  responses: number;
  /** Responses that hit maxNewTokens without a stop. */
  cutAtLength: number;
  /** Prompts longer than maxContext − maxNewTokens, cut from the front. */
  truncatedPrompts: number;
  generatedTokens: number;
}

export interface PolicyAgent extends EvalAgent {
  readonly stats: PolicyAgentStats;
}

/** The chat the policy agent renders for a request in a prompt format (see PolicyAgentOptions.promptFormat). */
export function policyChatFor(r: AgentRequest, promptFormat: PromptFormat): ChatMessage[] {
  if (promptFormat === 'prompt') return [{ role: 'user', content: r.prompt }];
  return policyMessages(r.turn.messages, promptFormat === 'compact');
}

export function policyAgent(options: PolicyAgentOptions): PolicyAgent {
  const { model, tokenizer } = options;
  const template = options.template ?? 'ml-agent';
  const promptFormat = options.promptFormat ?? 'messages';
  const maxNewTokens = options.maxNewTokens ?? 1024;
  const temperature = options.temperature ?? 0.7;
  const stops = options.stopStrings ?? DEFAULT_STOP_STRINGS;
  const maxContext = options.maxContext ?? model.config.maxPositionEmbeddings;
  const maxBatch = options.maxBatch ?? Infinity;
  if (!Number.isInteger(maxNewTokens) || maxNewTokens < 1) throw new RangeError(`policy agent: maxNewTokens must be a positive integer, got ${maxNewTokens}`);
  if (!(maxContext > maxNewTokens)) throw new RangeError(`policy agent: maxContext (${maxContext}) must exceed maxNewTokens (${maxNewTokens})`);
  if (!(maxBatch >= 1)) throw new RangeError(`policy agent: maxBatch must be >= 1, got ${maxBatch}`);
  if (!PROMPT_FORMATS.includes(promptFormat)) throw new RangeError(`policy agent: promptFormat must be one of ${PROMPT_FORMATS.join(', ')}; got '${promptFormat}'`);
  const stopTokenIds = defaultStopTokenIds(model.config, tokenizer);
  const decode = (ids: number[]) => tokenizer.decode(ids, { skipSpecialTokens: true });
  const stats: PolicyAgentStats = { responses: 0, cutAtLength: 0, truncatedPrompts: 0, generatedTokens: 0 };

  const encode = (r: AgentRequest): number[] => {
    const ids = tokenizer.encode(tokenizer.applyChatTemplate(policyChatFor(r, promptFormat), { template, addGenerationPrompt: true }));
    const room = maxContext - maxNewTokens;
    if (ids.length > room) stats.truncatedPrompts++;
    return keepPromptEnd(ids, room);
  };

  return {
    name: options.name ?? 'policy',
    kind: 'policy',
    detail: options.detail ?? '',
    temperature,
    // What a resume must repeat. Not the calls' sizes (maxBatch, batchFor): they change which seed stream a prompt
    // draws from, not what the policy does, and a resume may need smaller ones to fit the device.
    settings: { dtype: model.dtype, template, promptFormat, maxNewTokens, maxPromptTokens: maxContext - maxNewTokens, topP: options.topP ?? null, stopStrings: stops },
    stats,
    summary: () =>
      `${stats.responses} responses, ${stats.responses === 0 ? 0 : (stats.generatedTokens / stats.responses).toFixed(1)} tokens each on average, ` +
      `${stats.cutAtLength} cut at ${maxNewTokens} tokens, ${stats.truncatedPrompts} prompts cut to the ${maxContext}-token context`,
    async respond(requests, round) {
      const out: string[] = [];
      const prompts = requests.map(encode);
      const fits = options.batchFor ? options.batchFor(prompts) : Infinity;
      if (!(Number.isInteger(fits) || fits === Infinity) || fits < 1) throw new RangeError(`policy agent: batchFor must give a positive integer, got ${fits}`);
      const per = Math.min(maxBatch, fits);
      for (let b = 0; b < requests.length; b += per) {
        const results = await generate(model, prompts.slice(b, b + per), {
          maxNewTokens,
          temperature,
          topP: options.topP,
          // Chunks of one round draw from distinct streams.
          seed: (round.seed + b) >>> 0,
          stopTokenIds,
          stopStrings: stops,
          decode,
        });
        for (const r of results) {
          stats.responses++;
          stats.generatedTokens += r.ids.length;
          if (r.finishReason === 'length') stats.cutAtLength++;
          out.push(cutAtStop(decode(r.ids), stops));
        }
      }
      return out;
    },
  };
}
