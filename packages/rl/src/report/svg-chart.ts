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

const MAX_LINES = 100;

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];

export function lineChartSvg(series: Series[], options: ChartOptions): string {
  const width = options.width ?? 520;
  const height = options.height ?? 280;
  const m = { left: 58, right: 14, top: 28, bottom: 40 };
  const plotW = width - m.left - m.right;
  const plotH = height - m.top - m.bottom;
  const nonEmpty = series.map((s) => ({ ...s, points: s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y)) })).filter((s) => s.points.length > 0);
  // Past a hundred overlapping lines a chart shows nothing more, and each line costs KBs of page.
  const finite = nonEmpty.slice(0, MAX_LINES);
  const undrawn = nonEmpty.length - finite.length;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="11">`,
    `<title>${escapeXml(options.title)}</title>`,
    `<text x="${width / 2}" y="16" text-anchor="middle" font-size="13" font-weight="bold">${escapeXml(options.title)}</text>`,
  ];
  if (finite.length === 0) {
    parts.push(`<text x="${width / 2}" y="${height / 2}" text-anchor="middle" fill="#888">no data</text></svg>`);
    return parts.join('');
  }
  // A loop, not Math.min(...xs): spreading a million points overflows the call stack.
  const [xLo, xHi, yLo, yHi] = finite.reduce(
    (b, s) => s.points.reduce((c, [x, y]) => [Math.min(c[0], x), Math.max(c[1], x), Math.min(c[2], y), Math.max(c[3], y)], b),
    [Infinity, -Infinity, Infinity, -Infinity],
  );
  const xTicks = niceTicks(xLo, xHi, 6);
  const yTicks = niceTicks(yLo, yHi, 5);
  const fx = fraction(xTicks[0], xTicks[xTicks.length - 1]);
  const fy = fraction(yTicks[0], yTicks[yTicks.length - 1]);
  const sx = (x: number) => m.left + fx(x) * plotW;
  const sy = (y: number) => m.top + plotH - fy(y) * plotH;

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
    const pts = decimate([...s.points].sort((a, b) => a[0] - b[0]), sx, plotW);
    const coords = pts.map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`);
    if (pts.length > 1) parts.push(`<polyline fill="none" stroke="${color}" stroke-width="1.6" points="${coords.join(' ')}"><title>${escapeXml(s.name)}</title></polyline>`);
    if (s.points.length <= 30) for (const c of coords) parts.push(`<circle cx="${c.split(',')[0]}" cy="${c.split(',')[1]}" r="2.2" fill="${color}"/>`);
  });
  if (finite.length > 1 || finite[0].name !== '') {
    // Entries past the plot's bottom would be clipped anyway; say how many are left out instead.
    const fits = Math.max(1, Math.floor((plotH - 8) / 14));
    const shown = finite.length > fits ? fits - 1 : finite.length;
    finite.slice(0, shown).forEach((s, i) => {
      const y = m.top + 8 + i * 14;
      parts.push(`<rect x="${m.left + 8}" y="${y - 5}" width="10" height="3" fill="${COLORS[i % COLORS.length]}"/>`);
      parts.push(`<text x="${m.left + 22}" y="${y}" dominant-baseline="middle">${escapeXml(s.name)}</text>`);
    });
    if (shown < nonEmpty.length) {
      const more = `… and ${nonEmpty.length - shown} more series${undrawn > 0 ? ` (${undrawn} not drawn)` : ''}`;
      parts.push(`<text x="${m.left + 22}" y="${m.top + 8 + shown * 14}" dominant-baseline="middle" fill="#666">${more}</text>`);
    }
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
  // The legend sits above the plot: with many series a fixed height left the plot no room (or a negative one).
  const plotH = Math.max(120, (options.height ?? 300) - m.top - m.bottom);
  const height = m.top + plotH + m.bottom;
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
  const fy = fraction(ticks[0], ticks[ticks.length - 1]);
  const sy = (y: number) => m.top + plotH - fy(y) * plotH;
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
  const [dataLo, dataHi] = [lo, hi];
  // Also widens ranges too small to divide into steps (denormals), which gave NaN ticks.
  if (hi - lo <= Math.max(Math.abs(hi), Math.abs(lo)) * 1e-12 || hi - lo < 1e-300) {
    const pad = Math.abs(lo) > 1e-300 ? Math.abs(lo) * 0.1 : 1;
    lo = Math.max(-Number.MAX_VALUE, lo - pad);
    hi = Math.min(Number.MAX_VALUE, hi + pad);
  }
  const raw = (hi - lo) / Math.max(1, target);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((f) => f * mag).find((s) => s >= raw) ?? 10 * mag;
  const start = Math.floor(lo / step) * step;
  const ticks: number[] = [];
  for (let t = start; t < hi + step * 0.5 && ticks.length <= 4 * target + 2; t += step) ticks.push(Number(t.toPrecision(12)));
  if (ticks.length < 2) ticks.push(Number((start + step).toPrecision(12)));
  // Near ±1.8e308 the arithmetic above overflows (NaN ticks, or ticks short of the data): ends and midpoint instead.
  const tol = step * 1e-6; // toPrecision may round an end tick a hair inside the data
  const ok = ticks.every(Number.isFinite) && ticks[0] <= dataLo + tol && ticks[ticks.length - 1] >= dataHi - tol;
  return ok ? ticks : [lo, lo / 2 + hi / 2, hi];
}

/** Where v lies between a and b, 0..1, without overflowing when b − a exceeds the largest double. */
function fraction(a: number, b: number): (v: number) => number {
  const span = b - a;
  if (Number.isFinite(span)) return (v) => (v - a) / span;
  return (v) => (v / 2 - a / 2) / (b / 2 - a / 2);
}

/** A run of consecutive points reduced to its first, lowest, highest and last, in their order. */
export function keepExtremes(part: [number, number][]): [number, number][] {
  let lo = part[0];
  let hi = part[0];
  for (const p of part) {
    if (p[1] < lo[1]) lo = p;
    if (p[1] > hi[1]) hi = p;
  }
  const keep = new Set([part[0], lo, hi, part[part.length - 1]]);
  return part.filter((p) => keep.has(p));
}

/**
 * At most about `buckets` points per series reach the page: per bucket of x pixels, the first, lowest, highest
 * and last point, so spikes stay visible. A million-step run otherwise wrote a polyline of tens of MB.
 */
function decimate(sorted: [number, number][], sx: (x: number) => number, buckets: number): [number, number][] {
  if (sorted.length <= 2 * buckets) return sorted;
  const out: [number, number][] = [];
  let bucket: [number, number][] = [];
  let key = NaN;
  const flush = () => {
    if (bucket.length === 0) return;
    out.push(...keepExtremes(bucket));
    bucket = [];
  };
  const width = sx(sorted[sorted.length - 1][0]) - sx(sorted[0][0]) || 1;
  for (const p of sorted) {
    const k = Math.floor(((sx(p[0]) - sx(sorted[0][0])) / width) * buckets);
    if (k !== key) flush();
    key = k;
    bucket.push(p);
  }
  flush();
  return out;
}

function formatTick(t: number): string {
  const a = Math.abs(t);
  if (a !== 0 && (a < 1e-3 || a >= 1e6)) return t.toExponential(1);
  return String(Number(t.toPrecision(6)));
}

export function escapeXml(s: string): string {
  // String(): a caller passing a number or undefined from hostile JSON must not crash the whole page.
  return String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&#39;');
}
