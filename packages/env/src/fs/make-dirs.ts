// mkdir -p for the env's own directories (task store, cache, workspaces, snapshot store, uid leases).
// Node's `mkdir(..., { recursive: true })` retries forever where mkdir fails with ENOENT under a parent that exists
// (a path under /proc, e.g. MLAGENT_HOME=/proc/1/x), so a bad path would hang the caller instead of failing. These
// make the missing directories one plain mkdir at a time, from the deepest existing ancestor down, so such a path
// fails with mkdir's own error; a file where a directory should be fails with EEXIST or ENOTDIR, as mkdir -p does.
import { mkdirSync, promises as fs, statSync, type Stats } from 'node:fs';
import path from 'node:path';

function isNotFound(e: unknown): boolean {
  return (e as NodeJS.ErrnoException).code === 'ENOENT';
}

/** The directories of `abs` to create, shallowest first (empty when it exists). */
function missingSync(abs: string): string[] {
  const out: string[] = [];
  for (let p = abs; ; p = path.dirname(p)) {
    let st: Stats;
    try {
      st = statSync(p);
    } catch (e) {
      if (!isNotFound(e) || path.dirname(p) === p) throw e;
      out.push(p);
      continue;
    }
    // The target itself is a file: its mkdir below fails with EEXIST. (A file above it fails stat with ENOTDIR.)
    if (!st.isDirectory()) out.push(p);
    return out.reverse();
  }
}

/** Whether an EEXIST from mkdir is another process creating the same directory first (then all is well). */
function raced(e: unknown, p: string): boolean {
  if ((e as NodeJS.ErrnoException).code !== 'EEXIST') return false;
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

/** Creates `dir` and its missing parents (each with `mode`, as mkdir -p -m does to the ones it creates). */
export function makeDirsSync(dir: string, mode?: number): void {
  for (const p of missingSync(path.resolve(dir))) {
    try {
      mkdirSync(p, mode === undefined ? undefined : { mode });
    } catch (e) {
      if (!raced(e, p)) throw e;
    }
  }
}

/** Creates `dir` and its missing parents (each with `mode`, as mkdir -p -m does to the ones it creates). */
export async function makeDirs(dir: string, mode?: number): Promise<void> {
  // The stats are few and quick; only the mkdirs, which may wait on a slow disk, are awaited.
  for (const p of missingSync(path.resolve(dir))) {
    try {
      await fs.mkdir(p, mode === undefined ? undefined : { mode });
    } catch (e) {
      if (!raced(e, p)) throw e;
    }
  }
}
