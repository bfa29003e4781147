import { randomBytes } from 'node:crypto';
import { generate, type GenerateResult } from '../generate.js';
import { assertFits, planMemory } from '../memory.js';
import type { QwenModel } from '../model.js';
import type { ChatTemplateName, QwenTokenizer } from '../tokenizer.js';
import { badParam, OpenAIError, preview } from './errors.js';
import { parseChatRequest, parseCompletionRequest, type SamplingParams } from './requests.js';
import { defaultStopTokenIds } from './stop-tokens.js';
import { StopTextStream } from './text-stream.js';

export interface OpenAIServiceOptions {
  /** The id /v1/models reports and responses carry. Default 'policy'. */
  modelName?: string;
  /** Chat template for /v1/chat/completions: the model's own ('hf', default) or 'ml-agent'. */
  chatTemplate?: ChatTemplateName;
  /** max_tokens when a request gives none (capped by the context left). Default 512. */
  defaultMaxTokens?: number;
  /** Longest prompt + completion in tokens. Default: the model's max_position_embeddings. */
  maxContext?: number;
  /** GPU bytes a request may plan for; requests whose memory plan exceeds it get a 400. Default: unchecked. */
  memoryBudgetBytes?: number;
  /**
   * Requests that may wait for the GPU behind the one generating. One more gets a 429 with Retry-After, which
   * OpenAI clients back off on, rather than join a queue whose wait outgrows every client's timeout. Default 256.
   */
  maxQueued?: number;
}

/** maxQueued's default. */
export const DEFAULT_MAX_QUEUED = 256;

/** One streamed piece of a choice: new text, and its finish reason once it has finished. */
export interface ChoiceDelta {
  index: number;
  text: string;
  finishReason: 'stop' | 'length' | null;
}

interface Choice {
  text: string;
  ids: number[];
  logprobs: number[];
  finishReason: 'stop' | 'length';
}

interface RunResult {
  promptTokens: number;
  completionTokens: number;
  choices: Choice[];
}

/**
 * The logic of an OpenAI-compatible endpoint over one QwenModel: request checking, chat templating, batched
 * generation of all prompts x n choices in one generate() call, stop strings cut from the text, and response
 * objects in OpenAI's shapes. GPU work is serialized: one request generates at a time, the rest wait in order.
 * createOpenAIServer puts it behind node:http; in-process users can call chatCompletion/completion directly.
 */
export class OpenAIService {
  readonly modelName: string;
  private readonly created = Math.floor(Date.now() / 1000);
  private queue: Promise<unknown> = Promise.resolve();
  /** Requests in the queue that have not started generating. */
  private waiting = 0;
  /** Whether a request is generating now. */
  private generating = false;
  private readonly maxQueued: number;
  private readonly stopping = new AbortController();
  private readonly stopIds: number[];
  private readonly decodeText: (ids: number[]) => string;

  constructor(
    readonly model: QwenModel,
    readonly tokenizer: QwenTokenizer,
    readonly options: OpenAIServiceOptions = {},
  ) {
    this.modelName = options.modelName ?? 'policy';
    // A NaN budget would refuse every request as too large.
    const budget = options.memoryBudgetBytes;
    if (budget !== undefined && (typeof budget !== 'number' || Number.isNaN(budget) || budget <= 0)) {
      throw new RangeError(`OpenAIService: memoryBudgetBytes must be a positive number of bytes, got ${String(budget)}`);
    }
    this.maxQueued = options.maxQueued ?? DEFAULT_MAX_QUEUED;
    if (!(Number.isSafeInteger(this.maxQueued) || this.maxQueued === Infinity) || this.maxQueued < 0) {
      throw new RangeError(`OpenAIService: maxQueued must be an integer >= 0 (or Infinity), got ${String(options.maxQueued)}`);
    }
    // A tokenizer with ids past the model's embeddings would fail every text request with a 500.
    tokenizer.checkModelVocab(model.config.vocabSize, "the model's config.json");
    this.stopIds = defaultStopTokenIds(model.config, tokenizer);
    // No ids (a reply that is only a stop token) decode to '' in QwenTokenizer.decode itself.
    this.decodeText = (ids) => tokenizer.decode(ids, { skipSpecialTokens: true });
  }

  models(): object {
    return { object: 'list', data: [{ id: this.modelName, object: 'model', created: this.created, owned_by: 'mlagent' }] };
  }

  /**
   * Stops serving: the request generating now ends at its next token, queued and later ones get a 503, and the
   * promise resolves once the GPU is idle, so the model can be closed safely.
   */
  async shutdown(): Promise<void> {
    this.stopping.abort();
    await this.queue;
  }

  /** A request naming another model gets OpenAI's 404, so a client pointed at the wrong server or name finds out. */
  private checkModel(body: unknown): void {
    const name = typeof body === 'object' && body !== null ? (body as Record<string, unknown>).model : undefined;
    if (name === undefined || name === null || name === this.modelName) return;
    throw new OpenAIError(404, `the model ${preview(name)} does not exist; this server serves '${this.modelName}' (GET /v1/models)`, 'model', 'model_not_found');
  }

  /** POST /v1/chat/completions. With `onDelta` (streaming) text arrives as it is generated. */
  async chatCompletion(body: unknown, onDelta?: (d: ChoiceDelta) => void, signal?: AbortSignal): Promise<object> {
    this.checkModel(body);
    const req = parseChatRequest(body);
    let prompt: string;
    try {
      prompt = this.tokenizer.applyChatTemplate(req.messages, { template: this.options.chatTemplate ?? 'hf', addGenerationPrompt: true });
    } catch (e) {
      throw badParam('messages', `the chat template failed on these messages: ${(e as Error).message}`);
    }
    const run = await this.run([this.encodeChecked(prompt, 'messages', 'the rendered chat')], 'messages', req, onDelta, signal);
    return {
      id: newId('chatcmpl'),
      object: 'chat.completion',
      created: nowSeconds(),
      model: this.modelName,
      choices: run.choices.map((c, index) => ({
        index,
        message: { role: 'assistant', content: c.text },
        logprobs: req.logprobs ? { content: c.ids.map((id, i) => this.tokenLogprob(id, c.logprobs[i])) } : null,
        finish_reason: c.finishReason,
      })),
      usage: usage(run),
    };
  }

  /** POST /v1/completions. */
  async completion(body: unknown, onDelta?: (d: ChoiceDelta) => void, signal?: AbortSignal): Promise<object> {
    this.checkModel(body);
    const req = parseCompletionRequest(body, this.model.config.vocabSize);
    const prompts = req.prompts.map((p, i) => {
      const ids = typeof p === 'string' ? this.encodeChecked(p, 'prompt', `prompt ${i}`) : p;
      if (ids.length === 0) throw badParam('prompt', `prompt ${i} encodes to no tokens`);
      return ids;
    });
    const run = await this.run(prompts, 'prompt', req, onDelta, signal);
    return {
      id: newId('cmpl'),
      object: 'text_completion',
      created: nowSeconds(),
      model: this.modelName,
      choices: run.choices.map((c, index) => ({
        index,
        text: c.text,
        logprobs: req.logprobs ? this.completionLogprobs(c) : null,
        finish_reason: c.finishReason,
      })),
      usage: usage(run),
    };
  }

  /** Token ids of `text`; an id the model has no embedding for is a 400, not a 500 from generate. */
  private encodeChecked(text: string, param: string, what: string): number[] {
    const ids = this.tokenizer.encode(text);
    const V = this.model.config.vocabSize;
    const bad = ids.find((id) => id >= V);
    if (bad !== undefined) throw badParam(param, `${what} encodes to token id ${bad}, outside this model's vocabulary [0, ${V})`);
    return ids;
  }

  /** Generates n choices for every prompt, in one batch, once the requests before it have finished. */
  private async run(
    prompts: number[][],
    promptParam: 'messages' | 'prompt',
    req: SamplingParams,
    onDelta: ((d: ChoiceDelta) => void) | undefined,
    signal?: AbortSignal,
  ): Promise<RunResult> {
    // generate() refuses more than the model's positions; past them a request would get a 500, not a 400.
    const maxContext = Math.min(this.options.maxContext ?? Infinity, this.model.config.maxPositionEmbeddings);
    const longest = Math.max(...prompts.map((p) => p.length));
    if (longest >= maxContext) {
      throw badParam(promptParam, `the prompt has ${longest} tokens; this model's context is ${maxContext}`, 'context_length_exceeded');
    }
    const maxTokens = req.maxTokens ?? Math.min(this.options.defaultMaxTokens ?? 512, maxContext - longest);
    if (longest + maxTokens > maxContext) {
      throw badParam('max_tokens', `prompt (${longest} tokens) + max_tokens (${maxTokens}) exceeds this model's context of ${maxContext} tokens`, 'context_length_exceeded');
    }
    const batch = prompts.flatMap((p) => Array.from({ length: req.n }, () => p));
    if (this.options.memoryBudgetBytes !== undefined) {
      const adapter = this.model.adapter?.config;
      const lora = adapter && { r: adapter.r, targets: adapter.targetModules };
      const plan = planMemory(this.model.config, { batch: batch.length, seqLen: longest + maxTokens, dtype: this.model.dtype, kvCache: true, lora });
      try {
        assertFits(plan, { budgetBytes: this.options.memoryBudgetBytes });
      } catch (e) {
        throw badParam('max_tokens', `request too large for the server's memory budget: ${(e as Error).message}`, 'insufficient_memory');
      }
    }
    const streams = batch.map(() => new StopTextStream(this.decodeText, req.stop));
    const sampled = batch.map((): number[] => []);
    const stopped = () => new OpenAIError(503, 'the server is shutting down', null, 'server_shutting_down');
    if (this.stopping.signal.aborted) throw stopped();
    const busy = this.waiting > 0 || this.generating;
    if (busy && this.waiting >= this.maxQueued) {
      const err = new OpenAIError(429, `the server has ${this.waiting} requests waiting for the GPU, its most (maxQueued); retry later`, null, 'queue_full');
      err.retryAfterSec = 1;
      throw err;
    }
    const results = await this.serialized(() => {
      if (this.stopping.signal.aborted) throw stopped();
      // A client that left while queued (a trainer's timeout) would still cost a prefill: skip it.
      if (signal?.aborted) throw new OpenAIError(499, 'the client closed the request before it started', null, 'client_closed_request');
      return generate(this.model, batch, {
        maxNewTokens: maxTokens,
        temperature: req.temperature,
        topP: req.topP,
        seed: req.seed,
        stopTokenIds: this.stopIds,
        stopStrings: req.stop,
        decode: this.decodeText,
        signal: signal ? AbortSignal.any([signal, this.stopping.signal]) : this.stopping.signal,
        onToken: onDelta
          ? (b, id) => {
              sampled[b].push(id);
              const text = streams[b].push(sampled[b]);
              if (text) onDelta({ index: b, text, finishReason: null });
            }
          : undefined,
      });
    });
    // Cut short by the shutdown: an error, not an answer that looks finished.
    if (this.stopping.signal.aborted && results.some((r) => r.finishReason === 'length' && r.ids.length < maxTokens)) throw stopped();
    const choices = results.map((r) => this.choice(r, req.stop));
    if (onDelta) choices.forEach((c, index) => onDelta({ index, text: streams[index].finish(c.ids), finishReason: c.finishReason }));
    return { promptTokens: prompts.reduce((s, p) => s + p.length, 0) * req.n, completionTokens: results.reduce((s, r) => s + r.ids.length, 0), choices };
  }

  private choice(r: GenerateResult, stop: string[]): Choice {
    // A final stop token is not part of the text or the returned tokens.
    const endsWithStopId = r.finishReason === 'stop' && this.stopIds.includes(r.ids[r.ids.length - 1]);
    const ids = endsWithStopId ? r.ids.slice(0, -1) : r.ids;
    const logprobs = endsWithStopId ? r.logprobs.slice(0, -1) : r.logprobs;
    const full = this.decodeText(ids);
    const cuts = stop.map((s) => full.indexOf(s)).filter((i) => i >= 0);
    return { text: cuts.length > 0 ? full.slice(0, Math.min(...cuts)) : full, ids, logprobs, finishReason: r.finishReason };
  }

  private tokenLogprob(id: number, logprob: number): object {
    const token = this.tokenizer.decode([id]);
    return { token, logprob, bytes: [...Buffer.from(token, 'utf8')], top_logprobs: [] };
  }

  private completionLogprobs(c: Choice): object {
    const tokens = c.ids.map((id) => this.tokenizer.decode([id]));
    const offsets: number[] = [];
    let at = 0;
    for (const t of tokens) {
      offsets.push(at);
      at += t.length;
    }
    return { tokens, token_logprobs: c.logprobs, top_logprobs: null, text_offset: offsets };
  }

  /** Runs GPU work strictly one request at a time, in arrival order. */
  private serialized<T>(fn: () => Promise<T>): Promise<T> {
    this.waiting++;
    const start = async () => {
      this.waiting--;
      this.generating = true;
      try {
        return await fn();
      } finally {
        this.generating = false;
      }
    };
    const next = this.queue.then(start, start);
    this.queue = next.catch(() => undefined);
    return next;
  }
}

function usage(r: RunResult): object {
  return { prompt_tokens: r.promptTokens, completion_tokens: r.completionTokens, total_tokens: r.promptTokens + r.completionTokens };
}

const nowSeconds = () => Math.floor(Date.now() / 1000);
const newId = (prefix: string) => `${prefix}-${randomBytes(12).toString('hex')}`;
