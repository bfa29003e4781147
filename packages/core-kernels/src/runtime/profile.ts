import type { DispatchTiming, Gpu } from './gpu.js';

/** GPU time of one op over a profiled stretch of work (see profileByOp). */
export interface OpProfile {
  op: string;
  /** Dispatches, copies and clears recorded under this op name. */
  calls: number;
  ms: number;
  /** ms / the total of every op. */
  share: number;
  /** The shapes whose calls took most of this op's time, and that time. */
  topShapes: string;
  topShapesMs: number;
  /** This op's time by shapes, largest first, at most PROFILE_SHAPES of them. */
  byShapes: { shapes: string; calls: number; ms: number }[];
}

/** Shapes kept per op in OpProfile.byShapes. */
export const PROFILE_SHAPES = 8;

/**
 * Sums GPU timings (`gpu.takeTimings()` after work recorded with `gpu.profiling = true`) by op name, largest first.
 * Each command ran in its own timestamped pass, so the sum is the GPU's busy time with no overlap between ops.
 */
export function profileByOp(timings: readonly DispatchTiming[]): OpProfile[] {
  const byOp = new Map<string, { calls: number; ms: number; shapes: Map<string, { calls: number; ms: number }> }>();
  let total = 0;
  for (const t of timings) {
    if (!Number.isFinite(t.ms) || t.ms < 0) throw new Error(`profileByOp: ${t.op} has a GPU time of ${t.ms} ms`);
    let e = byOp.get(t.op);
    if (!e) byOp.set(t.op, (e = { calls: 0, ms: 0, shapes: new Map() }));
    e.calls++;
    e.ms += t.ms;
    const sh = e.shapes.get(t.shapes) ?? { calls: 0, ms: 0 };
    e.shapes.set(t.shapes, { calls: sh.calls + 1, ms: sh.ms + t.ms });
    total += t.ms;
  }
  return [...byOp]
    .map(([op, e]) => {
      const byShapes = [...e.shapes].map(([shapes, v]) => ({ shapes, ...v })).sort((a, b) => b.ms - a.ms || a.shapes.localeCompare(b.shapes));
      const share = total > 0 ? e.ms / total : 0;
      return { op, calls: e.calls, ms: e.ms, share, topShapes: byShapes[0].shapes, topShapesMs: byShapes[0].ms, byShapes: byShapes.slice(0, PROFILE_SHAPES) };
    })
    .sort((a, b) => b.ms - a.ms || a.op.localeCompare(b.op));
}

/**
 * Runs `work` with every dispatch, copy and clear timed on the GPU, and returns where its GPU time went by op;
 * undefined on adapters without timestamp queries. Timings recorded before are dropped. The per-command
 * timestamps slow the work down, so time it separately.
 */
export async function profileWork(gpu: Gpu, work: () => Promise<unknown>): Promise<OpProfile[] | undefined> {
  if (!gpu.features.timestampQuery) return undefined;
  await gpu.takeTimings();
  gpu.profiling = true;
  try {
    await work();
  } finally {
    gpu.profiling = false;
  }
  return profileByOp(await gpu.takeTimings());
}

/** A markdown table of the `top` largest ops of a profile, the rest folded into one line. */
export function formatProfile(rows: readonly OpProfile[], top = 12): string {
  const total = rows.reduce((s, r) => s + r.ms, 0);
  const shown = rows.slice(0, top);
  const rest = rows.slice(top);
  const ms = (x: number) => (x >= 100 ? x.toFixed(0) : x.toPrecision(3));
  const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
  const lines = [
    `GPU time ${ms(total)} ms in ${rows.reduce((s, r) => s + r.calls, 0)} commands`,
    '',
    '| op | calls | ms | share | largest shapes (ms) |',
    '|---|---:|---:|---:|---|',
    ...shown.map((r) => `| ${r.op} | ${r.calls} | ${ms(r.ms)} | ${pct(r.share)} | ${r.topShapes.replaceAll('|', '/')} (${ms(r.topShapesMs)}) |`),
  ];
  if (rest.length > 0) {
    const restMs = rest.reduce((s, r) => s + r.ms, 0);
    lines.push(`| ${rest.length} other ops | ${rest.reduce((s, r) => s + r.calls, 0)} | ${ms(restMs)} | ${pct(total > 0 ? restMs / total : 0)} | |`);
  }
  return lines.join('\n');
}
