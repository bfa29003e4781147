import { readFileSync } from 'node:fs';
import type { ChatMessage } from '@mlagent/policy';
import { jsonErrorMessage } from '../config/schema.js';

/**
 * SFT data: a .jsonl file (one example per line) or a .json file (a list of examples), each one of
 *   - `{ "messages": [{ "role", "content" }, ...] }`  (OpenAI style; every assistant turn is a target)
 *   - `{ "prompt": "...", "response": "...", "system"?: "..." }`
 *   - `{ "conversations": [{ "from": "human" | "gpt" | "system", "value" }], "system"?: "..." }`  (ShareGPT, as
 *     LLaMA-Factory reads it; "user"/"assistant" are accepted for `from` too)
 * Any other fields (task, step...) are ignored.
 */

export class SftDataError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SftDataError';
  }
}

/** The file's text; bytes that are not UTF-8 are an error naming their line (decoding 'utf8' turned them into U+FFFD silently, which was then trained on). */
function readUtf8(path: string): string {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    throw new SftDataError(`cannot read SFT data ${path}: ${(e as Error).message}`);
  }
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch (e) {
    // Not every failure is bad bytes: a file too large for one string fails here too.
    if ((e as { code?: string }).code !== 'ERR_ENCODING_INVALID_ENCODED_DATA') throw new SftDataError(`cannot read SFT data ${path}: ${(e as Error).message}`);
    let line = 1;
    for (let start = 0; ; line++) {
      const end = bytes.indexOf(0x0a, start);
      try {
        new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(start, end < 0 ? bytes.length : end));
      } catch {
        break;
      }
      if (end < 0) break;
      start = end + 1;
    }
    throw new SftDataError(`${path}:${line}: not valid UTF-8 text`);
  }
}

export function readSftData(path: string): ChatMessage[][] {
  // TextDecoder drops a leading BOM (a Windows editor's), which JSON.parse rejected as an unexpected token.
  const text = readUtf8(path);
  const examples: { value: unknown; where: string }[] = [];
  if (path.toLowerCase().endsWith('.json')) {
    let list: unknown;
    try {
      list = JSON.parse(text);
    } catch (e) {
      throw new SftDataError(`${path}: not valid JSON (${jsonErrorMessage(text, e)})`);
    }
    if (!Array.isArray(list)) throw new SftDataError(`${path}: a .json data file must hold a list of examples`);
    list.forEach((value, i) => examples.push({ value, where: `${path} example ${i}` }));
  } else {
    text.split('\n').forEach((line, i) => {
      if (line.trim() === '') return;
      let value: unknown;
      try {
        value = JSON.parse(line);
      } catch (e) {
        throw new SftDataError(`${path}:${i + 1}: not valid JSON (${(e as Error).message})`);
      }
      examples.push({ value, where: `${path}:${i + 1}` });
    });
  }
  if (examples.length === 0) throw new SftDataError(`${path}: no examples`);
  return examples.map(({ value, where }) => toChat(value, where));
}

/** One example as a chat, whatever its format; errors name the example and what is wrong. */
export function toChat(example: unknown, where = 'example'): ChatMessage[] {
  if (typeof example !== 'object' || example === null || Array.isArray(example)) throw new SftDataError(`${where}: must be a JSON object`);
  const ex = example as Record<string, unknown>;
  const system = ex.system;
  if (system !== undefined && system !== null && typeof system !== 'string') throw new SftDataError(`${where}: 'system' must be a string`);
  const withSystem = (msgs: ChatMessage[]) => (typeof system === 'string' && system !== '' && msgs[0]?.role !== 'system' ? [{ role: 'system' as const, content: system }, ...msgs] : msgs);

  let messages: ChatMessage[];
  if (ex.messages !== undefined) {
    if (!Array.isArray(ex.messages)) throw new SftDataError(`${where}: 'messages' must be a list`);
    messages = ex.messages.map((m, i) => {
      const msg = m as Record<string, unknown>;
      if (typeof msg !== 'object' || msg === null || !['system', 'user', 'assistant'].includes(msg.role as string) || typeof msg.content !== 'string') {
        throw new SftDataError(`${where}: messages[${i}] needs role system|user|assistant and string content`);
      }
      return { role: msg.role as ChatMessage['role'], content: msg.content };
    });
  } else if (ex.conversations !== undefined) {
    if (!Array.isArray(ex.conversations)) throw new SftDataError(`${where}: 'conversations' must be a list`);
    const roles: Record<string, ChatMessage['role']> = { human: 'user', user: 'user', gpt: 'assistant', assistant: 'assistant', system: 'system' };
    messages = ex.conversations.map((t, i) => {
      const turn = t as Record<string, unknown>;
      // Own keys only: `from: "constructor"` (or "toString") found Object.prototype's function and made it the role.
      const role = typeof turn === 'object' && turn !== null && typeof turn.from === 'string' && Object.hasOwn(roles, turn.from) ? roles[turn.from] : undefined;
      if (!role || typeof turn.value !== 'string') throw new SftDataError(`${where}: conversations[${i}] needs from human|gpt|system and a string value`);
      return { role, content: turn.value };
    });
  } else if (ex.prompt !== undefined || ex.response !== undefined) {
    if (typeof ex.prompt !== 'string' || typeof ex.response !== 'string') throw new SftDataError(`${where}: 'prompt' and 'response' must both be strings`);
    messages = [
      { role: 'user', content: ex.prompt },
      { role: 'assistant', content: ex.response },
    ];
  } else {
    throw new SftDataError(`${where}: needs 'messages', 'conversations' (ShareGPT) or 'prompt' + 'response'`);
  }
  messages = withSystem(messages);
  if (!messages.some((m) => m.role === 'assistant')) throw new SftDataError(`${where}: has no assistant turn to learn from`);
  return messages;
}
