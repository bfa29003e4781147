// The endpoint expert: any OpenAI-compatible chat completions server (OpenAI, vLLM, llama.cpp, `mlagent serve`).
// Flaky servers are retried with backoff; a response only ever reaches the episode whole.
import { RetryableError, withRetry, type RetryOptions } from './retry.js';
import type { ChatMessage, Expert, ExpertTask, ExpertTurn, SeedPlan, TrajectoryExpert } from './types.js';

export interface EndpointExpertOptions extends RetryOptions {
  /** Server root ("http://host:8000", "https://api.openai.com/v1") or the full .../chat/completions URL. */
  url: string;
  model: string;
  /** Sent as a Bearer token (default: none). */
  apiKey?: string;
  /** Per-request time limit (default 300 000 ms); a timed-out request is retried. */
  timeoutMs?: number;
  temperature?: number;
  maxTokens?: number;
  /**
   * Tell the expert the trajectory's seed ideas, appended to the current user prompt (default true). They go
   * only to the expert: the recorded prompts stay the episode's own, so SFT data never leans on the hint.
   */
  seedHint?: boolean;
  fetch?: typeof fetch;
}

/** The server refused the request in a way retrying cannot fix (bad key, unknown model, bad request). */
export class EndpointError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'EndpointError';
  }
}

/** The chat completions URL for a server root, a /v1 root, or a full URL. */
export function chatCompletionsUrl(url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new EndpointError(`expert endpoint "${url}" is not a URL (expected e.g. http://localhost:8000/v1)`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new EndpointError(`expert endpoint "${url}" must be http(s)`);
  const root = url.replace(/\/+$/, '');
  if (root.endsWith('/chat/completions')) return root;
  return root.endsWith('/v1') ? `${root}/chat/completions` : `${root}/v1/chat/completions`;
}

function retryAfterMs(h: string | null): number | undefined {
  if (h === null) return undefined;
  const s = Number(h);
  if (Number.isFinite(s) && s >= 0) return s * 1000;
  const t = Date.parse(h);
  return Number.isNaN(t) ? undefined : Math.max(0, t - Date.now());
}

/**
 * One POST of a chat body to the server: the parsed JSON answer. Network errors, time-outs, 408/409/425/429/5xx and
 * answers that are not JSON throw RetryableError; other HTTP errors (bad key, unknown model) throw EndpointError.
 */
async function postChat(options: EndpointExpertOptions, body: Record<string, unknown>): Promise<unknown> {
  const url = chatCompletionsUrl(options.url);
  const doFetch = options.fetch ?? fetch;
  const timeoutMs = options.timeoutMs ?? 300_000;
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (options.apiKey) headers.authorization = `Bearer ${options.apiKey}`;
  let res: Response;
  let text: string;
  try {
    res = await doFetch(url, { method: 'POST', headers, body: JSON.stringify(body), signal: AbortSignal.timeout(timeoutMs) });
    text = await res.text();
  } catch (e) {
    const err = e as Error & { cause?: { code?: string; message?: string } };
    const why = err.cause?.code ?? err.cause?.message;
    throw new RetryableError(
      err.name === 'TimeoutError' ? `no answer from ${url} within ${timeoutMs} ms` : `request to ${url} failed: ${err.message}${why ? ` (${why})` : ''}`,
    );
  }
  if ([408, 409, 425, 429].includes(res.status) || res.status >= 500)
    throw new RetryableError(`${url} answered HTTP ${res.status}: ${text.slice(0, 200)}`, retryAfterMs(res.headers.get('retry-after')));
  if (!res.ok) throw new EndpointError(`${url} answered HTTP ${res.status} (not retried): ${text.slice(0, 300)}`);
  try {
    return JSON.parse(text);
  } catch {
    throw new RetryableError(`${url} answered with something that is not JSON: ${text.slice(0, 200)}`);
  }
}

/** One chat request, retried on network errors, time-outs, 408/409/425/429/5xx and malformed answers. */
export async function chatWithRetry(options: EndpointExpertOptions, messages: ChatMessage[]): Promise<string> {
  const body: Record<string, unknown> = { model: options.model, messages };
  if (options.temperature !== undefined) body.temperature = options.temperature;
  if (options.maxTokens !== undefined) body.max_tokens = options.maxTokens;
  return withRetry(async () => {
    const answer = (await postChat(options, body)) as { choices?: { message?: { content?: unknown } }[] } | null;
    const content = answer?.choices?.[0]?.message?.content;
    if (typeof content !== 'string' || content.trim() === '')
      throw new RetryableError(`${chatCompletionsUrl(options.url)} answered without a choices[0].message.content text`);
    return content;
  }, options);
}

/**
 * Checks, before any long run, that the server answers a tiny chat request for this model with a completion
 * (any choices list: a reasoning model may spend its few tokens on thinking). Retries like chatWithRetry but 3
 * attempts by default and a 60 s time limit; throws EndpointError (bad key, unknown model) or
 * RetriesExhaustedError (unreachable, failing).
 */
export async function checkEndpoint(options: EndpointExpertOptions): Promise<void> {
  const o = { maxAttempts: 3, ...options, timeoutMs: Math.min(options.timeoutMs ?? 60_000, 60_000) };
  const body = { model: o.model, messages: [{ role: 'user', content: 'Reply with OK.' }], max_tokens: 16 };
  await withRetry(async () => {
    const answer = (await postChat(o, body)) as { choices?: unknown } | null;
    if (!Array.isArray(answer?.choices)) throw new RetryableError(`${chatCompletionsUrl(o.url)} answered without a choices list: ${JSON.stringify(answer).slice(0, 200)}`);
  }, o);
}

/** The seed ideas as a note for the expert. */
export function seedHintText(seed: SeedPlan): string {
  const lines = seed.candidates.map((c, i) => `${i + 1}. ${c.text}`);
  return `\n\nIdeas worth trying in this task (explore them, one change at a time, and keep what improves the score):\n${lines.join('\n')}`;
}

export class EndpointExpert implements Expert {
  readonly name: string;
  constructor(private readonly options: EndpointExpertOptions) {
    if (!options.model) throw new EndpointError('the endpoint expert needs a model name (--expert-model)');
    chatCompletionsUrl(options.url); // fail early on a bad URL
    this.name = `endpoint:${options.model}`;
  }

  begin(_task: ExpertTask, seed: SeedPlan): TrajectoryExpert {
    const hint = this.options.seedHint === false ? '' : seedHintText(seed);
    return {
      respond: (turn: ExpertTurn) => {
        const messages = turn.messages.map((m) => ({ ...m }));
        const lastUser = messages.map((m) => m.role).lastIndexOf('user');
        if (hint && lastUser >= 0) messages[lastUser].content += hint;
        return chatWithRetry(this.options, messages);
      },
    };
  }
}
