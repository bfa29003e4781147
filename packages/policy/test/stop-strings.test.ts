import { describe, expect, it } from 'vitest';
import { StopTextStream } from '../src/index.js';
import { StopStringMatcher } from '../src/stop-strings.js';
import { SeededRng } from '@mlagent/core-kernels';

/** A byte-level decoder: each id is one byte (ids >= 256 are special tokens with no text). */
const bytes = (ids: number[]) => new TextDecoder().decode(Uint8Array.from(ids.filter((id) => id < 256)));
const enc = (s: string) => Array.from(new TextEncoder().encode(s));

/** Feeds ids one at a time, as generate() does; the step at which the matcher first fires, or -1. */
function firstStop(m: StopStringMatcher, ids: number[]): number {
  for (let n = 1; n <= ids.length; n++) if (m.matches(ids.slice(0, n))) return n;
  return -1;
}

/** The step at which the whole text first contains a stop string: what decoding everything every step gives. */
function firstStopByFullText(stops: string[], ids: number[]): number {
  for (let n = 1; n <= ids.length; n++) if (stops.some((s) => bytes(ids.slice(0, n)).includes(s))) return n;
  return -1;
}

describe('StopStringMatcher', () => {
  it('fires at the token that completes a stop string, as decoding the whole text would', () => {
    const stops = ['</action>', 'Ω stop'];
    const texts = ['Action: Inspect </action> more', 'x'.repeat(300) + 'Ω stop', 'ααααΩ sto', 'é'.repeat(50) + '</action>'];
    for (const t of texts) {
      const ids = enc(t);
      expect(firstStop(new StopStringMatcher(stops, bytes), ids)).toBe(firstStopByFullText(stops, ids));
    }
    expect(firstStop(new StopStringMatcher(stops, bytes), enc(texts[2]))).toBe(-1);
  });

  it('finds a stop string spread over tokens that add no text, by growing the tail', () => {
    const special = 300;
    // '</action>' with 40 special tokens between each of its bytes: ~360 tokens, far past the first tail.
    const ids = enc('abc').concat(...enc('</action>').map((b) => [b, ...Array<number>(40).fill(special)]));
    const stop = firstStop(new StopStringMatcher(['</action>'], bytes), ids);
    expect(stop).toBe(firstStopByFullText(['</action>'], ids));
    expect(stop).toBeGreaterThan(300);
  });

  it('ignores a match made only by the replacement characters of a cut multi-byte character', () => {
    // A tail that starts inside 'é' decodes its second byte as U+FFFD, followed by 'a'; the whole text never has
    // U+FFFD before an 'a' (only at its end, while a character is incomplete), so no stop.
    const ids = enc('é' + 'a'.repeat(40));
    const stops = ['\uFFFDa'];
    expect(firstStopByFullText(stops, ids)).toBe(-1);
    expect(firstStop(new StopStringMatcher(stops, bytes), ids)).toBe(-1);
  });

  it('decodes a bounded tail each step, not the whole response', () => {
    const lengths: number[] = [];
    const counting = (ids: number[]) => {
      lengths.push(ids.length);
      return bytes(ids);
    };
    const m = new StopStringMatcher(['</action>'], counting);
    const ids = enc('y'.repeat(2000));
    for (let n = 1; n <= ids.length; n++) m.matches(ids.slice(0, n));
    // Per step: the newest token alone, then a tail of at most twice the first one (9 + 8 tokens, doubled once).
    expect(Math.max(...lengths)).toBeLessThanOrEqual(34);
    // Nine special tokens (no text) after each byte: the tail needs 13 characters, ~130 tokens; it doubles up to
    // 136 tokens rather than decoding all 2000.
    lengths.length = 0;
    const sparse = enc('y'.repeat(200)).flatMap((b) => [b, ...Array<number>(9).fill(300)]);
    for (let n = 1; n <= sparse.length; n++) m.matches(sparse.slice(0, n));
    expect(Math.max(...lengths)).toBeLessThanOrEqual(2 * 140);
  });
});

describe('StopTextStream decoding step by step', () => {
  /** Random text of ASCII, 2-, 3- and 4-byte characters, with stop strings dropped in now and then. */
  function randomText(rng: SeededRng, n: number, stops: string[]): string {
    const pieces = ['a', 'b', ' ', '\n', '<', '/', 'é', 'Ω', '€', '中', '😀'];
    let t = '';
    while (t.length < n) t += rng.uniform() < 0.01 ? stops[Math.floor(rng.uniform() * stops.length)] : pieces[Math.floor(rng.uniform() * pieces.length)];
    return t;
  }

  it('sends the text up to the first stop string, stopping at the same token as the whole text would', () => {
    const rng = new SeededRng(7);
    const stops = ['</action>', 'Ω€'];
    for (let trial = 0; trial < 30; trial++) {
      const text = randomText(rng, 50 + Math.floor(rng.uniform() * 400), stops);
      const ids = enc(text);
      const stream = new StopTextStream(bytes, stops);
      let out = '';
      let stoppedAt = -1;
      for (let n = 1; n <= ids.length && stoppedAt < 0; n++) {
        const delta = stream.push(ids.slice(0, n));
        expect(delta.endsWith('\uFFFD')).toBe(false);
        out += delta;
        if (stream.hasStopped) stoppedAt = n;
      }
      out += stream.finish(ids.slice(0, stoppedAt < 0 ? ids.length : stoppedAt));
      const cuts = stops.map((s) => text.indexOf(s)).filter((i) => i >= 0);
      expect(out).toBe(cuts.length ? text.slice(0, Math.min(...cuts)) : text);
      expect(stoppedAt).toBe(firstStopByFullText(stops, ids));
    }
  });

  it("holds back the start of a stop string while the next character is still incomplete ('Ω' then 1 byte of '€')", () => {
    const stream = new StopTextStream(bytes, ['Ω€']);
    const ids = enc('aΩ€b');
    expect(stream.push(ids.slice(0, 4))).toBe('a'); // 'a', 'Ω' (2 bytes), the first byte of '€'
    expect(stream.push(ids)).toBe('');
    expect(stream.hasStopped).toBe(true);
  });

  it('decodes a bounded run of ids each push, not the whole response', () => {
    const lengths: number[] = [];
    const stream = new StopTextStream((ids) => {
      lengths.push(ids.length);
      return bytes(ids);
    }, ['</action>']);
    const ids = enc('é'.repeat(1500));
    for (let n = 1; n <= ids.length; n++) stream.push(ids.slice(0, n));
    expect(stream.finish(ids)).toBe('');
    expect(Math.max(...lengths)).toBeLessThanOrEqual(33);
  });
});
