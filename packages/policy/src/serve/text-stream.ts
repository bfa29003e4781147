/**
 * Turns a growing list of generated ids into text deltas, cutting the text before the first stop string (which
 * OpenAI's API leaves out of the output). An end of the text that could still grow into a stop string, or an
 * incomplete UTF-8 character (decoded as U+FFFD), is held back until the next token settles it.
 */
export class StopTextStream {
  private sent = 0;
  private stopped = false;
  private readonly longestStop: number;

  constructor(
    private readonly decode: (ids: number[]) => string,
    private readonly stops: readonly string[],
  ) {
    this.longestStop = Math.max(0, ...stops.map((s) => s.length));
  }

  /** Whether a stop string was found; no more text follows. */
  get hasStopped(): boolean {
    return this.stopped;
  }

  /** The new text given every id generated so far. */
  push(ids: number[]): string {
    return this.advance(ids, false);
  }

  /** The rest of the text once generation has ended. */
  finish(ids: number[]): string {
    return this.advance(ids, true);
  }

  private advance(ids: number[], final: boolean): string {
    if (this.stopped) return '';
    const text = this.decode(ids);
    const cut = firstStop(text, this.stops, Math.max(0, this.sent - this.longestStop));
    let end: number;
    if (cut >= 0) {
      this.stopped = true;
      end = cut;
    } else if (final) {
      end = text.length;
    } else {
      end = text.length - partialStopSuffix(text, this.stops);
      while (end > this.sent && text.charCodeAt(end - 1) === 0xfffd) end--;
    }
    if (end <= this.sent) return '';
    const delta = text.slice(this.sent, end);
    this.sent = end;
    return delta;
  }
}

/** Length of the longest end of `text` that is the beginning of a stop string (so may still become one). */
function partialStopSuffix(text: string, stops: readonly string[]): number {
  let longest = 0;
  for (const s of stops) {
    for (let j = Math.min(s.length - 1, text.length); j > longest; j--) {
      if (text.endsWith(s.slice(0, j))) {
        longest = j;
        break;
      }
    }
  }
  return longest;
}

/** Index of the earliest occurrence of any stop string at or after `from`, or -1. */
function firstStop(text: string, stops: readonly string[], from: number): number {
  let best = -1;
  for (const s of stops) {
    const i = text.indexOf(s, from);
    if (i >= 0 && (best < 0 || i < best)) best = i;
  }
  return best;
}
