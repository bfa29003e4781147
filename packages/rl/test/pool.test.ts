import { cpSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { collect } from '../src/collect/runner.js';
import { readCollection, stepsInOrder, type CollectedStep } from '../src/collect/records.js';
import { ScriptedExpert } from '../src/experts/scripted.js';
import { StateDraws, expertEdited } from '../src/pool/edit-share.js';
import { StatesPool, type PoolCursor } from '../src/pool/states-pool.js';
import { sftChats } from '../src/train/expert-chats.js';
import { fakePrepared, startFake } from './fake-episode.js';

let dir: string;
let steps: CollectedStep[];
beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'rl-pool-'));
  // 'big' gets 4 trajectories, 'small' 1: stratified sampling must still draw them equally.
  // (Two runs into one directory: a collection can be extended with more trajectories of some tasks.)
  await collect({ tasks: fakePrepared('big', 'small'), expert: new ScriptedExpert(), trajectories: 1, ideas: 4, out: dir, progress: false, startEpisode: startFake });
  await collect({ tasks: fakePrepared('big'), expert: new ScriptedExpert(), trajectories: 4, ideas: 4, out: dir, progress: false, startEpisode: startFake });
  await collect({ tasks: fakePrepared('big'), expert: new ScriptedExpert(), trajectories: 2, ideas: 4, out: path.join(dir, 'a'), progress: false, startEpisode: startFake });
  steps = readCollection(path.join(dir, 'steps.jsonl')).records.filter((r): r is CollectedStep => r.type === 'step');
});

describe('the order of recorded steps', () => {
  it('does not depend on the order concurrent episodes wrote them in: pool, cursor id and SFT chats are the same', () => {
    const shuffled = mkdtempSync(path.join(tmpdir(), 'rl-pool-order-'));
    cpSync(dir, shuffled, { recursive: true });
    // Another interleaving of the same trajectories: the last one first (each keeps its own line order).
    const byTrajectory = new Map<string, string[]>();
    for (const line of readFileSync(path.join(dir, 'steps.jsonl'), 'utf8').trim().split('\n')) {
      const id = (JSON.parse(line) as { trajectory: string }).trajectory;
      byTrajectory.set(id, [...(byTrajectory.get(id) ?? []), line]);
    }
    writeFileSync(path.join(shuffled, 'steps.jsonl'), [...byTrajectory.values()].reverse().flat().join('\n') + '\n');
    const ordered = stepsInOrder(readCollection(path.join(shuffled, 'steps.jsonl')).records);
    expect(ordered.map((s) => `${s.trajectory}#${s.step}`)).toEqual(stepsInOrder(steps).map((s) => `${s.trajectory}#${s.step}`));
    for (let i = 1; i < ordered.length; i++) {
      const [a, b] = [ordered[i - 1], ordered[i]];
      expect(a.trajectory < b.trajectory || (a.trajectory === b.trajectory && a.step < b.step)).toBe(true);
    }
    const [p1, p2] = [StatesPool.fromCollection(dir), StatesPool.fromCollection(shuffled)];
    expect(p2.id).toBe(p1.id);
    expect(p2.states.map((s) => s.snapshotId)).toEqual(p1.states.map((s) => s.snapshotId));
    expect(sftChats(path.join(shuffled, 'steps.jsonl'), true)).toEqual(sftChats(path.join(dir, 'steps.jsonl'), true));
  });
});

describe('StatesPool', () => {
  it('holds every distinct state before a step, with its snapshot, prompt and metric', () => {
    const pool = StatesPool.fromCollection(dir);
    const distinct = new Set(steps.map((s) => s.stateBefore));
    expect(pool.size).toBe(distinct.size);
    expect(pool.size).toBeLessThan(steps.length); // the start state is shared by a task's trajectories
    expect(pool.tasks).toEqual(['big', 'small']);
    const start = pool.states.find((s) => s.task === 'big' && s.step === 1)!;
    expect(start.visits).toBe(4);
    for (const s of pool.states) {
      const r = steps.find((x) => x.stateBefore === s.snapshotId)!;
      expect(s).toMatchObject({ task: r.task, prompt: r.prompt, messages: r.messages, metric: r.metricBefore });
    }
    // No state after a final answer.
    const finals = new Set(steps.filter((s) => s.done).map((s) => s.stateAfter));
    expect(pool.states.some((s) => finals.has(s.snapshotId))).toBe(false);
  });

  it('reports per-task counts and metric ranges', () => {
    const stats = StatesPool.fromCollection(dir).stats();
    expect(stats.tasks.big.trajectories).toBe(4);
    expect(stats.tasks.small.trajectories).toBe(1);
    expect(stats.tasks.small.states).toBeLessThan(stats.tasks.big.states);
    const bigMetrics = steps.filter((s) => s.task === 'big').map((s) => s.metricBefore!);
    expect(stats.tasks.big.metric).toMatchObject({ min: Math.min(...bigMetrics), max: Math.max(...bigMetrics) });
    expect(stats.states).toBe(stats.tasks.big.states + stats.tasks.small.states);
    expect(StatesPool.fromCollection(dir, { tasks: ['small'] }).tasks).toEqual(['small']);
    expect(() => StatesPool.fromCollection(dir, { tasks: ['nope'] })).toThrow(/no states of task nope/);
    expect(() => StatesPool.fromCollection(path.join(dir, 'missing'))).toThrow(/steps.jsonl is missing/);
  });

  it('samples uniformly without replacement within a pass, reproducibly per seed', () => {
    const pool = StatesPool.fromCollection(dir);
    const a = pool.sampler({ mode: 'uniform', seed: 5 }).take(pool.size);
    expect(new Set(a.map((s) => s.snapshotId)).size).toBe(pool.size);
    expect(pool.sampler({ mode: 'uniform', seed: 5 }).take(pool.size)).toEqual(a);
    expect(pool.sampler({ mode: 'uniform', seed: 6 }).take(pool.size).map((s) => s.snapshotId)).not.toEqual(a.map((s) => s.snapshotId));
  });

  it('stratifies by task: each task drawn equally often', () => {
    const pool = StatesPool.fromCollection(dir);
    const s = pool.sampler({ mode: 'by-task', seed: 1 }).take(200);
    const small = s.filter((x) => x.task === 'small').length;
    expect(small).toBe(100);
    // Within a task, a pass covers its states before any repeats.
    const n = pool.byTask.get('small')!.length;
    const firstPass = s.filter((x) => x.task === 'small').slice(0, n);
    expect(new Set(firstPass.map((x) => x.snapshotId)).size).toBe(n);
  });

  it('resumes from a saved cursor with exactly the draws an uninterrupted sampler makes', () => {
    const pool = StatesPool.fromCollection(dir);
    for (const mode of ['uniform', 'by-task'] as const) {
      const straight = pool.sampler({ mode, seed: 9 }).take(150);
      const first = pool.sampler({ mode, seed: 9 });
      const head = first.take(61);
      const saved = JSON.parse(JSON.stringify(first.cursor));
      const rest = StatesPool.fromCollection(dir).sampler({ cursor: saved }).take(89);
      expect([...head, ...rest]).toEqual(straight);
    }
    const other = StatesPool.fromCollection(path.join(dir, 'a'));
    expect(() => other.sampler({ cursor: pool.sampler({}).cursor })).toThrow(/cursor belongs to pool/);
    expect(() => pool.sampler({ mode: 'weird' as 'uniform' })).toThrow(/mode must be/);
  });

  it('keeps only the states a filter passes, and says so when none does', () => {
    const edited = new Set(steps.filter(expertEdited).map((s) => s.stateBefore));
    expect(edited.size).toBeGreaterThan(0);
    const pool = StatesPool.fromCollection(dir, { where: expertEdited });
    expect(new Set(pool.states.map((s) => s.snapshotId))).toEqual(edited);
    const others = StatesPool.fromCollection(dir, { where: (s) => !expertEdited(s) });
    expect(others.size).toBe(StatesPool.fromCollection(dir).size - edited.size);
    expect(() => StatesPool.fromCollection(dir, { where: () => false })).toThrow(/no state of the collection .* passes the pool filter/);
  });
});

describe('StateDraws', () => {
  it('draws a fixed share of each iteration from the edit states, and resumes from its cursors', () => {
    const edited = new Set(steps.filter(expertEdited).map((s) => s.stateBefore));
    const make = (cursors?: PoolCursor[]) => StateDraws.create(dir, { perIteration: 4, editShare: 0.5, mode: 'uniform', seed: 3, cursors });
    const draws = make();
    const first = draws.take();
    expect(first).toHaveLength(4);
    expect(first.map((s) => edited.has(s.snapshotId))).toEqual([true, true, false, false]);
    expect(draws.editStates).toEqual(edited);
    const saved = JSON.parse(JSON.stringify(draws.cursors));
    const straight = make();
    straight.take();
    expect(make(saved).take()).toEqual(straight.take());
    // Share 0 and null draw no edit state and from the whole pool respectively; a cursor count mismatch is refused.
    expect(StateDraws.create(dir, { perIteration: 4, editShare: 0, mode: 'uniform', seed: 3 }).take().some((s) => edited.has(s.snapshotId))).toBe(false);
    const whole = StateDraws.create(dir, { perIteration: 4, editShare: null, mode: 'uniform', seed: 3 });
    expect(whole.cursors).toHaveLength(1);
    expect(whole.editStates).toBeNull();
    expect(() => make(saved.slice(0, 1))).toThrow(/1 pool cursor\(s\), but this config draws from 2/);
  });

  it('refuses a share of edit states from a collection without any, naming the field; share 0 still draws', async () => {
    const short = path.join(dir, 'short');
    await collect({ tasks: fakePrepared('big'), expert: new ScriptedExpert(), trajectories: 1, ideas: 2, maxSteps: 3, out: short, progress: false, startEpisode: startFake });
    expect(() => StateDraws.create(short, { perIteration: 2, editShare: 0.5, mode: 'uniform', seed: 1 })).toThrow(/ppo.editStateShare is 0.5, but .* no state where the expert edited a file; set it to null or 0/);
    const none = StateDraws.create(short, { perIteration: 2, editShare: 0, mode: 'uniform', seed: 1 });
    expect(none.take()).toHaveLength(2);
    expect(none.editStates).toEqual(new Set());
  });
});
