import { closeSync, mkdirSync, openSync, readFileSync, rmdirSync, statSync, unlinkSync, writeSync } from 'node:fs';
import path from 'node:path';
import { makeDirsSync } from '../fs/make-dirs.js';
import { pidAlive } from './pid-alive.js';

/**
 * Unprivileged uids for runs that drop root (no pids cgroup), leased across processes.
 * RLIMIT_NPROC counts every process of a uid on the host, so two trainers or workers sharing one uid would
 * share one process budget, and one agent's fork bomb would starve the other's runs (and could signal them).
 * A lease is a file named for the uid holding the owner's pid; a file whose pid has died is reclaimed.
 */
export interface UidLease {
  uid: number;
  release(): void;
}

export const UID_BASE = 61000;
const UID_COUNT = 4096;

const LEASE_DIRS = ['/run/mlagent-sandbox-uids', '/tmp/mlagent-sandbox-uids'];
let leaseDir: string | undefined;

/**
 * The lease directory, a fixed path so that every process of the host agrees on it: under /run, else /tmp
 * where /run is not writable. One that another user created (and could tamper with) is not used.
 */
export function defaultLeaseDir(): string {
  if (leaseDir) return leaseDir;
  const problems: string[] = [];
  for (const dir of LEASE_DIRS) {
    try {
      makeDirsSync(dir, 0o700);
      const st = statSync(dir);
      if (st.uid === process.getuid?.() && (st.mode & 0o022) === 0) return (leaseDir = dir);
      problems.push(`${dir} belongs to uid ${st.uid} or is writable by others`);
    } catch (e) {
      problems.push((e as Error).message);
    }
  }
  throw new Error(`runSandboxed: no directory for sandbox uid leases (${problems.join('; ')})`);
}

function tryCreate(file: string): boolean {
  try {
    const fd = openSync(file, 'wx');
    writeSync(fd, String(process.pid));
    closeSync(fd);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw e;
  }
}

function ownerDead(file: string): boolean {
  let owner = NaN;
  try {
    owner = Number(readFileSync(file, 'utf8'));
  } catch {
    return false; // released meanwhile: the next tryCreate decides
  }
  // An empty file is a lease being written right now, not a dead one.
  return Number.isInteger(owner) && owner > 0 && !pidAlive(owner);
}

/**
 * Takes over a lease whose owner died. A mutex directory makes the check-unlink-create one step, so two
 * reclaimers can never both end up holding the uid; a reclaimer that dies inside it only costs that uid.
 */
function reclaim(file: string): boolean {
  if (!ownerDead(file)) return false;
  const mutex = `${file}.reclaim`;
  try {
    mkdirSync(mutex);
  } catch {
    return false;
  }
  try {
    if (!ownerDead(file)) return false;
    unlinkSync(file);
    return tryCreate(file);
  } finally {
    rmdirSync(mutex);
  }
}

/** Leases the lowest free uid at or above `base`. Throws when all UID_COUNT uids are held by live processes. */
export function leaseUid(dir = defaultLeaseDir(), base = UID_BASE): UidLease {
  makeDirsSync(dir, 0o700);
  for (let uid = base; uid < base + UID_COUNT; uid++) {
    const file = path.join(dir, String(uid));
    if (!tryCreate(file) && !reclaim(file)) continue;
    let released = false;
    return {
      uid,
      release() {
        if (released) return;
        released = true;
        try {
          unlinkSync(file);
        } catch {
          /* already gone */
        }
      },
    };
  }
  throw new Error(`runSandboxed: all ${UID_COUNT} sandbox uids from ${base} are leased by live processes (${dir})`);
}
