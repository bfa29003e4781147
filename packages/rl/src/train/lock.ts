// One writer per run directory: two trainers appending to the same rollouts.jsonl and checkpoints would corrupt
// each other's resume. The lock file names its writer (pid and the process's start time); a lock left by a dead
// process, or whose pid now belongs to another process, is taken over.
import { randomBytes } from 'node:crypto';
import { closeSync, linkSync, openSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';

interface LockOwner {
  pid: number;
  /** The process's start time (Linux: /proc/PID/stat's starttime), which tells a reused pid from its writer. */
  start: string | null;
}

/** Another live process is writing to the run directory: its message names the pid and the lock file. */
export class RunLockedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RunLockedError';
  }
}

export function lockRunDir(dir: string, what: string): () => void {
  const file = join(dir, '.lock');
  const mine = JSON.stringify({ pid: process.pid, start: startTime(process.pid) } satisfies LockOwner);
  // Written whole beside the lock, then linked into place: the lock never exists empty or half-written, so no other
  // run takes a live writer's lock for a dead one's (an empty file read as pid 0, and was removed).
  const tmp = `${file}.${unique()}`;
  writeFileSync(tmp, mine);
  try {
    for (let attempt = 0; attempt < 5; attempt++) {
      if (create(tmp, file, mine)) {
        removeLeftovers(dir);
        return () => release(file, mine);
      }
      const held = readIfAny(file);
      if (held === null) continue;
      const owner = parseOwner(held);
      if (owner && ownerAlive(owner)) {
        throw new RunLockedError(`${what}: another run (pid ${owner.pid}) is writing to ${dir} (if none is, delete ${file})`);
      }
      // Stale: moved aside under a name of our own, so that of two runs taking it over only one removes it. Removing
      // it by name removed the lock the other had just taken, and both ran.
      const aside = `${file}.stale.${unique()}`;
      try {
        renameSync(file, aside);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue;
        throw e;
      }
      // Not the stale lock read above but a run's that took it over meanwhile: put back.
      if (readIfAny(aside) !== held) {
        try {
          linkSync(aside, file);
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
        }
      }
      rmSync(aside, { force: true });
    }
    throw new Error(`${what}: cannot take the lock ${file} (other runs keep taking it)`);
  } finally {
    rmSync(tmp, { force: true });
  }
}

/** Puts the lock in place (false when one is there already). */
function create(tmp: string, file: string, mine: string): boolean {
  try {
    linkSync(tmp, file);
    return true;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return false;
    // A file system without hard links (FAT, some network mounts): created exclusively and written at once, with
    // the small window in which the lock is there but empty.
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP' && code !== 'ENOSYS') throw e;
  }
  let fd: number;
  try {
    fd = openSync(file, 'wx');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw e;
  }
  try {
    const bytes = Buffer.from(mine);
    let off = 0;
    while (off < bytes.length) off += writeSync(fd, bytes, off, bytes.length - off);
  } finally {
    closeSync(fd);
  }
  return true;
}

/** The temporary and moved-aside lock files of runs killed while they took the lock. */
function removeLeftovers(dir: string): void {
  for (const f of readdirSync(dir)) {
    const m = /^\.lock\.(?:stale\.)?(\d+)\.[0-9a-f]{8}$/.exec(f);
    if (m && Number(m[1]) !== process.pid && !processAlive(Number(m[1]))) rmSync(join(dir, f), { force: true });
  }
}

/** Removes the lock only while it is still ours (not one another run took over, believing us dead). */
function release(file: string, mine: string): void {
  if (readIfAny(file) === mine) rmSync(file, { force: true });
}

function readIfAny(file: string): string | null {
  try {
    return readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
}

/** The lock's writer; a bare pid is an older version's lock. Null (taken over) for an empty or garbled file. */
function parseOwner(text: string): LockOwner | null {
  if (/^\s*\d+\s*$/.test(text)) return { pid: Number(text), start: null };
  try {
    const o = JSON.parse(text) as Partial<LockOwner>;
    if (typeof o !== 'object' || o === null || !Number.isInteger(o.pid)) return null;
    return { pid: o.pid!, start: typeof o.start === 'string' ? o.start : null };
  } catch {
    return null;
  }
}

function ownerAlive(owner: LockOwner): boolean {
  if (!processAlive(owner.pid)) return false;
  // A live pid with another start time is a new process that reused the dead writer's pid.
  const start = owner.start === null ? null : startTime(owner.pid);
  return start === null || start === owner.start;
}

function processAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The process's start time in clock ticks since boot (Linux); null where /proc does not tell. */
function startTime(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 22; the command name (field 2) is in parentheses and may hold spaces.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields[19] ?? null;
  } catch {
    return null;
  }
}

function unique(): string {
  return `${process.pid}.${randomBytes(4).toString('hex')}`;
}
