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

  toJSON(): { error: { message: string; type: string; param: string | null; code: string | null } } {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

/** A 400 for a bad request field. */
export const badParam = (param: string, message: string, code: string | null = 'invalid_value') => new OpenAIError(400, message, param, code);
