import { rmSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Gpu } from '@mlagent/core-kernels';
import {
  OpenAIService,
  QwenModel,
  QwenTokenizer,
  TokenizerError,
  StopTextStream,
  createOpenAIServer,
  defaultStopTokenIds,
  generate,
  sequenceLogprobs,
  type OpenAIServer,
} from '../src/index.js';
import { writeModel } from './fixtures.js';

let gpu: Gpu;
let dir: string;
let model: QwenModel;
let tokenizer: QwenTokenizer;
let server: OpenAIServer;
let url: string;

beforeAll(async () => {
  gpu = await Gpu.create();
  dir = writeModel('qwen2', 71);
  model = await QwenModel.load(gpu, dir);
  tokenizer = QwenTokenizer.fromDir(dir);
  server = createOpenAIServer(model, tokenizer, { modelName: 'tiny', defaultMaxTokens: 4 });
  url = await server.listen(0);
}, 120_000);

afterAll(async () => {
  await server?.close();
  model?.dispose();
  rmSync(dir, { recursive: true, force: true });
});

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- response JSON, checked field by field
async function post(path: string, body: unknown): Promise<{ status: number; json: any }> {
  const r = await fetch(url + path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: typeof body === 'string' ? body : JSON.stringify(body) });
  return { status: r.status, json: await r.json() };
}

/** The `data:` payloads of a server-sent event stream. */
async function events(path: string, body: unknown): Promise<string[]> {
  const r = await fetch(url + path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  expect(r.status).toBe(200);
  expect(r.headers.get('content-type')).toBe('text/event-stream');
  const text = await r.text();
  return text
    .split('\n\n')
    .filter((e) => e.trim())
    .map((e) => {
      expect(e.startsWith('data: ')).toBe(true);
      return e.slice(6);
    });
}

const CHAT = [
  { role: 'system', content: 'You are terse.' },
  { role: 'user', content: 'Name a prime number.' },
];

describe('StopTextStream', () => {
  const letters = (ids: number[]) => ids.map((i) => String.fromCharCode(96 + i)).join('');

  it('holds back text that may become a stop string and cuts before it', () => {
    const s = new StopTextStream(letters, ['cd']);
    expect(s.push([1])).toBe('a');
    expect(s.push([1, 2])).toBe('b');
    expect(s.push([1, 2, 3])).toBe(''); // 'c' could start 'cd'
    expect(s.push([1, 2, 3, 4])).toBe(''); // 'cd' found: nothing after 'ab'
    expect(s.hasStopped).toBe(true);
    expect(s.finish([1, 2, 3, 4, 5])).toBe('');
  });

  it('releases held-back text at the end and never emits a trailing partial character', () => {
    const s = new StopTextStream((ids) => letters(ids.filter((i) => i > 0)) + (ids[ids.length - 1] === 0 ? '\ufffd' : ''), ['xyz']);
    expect(s.push([1, 2, 3, 0])).toBe('abc'); // the U+FFFD is an incomplete character
    expect(s.push([1, 2, 3, 0, 24])).toBe(''); // 'x' may begin 'xyz'
    expect(s.finish([1, 2, 3, 4, 24])).toBe('dx');
  });
});

describe('OpenAI-compatible server over HTTP', () => {
  it('lists the model and answers unknown paths and methods in the OpenAI error shape', async () => {
    const models = await (await fetch(`${url}/v1/models`)).json();
    expect(models).toMatchObject({ object: 'list', data: [{ id: 'tiny', object: 'model' }] });
    const missing = await fetch(`${url}/v1/embeddings`, { method: 'POST', body: '{}' });
    expect(missing.status).toBe(404);
    expect(((await missing.json()) as { error: unknown }).error).toMatchObject({ type: 'invalid_request_error', code: 'not_found' });
    const wrong = await fetch(`${url}/v1/chat/completions`);
    expect(wrong.status).toBe(405);
    // Another model's name is OpenAI's 404, on both endpoints, before any generation.
    for (const [path, body] of [['/v1/chat/completions', { model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] }], ['/v1/completions', { model: 'tinyy', prompt: 'x' }]] as const) {
      const other = await post(path, body);
      expect(other.status).toBe(404);
      expect(other.json.error).toMatchObject({ code: 'model_not_found', param: 'model', message: expect.stringMatching(/does not exist; this server serves 'tiny'/) });
    }
  });

  it('chat completion (greedy) equals generate() on the chat template, and streaming delivers the same text', async () => {
    const prompt = tokenizer.encode(tokenizer.applyChatTemplate(CHAT as never, { addGenerationPrompt: true }));
    const [ref] = await generate(model, [prompt], { maxNewTokens: 4, temperature: 0, stopTokenIds: defaultStopTokenIds(model.config, tokenizer) });
    const { status, json } = await post('/v1/chat/completions', { model: 'tiny', messages: CHAT, max_tokens: 4, temperature: 0, logprobs: true });
    expect(status).toBe(200);
    expect(json.object).toBe('chat.completion');
    expect(json.model).toBe('tiny');
    const choice = json.choices[0];
    expect(choice.message.role).toBe('assistant');
    expect(choice.message.content).toBe(tokenizer.decode(ref.ids, { skipSpecialTokens: true }));
    expect(choice.finish_reason).toBe(ref.finishReason);
    expect(choice.logprobs.content.map((c: { logprob: number }) => c.logprob)).toEqual(ref.logprobs.slice(0, choice.logprobs.content.length));
    expect(json.usage).toEqual({ prompt_tokens: prompt.length, completion_tokens: ref.ids.length, total_tokens: prompt.length + ref.ids.length });

    const data = await events('/v1/chat/completions', { messages: CHAT, max_tokens: 4, temperature: 0, stream: true, stream_options: { include_usage: true } });
    expect(data[data.length - 1]).toBe('[DONE]');
    const chunks = data.slice(0, -1).map((d) => JSON.parse(d));
    expect(chunks.every((c) => c.object === 'chat.completion.chunk' && c.id === chunks[0].id)).toBe(true);
    expect(chunks[0].choices[0].delta).toEqual({ role: 'assistant', content: '' });
    const withChoices = chunks.filter((c) => c.choices.length > 0);
    expect(withChoices.map((c) => c.choices[0].delta.content ?? '').join('')).toBe(choice.message.content);
    expect(withChoices[withChoices.length - 1].choices[0].finish_reason).toBe(choice.finish_reason);
    expect(chunks[chunks.length - 1].usage.completion_tokens).toBe(ref.ids.length);
  });

  it('completions: several prompts x n in one batch, reproducible by seed, logprobs equal to teacher-forced scoring', async () => {
    const body = { prompt: ['The cat', [17, 4242, 99]], n: 2, max_tokens: 3, temperature: 1, seed: 1234, logprobs: 0 };
    const a = await post('/v1/completions', body);
    const b = await post('/v1/completions', body);
    expect(a.status).toBe(200);
    expect(a.json.object).toBe('text_completion');
    expect(a.json.choices).toHaveLength(4);
    expect(b.json.choices.map((c: { text: string }) => c.text)).toEqual(a.json.choices.map((c: { text: string }) => c.text));
    // The n samples of one prompt differ (different random streams per row).
    expect(a.json.choices[2].logprobs.token_logprobs).not.toEqual(a.json.choices[3].logprobs.token_logprobs);
    // One prompt, n = 1: the same tokens and logprobs as generate() with that seed, and those logprobs are the
    // sampled tokens' teacher-forced scores under the model.
    const prompt = [17, 4242, 99];
    const one = await post('/v1/completions', { prompt, max_tokens: 3, temperature: 1, seed: 99, logprobs: 0 });
    const [ref] = await generate(model, [prompt], { maxNewTokens: 3, temperature: 1, seed: 99, stopTokenIds: defaultStopTokenIds(model.config, tokenizer) });
    const got = one.json.choices[0].logprobs;
    expect(got.tokens).toEqual(ref.ids.map((id) => tokenizer.decode([id])));
    expect(got.token_logprobs).toEqual(ref.logprobs);
    const [scored] = await sequenceLogprobs(model, [[...prompt, ...ref.ids]]);
    scored.logprobs.slice(prompt.length).forEach((lp, i) => expect(Math.abs(lp! - ref.logprobs[i])).toBeLessThan(1e-4));
  });

  it('stop strings end the text before the stop, with finish_reason stop', async () => {
    const free = await post('/v1/completions', { prompt: 'Once upon a time', max_tokens: 5, temperature: 0 });
    const text: string = free.json.choices[0].text;
    expect(text.length).toBeGreaterThan(2);
    const stop = text.slice(Math.floor(text.length / 2), Math.floor(text.length / 2) + 1);
    const cut = await post('/v1/completions', { prompt: 'Once upon a time', max_tokens: 5, temperature: 0, stop: [stop] });
    expect(cut.json.choices[0].text).toBe(text.slice(0, text.indexOf(stop)));
    expect(cut.json.choices[0].finish_reason).toBe('stop');
  });

  it('serializes concurrent requests: parallel greedy answers equal sequential ones', async () => {
    const bodies = ['one', 'two two'].map((prompt) => ({ prompt, max_tokens: 2, temperature: 0 }));
    const sequential: string[] = [];
    for (const body of bodies) sequential.push((await post('/v1/completions', body)).json.choices[0].text);
    const parallel = await Promise.all(bodies.map((body) => post('/v1/completions', body)));
    expect(parallel.map((r) => r.json.choices[0].text)).toEqual(sequential);
  });

  it('close() cuts the running request short with an error event, answers the queued one 503 and leaves the GPU idle', async () => {
    const own = createOpenAIServer(model, tokenizer, { modelName: 'tiny' });
    const base = await own.listen(0);
    const request = (extra: object) =>
      fetch(`${base}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt: 'Once', max_tokens: 20000, seed: 1, ...extra }) });
    const streamed = await request({ stream: true });
    const reader = streamed.body!.getReader();
    await reader.read(); // the first chunk: it is generating
    const queued = request({ max_tokens: 2 }).then(async (r) => ({ status: r.status, json: (await r.json()) as { error: { code: string } } }));
    await new Promise((r) => setTimeout(r, 200)); // the queued request has reached the server
    await own.close();
    let rest = '';
    for (let part = await reader.read(); !part.done; part = await reader.read()) rest += new TextDecoder().decode(part.value);
    expect(rest).toMatch(/"code":"server_shutting_down"/);
    expect(rest).not.toMatch(/\[DONE\]/);
    expect(await queued).toMatchObject({ status: 503, json: { error: { code: 'server_shutting_down' } } });
    const [after] = await generate(model, [[1, 2, 3]], { maxNewTokens: 2, temperature: 0 });
    expect(after.ids).toHaveLength(2);
  });

  it('answers bad requests with 400 and a message naming the field', async () => {
    const cases: [string, unknown, RegExp, string | null][] = [
      ['/v1/chat/completions', '{not json', /not valid JSON/, null],
      ['/v1/chat/completions', { messages: [] }, /'messages' must be a non-empty list/, 'messages'],
      ['/v1/chat/completions', { messages: [{ role: 'robot', content: 'x' }] }, /messages\[0\]\.role must be/, 'messages[0].role'],
      ['/v1/chat/completions', { messages: CHAT, temperature: 5 }, /'temperature' must be a number in \[0, 2\]/, 'temperature'],
      ['/v1/chat/completions', { messages: CHAT, n: 100 }, /'n' must be an integer in \[1, 16\]/, 'n'],
      ['/v1/chat/completions', { messages: CHAT, stop: [1, 2] }, /'stop' must be a string or a list/, 'stop'],
      ['/v1/chat/completions', { messages: CHAT, tools: [{}] }, /tool calling is not supported/, 'tools'],
      ['/v1/completions', { prompt: [[1, 999999]] }, /token id 999999 is outside the vocabulary/, 'prompt'],
      ['/v1/completions', { prompt: 'x', max_tokens: 40000 }, /exceeds this model's context of 32768 tokens/, 'max_tokens'],
      ['/v1/completions', {}, /'prompt' must be a string/, 'prompt'],
    ];
    // A request whose memory plan exceeds the server's budget is refused before anything is allocated.
    const small = new OpenAIService(model, tokenizer, { memoryBudgetBytes: 64 << 20 });
    await expect(small.completion({ prompt: 'x', max_tokens: 8 })).rejects.toMatchObject({
      status: 400,
      code: 'insufficient_memory',
      message: expect.stringMatching(/memory budget: this will not fit: it needs about [\d.]+ MiB but the budget is 64\.00 MiB[\s\S]*weights \(f32 matrices\)/),
    });
    for (const [path, body, message, param] of cases) {
      const { status, json } = await post(path, body);
      expect(status, JSON.stringify(body)).toBe(400);
      expect(json.error.type).toBe('invalid_request_error');
      expect(json.error.message).toMatch(message);
      expect(json.error.param).toBe(param);
    }
  });
});

describe('OpenAIService and the tokenizer vocabulary (audit)', () => {
  it('refuses a tokenizer with ids past the model vocab_size when built', () => {
    const small = Object.create(model, { config: { value: { ...model.config, vocabSize: 482 } } }) as QwenModel;
    expect(() => new OpenAIService(small, tokenizer)).toThrow(TokenizerError);
    expect(() => new OpenAIService(small, tokenizer)).toThrow(/tokenizer\.json has 151669 tokens \(ids 0\.\.151668\) but the model's config\.json has vocab_size 482/);
  });

  it('answers a text prompt that encodes outside the vocabulary with a 400, not a 500', async () => {
    const tok = QwenTokenizer.fromDir(dir);
    const service = new OpenAIService(model, tok);
    // Stands for any tokenizer/model mismatch that slips past the size check.
    tok.encode = () => [1, model.config.vocabSize + 3];
    await expect(service.completion({ prompt: 'x', max_tokens: 1 })).rejects.toMatchObject({
      status: 400,
      param: 'prompt',
      message: `prompt 0 encodes to token id ${model.config.vocabSize + 3}, outside this model's vocabulary [0, ${model.config.vocabSize})`,
    });
    await expect(service.chatCompletion({ messages: CHAT, max_tokens: 1 })).rejects.toMatchObject({ status: 400, param: 'messages' });
  });
});
