import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { applyIdea, builtinTasksDir, loadIdeas, loadTaskSpec, removeTree, runBaseline } from '../src/index.js';
import { tempDir } from './tasks-fixture.js';

// Every built-in task, whoever added it: its baseline through the same path as `mlagent tasks baseline`.
const root = builtinTasksDir();
const taskDirs = readdirSync(root)
  .filter((n) => !n.startsWith('.') && statSync(path.join(root, n)).isDirectory())
  .sort()
  .map((n) => path.join(root, n));

/** At most `n` baselines at once (each is a Python training run). */
function limiter(n: number) {
  let active = 0;
  const waiting: (() => void)[] = [];
  return async <T>(job: () => Promise<T>): Promise<T> => {
    if (active >= n) await new Promise<void>((r) => waiting.push(r));
    active++;
    try {
      return await job();
    } finally {
      active--;
      waiting.shift()?.();
    }
  };
}
const limit = limiter(2);
const home = tempDir('builtin-home');
afterAll(() => removeTree(home));

describe('built-in tasks', () => {
  it('exist', () => {
    expect(taskDirs.length).toBeGreaterThanOrEqual(5);
  });

  for (const dir of taskDirs) {
    const name = path.basename(dir);

    it(`${name}: ideas.json edits each apply exactly once to env/train.py`, () => {
      const train = readFileSync(path.join(dir, 'env', 'train.py'), 'utf8');
      const ideas = loadIdeas(dir); // validates every find occurs exactly once
      for (const idea of ideas) expect(applyIdea(train, idea)).not.toBe(train);
    });

    it.concurrent(
      `${name}: baseline runs in the sandbox within budget and scores task.json's baseline`,
      async () => {
        const spec = loadTaskSpec(dir);
        const r = await limit(() => runBaseline(dir, { home }));
        expect(r.outcome, `${r.error ?? ''}\n${r.stderr.slice(-2000)}`).toBe('ok');
        expect(Number.isFinite(r.score)).toBe(true);
        expect(spec.baseline, 'task.json must record the measured baseline').not.toBeNull();
        const tolerance = Math.max(0.02 * Math.abs(spec.baseline!), 1e-3);
        expect(Math.abs(r.score! - spec.baseline!), `score ${r.score} vs task.json baseline ${spec.baseline}`).toBeLessThanOrEqual(tolerance);
        expect(r.seconds).toBeLessThan(spec.budgets.timeoutSec);
        expect(spec.best, 'task.json must record a measured best').not.toBeNull();
        // best is on the better side of baseline.
        const better = spec.metric.direction === 'maximize' ? spec.best! > spec.baseline! : spec.best! < spec.baseline!;
        expect(better, `best ${spec.best} must beat baseline ${spec.baseline} (${spec.metric.direction})`).toBe(true);
      },
      300_000,
    );
  }
});
