// Reading an OpenAI-compatible server's answer defensively, for the helper model's client here and rl's endpoint
// clients: a body refused past a size limit rather than buffered whole, and server text made safe to print.

/** Seconds or an HTTP date (a Retry-After header), as milliseconds from now. */
export function retryAfterMs(h: string | null): number | undefined {
  if (h === null || h.trim() === '') return undefined;
  const s = Number(h);
  if (Number.isFinite(s)) return Math.max(0, s * 1000);
  const t = Date.parse(h);
  return Number.isNaN(t) ? undefined : Math.max(0, t - Date.now());
}

/** Why a request failed, with the cause's code (fetch itself only says "fetch failed" / "terminated"). */
export function fetchErrorText(e: unknown): string {
  const err = e as Error & { cause?: { code?: string; message?: string } };
  const why = err.cause?.code ?? err.cause?.message;
  return `${err.message}${why ? ` (${why})` : ''}`;
}

/** The start of a server's text for a message: control characters (terminal escapes) shown as "?". */
export function printableSnippet(text: string, n: number): string {
  // eslint-disable-next-line no-control-regex
  return text.slice(0, n).replace(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g, '?');
}

/** A response body over the reader's limit; the message says by how much ("declares N bytes", "is over N bytes"). */
export class ResponseTooLargeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ResponseTooLargeError';
  }
}

/** The body as text, refused past `max` bytes rather than buffered whole (a hostile server can send gigabytes). */
export async function readResponseText(res: Response, max: number): Promise<string> {
  const declared = Number(res.headers.get('content-length'));
  if (Number.isFinite(declared) && declared > max) {
    await res.body?.cancel().catch(() => undefined);
    throw new ResponseTooLargeError(`declares ${declared} bytes`);
  }
  if (!res.body) return '';
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.byteLength;
      if (size > max) throw new ResponseTooLargeError(`is over ${max} bytes`);
      chunks.push(value);
    }
  } catch (e) {
    await reader.cancel().catch(() => undefined);
    throw e;
  }
  return new TextDecoder().decode(Buffer.concat(chunks));
}
