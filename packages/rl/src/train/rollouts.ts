// rollouts.jsonl: every scored rollout group, written (and fsynced) as soon as its actions have been executed and
// before the update that uses it, so a kill at any point loses no completed rollout. A resumed run reuses the
// groups of the iterations it redoes instead of sampling and executing them again.
import { closeSync, existsSync, fsyncSync, openSync, readFileSync, truncateSync } from 'node:fs';
import { join } from 'node:path';
import { writeAll } from '../metrics/write-all.js';

export const ROLLOUTS_FILE = 'rollouts.jsonl';

/** One sampled action, executed and scored. */
export interface RolloutSample {
  response: number[];
  /** log π_old per response token, from generation. */
  oldLogp: number[];
  text: string;
  finishReason: 'stop' | 'length';
  reward: number;
  /** Why the reward module gave that reward. */
  reason: string;
  outcome: string;
  metric: number | null;
  formatValid: boolean;
  envSeconds: number;
  /** Wall seconds of the code the action ran, a reused copy's too (ppo.durationWeighting); absent when it ran none. */
  execSeconds?: number;
  /** The result was copied from a response to the same state that made the same action call, not executed (ppo.reuseIdenticalResponses). */
  reused?: boolean;
}

/** The n samples of one state (step-wise), or of one initial state's episodes (episode-wise: one entry per step). */
export interface RolloutGroup {
  iteration: number;
  group: number;
  task: string;
  /** The pool state's snapshot id (step-wise), or 'initial' (episode-wise). */
  state: string;
  /** The state's metric before acting (the reward's previous metric). */
  metricBefore: number | null;
  /** One per sample: step-wise, all share the state's prompt. */
  prompts: number[][];
  samples: RolloutSample[];
  /** Seconds the group spent generating and in the env. */
  generateSeconds: number;
  /** The run's config fingerprint: saved rollouts are reused only by a run with the same one. */
  run?: string;
}

export class RolloutLog {
  readonly path: string;
  private fd: number;

  constructor(runDir: string) {
    this.path = join(runDir, ROLLOUTS_FILE);
    // A line torn by a kill would glue onto the next append: cut it off first.
    if (existsSync(this.path)) {
      const bytes = readFileSync(this.path);
      const end = bytes.lastIndexOf(0x0a) + 1;
      if (end < bytes.length) truncateSync(this.path, end);
    }
    this.fd = openSync(this.path, 'a');
  }

  /** Appends one group as one line and makes it durable before returning. */
  append(group: RolloutGroup): void {
    // Whole: a short write (a disk nearly full) used to drop the rest of the line, and the next group was glued onto
    // the torn one, which made the whole file unreadable for a resume.
    writeAll(this.fd, JSON.stringify(group) + '\n');
    fsyncSync(this.fd);
  }

  close(): void {
    closeSync(this.fd);
  }
}

/**
 * The groups saved for iterations ≥ `fromIteration`, by iteration then group. A torn last line (a kill mid-write) is
 * ignored.
 */
export function readRollouts(runDir: string, fromIteration = 0): Map<number, Map<number, RolloutGroup>> {
  const out = new Map<number, Map<number, RolloutGroup>>();
  const path = join(runDir, ROLLOUTS_FILE);
  if (!existsSync(path)) return out;
  const lines = readFileSync(path, 'utf8').split('\n');
  lines.forEach((line, i) => {
    if (line.trim() === '') return;
    let g: RolloutGroup;
    try {
      g = JSON.parse(line) as RolloutGroup;
    } catch (e) {
      if (i === lines.length - 1) return; // torn by a kill
      throw new Error(`${path}:${i + 1}: not JSON (${(e as Error).message})`);
    }
    if (g.iteration < fromIteration) return;
    if (!out.has(g.iteration)) out.set(g.iteration, new Map());
    out.get(g.iteration)!.set(g.group, g);
  });
  return out;
}
