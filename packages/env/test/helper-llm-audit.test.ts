// The helper model's client against broken and hostile OpenAI-compatible servers: every case must end, quickly, in a
// HelperLlmError that names the URL and the problem, never a hang, an unbounded buffer or a stray error.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import zlib from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chatComplete, HelperLlmError, type HelperLlmConfig } from '../src/helper-llm/client.js';

const hi = [{ role: 'user' as const, content: 'hi' }];
const completion = (content: unknown, extra: Record<string, unknown> = {}) =>
  JSON.stringify({ choices: [{ message: { role: 'assistant', content, ...extra } }] });

type Handler = (req: http.IncomingMessage, res: http.ServerResponse) => void;

/** One server; the first path segment picks the behaviour (baseUrl http://host/<name>). */
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
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': String(2 ** 40) });
    res.write('{"choices":');
  },
  silent: () => undefined,
  reset: (req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.write('{"choices": [{"message": {"content": "par');
    setTimeout(() => req.socket.destroy(), 20);
  },
  headersonly: (req, res) => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': '500' });
    res.flushHeaders();
    setTimeout(() => req.socket.destroy(), 20);
  },
  html: (req, res) => res.writeHead(200, { 'content-type': 'text/html' }).end('<html>hello</html>'),
  null: (req, res) => res.writeHead(200).end('null'),
  array: (req, res) => res.writeHead(200).end('[1, 2]'),
  number: (req, res) => res.writeHead(200).end('42'),
  nochoices: (req, res) => res.writeHead(200).end('{"choices": []}'),
  toolcalls: (req, res) => res.writeHead(200).end(completion(null, { tool_calls: [{ id: 't', type: 'function', function: { name: 'f', arguments: '{}' } }] })),
  parts: (req, res) => res.writeHead(200).end(completion([{ type: 'text', text: 'Hello, ' }, { type: 'text', text: 'world' }])),
  sse: (req, res) =>
    res.writeHead(200, { 'content-type': 'text/event-stream' }).end(`data: ${JSON.stringify({ choices: [{ delta: { content: 'x' } }] })}\n\ndata: [DONE]\n\n`),
  gzip: (req, res) => res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'gzip' }).end('this is not gzip at all'),
  gzipbomb: (req, res) => res.writeHead(200, { 'content-encoding': 'gzip' }).end(zlib.gzipSync(Buffer.alloc(8 * 2 ** 20, ' '))),
  escapes: (req, res) => res.writeHead(500).end('\x1b[2J\x1b]0;pwned\x07 wiped'),
  unauthorized: (req, res) => res.writeHead(401).end('invalid api key'),
  forbidden: (req, res) => res.writeHead(403).end('forbidden'),
  busy: (req, res) => res.writeHead(500).end('internal error'),
  ratelimited: (req, res) => {
    const n = hits.get('ratelimited')!.length;
    if (n === 1) res.writeHead(429, { 'retry-after': '1' }).end('slow down');
    else res.writeHead(200).end(completion('after the wait'));
  },
  ratelimitedlong: (req, res) => {
    const n = hits.get('ratelimitedlong')!.length;
    if (n === 1) res.writeHead(429, { 'retry-after': '3600' }).end('slow down');
    else res.writeHead(200).end(completion('capped'));
  },
  badutf8: (req, res) =>
    res.writeHead(200).end(Buffer.concat([Buffer.from('{"choices":[{"message":{"content":"a'), Buffer.from([0xff, 0xfe]), Buffer.from('b"}}]}')])),
};

let server: http.Server;
let other: http.Server;
let base = '';
let otherHits: http.IncomingHttpHeaders[] = [];
let otherBase = '';

beforeAll(async () => {
  server = http.createServer((req, res) => {
    const name = req.url!.split('/')[1];
    req.resume();
    req.on('end', () => {
      hits.set(name, [...(hits.get(name) ?? []), Date.now()]);
      if (name === 'redirect') res.writeHead(307, { location: `${otherBase}/v1/chat/completions` }).end();
      else if (routes[name]) routes[name](req, res);
      else res.writeHead(404).end('no such route');
    });
  });
  other = http.createServer((req, res) => {
    otherHits.push(req.headers);
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

const cfg = (route: string, extra: Partial<HelperLlmConfig> = {}): HelperLlmConfig => ({
  baseUrl: `${base}/${route}`,
  model: 'm',
  apiKey: 'secret-key',
  timeoutMs: 2000,
  attempts: 2,
  maxDelayMs: 5,
  ...extra,
});

async function failure(config: HelperLlmConfig): Promise<HelperLlmError> {
  const e = await chatComplete(config, hi).then(
    () => null,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(HelperLlmError);
  return e as HelperLlmError;
}

// Timing bounds below are loose (a loaded 2-core CI machine); each test gets room to fail on them, not on its timeout.
describe('helper model client against hostile servers', { timeout: 15_000 }, () => {
  it('times out a body that drips forever, and says it was the body', async () => {
    const t0 = Date.now();
    const e = await failure(cfg('drip', { timeoutMs: 300, attempts: 1 }));
    expect(Date.now() - t0).toBeLessThan(4000); // loose for a loaded CI machine: the point is no hang
    expect(e.message).toMatch(/did not arrive whole within 300 ms/);
    // The message becomes the agent's observation (EnvError): the helper's address is none of its business.
    expect(e.message).not.toContain(base);
  });

  it('stops reading an endless body at the default 32 MiB cap and does not retry it', async () => {
    sent = 0;
    const e = await failure(cfg('endless', { timeoutMs: 20_000, attempts: 3 }));
    expect(e.message).toMatch(/sent an answer that is over 33554432 bytes/);
    expect(hits.get('endless')).toHaveLength(1);
    // Socket buffers aside, the server could push little more than the cap.
    expect(sent).toBeLessThan(100 * 2 ** 20);
  }, 20_000);

  it('refuses a declared huge Content-Length and a gzip bomb past a small cap', async () => {
    expect((await failure(cfg('declared'))).message).toMatch(/declares 1099511627776 bytes/);
    expect((await failure(cfg('gzipbomb', { maxResponseBytes: 2 ** 20 }))).message).toMatch(/over 1048576 bytes/);
  });

  it('times out a server that accepts the connection and says nothing', async () => {
    const t0 = Date.now();
    const e = await failure(cfg('silent', { timeoutMs: 200 }));
    expect(Date.now() - t0).toBeLessThan(4000);
    expect(e.message).toMatch(/after 2 attempts \(no answer within 200 ms\)$/);
  });

  it('reports a connection reset mid-body, a close after the headers and gzip garbage as broken answers', async () => {
    expect((await failure(cfg('reset'))).message).toMatch(/\(the answer broke off: terminated/);
    expect((await failure(cfg('headersonly'))).message).toMatch(/\(the answer broke off: terminated/);
    expect((await failure(cfg('gzip'))).message).toMatch(/\(the answer broke off: terminated \((Z_DATA_ERROR|incorrect header check)\)/);
  });

  it('names what is wrong with a 200 answer that is not a completion', async () => {
    expect((await failure(cfg('html'))).message).toMatch(/the answer is not JSON: <html>hello/);
    expect((await failure(cfg('null'))).message).toMatch(/the answer is JSON but not an object: null/);
    expect((await failure(cfg('array'))).message).toMatch(/not an object: \[1,2\]/);
    expect((await failure(cfg('number'))).message).toMatch(/not an object: 42/);
    expect((await failure(cfg('nochoices'))).message).toMatch(/the answer has no choices/);
    expect((await failure(cfg('toolcalls'))).message).toMatch(/tool calls but no text content/);
    expect((await failure(cfg('sse'))).message).toMatch(/event stream \(text\/event-stream\), though no stream was asked for/);
  });

  it('accepts content given as an array of text parts, and invalid UTF-8 as replacement characters', async () => {
    expect(await chatComplete(cfg('parts'), hi)).toBe('Hello, world');
    expect(await chatComplete(cfg('badutf8'), hi)).toBe('a\uFFFD\uFFFDb');
  });

  it('does not follow a redirect to another host, so the key stays put', async () => {
    otherHits = [];
    const e = await failure(cfg('redirect'));
    expect(e.message).toMatch(/answered with a redirect \(HTTP 307; not followed/);
    expect(e.message).not.toMatch(/localhost|127\.0\.0\.1/);
    expect(otherHits).toHaveLength(0);
    expect(hits.get('redirect')).toHaveLength(1);
  });

  it('does not retry 401/403/404 and says which it was', async () => {
    const e = await failure(cfg('unauthorized', { attempts: 3 }));
    expect(e.message).toMatch(/server answered HTTP 401, not retried \(check the API key\): invalid api key/);
    expect(hits.get('unauthorized')).toHaveLength(1);
    expect((await failure(cfg('forbidden', { attempts: 3 }))).message).toMatch(/HTTP 403, not retried/);
    expect((await failure(cfg('nowhere', { attempts: 3 }))).message).toMatch(/HTTP 404, not retried \(check the URL and the model name\)/);
    expect(hits.get('nowhere')).toHaveLength(1);
  });

  it("honours a 429's Retry-After, within maxDelayMs", async () => {
    expect(await chatComplete(cfg('ratelimited', { maxDelayMs: 30_000 }), hi)).toBe('after the wait');
    const [a, b] = hits.get('ratelimited')!;
    expect(b - a).toBeGreaterThanOrEqual(950);
    const t0 = Date.now();
    expect(await chatComplete(cfg('ratelimitedlong', { maxDelayMs: 50 }), hi)).toBe('capped');
    expect(Date.now() - t0).toBeLessThan(2500); // not the 3600 s asked for
  });

  it('retries 500s a bounded number of times', async () => {
    const e = await failure(cfg('busy', { attempts: 3 }));
    expect(e.message).toMatch(/after 3 attempts \(HTTP 500: internal error\)$/);
    expect(hits.get('busy')).toHaveLength(3);
  });

  it("shows no terminal escapes from the server's text", async () => {
    const e = await failure(cfg('escapes'));
    expect(e.message).toMatch(/HTTP 500: \?\[2J\?\]0;pwned\? wiped/);
    expect(e.message.includes('\u001b') || e.message.includes('\u0007')).toBe(false);
  });

  it('refuses bad numbers and URLs before sending anything', async () => {
    const before = [...hits.values()].reduce((n, h) => n + h.length, 0);
    for (const timeoutMs of [0, -1, NaN, Infinity, 2 ** 40])
      expect((await failure(cfg('busy', { timeoutMs }))).message).toMatch(/timeoutMs must be a positive number of milliseconds/);
    for (const attempts of [0, -1, NaN, Infinity, 1.5]) expect((await failure(cfg('busy', { attempts }))).message).toMatch(/attempts must be a positive integer/);
    for (const maxDelayMs of [-1, NaN, Infinity]) expect((await failure(cfg('busy', { maxDelayMs }))).message).toMatch(/maxDelayMs must be/);
    expect((await failure(cfg('busy', { maxTokens: NaN }))).message).toMatch(/maxTokens must be/);
    expect((await failure(cfg('busy', { maxResponseBytes: 0 }))).message).toMatch(/maxResponseBytes must be/);
    expect((await failure({ baseUrl: 'localhost:8000', model: 'm' })).message).toMatch(/must be http\(s\)/);
    expect((await failure({ baseUrl: 'not a url', model: 'm' })).message).toMatch(/is not a URL/);
    expect((await failure({ baseUrl: 'http://user:pw@127.0.0.1:9', model: 'm' })).message).toMatch(/must not hold credentials/);
    expect([...hits.values()].reduce((n, h) => n + h.length, 0)).toBe(before);
  });
});
