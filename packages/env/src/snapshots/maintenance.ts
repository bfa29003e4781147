// Listing and pruning a snapshot store. A store only grows (every step of every episode adds a state, and the worker's
// cache keeps every state it ever ran), so a long-lived one needs a way to drop old states and the blobs no kept
// state needs.
//
// Pruning runs beside episodes that are still saving into the store, so a blob is removed only when no kept state
// names it and nothing has used it for BLOB_GRACE_MS: every save refreshes the time of the blobs it references (files
// and undo history), and one takes seconds, far below the grace.
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { MANIFEST_FORMAT, type StateManifest } from './manifest.js';

/** A blob or temporary file changed within this long is never removed, whatever references it. */
export const BLOB_GRACE_MS = 60 * 60 * 1000;

export interface StateSummary {
  id: string;
  /** null where the manifest cannot be read (then `problem` says why). */
  task: string | null;
  parent: string | null;
  step: number | null;
  done: boolean | null;
  metric: number | null;
  /** When the manifest was written, or last saved again (ISO time). */
  savedAt: string;
  /** Files in the state and their total size (bytes), shared blobs counted in each state. */
  files: number;
  bytes: number;
  /** Set on a manifest that is unreadable or does not match its id; such a state cannot be restored. */
  problem?: string;
}

export interface ListStatesOptions {
  /** Only this task's states. */
  task?: string;
}

export interface PruneOptions {
  /** States saved more than this many milliseconds ago are removed (0: all of them). */
  olderThanMs?: number;
  /**
   * Then the oldest of the other states too, until the store's blobs and manifests would take at most this many
   * bytes. States saved and blobs used within the last hour stay whatever the size (BLOB_GRACE_MS), so a store
   * busier than that can stay above it; `bytesKept` tells.
   */
  maxBytes?: number;
  /** Only this task's states are removed (blobs no remaining state needs still go). */
  task?: string;
  /** State ids kept whatever their age (64 hex digits each). */
  keep?: Iterable<string>;
  /** Report what would be removed, remove nothing. */
  dryRun?: boolean;
}

export interface PruneResult {
  /** Ids of the states removed (or that would be, on a dry run), oldest first. */
  removed: string[];
  statesKept: number;
  blobsRemoved: number;
  /** Bytes of the blobs and manifests removed, and of leftover temporary files. */
  bytesFreed: number;
  /** Blobs still in the store after the prune, and their bytes. */
  blobsKept: number;
  blobBytesKept: number;
  /** The kept blobs' and manifests' bytes: the store's size after the prune. */
  bytesKept: number;
}

const ID = /^[0-9a-f]{64}$/;

interface Entry {
  id: string;
  file: string;
  mtimeMs: number;
  size: number;
  manifest: StateManifest | null;
  problem?: string;
  /** The file could not be read at all (permissions, I/O), so what it references is unknown. */
  unreadable?: boolean;
}

async function readEntries(statesDir: string): Promise<Entry[]> {
  const names = await fs.readdir(statesDir).catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') return [] as string[];
    throw e;
  });
  const out: Entry[] = [];
  for (const name of names.sort()) {
    const id = name.slice(0, -'.json'.length);
    if (!name.endsWith('.json') || !ID.test(id)) continue;
    const file = path.join(statesDir, name);
    const st = await fs.lstat(file).catch(() => null);
    if (!st?.isFile()) continue; // removed meanwhile, or not ours
    const entry: Entry = { id, file, mtimeMs: st.mtimeMs, size: st.size, manifest: null };
    try {
      const text = await fs.readFile(file, 'utf8');
      if (createHash('sha256').update(text).digest('hex') !== id) entry.problem = 'its content does not match its id';
      else {
        const m = JSON.parse(text) as StateManifest;
        if (m?.format !== MANIFEST_FORMAT || !Array.isArray(m.files)) entry.problem = `it is not a '${MANIFEST_FORMAT}' manifest`;
        else entry.manifest = m;
      }
    } catch (e) {
      entry.problem = `it cannot be read: ${(e as Error).message}`;
      entry.unreadable = (e as NodeJS.ErrnoException).code !== undefined;
    }
    out.push(entry);
  }
  return out;
}

function summary(e: Entry): StateSummary {
  const m = e.manifest;
  const s: StateSummary = {
    id: e.id,
    task: m?.task ?? null,
    parent: m?.parent ?? null,
    step: m?.step ?? null,
    done: m?.done ?? null,
    metric: m?.metric ?? null,
    savedAt: new Date(e.mtimeMs).toISOString(),
    files: m?.files.length ?? 0,
    bytes: m?.files.reduce((n, f) => n + (Number(f?.size) || 0), 0) ?? 0,
  };
  if (e.problem) s.problem = e.problem;
  return s;
}

const byAge = (a: Entry, b: Entry) => a.mtimeMs - b.mtimeMs || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);

/** The states of the store at `dir` (oldest first), damaged manifests included with a `problem`. */
export async function listStates(dir: string, options: ListStatesOptions = {}): Promise<StateSummary[]> {
  const entries = await readEntries(path.join(dir, 'states'));
  return entries
    .filter((e) => options.task === undefined || e.manifest?.task === options.task)
    .sort(byAge)
    .map(summary);
}

/** Every blob a manifest needs to restore it, with its undo history. */
function referencedBlobs(m: StateManifest, into: Set<string>): void {
  for (const f of m.files) if (typeof f?.hash === 'string') into.add(f.hash);
  for (const stack of Object.values(m.undo ?? {})) {
    if (Array.isArray(stack)) for (const h of stack) if (typeof h === 'string') into.add(h);
  }
}

/** Removes old states of the store at `dir` and the blobs no remaining state needs (see the file's comment). */
export async function pruneStates(dir: string, options: PruneOptions): Promise<PruneResult> {
  const olderThan = options?.olderThanMs;
  const maxBytes = options?.maxBytes;
  if (olderThan === undefined && maxBytes === undefined) throw new TypeError('SnapshotStore.prune: give olderThanMs, maxBytes or both');
  if (olderThan !== undefined && (typeof olderThan !== 'number' || !Number.isFinite(olderThan) || olderThan < 0)) {
    throw new RangeError(`SnapshotStore.prune: olderThanMs must be a number of milliseconds >= 0, got ${String(olderThan)}`);
  }
  if (maxBytes !== undefined && (typeof maxBytes !== 'number' || !Number.isSafeInteger(maxBytes) || maxBytes < 0)) {
    throw new RangeError(`SnapshotStore.prune: maxBytes must be a whole number of bytes >= 0, got ${String(maxBytes)}`);
  }
  const now = Date.now();
  const keep = new Set<string>();
  for (const id of options.keep ?? []) {
    if (typeof id !== 'string' || !ID.test(id)) throw new TypeError(`SnapshotStore.prune: keep holds ${JSON.stringify(id)}, not a state id (64 hex digits)`);
    keep.add(id);
  }
  if (options.task !== undefined && (typeof options.task !== 'string' || options.task === '')) throw new TypeError('SnapshotStore.prune: task must be a non-empty task name');

  const statesDir = path.join(dir, 'states');
  const entries = (await readEntries(statesDir)).sort(byAge);
  const eligible = (e: Entry) => !keep.has(e.id) && (options.task === undefined || e.manifest?.task === options.task);
  const goes = new Set(entries.filter((e) => olderThan !== undefined && eligible(e) && now - e.mtimeMs > olderThan));
  const unreadable = entries.find((e) => e.unreadable && !goes.has(e));
  // Its blobs are unknown, so none could be removed safely.
  if (unreadable) throw new Error(`SnapshotStore.prune: state ${unreadable.id} in ${dir} ${unreadable.problem}; nothing was removed`);
  if (maxBytes !== undefined) await alsoOldestOverSize(dir, entries, goes, eligible, maxBytes);
  const removed = entries.filter((e) => goes.has(e));
  const kept = entries.filter((e) => !goes.has(e));
  let bytesFreed = 0;
  if (!options.dryRun) {
    for (const e of removed) {
      await fs.unlink(e.file).catch(() => undefined);
      bytesFreed += e.size;
    }
  } else bytesFreed += removed.reduce((n, e) => n + e.size, 0);

  // Read the kept states' references after the removals, so a state saved meanwhile is seen (it is younger than the
  // grace in any case, and so are the blobs it names).
  const needed = new Set<string>();
  for (const e of options.dryRun ? kept : await readEntries(statesDir)) {
    if (e.unreadable) throw new Error(`SnapshotStore.prune: state ${e.id} in ${dir} ${e.problem}; ${removed.length} states were removed, no blobs`);
    if (e.manifest) referencedBlobs(e.manifest, needed);
  }

  let blobsRemoved = 0;
  let blobsKept = 0;
  let blobBytesKept = 0;
  const blobsDir = path.join(dir, 'blobs');
  const oldEnough = (mtimeMs: number) => Date.now() - mtimeMs > BLOB_GRACE_MS;
  for (const sub of (await fs.readdir(blobsDir).catch(() => [] as string[])).sort()) {
    const subDir = path.join(blobsDir, sub);
    if (!/^[0-9a-f]{2}$/.test(sub)) continue;
    for (const name of await fs.readdir(subDir).catch(() => [] as string[])) {
      const file = path.join(subDir, name);
      const st = await fs.lstat(file).catch(() => null);
      if (!st?.isFile()) continue;
      const leftover = name.startsWith('.tmp-'); // a writer killed between write and rename
      const unused = leftover || (/^[0-9a-f]{62}$/.test(name) && !needed.has(sub + name));
      if (unused && oldEnough(st.mtimeMs)) {
        // Checked again just before the unlink: a save may have refreshed it since the listing.
        const again = options.dryRun ? st : await fs.lstat(file).catch(() => null);
        if (again && oldEnough(again.mtimeMs)) {
          if (!options.dryRun) await fs.unlink(file).catch(() => undefined);
          if (!leftover) blobsRemoved++;
          bytesFreed += st.size;
          continue;
        }
      }
      if (!leftover) {
        blobsKept++;
        blobBytesKept += st.size;
      }
    }
    // An emptied subdirectory stays: a save may be about to write its next blob into it.
  }
  for (const name of await fs.readdir(statesDir).catch(() => [] as string[])) {
    if (!name.startsWith('.tmp-')) continue;
    const file = path.join(statesDir, name);
    const st = await fs.lstat(file).catch(() => null);
    if (!st?.isFile() || !oldEnough(st.mtimeMs)) continue;
    if (!options.dryRun) await fs.unlink(file).catch(() => undefined);
    bytesFreed += st.size;
  }
  const manifestBytes = (options.dryRun ? kept : await readEntries(statesDir)).reduce((n, e) => n + e.size, 0);
  return { removed: removed.map((e) => e.id), statesKept: kept.length, blobsRemoved, bytesFreed, blobsKept, blobBytesKept, bytesKept: blobBytesKept + manifestBytes };
}

/** The store's blobs: size and time by hash. */
async function blobSizes(dir: string): Promise<Map<string, { size: number; mtimeMs: number }>> {
  const out = new Map<string, { size: number; mtimeMs: number }>();
  const blobsDir = path.join(dir, 'blobs');
  for (const sub of await fs.readdir(blobsDir).catch(() => [] as string[])) {
    if (!/^[0-9a-f]{2}$/.test(sub)) continue;
    for (const name of await fs.readdir(path.join(blobsDir, sub)).catch(() => [] as string[])) {
      if (!/^[0-9a-f]{62}$/.test(name)) continue;
      const st = await fs.lstat(path.join(blobsDir, sub, name)).catch(() => null);
      if (st?.isFile()) out.set(sub + name, { size: st.size, mtimeMs: st.mtimeMs });
    }
  }
  return out;
}

/**
 * Adds the oldest eligible states to `goes` until what would stay fits `maxBytes`: the kept manifests, the blobs
 * a kept state needs, and those a prune must leave for now (used within the grace).
 */
async function alsoOldestOverSize(dir: string, entries: Entry[], goes: Set<Entry>, eligible: (e: Entry) => boolean, maxBytes: number): Promise<void> {
  const blobs = await blobSizes(dir);
  const refs = new Map<string, number>();
  const blobsOf = (e: Entry) => {
    const set = new Set<string>();
    if (e.manifest) referencedBlobs(e.manifest, set);
    return set;
  };
  let bytes = 0;
  for (const e of entries) {
    if (goes.has(e)) continue;
    bytes += e.size;
    for (const h of blobsOf(e)) refs.set(h, (refs.get(h) ?? 0) + 1);
  }
  const young = (h: string) => Date.now() - (blobs.get(h)?.mtimeMs ?? 0) <= BLOB_GRACE_MS;
  for (const [h, b] of blobs) if (refs.has(h) || young(h)) bytes += b.size;
  for (const e of entries) {
    if (bytes <= maxBytes) return;
    if (goes.has(e) || !eligible(e) || Date.now() - e.mtimeMs <= BLOB_GRACE_MS) continue;
    goes.add(e);
    bytes -= e.size;
    for (const h of blobsOf(e)) {
      const left = refs.get(h)! - 1;
      refs.set(h, left);
      if (left === 0 && !young(h)) bytes -= blobs.get(h)?.size ?? 0;
    }
  }
}
