import { createHash } from 'node:crypto';
import { lstatSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import path from 'node:path';

const IGNORED = new Set(['__pycache__', '.DS_Store']);

/** SHA-256 over a directory's relative paths, file contents and link targets (sorted; caches ignored). */
export function hashDirectory(dir: string, extra = ''): string {
  const h = createHash('sha256');
  h.update(`v1\0${extra}\0`);
  const walk = (rel: string) => {
    for (const name of readdirSync(path.join(dir, rel)).sort()) {
      if (IGNORED.has(name) || name.endsWith('.pyc')) continue;
      const r = rel ? `${rel}/${name}` : name;
      const st = lstatSync(path.join(dir, r));
      if (st.isDirectory()) {
        h.update(`d\0${r}\0`);
        walk(r);
      } else if (st.isSymbolicLink()) h.update(`l\0${r}\0${readlinkSync(path.join(dir, r))}\0`);
      else if (st.isFile()) {
        h.update(`f\0${r}\0${st.size}\0`);
        h.update(readFileSync(path.join(dir, r)));
      }
    }
  };
  walk('');
  return h.digest('hex');
}
