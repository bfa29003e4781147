// One writer per run directory: two trainers appending to the same rollouts.jsonl and checkpoints would corrupt
// each other's resume. The lock file holds the writer's pid; a lock left by a dead process is taken over.
import { closeSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';

export function lockRunDir(dir: string, what: string): () => void {
  const file = join(dir, '.lock');
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(file, 'wx');
      writeSync(fd, String(process.pid));
      closeSync(fd);
      return () => rmSync(file, { force: true });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      const pid = Number(readFileSync(file, 'utf8'));
      if (processAlive(pid)) throw new Error(`${what}: another run (pid ${pid}) is writing to ${dir} (if none is, delete ${file})`);
      rmSync(file, { force: true });
    }
  }
  throw new Error(`${what}: cannot take the lock ${file}`);
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
