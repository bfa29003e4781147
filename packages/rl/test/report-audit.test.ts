import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it, vi } from 'vitest';
import { metricSeries, readJsonFile, renderReport, writeReport } from '../src/report/html-report.js';
import { readMetricsForReport } from '../src/report/metrics-reader.js';
import { barChartSvg, lineChartSvg, niceTicks } from '../src/report/svg-chart.js';

/** Hostile input: run directories and eval files may come from someone else, or hold model and task text. */

const tmp = () => mkdtempSync(join(tmpdir(), 'rl-report-audit-'));
const XSS = '<script>alert(1)</script>"\'&';
const lines = (...objs: unknown[]) => objs.map((o) => (typeof o === 'string' ? o : JSON.stringify(o))).join('\n') + '\n';
const svgNumbers = (svg: string) => [...svg.matchAll(/(?:x|y|x1|x2|y1|y2|cx|cy|width|height|points)="([^"]*)"/g)].map((m) => m[1]).join(' ');

function run(files: Record<string, string>): string {
  const dir = tmp();
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  return dir;
}

describe('report: hostile strings', () => {
  it('escapes task tags, metric names, titles, eval keys, values and captions everywhere', () => {
    const dir = run({
      'metrics.jsonl': lines({ step: 1, task: XSS, reward: 1, [XSS]: 2 }, { step: 2, task: XSS, reward: 2, [XSS]: 3 }),
      'eval.json': JSON.stringify({ format: 'mlagent-eval', rows: [{ task: XSS, agent: XSS, avgGain: 0.1, bestGain: 0.2, [XSS]: XSS }], [XSS]: [{ [XSS]: XSS }] }),
    });
    const html = renderReport(dir, { title: XSS });
    expect(html).not.toContain('<script');
    expect(html).not.toMatch(/"'&(?!amp;|lt;|gt;|quot;|#39;)/);
    expect(html).toContain('&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#39;&amp;');
  });

  it('survives metric names and table columns that are Object.prototype members', () => {
    // CHART_TITLES['constructor'] and row['constructor'] used to be Object's own function: a TypeError, no page.
    const dir = run({
      'metrics.jsonl': '{"step":1,"constructor":1,"toString":2,"__proto__":3}\n',
      'eval.json': JSON.stringify([{ task: 'a' }, { task: 'b', constructor: 'x', hasOwnProperty: 1 }]),
    });
    const html = renderReport(dir);
    expect([...html.matchAll(/<svg[^>]*><title>([^<]+)<\/title>/g)].map((m) => m[1]).sort()).toEqual(['__proto__', 'constructor', 'toString']);
    expect(html).toContain('<tr><td>a</td><td></td><td></td></tr>');
  });

  it('charts take names that are not strings (as from untyped JSON) without throwing', () => {
    const name = undefined as unknown as string;
    expect(lineChartSvg([{ name, points: [[0, 1]] }, { name: 5 as unknown as string, points: [[1, 2]] }], { title: name })).toContain('>5</text>');
    expect(barChartSvg([7 as unknown as string], [{ name, values: [1] }], { title: 't' })).toContain('>7</text>');
  });
});

describe('report: eval files of unexpected shape', () => {
  it("charts an mlagent-eval whose rows are null, or whose tasks and agents are not strings, and a bare null", () => {
    const dir = run({
      'eval-a.json': JSON.stringify({ format: 'mlagent-eval', rows: [null, 7, { task: 5, agent: null, avgGain: 0.1, bestGain: '0.2' }, { task: 'x', avgGain: 0.3, bestGain: 0.4 }] }),
      'eval-b.json': 'null',
      'eval-c.json': JSON.stringify({ format: 'mlagent-eval', rows: [null] }),
    });
    const html = renderReport(dir);
    expect(html).toContain('<title>5, null: 10.0%</title>');
    expect(html).toContain('<title>x, undefined: 30.0%</title>');
    expect(html).not.toContain('20.0%'); // a string is not a gain
    expect(html).toContain('<h2>Evaluation: eval-b.json</h2>\n<pre>null</pre>');
  });

  it('reads an eval file that starts with a BOM', () => {
    const html = renderReport(run({ 'eval.json': '\uFEFF' + JSON.stringify([{ task: 'bom', score: 1 }]) }));
    expect(html).toContain('<td>bom</td>');
    expect(html).not.toContain('Could not read');
  });

  it('refuses a result file past the size limit instead of parsing it, and caps dumps and tables', () => {
    const dir = run({ 'eval.json': JSON.stringify([{ a: 1 }]) });
    expect(() => readJsonFile(join(dir, 'eval.json'), 4)).toThrow(/more than the .* MiB a result file may have/);
    const big = renderReport(run({ 'eval-dump.json': JSON.stringify({ text: 'x'.repeat(300_000) }), 'eval-rows.json': JSON.stringify(Array.from({ length: 6000 }, (_, i) => ({ i }))) }));
    expect(big.length).toBeLessThan(400_000);
    expect(big).toContain('more characters)');
    expect(big).toContain('1000 more rows not shown.');
  });
});

describe('report: malformed metrics.jsonl', () => {
  it('renders the rest of a log whose last line was cut off, and says so', () => {
    const html = renderReport(run({ 'metrics.jsonl': lines({ step: 1, reward: 1 }, { step: 2, reward: 2 }) + '{"step":3,"rew' }));
    expect(html).toContain('2 metric records, steps 1–2.');
    expect(html).toMatch(/metrics\.jsonl: line 3, the last, is cut off/);
  });

  it('reads a BOM, CRLF and blank lines, and skips bad lines naming them instead of giving no page', () => {
    const text = '\uFEFF' + ['{"step":1,"reward":1}', '', '[1,2]', 'garbage', '{"step":"x","reward":9}', '{"step":2,"reward":"high","kl":0.5}', '{"step":3,"reward":3}', ''].join('\r\n');
    const html = renderReport(run({ 'metrics.jsonl': text }));
    expect(html).toContain('3 metric records, steps 1–3.');
    expect(html).toContain('metrics.jsonl: 3 lines left out');
    expect(html).toContain('line 3 is not a JSON object');
    expect(html).toContain('line 4 is not JSON');
    expect(html).toContain('line 5 has no integer &#39;step&#39;');
    expect(html).toContain('line 6: metric &#39;reward&#39; is &quot;high&quot;, not a number');
    expect(html).toContain('KL to the reference policy');
  });

  it('decodes UTF-8 split across read chunks, and shows invalid bytes as replacement characters', () => {
    const dir = tmp();
    const head = Buffer.from(JSON.stringify({ step: 1, task: 'x'.repeat(2 ** 20 - 200), reward: 1 }) + '\n');
    // Pads so that the 2-byte 'é' of the second line starts on the last byte of the first 1 MiB chunk.
    const pad = 2 ** 20 - 1 - head.length - Buffer.byteLength('{"step":2,"task":"');
    const second = Buffer.from(`{"step":2,"task":"${'y'.repeat(pad)}é","reward":2}\n`);
    const bad = Buffer.concat([Buffer.from('{"step":3,"task":"'), Buffer.from([0xff, 0xfe]), Buffer.from('","reward":3}\n')]);
    writeFileSync(join(dir, 'metrics.jsonl'), Buffer.concat([head, second, bad]));
    const tags = [...readMetricsForReport(join(dir, 'metrics.jsonl')).series.get('reward')!.keys()];
    expect(tags[1].endsWith('yé')).toBe(true);
    expect(tags[2]).toBe('\uFFFD\uFFFD');
  });

  it('keeps the later of two lines for one step, as readMetrics does', () => {
    const read = readMetricsForReport(join(run({ 'metrics.jsonl': lines({ step: 2, reward: 5 }, { step: 1, reward: 1 }, { step: 2, reward: 7 }) }), 'metrics.jsonl'));
    expect(read.series.get('reward')!.get('all')).toEqual([[1, 1], [2, 7]]);
  });

  it('skips a line too long to be a record without holding it, and stops at a point budget', () => {
    const html = renderReport(run({ 'metrics.jsonl': lines({ step: 1, reward: 1 }) + 'x'.repeat(1.5 * 2 ** 20) + '\n' + lines({ step: 2, reward: 2 }) }));
    expect(html).toContain('line 2 is longer than');
    expect(html).toContain('2 metric records');
    const read = readMetricsForReport(join(run({ 'metrics.jsonl': lines(...Array.from({ length: 50 }, (_, i) => ({ step: i, a: i, b: i }))) }), 'metrics.jsonl'), { maxPoints: 10 });
    expect(read.problems.join()).toContain('reading stopped at line 5, after 10 points');
    expect(read.lastStep).toBe(4);
  });

  it('names a metrics.jsonl that is a directory, and a run directory that is a file', () => {
    const dir = tmp();
    mkdirSync(join(dir, 'metrics.jsonl'));
    expect(() => renderReport(dir)).toThrow(/metrics\.jsonl holds no metric records \(could not be read: .*metrics\.jsonl is not a file\)/);
    writeFileSync(join(dir, 'eval.json'), '[{"a":1}]');
    expect(renderReport(dir)).toContain('metrics.jsonl: could not be read');
    expect(() => renderReport(join(dir, 'eval.json'))).toThrow(/eval\.json is not a directory; give the run directory/);
    expect(() => renderReport(run({ 'metrics.jsonl': '' }))).toThrow(/metrics\.jsonl holds no metric records, and .* has no eval\*\.json/);
  });

  it('survives a malformed SFT directory', () => {
    const sftDir = run({ 'format-probe.json': '{"before":5}', 'metrics.jsonl': '[1]\n{"step":1,"loss":2}\n' });
    const html = renderReport(run({ 'eval.json': '[{"a":1}]' }), { sftDir });
    expect(html).toContain('<td>format-error rate of sampled actions (? at ? collected states)</td><td>n/a</td><td>n/a</td>');
    expect(html).toContain('SFT metrics.jsonl: 1 line left out');
    expect(html).toContain('SFT: Training loss');
    expect(renderReport(run({ 'eval.json': '[{"a":1}]' }), { sftDir: run({ 'format-probe.json': '5' }) })).toContain('format-error rate');
  });
});

describe('report: numbers', () => {
  it('gives finite ticks that cover ranges near the limits of a double', () => {
    for (const [lo, hi] of [[-1e308, 1e308], [0, 1.7e308], [0, 5e-324], [1.7e308, 1.7e308], [-5, -5]]) {
      const ticks = niceTicks(lo, hi, 5);
      expect(ticks.every(Number.isFinite), `${lo}..${hi}: ${ticks}`).toBe(true);
      expect(ticks[0]).toBeLessThanOrEqual(lo);
      expect(ticks[ticks.length - 1]).toBeGreaterThanOrEqual(hi);
    }
    const line = lineChartSvg([{ name: 'a', points: [[-1e308, -1e308], [0, 5e-324], [1e308, 1e308], [1, -0], [2, Infinity]] }], { title: 't' });
    expect(svgNumbers(line)).not.toMatch(/NaN|Infinity/);
    const bars = barChartSvg(['a', 'b'], [{ name: 's', values: [-1e308, 1e308] }], { title: 't' });
    expect(svgNumbers(bars)).not.toMatch(/NaN|Infinity/);
  });

  it('draws a million points as a page of bounded size, keeping the extremes', () => {
    const points = Array.from({ length: 1_000_000 }, (_, i) => [i, i === 500_000 ? 100 : Math.sin(i / 1000)] as [number, number]);
    const svg = lineChartSvg([{ name: 'a', points }], { title: 't' });
    expect(svg.length).toBeLessThan(100_000);
    expect(svg).toMatch(/,28\.0/); // the spike reaches the top of the plot
  });

  it('groups many records in linear time', { timeout: 5000 }, () => {
    const records = Array.from({ length: 40_000 }, (_, i) => ({ step: i, time: 0, values: { reward: i } }));
    expect(metricSeries(records)[0][1][0].points).toHaveLength(40_000);
  });

  it('keeps room for the plot under a long bar-chart legend', () => {
    const svg = barChartSvg(['x'], Array.from({ length: 20 }, (_, i) => ({ name: `a${i}`, values: [i + 1] })), { title: 't' });
    const zero = +svg.match(/<line x1="58" x2="[\d.]+" y1="([\d.]+)" y2="[\d.]+" stroke="#444"\/>/)![1];
    expect(zero).toBeGreaterThan(28 + 14 * 20 + 100); // below the legend, with a plot above it
  });

  it('caps the lines per chart, the legend and the charts per page', () => {
    const svg = lineChartSvg(Array.from({ length: 150 }, (_, i) => ({ name: `t${i}`, points: [[0, i], [1, i]] as [number, number][] })), { title: 't' });
    expect(svg.match(/<polyline/g)).toHaveLength(100);
    expect(svg).toMatch(/… and \d+ more series \(50 not drawn\)/);
    expect(svg.match(/<text[^>]*>t\d+<\/text>/g)!.length).toBeLessThan(20);
    const html = renderReport(run({ 'metrics.jsonl': lines(Object.fromEntries([['step', 1], ...Array.from({ length: 250 }, (_, i) => [`m${i}`, i])])) }));
    expect(html.match(/<figure>/g)).toHaveLength(200);
    expect(html).toContain('50 more metrics not charted');
  });
});

describe('report: writing', () => {
  it('names a missing output directory', () => {
    const dir = run({ 'eval.json': '[{"a":1}]' });
    expect(() => writeReport(dir, join(dir, 'nope', 'r.html'))).toThrow(/cannot write .*r\.html: .*nope is not an existing directory/);
    // The run directory's own problem comes first: by default the page goes into it.
    expect(() => writeReport(join(dir, 'missing'))).toThrow(/run directory .*missing does not exist/);
    expect(() => writeReport(join(dir, 'eval.json'))).toThrow(/eval\.json is not a directory; give the run directory/);
  });

  it('CLI: reads a BOM eval file and an upper-case EVAL.JSON the way the page does', async () => {
    // The CLI source, imported by path (tsc's rootDir is this package); its writeReport call is mocked out.
    vi.doMock('@mlagent/rl', () => ({ writeReport: () => 'out.html' }));
    const cli = fileURLToPath(new URL('../../../apps/cli/src/commands/report.ts', import.meta.url));
    const { reportCommand } = (await import(/* @vite-ignore */ cli)) as { reportCommand: (argv: string[]) => Promise<void> };
    const stderr = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    const log = vi.spyOn(console, 'log').mockImplementation(() => undefined);
    try {
      await reportCommand([run({ 'eval.json': '\uFEFF[{"a":1}]', 'EVAL-X.JSON': '{bad' })]);
      const warned = stderr.mock.calls.map((c) => String(c[0])).join('');
      expect(warned).not.toContain('eval.json is not readable');
      expect(warned).toContain('EVAL-X.JSON is not readable JSON');
    } finally {
      stderr.mockRestore();
      log.mockRestore();
      vi.doUnmock('@mlagent/rl');
    }
  });
});
