// JSON over node:http for the env server: request bodies with a size limit, and answers that are always JSON,
// errors included ({"error": {"type", "message"}}), so a client in any language can read every reply the same way.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';

/** A request the server refuses, with its HTTP status and a type a client can branch on. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly type: string,
    message: string,
    /** Headers the status calls for (Allow with a 405, WWW-Authenticate with a 401). */
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = 'HttpError';
  }
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (res.headersSent || res.destroyed) return;
  const text = `${JSON.stringify(body)}\n`;
  res.writeHead(status, { ...headers, 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

export function sendError(res: ServerResponse, e: HttpError): void {
  sendJson(res, e.status, { error: { type: e.type, message: e.message } }, e.headers);
}

/**
 * Answers what node:http refuses before a request reaches the server (a malformed request line or header, headers
 * over the size limit, a request slower than requestTimeout) with a JSON error too, where node's own answer is an
 * empty one; nothing is written when a response has already begun on the connection.
 */
export function answerClientError(err: Error & { code?: string }, socket: Duplex): void {
  const inFlight = (socket as Duplex & { _httpMessage?: ServerResponse | null })._httpMessage;
  if (err.code === 'ECONNRESET' || !socket.writable || inFlight?.headersSent) {
    socket.destroy();
    return;
  }
  const [status, reason, type, message] =
    err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
      ? [408, 'Request Timeout', 'request_timeout', 'the request (headers and body) did not arrive in time']
      : err.code === 'HPE_HEADER_OVERFLOW'
        ? [431, 'Request Header Fields Too Large', 'headers_too_large', 'the request line and headers are over the size limit']
        : [400, 'Bad Request', 'invalid_request', `the request is not valid HTTP (${err.code ?? err.message})`];
  const text = `${JSON.stringify({ error: { type, message } })}\n`;
  socket.write(`HTTP/1.1 ${status} ${reason}\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(text)}\r\nconnection: close\r\n\r\n${text}`);
  // Ends the connection once the answer is written (after a parse error the rest of its bytes cannot be read); a
  // client that never closes its side is cut off after a while.
  socket.end();
  (socket as Duplex & { setTimeout?: (ms: number, cb: () => void) => void }).setTimeout?.(5000, () => socket.destroy());
}

/** A value for an error message: JSON, cut short; a value too deep to stringify is named by its type. */
export function describe(x: unknown, max = 200): string {
  if (x === undefined) return 'nothing';
  let text: string;
  try {
    text = typeof x === 'string' ? `'${x}'` : (JSON.stringify(x) ?? typeof x);
  } catch {
    text = Array.isArray(x) ? 'an array' : typeof x;
  }
  // JSON has no Infinity: 1e309 parses to it and would print as null.
  if (typeof x === 'number' && !Number.isFinite(x)) text = String(x);
  return cut(text, max);
}

/** Text a client sent, cut short for an error message (an id or a path may be many kilobytes). */
export function cut(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max)}... (${text.length} characters)` : text;
}

/** The body parsed as a JSON object; an empty body is {}. Over `limit` bytes is 413, before it is all read. */
export async function readJsonObject(req: IncomingMessage, limit: number): Promise<Record<string, unknown>> {
  const declared = Number(req.headers['content-length']);
  // The rest of the body stays unread, so the connection cannot carry another request: it closes after the answer.
  const closing = { connection: 'close' };
  if (declared > limit) throw new HttpError(413, 'body_too_large', `the request body is ${declared} bytes; the limit is ${limit}`, closing);
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of req as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > limit) throw new HttpError(413, 'body_too_large', `the request body is over the ${limit}-byte limit`, closing);
      chunks.push(chunk);
    }
  } catch (e) {
    if (e instanceof HttpError) throw e;
    // The client went away (or node gave up on a slow body): nobody reads the answer, and it is not the server's fault.
    throw new HttpError(400, 'request_aborted', `the request body did not arrive whole: ${(e as Error).message}`);
  }
  let text: string;
  try {
    // Not toString('utf8'): it would quietly turn bad bytes into U+FFFD, and the model's response would be recorded altered.
    text = new TextDecoder('utf-8', { fatal: true }).decode(Buffer.concat(chunks));
  } catch {
    throw new HttpError(400, 'invalid_json', 'the request body is not UTF-8 text');
  }
  if (text.trim() === '') return {};
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new HttpError(400, 'invalid_json', `the request body is not JSON: ${(e as Error).message}`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new HttpError(400, 'invalid_request', 'the request body must be a JSON object');
  return value as Record<string, unknown>;
}

/** Refuses fields the endpoint does not take, so a misspelt option is not silently ignored. */
export function onlyFields(body: Record<string, unknown>, known: readonly string[]): void {
  const unknown = Object.keys(body).filter((k) => !known.includes(k));
  if (unknown.length === 0) return;
  // A body may have a million keys: name the first few, not all of them.
  const named = unknown.slice(0, 10).map((k) => describe(k, 60)).join(', ') + (unknown.length > 10 ? ` and ${unknown.length - 10} more` : '');
  throw new HttpError(400, 'invalid_request', `unknown field${unknown.length > 1 ? 's' : ''} ${named} (known: ${known.join(', ') || 'none'})`);
}
