import type { Tensor } from '../runtime/tensor.js';
import { rmsnormBackwardRef, rmsnormRef } from '../reference/rmsnorm.js';
import { ropeRef } from '../reference/rope.js';
import { swigluBackwardRef, swigluRef } from '../reference/swiglu.js';
import { CHECK_TOL, ErrorMeter, readAll, readRows, spread, type BenchCheck } from './check.js';

/**
 * Sampled float64 checks of the row-wise ops benchmarks (see check.ts), through the package's references on the
 * sampled rows. An output row is compared against its reference scaled by the reference row's RMS, so f16 outputs
 * (2^-11 relative) stay well inside the bound and a wrong element of ordinary size does not.
 */

/** Sampled rows of a [rows, h] view of x. */
const rowsOf = (x: Tensor, h: number) => x.reshape([x.size / h, h]);

/** y and rstd of rmsnorm (eps 1e-6) at sampled rows; rstd relatively. */
export async function checkRmsnorm(x: Tensor, w: Tensor, y: Tensor, rstd: Tensor, h: number): Promise<BenchCheck> {
  const meter = new ErrorMeter();
  const wh = await readAll(w);
  const rs = await readAll(rstd);
  for (const r of spread(x.size / h, 8)) {
    const ref = rmsnormRef(await readRows(rowsOf(x, h), r), wh, h);
    meter.addRow(await readRows(rowsOf(y, h), r), ref.y);
    meter.add(rs[r], ref.rstd[0], ref.rstd[0]);
  }
  return meter.result(CHECK_TOL);
}

/** dx at sampled rows, and dw (a sum over all rows, against the L2 norm of its terms) at sampled columns. */
export async function checkRmsnormBackward(dy: Tensor, x: Tensor, w: Tensor, dx: Tensor, dw: Tensor, h: number): Promise<BenchCheck> {
  const meter = new ErrorMeter();
  const wh = await readAll(w);
  const [xh, dyh, dxh, dwh] = await Promise.all([x, dy, dx, dw].map(readAll));
  const rows = x.size / h;
  for (const r of spread(rows, 8)) {
    const ref = rmsnormBackwardRef(dyh.subarray(r * h, (r + 1) * h), xh.subarray(r * h, (r + 1) * h), wh, h);
    meter.addRow(dxh.subarray(r * h, (r + 1) * h), ref.dx);
  }
  const { rstd } = rmsnormRef(xh, wh, h);
  for (const j of spread(h, 16)) {
    let sum = 0;
    let sq = 0;
    for (let r = 0; r < rows; r++) {
      const t = dyh[r * h + j] * xh[r * h + j] * rstd[r];
      sum += t;
      sq += t * t;
    }
    meter.addSum(dwh[j], sum, Math.sqrt(sq));
  }
  return meter.result(CHECK_TOL);
}

/** rope over x [B, T, H, D] at positions [B, T], at sampled tokens (all heads of a token). */
export async function checkRope(x: Tensor, y: Tensor, positions: Tensor, theta: number): Promise<BenchCheck> {
  const [, , H, D] = x.shape;
  const tokens = x.size / (H * D);
  const pos = await readAll(positions);
  const meter = new ErrorMeter();
  for (const t of spread(tokens, 8)) {
    const ref = ropeRef(await readRows(rowsOf(x, H * D), t), [pos[t]], H, D, theta);
    meter.addRow(await readRows(rowsOf(y, H * D), t), ref);
  }
  return meter.result(CHECK_TOL);
}

/** swiglu's y, or its backward's dgate and dup, at sampled rows of [rows, inner]. */
export async function checkSwiglu(g: Tensor, u: Tensor, inner: number, out: { y: Tensor } | { dy: Tensor; dgate: Tensor; dup: Tensor }): Promise<BenchCheck> {
  const meter = new ErrorMeter();
  for (const r of spread(g.size / inner, 4)) {
    const [gr, ur] = await Promise.all([g, u].map((t) => readRows(rowsOf(t, inner), r)));
    if ('y' in out) {
      meter.addRow(await readRows(rowsOf(out.y, inner), r), swigluRef(gr, ur));
    } else {
      const ref = swigluBackwardRef(await readRows(rowsOf(out.dy, inner), r), gr, ur);
      meter.addRow(await readRows(rowsOf(out.dgate, inner), r), ref.dgate);
      meter.addRow(await readRows(rowsOf(out.dup, inner), r), ref.dup);
    }
  }
  return meter.result(CHECK_TOL);
}

/** The embedding's rows at sampled tokens: row ids[t] of the table, exactly as stored. */
export async function checkEmbedding(ids: Tensor, table: Tensor, y: Tensor): Promise<BenchCheck> {
  const idh = (await ids.read()) as Int32Array;
  const h = table.shape[1];
  const meter = new ErrorMeter();
  for (const t of spread(idh.length, 8)) meter.addRow(await readRows(rowsOf(y, h), t), await readRows(table, idh[t]));
  return meter.result(CHECK_TOL);
}

/**
 * The embedding backward's dTable [V, h] at the rows of sampled tokens' ids (each the sum of the dy rows of the
 * tokens with that id) and at one id no token has (zeros).
 */
export async function checkEmbeddingBackward(ids: Tensor, dy: Tensor, dTable: Tensor): Promise<BenchCheck> {
  const idh = (await ids.read()) as Int32Array;
  const [V, h] = dTable.shape;
  const dyh = await readAll(dy);
  const meter = new ErrorMeter();
  const present = new Set(idh);
  let absent = 0;
  while (present.has(absent) && absent < V - 1) absent++;
  const rows = [...new Set(spread(idh.length, 8).map((t) => idh[t]))];
  if (!present.has(absent)) rows.push(absent);
  for (const v of rows) {
    const ref = new Float64Array(h);
    idh.forEach((id, t) => {
      if (id === v) for (let j = 0; j < h; j++) ref[j] += dyh[t * h + j];
    });
    // A row of zeros compares absolutely.
    const got = await readRows(dTable, v);
    if (present.has(v)) meter.addRow(got, ref);
    else for (let j = 0; j < h; j++) meter.add(got[j], 0);
  }
  return meter.result(CHECK_TOL);
}

/** y = a + b, flattened: slices of 4096 at a few places. */
export async function checkAdd(a: Tensor, b: Tensor, y: Tensor): Promise<BenchCheck> {
  const meter = new ErrorMeter();
  const len = Math.min(4096, a.size);
  for (const at of spread(a.size - len + 1, 4)) {
    const [ah, bh, yh] = await Promise.all([a, b, y].map((t) => readRows(t.reshape([t.size]), at, len)));
    meter.addRow(yh, Float64Array.from(ah, (v, i) => v + bh[i]));
  }
  return meter.result(CHECK_TOL);
}
