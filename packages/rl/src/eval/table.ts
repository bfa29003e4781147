// eval.json in and out, merging several agents' results, and the markdown shaped like the paper's Table 1
// (rows = tasks with their metric and direction, columns = agents, cells = avg / best).
import { readFileSync } from 'node:fs';
import { relativeGain, type EvalResult, type EvalRow } from './results.js';

/** Reads an eval.json written by `evaluate` (or a merge of them); errors name the file and what is wrong. */
export function readEvalResult(file: string): EvalResult {
  let data: unknown;
  try {
    data = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(`eval: cannot read ${file}: ${(e as Error).message}`);
  }
  const r = data as Partial<EvalResult>;
  if (typeof data !== 'object' || data === null || r.format !== 'mlagent-eval')
    throw new Error(`eval: ${file} is not an evaluation result (no "format": "mlagent-eval"; write one with mlagent eval --out DIR)`);
  if (r.version !== 1) throw new Error(`eval: ${file} has version ${JSON.stringify(r.version)}; this mlagent reads version 1`);
  for (const key of ['agents', 'rows', 'trajectories'] as const)
    if (!Array.isArray(r[key])) throw new Error(`eval: ${file}: "${key}" must be a list`);
  return restoreInfiniteGains(data as EvalResult);
}

/**
 * JSON has no Infinity: a gain over a zero baseline (±∞) was written as null. It is recomputed from the scores
 * and the row's baseline, so a table merged from files (--compare, mlagent train's) shows ±∞ rather than n/a.
 */
function restoreInfiniteGains(result: EvalResult): EvalResult {
  const isNum = (x: unknown): x is number => typeof x === 'number';
  const rowOf = new Map<string, EvalRow>();
  for (const row of result.rows) {
    if (typeof row !== 'object' || row === null || !isNum(row.baseline)) continue;
    rowOf.set(`${row.task}\u0000${row.agent}`, row);
    if (row.avgGain === null && isNum(row.avg)) row.avgGain = relativeGain(row.avg, row.baseline, row.direction);
    if (row.bestGain === null && isNum(row.best)) row.bestGain = relativeGain(row.best, row.baseline, row.direction);
  }
  for (const t of result.trajectories) {
    if (typeof t !== 'object' || t === null || t.gain !== null) continue;
    const row = rowOf.get(`${t.task}\u0000${t.agent}`);
    // No submission is no gain, by the scoring rule; a submission's gain needs its row's baseline.
    if (t.submitted === false) t.gain = 0;
    else if (row && isNum(t.score)) t.gain = relativeGain(t.score, row.baseline, row.direction);
  }
  return result;
}

/**
 * One result holding every agent of `results`, in order. An agent name already taken by an earlier result is
 * renamed "<name> (2)", "<name> (3)", ... in its rows and trajectories, so nothing is dropped.
 */
export function mergeEvalResults(results: readonly EvalResult[]): EvalResult {
  const merged: EvalResult = { format: 'mlagent-eval', version: 1, agents: [], rows: [], trajectories: [] };
  const taken = new Set<string>();
  for (const r of results) {
    const rename = new Map<string, string>();
    for (const a of r.agents) {
      let name = a.name;
      for (let k = 2; taken.has(name); k++) name = `${a.name} (${k})`;
      taken.add(name);
      rename.set(a.name, name);
      merged.agents.push({ ...a, name });
    }
    const to = (agent: string) => rename.get(agent) ?? agent;
    merged.rows.push(...r.rows.map((row) => ({ ...row, agent: to(row.agent) })));
    merged.trajectories.push(...r.trajectories.map((t) => ({ ...t, agent: to(t.agent) })));
  }
  return merged;
}

const METRIC_LABELS: Record<string, string> = { mae: 'MAE', rmse: 'RMSE', rmsle: 'RMSLE', mcrmse: 'MCRMSE', auc: 'AUC', qwk: 'QWK', pcc: 'PCC', 'map@5': 'MAP@5' };

/** "MAE ↓", "accuracy ↑". */
export function metricLabel(metric: string, direction: 'maximize' | 'minimize'): string {
  return `${METRIC_LABELS[metric] ?? metric} ${direction === 'maximize' ? '↑' : '↓'}`;
}

/** Scores as the paper prints them: 4 significant digits, whole numbers from 1000 up. */
export function formatScore(x: number): string {
  if (!Number.isFinite(x)) return String(x);
  if (Math.abs(x) >= 1000) return String(Math.round(x));
  return x.toPrecision(4);
}

export function formatPercent(x: number, signed = false): string {
  if (!Number.isFinite(x)) return x > 0 ? '+∞' : x < 0 ? '−∞' : 'n/a';
  const s = `${(x * 100).toFixed(1)}%`;
  return signed && x > 0 ? `+${s}` : s;
}

function markdownTable(header: string[], rows: string[][]): string {
  const line = (cells: string[]) => `| ${cells.map((c) => c.replace(/\|/g, '\\|')).join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n');
}

/**
 * Two markdown tables. The first is shaped like the paper's Table 1: one row per task (with its metric and
 * direction, and the baseline), one column per agent, cells "avg / best" over the trajectories, the best average
 * of a row in bold when several agents are compared. The second gives, per task and agent, the relative gains over
 * the baseline, the success rate (> 10% gain), the format-error rate of the actions and the mean steps.
 */
export function evalMarkdown(result: EvalResult): string {
  const agents = [...new Set([...result.agents.map((a) => a.name), ...result.rows.map((r) => r.agent)])];
  const tasks = [...new Set(result.rows.map((r) => r.task))];
  const cell = new Map(result.rows.map((r) => [`${r.task}\u0000${r.agent}`, r]));
  const first = (task: string) => result.rows.find((r) => r.task === task)!;

  const table1 = tasks.map((task) => {
    const info = first(task);
    const rows = agents.map((a) => cell.get(`${task}\u0000${a}`));
    const present = rows.filter((r): r is EvalRow => r !== undefined);
    const bestAvg = present.length < 2 ? undefined : present.reduce((b, r) => ((info.direction === 'maximize' ? r.avg > b.avg : r.avg < b.avg) ? r : b)).avg;
    return [
      task,
      metricLabel(info.metric, info.direction),
      formatScore(info.baseline),
      ...rows.map((r) => {
        if (!r) return '–';
        const avg = formatScore(r.avg);
        return `${r.avg === bestAvg ? `**${avg}**` : avg} / ${formatScore(r.best)}`;
      }),
    ];
  });
  const details = result.rows.map((r) => [
    r.task,
    r.agent,
    formatPercent(r.avgGain, true),
    formatPercent(r.bestGain, true),
    formatPercent(r.successRate),
    formatPercent(r.formatErrorRate),
    r.meanSteps.toFixed(1),
    `${r.submitted}/${r.trajectories}`,
  ]);
  return [
    markdownTable(['Task', 'Metric', 'Baseline', ...agents.map((a) => `${a} (avg / best)`)], table1),
    '',
    markdownTable(['Task', 'Agent', 'Gain (avg)', 'Gain (best)', 'Success (>10%)', 'Format errors', 'Mean steps', 'Submitted'], details),
    '',
  ].join('\n');
}
