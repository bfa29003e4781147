import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { findTool } from './isolation.js';

/** What one run may do to the disk. */
export interface DiskLimits {
  /** Bytes the workspace may hold (allocated blocks, so a sparse file counts what it uses). */
  workspaceBytes: number;
  /** Entries (files, directories, links) the workspace may hold. */
  workspaceFiles: number;
  /** Free space the run must leave on the workspace's filesystem. */
  minFreeBytes: number;
}

export interface WorkspaceScan {
  bytes: number;
  entries: number;
  /** Relative paths of every entry (only when asked for). */
  paths: Set<string>;
  /**
   * Entries the trainer cannot name as strings, so could neither measure, save in a state nor remove by path: a name
   * that is not valid UTF-8, or a path longer than MAX_PATH_BYTES. Absolute paths, as bytes; never walked into.
   */
  unnameable: Buffer[];
  /** The walk stopped at `maxEntries`: there are more. */
  truncated: boolean;
}

/** Longest absolute path, in bytes, the guard walks; a deeper entry is unnameable (Linux's PATH_MAX is 4096). */
export const MAX_PATH_BYTES = 3072;

const SEP = Buffer.from('/');

/** Whether `name` is valid UTF-8 (decoding it and encoding it again gives the same bytes). */
function isUtf8(name: Buffer): boolean {
  return Buffer.from(name.toString('utf8'), 'utf8').equals(name);
}

/**
 * Walks `dir` without following links, summing for each entry its allocated bytes, or for a regular file its length
 * where that is more: the snapshot store writes a sparse file out whole, so holes count. Names are read as bytes, so
 * an entry whose name is not UTF-8 is found rather than skipped. A directory the run made unreadable to its owner (a
 * trainer that is not root shares the run's uid) is given back u+rwx first, so nothing hides from the count.
 */
export async function scanWorkspace(dir: string, maxEntries: number, keepPaths: boolean): Promise<WorkspaceScan> {
  const scan: WorkspaceScan = { bytes: 0, entries: 0, paths: new Set(), unnameable: [], truncated: false };
  const root = Buffer.from(path.resolve(dir));
  const stack: { abs: Buffer; rel: string }[] = [{ abs: root, rel: '' }];
  while (stack.length > 0) {
    const { abs, rel } = stack.pop()!;
    let names: Buffer[];
    try {
      names = await fs.readdir(abs, { encoding: 'buffer' });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EACCES') continue; // gone since it was listed
      try {
        await fs.chmod(abs, ((await fs.lstat(abs)).mode & 0o7777) | 0o700);
        names = await fs.readdir(abs, { encoding: 'buffer' });
      } catch {
        continue;
      }
    }
    for (const name of names) {
      if (++scan.entries > maxEntries) {
        scan.truncated = true;
        return scan;
      }
      const childAbs = Buffer.concat([abs, SEP, name]);
      if (!isUtf8(name) || childAbs.length > MAX_PATH_BYTES) {
        scan.unnameable.push(childAbs);
        continue;
      }
      const r = rel === '' ? name.toString('utf8') : `${rel}/${name.toString('utf8')}`;
      if (keepPaths) scan.paths.add(r);
      const st = await fs.lstat(childAbs).catch(() => null);
      if (!st) continue;
      scan.bytes += st.isFile() ? Math.max(st.blocks * 512, st.size) : st.blocks * 512;
      if (st.isDirectory()) stack.push({ abs: childAbs, rel: r });
    }
  }
  return scan;
}

/** Bytes an unprivileged writer may still use on the filesystem holding `dir`. */
export async function freeBytes(dir: string): Promise<number> {
  const s = await fs.statfs(dir);
  return s.bavail * s.bsize;
}

const MiB = 2 ** 20;
const mib = (b: number) => `${Math.round(b / MiB)} MiB`;

/** The workspace as a run found it: what the guard compares against and what cleanup keeps. */
export interface DiskBaseline {
  scan: WorkspaceScan;
  free: number;
}

/** Scans the workspace before a run. */
export async function diskBaseline(workspace: string): Promise<DiskBaseline> {
  return { scan: await scanWorkspace(workspace, Number.MAX_SAFE_INTEGER, true), free: await freeBytes(workspace) };
}

/**
 * Why the workspace now breaks a limit, or undefined. A workspace already past a limit (an earlier run's files, a
 * lowered limit) must still run the script that cleans it up, so the limits that apply are at least what it held.
 */
export async function diskViolation(workspace: string, limits: DiskLimits, base: DiskBaseline): Promise<string | undefined> {
  const free = await freeBytes(workspace);
  // Below the floor, and lower than the run found it (a disk that was already short is not this run's doing).
  const floor = Math.min(limits.minFreeBytes, base.free);
  if (free < floor) return `left less than ${mib(floor)} free on the disk`;
  const maxEntries = Math.max(limits.workspaceFiles, base.scan.entries);
  const now = await scanWorkspace(workspace, maxEntries, false);
  if (now.truncated) return `created more than ${maxEntries} files in the workspace`;
  if (now.unnameable.length > 0) {
    const first = now.unnameable[0].subarray(Buffer.byteLength(path.resolve(workspace)) + 1);
    const shown = first.length > 80 ? `${first.subarray(0, 80).toString('utf8')}...` : first.toString('utf8');
    return `made a path in the workspace whose name is not UTF-8 or that is longer than ${MAX_PATH_BYTES} bytes ("${shown}"), which cannot be measured or saved`;
  }
  const maxBytes = Math.max(limits.workspaceBytes, base.scan.bytes);
  if (now.bytes > maxBytes) return `filled the workspace past its disk limit of ${mib(maxBytes)}`;
  return undefined;
}

/**
 * Checks the limits while a run goes on, every `intervalMs` or ten times as long as a check took (a large
 * workspace is walked less often), and calls `onViolation` once with the reason.
 */
export function watchDisk(
  workspace: string,
  limits: DiskLimits,
  base: DiskBaseline,
  onViolation: (why: string) => void,
  intervalMs = 100,
): { stop: () => Promise<void> } {
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> = Promise.resolve();
  const tick = () => {
    running = (async () => {
      const t0 = performance.now();
      const why = await diskViolation(workspace, limits, base).catch(() => undefined);
      if (stopped) return;
      if (why) {
        stopped = true;
        onViolation(why);
        return;
      }
      timer = setTimeout(tick, Math.min(2000, Math.max(intervalMs, 10 * (performance.now() - t0))));
    })();
  };
  timer = setTimeout(tick, intervalMs);
  return {
    stop: async () => {
      stopped = true;
      clearTimeout(timer);
      await running;
    },
  };
}

/**
 * Removes what a run added to the workspace (entries not in the baseline), so its files do not outlive it when
 * it was stopped for them. Entries that were there before stay, whatever the run wrote into them. Returns how many
 * entries it removed (a new directory counts once), and the ones it could not.
 */
export async function removeAdded(workspace: string, base: DiskBaseline): Promise<{ removed: number; failed: string[] }> {
  const now = await scanWorkspace(workspace, Number.MAX_SAFE_INTEGER, true);
  let removed = 0;
  const failed: string[] = [];
  for (const abs of now.unnameable) {
    if (await removeUnnameable(workspace, abs)) removed++;
    else failed.push(abs.toString('utf8'));
  }
  for (const r of now.paths) {
    if (base.scan.paths.has(r)) continue;
    // A new directory goes with everything in it: only the topmost new entry of a branch is removed.
    const parent = path.dirname(r);
    if (parent !== '.' && !base.scan.paths.has(parent)) continue;
    const abs = path.join(workspace, r);
    try {
      await fs.rm(abs, { recursive: true, force: true });
    } catch {
      // The run may have taken write permission from the directories (a trainer that is not root shares its uid).
      try {
        await makeWritable(path.dirname(abs));
        await makeWritable(abs);
        await fs.rm(abs, { recursive: true, force: true });
      } catch {
        failed.push(r);
        continue;
      }
    }
    removed++;
  }
  return { removed, failed };
}

const run = promisify(execFile);

/**
 * Removes an entry the trainer cannot name as a string (scanWorkspace's `unnameable`): renamed by its bytes to a
 * plain name in the workspace, then removed by rm, which goes deeper than PATH_MAX where Node's fs.rm cannot.
 */
export async function removeUnnameable(workspace: string, abs: Buffer): Promise<boolean> {
  const trash = path.join(workspace, `.mlagent-unnameable-${process.pid}-${Math.random().toString(36).slice(2)}`);
  try {
    await fs.rename(abs, trash);
  } catch {
    try {
      const parent = abs.subarray(0, abs.lastIndexOf(SEP[0]));
      await fs.chmod(parent, ((await fs.lstat(parent)).mode & 0o7777) | 0o700);
      await fs.rename(abs, trash);
    } catch {
      return false;
    }
  }
  return removeDeep(trash);
}

/** rm -rf of a tree of any depth, given u+rwx first (a run may have taken its owner's write permission). */
export async function removeDeep(target: string): Promise<boolean> {
  const chmod = findTool('chmod');
  const rm = findTool('rm');
  if (!rm) {
    await fs.rm(target, { recursive: true, force: true }).catch(() => undefined);
  } else {
    if (chmod) await run(chmod, ['-R', 'u+rwx', '--', target]).catch(() => undefined);
    await run(rm, ['-rf', '--', target]).catch(() => undefined);
  }
  return (await fs.lstat(target).catch(() => null)) === null;
}

/** u+rwx on `p` and every directory below it (links not followed). */
async function makeWritable(p: string): Promise<void> {
  const st = await fs.lstat(p);
  if (!st.isDirectory()) return;
  await fs.chmod(p, (st.mode & 0o7777) | 0o700);
  for (const e of await fs.readdir(p, { withFileTypes: true })) if (e.isDirectory()) await makeWritable(path.join(p, e.name));
}
