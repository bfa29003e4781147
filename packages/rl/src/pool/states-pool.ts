// The states pool for step-wise RL: every intermediate state of the collected expert trajectories (the state
// before each step), sampled uniformly or evenly by task, reproducibly from a seed, with a saveable cursor.
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { SeededRng } from '@mlagent/core-kernels';
import { readCollection, stepsInOrder, type CollectedStep } from '../collect/records.js';
import { mixSeed } from '../collect/seeds.js';
import type { ChatMessage } from '../experts/types.js';

/** One state an RL step can start from. */
export interface PoolState {
  task: string;
  /** The first trajectory that reached it, and the 1-based number of the step taken from it there. */
  trajectory: string;
  step: number;
  /** Its id in the collection's snapshot store (out/snapshots): restore with Episode.start({ fromSnapshot }). */
  snapshotId: string;
  messages: ChatMessage[];
  prompt: string;
  /** The state's metric (last graded, else the task's baseline), or null. */
  metric: number | null;
  /** How many trajectories passed through this exact state (the start state is shared by all of a task's). */
  visits: number;
}

export type SamplingMode = 'uniform' | 'by-task';

/** Where a sampler stands: JSON-serialisable, so RL can save it with its checkpoint and resume the same draws. */
export interface PoolCursor {
  mode: SamplingMode;
  seed: number;
  /** States drawn so far. */
  drawn: number;
  /** Identifies the pool the cursor belongs to. */
  poolId: string;
}

export interface TaskStats {
  states: number;
  trajectories: number;
  /** Over the states with a metric; null when none has one. */
  metric: { min: number; max: number; mean: number } | null;
  /** Largest step number of a state. */
  maxStep: number;
}

export interface PoolStats {
  states: number;
  tasks: Record<string, TaskStats>;
}

function permutation(n: number, seed: number): Uint32Array {
  const p = new Uint32Array(n);
  for (let i = 0; i < n; i++) p[i] = i;
  const rng = new SeededRng(seed);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rng.uniform() * (i + 1));
    const t = p[i];
    p[i] = p[j];
    p[j] = t;
  }
  return p;
}

/**
 * collection.json's maxSteps. A damaged manifest failed as a bare "Unexpected end of JSON input" naming no file, and
 * a maxSteps of another type ("8", 0) went on to the episodes that restore the states.
 */
function manifestMaxSteps(file: string): number | null {
  let manifest: unknown;
  try {
    manifest = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(`StatesPool: cannot read ${file}: ${(e as Error).message}`);
  }
  if (typeof manifest !== 'object' || manifest === null || Array.isArray(manifest)) throw new Error(`StatesPool: ${file} must hold a JSON object`);
  const maxSteps = (manifest as { maxSteps?: unknown }).maxSteps;
  if (maxSteps === undefined || maxSteps === null) return null;
  if (typeof maxSteps !== 'number' || !Number.isInteger(maxSteps) || maxSteps < 1) throw new Error(`StatesPool: ${file}: maxSteps must be an integer >= 1, got ${JSON.stringify(maxSteps)}`);
  return maxSteps;
}

export class StatesPool {
  readonly states: readonly PoolState[];
  /** Indices into `states`, per task (tasks in sorted order). */
  readonly byTask: ReadonlyMap<string, readonly number[]>;
  /** A hash of the state ids: a cursor only restores on the pool it came from. */
  readonly id: string;
  /**
   * The collection's episode step limit (from its collection.json), or null when unknown. Restore states with
   * the same maxSteps: the prompt states it, so the restored prompt matches the recorded one only then.
   */
  maxSteps: number | null = null;
  private readonly trajectoriesPerTask: Map<string, Set<string>>;

  constructor(states: PoolState[], trajectoriesPerTask = new Map<string, Set<string>>()) {
    this.states = states;
    const byTask = new Map<string, number[]>();
    states.forEach((s, i) => byTask.set(s.task, [...(byTask.get(s.task) ?? []), i]));
    this.byTask = new Map([...byTask].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
    this.id = createHash('sha256').update(states.map((s) => s.snapshotId).join('\n')).digest('hex').slice(0, 16);
    this.trajectoriesPerTask = trajectoriesPerTask;
  }

  /**
   * Loads the states of a collection directory (its steps.jsonl; complete trajectories only). A state reached
   * by several trajectories (same snapshot id) is kept once, with its visit count. States after the last step
   * are left out: an episode that ended has no next action. `where` keeps only the states from which at least one
   * recorded expert step passes it (e.g. the states where the expert edited).
   */
  static fromCollection(dir: string, options: { tasks?: readonly string[]; where?: (step: CollectedStep) => boolean } = {}): StatesPool {
    const file = path.join(dir, 'steps.jsonl');
    if (!existsSync(file)) throw new Error(`StatesPool: no collection at ${dir} (steps.jsonl is missing)`);
    const { records } = readCollection(file);
    const want = options.tasks ? new Set(options.tasks) : null;
    const where = options.where;
    const kept = where ? new Set(records.filter((r): r is CollectedStep => r.type === 'step' && where(r)).map((r) => r.stateBefore)) : null;
    const states: PoolState[] = [];
    const seen = new Map<string, PoolState>();
    const trajectories = new Map<string, Set<string>>();
    for (const r of stepsInOrder(records)) {
      if (want && !want.has(r.task)) continue;
      trajectories.set(r.task, (trajectories.get(r.task) ?? new Set()).add(r.trajectory));
      if (kept && !kept.has(r.stateBefore)) continue;
      const known = seen.get(r.stateBefore);
      if (known) {
        known.visits++;
        continue;
      }
      const s: PoolState = {
        task: r.task,
        trajectory: r.trajectory,
        step: r.step,
        snapshotId: r.stateBefore,
        messages: r.messages,
        prompt: r.prompt,
        metric: r.metricBefore,
        visits: 1,
      };
      seen.set(r.stateBefore, s);
      states.push(s);
    }
    if (want) for (const t of want) if (!trajectories.has(t)) throw new Error(`StatesPool: the collection at ${dir} has no states of task ${t}`);
    if (states.length === 0) {
      throw new Error(where ? `StatesPool: no state of the collection at ${dir} passes the pool filter` : `StatesPool: the collection at ${dir} has no complete trajectory`);
    }
    const pool = new StatesPool(states, trajectories);
    const manifest = path.join(dir, 'collection.json');
    if (existsSync(manifest)) pool.maxSteps = manifestMaxSteps(manifest);
    return pool;
  }

  get size(): number {
    return this.states.length;
  }

  get tasks(): string[] {
    return [...this.byTask.keys()];
  }

  stats(): PoolStats {
    const tasks: Record<string, TaskStats> = {};
    for (const [task, idx] of this.byTask) {
      const m = idx.map((i) => this.states[i].metric).filter((x): x is number => x !== null && Number.isFinite(x));
      tasks[task] = {
        states: idx.length,
        trajectories: this.trajectoriesPerTask.get(task)?.size ?? 0,
        metric: m.length === 0 ? null : { min: Math.min(...m), max: Math.max(...m), mean: m.reduce((a, b) => a + b, 0) / m.length },
        maxStep: Math.max(...idx.map((i) => this.states[i].step)),
      };
    }
    return { states: this.size, tasks };
  }

  /** A sampler over this pool, fresh (seed, mode) or resumed from a saved cursor. */
  sampler(options: { mode?: SamplingMode; seed?: number } | { cursor: PoolCursor }): PoolSampler {
    if ('cursor' in options) {
      const c = options.cursor;
      // A checkpoint saved without a cursor gives undefined here, which used to fail as a cryptic property read.
      if (typeof c !== 'object' || c === null) throw new TypeError(`StatesPool.sampler: cursor must be a saved PoolCursor object, got ${String(c)}`);
      if (c.poolId !== this.id) throw new Error(`StatesPool: the cursor belongs to pool ${c.poolId}, not to this pool (${this.id})`);
      return new PoolSampler(this, c.mode, c.seed, c.drawn);
    }
    return new PoolSampler(this, options.mode ?? 'uniform', options.seed ?? 0, 0);
  }
}

/**
 * Draws states without replacement within each pass. 'uniform': each pass is a seeded shuffle of all states.
 * 'by-task': tasks take turns (a seeded order per round), each walking its own seeded shuffles, so every task is
 * drawn equally often whatever its number of states. Draw n depends only on (seed, n): a restored cursor goes on
 * exactly where the saved one stopped.
 */
export class PoolSampler {
  private cache = new Map<string, Uint32Array>();

  constructor(
    private readonly pool: StatesPool,
    readonly mode: SamplingMode,
    readonly seed: number,
    private drawn: number,
  ) {
    if (mode !== 'uniform' && mode !== 'by-task') throw new Error(`PoolSampler: mode must be 'uniform' or 'by-task', got '${String(mode)}'`);
    if (!Number.isInteger(seed) || seed < 0) throw new RangeError(`PoolSampler: seed must be a non-negative integer, got ${seed}`);
    if (!Number.isInteger(drawn) || drawn < 0) throw new RangeError(`PoolSampler: the cursor's drawn count must be a non-negative integer`);
  }

  private perm(key: string, n: number): Uint32Array {
    let p = this.cache.get(key);
    if (!p) {
      if (this.cache.size > 64) this.cache.clear();
      p = permutation(n, mixSeed(this.seed, key));
      this.cache.set(key, p);
    }
    return p;
  }

  private at(d: number): PoolState {
    const { pool } = this;
    // An empty pool used to return undefined ('uniform') or throw a TypeError ('by-task') instead of saying so.
    if (pool.size === 0) throw new Error('PoolSampler: the pool has no states to draw');
    if (this.mode === 'uniform') {
      const n = pool.size;
      return pool.states[this.perm(`pass ${Math.floor(d / n)}`, n)[d % n]];
    }
    const tasks = pool.tasks;
    const round = Math.floor(d / tasks.length);
    const task = tasks[this.perm(`round ${round}`, tasks.length)[d % tasks.length]];
    const idx = pool.byTask.get(task)!;
    return pool.states[idx[this.perm(`${task} pass ${Math.floor(round / idx.length)}`, idx.length)[round % idx.length]]];
  }

  next(): PoolState {
    return this.at(this.drawn++);
  }

  take(n: number): PoolState[] {
    // Array.from's length rounds 1.5 down and turns −1 or NaN into 0: a bad count silently drew the wrong number.
    if (!Number.isInteger(n) || n < 0) throw new RangeError(`PoolSampler.take: n must be a non-negative integer, got ${n}`);
    return Array.from({ length: n }, () => this.next());
  }

  get cursor(): PoolCursor {
    return { mode: this.mode, seed: this.seed, drawn: this.drawn, poolId: this.pool.id };
  }
}
