// The collection's expert steps as training chats: SFT learns from them, and PPO-ptx keeps learning from them.
import type { ChatTemplateName, QwenTokenizer } from '@mlagent/policy';
import { readCollection, stepsInOrder } from '../collect/records.js';
import { encodeChat, type EncodedExample } from '../sft/tokenize.js';
import { policyChat } from './prompt.js';

/** Every recorded step as a chat ending in the expert's response, in trajectory and step order. */
export function sftChats(stepsFile: string, compact: boolean) {
  const steps = stepsInOrder(readCollection(stepsFile).records);
  if (steps.length === 0) throw new Error(`train: ${stepsFile} has no expert step to fine-tune on`);
  return steps.map((s) => policyChat(s.messages, s.response, compact));
}

/** The expert steps tokenized as SFT tokenizes them (the assistant tokens are the targets). */
export function expertExamples(tokenizer: QwenTokenizer, stepsFile: string, compact: boolean, template: ChatTemplateName, maxSeqLen: number): EncodedExample[] {
  return sftChats(stepsFile, compact)
    .map((chat) => encodeChat(tokenizer, chat, template, maxSeqLen))
    .filter((e) => e.targets > 0);
}
