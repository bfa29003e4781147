import { createHash, type Hash } from 'node:crypto';
import { closeSync, lstatSync, openSync, readdirSync, readlinkSync, readSync } from 'node:fs';

const IGNORED = new Set(['__pycache__', '.DS_Store']);
const CHUNK = 1 << 20;

/**
 * SHA-256 over a directory's relative paths, file contents and link targets (sorted; caches ignored).
 * Names are read as bytes: decoded as strings, a name that is not UTF-8 became U+FFFD, which lstat could not find
 * (prepareTask failed with ENOENT) and which two different names shared. For UTF-8 names the bytes and the order
 * are those of the strings, so the hash, and with it every cache key, is unchanged.
 */
export function hashDirectory(dir: string, extra = ''): string {
  const h = createHash('sha256');
  h.update(`v1\0${extra}\0`);
  const root = Buffer.from(dir);
  const slash = Buffer.from('/');
  const walk = (rel: Buffer | null) => {
    const names = readdirSync(rel ? Buffer.concat([root, slash, rel]) : root, { encoding: 'buffer' })
      .map((b) => ({ b, s: b.toString('utf8') }))
      .sort((x, y) => (x.s < y.s ? -1 : x.s > y.s ? 1 : Buffer.compare(x.b, y.b)));
    for (const { b, s } of names) {
      if (IGNORED.has(s) || s.endsWith('.pyc')) continue;
      const r = rel ? Buffer.concat([rel, slash, b]) : b;
      const full = Buffer.concat([root, slash, r]);
      const st = lstatSync(full);
      if (st.isDirectory()) {
        h.update('d\0').update(r).update('\0');
        walk(r);
      } else if (st.isSymbolicLink()) h.update('l\0').update(r).update('\0').update(readlinkSync(full, { encoding: 'buffer' })).update('\0');
      else if (st.isFile()) {
        h.update('f\0').update(r).update(`\0${st.size}\0`);
        hashFile(h, full);
      }
    }
  };
  walk(null);
  return h.digest('hex');
}

/** Feeds a file to the hash in chunks: readFileSync refuses files over 2 GiB (imported competitions copy their data). */
function hashFile(h: Hash, file: Buffer): void {
  const fd = openSync(file, 'r');
  try {
    const buf = Buffer.allocUnsafe(CHUNK);
    for (let n; (n = readSync(fd, buf, 0, CHUNK, null)) > 0; ) h.update(buf.subarray(0, n));
  } finally {
    closeSync(fd);
  }
}
