import { readdirSync, readFileSync } from 'node:fs';

/**
 * Tasks (processes and their threads) whose real uid is `uid`, from /proc. RLIMIT_NPROC is checked against this
 * count, not against the sandboxed command's own descendants.
 */
export function tasksOfUid(uid: number): number {
  let tasks = 0;
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    let status: string;
    try {
      status = readFileSync(`/proc/${pid}/status`, 'utf8');
    } catch {
      continue; // exited meanwhile
    }
    const real = /^Uid:\s+(\d+)/m.exec(status);
    if (!real || Number(real[1]) !== uid) continue;
    tasks += Number(/^Threads:\s+(\d+)/m.exec(status)?.[1] ?? 1);
  }
  return tasks;
}

/**
 * The RLIMIT_NPROC that lets a run start `maxProcesses` tasks beyond those `uid` runs already. A plain limit of
 * maxProcesses would refuse every fork to a user with more tasks than that (a desktop session, the trainer's
 * own threads), so that the run could not even start.
 */
export function nprocLimit(uid: number, maxProcesses: number): number {
  return tasksOfUid(uid) + maxProcesses;
}
