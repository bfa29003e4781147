/** Line charts as inline SVG, with "nice" axis ticks and a legend; no dependencies, so reports stay self-contained. */

export interface Series {
  name: string;
  points: [number, number][];
}

export interface ChartOptions {
  title: string;
  width?: number;
  height?: number;
  xLabel?: string;
}

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];

export function lineChartSvg(series: Series[], options: ChartOptions): string {
  const width = options.width ?? 520;
  const height = options.height ?? 280;
  const m = { left: 58, right: 14, top: 28, bottom: 40 };
  const plotW = width - m.left - m.right;
  const plotH = height - m.top - m.bottom;
  const finite = series.map((s) => ({ ...s, points: s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y)) })).filter((s) => s.points.length > 0);
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="11">`,
    `<title>${escapeXml(options.title)}</title>`,
    `<text x="${width / 2}" y="16" text-anchor="middle" font-size="13" font-weight="bold">${escapeXml(options.title)}</text>`,
  ];
  if (finite.length === 0) {
    parts.push(`<text x="${width / 2}" y="${height / 2}" text-anchor="middle" fill="#888">no data</text></svg>`);
    return parts.join('');
  }
  const xs = finite.flatMap((s) => s.points.map((p) => p[0]));
  const ys = finite.flatMap((s) => s.points.map((p) => p[1]));
  const xTicks = niceTicks(Math.min(...xs), Math.max(...xs), 6);
  const yTicks = niceTicks(Math.min(...ys), Math.max(...ys), 5);
  const [x0, x1] = [xTicks[0], xTicks[xTicks.length - 1]];
  const [y0, y1] = [yTicks[0], yTicks[yTicks.length - 1]];
  const sx = (x: number) => m.left + ((x - x0) / (x1 - x0)) * plotW;
  const sy = (y: number) => m.top + plotH - ((y - y0) / (y1 - y0)) * plotH;

  for (const t of yTicks) {
    const y = sy(t).toFixed(1);
    parts.push(`<line x1="${m.left}" x2="${m.left + plotW}" y1="${y}" y2="${y}" stroke="#e5e5e5"/>`);
    parts.push(`<text x="${m.left - 6}" y="${y}" text-anchor="end" dominant-baseline="middle">${formatTick(t)}</text>`);
  }
  for (const t of xTicks) {
    const x = sx(t).toFixed(1);
    parts.push(`<line x1="${x}" x2="${x}" y1="${m.top + plotH}" y2="${m.top + plotH + 4}" stroke="#444"/>`);
    parts.push(`<text x="${x}" y="${m.top + plotH + 16}" text-anchor="middle">${formatTick(t)}</text>`);
  }
  parts.push(`<rect x="${m.left}" y="${m.top}" width="${plotW}" height="${plotH}" fill="none" stroke="#444"/>`);
  parts.push(`<text x="${m.left + plotW / 2}" y="${height - 6}" text-anchor="middle" fill="#444">${escapeXml(options.xLabel ?? 'step')}</text>`);

  finite.forEach((s, i) => {
    const color = COLORS[i % COLORS.length];
    const pts = [...s.points].sort((a, b) => a[0] - b[0]);
    const coords = pts.map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`);
    if (pts.length > 1) parts.push(`<polyline fill="none" stroke="${color}" stroke-width="1.6" points="${coords.join(' ')}"><title>${escapeXml(s.name)}</title></polyline>`);
    if (pts.length <= 30) for (const c of coords) parts.push(`<circle cx="${c.split(',')[0]}" cy="${c.split(',')[1]}" r="2.2" fill="${color}"/>`);
  });
  if (finite.length > 1 || finite[0].name !== '') {
    finite.forEach((s, i) => {
      const y = m.top + 8 + i * 14;
      parts.push(`<rect x="${m.left + 8}" y="${y - 5}" width="10" height="3" fill="${COLORS[i % COLORS.length]}"/>`);
      parts.push(`<text x="${m.left + 22}" y="${y}" dominant-baseline="middle">${escapeXml(s.name)}</text>`);
    });
  }
  parts.push('</svg>');
  return parts.join('');
}

export interface BarChartOptions {
  title: string;
  /** Label of the value axis. */
  yLabel?: string;
  /** How a value is written on its bar's tooltip and label (default: the number). */
  format?: (v: number) => string;
  height?: number;
}

/**
 * Grouped bars: one group per category along x, one bar per series in each, from a zero line (bars below it are
 * negative). Non-finite values leave their bar out. Width grows with the number of bars.
 */
export function barChartSvg(categories: readonly string[], series: readonly { name: string; values: readonly number[] }[], options: BarChartOptions): string {
  const bar = 16;
  const gap = 14;
  const m = { left: 58, right: 14, top: 28 + 14 * Math.max(1, series.length), bottom: 64 };
  const groupW = Math.max(1, series.length) * bar + gap;
  const width = Math.max(320, m.left + m.right + categories.length * groupW);
  const height = options.height ?? 300;
  const plotH = height - m.top - m.bottom;
  const format = options.format ?? ((v: number) => String(Number(v.toPrecision(4))));
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="11">`,
    `<title>${escapeXml(options.title)}</title>`,
    `<text x="${width / 2}" y="16" text-anchor="middle" font-size="13" font-weight="bold">${escapeXml(options.title)}</text>`,
  ];
  const values = series.flatMap((s) => s.values.filter((v) => Number.isFinite(v)));
  if (categories.length === 0 || values.length === 0) {
    parts.push(`<text x="${width / 2}" y="${height / 2}" text-anchor="middle" fill="#888">no data</text></svg>`);
    return parts.join('');
  }
  // The zero line is always in view.
  const ticks = niceTicks(Math.min(0, ...values), Math.max(0, ...values), 5);
  const [y0, y1] = [ticks[0], ticks[ticks.length - 1]];
  const sy = (y: number) => m.top + plotH - ((y - y0) / (y1 - y0)) * plotH;
  const plotW = width - m.left - m.right;
  for (const t of ticks) {
    const y = sy(t).toFixed(1);
    parts.push(`<line x1="${m.left}" x2="${m.left + plotW}" y1="${y}" y2="${y}" stroke="${t === 0 ? '#444' : '#e5e5e5'}"/>`);
    parts.push(`<text x="${m.left - 6}" y="${y}" text-anchor="end" dominant-baseline="middle">${formatTick(t)}</text>`);
  }
  if (options.yLabel) parts.push(`<text transform="translate(12 ${m.top + plotH / 2}) rotate(-90)" text-anchor="middle" fill="#444">${escapeXml(options.yLabel)}</text>`);
  categories.forEach((c, g) => {
    const gx = m.left + g * groupW + gap / 2;
    series.forEach((s, i) => {
      const v = s.values[g];
      if (!Number.isFinite(v)) return;
      const [top, bottom] = [sy(Math.max(v, 0)), sy(Math.min(v, 0))];
      parts.push(
        `<rect x="${(gx + i * bar).toFixed(1)}" y="${top.toFixed(1)}" width="${bar - 2}" height="${Math.max(0.5, bottom - top).toFixed(1)}" fill="${COLORS[i % COLORS.length]}"><title>${escapeXml(`${c}, ${s.name}: ${format(v)}`)}</title></rect>`,
      );
    });
    const cx = gx + (series.length * bar) / 2;
    parts.push(`<text transform="translate(${cx.toFixed(1)} ${m.top + plotH + 10}) rotate(30)" font-size="10">${escapeXml(c)}</text>`);
  });
  series.forEach((s, i) => {
    const y = 30 + i * 14;
    parts.push(`<rect x="${m.left + 8}" y="${y - 5}" width="10" height="8" fill="${COLORS[i % COLORS.length]}"/>`);
    parts.push(`<text x="${m.left + 22}" y="${y}" dominant-baseline="middle">${escapeXml(s.name)}</text>`);
  });
  parts.push('</svg>');
  return parts.join('');
}

/** Evenly spaced round ticks (1, 2 or 5 × 10^k apart) covering [lo, hi]; a constant range is widened. */
export function niceTicks(lo: number, hi: number, target: number): number[] {
  if (hi - lo <= Math.abs(hi) * 1e-12) {
    const pad = Math.abs(lo) > 0 ? Math.abs(lo) * 0.1 : 1;
    lo -= pad;
    hi += pad;
  }
  const raw = (hi - lo) / Math.max(1, target);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((f) => f * mag).find((s) => s >= raw) ?? 10 * mag;
  const start = Math.floor(lo / step) * step;
  const ticks: number[] = [];
  for (let t = start; t < hi + step * 0.5; t += step) ticks.push(Number(t.toPrecision(12)));
  if (ticks.length < 2) ticks.push(Number((start + step).toPrecision(12)));
  return ticks;
}

function formatTick(t: number): string {
  const a = Math.abs(t);
  if (a !== 0 && (a < 1e-3 || a >= 1e6)) return t.toExponential(1);
  return String(Number(t.toPrecision(6)));
}

export function escapeXml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&#39;');
}
