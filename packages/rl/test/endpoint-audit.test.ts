// The endpoint expert / eval agent client against broken and hostile OpenAI-compatible servers: every case must end,
// quickly, in an EndpointError or RetriesExhaustedError that names the URL and the problem, never a hang, an
// unbounded buffer or a stray error.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import zlib from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EndpointError, EndpointExpert, chatWithRetry, checkEndpoint, type EndpointExpertOptions } from '../src/experts/endpoint.js';
import { RetriesExhaustedError } from '../src/experts/retry.js';
import { endpointAgent } from '../src/eval/agent.js';

const hi = [{ role: 'user' as const, content: 'hi' }];
const completion = (content: unknown, extra: Record<string, unknown> = {}) =>
  JSON.stringify({ choices: [{ message: { role: 'assistant', content, ...extra } }] });

type Handler = (req: http.IncomingMessage, res: http.ServerResponse) => void;

/** One server; the first path segment picks the behaviour (url http://host/<name>/v1). */
const hits = new Map<string, number[]>();
let sent = 0;
const routes: Record<string, Handler> = {
  drip: (req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    const t = setInterval(() => res.write(' '), 50);
    res.on('close', () => clearInterval(t));
  },
  endless: (req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    const chunk = Buffer.alloc(1 << 20, 'x');
    const pump = () => {
      while (!res.destroyed && sent < 300 * 2 ** 20) {
        sent += chunk.length;
        if (!res.write(chunk)) return void res.once('drain', pump);
      }
    };
    pump();
  },
  declared: (req, res) => {
    res.writeHead(500, { 'content-length': String(2 ** 40) });
    res.write('internal');
  },
  silent: () => undefined,
  reset: (req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.write('{"choices": [{"message": {"content": "par');
    setTimeout(() => req.socket.destroy(), 20);
  },
  html: (req, res) => res.writeHead(200, { 'content-type': 'text/html' }).end('<html>hello</html>'),
  null: (req, res) => res.writeHead(200).end('null'),
  number: (req, res) => res.writeHead(200).end('42'),
  nochoices: (req, res) => res.writeHead(200).end('{"choices": []}'),
  toolcalls: (req, res) => res.writeHead(200).end(completion(null, { tool_calls: [{ id: 't', type: 'function', function: { name: 'f', arguments: '{}' } }] })),
  parts: (req, res) => res.writeHead(200).end(completion([{ type: 'text', text: 'Hello, ' }, { type: 'text', text: 'world\nObservation: x' }])),
  sse: (req, res) =>
    res.writeHead(200, { 'content-type': 'text/event-stream' }).end(`data: ${JSON.stringify({ choices: [{ delta: { content: 'x' } }] })}\n\ndata: [DONE]\n\n`),
  gzip: (req, res) => res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'gzip' }).end('this is not gzip at all'),
  gzipbomb: (req, res) => res.writeHead(200, { 'content-encoding': 'gzip' }).end(zlib.gzipSync(Buffer.alloc(8 * 2 ** 20, ' '))),
  escapes: (req, res) => res.writeHead(500).end('\x1b[2J\x1b]0;pwned\x07 wiped'),
  ratelimited: (req, res) => res.writeHead(429, { 'retry-after': String(hits.get('ratelimited')!.length === 1 ? 2 : 3600) }).end('slow down'),
  unauthorized: (req, res) => res.writeHead(401).end('invalid api key'),
  busy: (req, res) => res.writeHead(500).end('internal error'),
  badutf8: (req, res) =>
    res.writeHead(200).end(Buffer.concat([Buffer.from('{"choices":[{"message":{"content":"a'), Buffer.from([0xff, 0xfe]), Buffer.from('b"}}]}')])),
};

let server: http.Server;
let other: http.Server;
let base = '';
let otherBase = '';
let otherHits = 0;

beforeAll(async () => {
  server = http.createServer((req, res) => {
    const name = req.url!.split('/')[1];
    req.resume();
    req.on('end', () => {
      hits.set(name, [...(hits.get(name) ?? []), Date.now()]);
      if (name === 'redirect') res.writeHead(308, { location: `${otherBase}/v1/chat/completions` }).end();
      else if (routes[name]) routes[name](req, res);
      else res.writeHead(404).end('no such route');
    });
  });
  other = http.createServer((req, res) => {
    otherHits++;
    req.resume();
    res.writeHead(200).end(completion('from the other host'));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  await new Promise<void>((r) => other.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  // Another origin: "localhost" rather than 127.0.0.1.
  otherBase = `http://localhost:${(other.address() as AddressInfo).port}`;
});
afterAll(() => {
  server.closeAllConnections();
  other.closeAllConnections();
  server.close();
  other.close();
});

const opts = (route: string, extra: Partial<EndpointExpertOptions> = {}): EndpointExpertOptions => ({
  url: `${base}/${route}/v1`,
  model: 'm',
  apiKey: 'secret-key',
  timeoutMs: 2000,
  maxAttempts: 2,
  baseDelayMs: 1,
  maxDelayMs: 5,
  ...extra,
});

async function failure(p: Promise<unknown>): Promise<Error> {
  const e = await p.then(
    () => null,
    (err: unknown) => err,
  );
  expect(e instanceof EndpointError || e instanceof RetriesExhaustedError).toBe(true);
  return e as Error;
}
const chatFailure = (route: string, extra: Partial<EndpointExpertOptions> = {}) => failure(chatWithRetry(opts(route, extra), hi));

// Timing bounds below are loose (a loaded 2-core CI machine); each test gets room to fail on them, not on its timeout.
describe('endpoint client against hostile servers', { timeout: 15_000 }, () => {
  it('times out a body that drips forever', async () => {
    const t0 = Date.now();
    const e = await chatFailure('drip', { timeoutMs: 300, maxAttempts: 1 });
    expect(Date.now() - t0).toBeLessThan(4000); // loose for a loaded CI machine: the point is no hang
    expect(e.message).toMatch(/gave up after 1 attempts: no answer from http:\/\/127\.0\.0\.1:\d+\/drip\/v1\/chat\/completions within 300 ms/);
  });

  it('stops reading an endless body at the default 32 MiB cap and does not retry it', async () => {
    sent = 0;
    const e = await chatFailure('endless', { timeoutMs: 20_000, maxAttempts: 3 });
    expect(e).toBeInstanceOf(EndpointError);
    expect(e.message).toMatch(/\/endless\/v1\/chat\/completions sent an answer that is over 33554432 bytes/);
    expect(hits.get('endless')).toHaveLength(1);
    expect(sent).toBeLessThan(100 * 2 ** 20);
  }, 20_000);

  it('refuses a declared huge Content-Length (even on an error status) and a gzip bomb past a small cap', async () => {
    expect((await chatFailure('declared')).message).toMatch(/declares 1099511627776 bytes/);
    expect((await chatFailure('gzipbomb', { maxResponseBytes: 2 ** 20 })).message).toMatch(/over 1048576 bytes/);
  });

  it('times out a server that says nothing, in chatWithRetry and checkEndpoint', async () => {
    const t0 = Date.now();
    expect((await chatFailure('silent', { timeoutMs: 200 })).message).toMatch(/gave up after 2 attempts: no answer from .*\/silent\/v1\/chat\/completions within 200 ms/);
    expect((await failure(checkEndpoint(opts('silent', { timeoutMs: 200 })))).message).toMatch(/within 200 ms/);
    expect(Date.now() - t0).toBeLessThan(4500);
  });

  it('reports a reset mid-body and gzip garbage with their causes', async () => {
    expect((await chatFailure('reset')).message).toMatch(/request to .*\/reset\/v1\/chat\/completions failed: terminated/);
    expect((await chatFailure('gzip')).message).toMatch(/failed: terminated \((Z_DATA_ERROR|incorrect header check)\)/);
  });

  it('names what is wrong with a 200 answer that is not a completion', async () => {
    expect((await chatFailure('html')).message).toMatch(/not JSON: <html>hello/);
    expect((await chatFailure('null')).message).toMatch(/answered with JSON that is not an object: null/);
    expect((await chatFailure('number')).message).toMatch(/not an object: 42/);
    expect((await chatFailure('nochoices')).message).toMatch(/answered with no choices/);
    expect((await chatFailure('toolcalls')).message).toMatch(/answered with tool calls but no choices\[0\]\.message\.content text/);
    expect((await chatFailure('sse')).message).toMatch(/event stream \(text\/event-stream\), though no stream was asked for/);
  });

  it('accepts content given as an array of text parts (cut at the stop in the eval agent), and invalid UTF-8', async () => {
    expect(await chatWithRetry(opts('parts'), hi)).toBe('Hello, world\nObservation: x');
    const agent = endpointAgent(opts('parts'));
    const turn = { messages: hi, stepsLeft: 1 };
    const [r] = await agent.respond([{ id: 't/0', index: 0, turn, prompt: 'hi' } as never], { seed: 0 });
    expect(r).toBe('Hello, world');
    expect(await chatWithRetry(opts('badutf8'), hi)).toBe('a\uFFFD\uFFFDb');
  });

  it('does not follow a redirect to another host, so the key stays put', async () => {
    otherHits = 0;
    const e = await chatFailure('redirect', { maxAttempts: 3 });
    expect(e).toBeInstanceOf(EndpointError);
    expect(e.message).toMatch(/\/redirect\/v1\/chat\/completions answered with a redirect \(HTTP 308\) to http:\/\/localhost:\d+\/v1\/chat\/completions/);
    expect(otherHits).toBe(0);
    expect(hits.get('redirect')).toHaveLength(1);
  });

  it('does not retry 401/404, with a hint', async () => {
    const e = await chatFailure('unauthorized', { maxAttempts: 3 });
    expect(e.message).toMatch(/answered HTTP 401 \(not retried\): invalid api key \(check the API key\)/);
    expect((await chatFailure('nowhere', { maxAttempts: 3 })).message).toMatch(/HTTP 404 \(not retried\): no such route \(check the URL and the model name\)/);
    expect(hits.get('nowhere')).toHaveLength(1);
  });

  it('retries 500s a bounded number of times', async () => {
    expect((await chatFailure('busy', { maxAttempts: 3 })).message).toMatch(/gave up after 3 attempts: .*\/busy\/v1\/chat\/completions answered HTTP 500: internal error/);
    expect(hits.get('busy')).toHaveLength(3);
  });

  it("shows no terminal escapes from the server's text", async () => {
    const e = await chatFailure('escapes');
    expect(e.message).toMatch(/HTTP 500: \?\[2J\?\]0;pwned\? wiped/);
    expect(e.message.includes('\u001b') || e.message.includes('\u0007')).toBe(false);
  });

  it("honours a 429's Retry-After, within maxDelayMs", async () => {
    const waits: number[] = [];
    const sleep = async (ms: number) => void waits.push(ms);
    await chatFailure('ratelimited', { maxAttempts: 3, maxDelayMs: 10_000, sleep });
    expect(waits).toEqual([2000, 10_000]);
  });

  it('refuses bad numbers and URLs with credentials before sending anything', async () => {
    const before = [...hits.values()].reduce((n, h) => n + h.length, 0);
    for (const timeoutMs of [0, -1, NaN, Infinity, 2 ** 40]) {
      expect((await failure(chatWithRetry(opts('busy', { timeoutMs }), hi))).message).toMatch(/timeoutMs must be a positive number of milliseconds/);
      expect((await failure(checkEndpoint(opts('busy', { timeoutMs })))).message).toMatch(/timeoutMs must be/);
      expect(() => new EndpointExpert(opts('busy', { timeoutMs }))).toThrow(/timeoutMs must be/);
      expect(() => endpointAgent(opts('busy', { timeoutMs }))).toThrow(/timeoutMs must be/);
    }
    for (const maxAttempts of [0, NaN, Infinity]) expect((await chatFailure('busy', { maxAttempts })).message).toMatch(/maxAttempts must be a positive integer/);
    for (const maxDelayMs of [-1, NaN, Infinity]) expect((await chatFailure('busy', { maxDelayMs })).message).toMatch(/maxDelayMs must be/);
    expect((await chatFailure('busy', { baseDelayMs: NaN })).message).toMatch(/baseDelayMs must be/);
    expect((await chatFailure('busy', { maxResponseBytes: -1 })).message).toMatch(/maxResponseBytes must be/);
    expect(() => new EndpointExpert({ url: 'http://user:pw@127.0.0.1:9/v1', model: 'm' })).toThrow(/must not hold credentials/);
    expect([...hits.values()].reduce((n, h) => n + h.length, 0)).toBe(before);
  });
});
