// A small client for an OpenAI-compatible chat completions endpoint (vLLM, llama.cpp server, OpenAI, ...):
// the helper model behind Understand File, the AI edits and Reflection.

import { fetchErrorText, printableSnippet, readResponseText, ResponseTooLargeError, retryAfterMs } from './http-response.js';

export interface HelperLlmConfig {
  /** Server root, e.g. "http://localhost:8000" (a trailing "/v1" is accepted). */
  baseUrl: string;
  model: string;
  apiKey?: string;
  /** Per-request timeout, body included. Default 120 000 ms. */
  timeoutMs?: number;
  /** Attempts per request (network errors, 408, 429 and 5xx are retried with backoff). Default 3. */
  attempts?: number;
  /** Largest answer in tokens. Default 4000. */
  maxTokens?: number;
  /** Cap on one wait between attempts, a server's Retry-After included. Default 30 000 ms. */
  maxDelayMs?: number;
  /** Largest response body read; a larger one is refused. Default 32 MiB. */
  maxResponseBytes?: number;
}

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

/** The helper could not give an answer; the message says why (shown to the agent as an EnvError). */
export class HelperLlmError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'HelperLlmError';
  }
}

function endpoint(baseUrl: string): string {
  let u: URL;
  try {
    u = new URL(baseUrl);
  } catch {
    throw new HelperLlmError(`the helper model's URL "${baseUrl}" is not a URL (expected e.g. http://localhost:8000/v1)`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new HelperLlmError(`the helper model's URL "${baseUrl}" must be http(s)`);
  // fetch refuses such URLs anyway, and the password would end up in error messages.
  if (u.username || u.password) throw new HelperLlmError(`the helper model's URL must not hold credentials (give the key as apiKey)`);
  const root = baseUrl.replace(/\/+$/, '');
  return root.endsWith('/v1') ? `${root}/chat/completions` : `${root}/v1/chat/completions`;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// AbortSignal.timeout and setTimeout take at most 2^32 - 1 ms.
const MAX_MS = 2 ** 32 - 1;

function checkNumber(name: string, v: number | undefined, ok: (v: number) => boolean, what: string): void {
  if (v !== undefined && (typeof v !== 'number' || !ok(v))) throw new HelperLlmError(`helper model config: ${name} must be ${what}, got ${String(v)}`);
}

function checkConfig(c: HelperLlmConfig): void {
  checkNumber('timeoutMs', c.timeoutMs, (v) => Number.isFinite(v) && v > 0 && v <= MAX_MS, 'a positive number of milliseconds');
  checkNumber('attempts', c.attempts, (v) => Number.isInteger(v) && v >= 1, 'a positive integer');
  checkNumber('maxTokens', c.maxTokens, (v) => Number.isInteger(v) && v >= 1, 'a positive integer');
  checkNumber('maxDelayMs', c.maxDelayMs, (v) => Number.isFinite(v) && v >= 0 && v <= MAX_MS, 'a number of milliseconds >= 0');
  checkNumber('maxResponseBytes', c.maxResponseBytes, (v) => Number.isFinite(v) && v > 0, 'a positive number of bytes');
}

/** The answer's text: a string, or the text parts of a content array; else why there is none. */
function answerText(parsed: unknown): { text: string } | { why: string } {
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) return { why: `the answer is JSON but not an object: ${JSON.stringify(parsed).slice(0, 100)}` };
  const choices = (parsed as { choices?: unknown }).choices;
  if (!Array.isArray(choices) || choices.length === 0) return { why: 'the answer has no choices' };
  const message = (choices[0] as { message?: { content?: unknown; tool_calls?: unknown } } | null)?.message;
  const content = message?.content;
  if (typeof content === 'string') return { text: content };
  if (Array.isArray(content)) {
    const parts = content.filter((p): p is { text: string } => typeof (p as { text?: unknown } | null)?.text === 'string');
    if (parts.length > 0) return { text: parts.map((p) => p.text).join('') };
  }
  if (message?.tool_calls !== undefined) return { why: 'the answer has tool calls but no text content' };
  return { why: 'the answer has no choices[0].message.content' };
}

/**
 * Sends one chat request (temperature 0) and returns the answer's text. Throws HelperLlmError, whose message the
 * agent reads as an EnvError observation: it never names the helper's URL.
 */
export async function chatComplete(config: HelperLlmConfig, messages: ChatMessage[]): Promise<string> {
  checkConfig(config);
  const url = endpoint(config.baseUrl);
  const attempts = config.attempts ?? 3;
  const timeoutMs = Math.ceil(config.timeoutMs ?? 120_000);
  const maxDelayMs = config.maxDelayMs ?? 30_000;
  const maxBytes = config.maxResponseBytes ?? 32 * 1024 * 1024;
  const body = JSON.stringify({ model: config.model, messages, temperature: 0, max_tokens: config.maxTokens ?? 4000 });
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (config.apiKey) headers.authorization = `Bearer ${config.apiKey}`;
  let last = '';
  let serverDelay: number | undefined;
  for (let attempt = 1; attempt <= attempts; attempt++) {
    if (attempt > 1) await sleep(Math.min(maxDelayMs, Math.max(serverDelay ?? 0, 500 * 2 ** (attempt - 2))));
    serverDelay = undefined;
    const signal = AbortSignal.timeout(timeoutMs);
    let res: Response;
    try {
      // Not followed: a redirect would turn the POST into a GET or carry the key elsewhere.
      res = await fetch(url, { method: 'POST', headers, body, signal, redirect: 'manual' });
    } catch (e) {
      last = signal.aborted ? `no answer within ${timeoutMs} ms` : `request failed: ${fetchErrorText(e)}`;
      continue;
    }
    if (res.status >= 300 && res.status < 400) {
      await res.body?.cancel().catch(() => undefined);
      throw new HelperLlmError(
        `the helper model's server answered with a redirect (HTTP ${res.status}; not followed: set the helper URL to the final address)`,
      );
    }
    let text: string;
    try {
      text = await readResponseText(res, maxBytes);
    } catch (e) {
      if (e instanceof ResponseTooLargeError) throw new HelperLlmError(`the helper model's server sent an answer that ${e.message} (HTTP ${res.status}; the limit is ${maxBytes})`);
      last = signal.aborted ? `the answer did not arrive whole within ${timeoutMs} ms` : `the answer broke off: ${fetchErrorText(e)}`;
      continue;
    }
    if (res.status === 408 || res.status === 429 || res.status >= 500) {
      last = `HTTP ${res.status}: ${printableSnippet(text, 200)}`;
      serverDelay = retryAfterMs(res.headers.get('retry-after'));
      continue;
    }
    if (!res.ok) {
      const hint = res.status === 401 || res.status === 403 ? ' (check the API key)' : res.status === 404 ? ' (check the URL and the model name)' : '';
      throw new HelperLlmError(`the helper model's server answered HTTP ${res.status}, not retried${hint}: ${printableSnippet(text, 300)}`);
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      const type = res.headers.get('content-type') ?? '';
      last = type.includes('text/event-stream')
        ? 'the answer is an event stream (text/event-stream), though no stream was asked for'
        : `the answer is not JSON: ${printableSnippet(text, 200)}`;
      continue;
    }
    const answer = answerText(parsed);
    if ('text' in answer) return answer.text;
    last = answer.why;
  }
  throw new HelperLlmError(`the helper model gave no usable answer after ${attempts} attempts (${last})`);
}
