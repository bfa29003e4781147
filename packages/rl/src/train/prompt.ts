// What the policy sees of a state and learns to answer: the episode's chat in the chat template SFT trained on.
// Compact mode (for tiny models, where every token costs a pass over the 152k-row LM head) leaves out the env's
// long system message (the template's short one stands in) and keeps only the Action / Action Input part of
// assistant turns. SFT data, RL rollouts and evaluation all go through these functions, so the stages agree.
import { actionPart, compactMessages } from '@mlagent/env';
import type { QwenTokenizer } from '@mlagent/policy';
import type { ChatMessage } from '../experts/types.js';

/** The compact form is the env's (compactMessages), so that clients of the env server can prompt the same way. */
export function policyMessages(messages: readonly ChatMessage[], compact: boolean): ChatMessage[] {
  return compact ? compactMessages(messages) : [...messages];
}

/** A training chat: the state's messages and the response to learn. */
export function policyChat(messages: readonly ChatMessage[], response: string, compact: boolean): ChatMessage[] {
  return [...policyMessages(messages, compact), { role: 'assistant', content: compact ? actionPart(response) : response }];
}

/** Prompt token ids ending in an open assistant turn. */
export function renderPrompt(tokenizer: QwenTokenizer, messages: readonly ChatMessage[], compact: boolean): number[] {
  return tokenizer.encode(tokenizer.applyChatTemplate(policyMessages(messages, compact), { template: 'ml-agent', addGenerationPrompt: true }));
}

/** The last `room` tokens of a prompt, or all of it where it fits: RL and evaluation cut long prompts alike. */
export function keepPromptEnd(ids: number[], room: number): number[] {
  return ids.length <= room ? ids : ids.slice(ids.length - room);
}
