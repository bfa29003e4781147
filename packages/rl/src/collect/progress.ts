// What the collection's progress bar shows besides done/total: failures and each task's mean final metric.

export interface CollectProgress {
  failed: number;
  /** Final metrics of the completed trajectories, per task. */
  metrics: Map<string, number[]>;
}

/** Progress info for the ProgressMeter: `failed N` (when any) and `<task> <mean final metric>` per task. */
export function progressInfo(p: CollectProgress): Record<string, number | string> {
  const info: Record<string, number | string> = {};
  if (p.failed > 0) info.failed = p.failed;
  for (const [task, m] of p.metrics) info[task] = m.length === 0 ? '-' : Number((m.reduce((a, b) => a + b, 0) / m.length).toPrecision(4));
  return info;
}
