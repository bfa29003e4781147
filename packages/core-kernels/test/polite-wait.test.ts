import { describe, expect, it } from 'vitest';
import { pollDelayMs, politeWait } from '../src/runtime/polite-wait.js';

describe('politeWait', () => {
  it('polls at once early in a wait, then 1 ms apart, then 4 ms apart', () => {
    expect(pollDelayMs(0)).toBeUndefined();
    expect(pollDelayMs(1.99)).toBeUndefined();
    expect(pollDelayMs(2)).toBe(1);
    expect(pollDelayMs(9.99)).toBe(1);
    expect(pollDelayMs(10)).toBe(4);
    expect(pollDelayMs(5000)).toBe(4);
  });

  it('leaves setImmediate alone outside a wait and turns it into a timer well into one', async () => {
    const kind = () => {
      const handle = setImmediate(() => {});
      const name = handle.constructor.name;
      if (name === 'Immediate') clearImmediate(handle);
      else clearTimeout(handle as unknown as NodeJS.Timeout);
      return name;
    };
    expect(kind()).toBe('Immediate');
    let release!: () => void;
    const waiting = politeWait(new Promise<void>((r) => (release = r)));
    expect(kind()).toBe('Immediate');
    const t0 = performance.now();
    while (performance.now() - t0 < 12);
    expect(kind()).toBe('Timeout');
    release();
    await waiting;
    expect(kind()).toBe('Immediate');
  });
});
