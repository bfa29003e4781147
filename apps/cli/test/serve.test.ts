import { spawn, type ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bin, mlagent, tinyModel } from './run-cli.js';

let tmp: string;
let model: string;
let child: ChildProcess | undefined;
let url: string;
let stderr = '';

/** Starts `mlagent serve` on a free port and resolves with its URL from the first stdout line. */
function startServer(args: string[]): Promise<string> {
  child = spawn(process.execPath, [bin, 'serve', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
  return new Promise((resolve, reject) => {
    let out = '';
    child!.stdout!.on('data', (b: Buffer) => {
      out += b.toString();
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m) resolve(m[1]);
    });
    child!.once('exit', (code) => reject(new Error(`mlagent serve exited with ${code} before listening:\n${stderr}`)));
  });
}

beforeAll(async () => {
  ({ tmp, model } = await tinyModel('qwen3', 0));
  url = await startServer(['--model', model, '--port', '0', '--name', 'tiny-qwen3', '--max-tokens', '3']);
}, 240_000);

afterAll(() => {
  if (child && child.exitCode === null) child.kill('SIGKILL');
  rmSync(tmp, { recursive: true, force: true });
});

/** Response JSON, checked field by field. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Json = any;

const json = async (r: Response | Promise<Response>): Promise<Json> => (await r).json();

const post = (path: string, body: unknown) => fetch(url + path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

describe('mlagent serve', () => {
  it('answers /v1/models, chat completions (plain and streamed) and completions like an OpenAI server', async () => {
    expect((await json(fetch(`${url}/v1/models`))).data[0].id).toBe('tiny-qwen3');

    const messages = [{ role: 'user', content: 'What is 2 + 2?' }];
    const chat = await json(post('/v1/chat/completions', { model: 'tiny-qwen3', messages, temperature: 0 }));
    expect(chat.choices[0].message.role).toBe('assistant');
    expect(typeof chat.choices[0].message.content).toBe('string');
    // --max-tokens 3 is the default for requests without max_tokens.
    expect(chat.usage.completion_tokens).toBeLessThanOrEqual(3);
    expect(chat.usage.completion_tokens).toBeGreaterThan(0);

    const streamed = await post('/v1/chat/completions', { messages, temperature: 0, stream: true });
    expect(streamed.headers.get('content-type')).toBe('text/event-stream');
    const events = (await streamed.text()).split('\n\n').filter(Boolean);
    expect(events[events.length - 1]).toBe('data: [DONE]');
    const chunks: Json[] = events.slice(0, -1).map((e) => JSON.parse(e.replace(/^data: /, '')));
    expect(chunks.map((c) => c.choices[0].delta.content ?? '').join('')).toBe(chat.choices[0].message.content);
    expect(chunks[chunks.length - 1].choices[0].finish_reason).toBe(chat.choices[0].finish_reason);

    const completion = await json(post('/v1/completions', { prompt: 'Once', max_tokens: 2, n: 2, seed: 5 }));
    expect(completion.object).toBe('text_completion');
    expect(completion.choices).toHaveLength(2);
  });

  it('returns 400 in the OpenAI error shape for a bad request', async () => {
    const r = await post('/v1/chat/completions', { messages: 'hello' });
    expect(r.status).toBe(400);
    expect((await json(r)).error).toMatchObject({ type: 'invalid_request_error', param: 'messages' });
  });

  it('logs requests and shuts down cleanly on SIGTERM', async () => {
    const exited = new Promise<number | null>((resolve) => child!.once('exit', (code) => resolve(code)));
    child!.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(stderr).toMatch(/POST \/v1\/chat\/completions 200 \d+ ms/);
    expect(stderr).toMatch(/SIGTERM: shutting down/);
  });

  it('refuses a missing or out-of-range --port before serving', async () => {
    const noPort = await mlagent('serve', '--model', model);
    expect(noPort.code).toBe(2);
    expect(noPort.stderr).toMatch(/--port P is required/);
    const badPort = await mlagent('serve', '--model', model, '--port', '70000');
    expect(badPort.stderr).toMatch(/--port must be an integer in \[0, 65535\]/);
    const tiny = await mlagent('serve', '--model', model, '--port', '0', '--memory-budget', '0.001');
    expect(tiny.code).toBe(2);
    expect(tiny.stderr).toMatch(/serve: --memory-budget 0.001 GiB cannot hold even a one-token answer: /);
    // Refused from config.json, before the weights load.
    expect(tiny.stderr).not.toMatch(/^loaded /m);
  });
});
