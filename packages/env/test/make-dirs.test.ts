import { mkdirSync, mkdtempSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { makeDirs, makeDirsSync } from '../src/fs/make-dirs.js';

let root: string;
beforeEach(() => {
  root = mkdtempSync(path.join(tmpdir(), 'mlagent-make-dirs-'));
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

const variants = [
  ['makeDirsSync', async (dir: string, mode?: number) => makeDirsSync(dir, mode)],
  ['makeDirs', (dir: string, mode?: number) => makeDirs(dir, mode)],
] as const;

describe.each(variants)('%s', (_, make) => {
  it('creates every missing level, and is a no-op on an existing directory', async () => {
    const dir = path.join(root, 'a', 'b', 'c');
    await make(dir);
    expect(statSync(dir).isDirectory()).toBe(true);
    await make(dir);
    await make(root);
    expect(statSync(dir).isDirectory()).toBe(true);
  });

  it('gives every directory it creates the mode, and leaves existing ones alone', async () => {
    const old = process.umask(0o022);
    try {
      mkdirSync(path.join(root, 'keep'), { mode: 0o755 });
      await make(path.join(root, 'keep', 'x', 'y'), 0o700);
      expect(statSync(path.join(root, 'keep')).mode & 0o777).toBe(0o755);
      expect(statSync(path.join(root, 'keep', 'x')).mode & 0o777).toBe(0o700);
      expect(statSync(path.join(root, 'keep', 'x', 'y')).mode & 0o777).toBe(0o700);
    } finally {
      process.umask(old);
    }
  });

  it('resolves a relative path and follows a link to a directory', async () => {
    mkdirSync(path.join(root, 'real'));
    symlinkSync(path.join(root, 'real'), path.join(root, 'link'));
    await make(path.join(root, 'link', 'sub'));
    expect(statSync(path.join(root, 'real', 'sub')).isDirectory()).toBe(true);
    const rel = path.relative(process.cwd(), path.join(root, 'rel', 'x'));
    await make(rel);
    expect(statSync(path.join(root, 'rel', 'x')).isDirectory()).toBe(true);
  });

  it('fails with EEXIST where the target is a file, and ENOTDIR where a parent is', async () => {
    const file = path.join(root, 'file');
    writeFileSync(file, 'x');
    await expect(async () => make(file)).rejects.toMatchObject({ code: 'EEXIST' });
    await expect(async () => make(path.join(file, 'a', 'b'))).rejects.toMatchObject({ code: 'ENOTDIR' });
  });

  it('fails with EEXIST on a dangling link, as mkdir -p does', async () => {
    symlinkSync(path.join(root, 'nowhere'), path.join(root, 'dangling'));
    await expect(async () => make(path.join(root, 'dangling', 'x'))).rejects.toMatchObject({ code: 'EEXIST' });
  });

  // Node's recursive mkdir retries this forever: mkdir gives ENOENT although the parent /proc/1 exists.
  it('fails fast with mkdir\'s ENOENT under /proc instead of hanging', { timeout: 5000 }, async () => {
    await expect(async () => make('/proc/1/mlagent-x/y')).rejects.toMatchObject({ code: 'ENOENT', syscall: 'mkdir', path: '/proc/1/mlagent-x' });
  });

  it('tolerates another creator of the same directories at the same time', async () => {
    const dir = path.join(root, 'p', 'q', 'r', 's');
    await Promise.all(Array.from({ length: 8 }, () => makeDirs(dir)));
    expect(statSync(dir).isDirectory()).toBe(true);
  });
});
