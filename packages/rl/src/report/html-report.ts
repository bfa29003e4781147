import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { formatPercent } from '../eval/table.js';
import type { EvalResult } from '../eval/results.js';
import { EVAL_RUN_FILE } from '../eval/resume.js';
import { METRICS_FILE, readMetrics, type MetricRecord } from '../metrics/jsonl.js';
import { MEMORY_METRICS } from '../metrics/memory.js';
import { barChartSvg, escapeXml, lineChartSvg, type Series } from './svg-chart.js';

/**
 * `mlagent report RUN_DIR`: one self-contained HTML page (inline SVG, no scripts, no external files) with a
 * training curve per metric of `metrics.jsonl` (one line per task when the records are tagged with one) and the
 * evaluation tables of any `eval*.json` in the run directory.
 */

/** Charts drawn first, in this order, with these titles; other metrics follow alphabetically. */
export const CHART_TITLES: Record<string, string> = {
  reward: 'Mean reward',
  rewardEditStates: 'Mean reward at states where the expert edited',
  rewardOtherStates: 'Mean reward at the other states',
  valReward: 'Greedy reward at the validation states',
  valFormatErrorRate: 'Format-error rate at the validation states',
  kl: 'KL to the reference policy',
  entropy: 'Entropy',
  valueLoss: 'Value loss',
  formatErrorRate: 'Format-error rate',
  loss: 'Training loss',
  evalLoss: 'Held-out loss',
  policyLoss: 'Policy loss',
  ptxLoss: 'PPO-ptx: SFT loss on the expert steps',
  clipFrac: 'Clip fraction',
  approxKl: 'Approximate KL to π_old',
  oldLogpGap: "π_old: mean |sampler's − actor's log-prob| per token",
  oldLogpGapMax: "π_old: largest |sampler's − actor's log-prob|",
  samplerWeight: 'Truncated importance weight π_old / π_sampler (mean)',
  durationWeightMax: 'Duration weighting: largest sample weight',
  explainedVariance: 'Explained variance',
  lr: 'Learning rate',
  rssGiB: 'Trainer resident memory (GiB)',
  gpuPeakGiB: 'GPU memory: peak in use so far (GiB)',
  gpuCachedGiB: 'GPU memory: released buffers kept for reuse (GiB)',
};

export interface ReportOptions {
  title?: string;
  /** An SFT output directory (`mlagent sft` / `mlagent train`'s sft/): its loss curves, held-out loss and format probe go first. */
  sftDir?: string;
}

export function renderReport(runDir: string, options: ReportOptions = {}): string {
  if (!existsSync(runDir)) throw new Error(`report: run directory ${runDir} does not exist`);
  const metricsPath = join(runDir, METRICS_FILE);
  const records = existsSync(metricsPath) ? readMetrics(metricsPath) : [];
  // eval-run.json is a resumable evaluation's bookkeeping, not a result.
  const evalFiles = readdirSync(runDir)
    .filter((f) => /^eval.*\.json$/i.test(f) && f !== EVAL_RUN_FILE)
    .sort();
  if (records.length === 0 && evalFiles.length === 0) throw new Error(`report: ${runDir} has neither ${METRICS_FILE} nor an eval*.json`);

  const title = options.title ?? `Run ${basename(runDir)}`;
  const body: string[] = [`<h1>${escapeXml(title)}</h1>`];
  if (options.sftDir !== undefined) body.push(sftSection(options.sftDir));
  if (records.length > 0) {
    const last = records[records.length - 1];
    body.push(`<p class="meta">${records.length} metric records, steps ${records[0].step}–${last.step}.</p>`);
    body.push('<h2>Training curves</h2><div class="charts">');
    for (const [name, series] of metricSeries(records)) body.push(`<figure>${lineChartSvg(series, { title: CHART_TITLES[name] ?? name })}</figure>`);
    body.push('</div>');
  } else {
    body.push(`<p class="meta">No ${METRICS_FILE} in this run.</p>`);
  }
  for (const file of evalFiles) body.push(evalSection(join(runDir, file)));
  return page(title, body.join('\n'));
}

/** Writes the report next to the run (or to `out`) and returns its path. */
export function writeReport(runDir: string, out = join(runDir, 'report.html'), options: ReportOptions = {}): string {
  writeFileSync(out, renderReport(runDir, options));
  return out;
}

/** Reward curves that also get a trailing mean (when there are at least 2 × SMOOTHING_WINDOW points). */
const SMOOTHED = new Set(['reward', 'rewardEditStates', 'rewardOtherStates']);
const SMOOTHING_WINDOW = 3;

/** Point i's y is the mean of the y of points i − window + 1 .. i (fewer at the start), in step order. */
export function trailingMean(points: readonly [number, number][], window: number): [number, number][] {
  const sorted = [...points].sort((a, b) => a[0] - b[0]);
  return sorted.map(([x], i) => {
    const part = sorted.slice(Math.max(0, i - window + 1), i + 1);
    return [x, part.reduce((t, p) => t + p[1], 0) / part.length];
  });
}

/** Per metric, one series per task tag ('all' for untagged records), metrics in chart order. */
export function metricSeries(records: MetricRecord[]): [string, Series[]][] {
  const byMetric = new Map<string, Map<string, [number, number][]>>();
  for (const r of records) {
    for (const [name, value] of Object.entries(r.values)) {
      const bySeries = byMetric.get(name) ?? new Map<string, [number, number][]>();
      byMetric.set(name, bySeries);
      const key = r.task ?? 'all';
      bySeries.set(key, [...(bySeries.get(key) ?? []), [r.step, value]]);
    }
  }
  const priority = Object.keys(CHART_TITLES);
  const rank = (name: string) => (priority.includes(name) ? priority.indexOf(name) : priority.length);
  return [...byMetric.keys()]
    .sort((a, b) => rank(a) - rank(b) || a.localeCompare(b))
    .map((name) => {
      const series = [...byMetric.get(name)!].map(([task, points]) => ({ name: task, points }));
      const all = series.find((x) => x.name === 'all');
      if (all && SMOOTHED.has(name) && all.points.length >= 2 * SMOOTHING_WINDOW) {
        // One iteration's mean reward moves with the states it drew; a trailing mean shows the trend through that.
        all.name = 'per iteration';
        series.splice(series.indexOf(all) + 1, 0, { name: `mean of the last ${SMOOTHING_WINDOW}`, points: trailingMean(all.points, SMOOTHING_WINDOW) });
      }
      // A single untagged series needs no legend.
      if (series.length === 1 && series[0].name === 'all') series[0].name = '';
      return [name, series];
    });
}

/** An eval JSON as tables: `{rows: [...]}`, a list of row objects, or an object of such lists; anything else as JSON. */
/** SFT: the loss curves, held-out loss before and after, and the format-error rate of sampled actions. */
function sftSection(dir: string): string {
  const parts = ['<h2>Supervised fine-tuning</h2>'];
  const rows: Record<string, unknown>[] = [];
  const summary = readJsonIfAny(join(dir, 'sft-summary.json')) as { initialEvalLoss?: number | null; evalLoss?: number | null; steps?: number } | null;
  if (summary && typeof summary.initialEvalLoss === 'number' && typeof summary.evalLoss === 'number') {
    rows.push({ measure: 'held-out loss (nats/token)', 'untrained model': summary.initialEvalLoss.toFixed(3), 'after SFT': summary.evalLoss.toFixed(3) });
  }
  const probe = readJsonIfAny(join(dir, 'format-probe.json')) as { states: number; before: { formatErrorRate: number; samples: number }; after: { formatErrorRate: number; samples: number } } | null;
  if (probe) {
    rows.push({ measure: `format-error rate of sampled actions (${probe.after.samples} at ${probe.states} collected states)`, 'untrained model': formatPercent(probe.before.formatErrorRate), 'after SFT': formatPercent(probe.after.formatErrorRate) });
  }
  if (rows.length > 0) parts.push(htmlTable(rows, ''));
  const metricsPath = join(dir, METRICS_FILE);
  if (existsSync(metricsPath)) {
    parts.push('<div class="charts">');
    for (const [name, series] of metricSeries(readMetrics(metricsPath)).filter(([n]) => n === 'loss' || n === 'evalLoss' || (MEMORY_METRICS as readonly string[]).includes(n))) {
      parts.push(`<figure>${lineChartSvg(series, { title: `SFT: ${CHART_TITLES[name] ?? name}` })}</figure>`);
    }
    parts.push('</div>');
  }
  if (parts.length === 1) parts.push(`<p class="meta">${escapeXml(dir)} holds no SFT results yet.</p>`);
  return parts.join('\n');
}

function readJsonIfAny(path: string): unknown {
  if (!existsSync(path)) return null;
  try {
    return JSON.parse(readFileSync(path, 'utf8'));
  } catch {
    return null;
  }
}

function evalSection(path: string): string {
  const name = basename(path);
  let data: unknown;
  try {
    data = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    return `<h2>${escapeXml(name)}</h2><p class="error">Could not read ${escapeXml(name)}: ${escapeXml((e as Error).message)}</p>`;
  }
  const parts = [`<h2>Evaluation: ${escapeXml(name)}</h2>`];
  const gains = gainCharts(data);
  if (gains) parts.push(gains);
  const tables = findTables(data);
  if (tables.length === 0) parts.push(`<pre>${escapeXml(JSON.stringify(data, null, 2))}</pre>`);
  for (const [caption, rows] of tables) parts.push(htmlTable(rows, caption));
  return parts.join('\n');
}

/**
 * An mlagent eval result's Table 1 as two grouped bar charts, the average and the best score's relative gain
 * over each task's baseline, one bar per agent; undefined for other JSON.
 */
function gainCharts(data: unknown): string | undefined {
  const result = data as Partial<EvalResult>;
  if (result.format !== 'mlagent-eval' || !Array.isArray(result.rows) || result.rows.length === 0) return undefined;
  const rows = result.rows;
  const tasks = [...new Set(rows.map((r) => r.task))];
  const agents = [...new Set(rows.map((r) => r.agent))];
  const chart = (key: 'avgGain' | 'bestGain', title: string) =>
    barChartSvg(
      tasks,
      agents.map((agent) => ({ name: agent, values: tasks.map((task) => 100 * (rows.find((r) => r.task === task && r.agent === agent)?.[key] ?? NaN)) })),
      { title, yLabel: 'gain over the baseline (%)', format: (v) => `${v.toFixed(1)}%` },
    );
  return `<div class="charts">${chart('avgGain', 'Relative gain of the average score')}${chart('bestGain', 'Relative gain of the best score')}</div>`;
}

function findTables(data: unknown, caption = ''): [string, Record<string, unknown>[]][] {
  if (isRowList(data)) return [[caption, data]];
  if (typeof data !== 'object' || data === null) return [];
  return Object.entries(data).flatMap(([key, value]) => (isRowList(value) ? [[key === 'rows' ? caption : key, value] as [string, Record<string, unknown>[]]] : []));
}

function isRowList(x: unknown): x is Record<string, unknown>[] {
  return Array.isArray(x) && x.length > 0 && x.every((r) => typeof r === 'object' && r !== null && !Array.isArray(r));
}

function htmlTable(rows: Record<string, unknown>[], caption: string): string {
  const columns = [...new Set(rows.flatMap((r) => Object.keys(r)))];
  const cell = (v: unknown) => {
    if (typeof v === 'number') return `<td class="num">${Number.isInteger(v) ? v : Number(v.toPrecision(5))}</td>`;
    if (v === null || v === undefined) return '<td></td>';
    return `<td>${escapeXml(typeof v === 'string' ? v : JSON.stringify(v))}</td>`;
  };
  return [
    '<table>',
    caption ? `<caption>${escapeXml(caption)}</caption>` : '',
    `<thead><tr>${columns.map((c) => `<th>${escapeXml(c)}</th>`).join('')}</tr></thead>`,
    '<tbody>',
    ...rows.map((r) => `<tr>${columns.map((c) => cell(r[c])).join('')}</tr>`),
    '</tbody></table>',
  ].join('\n');
}

function page(title: string, body: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${escapeXml(title)}</title>
<style>
body { font-family: sans-serif; margin: 2em; color: #222; }
.charts { display: flex; flex-wrap: wrap; gap: 12px; }
figure { margin: 0; border: 1px solid #ddd; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 4px 8px; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
caption { font-weight: bold; text-align: left; padding: 4px 0; }
.meta { color: #666; } .error { color: #b00; }
</style></head>
<body>
${body}
</body></html>
`;
}
