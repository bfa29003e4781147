import type { ChatMessage, ChatTemplateName, QwenTokenizer } from '@mlagent/policy';
import { SftDataError } from './data.js';

export interface EncodedExample {
  ids: number[];
  /** mask[t] = 1 when token t is a target (an assistant token); mask[0] is always 0. */
  mask: Uint8Array;
  /** Number of targets. */
  targets: number;
  truncated: boolean;
}

/**
 * Tokenizes a chat so that only assistant turns are learned. Each assistant turn's tokens (its content and the
 * end-of-turn token, not the whitespace after it) are targets; the system and user turns and the template's
 * assistant header are context. Turns are rendered as prefixes of the whole chat and tokenized piece by piece,
 * which requires (and checks) that the template renders each prefix as a prefix of the next.
 */
export function encodeChat(tokenizer: QwenTokenizer, messages: ChatMessage[], template: ChatTemplateName, maxSeqLen: number): EncodedExample {
  const endOfTurn = template === 'ml-agent' ? tokenizer.endOfTextId : tokenizer.imEndId;
  const ids: number[] = [];
  const mask: number[] = [];
  let rendered = '';
  const append = (text: string, target: boolean) => {
    const piece = tokenizer.encode(text);
    let last = piece.length;
    if (target) {
      const end = piece.lastIndexOf(endOfTurn);
      if (end >= 0) last = end + 1; // what follows the end-of-turn token is formatting, not content
    }
    piece.forEach((id, i) => {
      ids.push(id);
      mask.push(target && i < last ? 1 : 0);
    });
  };
  const extend = (full: string, target: boolean, what: string) => {
    if (!full.startsWith(rendered)) throw new SftDataError(`chat template '${template}' does not render ${what} as an extension of the turns before it; assistant-only masking needs that`);
    append(full.slice(rendered.length), target);
    rendered = full;
  };
  messages.forEach((m, i) => {
    if (m.role !== 'assistant') return;
    extend(tokenizer.applyChatTemplate(messages.slice(0, i), { template, addGenerationPrompt: true }), false, `the header of turn ${i}`);
    extend(tokenizer.applyChatTemplate(messages.slice(0, i + 1), { template }), true, `assistant turn ${i}`);
  });
  const full = tokenizer.applyChatTemplate(messages, { template });
  if (full.length > rendered.length) extend(full, false, 'the turns after the last assistant turn');

  const truncated = ids.length > maxSeqLen;
  if (truncated) {
    ids.length = maxSeqLen;
    mask.length = maxSeqLen;
  }
  mask[0] = 0; // the first token has no prediction
  const m = Uint8Array.from(mask);
  return { ids, mask: m, targets: m.reduce((a, b) => a + b, 0), truncated };
}
