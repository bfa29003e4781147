/** An error answered in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}` with an HTTP status. */
export class OpenAIError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly param: string | null = null,
    readonly code: string | null = null,
    readonly type = status >= 500 ? 'server_error' : 'invalid_request_error',
  ) {
    super(message);
    this.name = 'OpenAIError';
  }

  /** Sent as Retry-After (seconds) with the answer. */
  retryAfterSec?: number;

  toJSON(): { error: { message: string; type: string; param: string | null; code: string | null } } {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

/** A 400 for a bad request field. */
export const badParam = (param: string, message: string, code: string | null = 'invalid_value') => new OpenAIError(400, message, param, code);

/**
 * A short rendering of a client's value for an error message. Bounded, because the value may be megabytes long,
 * and never throwing, because JSON.stringify overflows the stack on deeply nested lists (a 500 instead of a 400).
 */
export function preview(v: unknown, max = 80): string {
  let s: string;
  try {
    // JSON.stringify writes Infinity (from 1e309) as null.
    s = typeof v === 'number' ? String(v) : (JSON.stringify(v) ?? String(v));
  } catch {
    return Array.isArray(v) ? 'a list nested too deeply to show' : 'an object nested too deeply to show';
  }
  return s.length > max ? `${s.slice(0, max)}... (${s.length} characters)` : s;
}
