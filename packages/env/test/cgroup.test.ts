import { existsSync, readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { cgroupLayout, createRunCgroup } from '../src/sandbox/cgroup.js';

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
});
