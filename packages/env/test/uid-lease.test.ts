import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runSandboxed } from '../src/index.js';
import { nprocLimit, tasksOfUid } from '../src/sandbox/nproc.js';
import { defaultLeaseDir, leaseUid } from '../src/sandbox/uid-lease.js';

const dir = mkdtempSync(path.join(tmpdir(), 'mlagent-uid-lease-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A pid that is certainly dead: a child that has exited and been reaped. */
function deadPid(): number {
  const r = spawnSync('/bin/sh', ['-c', 'echo $$'], { encoding: 'utf8' });
  return Number(r.stdout.trim());
}

describe('leaseUid', () => {
  it('gives concurrent leases distinct uids and reuses a released one', () => {
    const leases = dir + '/a';
    const a = leaseUid(leases, 70000);
    const b = leaseUid(leases, 70000);
    expect([a.uid, b.uid]).toEqual([70000, 70001]);
    expect(readFileSync(path.join(leases, '70000'), 'utf8')).toBe(String(process.pid));
    a.release();
    a.release(); // twice is harmless and must not free someone else's lease
    expect(existsSync(path.join(leases, '70000'))).toBe(false);
    const c = leaseUid(leases, 70000);
    expect(c.uid).toBe(70000);
    b.release();
    c.release();
  });

  it("skips another live process's lease and one being written, and takes over a dead process's lease", async () => {
    const leases = dir + '/b';
    mkdirSync(leases);
    const other = spawn('/bin/sleep', ['30']);
    try {
      writeFileSync(path.join(leases, '70000'), String(other.pid));
      writeFileSync(path.join(leases, '70001'), ''); // created, pid not yet written
      writeFileSync(path.join(leases, '70002'), String(deadPid()));
      const l = leaseUid(leases, 70000);
      expect(l.uid).toBe(70002);
      expect(readFileSync(path.join(leases, '70002'), 'utf8')).toBe(String(process.pid));
      expect(readFileSync(path.join(leases, '70000'), 'utf8')).toBe(String(other.pid));
      expect(existsSync(path.join(leases, '70002.reclaim'))).toBe(false);
      l.release();
    } finally {
      other.kill();
    }
  });

  it('leaves a dead lease alone while another process is reclaiming it', () => {
    const leases = dir + '/c';
    mkdirSync(path.join(leases, '70000.reclaim'), { recursive: true });
    writeFileSync(path.join(leases, '70000'), String(deadPid()));
    const l = leaseUid(leases, 70000);
    expect(l.uid).toBe(70001);
    l.release();
  });
});

describe('runSandboxed without a cgroup, as root', () => {
  it.runIf(process.getuid?.() === 0)("drops to a uid that no other lease on the host holds, and frees it after", async () => {
    const held = leaseUid(); // as another trainer on the host would
    try {
      const r = await runSandboxed({
        command: ['/usr/bin/python3', '-c', 'import os; print(os.getuid())'],
        workspace: mkdtempSync(path.join(dir, 'ws-')),
        timeoutMs: 20_000,
        useCgroup: false,
      });
      expect(r.outcome, r.stderr).toBe('ok');
      const uid = Number(r.stdout.trim());
      expect(uid).toBeGreaterThanOrEqual(held.uid - 64);
      expect(uid).not.toBe(held.uid);
      expect(existsSync(path.join(defaultLeaseDir(), String(uid)))).toBe(false);
    } finally {
      held.release();
    }
  });
});

describe('RLIMIT_NPROC for a uid that already runs tasks', () => {
  it.runIf(process.getuid?.() === 0)("counts a uid's tasks, threads included, and allows maxProcesses more", async () => {
    const uid = 59345; // below the leased range (61000 on), so nothing else runs as it
    expect(tasksOfUid(uid)).toBe(0);
    // Three processes of one thread and one python with three threads: six tasks.
    const sleepers = [1, 2, 3].map(() => spawn('/usr/bin/setpriv', [`--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', '/bin/sleep', '30']));
    const threads = spawn('/usr/bin/setpriv', [
      `--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', '/usr/bin/python3', '-c',
      'import threading, time\nfor _ in range(2): threading.Thread(target=time.sleep, args=(30,), daemon=True).start()\nprint("up", flush=True)\ntime.sleep(30)',
    ]);
    try {
      await new Promise((r) => threads.stdout.once('data', r));
      await expect.poll(() => tasksOfUid(uid), { timeout: 5000 }).toBe(6);
      expect(nprocLimit(uid, 16)).toBe(22);
    } finally {
      for (const p of [...sleepers, threads]) p.kill('SIGKILL');
    }
  });
});
