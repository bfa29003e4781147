// The scoring rule, the aggregates, merging results and the Table-1 markdown, on hand-made trajectories.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { writeEvalResult } from '../src/eval/evaluate.js';
import { aggregateTask, relativeGain, scoreTrajectory, type EvalResult, type EvalTaskInfo, type EvalTrajectory } from '../src/eval/results.js';
import { evalMarkdown, mergeEvalResults, readEvalResult } from '../src/eval/table.js';
import { renderReport } from '../src/report/html-report.js';

const mae: EvalTaskInfo = { name: 'house-prices', split: 'held-in', metric: 'mae', direction: 'minimize', baseline: 4000 };
const acc: EvalTaskInfo = { name: 'spaceship-titanic', split: 'held-in', metric: 'accuracy', direction: 'maximize', baseline: 0.6 };

function trajectory(task: EvalTaskInfo, agent: string, index: number, best: number | null, steps: number, formatErrors: number): EvalTrajectory {
  return {
    agent,
    task: task.name,
    index,
    steps,
    ...scoreTrajectory(best, task),
    bestMetric: best,
    finalMetric: best,
    formatErrors,
    timedOut: false,
    finalAnswer: true,
    durationSec: 1,
    error: null,
  };
}

function resultOf(agent: string, parts: [EvalTaskInfo, (number | null)[]][]): EvalResult {
  const trajectories = parts.flatMap(([task, bests]) => bests.map((b, i) => trajectory(task, agent, i, b, 4, 1)));
  return {
    format: 'mlagent-eval',
    version: 1,
    agents: [{ name: agent, kind: 'expert', trajectories: 2, maxSteps: 4, timeBudgetSec: 60, seed: 0, temperature: null, detail: '', notes: '', startedAt: '', durationSec: 1 }],
    rows: parts.map(([task]) => aggregateTask(task, agent, trajectories.filter((t) => t.task === task.name))),
    trajectories,
  };
}

describe('scoring a trajectory', () => {
  it('flips the sign of the gain for metrics where lower is better', () => {
    expect(relativeGain(3000, 4000, 'minimize')).toBeCloseTo(0.25, 12);
    expect(relativeGain(5000, 4000, 'minimize')).toBeCloseTo(-0.25, 12);
    expect(relativeGain(0.66, 0.6, 'maximize')).toBeCloseTo(0.1, 12);
    expect(relativeGain(-2, -4, 'maximize')).toBeCloseTo(0.5, 12); // |baseline| for negative scores
  });

  it('gives a trajectory without a valid submission the baseline, as no improvement', () => {
    expect(scoreTrajectory(null, mae)).toEqual({ score: 4000, submitted: false, gain: 0, success: false });
  });

  it('counts a success only above a 10% gain', () => {
    expect(scoreTrajectory(3500, mae)).toMatchObject({ score: 3500, submitted: true, success: true });
    expect(scoreTrajectory(3600, mae).success).toBe(false); // exactly 10%
    expect(scoreTrajectory(0.67, acc).success).toBe(true);
    expect(scoreTrajectory(0.5, acc)).toMatchObject({ submitted: true, success: false });
  });
});

describe('aggregating a task', () => {
  it('averages scores with the baseline standing in for missing submissions', () => {
    const ts = [trajectory(mae, 'a', 0, 3000, 5, 1), trajectory(mae, 'a', 1, null, 3, 3), trajectory(mae, 'a', 2, 3900, 4, 0)];
    const row = aggregateTask(mae, 'a', ts);
    expect(row.avg).toBeCloseTo((3000 + 4000 + 3900) / 3, 10);
    expect(row.best).toBe(3000);
    expect(row.avgGain).toBeCloseTo((4000 - row.avg) / 4000, 12);
    expect(row.bestGain).toBeCloseTo(0.25, 12);
    expect(row.successRate).toBeCloseTo(1 / 3, 12);
    expect(row.formatErrorRate).toBeCloseTo(4 / 12, 12);
    expect(row.meanSteps).toBe(4);
    expect(row).toMatchObject({ trajectories: 3, submitted: 2, timedOut: 0, failed: 0, metric: 'mae', direction: 'minimize', baseline: 4000 });
  });

  it('refuses an empty list', () => {
    expect(() => aggregateTask(mae, 'a', [])).toThrow(/no trajectories of a on house-prices/);
  });
});

describe('tables and merged results', () => {
  const a = resultOf('policy', [
    [mae, [3000, 3600]],
    [acc, [0.62, null]],
  ]);
  const b = resultOf('scripted', [[mae, [2500, 2900]]]);

  it('prints Table 1: tasks by agents, avg / best, the best average in bold, missing cells as a dash', () => {
    const md = evalMarkdown(mergeEvalResults([a, b]));
    const lines = md.split('\n');
    expect(lines[0]).toBe('| Task | Metric | Baseline | policy (avg / best) | scripted (avg / best) |');
    expect(lines[1]).toBe('| --- | --- | --- | --- | --- |');
    expect(lines[2]).toBe('| house-prices | MAE ↓ | 4000 | 3300 / 3000 | **2700** / 2500 |');
    expect(lines[3]).toBe('| spaceship-titanic | accuracy ↑ | 0.6000 | 0.6100 / 0.6200 | – |');
    expect(md).toContain('| house-prices | policy | +17.5% | +25.0% | 50.0% | 25.0% | 4.0 | 2/2 |');
    expect(md).toContain('| spaceship-titanic | policy | +1.7% | +3.3% | 0.0% | 25.0% | 4.0 | 1/2 |');
  });

  it('renames an agent that is already there instead of dropping it', () => {
    const m = mergeEvalResults([a, b, a]);
    expect(m.agents.map((x) => x.name)).toEqual(['policy', 'scripted', 'policy (2)']);
    expect(m.rows.filter((r) => r.agent === 'policy (2)')).toHaveLength(2);
    expect(m.trajectories.filter((t) => t.agent === 'policy (2)')).toHaveLength(4);
    expect(evalMarkdown(m).split('\n')[0]).toContain('policy (2) (avg / best)');
  });

  it('reads a written result back, renders it in the run report, and names what is wrong with other files', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'rl-eval-results-'));
    try {
      const { json } = writeEvalResult(dir, mergeEvalResults([a, b]));
      expect(readEvalResult(json)).toEqual(mergeEvalResults([a, b]));
      const html = renderReport(dir);
      expect(html).toContain('<caption>agents</caption>');
      expect(html).toContain('<td>scripted</td>');
      const bad = path.join(dir, 'other.json');
      writeFileSync(bad, '{"rows": []}');
      expect(() => readEvalResult(bad)).toThrow(/other\.json is not an evaluation result/);
      writeFileSync(bad, '{"format": "mlagent-eval", "version": 1, "agents": [], "rows": {}}');
      expect(() => readEvalResult(bad)).toThrow(/"rows" must be a list/);
      expect(() => readEvalResult(path.join(dir, 'none.json'))).toThrow(/cannot read .*none\.json/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
