/**
 * A prompt or sequence that does not fit the model's context (max_position_embeddings): the caller's input, so
 * commands report it as such. The numbers let a caller name its own options in the message.
 */
export class ContextLengthError extends Error {
  constructor(
    message: string,
    /** Tokens of the longest prompt or sequence. */
    readonly tokens: number,
    /** Tokens asked to be generated after it (0 when only scoring). */
    readonly newTokens: number,
    /** The model's max_position_embeddings. */
    readonly context: number,
  ) {
    super(message);
    this.name = 'ContextLengthError';
  }
}

/**
 * NaN or infinite logits or log-probabilities, found in what a pass already reads back (so it costs nothing):
 * weights holding NaN/Inf, or arithmetic that overflowed. Without it NaN logits would sample token 0 silently.
 */
export class NonFiniteError extends Error {
  constructor(
    /** What was not finite, e.g. 'logits at step 3 of prompt 0'. */
    readonly what: string,
    /** fn: the function that found it (the message's prefix); why: the likely cause, when a caller knows better. */
    { fn, why = 'the weights (or adapter) hold NaN or Inf values, or the arithmetic overflowed' }: { fn?: string; why?: string } = {},
  ) {
    super(`${fn ? `${fn}: ` : ''}non-finite ${what}; ${why}`);
    this.name = 'NonFiniteError';
  }
}
