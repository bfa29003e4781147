/**
 * What lets an evaluation continue after a crash or Ctrl-C: eval-run.json says what the run evaluates, and
 * eval-trajectories.jsonl gets each trajectory's record as it finishes. A resumed run keeps the trajectories that
 * finished without an error and runs the others from their start.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { AgentSetting } from './agent.js';
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
  /** The agent's other settings (EvalAgent.settings), e.g. the policy's maxNewTokens and promptFormat. */
  settings: Record<string, AgentSetting>;
}

/**
 * Throws naming every field where `out`'s saved run differs from `now` (the agent's settings by their own names).
 * A setting the saved run lacks (an eval-run.json from before settings were recorded) cannot be checked: it is
 * named in a warning, and the resumed trajectories run with the value given now.
 */
export function checkSameRun(out: string, now: EvalRunIdentity, warn: (line: string) => void = (line) => process.stderr.write(`${line}\n`)): void {
  const file = path.join(out, EVAL_RUN_FILE);
  const saved = readRunIdentity(file);
  const { settings, ...run } = now;
  // Every eval-run.json has the run's fields; the agent's settings came later.
  const unrecorded = Object.keys(settings).filter((key) => saved.settings?.[key] === undefined);
  const fields: [string, unknown, unknown][] = [
    ...Object.entries(run).map(([key, is]): [string, unknown, unknown] => [key, saved[key as keyof EvalRunIdentity], is]),
    ...Object.entries(settings).filter(([key]) => !unrecorded.includes(key)).map(([key, is]): [string, unknown, unknown] => [key, saved.settings?.[key], is]),
  ];
  const differ = fields.filter(([, was, is]) => JSON.stringify(was) !== JSON.stringify(is)).map(([key, was, is]) => `${key} (${JSON.stringify(was)} there, ${JSON.stringify(is)} now)`);
  if (differ.length > 0) throw new Error(`eval: ${out} holds an evaluation with another ${differ.join(', ')}; resume it as it was, use another --out, or --force to start over`);
  if (unrecorded.length > 0) warn(`eval: ${file} does not record ${unrecorded.join(', ')} (written by an older mlagent), so the resumed trajectories cannot be checked against the finished ones there; they run with the values given now`);
}

/** eval-run.json as an object; anything else is an error naming the file (`null` there failed as a TypeError). */
function readRunIdentity(file: string): Partial<EvalRunIdentity> {
  let saved: unknown;
  try {
    saved = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(`eval: cannot read ${file}: ${(e as Error).message}; --force starts the evaluation over`);
  }
  if (typeof saved !== 'object' || saved === null || Array.isArray(saved)) throw new Error(`eval: ${file} does not hold a JSON object; --force starts the evaluation over`);
  return saved as Partial<EvalRunIdentity>;
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
  const lineOf = new Map<string, number>();
  lines.forEach((line, i) => {
    if (line.trim() === '') return;
    let record: unknown;
    try {
      record = JSON.parse(line);
    } catch (e) {
      if (i < lines.length - 1 && lines.slice(i + 1).some((l) => l.trim() !== '')) throw new Error(`eval: ${file} line ${i + 1}: ${(e as Error).message}`);
      return;
    }
    // A line of JSON that is no trajectory record (`null`, a list) was kept, and the resume failed on it later as a
    // TypeError naming neither the file nor the line.
    const r = record as Partial<EvalTrajectory> | null;
    if (typeof r !== 'object' || r === null || Array.isArray(r) || typeof r.task !== 'string' || !Number.isInteger(r.index))
      throw new Error(`eval: ${file} line ${i + 1}: not a trajectory record (it needs a task and an index)`);
    // A trajectory recorded twice (files joined by hand) counted twice toward evalComplete and the aggregates.
    const id = `${r.task}\u0000${r.index}`;
    const first = lineOf.get(id);
    if (first !== undefined) throw new Error(`eval: ${file} line ${i + 1}: trajectory ${r.index} of ${r.task} is recorded already on line ${first}`);
    lineOf.set(id, i + 1);
    records.push(r as EvalTrajectory);
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
  // A damaged eval-run.json failed here as a bare SyntaxError, naming no file, and stopped `mlagent train --resume`.
  const run = readRunIdentity(runFile);
  if (!Array.isArray(run.tasks) || typeof run.trajectories !== 'number' || !Number.isInteger(run.trajectories)) throw new Error(`eval: ${runFile} lacks its tasks or trajectories; --force starts the evaluation over`);
  return readFinished(dir).length >= run.tasks.length * run.trajectories;
}
