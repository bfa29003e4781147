/**
 * Turns a growing list of generated ids into text deltas, cutting the text before the first stop string (which
 * OpenAI's API leaves out of the output). An end of the text that could still grow into a stop string, or an
 * incomplete UTF-8 character (decoded as U+FFFD), is held back until the next token settles it.
 *
 * Each push decodes only the ids after the last settled point, not the whole response (that was O(n²) over a
 * stream). Every SETTLE_IDS ids, where the text ends on a whole character, the ids so far are settled and only the
 * end of their text that a stop string could still reach is kept. So `decode` must be byte-level concatenative, as
 * Qwen's tokenizer is: decode(a ++ b) = decode(a) + decode(b) when decode(a) ends on a whole character.
 */
const SETTLE_IDS = 32;

export class StopTextStream {
  /** Characters of the text sent so far. */
  private sent = 0;
  private stopped = false;
  private readonly longestStop: number;
  /** Ids before this index are settled; keptText is the end of their text, from character keptFrom on. */
  private settledIds = 0;
  private keptText = '';
  private keptFrom = 0;

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
    // Fewer ids than settled (a caller that drops a final stop token): start over from the whole text.
    if (ids.length < this.settledIds) [this.settledIds, this.keptText, this.keptFrom] = [0, '', 0];
    // Nothing new since the last settled point happens (finish() right after settling); decode may refuse [].
    const fresh = ids.length > this.settledIds ? this.decode(ids.slice(this.settledIds)) : '';
    // text[i] is character keptFrom + i of the whole text.
    const text = this.keptText + fresh;
    const at = this.keptFrom;
    const sent = this.sent - at;
    const cut = firstStop(text, this.stops, Math.max(0, sent - this.longestStop));
    let end: number;
    if (cut >= 0) {
      this.stopped = true;
      end = cut;
    } else if (final) {
      end = text.length;
    } else {
      // An incomplete character first, then what may begin a stop string before it: 'Ω' followed by the first byte
      // of '€' may yet be the stop string 'Ω€'.
      end = text.length;
      while (end > sent && text.charCodeAt(end - 1) === 0xfffd) end--;
      end -= partialStopSuffix(text.slice(0, end), this.stops);
    }
    const delta = end > sent ? text.slice(sent, end) : '';
    this.sent = at + Math.max(sent, end);
    if (ids.length - this.settledIds >= SETTLE_IDS && !fresh.endsWith('\ufffd')) {
      const keep = Math.max(0, this.sent - at - this.longestStop);
      [this.settledIds, this.keptText, this.keptFrom] = [ids.length, text.slice(keep), at + keep];
    }
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
