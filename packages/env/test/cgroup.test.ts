import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmdirSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { cgroupLayout, createRunCgroup, sweepStaleCgroups } from '../src/sandbox/cgroup.js';

function ourCgroups(dir: string): string[] {
  return existsSync(dir) ? readdirSync(dir).filter((n) => n.startsWith(`mlagent-sbx-${process.pid}-`)) : [];
}

describe('createRunCgroup', () => {
  it('makes a cgroup with the limits where cgroups work, and says why when one cannot be made', async () => {
    const layout = await cgroupLayout();
    const reasons: string[] = [];
    if (!layout) {
      expect(await createRunCgroup(2 ** 30, 64, (r) => reasons.push(r))).toBeNull();
      expect(reasons).toEqual([]); // no cgroups at all is not a failure worth a warning
      return;
    }
    const dirs = layout.version === 2 ? [layout.base] : [layout.memory, layout.pids];
    const cg = await createRunCgroup(2 ** 30, 64, (r) => reasons.push(r));
    expect(cg?.version).toBe(layout.version);
    expect(dirs.every((d) => ourCgroups(d).length === 1)).toBe(true);
    await cg!.destroy();
    expect(dirs.map(ourCgroups)).toEqual(dirs.map(() => []));

    // The kernel refuses a pids.max of -3: three tries, then the reason, and nothing left behind.
    expect(await createRunCgroup(2 ** 30, -3, (r) => reasons.push(r))).toBeNull();
    expect(reasons).toHaveLength(1);
    expect(reasons[0]).toMatch(/pids\.max|EINVAL|invalid/i);
    expect(dirs.map(ourCgroups)).toEqual(dirs.map(() => []));
  });

  it("removes the empty cgroups of mlagent processes that are gone (a killed trainer's), and only those", async () => {
    const layout = await cgroupLayout();
    if (!layout) return; // no cgroups here: nothing is ever left behind
    const bases = layout.version === 2 ? [layout.base] : [layout.memory, layout.pids];
    const dead = spawnSync('/bin/true').pid;
    const left = `mlagent-sbx-${dead}-1`;
    const mine = `mlagent-sbx-${process.pid}-999999`;
    const other = `not-mlagent-${dead}-1`;
    for (const base of bases) for (const name of [left, mine, other]) mkdirSync(path.join(base, name));
    try {
      // Younger than a minute: a run of another PID namespace may have just made it. (Other stale cgroups of this
      // machine may go too.)
      expect(await sweepStaleCgroups(layout)).not.toContain(path.join(bases[0], left));
      const removed = await sweepStaleCgroups(layout, 0);
      expect(removed).toEqual(expect.arrayContaining(bases.map((b) => path.join(b, left))));
      expect(removed.filter((d) => d.includes(mine) || d.includes(other))).toEqual([]);
      for (const base of bases) {
        expect(existsSync(path.join(base, left))).toBe(false);
        expect(existsSync(path.join(base, mine)) && existsSync(path.join(base, other))).toBe(true);
      }
    } finally {
      for (const base of bases) for (const name of [left, mine, other]) if (existsSync(path.join(base, name))) rmdirSync(path.join(base, name));
    }
  });
});
