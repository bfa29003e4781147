import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { Episode } from '../src/episode/episode.js';
import { SnapshotStore, type StateMeta } from '../src/snapshots/store.js';
import { makeFixtureTask, respond, type Fixture } from './episode-fixture.js';

let fx: Fixture;
let root: string;
beforeAll(() => {
  fx = makeFixtureTask();
  root = mkdtempSync(path.join(os.tmpdir(), 'mlagent-quota-'));
});
afterAll(() => {
  fx.cleanup();
  rmSync(root, { recursive: true, force: true });
});
afterEach(() => {
  vi.restoreAllMocks();
  vi.useRealTimers();
});

let n = 0;
function workspace(files: Record<string, string>): string {
  const ws = path.join(root, `ws${n++}`);
  mkdirSync(ws);
  for (const [name, text] of Object.entries(files)) writeFileSync(path.join(ws, name), text);
  return ws;
}
const meta: StateMeta = { task: 'tiny', parent: null, step: 0, done: false, metric: null, undo: {}, steps: [] };
const publicDir = () => fx.task.publicDir;

function bytesOnDisk(dir: string): number {
  return readdirSync(dir, { withFileTypes: true }).reduce(
    (n, d) => n + (d.isDirectory() ? bytesOnDisk(path.join(dir, d.name)) : statSync(path.join(dir, d.name)).size),
    0,
  );
}

describe('SnapshotStore size limits', () => {
  it('past maxBytes, new contents are left out of the state (named in omitted) and stored ones are still referenced', async () => {
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => undefined);
    const store = new SnapshotStore(path.join(root, 'full'), { maxBytes: 4000 });
    const small = 'a'.repeat(1000);
    const first = await store.load(await store.capture(workspace({ 'a.txt': small }), publicDir(), meta));
    expect(first.files.map((f) => f.path)).toEqual(['a.txt']);
    const ws = workspace({ 'a.txt': small, 'copy.txt': small, 'big.bin': 'b'.repeat(5000), 'c.txt': 'c'.repeat(500) });
    const second = await store.load(await store.capture(ws, publicDir(), meta));
    // Already-stored content costs nothing; the 500 bytes still fit; the 5000 do not.
    expect(second.files.map((f) => f.path).sort()).toEqual(['a.txt', 'c.txt', 'copy.txt']);
    expect(second.omitted).toEqual([{ path: 'big.bin', size: 5000, reason: expect.stringMatching(/^the snapshot store is full \(\d+ of its 4000 bytes used\)$/) }]);
    expect(bytesOnDisk(store.dir)).toBeLessThanOrEqual(4000 + 2000); // the limit, plus this manifest written past it
    expect(warn).toHaveBeenCalledTimes(1);
    expect(String(warn.mock.calls[0][0])).toContain('mlagent env prune');
    await store.capture(workspace({ 'd.bin': 'd'.repeat(5000) }), publicDir(), meta);
    expect(warn).toHaveBeenCalledTimes(1); // once per store, not once per file

    // The state restores, without the file left out.
    const target = path.join(root, 'restored');
    await store.materialize(second, target, publicDir());
    expect(readdirSync(target).sort()).toEqual(['a.txt', 'c.txt', 'copy.txt']);
  });

  it('counts its own writes and prunes, and sees other processes’ prunes at a recount', async () => {
    vi.spyOn(console, 'warn').mockImplementation(() => undefined);
    const dir = path.join(root, 'recount');
    const store = new SnapshotStore(dir, { maxBytes: 10_000 });
    await store.capture(workspace({ 'x.bin': 'x'.repeat(6000) }), publicDir(), meta);
    const used = await store.usedBytes();
    expect(used).toBe(bytesOnDisk(dir));
    expect((await store.load(await store.capture(workspace({ 'y.bin': 'y'.repeat(6000) }), publicDir(), meta))).omitted).toHaveLength(1);

    // A prune through this store is counted at once (blobs of this test are younger than the prune's grace, so
    // age them by moving the clock, which the grace reads).
    const later = Date.now() + 2 * 3600_000;
    vi.useFakeTimers({ toFake: ['Date'], now: later });
    const pruned = await store.prune({ olderThanMs: 0 });
    expect(pruned.bytesFreed).toBeGreaterThan(6000);
    expect(await store.usedBytes()).toBe(bytesOnDisk(dir));
    expect((await store.load(await store.capture(workspace({ 'y.bin': 'y'.repeat(6000) }), publicDir(), meta))).omitted).toEqual([]);

    // Another store object (another process) prunes; this one, finding itself full, counts again.
    const other = new SnapshotStore(dir);
    const full = await store.capture(workspace({ 'z.bin': 'z'.repeat(6000) }), publicDir(), meta);
    expect((await store.load(full)).omitted).toHaveLength(1);
    vi.setSystemTime(later + 2 * 3600_000);
    await other.prune({ olderThanMs: 0 });
    vi.setSystemTime(later + 2 * 3600_000 + 11_000);
    expect((await store.load(await store.capture(workspace({ 'z.bin': 'z'.repeat(6000) }), publicDir(), meta))).omitted).toEqual([]);
  });

  it('leaves new contents out where the disk would keep less than minFreeBytes free', async () => {
    vi.spyOn(console, 'warn').mockImplementation(() => undefined);
    const store = new SnapshotStore(path.join(root, 'disk'), { minFreeBytes: Number.MAX_SAFE_INTEGER });
    const m = await store.load(await store.capture(workspace({ 'a.txt': 'a' }), publicDir(), meta));
    expect(m.files).toEqual([]);
    expect(m.omitted[0]).toMatchObject({ path: 'a.txt', size: 1, reason: expect.stringContaining("disk would keep less than") });
    // Blobs a caller needs (undo history, states pulled from Redis) are written whatever the limits.
    const hash = await store.putBlob('needed');
    expect((await store.readBlob(hash)).toString()).toBe('needed');
    // The default floor leaves an ordinary disk alone.
    const plain = new SnapshotStore(path.join(root, 'plain'));
    expect(plain.limits).toEqual({ maxBytes: Infinity, minFreeBytes: 256 * 2 ** 20 });
    expect((await plain.load(await plain.capture(workspace({ 'a.txt': 'a' }), publicDir(), meta))).files).toHaveLength(1);
  });

  it('refuses bad limits by name', () => {
    const dir = path.join(root, 'bad');
    expect(() => new SnapshotStore(dir, { maxBytes: -1 })).toThrow(/maxBytes must be an integer >= 0 \(or Infinity\), got -1/);
    expect(() => new SnapshotStore(dir, { maxBytes: NaN })).toThrow(/maxBytes/);
    expect(() => new SnapshotStore(dir, { maxBytes: '1G' as unknown as number })).toThrow(/maxBytes .* got 1G/);
    expect(() => new SnapshotStore(dir, { minFreeBytes: Infinity })).toThrow(/minFreeBytes must be an integer >= 0, got Infinity/);
    expect(() => new SnapshotStore(dir, { maxFileBytes: 1.5 })).toThrow(/maxFileBytes/);
  });

  it('an episode whose script fills the workspace keeps stepping: the store stays bounded and the step has its state', async () => {
    vi.spyOn(console, 'warn').mockImplementation(() => undefined);
    const store = new SnapshotStore(path.join(root, 'episode'), { maxBytes: 64 * 1024 });
    const ep = await Episode.start(fx.task, { store, workRoot: path.join(root, 'ep-ws') });
    const script = "open('junk.bin', 'wb').write(b'j' * 300000)\nprint('wrote junk')\n";
    const wrote = await ep.step(respond('Write File', { file_name: 'fill.py', content: script }));
    expect(wrote.outcome).toBe('none');
    const ran = await ep.step(respond('Execute Script', { script_name: 'fill.py' }));
    expect(ran.observation).toContain('wrote junk');
    expect(ran.snapshotId).not.toBeNull();
    const state = await store.load(ran.snapshotId!);
    expect(state.omitted.map((o) => o.path)).toEqual(['junk.bin']);
    expect(state.files.map((f) => f.path)).toContain('fill.py');
    const listed = await ep.step(respond('List Files', { dir_path: '.' }));
    expect(listed.observation).toContain('junk.bin'); // the live workspace still has it
    await ep.close();
    expect(bytesOnDisk(store.dir)).toBeLessThan(64 * 1024 + 16 * 1024);
  });
});
