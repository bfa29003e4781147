import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import type { QwenModel } from '../model.js';
import type { QwenTokenizer } from '../tokenizer.js';
import { OpenAIError, preview } from './errors.js';
import { OpenAIService, type ChoiceDelta, type OpenAIServiceOptions } from './service.js';

export interface OpenAIServerOptions extends OpenAIServiceOptions {
  /** Largest request body accepted, in bytes. Default 16 MiB. */
  maxBodyBytes?: number;
  /**
   * Longest a client may take to send a whole request (headers and body), in ms; then it gets a 408 and the
   * connection is closed, so a client that stalls mid-body does not hold a connection for Node's 5 minutes.
   * Default 60 s; 0: no limit.
   */
  requestTimeoutMs?: number;
  /** One line per request (method, path, status, ms). Default: none. */
  log?: (line: string) => void;
}

export interface OpenAIServer {
  readonly service: OpenAIService;
  readonly server: Server;
  /** Starts listening (port 0: any free port); resolves with the base URL, e.g. http://127.0.0.1:8000. */
  listen(port: number, host?: string): Promise<string>;
  /**
   * Stops accepting connections, cuts the request generating now short (queued ones get a 503), answers them,
   * then closes every connection. Resolves once the GPU is idle and the connections are closed.
   */
  close(): Promise<void>;
}

/**
 * An OpenAI-compatible HTTP server (node:http, no framework) over one model: GET /v1/models,
 * POST /v1/chat/completions and POST /v1/completions, with `stream: true` as server-sent events ending in
 * `data: [DONE]`. Errors come back in OpenAI's `{"error": {...}}` shape.
 */
export function createOpenAIServer(model: QwenModel, tokenizer: QwenTokenizer, opts: OpenAIServerOptions = {}): OpenAIServer {
  const service = new OpenAIService(model, tokenizer, opts);
  const maxBody = opts.maxBodyBytes ?? 16 << 20;
  const requestTimeout = opts.requestTimeoutMs ?? 60_000;
  if (!(Number.isFinite(requestTimeout) && requestTimeout >= 0)) throw new Error(`createOpenAIServer: requestTimeoutMs must be >= 0, got ${requestTimeout}`);
  const server = createServer(
    {
      requestTimeout,
      headersTimeout: Math.min(60_000, requestTimeout),
      // Node looks for timed-out requests this often (default 30 s, too coarse for a short requestTimeout).
      connectionsCheckingInterval: requestTimeout > 0 ? Math.min(30_000, Math.max(100, requestTimeout / 4)) : 30_000,
    },
    (req, res) => {
      const t0 = Date.now();
      handle(service, req, res, maxBody)
        .catch((e) => sendError(res, e))
        .finally(() => opts.log?.(`${req.method} ${req.url} ${res.statusCode} ${Date.now() - t0} ms`));
    },
  );
  server.on('clientError', answerClientError);
  let closing: Promise<void> | undefined;
  const close = async () => {
    const closed = new Promise<void>((resolve, reject) => (server.listening ? server.close((e) => (e ? reject(e) : resolve())) : resolve()));
    server.closeIdleConnections();
    await service.shutdown();
    // The handlers answer the cut requests in the turns after shutdown() resolves; give them one.
    await new Promise((r) => setTimeout(r, 50));
    server.closeAllConnections();
    await closed;
  };
  return {
    service,
    server,
    listen: (port, host = '127.0.0.1') =>
      new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => {
          server.off('error', reject);
          const a = server.address() as AddressInfo;
          resolve(`http://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`);
        });
      }),
    // A second close() (two signals) waits for the first instead of failing with ERR_SERVER_NOT_RUNNING.
    close: () => (closing ??= close()),
  };
}

type Endpoint = 'chat' | 'completion';

const ROUTES: Record<string, { method: string; endpoint: Endpoint | 'models' }> = {
  '/v1/chat/completions': { method: 'POST', endpoint: 'chat' },
  '/v1/completions': { method: 'POST', endpoint: 'completion' },
  '/v1/models': { method: 'GET', endpoint: 'models' },
};

async function handle(service: OpenAIService, req: IncomingMessage, res: ServerResponse, maxBody: number): Promise<void> {
  let path: string;
  try {
    path = new URL(req.url ?? '/', 'http://localhost').pathname.replace(/\/+$/, '');
  } catch {
    // e.g. an absolute-form target with a broken host, `GET http://[/v1/models`.
    throw new OpenAIError(400, `cannot parse the request target ${preview(req.url)}`, null, 'invalid_url');
  }
  const route = Object.hasOwn(ROUTES, path) ? ROUTES[path] : undefined;
  if (!route) throw new OpenAIError(404, `unknown path ${path}; this server offers ${Object.keys(ROUTES).join(', ')}`, null, 'not_found');
  if (req.method !== route.method) {
    res.setHeader('allow', route.method);
    throw new OpenAIError(405, `${path} takes ${route.method}, not ${req.method}`, null, 'method_not_allowed');
  }
  if (route.endpoint === 'models') return sendJson(res, 200, service.models());

  const body = await readJson(req, maxBody);
  const stream = typeof body === 'object' && body !== null && (body as Record<string, unknown>).stream === true;
  const call = (onDelta?: (d: ChoiceDelta) => void, signal?: AbortSignal) =>
    route.endpoint === 'chat' ? service.chatCompletion(body, onDelta, signal) : service.completion(body, onDelta, signal);
  if (!stream) {
    // A client that hangs up stops its generation, so the requests queued behind it start sooner.
    const gone = new AbortController();
    res.on('close', () => {
      if (!res.writableFinished) gone.abort();
    });
    return sendJson(res, 200, await call(undefined, gone.signal));
  }
  await streamSse(service, route.endpoint, body as Record<string, unknown>, res, call);
}

/**
 * Server-sent events as OpenAI streams them: chunks of `chat.completion.chunk` (a first one with the role, then
 * content deltas, then one with the finish reason) or of `text_completion`, then `data: [DONE]`. Headers go out
 * only with the first chunk, so a request rejected before generation still gets a plain 400.
 */
async function streamSse(
  service: OpenAIService,
  endpoint: Endpoint,
  body: Record<string, unknown>,
  res: ServerResponse,
  call: (onDelta: (d: ChoiceDelta) => void, signal: AbortSignal) => Promise<object>,
): Promise<void> {
  const id = `${endpoint === 'chat' ? 'chatcmpl' : 'cmpl'}-${Date.now().toString(36)}${Math.random().toString(36).slice(2, 10)}`;
  const created = Math.floor(Date.now() / 1000);
  const abort = new AbortController();
  res.on('close', () => {
    if (!res.writableFinished) abort.abort();
  });
  const started = new Set<number>();
  const send = (data: unknown) => {
    if (!res.headersSent) res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
    res.write(`data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`);
  };
  const chunk = (choice: object) =>
    send({ id, object: endpoint === 'chat' ? 'chat.completion.chunk' : 'text_completion', created, model: service.modelName, choices: [choice] });
  const onDelta = (d: ChoiceDelta) => {
    if (endpoint === 'completion') {
      chunk({ index: d.index, text: d.text, logprobs: null, finish_reason: d.finishReason });
      return;
    }
    if (!started.has(d.index)) {
      started.add(d.index);
      chunk({ index: d.index, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null });
    }
    if (d.text) chunk({ index: d.index, delta: { content: d.text }, logprobs: null, finish_reason: null });
    if (d.finishReason) chunk({ index: d.index, delta: {}, logprobs: null, finish_reason: d.finishReason });
  };
  const full = (await call(onDelta, abort.signal)) as { usage: object };
  const opts = body.stream_options as { include_usage?: boolean } | undefined;
  if (opts?.include_usage) send({ id, object: endpoint === 'chat' ? 'chat.completion.chunk' : 'text_completion', created, model: service.modelName, choices: [], usage: full.usage });
  send('[DONE]');
  res.end();
}

/**
 * The body as JSON. One over `maxBody` is refused with a 413 but still read (and dropped) while the answer goes out:
 * destroying the request instead would reset the connection before the client could read the 413.
 */
function readJson(req: IncomingMessage, maxBody: number): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const tooLarge = () => new OpenAIError(413, `the request body exceeds ${maxBody} bytes`, null, 'request_too_large');
    const parts: Buffer[] = [];
    let size = 0;
    // A Content-Length over the limit is refused before any of the body arrives.
    let over = Number(req.headers['content-length']) > maxBody;
    if (over) reject(tooLarge());
    req.on('data', (b: Buffer) => {
      size += b.length;
      if (over) return;
      if (size > maxBody) {
        over = true;
        parts.length = 0;
        reject(tooLarge());
      } else parts.push(b);
    });
    req.on('error', () => reject(new OpenAIError(499, 'the client closed the connection before sending the whole body', null, 'client_closed_request')));
    req.on('end', () => {
      if (over) return;
      let text: string;
      try {
        text = new TextDecoder('utf-8', { fatal: true }).decode(Buffer.concat(parts));
      } catch {
        // Decoded leniently, bad bytes would become U+FFFD and be generated from silently.
        return reject(new OpenAIError(400, 'the request body is not valid UTF-8', null, 'invalid_json'));
      }
      try {
        resolve(JSON.parse(text));
      } catch (e) {
        reject(new OpenAIError(400, `the request body is not valid JSON: ${(e as Error).message}`, null, 'invalid_json'));
      }
    });
  });
}

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  // A body left unread (a 413, an early error) leaves the connection unusable for a next request.
  const close = res.req.complete ? {} : { connection: 'close' };
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...close, ...headers });
  res.end(text);
}

const CLIENT_ERRORS: Record<string, [number, string, string]> = {
  ERR_HTTP_REQUEST_TIMEOUT: [408, 'Request Timeout', 'the request was not received in time'],
  HPE_HEADER_OVERFLOW: [431, 'Request Header Fields Too Large', 'the request headers are too large'],
};

/** Malformed HTTP and timed-out requests, which Node answers itself with an empty plain-text 400 or 408. */
function answerClientError(err: NodeJS.ErrnoException, socket: Duplex): void {
  // A response under way on this connection (a stream) must not get another one written into it.
  const busy = (socket as Duplex & { _httpMessage?: ServerResponse | null })._httpMessage?.headersSent === true;
  if (err.code === 'ECONNRESET' || !socket.writable || busy) {
    socket.destroy();
    return;
  }
  const [status, reason, message] = CLIENT_ERRORS[err.code ?? ''] ?? [400, 'Bad Request', `malformed HTTP request: ${err.message}`];
  const text = JSON.stringify(new OpenAIError(status, message, null, status === 408 ? 'request_timeout' : 'bad_request').toJSON());
  const head = `HTTP/1.1 ${status} ${reason}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(text)}\r\nconnection: close\r\n\r\n`;
  // The server's sockets allow half-open connections: without the destroy, a client that never closes its side
  // (the stalled one) would keep the connection.
  socket.end(head + text, () => socket.destroy());
}

/** Answers an error; one raised mid-stream ends the stream with an error event instead. */
function sendError(res: ServerResponse, e: unknown): void {
  const err = e instanceof OpenAIError ? e : new OpenAIError(500, `internal error: ${(e as Error)?.message ?? String(e)}`, null, 'internal_error');
  if (res.writableEnded) return;
  if (res.headersSent) {
    res.write(`data: ${JSON.stringify(err.toJSON())}\n\n`);
    res.end();
    return;
  }
  sendJson(res, err.status, err.toJSON(), err.retryAfterSec === undefined ? {} : { 'retry-after': String(err.retryAfterSec) });
}
