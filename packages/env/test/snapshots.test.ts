import { createHash } from 'node:crypto';
import { existsSync, lstatSync, readdirSync, readFileSync, readlinkSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Episode } from '../src/episode/episode.js';
import { replay } from '../src/episode/replay.js';
import { SnapshotStore } from '../src/snapshots/store.js';
import { makeFixtureTask, respond, type Fixture } from './episode-fixture.js';

let fx: Fixture;
let store: SnapshotStore;
let opts: { store: SnapshotStore; workRoot: string };

/** Every entry of a workspace: files by content and mode, links by target, directories. */
function tree(dir: string, rel = ''): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of readdirSync(path.join(dir, rel)).sort()) {
    const r = rel ? `${rel}/${name}` : name;
    const abs = path.join(dir, r);
    const st = lstatSync(abs);
    if (st.isSymbolicLink()) out[r] = `link:${readlinkSync(abs)}`;
    else if (st.isDirectory()) Object.assign(out, { [r]: 'dir' }, tree(dir, r));
    else out[r] = `${(st.mode & 0o777).toString(8)}:${createHash('sha256').update(readFileSync(abs)).digest('hex')}`;
  }
  return out;
}

beforeAll(() => {
  fx = makeFixtureTask();
  store = new SnapshotStore(path.join(fx.root, 'store'));
  opts = { store, workRoot: path.join(fx.root, 'ws') };
});
afterAll(() => fx.cleanup());

const EDIT = respond('Edit Script Lines', { script_name: 'train.py', start_line_number: 4, end_line_number: 4, new_content: 'pred = 0.75' });
const RUN = respond('Execute Script', { script_name: 'train.py' });

describe('SnapshotStore', () => {
  it('restores a state exactly: files, modes, links, empty dirs, metric, history and undo', async () => {
    const ep = await Episode.start(fx.task, opts);
    await ep.step(EDIT);
    await ep.step(RUN);
    await ep.step(respond('Write File', { file_name: 'empty_dir_holder/notes.txt', content: 'n' }));
    writeFileSync(path.join(ep.workspace, 'run.sh'), '#!/bin/sh\n', { mode: 0o755 });
    const { mkdirSync } = await import('node:fs');
    mkdirSync(path.join(ep.workspace, 'models', 'empty'), { recursive: true });
    const id = await ep.snapshot();
    expect(id).toMatch(/^[0-9a-f]{64}$/);
    expect(await ep.snapshot()).toBe(id);
    const before = tree(ep.workspace);
    const messages = ep.messages();

    const back = await Episode.start(fx.task, { ...opts, fromSnapshot: id });
    expect(back.workspace).not.toBe(ep.workspace);
    expect(tree(back.workspace)).toEqual(before);
    expect(statSync(path.join(back.workspace, 'run.sh')).mode & 0o777).toBe(0o755);
    expect(back.currentMetric).toBe(0.25);
    expect(back.stepIndex).toBe(3);
    expect(back.history).toEqual(ep.history);
    expect(back.messages()).toEqual(messages);
    expect(back.prompt()).toBe(ep.prompt());
    // Saving the restored state gives the same id: nothing was lost or added.
    expect(await back.snapshot()).toBe(id);
    // The undo history came back too.
    const u = await back.step(respond('Undo Edit Script', { script_name: 'train.py' }));
    expect(u.outcome).toBe('none');
    expect(readFileSync(path.join(back.workspace, 'train.py'), 'utf8')).toBe(readFileSync(path.join(fx.task.envDir, 'train.py'), 'utf8'));
    // The data link points at the task's public data, not into the store.
    expect(readlinkSync(path.join(back.workspace, 'data'))).toBe(fx.task.publicDir);
    await Promise.all([ep.close(), back.close()]);
  }, 30_000);

  // How long these take is measured in tools/bench/snapshot-restore.ts (against cp -r), not here.
  it('restores a bigger workspace (200 files, a 32 MiB model file), and saves it again unchanged', async () => {
    const ep = await Episode.start(fx.task, opts);
    const { mkdirSync } = await import('node:fs');
    mkdirSync(path.join(ep.workspace, 'out'));
    for (let i = 0; i < 200; i++) writeFileSync(path.join(ep.workspace, 'out', `f${i}.txt`), `file ${i}\n`.repeat(500));
    writeFileSync(path.join(ep.workspace, 'model.bin'), Buffer.alloc(32 * 2 ** 20, 7));
    const id = await ep.snapshot();
    const before = tree(ep.workspace);
    const back = await Episode.start(fx.task, { ...opts, fromSnapshot: id });
    expect(tree(back.workspace)).toEqual(before);
    // An unchanged workspace (read through the hash cache) and its restored copy save as the same state.
    expect(await ep.snapshot()).toBe(id);
    expect(await back.snapshot()).toBe(id);
    await Promise.all([ep.close(), back.close()]);
  }, 30_000);

  it('restores by id prefix and refuses unknown ids, other tasks and corrupt manifests', async () => {
    const ep = await Episode.start(fx.task, opts);
    const id = await ep.snapshot();
    await ep.close();
    const m = await store.load(id.slice(0, 10));
    expect(m.task).toBe('tiny');
    expect(m.step).toBe(0);
    expect(m.metric).toBe(1);
    expect(m.links).toEqual([{ path: 'data', target: '@public-data' }]);
    await expect(store.load('zz')).rejects.toThrow(/not a state id/);
    await expect(store.load('0'.repeat(64))).rejects.toThrow(/no state/);
    const other = { ...fx.task, spec: { ...fx.task.spec, name: 'other' } };
    await expect(Episode.start(other, { ...opts, fromSnapshot: id })).rejects.toThrow(/belongs to task 'tiny', not 'other'/);
    const bad = new SnapshotStore(path.join(fx.root, 'store-bad'));
    const badId = await bad.save({ ...m, step: 0 });
    writeFileSync(path.join(bad.dir, 'states', `${badId}.json`), JSON.stringify({ ...m, step: 5 }));
    await expect(bad.load(badId)).rejects.toThrow(/corrupt/);
  });

  it('copies a state with its last response reworded (the same action call), and refuses another call', async () => {
    const ep = await Episode.start(fx.task, opts);
    const first = await ep.snapshot();
    const r = await ep.step(`Thought: first look\n${respond('Execute Script', { script_name: 'train.py' })}`);
    await ep.close();
    const reworded = await store.withLastResponse(r.snapshotId!, `Thought: run it as it is\n${respond('Execute Script', { script_name: 'train.py' })}`);
    const [a, b] = [await store.load(r.snapshotId!), await store.load(reworded)];
    expect(reworded).not.toBe(r.snapshotId);
    expect(b.steps.map((x) => x.response)).toEqual([`Thought: run it as it is\n${respond('Execute Script', { script_name: 'train.py' })}`]);
    expect({ ...b, steps: b.steps.map(({ response: _r, ...x }) => x) }).toEqual({ ...a, steps: a.steps.map(({ response: _r, ...x }) => x) });
    const resumed = await Episode.start(fx.task, { ...opts, fromSnapshot: reworded });
    expect(resumed.messages().map((m) => m.content).join('\n')).toContain('run it as it is');
    const original = await Episode.start(fx.task, { ...opts, fromSnapshot: r.snapshotId! });
    expect(tree(resumed.workspace)).toEqual(tree(original.workspace));
    await Promise.all([resumed.close(), original.close()]);
    await expect(store.withLastResponse(r.snapshotId!, respond('List Files', { dir_path: '.' }))).rejects.toThrow(/does not make the action call/);
    await expect(store.withLastResponse(r.snapshotId!, 'no action')).rejects.toThrow(/does not make the action call/);
    await expect(store.withLastResponse(first, respond('Execute Script', { script_name: 'train.py' }))).rejects.toThrow(/has no step/);
  }, 30_000);

  it('runs many episodes from one snapshot at once without interference, and the snapshot stays intact', async () => {
    const ep = await Episode.start(fx.task, opts);
    await ep.step(EDIT);
    const id = await ep.snapshot();
    const before = tree(ep.workspace);
    await ep.close();
    const preds = [0, 1, 2, 3];
    const results = await Promise.all(
      preds.map(async (p) => {
        const e = await Episode.start(fx.task, { ...opts, fromSnapshot: id });
        await e.step(respond('Edit Script Lines', { script_name: 'train.py', start_line_number: 4, end_line_number: 4, new_content: `pred = ${p}` }));
        const r = await e.step(RUN);
        await e.close();
        return r.metric;
      }),
    );
    expect(results).toEqual([1, 0, 1, 2]);
    const again = await Episode.start(fx.task, { ...opts, fromSnapshot: id });
    expect(tree(again.workspace)).toEqual(before);
    expect((await again.step(RUN)).metric).toBe(0.25);
    await again.close();
  }, 30_000);

  it('keeps unchanged content once (content addressing) and leaves big files out with a note', async () => {
    const small = new SnapshotStore(path.join(fx.root, 'store-small'), { maxFileBytes: 1000 });
    const ep = await Episode.start(fx.task, { ...opts, store: small });
    writeFileSync(path.join(ep.workspace, 'big.bin'), Buffer.alloc(5000, 1));
    writeFileSync(path.join(ep.workspace, 'copy.py'), readFileSync(path.join(ep.workspace, 'train.py')));
    const id = await ep.snapshot();
    const m = await small.load(id);
    expect(m.omitted).toEqual([{ path: 'big.bin', size: 5000, reason: "larger than the store's limit of 1000 bytes" }]);
    const hashes = m.files.map((f) => f.hash);
    expect(m.files.find((f) => f.path === 'copy.py')!.hash).toBe(m.files.find((f) => f.path === 'train.py')!.hash);
    const blobs = readdirSync(path.join(small.dir, 'blobs')).flatMap((d) => readdirSync(path.join(small.dir, 'blobs', d)));
    expect(blobs.length).toBe(new Set(hashes).size);
    const back = await Episode.start(fx.task, { ...opts, store: small, fromSnapshot: id });
    expect(existsSync(path.join(back.workspace, 'big.bin'))).toBe(false);
    await Promise.all([ep.close(), back.close()]);
  });

  it('replay re-runs a trajectory and reaches the same state', async () => {
    const responses = [EDIT, RUN, respond('Final Answer', { final_answer: 'pred 0.75' }), RUN];
    const a = await replay(fx.task, responses, opts);
    expect(a.steps.map((s) => s.outcome)).toEqual(['none', 'ok', 'none']);
    expect(a.steps[1].metric).toBe(0.25);
    expect(a.unplayed).toBe(1);
    const b = await replay(fx.task, responses, opts);
    // Durations differ between runs, so compare what the agent saw and the files.
    expect(b.steps.map((s) => s.observation)).toEqual(a.steps.map((s) => s.observation));
    const [ma, mb] = [await store.load(a.finalSnapshot), await store.load(b.finalSnapshot)];
    expect(mb.files).toEqual(ma.files);
    expect(mb.metric).toBe(0.25);
    expect(mb.done).toBe(true);
    // Replaying from a saved state continues it.
    const first = await replay(fx.task, [EDIT], opts);
    const rest = await replay(fx.task, [RUN], { ...opts, fromSnapshot: first.finalSnapshot });
    expect(rest.steps[0].step).toBe(2);
    expect(rest.steps[0].metric).toBe(0.25);
  }, 30_000);
});
