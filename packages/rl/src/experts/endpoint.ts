// The endpoint expert: any OpenAI-compatible chat completions server (OpenAI, vLLM, llama.cpp, `mlagent serve`).
// Flaky servers are retried with backoff; a response only ever reaches the episode whole.
import { fetchErrorText, printableSnippet, readResponseText, ResponseTooLargeError, retryAfterMs } from '@mlagent/env';
import { RetryableError, withRetry, type RetryOptions } from './retry.js';
import type { ChatMessage, Expert, ExpertTask, ExpertTurn, SeedPlan, TrajectoryExpert } from './types.js';

export interface EndpointExpertOptions extends RetryOptions {
  /** Server root ("http://host:8000", "https://api.openai.com/v1") or the full .../chat/completions URL. */
  url: string;
  model: string;
  /** Sent as a Bearer token (default: none). */
  apiKey?: string;
  /** Per-request time limit, body included (default 300 000 ms); a timed-out request is retried. */
  timeoutMs?: number;
  temperature?: number;
  maxTokens?: number;
  /**
   * Tell the expert the trajectory's seed ideas, appended to the current user prompt (default true). They go
   * only to the expert: the recorded prompts stay the episode's own, so SFT data never leans on the hint.
   */
  seedHint?: boolean;
  /** Largest response body read; a larger one is refused, not retried (default 32 MiB). */
  maxResponseBytes?: number;
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
  // fetch refuses such URLs (every attempt would fail alike), and the password would land in logs and result files.
  if (u.username || u.password) throw new EndpointError(`expert endpoint URL must not hold credentials (give the key as apiKey / --api-key)`);
  const root = url.replace(/\/+$/, '');
  if (root.endsWith('/chat/completions')) return root;
  return root.endsWith('/v1') ? `${root}/chat/completions` : `${root}/v1/chat/completions`;
}

// AbortSignal.timeout and setTimeout take at most 2^32 - 1 ms.
const MAX_MS = 2 ** 32 - 1;

/** Refuses option values that would hang, spin or fail every attempt alike (0, NaN, Infinity, negative). */
export function checkEndpointOptions(o: EndpointExpertOptions): void {
  const check = (name: string, v: number | undefined, ok: (v: number) => boolean, what: string) => {
    if (v !== undefined && (typeof v !== 'number' || !ok(v))) throw new EndpointError(`endpoint option ${name} must be ${what}, got ${String(v)}`);
  };
  const ms = (v: number) => Number.isFinite(v) && v >= 0 && v <= MAX_MS;
  check('timeoutMs', o.timeoutMs, (v) => ms(v) && v > 0, 'a positive number of milliseconds');
  check('maxAttempts', o.maxAttempts, (v) => Number.isInteger(v) && v >= 1, 'a positive integer');
  check('baseDelayMs', o.baseDelayMs, ms, 'a number of milliseconds >= 0');
  check('maxDelayMs', o.maxDelayMs, ms, 'a number of milliseconds >= 0');
  check('maxTokens', o.maxTokens, (v) => Number.isInteger(v) && v >= 1, 'a positive integer');
  check('temperature', o.temperature, (v) => Number.isFinite(v) && v >= 0, 'a number >= 0');
  check('maxResponseBytes', o.maxResponseBytes, (v) => Number.isFinite(v) && v > 0, 'a positive number of bytes');
}

/**
 * One POST of a chat body to the server: the parsed JSON answer. Network errors, time-outs (body included),
 * 408/409/425/429/5xx and answers that are not JSON throw RetryableError; other HTTP errors (bad key, unknown
 * model), redirects and bodies over maxResponseBytes throw EndpointError.
 */
async function postChat(options: EndpointExpertOptions, body: Record<string, unknown>): Promise<unknown> {
  const url = chatCompletionsUrl(options.url);
  const doFetch = options.fetch ?? fetch;
  const timeoutMs = Math.ceil(options.timeoutMs ?? 300_000);
  const maxBytes = options.maxResponseBytes ?? 32 * 1024 * 1024;
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (options.apiKey) headers.authorization = `Bearer ${options.apiKey}`;
  const signal = AbortSignal.timeout(timeoutMs);
  let res: Response;
  let text: string;
  try {
    // Not followed: a redirect would turn the POST into a GET or carry the key to another host.
    res = await doFetch(url, { method: 'POST', headers, body: JSON.stringify(body), signal, redirect: 'manual' });
    if (res.status >= 300 && res.status < 400) {
      await res.body?.cancel().catch(() => undefined);
      throw new EndpointError(
        `${url} answered with a redirect (HTTP ${res.status}) to ${res.headers.get('location') ?? 'nowhere'} (not followed; give the final URL)`,
      );
    }
    text = await readResponseText(res, maxBytes);
  } catch (e) {
    if (e instanceof EndpointError) throw e;
    if (e instanceof ResponseTooLargeError) throw new EndpointError(`${url} sent an answer that ${e.message} (the limit is ${maxBytes})`);
    throw new RetryableError(signal.aborted ? `no answer from ${url} within ${timeoutMs} ms` : `request to ${url} failed: ${fetchErrorText(e)}`);
  }
  if ([408, 409, 425, 429].includes(res.status) || res.status >= 500)
    throw new RetryableError(`${url} answered HTTP ${res.status}: ${printableSnippet(text, 200)}`, retryAfterMs(res.headers.get('retry-after')));
  if (!res.ok) {
    const hint = res.status === 401 || res.status === 403 ? ' (check the API key)' : res.status === 404 ? ' (check the URL and the model name)' : '';
    throw new EndpointError(`${url} answered HTTP ${res.status} (not retried): ${printableSnippet(text, 300)}${hint}`);
  }
  try {
    return JSON.parse(text);
  } catch {
    if ((res.headers.get('content-type') ?? '').includes('text/event-stream'))
      throw new RetryableError(`${url} answered with an event stream (text/event-stream), though no stream was asked for`);
    throw new RetryableError(`${url} answered with something that is not JSON: ${printableSnippet(text, 200)}`);
  }
}

/** The answer's text: a string, or the text parts of a content array; else why there is none. */
function answerText(answer: unknown): { text: string } | { why: string } {
  if (answer === null || typeof answer !== 'object' || Array.isArray(answer)) return { why: `JSON that is not an object: ${JSON.stringify(answer).slice(0, 100)}` };
  const choices = (answer as { choices?: unknown }).choices;
  if (!Array.isArray(choices) || choices.length === 0) return { why: 'no choices' };
  const message = (choices[0] as { message?: { content?: unknown; tool_calls?: unknown } } | null)?.message;
  let content = message?.content;
  if (Array.isArray(content))
    content = content
      .map((p) => (p as { text?: unknown } | null)?.text)
      .filter((t): t is string => typeof t === 'string')
      .join('');
  if (typeof content === 'string' && content.trim() !== '') return { text: content };
  if (message?.tool_calls !== undefined) return { why: 'tool calls but no choices[0].message.content text' };
  return { why: 'no choices[0].message.content text' };
}

/** One chat request, retried on network errors, time-outs, 408/409/425/429/5xx and malformed answers. */
export async function chatWithRetry(options: EndpointExpertOptions, messages: ChatMessage[]): Promise<string> {
  checkEndpointOptions(options);
  const body: Record<string, unknown> = { model: options.model, messages };
  if (options.temperature !== undefined) body.temperature = options.temperature;
  if (options.maxTokens !== undefined) body.max_tokens = options.maxTokens;
  return withRetry(async () => {
    const answer = answerText(await postChat(options, body));
    if ('text' in answer) return answer.text;
    throw new RetryableError(`${chatCompletionsUrl(options.url)} answered with ${answer.why}`);
  }, options);
}

/**
 * Checks, before any long run, that the server answers a tiny chat request for this model with a completion
 * (any choices list: a reasoning model may spend its few tokens on thinking). Retries like chatWithRetry but 3
 * attempts by default and a 60 s time limit; throws EndpointError (bad key, unknown model) or
 * RetriesExhaustedError (unreachable, failing).
 */
export async function checkEndpoint(options: EndpointExpertOptions): Promise<void> {
  checkEndpointOptions(options);
  const o = { maxAttempts: 3, ...options, timeoutMs: Math.min(options.timeoutMs ?? 60_000, 60_000) };
  const body = { model: o.model, messages: [{ role: 'user', content: 'Reply with OK.' }], max_tokens: 16 };
  await withRetry(async () => {
    const answer = (await postChat(o, body)) as { choices?: unknown } | null;
    if (!Array.isArray(answer?.choices)) throw new RetryableError(`${chatCompletionsUrl(o.url)} answered without a choices list: ${String(JSON.stringify(answer)).slice(0, 200)}`);
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
    checkEndpointOptions(options);
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
