import type { Dirent } from 'node:fs';
import { promises as fs } from 'node:fs';
import path from 'node:path';

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
  /** The walk stopped at `maxEntries`: there are more. */
  truncated: boolean;
}

/**
 * Walks `dir` without following links, summing allocated bytes. A directory the run made unreadable to its owner
 * (a trainer that is not root shares the run's uid) is given back u+rwx first, so nothing hides from the count.
 */
export async function scanWorkspace(dir: string, maxEntries: number, keepPaths: boolean): Promise<WorkspaceScan> {
  const scan: WorkspaceScan = { bytes: 0, entries: 0, paths: new Set(), truncated: false };
  const stack = [''];
  while (stack.length > 0) {
    const rel = stack.pop()!;
    const abs = path.join(dir, rel);
    let entries: Dirent[];
    try {
      entries = await fs.readdir(abs, { withFileTypes: true });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EACCES') continue; // gone since it was listed
      try {
        await fs.chmod(abs, ((await fs.lstat(abs)).mode & 0o7777) | 0o700);
        entries = await fs.readdir(abs, { withFileTypes: true });
      } catch {
        continue;
      }
    }
    for (const e of entries) {
      const r = rel === '' ? e.name : `${rel}/${e.name}`;
      if (++scan.entries > maxEntries) {
        scan.truncated = true;
        return scan;
      }
      if (keepPaths) scan.paths.add(r);
      const st = await fs.lstat(path.join(dir, r)).catch(() => null);
      if (st) scan.bytes += st.blocks * 512;
      if (st?.isDirectory()) stack.push(r);
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

/** u+rwx on `p` and every directory below it (links not followed). */
async function makeWritable(p: string): Promise<void> {
  const st = await fs.lstat(p);
  if (!st.isDirectory()) return;
  await fs.chmod(p, (st.mode & 0o7777) | 0o700);
  for (const e of await fs.readdir(p, { withFileTypes: true })) if (e.isDirectory()) await makeWritable(path.join(p, e.name));
}
