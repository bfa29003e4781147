// Evaluation end to end with the scripted expert on two real built-in tasks (Python runs in the sandbox): the
// aggregates must follow from the per-trajectory records, and those from the steps the environment graded.
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { prepareTask, type PreparedTask } from '@mlagent/env';
import { ScriptedExpert } from '../src/experts/scripted.js';
import { expertAgent } from '../src/eval/agent.js';
import { evaluate, type EvalStepRecord } from '../src/eval/evaluate.js';
import { SUCCESS_GAIN, type EvalResult } from '../src/eval/results.js';
import { evalMarkdown, readEvalResult } from '../src/eval/table.js';
import { renderReport } from '../src/report/html-report.js';

let tasks: PreparedTask[];
let out: string;
let result: EvalResult;

beforeAll(async () => {
  tasks = [await prepareTask('house-prices'), await prepareTask('spaceship-titanic')];
  out = mkdtempSync(path.join(tmpdir(), 'rl-eval-scripted-'));
  // 6 steps: list, inspect, run the baseline, one idea (edit + run), final answer.
  result = await evaluate({
    tasks,
    agent: expertAgent(new ScriptedExpert(), { ideas: 4, seed: 1 }),
    trajectories: 2,
    maxSteps: 6,
    timeBudgetSec: 600,
    concurrency: 2,
    seed: 1,
    out,
    progress: false,
  });
}, 170_000);

afterAll(() => rmSync(out, { recursive: true, force: true }));

describe('evaluate with the scripted expert', () => {
  it('scores each trajectory by the best metric its steps were graded at', () => {
    const steps = readFileSync(path.join(out, 'eval-steps.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as EvalStepRecord);
    expect(result.trajectories).toHaveLength(4);
    for (const t of result.trajectories) {
      const mine = steps.filter((s) => s.trajectory === `${t.task}/${String(t.index).padStart(4, '0')}`);
      expect(mine.map((s) => s.step)).toEqual(mine.map((_, i) => i + 1));
      expect(t.steps).toBe(mine.length);
      expect(t.formatErrors).toBe(mine.filter((s) => !s.formatValid).length);
      const graded = mine.flatMap((s) => (s.metric === null ? [] : [s.metric]));
      const task = tasks.find((x) => x.spec.name === t.task)!;
      const min = task.spec.metric.direction === 'minimize';
      // The scripted expert always runs the baseline, so every trajectory has a valid submission.
      expect(graded.length).toBeGreaterThan(0);
      expect(t.bestMetric).toBe(min ? Math.min(...graded) : Math.max(...graded));
      expect(t.score).toBe(t.bestMetric);
      expect(t.submitted).toBe(true);
      const baseline = task.spec.baseline!;
      const gain = (min ? baseline - t.score : t.score - baseline) / Math.abs(baseline);
      expect(t.gain).toBeCloseTo(gain, 12);
      expect(t.success).toBe(gain > SUCCESS_GAIN);
      expect(t.finalAnswer).toBe(mine[mine.length - 1].action === 'Final Answer');
      expect(t.timedOut).toBe(false);
      expect(t.error).toBeNull();
      expect(t.sharedSteps).toBe(mine.filter((s) => s.shared).length);
    }
  });

  it('aggregates per task: average, best, gains, success and format-error rates, mean steps', () => {
    expect(result.rows.map((r) => r.task)).toEqual(['house-prices', 'spaceship-titanic']);
    for (const row of result.rows) {
      const ts = result.trajectories.filter((t) => t.task === row.task);
      const scores = ts.map((t) => t.score);
      const avg = (scores[0] + scores[1]) / 2;
      expect(row.avg).toBeCloseTo(avg, 10);
      expect(row.best).toBe(row.direction === 'minimize' ? Math.min(...scores) : Math.max(...scores));
      const sign = row.direction === 'minimize' ? -1 : 1;
      expect(row.avgGain).toBeCloseTo((sign * (avg - row.baseline)) / Math.abs(row.baseline), 10);
      expect(row.bestGain).toBeCloseTo((sign * (row.best - row.baseline)) / Math.abs(row.baseline), 10);
      expect(row.successRate).toBe(ts.filter((t) => t.success).length / 2);
      expect(row.meanSteps).toBe((ts[0].steps + ts[1].steps) / 2);
      expect(row.formatErrorRate).toBe(0); // every scripted response parses
      expect(row.submitted).toBe(2);
      expect(row.agent).toBe('scripted');
    }
    // The expert's runs reproduce the baseline and its kept ideas only improve on it.
    const hp = result.rows[0];
    expect(hp.best).toBeLessThanOrEqual(hp.baseline * 1.01);
  });

  it('writes eval.json that reads back and renders in the run report, and the Table-1 markdown', () => {
    const json = readEvalResult(path.join(out, 'eval.json'));
    expect(json).toEqual(JSON.parse(JSON.stringify(result)));
    expect(json.agents[0]).toMatchObject({ name: 'scripted', kind: 'expert', trajectories: 2, maxSteps: 6, seed: 1 });

    const md = readFileSync(path.join(out, 'eval.md'), 'utf8');
    expect(md).toBe(evalMarkdown(result));
    const lines = md.split('\n');
    expect(lines[0]).toBe('| Task | Metric | Baseline | scripted (avg / best) |');
    const hp = result.rows[0];
    const cell = (x: number) => (Math.abs(x) >= 1000 ? String(Math.round(x)) : x.toPrecision(4));
    expect(lines[2]).toBe(`| house-prices | MAE ↓ | 3555 | ${cell(hp.avg)} / ${cell(hp.best)} |`);
    expect(lines[3]).toMatch(/^\| spaceship-titanic \| accuracy ↑ \| 0\.6506 \| [\d.]+ \/ [\d.]+ \|$/);

    const html = renderReport(out);
    expect(html).toContain('<h2>Evaluation: eval.json</h2>');
    expect(html).toContain('<caption>agents</caption>');
    expect(html).toContain('<caption>trajectories</caption>');
    // The rows table: one row per task with its average.
    expect(html).toContain('<th>avgGain</th>');
    expect(html).toContain(`<td class="num">${Number(hp.avg.toPrecision(5))}</td>`);
  });

  it("measures the baseline by running the task's train.py when task.json has none", async () => {
    const dir = path.join(out, 'no-baseline', 'house-prices');
    cpSync(tasks[0].dir, dir, { recursive: true });
    const spec = JSON.parse(readFileSync(path.join(dir, 'task.json'), 'utf8'));
    writeFileSync(path.join(dir, 'task.json'), JSON.stringify({ ...spec, baseline: null, best: null }));
    const task = await prepareTask(dir);
    expect(task.spec.baseline).toBeNull();
    const agent = { name: 'quitter', kind: 'test', detail: '', temperature: null, respond: async (rs: readonly unknown[]) => rs.map(() => 'Action: Final Answer\nAction Input: {"final_answer": "none"}') };
    const r = await evaluate({ tasks: [task], agent, trajectories: 1, maxSteps: 3, timeBudgetSec: 60, progress: false });
    // The shipped train.py reproduces the recorded baseline.
    expect(Math.abs(r.rows[0].baseline - spec.baseline) / spec.baseline).toBeLessThan(0.01);
    expect(r.trajectories[0]).toMatchObject({ steps: 1, submitted: false, score: r.rows[0].baseline, finalAnswer: true });
  }, 90_000);

  it('refuses to overwrite an earlier result', async () => {
    await expect(
      evaluate({ tasks, agent: expertAgent(new ScriptedExpert()), trajectories: 1, maxSteps: 1, timeBudgetSec: 10, out, progress: false }),
    ).rejects.toThrow(/eval\.json already exists; use another --out \(or --force to replace it\)/);
  });
});
