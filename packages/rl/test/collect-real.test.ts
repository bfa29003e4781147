// End to end on a real built-in task (house-prices, one of the fastest baselines): the scripted expert through
// the env's Episode, Python runs and grading included. About a minute on 2 cores.
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { Episode, SnapshotStore, prepareTask, type PreparedTask } from '@mlagent/env';
import { collect, type CollectSummary } from '../src/collect/runner.js';
import { exportShareGPT } from '../src/collect/export.js';
import type { CollectionRecord, CollectedStep } from '../src/collect/records.js';
import { ScriptedExpert } from '../src/experts/scripted.js';
import type { ExpertObservation } from '../src/experts/types.js';
import { StatesPool } from '../src/pool/states-pool.js';

let task: PreparedTask;
let out: string;
let summary: CollectSummary;
let records: CollectionRecord[];

beforeAll(async () => {
  task = await prepareTask('house-prices');
  out = mkdtempSync(path.join(tmpdir(), 'rl-collect-real-'));
  // 8 steps: list, inspect, baseline, one idea (edit, run, maybe undo and re-run), final answer.
  summary = await collect({ tasks: [task], expert: new ScriptedExpert(), trajectories: 2, ideas: 4, maxSteps: 8, out, concurrency: 2, seed: 1, progress: false });
  records = readFileSync(summary.stepsFile, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
}, 170_000);

describe('collect on house-prices with the scripted expert', () => {
  it('plays valid episodes whose every action the env accepts, and grades the runs', () => {
    expect(summary).toMatchObject({ total: 2, completed: 2, failed: [] });
    const steps = records.filter((r): r is CollectedStep => r.type === 'step');
    for (const s of steps) {
      expect(s.outcome, `${s.action}: ${s.observation}`).not.toMatch(/parse-error|action-error/);
      expect(s.feedback).toMatchObject({ formatValid: true });
    }
    const runs = steps.filter((s) => s.action === 'Execute Script');
    expect(runs.length).toBeGreaterThanOrEqual(4);
    for (const r of runs) expect(r.outcome, r.observation).toBe('ok');
    expect(runs.every((r) => typeof r.metric === 'number')).toBe(true);
    const edits = steps.filter((s) => s.action === 'Edit Script Lines' || s.action === 'Write File');
    expect(edits.length).toBeGreaterThanOrEqual(2);
    for (const e of edits) expect((e.feedback as { isEdit: boolean }).isEdit).toBe(true);
    for (const end of records.filter((r) => r.type === 'end')) {
      expect(end).toMatchObject({ finalAnswer: true });
      // The expert reverts what does not help, so the final state holds the best run.
      if (end.type === 'end') expect(end.finalMetric).toBe(end.bestMetric);
    }
  });

  it('exports ShareGPT and builds a states pool whose states restore to the recorded prompt', async () => {
    expect(exportShareGPT(summary.stepsFile, path.join(out, 'sharegpt.json'))).toBe(2);
    const convs = JSON.parse(readFileSync(path.join(out, 'sharegpt.json'), 'utf8'));
    expect(convs[0].system).toMatch(/Edit Script Lines/);
    expect(convs[0].conversations[0].value).toMatch(/Research Problem/);
    const pool = StatesPool.fromCollection(out);
    expect(pool.stats().tasks['house-prices'].trajectories).toBe(2);
    const state = pool.sampler({ mode: 'by-task', seed: 0 }).take(3).find((s) => s.step > 3)!;
    expect(state).toBeDefined();
    expect(pool.maxSteps).toBe(8);
    const store = new SnapshotStore(summary.snapshotsDir);
    const ep = await Episode.start(task, { store, fromSnapshot: state.snapshotId, maxSteps: pool.maxSteps!, workRoot: path.join(out, 'restore') });
    try {
      expect(ep.stepIndex).toBe(state.step - 1);
      expect(ep.messages()).toEqual(state.messages);
      expect(ep.prompt()).toBe(state.prompt);
      expect(ep.currentMetric).toBe(state.metric);
    } finally {
      await ep.close();
    }
  });

  it('reacts to a failing edit in the real env: undo, then the next idea, ending on the best version', async () => {
    // A deliberately broken idea first, then a real one (random forest).
    const broken = { idea: 'Drop the feature list (breaks the script)', edits: [{ find: "features = ['Rooms',", replace: "featurez = ['Rooms'," }] };
    const t = { ...task, ideas: [...task.ideas, broken] };
    const store = new SnapshotStore(path.join(out, 'snapshots-react'));
    const ep = await Episode.start(t, { store, maxSteps: 11, workRoot: path.join(out, 'react') });
    const te = new ScriptedExpert().begin(t, { candidates: [], ideas: [t.ideas.length - 1, 1] });
    const seen: { action: string | null; outcome: string; metric: number | null }[] = [];
    try {
      let last: ExpertObservation | undefined;
      while (!ep.done) {
        const r = await ep.step(await te.respond({ messages: ep.messages(), last, stepsLeft: ep.maxSteps - ep.stepIndex }));
        seen.push({ action: r.action, outcome: r.outcome, metric: r.metric });
        last = { action: r.action ?? undefined, observation: r.observation, outcome: r.outcome, metric: r.metric };
      }
      const source = readFileSync(path.join(ep.workspace, 'train.py'), 'utf8');
      expect(source).toContain('RandomForestRegressor');
      expect(source).not.toContain('featurez');
    } finally {
      await ep.close();
    }
    expect(seen.map((s) => `${s.action}:${s.outcome}`)).toEqual([
      'List Files:none', 'Inspect Script Lines:none', 'Execute Script:ok',
      'Edit Script Lines:none', 'Execute Script:error', 'Undo Edit Script:none',
      'Edit Script Lines:none', 'Execute Script:ok', 'Final Answer:none',
    ]);
    expect(seen[7].metric!).toBeLessThan(seen[2].metric!); // MAE: lower is better
    expect(ep.currentMetric).toBe(seen[7].metric);
  }, 120_000);
});
