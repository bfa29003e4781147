import { EndpointError, RetriesExhaustedError, checkEndpoint } from '@mlagent/rl';
import { CommandFailedError } from './args.js';

/**
 * One small chat request to an OpenAI-compatible endpoint before a long run, so a wrong URL, key or model name
 * fails in seconds rather than after every trajectory has retried it.
 */
export async function checkEndpointFirst(command: string, url: string, model: string): Promise<void> {
  process.stderr.write(`${command}: checking ${url} (model ${model})\n`);
  try {
    await checkEndpoint({
      url,
      model,
      apiKey: process.env.OPENAI_API_KEY,
      onRetry: ({ attempt, delayMs, error }) => process.stderr.write(`${command}: endpoint check failed (attempt ${attempt}: ${error.message}); retrying in ${delayMs} ms\n`),
    });
  } catch (e) {
    if (e instanceof EndpointError || e instanceof RetriesExhaustedError) throw new CommandFailedError(`${command}: the endpoint does not answer for model ${model}: ${e.message}`);
    throw e;
  }
}
