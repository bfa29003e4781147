// A small client for an OpenAI-compatible chat completions endpoint (vLLM, llama.cpp server, OpenAI, ...):
// the helper model behind Understand File, the AI edits and Reflection.

export interface HelperLlmConfig {
  /** Server root, e.g. "http://localhost:8000" (a trailing "/v1" is accepted). */
  baseUrl: string;
  model: string;
  apiKey?: string;
  /** Per-request timeout. Default 120 000 ms. */
  timeoutMs?: number;
  /** Attempts per request (network errors, 429 and 5xx are retried with backoff). Default 3. */
  attempts?: number;
  /** Largest answer in tokens. Default 4000. */
  maxTokens?: number;
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
  const root = baseUrl.replace(/\/+$/, '');
  return root.endsWith('/v1') ? `${root}/chat/completions` : `${root}/v1/chat/completions`;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Sends one chat request (temperature 0) and returns the answer's text. Throws HelperLlmError. */
export async function chatComplete(config: HelperLlmConfig, messages: ChatMessage[]): Promise<string> {
  const attempts = config.attempts ?? 3;
  const timeoutMs = config.timeoutMs ?? 120_000;
  const body = JSON.stringify({ model: config.model, messages, temperature: 0, max_tokens: config.maxTokens ?? 4000 });
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (config.apiKey) headers.authorization = `Bearer ${config.apiKey}`;
  let last = '';
  for (let attempt = 1; attempt <= attempts; attempt++) {
    if (attempt > 1) await sleep(Math.min(8000, 500 * 2 ** (attempt - 2)));
    let res: Response;
    try {
      res = await fetch(endpoint(config.baseUrl), { method: 'POST', headers, body, signal: AbortSignal.timeout(timeoutMs) });
    } catch (e) {
      const err = e as Error;
      last = err.name === 'TimeoutError' ? `no answer within ${timeoutMs} ms` : `request failed: ${err.message}`;
      continue;
    }
    const text = await res.text().catch(() => '');
    if (res.status === 429 || res.status >= 500) {
      last = `HTTP ${res.status}: ${text.slice(0, 200)}`;
      continue;
    }
    if (!res.ok) throw new HelperLlmError(`the helper model's server answered HTTP ${res.status}: ${text.slice(0, 300)}`);
    try {
      const content = (JSON.parse(text) as { choices?: { message?: { content?: unknown } }[] }).choices?.[0]?.message?.content;
      if (typeof content === 'string') return content;
      last = 'the answer has no choices[0].message.content';
    } catch {
      last = `the answer is not JSON: ${text.slice(0, 200)}`;
    }
  }
  throw new HelperLlmError(`the helper model gave no usable answer after ${attempts} attempts (${last})`);
}
