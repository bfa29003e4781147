// Per-task diverse candidates and per-trajectory seed plans, all reproducible from the collection's seed.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { SeededRng } from '@mlagent/core-kernels';
import { diverseIdeas } from '../ideas/diverse.js';
import type { IdeaCandidate } from '../ideas/candidates.js';
import type { ExpertTask, SeedPlan } from '../experts/types.js';

/** A 32-bit seed mixed from the collection seed and a label (FNV-1a), so each trajectory has its own stream. */
export function mixSeed(seed: number, label: string): number {
  let h = (0x811c9dc5 ^ (seed >>> 0)) >>> 0;
  for (let i = 0; i < label.length; i++) h = Math.imul(h ^ label.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

export interface TaskIdeas {
  task: string;
  candidates: IdeaCandidate[];
  selected: IdeaCandidate[];
}

/** The task's candidate plans (at least `minCandidates` when its ideas allow; composable on its train.py) and the k most diverse. */
export function taskIdeas(task: ExpertTask, k: number, seed: number, minCandidates = 100): TaskIdeas {
  if (task.ideas.length === 0) throw new Error(`task ${task.spec.name} has no ideas (ideas.json) to seed trajectories with`);
  const baseline = readFileSync(path.join(task.envDir, 'train.py'), 'utf8');
  const { candidates, selected } = diverseIdeas(task.ideas, k, { baseline, minCandidates, seed: mixSeed(seed, task.spec.name) });
  return { task: task.spec.name, candidates, selected };
}

/**
 * Trajectory `index`'s seed: 1-3 distinct candidates of the selection and the union of their ideas. The first
 * (the plan the expert starts with) rotates over the selection, so each diverse plan leads as many trajectories as
 * the others; the rest are drawn at random. A random lead let one plan's edit dominate the SFT data at the state
 * where the expert first edits, and the policy then never sampled the other one for RL to compare.
 */
export function seedPlan(ideas: TaskIdeas, index: number, seed: number): SeedPlan {
  const rng = new SeededRng(mixSeed(seed, `${ideas.task}/${index}`));
  const pool = [...ideas.selected];
  const n = Math.min(pool.length, 1 + Math.floor(rng.uniform() * 3));
  const candidates: IdeaCandidate[] = pool.splice(index % pool.length, 1);
  for (let i = 1; i < n; i++) candidates.push(pool.splice(Math.floor(rng.uniform() * pool.length), 1)[0]);
  const union: number[] = [];
  for (const c of candidates) for (const i of c.ideas) if (!union.includes(i)) union.push(i);
  return { candidates, ideas: union };
}
