// Which responses make the same env step from a state, so that one run can stand for all of them (RL's reused
// samples, evaluation's shared steps).
import { parseResponse } from './parse.js';
import { ACTION_NAMES } from './schema.js';

/** Object keys sorted at every level, so that `{"a":1,"b":2}` and `{"b":2,"a":1}` print alike. */
function sortedJson(value: unknown): string {
  return JSON.stringify(value, (_, v: unknown) =>
    v !== null && typeof v === 'object' && !Array.isArray(v) ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) : v,
  );
}

/**
 * Equal for responses the env treats alike: the same action call (the parsed Action and Action Input, whatever
 * Reflection, Thought or spacing surround them), or, for a response that does not parse, the same text, since
 * its observation quotes what went wrong.
 */
export function actionCallKey(response: string): string {
  const parsed = parseResponse(response, { actions: ACTION_NAMES });
  return parsed.ok ? `call:${sortedJson([parsed.action, parsed.args])}` : `text:${response}`;
}
