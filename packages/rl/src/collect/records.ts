// The collection's JSONL records (out/steps.jsonl) and reading them back tolerantly: a run killed mid-write
// leaves at most a cut-off last line and trajectories without an 'end' record, both of which are dropped.
import { closeSync, existsSync, fsyncSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import type { ChatMessage } from '../experts/types.js';

/** One step of one trajectory: the state before, what the expert answered, and what came of it. */
export interface CollectedStep {
  type: 'step';
  /** "<task>/<index>", unique in a collection. */
  trajectory: string;
  task: string;
  /** 1-based step number within the trajectory. */
  step: number;
  expert: string;
  /** The texts of the seed candidate plans this trajectory explores. */
  seedIdeas: string[];
  /** The chat the expert was shown (the episode's messages(), without any seed hint). */
  messages: ChatMessage[];
  /** The same state as one text (the episode's prompt()). */
  prompt: string;
  response: string;
  action: string | null;
  actionInput: unknown;
  observation: string;
  outcome: string;
  /** The metric graded at this step, if any. */
  metric: number | null;
  /** The state's metric before the step (last graded, else the task's baseline). */
  metricBefore: number | null;
  /** Snapshot ids (the env's SnapshotStore in out/snapshots) of the states before and after the step. */
  stateBefore: string;
  stateAfter: string;
  /** What the reward needs (the env's StepFeedback). */
  feedback: unknown;
  durationSec: number;
  done: boolean;
}

/** Written once a trajectory is complete; only trajectories with one count. */
export interface CollectedEnd {
  type: 'end';
  trajectory: string;
  task: string;
  expert: string;
  steps: number;
  seedIdeas: string[];
  /** Candidate ids (see out/ideas/<task>.json) and the task idea indices they combine. */
  seedCandidates: string[];
  ideaIndices: number[];
  /** The final state's metric and the best graded metric seen, or null. */
  finalMetric: number | null;
  bestMetric: number | null;
  /** Ended with a Final Answer (rather than the step limit). */
  finalAnswer: boolean;
}

export type CollectionRecord = CollectedStep | CollectedEnd;

export interface ReadResult {
  /** Records of complete trajectories, in file order. */
  records: CollectionRecord[];
  /** Ids of the complete trajectories. */
  complete: Set<string>;
  /** Lines dropped: cut off, unparsable, or of an incomplete trajectory. */
  dropped: number;
  /** Whether the file was already clean (nothing dropped, ends with a newline or is empty). */
  clean: boolean;
}

/**
 * The recorded steps in trajectory and step order. Concurrent collection writes them in the order episodes
 * finish them, which varies from run to run; whatever reads the steps in order (SFT's shuffle and held-out
 * split, the states pool, the format probe's states) takes them through this, so a seed gives the same run.
 */
export function stepsInOrder(records: readonly CollectionRecord[]): CollectedStep[] {
  const steps = records.filter((r): r is CollectedStep => r.type === 'step');
  return steps.sort((a, b) => (a.trajectory < b.trajectory ? -1 : a.trajectory > b.trajectory ? 1 : a.step - b.step));
}

const isInt = (x: unknown, min: number): x is number => typeof x === 'number' && Number.isInteger(x) && x >= min;

/**
 * Whether a parsed line is a record the readers can use: the stages after collection read these fields of every
 * step (the pool its snapshot ids, the exports and SFT its chat and texts), and a line without them used to pass
 * here and crash there (toShareGpt read `messages` of undefined).
 */
function isRecord(r: unknown): r is CollectionRecord {
  if (typeof r !== 'object' || r === null || Array.isArray(r)) return false;
  const x = r as Record<string, unknown>;
  if (typeof x.trajectory !== 'string') return false;
  if (x.type === 'end') return isInt(x.steps, 1);
  if (x.type !== 'step' || typeof x.task !== 'string') return false;
  const chat = Array.isArray(x.messages) && x.messages.every((m) => typeof m === 'object' && m !== null && typeof (m as ChatMessage).role === 'string' && typeof (m as ChatMessage).content === 'string');
  return chat && isInt(x.step, 1) && typeof x.prompt === 'string' && typeof x.response === 'string' && typeof x.stateBefore === 'string' && typeof x.stateAfter === 'string';
}

/** Reads a steps.jsonl, keeping only complete trajectories (see the file comment). A missing file is empty. */
export function readCollection(file: string): ReadResult {
  if (!existsSync(file)) return { records: [], complete: new Set(), dropped: 0, clean: true };
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    // Node's EISDIR ("illegal operation on a directory, read") does not say which path.
    throw new Error(`cannot read the collection ${file}: ${(e as Error).message}`);
  }
  // A BOM (an editor's) made the first line unparsable, and the resume's rewrite then dropped that record.
  if (text.startsWith('\uFEFF')) text = text.slice(1);
  const lines = text.split('\n');
  const tail = lines.pop() ?? ''; // '' when the file ends with a newline
  const parsed: CollectionRecord[] = [];
  let dropped = 0;
  // A last line without its newline is kept when it is a whole record (a file edited or copied without the final
  // newline; a killed writer leaves cut JSON). It used to be dropped, and its trajectory rewritten away.
  if (tail.trim() !== '') lines.push(tail);
  for (const line of lines) {
    if (line.trim() === '') continue;
    try {
      const r: unknown = JSON.parse(line);
      if (isRecord(r)) parsed.push(r);
      else dropped++;
    } catch {
      dropped++;
    }
  }
  const complete = new Set<string>();
  for (const r of parsed) if (r.type === 'end') complete.add(r.trajectory);
  // A trajectory redone after an interruption may have stale step lines before its final run's: keep only the
  // steps written since its previous incomplete attempt, i.e. the last run of steps 1..n before its end record.
  const records: CollectionRecord[] = [];
  const pending = new Map<string, CollectedStep[]>();
  for (const r of parsed) {
    if (!complete.has(r.trajectory) || (r.type === 'end' && !pending.has(r.trajectory))) {
      dropped++;
      continue;
    }
    if (r.type === 'step') {
      const run = pending.get(r.trajectory) ?? [];
      if (r.step === 1 && run.length > 0) dropped += run.length; // an earlier attempt's steps
      pending.set(r.trajectory, r.step === 1 ? [r] : [...run, r]);
    } else {
      const run = pending.get(r.trajectory)!;
      pending.delete(r.trajectory);
      if (run.length !== r.steps || run.some((s, i) => s.step !== i + 1)) {
        complete.delete(r.trajectory);
        dropped += run.length + 1;
        continue;
      }
      records.push(...run, r);
    }
  }
  for (const run of pending.values()) dropped += run.length;
  // The trajectories kept: an end record whose steps were all dropped left its id in `complete` with no records.
  const kept = new Set(records.filter((r) => r.type === 'end').map((r) => r.trajectory));
  // Not clean without the final newline either: the next append would join its line to the last one.
  return { records, complete: kept, dropped, clean: dropped === 0 && tail === '' };
}

/** Rewrites `file` with only `records`, atomically (temporary file, fsync, rename). */
export function rewriteCollection(file: string, records: readonly CollectionRecord[]): void {
  const tmp = `${file}.tmp-${process.pid}`;
  const fd = openSync(tmp, 'w');
  try {
    for (const r of records) writeSync(fd, `${JSON.stringify(r)}\n`);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, file);
}

/** Appends whole lines to a JSONL file; each record is one write of one line. */
export class JsonlAppender {
  private readonly fd: number;
  constructor(readonly file: string) {
    this.fd = openSync(file, 'a');
  }
  append(record: CollectionRecord): void {
    writeSync(this.fd, `${JSON.stringify(record)}\n`);
  }
  close(): void {
    fsyncSync(this.fd);
    closeSync(this.fd);
  }
}
