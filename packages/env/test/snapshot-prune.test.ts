import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Episode } from '../src/episode/episode.js';
import { BLOB_GRACE_MS } from '../src/snapshots/maintenance.js';
import { SnapshotStore } from '../src/snapshots/store.js';
import { makeFixtureTask, respond, trainScript, type Fixture } from './episode-fixture.js';

const HOUR = 3600_000;
let fx: Fixture;
beforeAll(() => {
  fx = makeFixtureTask();
});
afterAll(() => fx.cleanup());

const edit = (pred: number) => respond('Edit Script Lines', { script_name: 'train.py', start_line_number: 4, end_line_number: 4, new_content: `pred = ${pred}` });

function walk(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((d) => (d.isDirectory() ? walk(path.join(dir, d.name)) : [path.join(dir, d.name)]));
}
/** Makes every file of the store `ms` old. */
function ageStore(store: SnapshotStore, ms: number): void {
  const t = new Date(Date.now() - ms);
  for (const f of walk(store.dir)) utimesSync(f, t, t);
}
function ageState(store: SnapshotStore, id: string, ms: number): void {
  const t = new Date(Date.now() - ms);
  utimesSync(path.join(store.dir, 'states', `${id}.json`), t, t);
}
function blobNames(store: SnapshotStore): string[] {
  const root = path.join(store.dir, 'blobs');
  return existsSync(root) ? readdirSync(root).flatMap((d) => readdirSync(path.join(root, d)).map((n) => d + n)).sort() : [];
}

/** An episode of two edits to train.py: three states (start, after each edit); the last one's undo names the others' train.py. */
async function twoEdits(store: SnapshotStore): Promise<{ first: string; second: string; start: string }> {
  const ep = await Episode.start(fx.task, { store, workRoot: path.join(fx.root, 'ws') });
  const start = await ep.snapshot();
  const first = (await ep.step(edit(0.5))).snapshotId!;
  const second = (await ep.step(edit(0.75))).snapshotId!;
  await ep.close();
  return { start, first, second };
}

describe('SnapshotStore.list and prune', () => {
  it('lists states oldest first, by task, and names a damaged manifest', async () => {
    const store = new SnapshotStore(path.join(fx.root, 'list'));
    expect(await store.list()).toEqual([]);
    const { start, first, second } = await twoEdits(store);
    ageState(store, second, 3 * HOUR);
    ageState(store, start, 2 * HOUR);
    ageState(store, first, 1 * HOUR);
    const all = await store.list();
    expect(all.map((s) => s.id)).toEqual([second, start, first]);
    const s = all[0];
    expect(s).toMatchObject({ task: fx.task.spec.name, parent: first, step: 2, done: false });
    expect(s.files).toBeGreaterThan(0);
    expect(s.bytes).toBe((await store.load(second)).files.reduce((n, f) => n + f.size, 0));
    expect(Date.now() - Date.parse(s.savedAt)).toBeGreaterThan(3 * HOUR - 60_000);
    expect(await store.list({ task: 'no-such-task' })).toEqual([]);
    expect((await store.list({ task: fx.task.spec.name })).length).toBe(3);

    const bad = 'ab'.repeat(32);
    writeFileSync(path.join(store.dir, 'states', `${bad}.json`), '{"format":"mlagent-state/1"}');
    const damaged = (await store.list()).find((x) => x.id === bad);
    expect(damaged).toMatchObject({ task: null, files: 0, problem: 'its content does not match its id' });
  }, 30_000);

  it('removes old states and the blobs only they needed; kept states (undo history too) still restore', async () => {
    const store = new SnapshotStore(path.join(fx.root, 'prune'));
    const { start, first, second } = await twoEdits(store);
    const orphan = await store.putBlob('nothing names this blob');
    const youngOrphan = await store.putBlob('nor this one, but it is new');
    writeFileSync(path.join(path.dirname(store.blobPath(orphan)), '.tmp-1-dead'), 'a killed writer left this');
    ageStore(store, 3 * HOUR);
    const t = new Date();
    utimesSync(store.blobPath(youngOrphan), t, t);
    ageState(store, second, 0); // saved just now
    const before = blobNames(store);
    const firstTrain = (await store.load(first)).files.find((f) => f.path === 'train.py')!.hash;
    const startTrain = (await store.load(start)).files.find((f) => f.path === 'train.py')!.hash;

    const dry = await store.prune({ olderThanMs: 2 * HOUR, dryRun: true });
    expect(blobNames(store)).toEqual(before);
    expect((await store.list()).length).toBe(3);

    const r = await store.prune({ olderThanMs: 2 * HOUR });
    expect(r).toEqual(dry);
    expect(r.removed.sort()).toEqual([start, first].sort());
    expect(r.statesKept).toBe(1);
    expect(r.blobsRemoved).toBe(1); // the orphan: every other blob is a file or undo entry of the kept state
    const after = blobNames(store);
    expect(after).not.toContain(orphan);
    expect(after).toContain(youngOrphan);
    expect(after).toContain(firstTrain);
    expect(after).toContain(startTrain);
    expect(r.blobsKept).toBe(after.length);
    expect(r.blobBytesKept).toBe(after.reduce((n, h) => n + statSync(store.blobPath(h)).size, 0));
    expect(readdirSync(path.dirname(store.blobPath(orphan))).some((n) => n.startsWith('.tmp-'))).toBe(false);
    expect((await store.list()).map((s) => s.id)).toEqual([second]);

    const back = await Episode.start(fx.task, { store, workRoot: path.join(fx.root, 'ws'), fromSnapshot: second });
    await back.step(respond('Undo Edit Script', { script_name: 'train.py' }));
    await back.step(respond('Undo Edit Script', { script_name: 'train.py' }));
    expect(readFileSync(path.join(back.workspace, 'train.py'), 'utf8')).toBe(trainScript(0));
    await back.close();
  }, 30_000);

  it('keeps states by id and by task, and a state saved again counts as new', async () => {
    const store = new SnapshotStore(path.join(fx.root, 'keep'));
    const { start, first, second } = await twoEdits(store);
    ageStore(store, 3 * HOUR);
    expect((await store.prune({ olderThanMs: HOUR, task: 'another-task' })).removed).toEqual([]);
    // Saving the same state again (a resumed run reaching it) refreshes it.
    await store.save(await store.load(start));
    const r = await store.prune({ olderThanMs: HOUR, keep: [first] });
    expect(r.removed).toEqual([second]);
    expect((await store.list()).map((s) => s.id).sort()).toEqual([start, first].sort());
    expect(r.blobsRemoved).toBe(1); // train.py as the second edit left it
  }, 30_000);

  it('leaves the blobs an episode saving meanwhile uses, however old, and removes them an hour later', async () => {
    const store = new SnapshotStore(path.join(fx.root, 'live'));
    const { second } = await twoEdits(store);
    ageStore(store, 3 * HOUR);
    // A live episode restored from an old state saves while the prune runs: its save refreshes every blob it names,
    // its undo history's too.
    const live = await Episode.start(fx.task, { store, workRoot: path.join(fx.root, 'ws'), fromSnapshot: second });
    const saved = (await live.step(respond('List Files', { dir_path: '.' }))).snapshotId!;
    await live.close();
    // As if the prune had listed the states before they were written (the restore saved its start state again).
    ageState(store, saved, 3 * HOUR);
    ageState(store, second, 3 * HOUR);
    const needed = new Set((await store.load(saved)).files.map((f) => f.hash));
    for (const stack of Object.values((await store.load(saved)).undo)) for (const h of stack) if (h) needed.add(h);
    expect(needed.size).toBeGreaterThan(2);
    const r = await store.prune({ olderThanMs: HOUR });
    expect(r.removed.length).toBe(4);
    expect(r.blobsRemoved).toBe(0);
    for (const h of needed) expect(Date.now() - statSync(store.blobPath(h)).mtimeMs).toBeLessThan(BLOB_GRACE_MS);
    ageStore(store, 2 * HOUR);
    const later = await store.prune({ olderThanMs: HOUR });
    expect(later.blobsRemoved).toBe(needed.size);
    expect(blobNames(store)).toEqual([]);
    expect(later.blobsKept).toBe(0);
  }, 30_000);

  it('maxBytes removes the oldest states until the store fits, freeing only blobs no kept state needs', async () => {
    const store = new SnapshotStore(path.join(fx.root, 'size'));
    const meta = (step: number) => ({ task: fx.task.spec.name, parent: null, step, done: false, metric: null, undo: {}, steps: [] });
    const shared = 's'.repeat(4000);
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      const ws = path.join(fx.root, `size-ws${i}`);
      mkdirSync(ws);
      writeFileSync(path.join(ws, 'shared.txt'), shared);
      writeFileSync(path.join(ws, 'own.bin'), String(i).repeat(10_000));
      ids.push(await store.capture(ws, fx.task.publicDir, meta(i)));
    }
    ageStore(store, 3 * HOUR);
    ids.forEach((id, i) => ageState(store, id, (10 - i) * HOUR)); // ids[0] oldest
    const size = () => walk(store.dir).reduce((n, f) => n + statSync(f).size, 0);
    const total = size();
    // Removing the oldest alone frees its own blob and manifest, 2000 bytes short of the limit, since the shared blob
    // stays for the others: so the next eligible one goes too.
    const limit = total - (10_000 + statSync(path.join(store.dir, 'states', `${ids[0]}.json`)).size + 2000);
    const dry = await store.prune({ maxBytes: limit, keep: [ids[1]], dryRun: true });
    expect(size()).toBe(total);
    const r = await store.prune({ maxBytes: limit, keep: [ids[1]] });
    expect(r).toEqual(dry);
    expect(r.removed).toEqual([ids[0], ids[2]]); // ids[1] kept by id, so the next oldest goes instead
    expect(r.blobsRemoved).toBe(2);
    expect(r.bytesKept).toBe(size());
    expect(r.bytesKept).toBeLessThanOrEqual(limit);
    expect(r.bytesFreed).toBe(total - size());
    for (const id of [ids[1], ids[3], ids[4]]) {
      const target = path.join(fx.root, `size-back-${id.slice(0, 6)}`);
      await store.materialize(await store.load(id), target, fx.task.publicDir);
      expect(readFileSync(path.join(target, 'shared.txt'), 'utf8')).toBe(shared);
    }
    // With an age too, the old ones go first; states saved within the hour stay whatever the size.
    ageState(store, ids[4], 0);
    const both = await store.prune({ olderThanMs: 8 * HOUR, maxBytes: 0 });
    expect(both.removed).toEqual([ids[1], ids[3]]);
    expect((await store.list()).map((x) => x.id)).toEqual([ids[4]]);
    expect(both.bytesKept).toBeGreaterThan(0);
  }, 30_000);

  it('refuses bad options by name and removes nothing', async () => {
    const store = new SnapshotStore(path.join(fx.root, 'bad'));
    await twoEdits(store);
    ageStore(store, 3 * HOUR);
    await expect(store.prune({ olderThanMs: -1 })).rejects.toThrow(/olderThanMs must be a number of milliseconds >= 0, got -1/);
    await expect(store.prune({ olderThanMs: NaN })).rejects.toThrow(/olderThanMs/);
    await expect(store.prune({} as never)).rejects.toThrow(/give olderThanMs, maxBytes or both/);
    await expect(store.prune({ maxBytes: -1 })).rejects.toThrow(/maxBytes must be a whole number of bytes >= 0, got -1/);
    await expect(store.prune({ maxBytes: 1.5 })).rejects.toThrow(/maxBytes/);
    await expect(store.prune({ olderThanMs: 0, keep: ['abc'] })).rejects.toThrow(/keep holds "abc", not a state id/);
    await expect(store.prune({ olderThanMs: 0, task: '' })).rejects.toThrow(/task must be a non-empty task name/);
    expect((await store.list()).length).toBe(3);
  }, 30_000);
});
