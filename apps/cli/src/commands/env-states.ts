// mlagent env states / env prune: what a snapshot store holds, and dropping old states from it. Stores only grow:
// env run/serve save every step to $MLAGENT_HOME/states, a worker's cache keeps every state it ran.
import { existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { mlagentHome, SnapshotStore, type PruneResult, type StateSummary } from '@mlagent/env';
import { UsageError, parse } from '../args.js';

export const envStatesUsage = `mlagent env states [--store DIR] [--task NAME] [--json]
    Lists the states saved in a snapshot store, oldest first: id, task, step, metric, when saved, files and their size;
    then the store's blobs on disk, and those no state needs (which env prune removes, whatever --older-than).
mlagent env prune --older-than AGE|--max-size SIZE [--store DIR] [--task NAME] [--keep FILE]... [--dry-run] [--json]
    Removes the states saved more than AGE ago (30m, 12h, 7d; 0: all), then every blob no remaining state needs
    (files and undo history) that nothing has used for an hour, so episodes saving into the store meanwhile stay
    whole. --max-size (500M, 20G; with or without --older-than) then also removes the oldest states until the
    store would hold at most SIZE; states saved and blobs used in the last hour stay whatever the size. --keep FILE keeps every state whose id (64 hex digits) appears anywhere in FILE, so a collection's
    steps.jsonl keeps its states pool. --task: only that task's states. --dry-run: report, remove nothing.
    --store defaults to $MLAGENT_HOME/states (env run, shell and serve save there; a collection's is DIR/snapshots,
    an evaluation's OUT/snapshots, a worker's $MLAGENT_HOME/worker-states).`;

const OPTIONS = {
  store: { type: 'string' },
  task: { type: 'string' },
  json: { type: 'boolean', default: false },
  'older-than': { type: 'string' },
  'max-size': { type: 'string' },
  keep: { type: 'string', multiple: true },
  'dry-run': { type: 'boolean', default: false },
} as const;

const UNIT_MS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** "30m", "12h", "7d", "90s" or "0" as milliseconds. */
export function parseAge(command: string, text: string, flag = '--older-than', also = '0: every state'): number {
  if (text.trim() === '0') return 0;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$/.exec(text);
  if (!m) throw new UsageError(`${command}: ${flag} must be an age such as 90s, 30m, 12h or 7d (${also}), got '${text}'`);
  return Number(m[1]) * UNIT_MS[m[2]];
}

const UNIT_BYTES: Record<string, number> = { '': 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 };

/** "500M", "20G", "1.5T", "4096" (bytes; K, M, G, T are powers of 1024, with or without a trailing B) as bytes. */
export function parseSize(command: string, flag: string, text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$/i.exec(text);
  const bytes = m ? Math.floor(Number(m[1]) * UNIT_BYTES[m[2].toLowerCase()]) : NaN;
  if (!Number.isSafeInteger(bytes) || bytes <= 0) throw new UsageError(`${command}: ${flag} must be a size such as 500M, 20G or 1T, got '${text}'`);
  return bytes;
}

/** --store-max-size as the store's maxBytes (undefined: no limit). */
export function storeMaxBytes(command: string, raw: string | undefined): number | undefined {
  return raw === undefined ? undefined : parseSize(command, '--store-max-size', raw);
}

function openStore(command: string, dir: string | undefined): SnapshotStore {
  if (dir === '') throw new UsageError(`${command}: --store must name a directory, got an empty string`);
  const store = new SnapshotStore(dir ?? path.join(mlagentHome(), 'states'));
  const which = dir === undefined ? `the default store ${store.dir} (env run, shell and serve save there)` : store.dir;
  if (!existsSync(store.dir)) throw new UsageError(`${command}: ${which} does not exist`);
  if (!statSync(store.dir).isDirectory()) throw new UsageError(`${command}: ${which} is not a directory`);
  // A run or collection directory holds its store in snapshots/: pruning that by mistake would find nothing to keep.
  if (!existsSync(path.join(store.dir, 'states')) && !existsSync(path.join(store.dir, 'blobs'))) {
    const inner = path.join(store.dir, 'snapshots');
    const hint = existsSync(path.join(inner, 'states')) ? ` (its snapshot store is ${inner})` : '';
    throw new UsageError(`${command}: ${which} is not a snapshot store: it has no states/ or blobs/${hint}`);
  }
  return store;
}

/** Every state id in the --keep files; a file with none is refused (most likely the wrong file). */
function keptIds(command: string, files: string[]): string[] {
  const ids: string[] = [];
  for (const file of files) {
    if (file === '') throw new UsageError(`${command}: --keep must name a file, got an empty string`);
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (e) {
      throw new UsageError(`${command}: cannot read --keep ${file}: ${(e as Error).message}`);
    }
    const found = text.match(/(?<![0-9a-f])[0-9a-f]{64}(?![0-9a-f])/g) ?? [];
    if (found.length === 0) throw new UsageError(`${command}: --keep ${file} holds no state id (64 hex digits)`);
    ids.push(...found);
  }
  return ids;
}

function mib(bytes: number): string {
  return `${(bytes / 2 ** 20).toFixed(bytes < 2 ** 20 ? 3 : 1)} MiB`;
}

function stateLine(s: StateSummary): string {
  if (s.problem) return `${s.id.slice(0, 12)}  damaged: ${s.problem}`;
  const metric = s.metric === null ? '-' : String(s.metric);
  return [s.id.slice(0, 12), s.task, `step ${s.step}${s.done ? ' (done)' : ''}`, `metric ${metric}`, s.savedAt.replace(/\.\d+Z$/, 'Z'), `${s.files} files`, mib(s.bytes)].join('  ');
}

async function states(rest: string[]): Promise<void> {
  const { values: v } = parse('env states', rest, OPTIONS);
  for (const flag of ['older-than', 'max-size', 'keep', 'dry-run'] as const) {
    if (v[flag] !== undefined && v[flag] !== false) throw new UsageError(`env states: --${flag} belongs to env prune\n${envStatesUsage}`);
  }
  if (v.task === '') throw new UsageError('env states: --task must name a task, got an empty string');
  const store = openStore('env states', v.store);
  const list = await store.list({ task: v.task });
  if (v.json) {
    process.stdout.write(`${JSON.stringify(list)}\n`);
    return;
  }
  for (const s of list) process.stdout.write(`${stateLine(s)}\n`);
  const damaged = list.filter((s) => s.problem).length;
  process.stdout.write(`${list.length} state${list.length === 1 ? '' : 's'}${v.task ? ` of ${v.task}` : ''}${damaged ? ` (${damaged} damaged)` : ''} in ${store.dir}\n`);
  // What the store holds on disk, and what a prune would free without removing a single state.
  const disk = await store.prune({ olderThanMs: Number.MAX_SAFE_INTEGER, dryRun: true });
  const blobs = disk.blobsKept + disk.blobsRemoved;
  process.stdout.write(
    `${blobs} blob${blobs === 1 ? '' : 's'}, ${mib(disk.blobBytesKept + disk.bytesFreed)}` +
      (disk.blobsRemoved > 0 ? `; ${disk.blobsRemoved} of them (${mib(disk.bytesFreed)}) needed by no state: env prune removes them\n` : '\n'),
  );
}

function pruneText(r: PruneResult, dryRun: boolean): string {
  const verb = dryRun ? 'would remove' : 'removed';
  return (
    `${verb} ${r.removed.length} state${r.removed.length === 1 ? '' : 's'} (${r.statesKept} kept) and ${r.blobsRemoved} blob${r.blobsRemoved === 1 ? '' : 's'}, ` +
    `${dryRun ? 'freeing' : 'freed'} ${mib(r.bytesFreed)}; ${r.blobsKept} blobs (${mib(r.blobBytesKept)}) ${dryRun ? 'would stay' : 'stay'}, ${mib(r.bytesKept)} in all\n`
  );
}

async function prune(rest: string[]): Promise<void> {
  const { values: v } = parse('env prune', rest, OPTIONS);
  if (v['older-than'] === undefined && v['max-size'] === undefined)
    throw new UsageError(`env prune: --older-than AGE (0 removes every state) or --max-size SIZE is required\n${envStatesUsage}`);
  const olderThanMs = v['older-than'] === undefined ? undefined : parseAge('env prune', v['older-than']);
  const maxBytes = v['max-size'] === undefined ? undefined : parseSize('env prune', '--max-size', v['max-size']);
  if (v.task === '') throw new UsageError('env prune: --task must name a task, got an empty string');
  const keep = keptIds('env prune', v.keep ?? []);
  const store = openStore('env prune', v.store);
  const dryRun = v['dry-run'];
  const r = await store.prune({ olderThanMs, maxBytes, task: v.task, keep, dryRun });
  process.stdout.write(v.json ? `${JSON.stringify({ dryRun, ...r })}\n` : pruneText(r, dryRun));
}

export async function envStatesCommand(sub: 'states' | 'prune', rest: string[]): Promise<void> {
  if (sub === 'states') await states(rest);
  else await prune(rest);
}
