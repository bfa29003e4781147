import type { ChatMessage } from '../tokenizer.js';
import { badParam, preview } from './errors.js';

/** The sampling fields shared by /v1/completions and /v1/chat/completions, checked. */
export interface SamplingParams {
  /** Absent: up to the server's default and the context left. */
  maxTokens?: number;
  temperature: number;
  topP: number;
  seed?: number;
  stop: string[];
  n: number;
  stream: boolean;
  /** Return the sampled tokens' logprobs. */
  logprobs: boolean;
}

export interface ChatRequest extends SamplingParams {
  messages: ChatMessage[];
}

export interface CompletionRequest extends SamplingParams {
  /** Each prompt as text or as token ids. */
  prompts: (string | number[])[];
}

/** Most choices (`n`) one request may ask for per prompt. */
export const MAX_CHOICES = 16;

/**
 * Most sequences one request may generate: prompts x n run as one batch, whose KV caches grow with it, so a list
 * of thousands of prompts would otherwise allocate without bound.
 */
export const MAX_BATCH = 64;

type Body = Record<string, unknown>;

function asBody(body: unknown): Body {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw badParam('body', 'the request body must be a JSON object', 'invalid_request');
  }
  return body as Body;
}

const present = (b: Body, key: string) => b[key] !== undefined && b[key] !== null;

function numberIn(b: Body, key: string, lo: number, hi: number, fallback: number, { loOpen = false } = {}): number {
  if (!present(b, key)) return fallback;
  const v = b[key];
  const ok = typeof v === 'number' && Number.isFinite(v) && (loOpen ? v > lo : v >= lo) && v <= hi;
  if (!ok) throw badParam(key, `'${key}' must be a number in ${loOpen ? '(' : '['}${lo}, ${hi}], got ${preview(v)}`);
  return v as number;
}

function integerIn(b: Body, key: string, lo: number, hi: number): number | undefined {
  if (!present(b, key)) return undefined;
  const v = b[key];
  if (typeof v !== 'number' || !Number.isInteger(v) || v < lo || v > hi) {
    throw badParam(key, `'${key}' must be an integer in [${lo}, ${hi}], got ${preview(v)}`);
  }
  return v;
}

function parseSampling(b: Body, { logprobs }: { logprobs: boolean }): SamplingParams {
  for (const key of ['presence_penalty', 'frequency_penalty']) {
    if (present(b, key) && b[key] !== 0) throw badParam(key, `'${key}' is not supported by this server (only 0)`, 'unsupported_parameter');
  }
  if (present(b, 'logit_bias') && Object.keys(b.logit_bias as object).length > 0) {
    throw badParam('logit_bias', `'logit_bias' is not supported by this server`, 'unsupported_parameter');
  }
  if (present(b, 'tools') || present(b, 'functions')) {
    throw badParam(present(b, 'tools') ? 'tools' : 'functions', 'tool calling is not supported by this server', 'unsupported_parameter');
  }
  const maxKey = present(b, 'max_completion_tokens') ? 'max_completion_tokens' : 'max_tokens';
  let stop: string[] = [];
  if (present(b, 'stop')) {
    const s = b.stop;
    stop = typeof s === 'string' ? [s] : Array.isArray(s) && s.every((x) => typeof x === 'string') ? (s as string[]) : [];
    if (!(typeof s === 'string' || (Array.isArray(s) && s.length === stop.length)) || stop.length > 4) {
      throw badParam('stop', `'stop' must be a string or a list of at most 4 strings, got ${preview(s)}`);
    }
    stop = stop.filter((x) => x.length > 0);
  }
  if (present(b, 'stream') && typeof b.stream !== 'boolean') throw badParam('stream', `'stream' must be a boolean, got ${preview(b.stream)}`);
  // Stream chunks carry no logprobs; answering null would look like a supported option that returned nothing.
  if (b.stream === true && logprobs) {
    throw badParam('logprobs', `'logprobs' is not supported with 'stream': true by this server; ask without streaming`, 'unsupported_parameter');
  }
  return {
    maxTokens: integerIn(b, maxKey, 1, 1 << 20),
    temperature: numberIn(b, 'temperature', 0, 2, 1),
    topP: numberIn(b, 'top_p', 0, 1, 1, { loOpen: true }),
    seed: integerIn(b, 'seed', 0, 2 ** 32 - 1),
    stop,
    n: integerIn(b, 'n', 1, MAX_CHOICES) ?? 1,
    stream: b.stream === true,
    logprobs,
  };
}

const ROLES: Record<string, ChatMessage['role']> = { system: 'system', developer: 'system', user: 'user', assistant: 'assistant' };

/** Message content as text: a string, or a list of {type: 'text', text} parts. */
function contentText(c: unknown, i: number): string {
  if (typeof c === 'string') return c;
  if (Array.isArray(c)) {
    return c
      .map((p, j) => {
        if (typeof p === 'object' && p !== null && (p as Body).type === 'text' && typeof (p as Body).text === 'string') return (p as Body).text as string;
        throw badParam(`messages[${i}].content[${j}]`, `messages[${i}].content[${j}]: only text parts ({"type": "text", "text": ...}) are supported`);
      })
      .join('');
  }
  throw badParam(`messages[${i}].content`, `messages[${i}].content must be a string or a list of text parts`);
}

export function parseChatRequest(body: unknown): ChatRequest {
  const b = asBody(body);
  if (!Array.isArray(b.messages) || b.messages.length === 0) {
    throw badParam('messages', `'messages' must be a non-empty list of {role, content}`, present(b, 'messages') ? 'invalid_value' : 'missing_required_parameter');
  }
  const messages = b.messages.map((m: unknown, i): ChatMessage => {
    if (typeof m !== 'object' || m === null) throw badParam(`messages[${i}]`, `messages[${i}] must be an object with role and content`);
    const r = (m as Body).role;
    // Own keys only: 'constructor' or '__proto__' would otherwise find Object.prototype's.
    const role = typeof r === 'string' && Object.hasOwn(ROLES, r) ? ROLES[r] : undefined;
    if (!role) throw badParam(`messages[${i}].role`, `messages[${i}].role must be system, developer, user or assistant, got ${preview(r)}`);
    return { role, content: contentText((m as Body).content, i) };
  });
  if (present(b, 'logprobs') && typeof b.logprobs !== 'boolean') throw badParam('logprobs', `'logprobs' must be a boolean`);
  if (present(b, 'top_logprobs') && b.top_logprobs !== 0) throw badParam('top_logprobs', `'top_logprobs' is not supported by this server (only 0)`, 'unsupported_parameter');
  return { ...parseSampling(b, { logprobs: b.logprobs === true }), messages };
}

export function parseCompletionRequest(body: unknown, vocabSize: number): CompletionRequest {
  const b = asBody(body);
  const p = b.prompt;
  const isIds = (x: unknown): x is number[] => Array.isArray(x) && x.length > 0 && x.every((id) => typeof id === 'number');
  let prompts: (string | number[])[];
  if (typeof p === 'string') prompts = [p];
  else if (isIds(p)) prompts = [p];
  else if (Array.isArray(p) && p.length > 0 && p.every((x) => typeof x === 'string' || isIds(x))) prompts = p as (string | number[])[];
  else {
    throw badParam('prompt', `'prompt' must be a string, a list of strings, a list of token ids or a list of such lists`, p === undefined ? 'missing_required_parameter' : 'invalid_value');
  }
  for (const [i, x] of prompts.entries()) {
    if (typeof x === 'string') {
      if (x.length === 0) throw badParam('prompt', `prompt ${i} is empty`);
      continue;
    }
    const bad = x.find((id) => !Number.isInteger(id) || id < 0 || id >= vocabSize);
    if (bad !== undefined) throw badParam('prompt', `prompt ${i}: token id ${bad} is outside the vocabulary [0, ${vocabSize})`);
  }
  if (present(b, 'echo') && b.echo !== false) throw badParam('echo', `'echo' is not supported by this server`, 'unsupported_parameter');
  if (present(b, 'best_of') && b.best_of !== 1) throw badParam('best_of', `'best_of' is not supported by this server (only 1)`, 'unsupported_parameter');
  if (present(b, 'suffix')) throw badParam('suffix', `'suffix' is not supported by this server`, 'unsupported_parameter');
  // Only the sampled token's logprob is computed; top alternatives would need the full logits read back.
  if (present(b, 'logprobs') && b.logprobs !== 0) {
    throw badParam('logprobs', `'logprobs' (top alternatives) is not supported by this server beyond 0, which returns the sampled tokens' logprobs`, 'unsupported_parameter');
  }
  const sampling = parseSampling(b, { logprobs: present(b, 'logprobs') });
  if (prompts.length * sampling.n > MAX_BATCH) {
    throw badParam('prompt', `${prompts.length} prompts x n = ${sampling.n} is ${prompts.length * sampling.n} sequences; this server generates at most ${MAX_BATCH} per request`);
  }
  return { ...sampling, prompts };
}
