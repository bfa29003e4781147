// Shortening the model's text for observations and prompts. A cut between the two halves of a surrogate pair
// leaves a lone surrogate: UTF-8 encoders turn it into U+FFFD and Python clients of the env server refuse to encode
// it, so cuts move back to a code point boundary.

function isHigh(code: number): boolean {
  return code >= 0xd800 && code <= 0xdbff;
}

function isLow(code: number): boolean {
  return code >= 0xdc00 && code <= 0xdfff;
}

/** `s.slice(start, start + n)`, without half of a surrogate pair at either end. */
export function sliceText(s: string, start: number, n: number): string {
  if (start > 0 && isHigh(s.charCodeAt(start - 1)) && isLow(s.charCodeAt(start))) start++;
  let end = Math.min(s.length, start + n);
  if (end < s.length && end > start && isHigh(s.charCodeAt(end - 1))) end--;
  return s.slice(start, end);
}

/** `s` itself when it has at most `max` UTF-16 units, else its head and "..." in `max` units at most. */
export function shorten(s: string, max: number): string {
  return s.length <= max ? s : `${sliceText(s, 0, Math.max(0, max - 3))}...`;
}
