import type { QwenConfig } from '../config.js';
import type { QwenTokenizer } from '../tokenizer.js';

/**
 * Token ids that end a reply: the tokenizer's eos, <|im_end|> (end of a ChatML turn), <|endoftext|> (end of an
 * ML-Agent template turn and of plain text) and config.json's eos_token_id(s).
 */
export function defaultStopTokenIds(config: QwenConfig, tokenizer: QwenTokenizer): number[] {
  const eos = config.eosTokenId === undefined ? [] : Array.isArray(config.eosTokenId) ? config.eosTokenId : [config.eosTokenId];
  return [...new Set([tokenizer.eosTokenId, tokenizer.imEndId, tokenizer.endOfTextId, ...eos])];
}
