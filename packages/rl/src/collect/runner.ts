// The collection runner: full expert episodes on each task, seeded with diverse ideas, every step saved as a
// JSONL line and every state in the env's snapshot store. Restarted with the same arguments after a crash, it
// drops the incomplete trajectories' lines and redoes only those.
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { makeDirs } from '@mlagent/policy';
import { Episode, SnapshotStore, type HelperLlmConfig, type PreparedTask } from '@mlagent/env';
import type { Expert } from '../experts/types.js';
import { ProgressMeter } from '../metrics/progress.js';
import { progressInfo, type CollectProgress } from './progress.js';
import { JsonlAppender, readCollection, rewriteCollection } from './records.js';
import { seedPlan, taskIdeas, type TaskIdeas } from './seeds.js';
import { runTrajectory, type StartEpisode, type TrajectoryJob } from './trajectory.js';
import { lockRunDir } from '../train/lock.js';
import { writeFileAtomic } from '../checkpoint/atomic.js';

export type { CollectEpisode, StartEpisode } from './trajectory.js';

export interface CollectOptions {
  tasks: readonly PreparedTask[];
  expert: Expert;
  /** Trajectories per task. */
  trajectories: number;
  /** K: diverse candidate plans kept per task (the paper's 10). */
  ideas: number;
  /** Candidate plans generated per task before the K are picked (default 100, the paper's "at least 100"). */
  candidates?: number;
  /** Step limit per episode (default 15, the paper's expert limit). */
  maxSteps?: number;
  out: string;
  /** Episodes run at once (default 1). */
  concurrency?: number;
  seed?: number;
  /** Progress bar on stderr (default true). */
  progress?: boolean;
  /** Helper model for Understand File, the AI edits and Reflection (default: none; Edit Script Lines instead). */
  helperLlm?: HelperLlmConfig | null;
  /** Stops starting new trajectories once aborted; running ones finish. */
  signal?: AbortSignal;
  startEpisode?: StartEpisode;
}

export interface CollectSummary {
  stepsFile: string;
  snapshotsDir: string;
  /** Trajectories asked for (tasks x trajectories). */
  total: number;
  /** Complete before this run started (resumed). */
  alreadyDone: number;
  /** Completed by this run. */
  completed: number;
  failed: { trajectory: string; error: string }[];
  /** Lines of incomplete trajectories dropped from a previous run. */
  droppedLines: number;
}

/** The settings a collection directory is bound to: resuming with other values would mix two collections. */
interface CollectionManifest {
  format: 1;
  expert: string;
  ideas: number;
  candidates: number;
  maxSteps: number;
  seed: number;
}

const defaultStart: StartEpisode = (task, o) => Episode.start(task, o);

function positiveInt(name: string, v: number): number {
  if (!Number.isInteger(v) || v < 1) throw new RangeError(`collect: ${name} must be a positive integer, got ${v}`);
  return v;
}

function checkManifest(file: string, want: CollectionManifest): void {
  if (existsSync(file)) {
    let have: CollectionManifest;
    try {
      have = JSON.parse(readFileSync(file, 'utf8')) as CollectionManifest;
      if (have === null || typeof have !== 'object' || Array.isArray(have)) throw new Error('it does not hold a JSON object');
    } catch (e) {
      throw new Error(`collect: cannot read ${file} (${(e as Error).message}); it binds the directory to its settings: fix or delete it, or use another --out`);
    }
    const diff = (Object.keys(want) as (keyof CollectionManifest)[]).filter((k) => have[k] !== want[k]);
    if (diff.length > 0)
      throw new Error(
        `collect: ${path.dirname(file)} holds a collection made with other settings (${diff
          .map((k) => `${k}: ${JSON.stringify(have[k])} there, ${JSON.stringify(want[k])} now`)
          .join('; ')}); use another --out or the same settings to resume`,
      );
  } else {
    // Whole or not at all: a half-written manifest would refuse every resume.
    writeFileAtomic(file, `${JSON.stringify(want, null, 2)}\n`);
  }
}


/** Runs (or resumes) a collection; see CollectOptions. Resolves once every trajectory is done or has failed. */
export async function collect(options: CollectOptions): Promise<CollectSummary> {
  const trajectories = positiveInt('trajectories', options.trajectories);
  const k = positiveInt('ideas', options.ideas);
  const candidates = positiveInt('candidates', options.candidates ?? 100);
  const maxSteps = positiveInt('maxSteps', options.maxSteps ?? 15);
  const concurrency = positiveInt('concurrency', options.concurrency ?? 1);
  const seed = options.seed ?? 0;
  if (!Number.isInteger(seed) || seed < 0) throw new RangeError(`collect: seed must be a non-negative integer, got ${seed}`);
  if (options.tasks.length === 0) throw new Error('collect: no tasks given');
  const names = options.tasks.map((t) => t.spec.name);
  const twice = names.find((n, i) => names.indexOf(n) !== i);
  if (twice) throw new Error(`collect: task ${twice} is listed twice`);

  // Ideas first: a task without usable ideas fails before any episode runs.
  const ideasByTask = new Map<string, TaskIdeas>(options.tasks.map((t) => [t.spec.name, taskIdeas(t, k, seed, candidates)]));

  const out = path.resolve(options.out);
  makeDirs(path.join(out, 'ideas'));
  // The same lock as training's: written whole before it counts, and a pid reused by another process is no writer.
  const release = lockRunDir(out, 'collect');
  try {
    checkManifest(path.join(out, 'collection.json'), { format: 1, expert: options.expert.name, ideas: k, candidates, maxSteps, seed });
    for (const ti of ideasByTask.values()) writeFileSync(path.join(out, 'ideas', `${ti.task}.json`), `${JSON.stringify(ti, null, 2)}\n`);
    const stepsFile = path.join(out, 'steps.jsonl');
    const previous = readCollection(stepsFile);
    if (!previous.clean) rewriteCollection(stepsFile, previous.records);
    // Workspaces of a killed run are left over here; nothing else uses them.
    const workRoot = path.join(out, 'work');
    rmSync(workRoot, { recursive: true, force: true });
    makeDirs(workRoot);
    const snapshotsDir = path.join(out, 'snapshots');
    const store = new SnapshotStore(snapshotsDir);

    const jobs: TrajectoryJob[] = [];
    const state: CollectProgress = { failed: 0, metrics: new Map(names.map((n) => [n, []])) };
    const previousEnds = new Map(previous.records.flatMap((r) => (r.type === 'end' ? [[r.trajectory, r] as const] : [])));
    let done = 0;
    for (const task of options.tasks)
      for (let i = 0; i < trajectories; i++) {
        const id = `${task.spec.name}/${String(i).padStart(4, '0')}`;
        const end = previousEnds.get(id);
        if (end === undefined) jobs.push({ id, task, plan: seedPlan(ideasByTask.get(task.spec.name)!, i, seed) });
        else {
          done++;
          if (end.finalMetric !== null) state.metrics.get(task.spec.name)!.push(end.finalMetric);
        }
      }
    const total = options.tasks.length * trajectories;
    const alreadyDone = done;
    // The bar counts this run's trajectories (so its rate and ETA are right after a resume).
    const bar = options.progress === false ? null : new ProgressMeter({ total: jobs.length, label: alreadyDone > 0 ? `collect (+${alreadyDone} done before)` : 'collect', unit: 'traj' });
    bar?.update(0, progressInfo(state));
    const writer = new JsonlAppender(stepsFile);
    const failed: CollectSummary['failed'] = [];
    const start = options.startEpisode ?? defaultStart;

    const runOne = async (job: TrajectoryJob): Promise<void> => {
      const episode = await start(job.task, { store, maxSteps, workRoot, helperLlm: options.helperLlm ?? null });
      try {
        const end = await runTrajectory(job, options.expert, episode, writer);
        done++;
        if (end.finalMetric !== null) state.metrics.get(end.task)!.push(end.finalMetric);
      } finally {
        await episode.close();
      }
    };

    let next = 0;
    const worker = async () => {
      while (next < jobs.length && !options.signal?.aborted) {
        const job = jobs[next++];
        try {
          await runOne(job);
        } catch (e) {
          // Its lines stay without an 'end' record: the next run drops and redoes them.
          failed.push({ trajectory: job.id, error: (e as Error).message });
          state.failed++;
          process.stderr.write(`\ncollect: trajectory ${job.id} failed: ${(e as Error).message}\n`);
        }
        bar?.update(done - alreadyDone + state.failed, progressInfo(state));
      }
    };
    try {
      await Promise.all(Array.from({ length: Math.min(concurrency, Math.max(1, jobs.length)) }, worker));
    } finally {
      writer.close();
      bar?.finish(progressInfo(state));
      rmSync(workRoot, { recursive: true, force: true });
    }
    return {
      stepsFile,
      snapshotsDir,
      total,
      alreadyDone,
      completed: done - alreadyDone,
      failed,
      droppedLines: previous.dropped,
    };
  } finally {
    release();
  }
}
