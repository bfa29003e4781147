import { randomBytes } from 'node:crypto';
import { promises as fs, readFileSync } from 'node:fs';
import path from 'node:path';
import { pidAlive } from './pid-alive.js';

/**
 * A per-run cgroup holding the memory and pids limits. cgroup v2 is used when this process's cgroup can
 * delegate the memory and pids controllers; otherwise cgroup v1 when its memory and pids hierarchies are
 * writable (as on hybrid hosts); otherwise none, and the caller falls back to rlimits.
 */
export interface RunCgroup {
  version: 1 | 2;
  /** Files a shell writes its pid into, joining every hierarchy before it execs the command. */
  procsFiles: string[];
  /** Number of OOM kills and of refused forks since the cgroup was made. */
  stats(): Promise<{ oomKills: number; pidsMaxHits: number }>;
  /** Kills every process inside. Never throws. */
  kill(): Promise<void>;
  /** Kills everything left inside, then removes the cgroup. Never throws. */
  destroy(): Promise<void>;
}

type Layout = { version: 2; base: string } | { version: 1; memory: string; pids: string };

let counter = 0;
let layout: Promise<Layout | null> | undefined;

/**
 * Where per-run cgroups go, probed once per process by creating and removing a test cgroup. The probe also removes
 * what killed trainers left there (sweepStaleCgroups).
 */
export function cgroupLayout(): Promise<Layout | null> {
  layout ??= probe()
    .then(async (l) => {
      if (l) await sweepStaleCgroups(l).catch(() => undefined);
      return l;
    })
    .catch(() => null);
  return layout;
}

const OURS = /^mlagent-(?:sbx|probe)-(\d+)-/;

/**
 * Removes the empty run cgroups of mlagent processes that are gone (a trainer killed mid-run cannot remove its own)
 * and older than `minAgeMs`. Only rmdir: the kernel refuses a cgroup that still holds a process, and a process of
 * another PID namespace that looks dead from here gets only its old, empty cgroups removed. Returns their paths.
 */
export async function sweepStaleCgroups(l: Layout, minAgeMs = 60_000): Promise<string[]> {
  const removed: string[] = [];
  for (const base of l.version === 2 ? [l.base] : [l.memory, l.pids]) {
    for (const name of await fs.readdir(base).catch(() => [] as string[])) {
      const m = OURS.exec(name);
      if (!m || Number(m[1]) === process.pid || pidAlive(Number(m[1]))) continue;
      const dir = path.join(base, name);
      const stat = await fs.stat(dir).catch(() => null);
      if (!stat?.isDirectory() || Date.now() - stat.mtimeMs < minAgeMs) continue;
      if (await fs.rmdir(dir).then(() => true, () => false)) removed.push(dir);
    }
  }
  return removed;
}

function ownCgroups(): Map<string, string> {
  const map = new Map<string, string>();
  for (const line of readFileSync('/proc/self/cgroup', 'utf8').trim().split('\n')) {
    const [, controllers, p] = line.split(':');
    for (const c of controllers === '' ? [''] : controllers.split(',')) map.set(c, p);
  }
  return map;
}

async function exists(p: string): Promise<boolean> {
  return fs.access(p).then(() => true, () => false);
}

/** The directory of this process's cgroup under a mount, or the mount itself when the path is not visible. */
async function ownDir(mount: string, p: string | undefined): Promise<string> {
  const dir = path.join(mount, p ?? '/');
  return (await exists(dir)) ? dir : mount;
}

async function probe(): Promise<Layout | null> {
  const own = ownCgroups();
  if (await exists('/sys/fs/cgroup/cgroup.controllers')) {
    const base = await ownDir('/sys/fs/cgroup', own.get(''));
    const test = path.join(base, `mlagent-probe-${process.pid}-${randomBytes(4).toString('hex')}`);
    await fs.mkdir(test);
    try {
      if (!(await exists(path.join(test, 'memory.max'))) || !(await exists(path.join(test, 'pids.max')))) {
        // Fails with EBUSY when our own cgroup holds processes ("no internal processes"): then no cgroup.
        await fs.writeFile(path.join(base, 'cgroup.subtree_control'), '+memory +pids').catch(() => undefined);
      }
      if (!(await exists(path.join(test, 'memory.max'))) || !(await exists(path.join(test, 'pids.max')))) return null;
    } finally {
      await fs.rmdir(test).catch(() => undefined);
    }
    return { version: 2, base };
  }
  const memory = await ownDir('/sys/fs/cgroup/memory', own.get('memory'));
  const pids = await ownDir('/sys/fs/cgroup/pids', own.get('pids'));
  for (const [dir, file] of [[memory, 'memory.limit_in_bytes'], [pids, 'pids.max']]) {
    const test = path.join(dir, `mlagent-probe-${process.pid}-${randomBytes(4).toString('hex')}`);
    await fs.mkdir(test);
    const ok = await exists(path.join(test, file));
    await fs.rmdir(test).catch(() => undefined);
    if (!ok) return null;
  }
  return { version: 1, memory, pids };
}

function counterIn(text: string, key: string): number {
  const m = new RegExp(`^${key} (\\d+)$`, 'm').exec(text);
  return m ? Number(m[1]) : 0;
}

async function readOr(file: string): Promise<string> {
  return fs.readFile(file, 'utf8').catch(() => '');
}

async function killAll(dirs: string[]): Promise<void> {
  for (let round = 0; round < 50; round++) {
    let left = 0;
    for (const dir of dirs) {
      // cgroup v2 has cgroup.kill (Linux 5.14+); otherwise kill each pid we can see.
      await fs.writeFile(path.join(dir, 'cgroup.kill'), '1').catch(() => undefined);
      for (const pid of (await readOr(path.join(dir, 'cgroup.procs'))).split('\n').filter(Boolean)) {
        left++;
        try {
          process.kill(Number(pid), 'SIGKILL');
        } catch {
          /* already gone */
        }
      }
    }
    if (left === 0) return;
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * Makes a cgroup for one run with the given limits, or returns null when cgroups are unavailable. Where
 * they are available but making this one fails, it tries twice more, then reports why through `onFailure`
 * and returns null (the caller falls back to rlimits).
 */
export async function createRunCgroup(
  memoryBytes: number,
  maxProcesses: number,
  onFailure?: (reason: string) => void,
): Promise<RunCgroup | null> {
  const l = await cgroupLayout();
  if (!l) return null;
  let reason = '';
  for (let attempt = 0; attempt < 3; attempt++) {
    if (attempt > 0) await new Promise((r) => setTimeout(r, 50 * attempt));
    const made = await makeRunCgroup(l, memoryBytes, maxProcesses).catch((e: Error) => {
      reason = e.message;
      return null;
    });
    if (made) return made;
  }
  onFailure?.(reason);
  return null;
}

async function makeRunCgroup(l: Layout, memoryBytes: number, maxProcesses: number): Promise<RunCgroup> {
  const name = `mlagent-sbx-${process.pid}-${++counter}`;
  try {
    if (l.version === 2) {
      const dir = path.join(l.base, name);
      await fs.mkdir(dir);
      await fs.writeFile(path.join(dir, 'memory.max'), String(memoryBytes));
      await fs.writeFile(path.join(dir, 'memory.swap.max'), '0').catch(() => undefined);
      await fs.writeFile(path.join(dir, 'pids.max'), String(maxProcesses));
      return {
        version: 2,
        procsFiles: [path.join(dir, 'cgroup.procs')],
        async stats() {
          const mem = await readOr(path.join(dir, 'memory.events'));
          const pids = await readOr(path.join(dir, 'pids.events'));
          return { oomKills: counterIn(mem, 'oom_kill'), pidsMaxHits: counterIn(pids, 'max') };
        },
        kill: () => killAll([dir]),
        destroy: () => removeDirs([dir]),
      };
    }
    const mem = path.join(l.memory, name);
    const pids = path.join(l.pids, name);
    await fs.mkdir(mem);
    await fs.mkdir(pids);
    await fs.writeFile(path.join(mem, 'memory.limit_in_bytes'), String(memoryBytes));
    // Without swap accounting this file is absent; with it, forbid swapping past the limit.
    await fs.writeFile(path.join(mem, 'memory.memsw.limit_in_bytes'), String(memoryBytes)).catch(() => undefined);
    await fs.writeFile(path.join(pids, 'pids.max'), String(maxProcesses));
    return {
      version: 1,
      procsFiles: [path.join(mem, 'cgroup.procs'), path.join(pids, 'cgroup.procs')],
      async stats() {
        const oom = await readOr(path.join(mem, 'memory.oom_control'));
        const ev = await readOr(path.join(pids, 'pids.events'));
        return { oomKills: counterIn(oom, 'oom_kill'), pidsMaxHits: counterIn(ev, 'max') };
      },
      kill: () => killAll([mem, pids]),
      destroy: () => removeDirs([mem, pids]),
    };
  } catch (e) {
    await removeDirs([path.join(l.version === 2 ? l.base : l.memory, name), ...(l.version === 1 ? [path.join(l.pids, name)] : [])]);
    throw e;
  }
}

async function removeDirs(dirs: string[]): Promise<void> {
  const present = [];
  for (const d of dirs) if (await exists(d)) present.push(d);
  await killAll(present);
  for (const d of present) {
    // rmdir succeeds once the last process has been reaped; that can lag the kill slightly.
    for (let i = 0; i < 50; i++) {
      if (await fs.rmdir(d).then(() => true, () => false)) break;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}
