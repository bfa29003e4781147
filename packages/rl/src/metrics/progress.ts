/**
 * A progress bar on stderr: done/total, rate, ETA and whatever the loop reports (loss, tokens/s...). On a terminal it
 * redraws one line; elsewhere (logs, CI) it prints a plain line at most every `logIntervalMs`.
 */

export interface ProgressOptions {
  total: number;
  label: string;
  /** Unit of the rate ("it", "step", "seq"). */
  unit?: string;
  stream?: NodeJS.WritableStream & { isTTY?: boolean };
  /** Minimum time between redraws on a terminal. */
  redrawMs?: number;
  /** Minimum time between lines when not on a terminal. */
  logIntervalMs?: number;
  now?: () => number;
}

export type ProgressInfo = Record<string, number | string>;

export class ProgressMeter {
  private done = 0;
  private info: ProgressInfo = {};
  private lastDraw = -Infinity;
  private readonly start: number;
  private readonly now: () => number;
  private readonly stream: NodeJS.WritableStream & { isTTY?: boolean };

  constructor(private readonly options: ProgressOptions) {
    // Infinity or a numeric string passed `total >= 0` and drew a bar that never fills or compares as text.
    if (typeof options.total !== 'number' || !Number.isFinite(options.total) || options.total < 0) throw new Error(`ProgressMeter: total must be ≥ 0, got ${options.total}`);
    this.now = options.now ?? Date.now;
    this.start = this.now();
    this.stream = options.stream ?? process.stderr;
  }

  /** Sets the absolute position (e.g. after resuming at step k) and merges new info. */
  update(done: number, info: ProgressInfo = {}): void {
    // NaN printed "NaN/10 NaN%" forever after, and a negative count crashed the bar's String.repeat.
    if (typeof done !== 'number' || !Number.isFinite(done) || done < 0) throw new RangeError(`ProgressMeter.update: done must be a finite number ≥ 0, got ${String(done)}`);
    this.done = done;
    Object.assign(this.info, info);
    const t = this.now();
    const tty = this.stream.isTTY === true;
    const interval = tty ? (this.options.redrawMs ?? 200) : (this.options.logIntervalMs ?? 10_000);
    if (t - this.lastDraw < interval && done < this.options.total) return;
    this.lastDraw = t;
    const line = formatProgress({ ...this.options, done, elapsedMs: t - this.start, info: this.info });
    this.stream.write(tty ? `\r\x1b[2K${line}` : `${line}\n`);
  }

  tick(n = 1, info: ProgressInfo = {}): void {
    this.update(this.done + n, info);
  }

  /** Draws the final state and ends the line. */
  finish(info: ProgressInfo = {}): void {
    Object.assign(this.info, info);
    const line = formatProgress({ ...this.options, done: this.done, elapsedMs: this.now() - this.start, info: this.info });
    this.stream.write(this.stream.isTTY === true ? `\r\x1b[2K${line}\n` : `${line}\n`);
  }
}

/** `sft [######------] 12/40 30% 1.50 step/s ETA 0:19 loss 1.234` */
export function formatProgress(p: { label: string; total: number; done: number; elapsedMs: number; unit?: string; info?: ProgressInfo; width?: number }): string {
  // Clamped at 0 too: a negative or NaN fraction made '#'.repeat throw a RangeError out of a mere progress line.
  const ratio = p.total > 0 ? p.done / p.total : 1;
  const fraction = Number.isNaN(ratio) ? 0 : Math.min(1, Math.max(0, ratio));
  const width = Math.max(0, Math.floor(p.width ?? 20));
  const filled = Math.round(fraction * width);
  const bar = '#'.repeat(filled) + '-'.repeat(width - filled);
  const seconds = p.elapsedMs / 1000;
  const rate = seconds > 0 ? p.done / seconds : 0;
  const eta = rate > 0 ? (p.total - p.done) / rate : NaN;
  const parts = [`${p.label} [${bar}] ${p.done}/${p.total} ${Math.floor(fraction * 100)}%`, `${formatNumber(rate)} ${p.unit ?? 'it'}/s`, `ETA ${formatDuration(eta)}`];
  for (const [k, v] of Object.entries(p.info ?? {})) parts.push(`${k} ${typeof v === 'number' ? formatNumber(v) : v}`);
  return parts.join(' ');
}

/** h:mm:ss or m:ss; "?" when unknown. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '?';
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}

function formatNumber(x: number): string {
  if (!Number.isFinite(x) || Number.isInteger(x)) return String(x);
  const a = Math.abs(x);
  if (a !== 0 && (a < 1e-3 || a >= 1e5)) return x.toExponential(2);
  return a >= 100 ? x.toFixed(0) : a >= 10 ? x.toFixed(1) : x.toFixed(3);
}
