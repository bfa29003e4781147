// How often sampled actions fail to parse: the first thing SFT must teach. The probe samples actions at the
// states of a collection (the prompts RL and evaluation use) and runs each through the env's response parser,
// the same check that gives a rollout its 'invalid-format' reward.
import { parseResponse, type ParseErrorKind } from '@mlagent/env';
import { defaultStopTokenIds, generate, type QwenModel, type QwenTokenizer } from '@mlagent/policy';
import { mixSeed } from '../collect/seeds.js';
import type { ChatMessage } from '../experts/types.js';
import { renderPrompt } from '../train/prompt.js';

export interface FormatProbeOptions {
  model: QwenModel;
  tokenizer: QwenTokenizer;
  /** The states, as the chat the policy is prompted with at each. */
  states: readonly { task: string; messages: readonly ChatMessage[] }[];
  compactPrompts: boolean;
  samplesPerState: number;
  maxNewTokens: number;
  temperature: number;
  topP?: number;
  seed: number;
}

export interface FormatProbeSample {
  task: string;
  text: string;
  ok: boolean;
  /** Why the parser refused it. */
  error?: ParseErrorKind;
}

export interface FormatProbeResult {
  samples: number;
  formatErrors: number;
  /** formatErrors / samples: responses that are not a known action with valid arguments. */
  formatErrorRate: number;
  byKind: Partial<Record<ParseErrorKind, number>>;
  /** Every sampled response, in state order. */
  responses: FormatProbeSample[];
}

/** Samples `samplesPerState` actions at each state (one batch per state) and parses them. */
export async function probeFormat(o: FormatProbeOptions): Promise<FormatProbeResult> {
  if (o.states.length === 0) throw new Error('probeFormat: no states to sample at');
  if (!Number.isInteger(o.samplesPerState) || o.samplesPerState < 1) throw new Error(`probeFormat: samplesPerState must be a positive integer, got ${o.samplesPerState}`);
  const responses: FormatProbeSample[] = [];
  const byKind: Partial<Record<ParseErrorKind, number>> = {};
  for (const [i, state] of o.states.entries()) {
    const prompt = renderPrompt(o.tokenizer, state.messages, o.compactPrompts);
    const generated = await generate(o.model, Array.from({ length: o.samplesPerState }, () => prompt), {
      maxNewTokens: o.maxNewTokens,
      temperature: o.temperature,
      topP: o.topP,
      seed: mixSeed(o.seed, `format-probe/${i}`),
      stopTokenIds: defaultStopTokenIds(o.model.config, o.tokenizer),
    });
    for (const g of generated) {
      const text = o.tokenizer.decode(g.ids, { skipSpecialTokens: true });
      const parsed = parseResponse(text);
      if (parsed.ok) responses.push({ task: state.task, text, ok: true });
      else {
        byKind[parsed.error.kind] = (byKind[parsed.error.kind] ?? 0) + 1;
        responses.push({ task: state.task, text, ok: false, error: parsed.error.kind });
      }
    }
  }
  const formatErrors = responses.filter((r) => !r.ok).length;
  return { samples: responses.length, formatErrors, formatErrorRate: formatErrors / responses.length, byKind, responses };
}

/** `count` states spread evenly over `states` (all of them when there are fewer), in their order. */
export function spreadStates<T>(states: readonly T[], count: number): T[] {
  if (states.length <= count) return [...states];
  return Array.from({ length: count }, (_, k) => states[Math.floor((k * states.length) / count)]);
}
