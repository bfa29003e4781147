import { rmSync } from 'node:fs';
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Gpu } from '@mlagent/core-kernels';
import { OpenAIService, QwenModel, QwenTokenizer, StopTextStream, createOpenAIServer, generate, type OpenAIServer } from '../src/index.js';
import { writeModel } from './fixtures.js';

// What a client can send that the server must answer with a JSON error of the right status (never a reset
// connection, a 500 or a hang), and what must happen to the GPU when a client goes away.

let gpu: Gpu;
let dir: string;
let model: QwenModel;
let tokenizer: QwenTokenizer;
let server: OpenAIServer;
let url: string;
const logLines: string[] = [];

beforeAll(async () => {
  gpu = await Gpu.create();
  dir = writeModel('qwen2', 71);
  model = await QwenModel.load(gpu, dir);
  tokenizer = QwenTokenizer.fromDir(dir);
  server = createOpenAIServer(model, tokenizer, { modelName: 'tiny', defaultMaxTokens: 2, maxBodyBytes: 64 << 10, requestTimeoutMs: 400, log: (l) => logLines.push(l) });
  url = await server.listen(0);
}, 120_000);

afterAll(async () => {
  await server?.close();
  model?.dispose();
  rmSync(dir, { recursive: true, force: true });
});

const C = '/v1/completions';
const CHAT = '/v1/chat/completions';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- response JSON, checked field by field
async function post(path: string, body: unknown, init: RequestInit = {}): Promise<{ status: number; headers: Headers; json: any }> {
  const r = await fetch(url + path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: typeof body === 'string' || body instanceof Uint8Array || body instanceof ReadableStream ? body : JSON.stringify(body), ...init });
  return { status: r.status, headers: r.headers, json: await r.json() };
}

/** Writes `data` on a raw TCP connection; resolves with everything read until the server closes it (or `waitMs`). */
function raw(data: string, waitMs = 3000): Promise<string> {
  const port = Number(new URL(url).port);
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    let out = '';
    const timer = setTimeout(() => {
      socket.destroy();
      resolve(`${out}<still open after ${waitMs} ms>`);
    }, waitMs);
    socket.on('data', (d) => (out += d.toString()));
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(out);
    });
    socket.write(data);
  });
}

/** Status line and JSON body of a raw HTTP answer. */
function parseRaw(text: string): { status: number; json: { error: { message: string; code: string | null; type: string } } } {
  const [head, body] = text.split('\r\n\r\n');
  expect(head).toMatch(/content-type: application\/json/i);
  return { status: Number(head.split(' ')[1]), json: JSON.parse(body) };
}

describe('OpenAI server audit: empty decodes', () => {
  it('StopTextStream.finish() right after a settle point does not decode an empty list', () => {
    const strict = (ids: number[]) => {
      if (ids.length === 0) throw new Error('token_ids must be a non-empty array of integers.');
      return ids.map((i) => String.fromCharCode(97 + (i % 26))).join('');
    };
    const s = new StopTextStream(strict, []);
    const ids = Array.from({ length: 32 }, (_, i) => i);
    let text = '';
    for (let n = 1; n <= ids.length; n++) text += s.push(ids.slice(0, n));
    text += s.finish(ids);
    expect(text).toBe(strict(ids));
  });

  it('streams a reply of exactly 32 tokens (a settle point) to [DONE], not to a 500 error event', async () => {
    // Greedy from 'Once', this model does not stop within 64 tokens, so it ends by length at 32.
    const r = await fetch(url + C, { method: 'POST', body: JSON.stringify({ prompt: 'Once', max_tokens: 32, temperature: 0, stream: true }) });
    const text = await r.text();
    expect(text).not.toMatch(/"error"/);
    expect(text).toMatch(/"finish_reason":"length"[\s\S]*data: \[DONE\]\n\n$/);
  });

  it('answers a reply that is only a stop token with empty content, not a 500', async () => {
    const messages = [{ role: 'user', content: 'x' }];
    const prompt = tokenizer.encode(tokenizer.applyChatTemplate(messages as never, { addGenerationPrompt: true }));
    const [first] = await generate(model, [prompt], { maxNewTokens: 1, temperature: 0 });
    // The same model, with its greedy first token as config.json's eos: the reply ends at once.
    const stopsAtOnce = Object.create(model, { config: { value: { ...model.config, eosTokenId: first.ids[0] } } }) as QwenModel;
    const service = new OpenAIService(stopsAtOnce, tokenizer);
    const chat = (await service.chatCompletion({ messages, max_tokens: 4, temperature: 0 })) as { choices: { message: { content: string }; finish_reason: string }[] };
    expect(chat.choices[0]).toMatchObject({ message: { content: '' }, finish_reason: 'stop' });
    // (A stop id that is an ordinary token is streamed before it is known to stop; real stop ids are special tokens.)
    const reasons: (string | null)[] = [];
    await service.chatCompletion({ messages, max_tokens: 4, temperature: 0, stream: true }, (d) => reasons.push(d.finishReason));
    expect(reasons[reasons.length - 1]).toBe('stop');
  });
});

describe('OpenAI server audit: request bodies', () => {
  it('answers a body over maxBodyBytes with a JSON 413 instead of resetting the connection', async () => {
    const big = JSON.stringify({ prompt: 'x'.repeat(200 << 10) });
    const withLength = await post(C, big);
    expect(withLength.status).toBe(413);
    expect(withLength.json.error).toMatchObject({ code: 'request_too_large', type: 'invalid_request_error' });
    // Chunked, so the size is only known once the limit is crossed mid-body.
    const chunks = new ReadableStream({
      start(c) {
        for (let i = 0; i < 8; i++) c.enqueue(new TextEncoder().encode('x'.repeat(32 << 10)));
        c.close();
      },
    });
    const chunked = await post(C, chunks, { duplex: 'half' } as RequestInit);
    expect(chunked.status).toBe(413);
    expect(chunked.json.error.code).toBe('request_too_large');
    // The server is still fine.
    expect((await post(C, { prompt: 'x', max_tokens: 1 })).status).toBe(200);
  });

  it('refuses a body that is not UTF-8 instead of generating from U+FFFD', async () => {
    const bytes = Buffer.concat([Buffer.from('{"prompt":"'), Buffer.from([0xff, 0xfe]), Buffer.from('","max_tokens":1}')]);
    const r = await post(C, new Uint8Array(bytes));
    expect(r.status).toBe(400);
    expect(r.json.error).toMatchObject({ message: 'the request body is not valid UTF-8', code: 'invalid_json' });
  });

  it('answers deeply nested or huge values with a short 400 naming the field, not a 500 from JSON.stringify', async () => {
    // 40 KB, under the test server's 64 KiB body limit; JSON.stringify overflows the stack from ~5000 levels.
    const deep = '['.repeat(20_000) + ']'.repeat(20_000);
    const cases: [string, string, number, string][] = [
      [CHAT, `{"messages":[{"role":${deep},"content":"x"}]}`, 400, 'messages[0].role'],
      [C, `{"prompt":"x","stop":${deep}}`, 400, 'stop'],
      [C, `{"prompt":"x","n":${deep}}`, 400, 'n'],
      [C, `{"prompt":"x","model":${deep}}`, 404, 'model'],
      [C, JSON.stringify({ prompt: 'x', temperature: 'y'.repeat(60_000) }), 400, 'temperature'],
    ];
    for (const [path, body, status, param] of cases) {
      const r = await post(path, body);
      expect(r.status, body.slice(0, 40)).toBe(status);
      expect(r.json.error.param).toBe(param);
      expect(r.json.error.message.length).toBeLessThan(300);
    }
    // 1e309 parses as Infinity; the message should say so, not 'null'.
    expect((await post(C, '{"prompt":"x","temperature":1e309}')).json.error.message).toMatch(/got Infinity$/);
  });

  it("refuses roles that are Object.prototype's keys as bad roles", async () => {
    for (const role of ['constructor', '__proto__', 'toString']) {
      const r = await post(CHAT, { messages: [{ role, content: 'x' }], max_tokens: 1 });
      expect(r.status).toBe(400);
      expect(r.json.error).toMatchObject({ param: 'messages[0].role', message: expect.stringMatching(/role must be system, developer, user or assistant/) });
    }
  });

  it('bounds prompts x n per request', async () => {
    const r = await post(C, { prompt: Array.from({ length: 33 }, () => 'x'), n: 2, max_tokens: 1 });
    expect(r.status).toBe(400);
    expect(r.json.error).toMatchObject({ param: 'prompt', message: expect.stringMatching(/33 prompts x n = 2 is 66 sequences; this server generates at most 64/) });
  });

  it("refuses logprobs with stream: true rather than streaming 'logprobs': null", async () => {
    const chat = await post(CHAT, { messages: [{ role: 'user', content: 'x' }], logprobs: true, stream: true, max_tokens: 1 });
    expect(chat.status).toBe(400);
    expect(chat.json.error).toMatchObject({ param: 'logprobs', code: 'unsupported_parameter' });
    expect((await post(C, { prompt: 'x', logprobs: 0, stream: true, max_tokens: 1 })).status).toBe(400);
  });

  it('answers a context limit above the model’s positions with a 400, not a 500 from generate()', async () => {
    const service = new OpenAIService(model, tokenizer, { maxContext: 1 << 20 });
    await expect(service.completion({ prompt: 'x', max_tokens: model.config.maxPositionEmbeddings + 1 })).rejects.toMatchObject({
      status: 400,
      code: 'context_length_exceeded',
      message: expect.stringMatching(new RegExp(`context of ${model.config.maxPositionEmbeddings} tokens`)),
    });
  });
});

describe('OpenAI server audit: HTTP', () => {
  it('answers malformed HTTP and broken request targets in the JSON error shape', async () => {
    const garbage = parseRaw(await raw('HELLO\r\n\r\n'));
    expect(garbage.status).toBe(400);
    expect(garbage.json.error.type).toBe('invalid_request_error');
    const target = parseRaw(await raw('GET http://[/v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'));
    expect(target).toMatchObject({ status: 400, json: { error: { code: 'invalid_url' } } });
    const headers = parseRaw(await raw(`GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Big: ${'y'.repeat(20_000)}\r\n\r\n`));
    expect(headers).toMatchObject({ status: 431, json: { error: { message: 'the request headers are too large' } } });
  });

  it('ends a request whose body stalls with a JSON 408 after requestTimeoutMs', async () => {
    const t0 = Date.now();
    const answer = await raw(`POST ${C} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"pro`, 5000);
    expect(answer).not.toMatch(/still open/);
    expect(parseRaw(answer)).toMatchObject({ status: 408, json: { error: { code: 'request_timeout' } } });
    expect(Date.now() - t0).toBeLessThan(4500); // not node's 300 s
    // The limit is on receiving the request, not on answering it: a generation longer than it still completes.
    const r = await fetch(url + C, { method: 'POST', body: JSON.stringify({ prompt: 'Once', max_tokens: 20, stream: true }) });
    const reader = r.body!.getReader();
    let text = new TextDecoder().decode((await reader.read()).value);
    await new Promise((done) => setTimeout(done, 700));
    for (let part = await reader.read(); !part.done; part = await reader.read()) text += new TextDecoder().decode(part.value);
    expect(text).toMatch(/data: \[DONE\]\n\n$/);
  });

  it('names the allowed method on a 405', async () => {
    const r = await fetch(url + C);
    expect(r.status).toBe(405);
    expect(r.headers.get('allow')).toBe('POST');
    expect(((await r.json()) as { error: { code: string } }).error.code).toBe('method_not_allowed');
  });

  it('skips the generation of a request whose client left while it was queued', async () => {
    const service = new OpenAIService(model, tokenizer);
    await expect(service.completion({ prompt: 'x', max_tokens: 1 }, undefined, AbortSignal.abort())).rejects.toMatchObject({ status: 499, code: 'client_closed_request' });
  });

  it('a client leaving mid-stream stops its generation, the next request runs, and GPU memory returns to where it was', async () => {
    await post(C, { prompt: 'Once', max_tokens: 2 });
    const before = gpu.memory().inUse;
    const gone = new AbortController();
    const r = await fetch(url + C, { method: 'POST', body: JSON.stringify({ prompt: 'Once', max_tokens: 20000, stream: true }), signal: gone.signal });
    const reader = r.body!.getReader();
    await reader.read();
    gone.abort();
    const t0 = Date.now();
    const next = await post(C, { prompt: 'Once', max_tokens: 2 });
    expect(next.status).toBe(200);
    expect(Date.now() - t0).toBeLessThan(20_000); // not the 20,000 tokens the gone client asked for
    expect(gpu.memory().inUse).toBe(before);
  });

  it('answers a request past maxQueued waiting with a 429 and Retry-After rather than queue it without bound', async () => {
    const service = new OpenAIService(model, tokenizer, { maxQueued: 1 });
    const body = { prompt: 'Once', max_tokens: 4 };
    const first = service.completion(body);
    await new Promise((r) => setImmediate(r)); // the first is generating now
    const second = service.completion(body);
    await expect(service.completion(body)).rejects.toMatchObject({ status: 429, code: 'queue_full', retryAfterSec: 1 });
    await Promise.all([first, second]);
    await expect(service.completion(body)).resolves.toMatchObject({ object: 'text_completion' }); // counted down again
    for (const bad of [-1, 1.5, NaN]) expect(() => new OpenAIService(model, tokenizer, { maxQueued: bad })).toThrow(/maxQueued must be an integer >= 0/);
    for (const bad of [NaN, 0, -5]) expect(() => new OpenAIService(model, tokenizer, { memoryBudgetBytes: bad })).toThrow(/memoryBudgetBytes must be a positive number of bytes/);

    // Over HTTP, with no room to wait: the header is there, and the next request runs once the GPU is free.
    const own = createOpenAIServer(model, tokenizer, { maxQueued: 0 });
    const ownUrl = await own.listen(0);
    try {
      const gone = new AbortController();
      const r = await fetch(ownUrl + C, { method: 'POST', body: JSON.stringify({ prompt: 'Once', max_tokens: 20000, stream: true }), signal: gone.signal });
      await r.body!.getReader().read();
      const busy = await fetch(ownUrl + C, { method: 'POST', body: JSON.stringify(body) });
      expect(busy.status).toBe(429);
      expect(busy.headers.get('retry-after')).toBe('1');
      expect(((await busy.json()) as { error: { code: string } }).error.code).toBe('queue_full');
      gone.abort();
      let next = 429;
      for (let i = 0; i < 100 && next === 429; i++) {
        next = (await fetch(ownUrl + C, { method: 'POST', body: JSON.stringify(body) })).status;
        if (next === 429) await new Promise((res) => setTimeout(res, 50));
      }
      expect(next).toBe(200);
    } finally {
      await own.close();
    }
  });

  it('close() can be called twice, and before listen()', async () => {
    const own = createOpenAIServer(model, tokenizer);
    await own.listen(0);
    await expect(Promise.all([own.close(), own.close()])).resolves.toBeDefined();
    await expect(createOpenAIServer(model, tokenizer).close()).resolves.toBeUndefined();
  });
});
