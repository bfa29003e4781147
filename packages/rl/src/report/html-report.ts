import { existsSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { formatPercent } from '../eval/table.js';
import type { EvalResult } from '../eval/results.js';
import { EVAL_RUN_FILE } from '../eval/resume.js';
import { METRICS_FILE, type MetricRecord } from '../metrics/jsonl.js';
import { MEMORY_METRICS } from '../metrics/memory.js';
import { readMetricsForReport, type MetricPoints, type MetricsRead } from './metrics-reader.js';
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

/** The title of a metric's chart; hasOwn, so a metric named `constructor` is not titled by Object.prototype. */
function chartTitle(name: string): string {
  return Object.hasOwn(CHART_TITLES, name) ? CHART_TITLES[name] : name;
}

/** Eval results are a few MB at most; a bigger file is refused rather than parsed and dumped onto the page. */
const MAX_EVAL_BYTES = 64 * 1024 * 1024;
const MAX_TABLE_ROWS = 5000;
const MAX_PRE_CHARS = 200_000;
/** A run logging thousands of metric names would otherwise give a page of thousands of charts. */
const MAX_CHARTS = 200;

function checkRunDir(runDir: string): void {
  if (!existsSync(runDir)) throw new Error(`report: run directory ${runDir} does not exist`);
  if (!statSync(runDir).isDirectory()) throw new Error(`report: ${runDir} is not a directory; give the run directory`);
}

export function renderReport(runDir: string, options: ReportOptions = {}): string {
  checkRunDir(runDir);
  const metricsPath = join(runDir, METRICS_FILE);
  const metrics = existsSync(metricsPath) ? readMetricsOrNote(metricsPath) : undefined;
  // eval-run.json is a resumable evaluation's bookkeeping, not a result.
  const evalFiles = readdirSync(runDir)
    .filter((f) => /^eval.*\.json$/i.test(f) && f !== EVAL_RUN_FILE)
    .sort();
  if ((metrics === undefined || metrics.lines === 0) && evalFiles.length === 0) {
    if (metrics === undefined) throw new Error(`report: ${runDir} has neither ${METRICS_FILE} nor an eval*.json`);
    throw new Error(`report: ${metricsPath} holds no metric records${metrics.problems.length > 0 ? ` (${metrics.problems.join('; ')})` : ''}, and ${runDir} has no eval*.json`);
  }

  const title = options.title ?? `Run ${basename(runDir)}`;
  const body: string[] = [`<h1>${escapeXml(title)}</h1>`];
  if (options.sftDir !== undefined) body.push(sftSection(options.sftDir));
  if (metrics === undefined) {
    body.push(`<p class="meta">No ${METRICS_FILE} in this run.</p>`);
  } else {
    body.push(...problemNotes(METRICS_FILE, metrics.problems));
    if (metrics.lines > 0) {
      body.push(`<p class="meta">${metrics.lines} metric records, steps ${metrics.firstStep}–${metrics.lastStep}.</p>`);
      body.push('<h2>Training curves</h2><div class="charts">');
      const charts = orderSeries(metrics.series);
      for (const [name, series] of charts.slice(0, MAX_CHARTS)) body.push(`<figure>${lineChartSvg(series, { title: chartTitle(name) })}</figure>`);
      body.push('</div>');
      if (charts.length > MAX_CHARTS) body.push(`<p class="meta">${charts.length - MAX_CHARTS} more metrics not charted: ${escapeXml(charts.slice(MAX_CHARTS, MAX_CHARTS + 20).map(([n]) => n).join(', '))}${charts.length > MAX_CHARTS + 20 ? ', …' : ''}</p>`);
    }
  }
  for (const file of evalFiles) body.push(evalSection(join(runDir, file)));
  return page(title, body.join('\n'));
}

/** Writes the report next to the run (or to `out`) and returns its path. */
export function writeReport(runDir: string, out = join(runDir, 'report.html'), options: ReportOptions = {}): string {
  checkRunDir(runDir); // before --out's directory, which by default is the run directory
  const dir = dirname(out);
  // Checked first: rendering a big run takes a while, and ENOENT alone does not say which part is missing.
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new Error(`report: cannot write ${out}: ${dir} is not an existing directory`);
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
  const byMetric: MetricPoints = new Map();
  for (const r of records) {
    for (const [name, value] of Object.entries(r.values)) {
      const bySeries = byMetric.get(name) ?? new Map<string, [number, number][]>();
      byMetric.set(name, bySeries);
      const key = r.task ?? 'all';
      // push, not a copy per point: copying made a 20,000-step run take seconds and a 10^6-step one hours.
      const points = bySeries.get(key) ?? [];
      bySeries.set(key, points);
      points.push([r.step, value]);
    }
  }
  return orderSeries(byMetric);
}

/** Charts in CHART_TITLES order, then alphabetically; a trailing mean under the reward curves. */
function orderSeries(byMetric: MetricPoints): [string, Series[]][] {
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
  const summary = readJsonIfAny(join(dir, 'sft-summary.json')) as { initialEvalLoss?: unknown; evalLoss?: unknown } | null;
  if (typeof summary?.initialEvalLoss === 'number' && typeof summary.evalLoss === 'number') {
    rows.push({ measure: 'held-out loss (nats/token)', 'untrained model': summary.initialEvalLoss.toFixed(3), 'after SFT': summary.evalLoss.toFixed(3) });
  }
  const probe = readJsonIfAny(join(dir, 'format-probe.json'));
  // Checked field by field: `{}` or `5` used to throw a TypeError that took the whole page down.
  const side = (x: unknown) => (typeof x === 'object' && x !== null ? (x as Record<string, unknown>) : {});
  if (probe !== null) {
    const p = side(probe);
    const [before, after] = [side(p.before), side(p.after)];
    const rate = (x: unknown) => (typeof x === 'number' ? formatPercent(x) : 'n/a');
    const count = (x: unknown) => (typeof x === 'number' ? String(x) : '?');
    rows.push({ measure: `format-error rate of sampled actions (${count(after.samples)} at ${count(p.states)} collected states)`, 'untrained model': rate(before.formatErrorRate), 'after SFT': rate(after.formatErrorRate) });
  }
  if (rows.length > 0) parts.push(htmlTable(rows, ''));
  const metricsPath = join(dir, METRICS_FILE);
  if (existsSync(metricsPath)) {
    const metrics = readMetricsOrNote(metricsPath);
    parts.push(...problemNotes(`SFT ${METRICS_FILE}`, metrics.problems));
    parts.push('<div class="charts">');
    for (const [name, series] of orderSeries(metrics.series).filter(([n]) => n === 'loss' || n === 'evalLoss' || (MEMORY_METRICS as readonly string[]).includes(n))) {
      parts.push(`<figure>${lineChartSvg(series, { title: `SFT: ${chartTitle(name)}` })}</figure>`);
    }
    parts.push('</div>');
  }
  if (parts.length === 1) parts.push(`<p class="meta">${escapeXml(dir)} holds no SFT results yet.</p>`);
  return parts.join('\n');
}

/** A metrics file's records, or none and the reason (a directory in its place, no permission) as a problem. */
function readMetricsOrNote(path: string): MetricsRead {
  try {
    return readMetricsForReport(path);
  } catch (e) {
    return { series: new Map(), lines: 0, firstStep: NaN, lastStep: NaN, problems: [`could not be read: ${(e as Error).message}`] };
  }
}

function problemNotes(file: string, problems: string[]): string[] {
  return problems.map((p) => `<p class="error">${escapeXml(`${file}: ${p}`)}</p>`);
}

function readJsonIfAny(path: string): unknown {
  if (!existsSync(path)) return null;
  try {
    return readJsonFile(path);
  } catch {
    return null;
  }
}

/** JSON.parse of a file, less a leading BOM (which JSON.parse rejects), refusing files no result should reach. */
export function readJsonFile(path: string, maxBytes = MAX_EVAL_BYTES): unknown {
  const stat = statSync(path);
  if (!stat.isFile()) throw new Error(`${path} is not a file`);
  if (stat.size > maxBytes) throw new Error(`it is ${(stat.size / 2 ** 20).toFixed(0)} MiB, more than the ${maxBytes / 2 ** 20} MiB a result file may have`);
  return JSON.parse(readFileSync(path, 'utf8').replace(/^\uFEFF/, ''));
}

function evalSection(path: string): string {
  const name = basename(path);
  let data: unknown;
  try {
    data = readJsonFile(path);
  } catch (e) {
    return `<h2>${escapeXml(name)}</h2><p class="error">Could not read ${escapeXml(name)}: ${escapeXml((e as Error).message)}</p>`;
  }
  const parts = [`<h2>Evaluation: ${escapeXml(name)}</h2>`];
  const gains = gainCharts(data);
  if (gains) parts.push(gains);
  const tables = findTables(data);
  if (tables.length === 0) {
    const json = JSON.stringify(data, null, 2) ?? String(data);
    parts.push(`<pre>${escapeXml(json.length > MAX_PRE_CHARS ? `${json.slice(0, MAX_PRE_CHARS)}\n… (${json.length - MAX_PRE_CHARS} more characters)` : json)}</pre>`);
  }
  for (const [caption, rows] of tables) parts.push(htmlTable(rows, caption));
  return parts.join('\n');
}

/**
 * An mlagent eval result's Table 1 as two grouped bar charts, the average and the best score's relative gain
 * over each task's baseline, one bar per agent; undefined for other JSON.
 */
function gainCharts(data: unknown): string | undefined {
  // `null` is valid JSON: reading .format off it threw.
  if (typeof data !== 'object' || data === null) return undefined;
  const result = data as Partial<EvalResult>;
  if (result.format !== 'mlagent-eval' || !Array.isArray(result.rows)) return undefined;
  // A hand-edited or foreign file may hold rows that are not objects, or tasks and agents that are not strings.
  const rows = (result.rows as unknown[])
    .filter((r): r is Record<string, unknown> => typeof r === 'object' && r !== null)
    .map((r) => ({ task: String(r.task), agent: String(r.agent), avgGain: r.avgGain, bestGain: r.bestGain }));
  if (rows.length === 0) return undefined;
  const tasks = [...new Set(rows.map((r) => r.task))];
  const agents = [...new Set(rows.map((r) => r.agent))];
  const byKey = new Map(rows.map((r) => [JSON.stringify([r.task, r.agent]), r]));
  const chart = (key: 'avgGain' | 'bestGain', title: string) =>
    barChartSvg(
      tasks,
      agents.map((agent) => ({
        name: agent,
        values: tasks.map((task) => {
          const v = byKey.get(JSON.stringify([task, agent]))?.[key];
          return typeof v === 'number' ? 100 * v : NaN;
        }),
      })),
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
  const shown = rows.slice(0, MAX_TABLE_ROWS);
  return [
    '<table>',
    caption ? `<caption>${escapeXml(caption)}</caption>` : '',
    `<thead><tr>${columns.map((c) => `<th>${escapeXml(c)}</th>`).join('')}</tr></thead>`,
    '<tbody>',
    ...shown.map((r) => `<tr>${columns.map((c) => cell(Object.hasOwn(r, c) ? r[c] : undefined)).join('')}</tr>`),
    '</tbody></table>',
    rows.length > shown.length ? `<p class="meta">${rows.length - shown.length} more rows not shown.</p>` : '',
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
