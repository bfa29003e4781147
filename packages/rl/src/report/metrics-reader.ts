import { closeSync, openSync, readSync, statSync } from 'node:fs';
import { StringDecoder } from 'node:string_decoder';
import { keepExtremes } from './svg-chart.js';

/**
 * metrics.jsonl as the report reads it. Unlike `readMetrics`, which a resuming trainer relies on to refuse a
 * corrupt log, the report shows what it can of a run it may not have produced: it streams the file (a run of
 * hundreds of MB must not be read into one string), skips bad lines and says which, and keeps points compact.
 */

/** metric → task tag ('all' when untagged) → points in step order, one per step (a later line wins). */
export type MetricPoints = Map<string, Map<string, [number, number][]>>;

export interface MetricsRead {
  series: MetricPoints;
  /** Lines that held a metrics record. */
  lines: number;
  firstStep: number;
  lastStep: number;
  /** What was left out and why, for the page. */
  problems: string[];
}

export interface ReadOptions {
  /** Stop reading once this many points are held (memory stays bounded); the page says so. */
  maxPoints?: number;
  /** Points kept per series before the chart thins them further (extremes are kept). */
  maxSeriesPoints?: number;
}

const MAX_LINE_CHARS = 1 << 20;
const DETAILS_SHOWN = 5;

export function readMetricsForReport(path: string, options: ReadOptions = {}): MetricsRead {
  const maxPoints = options.maxPoints ?? 10_000_000;
  const maxSeriesPoints = options.maxSeriesPoints ?? 4000;
  const stat = statSync(path);
  if (!stat.isFile()) throw new Error(`${path} is not a file`);

  // Separate x and y arrays of plain numbers: V8 stores them as packed doubles, 16 bytes a point.
  const raw = new Map<string, Map<string, { xs: number[]; ys: number[] }>>();
  const details: string[] = [];
  let badLines = 0;
  let badValues = 0;
  let points = 0;
  let lines = 0;
  let firstStep = Infinity;
  let lastStep = -Infinity;
  const problems: string[] = [];
  const bad = (message: string) => {
    badLines++;
    if (details.length < DETAILS_SHOWN) details.push(message);
  };

  const handle = (line: string, n: number, unterminated: boolean) => {
    if (line.trim() === '') return;
    let obj: unknown;
    try {
      obj = JSON.parse(line);
    } catch (e) {
      if (unterminated) problems.push(`line ${n}, the last, is cut off (the run was probably stopped while writing it) and is left out`);
      else bad(`line ${n} is not JSON (${(e as Error).message.slice(0, 120)})`);
      return;
    }
    if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) return bad(`line ${n} is not a JSON object`);
    const { step, task, time: _time, ...rest } = obj as Record<string, unknown>;
    if (typeof step !== 'number' || !Number.isInteger(step)) return bad(`line ${n} has no integer 'step'`);
    lines++;
    firstStep = Math.min(firstStep, step);
    lastStep = Math.max(lastStep, step);
    const tag = typeof task === 'string' ? task : 'all';
    for (const [name, v] of Object.entries(rest)) {
      if (v === null) continue;
      if (typeof v !== 'number') {
        badValues++;
        if (details.length < DETAILS_SHOWN) details.push(`line ${n}: metric '${name}' is ${JSON.stringify(v).slice(0, 60)}, not a number`);
        continue;
      }
      const byTask = raw.get(name) ?? new Map<string, { xs: number[]; ys: number[] }>();
      raw.set(name, byTask);
      const s = byTask.get(tag) ?? { xs: [], ys: [] };
      byTask.set(tag, s);
      s.xs.push(step);
      s.ys.push(v);
      points++;
    }
  };

  const fd = openSync(path, 'r');
  try {
    const buf = Buffer.alloc(1 << 20);
    const decoder = new StringDecoder('utf8');
    let pending = '';
    let overlong = false;
    let n = 0;
    let first = true;
    for (;;) {
      const got = readSync(fd, buf, 0, buf.length, null);
      let text = got > 0 ? decoder.write(buf.subarray(0, got)) : decoder.end();
      if (first && text.length > 0) {
        if (text.charCodeAt(0) === 0xfeff) text = text.slice(1); // a BOM some editors write
        first = false;
      }
      let start = 0;
      for (let nl = text.indexOf('\n'); nl !== -1 && points < maxPoints; nl = text.indexOf('\n', start)) {
        n++;
        if (overlong || pending.length + nl - start > MAX_LINE_CHARS) bad(`line ${n} is longer than ${MAX_LINE_CHARS} characters`);
        else handle(pending + text.slice(start, nl), n, false);
        pending = '';
        overlong = false;
        start = nl + 1;
      }
      if (points >= maxPoints) {
        problems.push(`reading stopped at line ${n}, after ${maxPoints} points; any later lines are not shown`);
        break;
      }
      if (!overlong) {
        pending += text.slice(start);
        // One line should be a few KB; holding a newline-free file as one string would exhaust memory.
        if (pending.length > MAX_LINE_CHARS) [pending, overlong] = ['', true];
      }
      if (got === 0) {
        if (overlong) bad(`line ${n + 1} is longer than ${MAX_LINE_CHARS} characters`);
        else if (pending !== '') handle(pending, n + 1, true);
        break;
      }
    }
  } finally {
    closeSync(fd);
  }
  if (badLines > 0) problems.push(`${badLines} line${badLines === 1 ? '' : 's'} left out`);
  if (badValues > 0) problems.push(`${badValues} value${badValues === 1 ? '' : 's'} that ${badValues === 1 ? 'is' : 'are'} not a number left out`);
  if (details.length > 0) problems.push(`${details.join('; ')}${badLines + badValues > details.length ? '; …' : ''}`);

  const series: MetricPoints = new Map();
  for (const [name, byTask] of raw) {
    const out = new Map<string, [number, number][]>();
    for (const [tag, { xs, ys }] of byTask) out.set(tag, thin(lastPerStep(xs, ys), maxSeriesPoints));
    series.set(name, out);
  }
  return { series, lines, firstStep, lastStep, problems };
}

/** Points in step order; of several at one step (a resumed run redoing it), the one written last. */
function lastPerStep(xs: number[], ys: number[]): [number, number][] {
  const order = xs.map((_, i) => i).sort((a, b) => xs[a] - xs[b] || a - b);
  const out: [number, number][] = [];
  for (let k = 0; k < order.length; k++) {
    const i = order[k];
    if (k + 1 < order.length && xs[order[k + 1]] === xs[i]) continue;
    out.push([xs[i], ys[i]]);
  }
  return out;
}

/** At most about `max` points: per run of consecutive points, its first, lowest, highest and last. */
function thin(points: [number, number][], max: number): [number, number][] {
  if (points.length <= max) return points;
  const per = Math.ceil(points.length / Math.floor(max / 4));
  const out: [number, number][] = [];
  for (let s = 0; s < points.length; s += per) {
    out.push(...keepExtremes(points.slice(s, s + per)));
  }
  return out;
}
