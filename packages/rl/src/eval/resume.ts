/**
 * What lets an evaluation continue after a crash or Ctrl-C: eval-run.json says what the run evaluates, and
 * eval-trajectories.jsonl gets each trajectory's record as it finishes. A resumed run keeps the trajectories that
 * finished without an error and runs the others from their start.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { EvalTrajectory } from './results.js';

export const EVAL_RUN_FILE = 'eval-run.json';
export const EVAL_TRAJECTORIES_FILE = 'eval-trajectories.jsonl';

/** What a run evaluates: a resume must evaluate the same. */
export interface EvalRunIdentity {
  agent: string;
  kind: string;
  detail: string;
  temperature: number | null;
  tasks: string[];
  trajectories: number;
  maxSteps: number;
  timeBudgetSec: number;
  seed: number;
  shareIdenticalSteps: boolean;
}

/** Throws naming the first field where `out`'s saved run differs from `now`. */
export function checkSameRun(out: string, now: EvalRunIdentity): void {
  const file = path.join(out, EVAL_RUN_FILE);
  let saved: EvalRunIdentity;
  try {
    saved = JSON.parse(readFileSync(file, 'utf8')) as EvalRunIdentity;
  } catch (e) {
    throw new Error(`eval: cannot read ${file}: ${(e as Error).message}; --force starts the evaluation over`);
  }
  for (const key of Object.keys(now) as (keyof EvalRunIdentity)[]) {
    const [was, is] = [JSON.stringify(saved[key]), JSON.stringify(now[key])];
    if (was !== is) throw new Error(`eval: ${out} holds an evaluation with another ${key} (${was} there, ${is} now); resume it as it was, use another --out, or --force to start over`);
  }
}

export function writeRunIdentity(out: string, run: EvalRunIdentity): void {
  writeFileSync(path.join(out, EVAL_RUN_FILE), `${JSON.stringify(run, null, 2)}\n`);
}

/** The records in eval-trajectories.jsonl; a last line cut short by a crash is left out. */
export function readFinished(out: string): EvalTrajectory[] {
  const file = path.join(out, EVAL_TRAJECTORIES_FILE);
  if (!existsSync(file)) return [];
  const lines = readFileSync(file, 'utf8').split('\n');
  const records: EvalTrajectory[] = [];
  lines.forEach((line, i) => {
    if (line.trim() === '') return;
    try {
      records.push(JSON.parse(line) as EvalTrajectory);
    } catch (e) {
      if (i < lines.length - 1 && lines.slice(i + 1).some((l) => l.trim() !== '')) throw new Error(`eval: ${file} line ${i + 1}: ${(e as Error).message}`);
    }
  });
  return records;
}

/**
 * Whether `dir` holds a finished evaluation: eval.json, with every trajectory recorded (an interrupted run writes
 * eval.json with those it finished). Directories from before eval-run.json existed count by eval.json alone.
 */
export function evalComplete(dir: string): boolean {
  if (!existsSync(path.join(dir, 'eval.json'))) return false;
  const runFile = path.join(dir, EVAL_RUN_FILE);
  if (!existsSync(runFile)) return true;
  const run = JSON.parse(readFileSync(runFile, 'utf8')) as EvalRunIdentity;
  return readFinished(dir).length >= run.tasks.length * run.trajectories;
}
