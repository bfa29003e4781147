import { appendFileSync, closeSync, existsSync, fsyncSync, openSync, readFileSync, truncateSync } from 'node:fs';
import { join } from 'node:path';
import { makeDirs } from '@mlagent/policy';
import { EventFileWriter } from './tensorboard.js';
import { writeAll } from './write-all.js';
import { writeFileAtomic } from '../checkpoint/atomic.js';

/** One line of metrics.jsonl: the step, the wall time in seconds, an optional task tag, and named scalars. */
export interface MetricRecord {
  step: number;
  time: number;
  task?: string;
  values: Record<string, number>;
}

export const METRICS_FILE = 'metrics.jsonl';

/**
 * Logs scalars to `<runDir>/metrics.jsonl` (one JSON object per line: {step, time, task?, ...scalars}) and, unless
 * disabled, to a TensorBoard event file in `<runDir>/tb` (tag `name` or `name/task`). Lines are appended and written
 * through at once, so a kill loses at most the line being written; that torn line is cut off when the log reopens.
 */
export class MetricsLogger {
  readonly path: string;
  private fd: number;
  private tb: EventFileWriter | null;
  private closed = false;

  /**
   * `restartAt`: the first step a resumed run logs (its checkpoint's + 1), after truncateMetricsAfter; the TensorBoard
   * log then marks a restart there, so TensorBoard drops the killed run's points from that step on, as this file does.
   */
  constructor(runDir: string, options: { tensorboard?: boolean; restartAt?: number } = {}) {
    makeDirs(runDir);
    this.path = join(runDir, METRICS_FILE);
    dropTornLastLine(this.path);
    this.fd = openSync(this.path, 'a');
    this.tb = options.tensorboard === false ? null : new EventFileWriter(join(runDir, 'tb'), Date.now(), options.restartAt);
  }

  log(step: number, values: Record<string, number>, options: { task?: string; time?: number } = {}): void {
    if (!Number.isInteger(step) || step < 0) throw new Error(`MetricsLogger.log: step must be a non-negative integer, got ${step}`);
    // A closed logger's fd may already belong to another file; writing through it would fail cryptically (EBADF)
    // or, worse, land in that file.
    if (this.closed) throw new Error(`MetricsLogger.log: the logger of ${this.path} is closed`);
    const time = options.time ?? Date.now() / 1000;
    // A NaN time was written as null and read back as 0 (1970), skewing every wall-clock plot.
    if (typeof time !== 'number' || !Number.isFinite(time)) throw new RangeError(`MetricsLogger.log: time must be a finite number of seconds, got ${String(time)}`);
    const line: Record<string, unknown> = { step, time };
    if (options.task !== undefined) line.task = options.task;
    for (const [name, v] of Object.entries(values)) {
      if (name === 'step' || name === 'time' || name === 'task') throw new Error(`MetricsLogger.log: '${name}' is reserved and cannot name a metric`);
      // JSON.parse makes '__proto__' an own key, but readers that copy records into objects would drop it.
      if (name === '__proto__') throw new Error("MetricsLogger.log: '__proto__' cannot name a metric");
      line[name] = Number.isFinite(v) ? v : null; // JSON has no NaN; null reads back as "no value"
    }
    writeAll(this.fd, JSON.stringify(line) + '\n');
    if (this.tb) {
      const suffix = options.task !== undefined ? `/${options.task}` : '';
      this.tb.addScalars(step, Object.fromEntries(Object.entries(values).map(([k, v]) => [k + suffix, v])), time);
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    fsyncSync(this.fd);
    closeSync(this.fd);
    this.tb?.close();
  }
}

/**
 * Reads metrics.jsonl. A torn last line (a kill mid-write) is ignored; any other bad line is an error naming it.
 * Lines of the same step and task are merged into one record; where both hold a metric (a resumed run redoing a
 * step), the later line wins.
 */
export function readMetrics(path: string): MetricRecord[] {
  // A BOM (an editor's) failed line 1 as "not JSON"; the report's reader accepts it.
  const text = readFileSync(path, 'utf8').replace(/^\uFEFF/, '');
  const lines = text.split('\n');
  const torn = !text.endsWith('\n');
  const byKey = new Map<string, MetricRecord>();
  lines.forEach((line, i) => {
    if (line.trim() === '') return;
    let obj: unknown;
    try {
      obj = JSON.parse(line);
    } catch (e) {
      if (torn && i === lines.length - 1) return;
      throw new Error(`${path}:${i + 1}: not JSON (${(e as Error).message})`);
    }
    const rec = toRecord(obj, `${path}:${i + 1}`);
    const key = `${rec.step}\u0000${rec.task ?? ''}`;
    const previous = byKey.get(key);
    byKey.set(key, previous ? { ...rec, values: { ...previous.values, ...rec.values } } : rec);
  });
  return [...byKey.values()].sort((a, b) => a.step - b.step);
}

/** On resume from a checkpoint at `step`: drops the lines of later steps, which the resumed run will log again. */
export function truncateMetricsAfter(path: string, step: number): void {
  // `r.step <= NaN` is false for every line: a bad step used to empty the whole metrics history.
  if (!Number.isInteger(step) || step < 0) throw new RangeError(`truncateMetricsAfter: step must be a non-negative integer, got ${step}`);
  filterJsonl<{ step: number }>(path, (r) => r.step <= step);
}

/** Rewrites a JSONL file with the lines `keep` accepts, dropping torn ones, through a temp file and a rename. */
export function filterJsonl<T>(path: string, keep: (record: T) => boolean): void {
  if (!existsSync(path)) return;
  // Without the BOM strip, a first line after a BOM was taken for a torn one and deleted.
  const kept = readFileSync(path, 'utf8')
    .replace(/^\uFEFF/, '')
    .split('\n')
    .filter((line) => {
      if (line.trim() === '') return false;
      try {
        return keep(JSON.parse(line) as T);
      } catch {
        return false; // a torn line
      }
    });
  writeFileAtomic(path, kept.map((l) => l + '\n').join(''));
}

function toRecord(obj: unknown, where: string): MetricRecord {
  if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) throw new Error(`${where}: a metrics line must be a JSON object`);
  const { step, time, task, ...rest } = obj as Record<string, unknown>;
  if (typeof step !== 'number' || !Number.isInteger(step)) throw new Error(`${where}: 'step' must be an integer`);
  const values: Record<string, number> = {};
  for (const [k, v] of Object.entries(rest)) {
    if (typeof v === 'number') values[k] = v;
    else if (v !== null) throw new Error(`${where}: metric '${k}' must be a number or null, got ${JSON.stringify(v)}`);
  }
  return { step, time: typeof time === 'number' ? time : 0, ...(typeof task === 'string' ? { task } : {}), values };
}

function dropTornLastLine(path: string): void {
  if (!existsSync(path)) return;
  const bytes = readFileSync(path);
  if (bytes.length === 0 || bytes[bytes.length - 1] === 0x0a) return;
  const start = bytes.lastIndexOf(0x0a) + 1;
  // A whole record that only lacks its newline (a file edited or copied) is kept and ended; cutting it lost a step.
  if (isJsonObject(bytes.subarray(start).toString('utf8'))) appendFileSync(path, '\n');
  else truncateSync(path, start);
}

function isJsonObject(text: string): boolean {
  try {
    const x: unknown = JSON.parse(text.replace(/^\uFEFF/, ''));
    return typeof x === 'object' && x !== null && !Array.isArray(x);
  } catch {
    return false;
  }
}
