import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { SnapshotStore, type StateManifest } from '@mlagent/env';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const bin = fileURLToPath(new URL('../bin/mlagent.js', import.meta.url));
const HOUR = 3600_000;

let root: string;
let env: NodeJS.ProcessEnv;

function mlagent(args: string[]) {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 60_000, env });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function age(file: string, ms: number): void {
  const t = new Date(Date.now() - ms);
  utimesSync(file, t, t);
}

/** A state of one file `train.py` holding `text`, saved `ago` ms ago (its blob too). */
async function state(store: SnapshotStore, task: string, step: number, text: string, ago: number): Promise<string> {
  const hash = await store.putBlob(text);
  const m: StateManifest = {
    format: 'mlagent-state/1',
    task,
    parent: null,
    step,
    done: false,
    metric: step === 0 ? null : 0.5 + step,
    files: [{ path: 'train.py', hash, size: Buffer.byteLength(text), mode: 0o644 }],
    dirs: [],
    links: [],
    omitted: [],
    undo: {},
    steps: [],
  };
  const id = await store.save(m);
  age(path.join(store.dir, 'states', `${id}.json`), ago);
  age(store.blobPath(hash), ago);
  return id;
}

const blobCount = (store: SnapshotStore) => readdirSync(path.join(store.dir, 'blobs')).flatMap((d) => readdirSync(path.join(store.dir, 'blobs', d))).length;

beforeAll(() => {
  root = mkdtempSync(path.join(os.tmpdir(), 'mlagent-cli-states-'));
  env = { ...process.env, MLAGENT_HOME: path.join(root, 'home') };
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('mlagent env states / prune', () => {
  it('lists a store oldest first, by task, as text or JSON, and names damaged manifests', async () => {
    const store = new SnapshotStore(path.join(root, 'home', 'states'));
    const a = await state(store, 'house-prices', 2, 'print(2)\n', 2 * HOUR);
    const b = await state(store, 'house-prices', 0, 'print(0)\n', 3 * HOUR);
    const c = await state(store, 'spaceship-titanic', 1, 'print(1)\n', HOUR);
    writeFileSync(path.join(store.dir, 'states', `${'0'.repeat(64)}.json`), 'not it');

    const text = mlagent(['env', 'states']); // the default store, $MLAGENT_HOME/states
    expect(text.code).toBe(0);
    const lines = text.stdout.trim().split('\n');
    expect(lines.slice(0, 3).map((l) => l.slice(0, 12))).toEqual([b, a, c].map((id) => id.slice(0, 12)));
    expect(lines[1]).toMatch(/^[0-9a-f]{12} {2}house-prices {2}step 2 {2}metric 2\.5 {2}\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ {2}1 files {2}0\.000 MiB$/);
    expect(lines[3]).toBe(`${'0'.repeat(12)}  damaged: its content does not match its id`);
    expect(lines[4]).toBe(`4 states (1 damaged) in ${store.dir}`);
    expect(lines[5]).toBe('3 blobs, 0.000 MiB');
    // A blob no state names, an hour old: the footer says a prune would free it.
    age(store.blobPath(await store.putBlob('orphan\n')), 2 * HOUR);
    expect(mlagent(['env', 'states']).stdout.trim().split('\n').at(-1)).toBe('4 blobs, 0.000 MiB; 1 of them (0.000 MiB) needed by no state: env prune removes them');

    const json = mlagent(['env', 'states', '--task', 'house-prices', '--json', '--store', store.dir]);
    expect(json.code).toBe(0);
    const list = JSON.parse(json.stdout);
    expect(list.map((s: { id: string }) => s.id)).toEqual([b, a]);
    expect(list[1]).toMatchObject({ task: 'house-prices', step: 2, metric: 2.5, files: 1, bytes: 9, done: false, parent: null });
  });

  it('prunes old states (dry run first), keeps those a --keep file names, and the blobs they need', async () => {
    const store = new SnapshotStore(path.join(root, 'run', 'collect', 'snapshots'));
    const old1 = await state(store, 'house-prices', 1, 'old one\n', 5 * HOUR);
    const old2 = await state(store, 'house-prices', 2, 'old two\n', 5 * HOUR);
    const pooled = await state(store, 'house-prices', 3, 'in the pool\n', 5 * HOUR);
    const young = await state(store, 'house-prices', 4, 'young\n', 60_000);
    const steps = path.join(root, 'run', 'collect', 'steps.jsonl');
    writeFileSync(steps, `${JSON.stringify({ task: 'house-prices', stateBefore: pooled, response: 'x' })}\n`);

    const dry = mlagent(['env', 'prune', '--store', store.dir, '--older-than', '2h', '--keep', steps, '--dry-run']);
    expect(dry.code).toBe(0);
    expect(dry.stdout).toMatch(/^would remove 2 states \(2 kept\) and 2 blobs, freeing [\d.]+ MiB; 2 blobs \([\d.]+ MiB\) would stay, [\d.]+ MiB in all\n$/);
    expect((await store.list()).length).toBe(4);
    expect(blobCount(store)).toBe(4);

    const r = mlagent(['env', 'prune', '--store', store.dir, '--older-than', '2h', '--keep', steps, '--json']);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out).toMatchObject({ dryRun: false, statesKept: 2, blobsRemoved: 2, blobsKept: 2 });
    expect(out.removed.sort()).toEqual([old1, old2].sort());
    expect((await store.list()).map((s) => s.id).sort()).toEqual([pooled, young].sort());
    expect((await store.readBlob((await store.load(pooled)).files[0].hash)).toString()).toBe('in the pool\n');
    expect(blobCount(store)).toBe(2);

    // 0 removes every state of the task named; the other task's stay.
    await state(store, 'spaceship-titanic', 1, 'other task\n', 5 * HOUR);
    const all = mlagent(['env', 'prune', '--store', store.dir, '--older-than', '0', '--task', 'house-prices']);
    expect(all.code).toBe(0);
    expect(all.stdout).toMatch(/^removed 2 states \(1 kept\) and 1 blob, freed/); // young's blob is within the hour
    expect((await store.list()).map((s) => s.task)).toEqual(['spaceship-titanic']);

    // --max-size: the oldest go until the rest fits; the hour-old grace keeps the young ones.
    const sized = new SnapshotStore(path.join(root, 'sized'));
    const a = await state(sized, 'house-prices', 1, 'a'.repeat(50_000), 5 * HOUR);
    const b = await state(sized, 'house-prices', 2, 'b'.repeat(50_000), 4 * HOUR);
    const c = await state(sized, 'house-prices', 3, 'c'.repeat(50_000), 3 * HOUR);
    const s = mlagent(['env', 'prune', '--store', sized.dir, '--max-size', '60K', '--json']);
    expect(s.code).toBe(0);
    const out2 = JSON.parse(s.stdout);
    expect(out2.removed).toEqual([a, b]);
    expect(out2.bytesKept).toBeLessThanOrEqual(60 * 1024);
    expect((await sized.list()).map((x) => x.id)).toEqual([c]);
  });

  it('refuses bad usage before touching a store', async () => {
    const store = new SnapshotStore(path.join(root, 'bad', 'snapshots'));
    await state(store, 'house-prices', 1, 'x\n', 5 * HOUR);
    const run = path.join(root, 'bad');
    const noIds = path.join(root, 'no-ids.txt');
    writeFileSync(noIds, 'nothing here\n');
    const cases: [string[], RegExp][] = [
      [['env', 'prune', '--store', store.dir], /env prune: --older-than AGE \(0 removes every state\) or --max-size SIZE is required/],
      [['env', 'prune', '--store', store.dir, '--max-size', '0'], /--max-size must be a size such as 500M, 20G or 1T, got '0'/],
      [['env', 'states', '--store', store.dir, '--max-size', '1G'], /env states: --max-size belongs to env prune/],
      [['env', 'prune', '--store', store.dir, '--older-than', '7 days'], /--older-than must be an age such as 90s, 30m, 12h or 7d \(0: every state\), got '7 days'/],
      [['env', 'prune', '--store', store.dir, '--older-than=-1h'], /--older-than must be an age/],
      [['env', 'prune', '--store', store.dir, '--older-than', '1h', '--keep', noIds], /--keep .*no-ids.txt holds no state id \(64 hex digits\)/],
      [['env', 'prune', '--store', store.dir, '--older-than', '1h', '--keep', path.join(root, 'missing.jsonl')], /cannot read --keep .*missing.jsonl/],
      [['env', 'prune', '--store', store.dir, '--older-than', '1h', '--task', ''], /--task must name a task, got an empty string/],
      [['env', 'prune', '--store', run, '--older-than', '1h'], new RegExp(`is not a snapshot store: it has no states/ or blobs/ \\(its snapshot store is ${store.dir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\)`)],
      [['env', 'prune', '--store', path.join(root, 'nope'), '--older-than', '1h'], /nope does not exist/],
      [['env', 'prune', '--store', '', '--older-than', '1h'], /--store must name a directory, got an empty string/],
      [['env', 'states', '--store', store.dir, '--older-than', '1h'], /env states: --older-than belongs to env prune/],
    ];
    for (const [args, message] of cases) {
      const r = mlagent(args);
      expect(r.stderr, args.join(' ')).toMatch(message);
      expect(r.code, args.join(' ')).toBe(2);
    }
    expect((await store.list()).length).toBe(1);
    const fresh = { ...env, MLAGENT_HOME: path.join(root, 'empty-home') };
    mkdirSync(fresh.MLAGENT_HOME!, { recursive: true });
    const r = spawnSync(process.execPath, [bin, 'env', 'states'], { encoding: 'utf8', env: fresh });
    expect(r.stderr).toMatch(/env states: the default store .*empty-home\/states \(env run, shell and serve save there\) does not exist/);
    expect(existsSync(path.join(root, 'empty-home', 'states'))).toBe(false);
  });
});
