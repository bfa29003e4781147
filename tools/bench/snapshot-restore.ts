// What saving and restoring an env state costs (SnapshotStore): a workspace of many small files and one large
// model file is captured, captured again unchanged (the episode's hash cache skips reading files whose inode, size
// and times did not change), and restored into a new directory. Reference in the same run: `cp -r` of the same
// workspace, which is what a restore has to do at least. Median of --runs.
// Run (after `npx nx run-many -t build`): node --import tsx tools/bench/snapshot-restore.ts [--files 200]
//   [--model-mib 32] [--runs 5]
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { SnapshotStore, type HashCache, type StateMeta } from '@mlagent/env';

const { values } = parseArgs({ options: { files: { type: 'string', default: '200' }, 'model-mib': { type: 'string', default: '32' }, runs: { type: 'string', default: '5' } } });
const count = (name: string, v: string | undefined) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} must be a positive integer, got ${v}`);
  return n;
};
const files = count('files', values.files);
const modelMib = count('model-mib', values['model-mib']);
const runs = count('runs', values.runs);

const root = mkdtempSync(path.join(tmpdir(), 'snapshot-bench-'));
const ws = path.join(root, 'ws');
const publicDir = path.join(root, 'public');
mkdirSync(path.join(ws, 'out'), { recursive: true });
mkdirSync(publicDir);
for (let i = 0; i < files; i++) writeFileSync(path.join(ws, 'out', `f${i}.txt`), `file ${i}\n`.repeat(500));
writeFileSync(path.join(ws, 'model.bin'), Buffer.alloc(modelMib * 2 ** 20, 7));
const meta: StateMeta = { task: 'bench', parent: null, step: 0, done: false, metric: null, undo: {}, steps: [] };

const time = async (fn: () => unknown) => {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
};
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const rows: Record<string, number[]> = { 'capture (new store)': [], 'capture again, unchanged (hash cache)': [], restore: [], 'cp -r (reference)': [] };
try {
  for (let r = 0; r < runs; r++) {
    const store = new SnapshotStore(path.join(root, `store${r}`));
    const cache: HashCache = new Map();
    let id = '';
    rows['capture (new store)'].push(await time(async () => (id = await store.capture(ws, publicDir, meta, cache))));
    rows['capture again, unchanged (hash cache)'].push(await time(() => store.capture(ws, publicDir, meta, cache)));
    const manifest = await store.load(id);
    rows.restore.push(await time(() => store.materialize(manifest, path.join(root, `restored${r}`), publicDir)));
    rows['cp -r (reference)'].push(await time(() => execFileSync('cp', ['-r', ws, path.join(root, `copied${r}`)])));
    rmSync(path.join(root, `store${r}`), { recursive: true });
    rmSync(path.join(root, `restored${r}`), { recursive: true });
    rmSync(path.join(root, `copied${r}`), { recursive: true });
  }
} finally {
  rmSync(root, { recursive: true, force: true });
}
const ref = median(rows['cp -r (reference)']);
console.log(`workspace: ${files} files of ${(`file 0\n`.repeat(500).length / 1024).toFixed(1)} KiB and a ${modelMib} MiB file; median of ${runs} runs`);
console.log('| operation | ms | × cp -r |');
console.log('|---|---:|---:|');
for (const [name, xs] of Object.entries(rows)) console.log(`| ${name} | ${median(xs).toFixed(1)} | ${(median(xs) / ref).toFixed(2)} |`);
