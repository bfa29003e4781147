import { createHash, randomBytes } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import { dirname, join, normalize, relative, sep } from 'node:path';
import { makeDirs } from '@mlagent/policy';

/**
 * Atomic directory checkpoints: `<runDir>/checkpoints/step-00000012/` holds `checkpoint.json` (step, RNG state,
 * pool cursor, config, caller's extras, and the size and SHA-256 of every other file) plus the caller's files
 * (adapter, critic, optimizer state...).
 *
 * A save writes everything into a hidden temporary directory, fsyncs every file and directory, then renames it
 * into place, so `step-*` directories only ever appear complete. A kill -9 mid-save leaves a temporary directory
 * that readers ignore and the next save removes. Readers still verify the manifest, so a checkpoint damaged some
 * other way is skipped in favour of the previous one rather than resumed from.
 */

export const CHECKPOINTS_DIR = 'checkpoints';
const MANIFEST = 'checkpoint.json';
const STEP_DIR = /^step-(\d{8,})$/;

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

export interface CheckpointData {
  step: number;
  /** Random generator state(s), as the caller serialises them. */
  rng?: Json;
  /** Where the states pool's sampler is. */
  poolCursor?: Json;
  config?: Json;
  /** Anything else the caller needs to resume (counters, best score...). */
  extra?: Json;
}

export interface SaveCheckpointOptions extends CheckpointData {
  /** Files to write, by relative path inside the checkpoint ('critic.safetensors', 'adapter/adapter_config.json'). */
  files?: Record<string, Uint8Array | string>;
  /** For callers that write their own files (e.g. a PEFT adapter saver): called with the temporary directory. */
  write?: (dir: string) => void | Promise<void>;
  /** Keep only the newest N checkpoints (default: keep all). */
  keep?: number;
}

export interface FileEntry {
  bytes: number;
  sha256: string;
}

interface Manifest extends CheckpointData {
  version: 1;
  savedAt: string;
  files: Record<string, FileEntry>;
}

export interface LoadedCheckpoint extends CheckpointData {
  dir: string;
  savedAt: string;
  files: Record<string, FileEntry>;
  /** Absolute path of one of the checkpoint's files. */
  path(name: string): string;
  read(name: string): Buffer;
}

export async function saveCheckpoint(runDir: string, options: SaveCheckpointOptions): Promise<LoadedCheckpoint> {
  const { step, files = {}, write, keep } = options;
  if (!Number.isInteger(step) || step < 0) throw new Error(`saveCheckpoint: step must be a non-negative integer, got ${step}`);
  if (keep !== undefined && !(Number.isInteger(keep) && keep >= 1)) throw new Error(`saveCheckpoint: keep must be an integer ≥ 1, got ${keep}`);
  const root = join(runDir, CHECKPOINTS_DIR);
  makeDirs(root);
  removeLeftovers(root);

  const name = stepDirName(step);
  const tmp = join(root, `.tmp-${name}-${process.pid}-${randomBytes(4).toString('hex')}`);
  mkdirSync(tmp);
  try {
    for (const [rel, content] of Object.entries(files)) {
      const path = join(tmp, safeRelative(rel));
      makeDirs(dirname(path));
      writeDurably(path, typeof content === 'string' ? Buffer.from(content) : content);
    }
    if (write) await write(tmp);
    const manifest: Manifest = {
      version: 1,
      step,
      savedAt: new Date().toISOString(),
      ...pickData(options),
      files: describeFiles(tmp),
    };
    writeDurably(join(tmp, MANIFEST), Buffer.from(JSON.stringify(manifest, null, 1)));
    fsyncTree(tmp);

    const final = join(root, name);
    if (existsSync(final)) {
      // Re-saving a step (after a resume): move the old one aside first; a kill in between leaves the older steps.
      const old = join(root, `.old-${name}-${process.pid}-${randomBytes(4).toString('hex')}`);
      renameSync(final, old);
      renameSync(tmp, final);
      rmSync(old, { recursive: true, force: true });
    } else {
      renameSync(tmp, final);
    }
    fsyncDir(root);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
  if (keep !== undefined) pruneCheckpoints(runDir, keep);
  const saved = loadCheckpointDir(join(root, name));
  if (typeof saved === 'string') throw new Error(`saveCheckpoint: the checkpoint just written does not verify: ${saved}`);
  return saved;
}

export interface CheckpointListing {
  dir: string;
  step: number;
  /** Why it cannot be loaded, or null when it verifies. */
  problem: string | null;
}

/** Every `step-*` checkpoint directory, newest first, each verified (sizes always; checksums when `verify`). */
export function listCheckpoints(runDir: string, options: { verify?: 'size' | 'sha256' } = {}): CheckpointListing[] {
  const root = join(runDir, CHECKPOINTS_DIR);
  if (!existsSync(root)) return [];
  const entries = readdirSync(root);
  return entries
    .map((entry) => ({ entry, m: STEP_DIR.exec(entry) ?? movedAside(entry, entries) }))
    .filter((x): x is { entry: string; m: RegExpExecArray } => x.m !== null)
    .map(({ entry, m }) => {
      const dir = join(root, entry);
      const step = Number(m[1]);
      const loaded = loadCheckpointDir(dir, options.verify ?? 'size');
      // Listing order and pruning go by the directory's step, resuming by the manifest's: when they disagree (a
      // directory copied or renamed by hand) a resume would restart at a step the run does not think it is at.
      const problem = typeof loaded === 'string' ? loaded : loaded.step !== step ? `${MANIFEST} is for step ${loaded.step}, the directory for step ${step}` : null;
      return { dir, step, problem };
    })
    .sort((a, b) => b.step - a.step);
}

/**
 * The newest checkpoint that verifies, or null when there is none. Damaged ones are skipped and passed to
 * `onSkip` (e.g. to print a warning). Checksums are checked by default.
 */
export function latestCheckpoint(runDir: string, options: { verify?: 'size' | 'sha256'; onSkip?: (dir: string, problem: string) => void } = {}): LoadedCheckpoint | null {
  const verify = options.verify ?? 'sha256';
  for (const listing of listCheckpoints(runDir, { verify: 'size' })) {
    const loaded = listing.problem ?? loadCheckpointDir(listing.dir, verify);
    if (typeof loaded !== 'string') return loaded;
    options.onSkip?.(listing.dir, loaded);
  }
  return null;
}

/**
 * The checkpoint a resume continues from: the newest that verifies, or null when the run has none (killed before
 * its first). When it has some but none verifies, it throws naming each one's problem: starting over instead
 * silently redid all the work done, and the first new save pruned the damaged checkpoints for good.
 */
export function resumeCheckpoint(runDir: string, what: string, log: (line: string) => void): LoadedCheckpoint | null {
  const checkpoint = latestCheckpoint(runDir, { onSkip: (dir, why) => log(`${what}: skipping damaged checkpoint ${dir}: ${why}`) });
  if (checkpoint) return checkpoint;
  const damaged = listCheckpoints(runDir, { verify: 'sha256' });
  if (damaged.length === 0) return null;
  const problems = damaged.map((c) => `${c.dir}: ${c.problem ?? 'does not verify'}`).join('; ');
  throw new Error(`${what}: cannot resume ${runDir}: no checkpoint verifies (${problems}); restore the damaged files, or delete ${join(runDir, CHECKPOINTS_DIR)} to start this stage over`);
}

/** A checkpoint moved aside by a re-save of its step that was killed before the new one was in place. */
function movedAside(entry: string, entries: string[]): RegExpExecArray | null {
  const m = /^\.old-(step-\d+)-/.exec(entry);
  return m && !entries.includes(m[1]) ? STEP_DIR.exec(m[1]) : null;
}

/** Deletes all but the newest `keep` checkpoints (damaged ones count as the oldest). */
export function pruneCheckpoints(runDir: string, keep: number): string[] {
  // slice(0, keep) with keep 0, NaN or a negative number kept none or the wrong ones: a bad count deleted
  // every checkpoint of the run.
  if (!Number.isInteger(keep) || keep < 1) throw new RangeError(`pruneCheckpoints: keep must be an integer >= 1, got ${keep}`);
  const all = listCheckpoints(runDir);
  // The checkpoints kept must be ones latestCheckpoint would resume from, so they are checked by SHA-256 as it
  // does: with sizes alone, a same-size corrupted newest one counted as good and the last good one was deleted.
  const kept = new Set<string>();
  for (const c of all) {
    if (kept.size >= keep) break;
    if (c.problem === null && typeof loadCheckpointDir(c.dir, 'sha256') !== 'string') kept.add(c.dir);
  }
  const removed = all.filter((c) => !kept.has(c.dir)).map((c) => c.dir);
  for (const dir of removed) rmSync(dir, { recursive: true, force: true });
  return removed;
}

export function stepDirName(step: number): string {
  return `step-${String(step).padStart(8, '0')}`;
}

/** The loaded checkpoint, or a sentence saying why it cannot be used. */
function loadCheckpointDir(dir: string, verify: 'size' | 'sha256' = 'size'): LoadedCheckpoint | string {
  let manifest: Manifest;
  try {
    manifest = JSON.parse(readFileSync(join(dir, MANIFEST), 'utf8')) as Manifest;
  } catch (e) {
    return `${MANIFEST} is missing or unreadable (${(e as Error).message})`;
  }
  if (!isRecord(manifest) || manifest.version !== 1 || !Number.isInteger(manifest.step) || !isRecord(manifest.files)) {
    return `${MANIFEST} is not a version-1 checkpoint manifest`;
  }
  for (const [name, entry] of Object.entries(manifest.files)) {
    // A damaged manifest must make this checkpoint skipped, not throw out of listCheckpoints / latestCheckpoint and
    // hide the older good ones.
    if (!isRecord(entry) || !Number.isInteger(entry.bytes) || typeof entry.sha256 !== 'string') return `${MANIFEST} has a malformed entry for ${name}`;
    let path: string;
    try {
      path = join(dir, safeRelative(name));
    } catch (e) {
      return `${MANIFEST} lists a file outside the checkpoint (${(e as Error).message})`;
    }
    if (!existsSync(path)) return `${name} is missing`;
    const size = statSync(path).size;
    if (size !== entry.bytes) return `${name} has ${size} bytes, the manifest says ${entry.bytes}`;
    if (verify === 'sha256' && sha256(readFileSync(path)) !== entry.sha256) return `${name} does not match its SHA-256`;
  }
  const { step, rng, poolCursor, config, extra, savedAt, files } = manifest;
  const path = (name: string) => {
    if (!(name in files)) throw new Error(`checkpoint ${dir} has no file '${name}' (it has: ${Object.keys(files).join(', ') || 'none'})`);
    return join(dir, safeRelative(name));
  };
  return { dir, step, savedAt, files, ...pickData({ step, rng, poolCursor, config, extra }), path, read: (name) => readFileSync(path(name)) };
}

function isRecord(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

function pickData(d: CheckpointData): Omit<CheckpointData, 'step'> {
  const out: Omit<CheckpointData, 'step'> = {};
  for (const k of ['rng', 'poolCursor', 'config', 'extra'] as const) if (d[k] !== undefined) out[k] = d[k];
  return out;
}

function describeFiles(dir: string): Record<string, FileEntry> {
  const out: Record<string, FileEntry> = {};
  for (const path of walkFiles(dir)) {
    const rel = relative(dir, path).split(sep).join('/');
    if (rel === MANIFEST) continue;
    const bytes = readFileSync(path);
    out[rel] = { bytes: bytes.length, sha256: sha256(bytes) };
  }
  return out;
}

function walkFiles(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...walkFiles(path));
    else if (entry.isFile()) out.push(path);
    else throw new Error(`saveCheckpoint: ${path} is neither a file nor a directory`);
  }
  return out.sort();
}

function writeDurably(path: string, data: Uint8Array): void {
  const fd = openSync(path, 'w');
  try {
    let off = 0;
    while (off < data.length) off += writeSync(fd, data, off, data.length - off);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** fsync every file (the caller's `write` hook may not have) and every directory, deepest first. */
function fsyncTree(dir: string): void {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) fsyncTree(path);
    else {
      const fd = openSync(path, 'r');
      fsyncSync(fd);
      closeSync(fd);
    }
  }
  fsyncDir(dir);
}

function fsyncDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Cleans up after saves that were killed: temporary directories go; a moved-aside checkpoint whose replacement
 * never arrived is moved back. Assumes one writer per run directory. */
function removeLeftovers(root: string): void {
  for (const entry of readdirSync(root)) {
    const old = /^\.old-(step-\d+)-/.exec(entry);
    if (old && !existsSync(join(root, old[1]))) renameSync(join(root, entry), join(root, old[1]));
    else if (entry.startsWith('.tmp-') || entry.startsWith('.old-')) rmSync(join(root, entry), { recursive: true, force: true });
  }
}

function safeRelative(rel: string): string {
  const n = normalize(rel);
  if (n.startsWith('..') || n.startsWith(sep) || n === '.' || n === MANIFEST) throw new Error(`checkpoint file name '${rel}' must be a relative path inside the checkpoint, other than ${MANIFEST}`);
  return n;
}

function sha256(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}
