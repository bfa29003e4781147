// The compact chat: the episode's messages without the env's system message (the actions and the response format),
// and with past assistant turns cut to their Action / Action Input. Tiny policies are trained on it (the config's
// ppo.compactPrompts), so whoever prompts them, our trainer or a client of the env server, must show them the same.
import type { ChatTurn } from '../episode/types.js';
import { actionLineStart } from './parse.js';

/**
 * The line of the "Action:" header the parser reads and everything after it (the Action Input); the whole text when
 * there is none. The header is found as parseResponse finds it ("**Action:**", "action:", indented): a plain
 * "Action:" search kept the whole Reflection and Thought of such turns in the compact chat.
 */
export function actionPart(response: string): string {
  const at = actionLineStart(response);
  return at < 0 ? response : response.slice(at);
}

export function compactMessages<T extends ChatTurn>(messages: readonly T[]): T[] {
  return messages.filter((m) => m.role !== 'system').map((m) => (m.role === 'assistant' ? { ...m, content: actionPart(m.content) } : m));
}
