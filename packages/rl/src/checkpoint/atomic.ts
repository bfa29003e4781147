import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, openSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

/**
 * Replaces `path` with `data` all at once: written to a temporary file beside it, fsynced, then renamed over it. A
 * kill, a full disk or a power loss leaves either the old file or the new one, never a torn one (a stage marker or
 * train-config.json torn in place made the run impossible to resume).
 */
export function writeFileAtomic(path: string, data: string | Uint8Array): void {
  const tmp = `${path}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    writeFileSync(tmp, data);
    syncFile(tmp);
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
  // The rename itself is durable only once the directory is.
  syncFile(dirname(path));
}

/**
 * Makes a file (or a directory's entries) durable: what a marker written after it says is done must survive a
 * power loss too, not only the marker.
 */
export function syncFile(path: string): void {
  const fd = openSync(path, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** syncFile for every file and directory under `dir` (one written by a saver that does not fsync), and `dir`. */
export function syncTree(dir: string): void {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) syncTree(path);
    else if (entry.isFile()) syncFile(path);
  }
  syncFile(dir);
}
