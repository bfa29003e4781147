// Inspect Script Lines reads files in chunks (scanLines); checked here against splitting the whole text, and the
// size limits of the other file actions through an episode.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Episode } from '../src/episode/episode.js';
import { MAX_EDIT_BYTES, MAX_READ_BYTES, scanLines } from '../src/episode/file-actions.js';
import { SnapshotStore } from '../src/snapshots/store.js';
import { makeFixtureTask, respond, type Fixture } from './episode-fixture.js';

let dir: string;
let fx: Fixture;
let store: SnapshotStore;
beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'mlagent-lines-'));
  fx = makeFixtureTask();
  store = new SnapshotStore(path.join(fx.root, 'store'));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
  fx.cleanup();
});

/** The reference: the whole text split at '\n', a trailing newline ending the last line rather than starting one. */
function referenceLines(text: string): string[] {
  if (text === '') return [];
  const lines = text.split('\n');
  if (lines.at(-1) === '') lines.pop();
  return lines;
}

/** A deterministic generator, so a failure can be replayed from its seed. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

describe('scanLines', () => {
  it('agrees with splitting the whole text, across 64 KiB chunk edges, with and without a last newline', async () => {
    for (let seed = 1; seed <= 40; seed++) {
      const r = rng(seed);
      const lines: string[] = [];
      const n = Math.floor(r() * 400);
      for (let i = 0; i < n; i++) {
        // Mostly short lines; some empty, some of 1-3 KiB, a few just under the cut, with multi-byte characters.
        const kind = r();
        const len = kind < 0.1 ? 0 : kind < 0.8 ? Math.floor(r() * 80) : kind < 0.97 ? 1024 + Math.floor(r() * 2048) : 4000 + Math.floor(r() * 90);
        lines.push(Array.from({ length: len }, () => (r() < 0.05 ? 'é' : String.fromCharCode(97 + Math.floor(r() * 26)))).join(''));
      }
      const text = lines.join('\n') + (r() < 0.5 ? '\n' : '');
      const file = path.join(dir, `f${seed}.txt`);
      writeFileSync(file, text);
      const ref = referenceLines(text);
      const start = 1 + Math.floor(r() * Math.max(1, ref.length));
      const end = start + Math.floor(r() * 100);
      const got = await scanLines(file, start, end, () => undefined);
      expect(got.total, `seed ${seed}`).toBe(ref.length);
      // Lines longer than 4096 bytes come back cut, marked; the others exactly.
      const want = ref.slice(start - 1, end).map((l) => (Buffer.byteLength(l) > 4096 ? null : l));
      expect(got.shown.length, `seed ${seed}`).toBe(want.length);
      got.shown.forEach((l, i) => {
        if (want[i] === null) expect(l.endsWith(' [... line cut ...]'), `seed ${seed} line ${start + i}`).toBe(true);
        else expect(l, `seed ${seed} line ${start + i}`).toBe(want[i]);
      });
    }
  });

  it('keeps a shown line whole where it spans two chunks', async () => {
    // 100 lines of 2000 bytes: lines 33 and 66 hold bytes 65536 and 131072, where 64 KiB reads end, and the reads
    // after them fill the whole chunk buffer again.
    const lines = Array.from({ length: 100 }, (_, i) => String(i).padStart(4, '0').repeat(499) + String(i).padStart(4, '0'));
    const file = path.join(dir, 'span.txt');
    writeFileSync(file, lines.join('\n') + '\n');
    expect(await scanLines(file, 1, 100, () => undefined)).toEqual({ shown: lines, total: 100 });
  });

  it('cuts an enormous line, and counts lines past it', async () => {
    const file = path.join(dir, 'long.txt');
    writeFileSync(file, `a\n${'x'.repeat(300_000)}\nb\nc`);
    const got = await scanLines(file, 2, 3, () => undefined);
    expect(got.total).toBe(4);
    expect(got.shown).toEqual([`${'x'.repeat(4096)} [... line cut ...]`, 'b']);
  });
});

describe('clipped observations', () => {
  it('cut on whole characters: no half of an emoji at either side of the cut', async () => {
    const ep = await Episode.start(fx.task, { store, workRoot: path.join(fx.root, 'ws'), maxSteps: 40, maxObservationChars: 101 });
    // Odd offsets put both halves' cuts inside a surrogate pair.
    writeFileSync(path.join(ep.workspace, 'notes.txt'), `x${'😀'.repeat(200)}\n`);
    const read = await ep.step(respond('Read File', { file_name: 'notes.txt' }));
    expect(read.observation).toMatch(/characters cut/);
    expect(read.observation).not.toMatch(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/);
    await ep.close();
  });
});

describe('file actions on large files', () => {
  it('read the head of a large file, inspect any line of it, and refuse to edit or copy it', async () => {
    // Observations unclipped (the episode keeps 10 000 characters by default), to see all that Read File returns.
    const ep = await Episode.start(fx.task, { store, workRoot: path.join(fx.root, 'ws'), maxSteps: 40, maxObservationChars: 4 * MAX_READ_BYTES });
    // 24 MiB of CSV rows: past both limits. Written here as a script would leave it.
    const row = (i: number) => `${i},${(i * 7) % 1000},${'v'.repeat(40)}`;
    const rows = Math.ceil((MAX_EDIT_BYTES * 1.5) / (row(0).length + 6));
    writeFileSync(path.join(ep.workspace, 'big.csv'), Array.from({ length: rows }, (_, i) => row(i)).join('\n') + '\n');

    const read = await ep.step(respond('Read File', { file_name: 'big.csv' }));
    expect(read.outcome).toBe('none');
    const shownLines = read.observation.split('\n');
    const note = read.observation.match(/\[\.\.\. big\.csv is ([\d.]+) MiB; only its first (\d+) lines are shown\. Use Inspect Script Lines for the others \.\.\.\]\n$/);
    expect(note).not.toBeNull();
    expect(Number(note![2])).toBe(shownLines.length - 2);
    expect(shownLines.slice(0, 3)).toEqual([row(0), row(1), row(2)]);
    expect(shownLines[Number(note![2]) - 1]).toBe(row(Number(note![2]) - 1));
    expect(Buffer.byteLength(read.observation)).toBeLessThan(MAX_READ_BYTES + 200);

    const last = await ep.step(respond('Inspect Script Lines', { script_name: 'big.csv', start_line_number: rows - 1, end_line_number: rows + 5 }));
    expect(last.outcome).toBe('none');
    expect(last.observation).toBe(`Here are the lines (the file ends at line ${rows}):\n\n${rows - 1}: ${row(rows - 2)}\n${rows}: ${row(rows - 1)}`);

    for (const [action, args] of [
      ['Copy File', { source: 'big.csv', destination: 'copy.csv' }],
      ['Edit Script Lines', { script_name: 'big.csv', start_line_number: 1, end_line_number: 1, new_content: 'x' }],
      ['Write File', { file_name: 'big.csv', content: 'small now' }],
    ] as const) {
      const r = await ep.step(respond(action, args));
      expect(r.outcome, action).toBe('action-error');
      expect(r.observation, action).toMatch(/^EnvError: "big\.csv" is 2\d\.\d MiB; the file actions edit and copy files of at most 16\.0 MiB/);
    }
    await ep.close();
  }, 60_000);
});
