// Audit of the Table-1 metrics (results.ts, table.ts) on hand-computed examples that eval-results.test.ts does not cover.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { writeEvalResult } from '../src/eval/evaluate.js';
import { aggregateTask, scoreTrajectory, type EvalResult, type EvalTaskInfo, type EvalTrajectory } from '../src/eval/results.js';
import { evalMarkdown, readEvalResult } from '../src/eval/table.js';

function trajectory(task: EvalTaskInfo, index: number, best: number | null, error: string | null = null): EvalTrajectory {
  return { agent: 'a', task: task.name, index, steps: 5, ...scoreTrajectory(best, task), bestMetric: best, finalMetric: best, formatErrors: 0, timedOut: false, finalAnswer: error === null, durationSec: 1, error };
}

function resultOf(task: EvalTaskInfo, trajectories: EvalTrajectory[]): EvalResult {
  return {
    format: 'mlagent-eval',
    version: 1,
    agents: [{ name: 'a', kind: 'expert', trajectories: trajectories.length, maxSteps: 5, timeBudgetSec: 60, seed: 0, temperature: null, detail: '', notes: '', startedAt: '', durationSec: 1 }],
    rows: [aggregateTask(task, 'a', trajectories)],
    trajectories,
  };
}

describe('success: more than 10% over the baseline', () => {
  it('is not reached by a score exactly 10% better, whatever the float rounding of the gain', () => {
    // (0.66 - 0.6) / 0.6 computes as 0.10000000000000009 and (0.55 - 0.5) / 0.5 likewise; 4000 -> 3600 as 0.1 exactly.
    const cases: [number, number, 'maximize' | 'minimize'][] = [
      [0.6, 0.66, 'maximize'],
      [0.5, 0.55, 'maximize'],
      [0.7, 0.77, 'maximize'],
      [4000, 3600, 'minimize'],
      [0.7, 0.63, 'minimize'],
    ];
    for (const [baseline, score, direction] of cases) {
      const task: EvalTaskInfo = { name: 't', split: 'held-out', metric: 'm', direction, baseline };
      expect(scoreTrajectory(score, task).success, `${baseline} -> ${score}`).toBe(false);
    }
    // Just above the threshold still counts.
    expect(scoreTrajectory(0.6601, { name: 't', split: 'held-out', metric: 'accuracy', direction: 'maximize', baseline: 0.6 }).success).toBe(true);
  });
});

describe('a Table-1 cell over 8 trajectories, by hand', () => {
  // document-denoising RMSE (lower is better), baseline 0.1562 from its task.json.
  const rmse: EvalTaskInfo = { name: 'document-denoising', split: 'held-out', metric: 'rmse', direction: 'minimize', baseline: 0.1562 };

  it('counts a failed trajectory by the best it reached, a worse submission as it is, and no submission as the baseline', () => {
    const ts = [
      trajectory(rmse, 0, 0.0741),
      trajectory(rmse, 1, 0.0556),
      trajectory(rmse, 2, 0.2), // worse than the baseline: not clipped to it
      trajectory(rmse, 3, null), // no valid submission: the baseline
      trajectory(rmse, 4, 0.1),
      trajectory(rmse, 5, null, 'the agent failed: 503'),
      trajectory(rmse, 6, 0.09, 'the agent failed: 503'), // failed after a graded run: that run counts
      trajectory(rmse, 7, 0.12),
    ];
    const row = aggregateTask(rmse, 'a', ts);
    // (0.0741 + 0.0556 + 0.2 + 0.1562 + 0.1 + 0.1562 + 0.09 + 0.12) / 8 = 0.9521 / 8
    expect(row.avg).toBeCloseTo(0.1190125, 12);
    expect(row.best).toBe(0.0556);
    expect(row.avgGain).toBeCloseTo((0.1562 - 0.1190125) / 0.1562, 12);
    expect(row.bestGain).toBeCloseTo((0.1562 - 0.0556) / 0.1562, 12);
    // Gains above 10%: 0.0741, 0.0556, 0.1 (35.9%), 0.09 (42.4%), 0.12 (23.2%).
    expect(row.successRate).toBe(5 / 8);
    expect(row).toMatchObject({ trajectories: 8, submitted: 6, failed: 2 });
    const md = evalMarkdown(resultOf(rmse, ts));
    expect(md).toContain('| document-denoising | RMSE ↓ | 0.1562 | 0.1190 / 0.05560 |');
    expect(md).toContain('| document-denoising | a | +23.8% | +64.4% | 62.5% | 0.0% | 5.0 | 6/8 |');
  });
});

describe('gains over a zero baseline survive eval.json', () => {
  it('reads back +∞ / −∞ (JSON writes Infinity as null) so a table merged from files (--compare) shows them', () => {
    const qwk: EvalTaskInfo = { name: 'essay-scoring', split: 'held-out', metric: 'qwk', direction: 'maximize', baseline: 0 };
    const loss: EvalTaskInfo = { name: 'custom-loss', split: 'held-out', metric: 'loss', direction: 'minimize', baseline: 0 };
    const up = resultOf(qwk, [trajectory(qwk, 0, 0.2), trajectory(qwk, 1, null)]);
    const down = resultOf(loss, [trajectory(loss, 0, 0.3), trajectory(loss, 1, 0)]);
    expect(up.rows[0].avgGain).toBe(Infinity);
    const dir = mkdtempSync(path.join(tmpdir(), 'rl-eval-audit-'));
    try {
      const read = (r: EvalResult, name: string) => readEvalResult(writeEvalResult(path.join(dir, name), r).json);
      const a = read(up, 'up');
      expect(a.rows[0]).toMatchObject({ avgGain: Infinity, bestGain: Infinity });
      expect(a.trajectories.map((t) => t.gain)).toEqual([Infinity, 0]);
      expect(evalMarkdown(a)).toContain('| essay-scoring | a | +∞ | +∞ | 50.0% |');
      const b = read(down, 'down');
      // avg 0.15 is worse than 0, best 0 matches it.
      expect(b.rows[0]).toMatchObject({ avgGain: -Infinity, bestGain: 0 });
      expect(b.trajectories.map((t) => t.gain)).toEqual([-Infinity, 0]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
