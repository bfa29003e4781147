import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { MetricsLogger } from '../src/metrics/jsonl.js';
import { metricSeries, renderReport, trailingMean, writeReport } from '../src/report/html-report.js';
import { barChartSvg, lineChartSvg, niceTicks } from '../src/report/svg-chart.js';

const tmp = () => mkdtempSync(join(tmpdir(), 'rl-report-'));

describe('SVG line chart', () => {
  it('nice ticks cover the range with round steps', () => {
    expect(niceTicks(0, 1, 5)).toEqual([0, 0.2, 0.4, 0.6, 0.8, 1]);
    expect(niceTicks(3, 97, 5)).toEqual([0, 20, 40, 60, 80, 100]);
    expect(niceTicks(2, 2, 5)).toEqual([1.8, 1.9, 2, 2.1, 2.2]); // a constant is widened
  });

  it('maps points into the plot area, one polyline per series, with a legend', () => {
    const svg = lineChartSvg(
      [
        { name: 'house-prices', points: [[0, 0], [10, 1]] },
        { name: 'spam <b>', points: [[0, 1], [5, NaN], [10, 0]] },
      ],
      { title: 'Mean reward', width: 520, height: 280 },
    );
    const polylines = [...svg.matchAll(/<polyline[^>]*points="([^"]+)"/g)].map((m) => m[1]);
    // Plot area: x 58..506, y 28..240; x ticks 0..10, y ticks 0..1.
    expect(polylines).toEqual(['58.0,240.0 506.0,28.0', '58.0,28.0 506.0,240.0']);
    expect(svg).toContain('spam &lt;b&gt;');
    expect(svg).not.toContain('NaN');
    expect(lineChartSvg([], { title: 't' })).toContain('no data');
  });
});

describe('SVG bar chart', () => {
  it('draws grouped bars from a zero line, negative ones below it, and leaves non-finite values out', () => {
    const svg = barChartSvg(
      ['house-prices', 'spam <i>'],
      [
        { name: 'sft', values: [10, -5] },
        { name: 'sft+rl', values: [20, NaN] },
      ],
      { title: 'Gain', format: (v) => `${v}%`, height: 300 },
    );
    const bars = [...svg.matchAll(/<rect x="([\d.]+)" y="([\d.]+)" width="14" height="([\d.]+)" fill="[^"]+"><title>([^<]+)<\/title>/g)].map((m) => ({ y: +m[2], h: +m[3], title: m[4] }));
    expect(bars.map((b) => b.title)).toEqual(['house-prices, sft: 10%', 'house-prices, sft+rl: 20%', 'spam &lt;i&gt;, sft: -5%']);
    // Ticks -5..20 over a plot from y 56 to 236 (2 legend lines): 7.2 px per unit, zero at 200.
    const zero = +svg.match(/<line x1="58" x2="[\d.]+" y1="([\d.]+)" y2="[\d.]+" stroke="#444"\/>/)![1];
    expect(zero).toBeCloseTo(200, 1);
    expect(bars[0].h).toBeCloseTo(72, 1);
    expect(bars[0].y + bars[0].h).toBeCloseTo(zero, 1);
    expect(bars[1].h).toBeCloseTo(2 * bars[0].h, 1);
    expect(bars[2].y).toBeCloseTo(zero, 1);
    expect(bars[2].h).toBeCloseTo(bars[0].h / 2, 1);
    expect(barChartSvg(['a'], [{ name: 's', values: [NaN] }], { title: 't' })).toContain('no data');
  });
});

describe('HTML report', () => {
  function runWithMetrics(): string {
    const run = tmp();
    const log = new MetricsLogger(run, { tensorboard: false });
    for (let step = 1; step <= 5; step++) {
      log.log(step, { reward: 0.1 * step, kl: 0.001 * step, entropy: 2 - 0.1 * step, valueLoss: 1 / step, formatErrorRate: 0.5 / step, custom: step });
      log.log(step, { reward: 0.2 * step }, { task: 'house-prices' });
      log.log(step, { reward: 0.05 * step }, { task: 'spam-detection' });
    }
    log.close();
    return run;
  }

  it('groups metrics into charts in a fixed order, one series per task tag', () => {
    const run = runWithMetrics();
    expect(metricSeries([])).toEqual([]);
    const html = renderReport(run);
    const titles = [...html.matchAll(/<svg[^>]*><title>([^<]+)<\/title>/g)].map((m) => m[1]);
    expect(titles).toEqual(['Mean reward', 'KL to the reference policy', 'Entropy', 'Value loss', 'Format-error rate', 'custom']);
    const rewardChart = html.slice(html.indexOf('<title>Mean reward'), html.indexOf('<title>KL to'));
    expect(rewardChart.match(/<polyline/g)).toHaveLength(3);
    for (const name of ['all', 'house-prices', 'spam-detection']) expect(rewardChart).toContain(`>${name}</text>`);
    expect(html).not.toMatch(/<script|<link|src="http/); // self-contained
  });

  it('draws a trailing mean of 3 under the reward curves once there are 6 iterations, and not under the others', () => {
    expect(trailingMean([[3, 0.3], [1, 0.9], [2, 0.6], [4, 0]], 3)).toEqual([[1, 0.9], [2, 0.75], [3, 0.6], [4, 0.3]].map(([x, y]) => [x, expect.closeTo(y, 12)]));
    const rewards = [0.5, 0.4, 0.6, 0.5, 0.7, 0.8];
    const records = rewards.map((reward, i) => ({ step: i + 1, time: 0, values: { reward, rewardEditStates: reward / 2, kl: 0.01 } }));
    const series = new Map(metricSeries(records));
    const reward = series.get('reward')!;
    expect(reward.map((x) => x.name)).toEqual(['per iteration', 'mean of the last 3']);
    expect(reward[1].points.map((p) => p[1])).toEqual([0.5, 0.45, 0.5, 0.5, 0.6, 2 / 3].map((y) => expect.closeTo(y, 12)));
    expect(series.get('rewardEditStates')!.map((x) => x.name)).toEqual(['per iteration', 'mean of the last 3']);
    expect(series.get('kl')!.map((x) => x.name)).toEqual(['']);
    expect(new Map(metricSeries(records.slice(0, 5))).get('reward')!.map((x) => x.name)).toEqual(['']);
  });

  it('adds the evaluation tables of eval*.json, and works with only those', () => {
    const run = runWithMetrics();
    writeFileSync(
      join(run, 'eval.json'),
      JSON.stringify({
        rows: [
          { task: 'house-prices', agent: 'sft+rl', avg: 0.81234567, best: 0.9, gain: 12.5 },
          { task: 'spam-detection', agent: 'sft', avg: 0.7, best: 0.75, gain: null },
        ],
      }),
    );
    const out = writeReport(run);
    const html = readFileSync(out, 'utf8');
    expect(html).toContain('<th>task</th><th>agent</th><th>avg</th><th>best</th><th>gain</th>');
    expect(html).toContain('<td class="num">0.81235</td>');
    const evalOnly = tmp();
    writeFileSync(join(evalOnly, 'eval-held-out.json'), JSON.stringify([{ task: 'x', score: 1 }]));
    expect(renderReport(evalOnly)).toContain('No metrics.jsonl in this run.');
    writeFileSync(join(evalOnly, 'eval-broken.json'), '{');
    expect(renderReport(evalOnly)).toContain('Could not read eval-broken.json');
    // A resumable evaluation's bookkeeping is not a result to show.
    writeFileSync(join(evalOnly, 'eval-run.json'), JSON.stringify({ agent: 'scripted', trajectories: 1 }));
    expect(renderReport(evalOnly)).not.toContain('eval-run.json');
  });

  it("charts an mlagent evaluation's gains per task, one bar per agent, above its tables", () => {
    const run = tmp();
    const row = (task: string, agent: string, avgGain: number, bestGain: number) => ({ task, agent, avgGain, bestGain, avg: 1, best: 1 });
    writeFileSync(
      join(run, 'eval.json'),
      JSON.stringify({ format: 'mlagent-eval', version: 1, agents: [], rows: [row('house-prices', 'sft', 0.062, 0.08), row('house-prices', 'sft+rl', 0.069, 0.1), row('spam', 'sft', -0.01, 0), row('spam', 'sft+rl', 0, 0.02)], trajectories: [] }),
    );
    const html = renderReport(run);
    expect(html.indexOf('Relative gain of the average score')).toBeLessThan(html.indexOf('<table>'));
    expect(html).toContain('<title>house-prices, sft+rl: 6.9%</title>');
    expect(html).toContain('<title>spam, sft: -1.0%</title>');
    expect(html).toContain('<title>house-prices, sft+rl: 10.0%</title>');
    expect([...html.matchAll(/<rect x="[\d.]+" y="[\d.]+" width="14"/g)]).toHaveLength(8);
  });

  it('puts an SFT directory first: held-out loss and format-error rate before and after, and the loss curves', () => {
    const run = runWithMetrics();
    const sftDir = tmp();
    writeFileSync(join(sftDir, 'sft-summary.json'), JSON.stringify({ initialEvalLoss: 8.4123, evalLoss: 0.7341, steps: 10 }));
    writeFileSync(join(sftDir, 'format-probe.json'), JSON.stringify({ states: 12, before: { formatErrorRate: 1, samples: 24 }, after: { formatErrorRate: 0.0417, samples: 24 } }));
    writeFileSync(join(sftDir, 'metrics.jsonl'), [1, 2, 3].map((step) => JSON.stringify({ step, time: step, loss: 9 - step, rssGiB: 1 + step / 10, tokensPerSecond: 50, ...(step === 3 ? { evalLoss: 1 } : {}) })).join('\n') + '\n');
    const html = renderReport(run, { sftDir });
    expect(html.indexOf('<h2>Supervised fine-tuning</h2>')).toBeLessThan(html.indexOf('<h2>Training curves</h2>'));
    expect(html).toContain('<td>held-out loss (nats/token)</td><td>8.412</td><td>0.734</td>');
    expect(html).toContain('<td>format-error rate of sampled actions (24 at 12 collected states)</td><td>100.0%</td><td>4.2%</td>');
    expect(html).toContain('SFT: Training loss');
    expect(html).toContain('SFT: Held-out loss');
    // Memory is charted; other step metrics are not (the PPO section charts all of its own).
    expect(html).toContain('SFT: Trainer resident memory (GiB)');
    expect(html).not.toContain('SFT: tokensPerSecond');
    expect(renderReport(run, { sftDir: tmp() })).toContain('holds no SFT results yet');
  });

  it('says what is missing', () => {
    expect(() => renderReport(join(tmp(), 'nope'))).toThrow(/does not exist/);
    expect(() => renderReport(tmp())).toThrow(/has neither metrics\.jsonl nor an eval\*\.json/);
  });
});
