// Confinement of the agent's path arguments to its workspace. Host-side actions run with the trainer's rights,
// so every path is checked lexically (no absolute paths, no "..") and again after resolving symlinks, which the
// agent's own scripts may have planted.
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { makeDirs } from '../fs/make-dirs.js';
import { inside } from '../sandbox/isolation.js';

/** An action failed for a reason the agent caused; `message` is its observation ("EnvError: ..."). */
export class EnvError extends Error {
  constructor(message: string) {
    super(message.startsWith('EnvError: ') ? message : `EnvError: ${message}`);
    this.name = 'EnvError';
  }
}

/** The places a workspace path may resolve to: the workspace itself and the read-only public data. */
export interface WorkspaceRoots {
  /** Real path of the workspace. */
  workspace: string;
  /** Real path of the public data directory (linked at `data/`); readable, never writable. */
  publicDir: string;
}

/** The name of the read-only link to the public data in every workspace. */
export const DATA_LINK = 'data';

/** Lexical check: a relative path with no ".." segment, normalized ("" and "./" become "."). */
export function normalizeRelative(raw: unknown, argName: string): string {
  if (typeof raw !== 'string') throw new EnvError(`${argName} must be a string`);
  const s = raw.trim();
  if (s.includes('\0')) throw new EnvError(`${argName} contains a NUL byte`);
  if (path.isAbsolute(s) || /^~/.test(s)) {
    throw new EnvError(`${argName} "${s}" is an absolute path; use a path relative to the workspace, e.g. "train.py"`);
  }
  if (s.split(/[\\/]+/).includes('..')) throw new EnvError(`${argName} "${s}" leaves the workspace ("..")`);
  const n = path.posix.normalize(s === '' ? '.' : s).replace(/\/+$/, '');
  return n === '' ? '.' : n;
}

/** Whether a normalized relative path points into the read-only data link. */
export function isDataPath(rel: string): boolean {
  return rel === DATA_LINK || rel.startsWith(DATA_LINK + '/');
}

/**
 * Resolves an existing path for reading: its real path must lie in the workspace or the public data.
 * Throws EnvError when it does not exist or escapes.
 */
export async function resolveForRead(roots: WorkspaceRoots, raw: unknown, argName: string): Promise<{ rel: string; abs: string }> {
  const rel = normalizeRelative(raw, argName);
  let real: string;
  try {
    real = await fs.realpath(path.join(roots.workspace, rel));
  } catch {
    throw new EnvError(`${argName} "${rel}" does not exist in the workspace`);
  }
  if (!inside(real, roots.workspace) && !inside(real, roots.publicDir)) {
    throw new EnvError(`${argName} "${rel}" points outside the workspace (through a symbolic link)`);
  }
  return { rel, abs: real };
}

/**
 * Resolves a path for writing: never under data/, and every existing part of it (the file itself when it is a
 * symlink, else its nearest existing ancestor) must resolve into the workspace. Missing parents are created.
 */
export async function resolveForWrite(roots: WorkspaceRoots, raw: unknown, argName: string): Promise<{ rel: string; abs: string }> {
  const rel = normalizeRelative(raw, argName);
  if (rel === '.') throw new EnvError(`${argName} must name a file, not the workspace itself`);
  if (isDataPath(rel)) throw new EnvError(`${argName} "${rel}" is in data/, which is read-only`);
  const abs = path.join(roots.workspace, rel);
  const st = await fs.lstat(abs).catch(() => null);
  if (st?.isDirectory()) throw new EnvError(`${argName} "${rel}" is a directory`);
  if (st?.isSymbolicLink()) {
    const real = await fs.realpath(abs).catch(() => null);
    if (real === null || !inside(real, roots.workspace) || inside(real, roots.publicDir)) {
      throw new EnvError(`${argName} "${rel}" is a symbolic link that points outside the workspace`);
    }
    if (!(await fs.stat(real)).isFile()) throw new EnvError(`${argName} "${rel}" links to something that is not a regular file`);
  } else if (st && !st.isFile()) {
    throw new EnvError(`${argName} "${rel}" is not a regular file`);
  }
  let ancestor = path.dirname(abs);
  while (!(await fs.lstat(ancestor).catch(() => null))) ancestor = path.dirname(ancestor);
  const realAncestor = await fs.realpath(ancestor).catch(() => '');
  if (!inside(realAncestor, roots.workspace) || inside(realAncestor, roots.publicDir)) {
    throw new EnvError(`${argName} "${rel}" points outside the workspace (through a symbolic link)`);
  }
  if (!(await fs.stat(realAncestor)).isDirectory()) throw new EnvError(`${argName} "${rel}": ${path.relative(roots.workspace, ancestor)} is not a directory`);
  await makeDirs(path.dirname(abs));
  return { rel, abs };
}

/** Writes a file by rename, so a symlink or hard link at the target is replaced rather than written through. */
export async function writeFileAtomic(abs: string, data: string | Buffer, mode?: number): Promise<void> {
  const tmp = path.join(path.dirname(abs), `.${path.basename(abs)}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`);
  await fs.writeFile(tmp, data, mode === undefined ? undefined : { mode });
  try {
    await fs.rename(tmp, abs);
  } catch (e) {
    await fs.rm(tmp, { force: true });
    throw e;
  }
}
