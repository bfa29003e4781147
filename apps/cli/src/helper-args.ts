import type { HelperLlmConfig } from '@mlagent/env';
import { UsageError } from './args.js';

/**
 * --helper-url and --helper-model as the env's helper model (its key from $MLAGENT_HELPER_API_KEY), or null: off.
 * A URL that is not http(s) is refused here, not at the first helper action of some episode later.
 */
export function helperFromArgs(command: string, url: string | undefined, model: string | undefined): HelperLlmConfig | null {
  if (Boolean(url) !== Boolean(model)) throw new UsageError(`${command}: --helper-url and --helper-model go together`);
  if (!url) return null;
  if (!/^https?:\/\/[^/\s]/i.test(url)) throw new UsageError(`${command}: --helper-url must be an http(s) URL, got '${url}'`);
  return { baseUrl: url, model: model!, apiKey: process.env.MLAGENT_HELPER_API_KEY };
}
