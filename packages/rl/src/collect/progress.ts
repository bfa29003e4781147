// A one-line progress bar on stderr: trajectories done / total and each task's mean final metric.

export interface ProgressState {
  done: number;
  total: number;
  failed: number;
  /** Final metrics of the completed trajectories, per task. */
  metrics: Map<string, number[]>;
}

export function progressLine(s: ProgressState, width = 24): string {
  const frac = s.total === 0 ? 1 : s.done / s.total;
  const fill = Math.round(frac * width);
  const means = [...s.metrics]
    .map(([task, m]) => (m.length === 0 ? `${task} -` : `${task} ${(m.reduce((a, b) => a + b, 0) / m.length).toPrecision(4)}`))
    .join(', ');
  const failed = s.failed > 0 ? `, ${s.failed} failed` : '';
  return `[${'#'.repeat(fill)}${'.'.repeat(width - fill)}] ${s.done}/${s.total} trajectories${failed}${means ? ` | mean metric: ${means}` : ''}`;
}

/** Redraws in place on a terminal; prints a line per update otherwise (logs, CI). */
export class ProgressBar {
  private readonly tty: boolean;
  constructor(
    private readonly stream: NodeJS.WriteStream = process.stderr,
    private readonly enabled = true,
  ) {
    this.tty = Boolean(stream.isTTY);
  }
  update(s: ProgressState): void {
    if (!this.enabled) return;
    const line = progressLine(s);
    this.stream.write(this.tty ? `\r\x1b[2K${line}` : `${line}\n`);
  }
  finish(): void {
    if (this.enabled && this.tty) this.stream.write('\n');
  }
}
