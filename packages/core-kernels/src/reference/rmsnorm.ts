/** Float64 reference of RMSNorm over rows of length h: y = x / sqrt(mean(x²) + eps) * w. */
export function rmsnormRef(
  x: ArrayLike<number>,
  w: ArrayLike<number>,
  h: number,
  eps = 1e-6,
): { y: Float64Array; rstd: Float64Array } {
  const rows = x.length / h;
  const y = new Float64Array(x.length);
  const rstd = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let ss = 0;
    for (let j = 0; j < h; j++) ss += x[r * h + j] ** 2;
    const s = 1 / Math.sqrt(ss / h + eps);
    rstd[r] = s;
    for (let j = 0; j < h; j++) y[r * h + j] = x[r * h + j] * s * w[j];
  }
  return { y, rstd };
}

/**
 * Backward of `rmsnormRef`: with s = rstd of the row and g = dy∘w,
 * dx = s·g − x·s³/h·Σ(g∘x), dw = Σ_rows dy∘x·s.
 */
export function rmsnormBackwardRef(
  dy: ArrayLike<number>,
  x: ArrayLike<number>,
  w: ArrayLike<number>,
  h: number,
  eps = 1e-6,
): { dx: Float64Array; dw: Float64Array } {
  const rows = x.length / h;
  const { rstd } = rmsnormRef(x, w, h, eps);
  const dx = new Float64Array(x.length);
  const dw = new Float64Array(h);
  for (let r = 0; r < rows; r++) {
    const s = rstd[r];
    let dot = 0;
    for (let j = 0; j < h; j++) dot += dy[r * h + j] * w[j] * x[r * h + j];
    const c = (dot * s * s * s) / h;
    for (let j = 0; j < h; j++) {
      const i = r * h + j;
      dx[i] = s * dy[i] * w[j] - c * x[i];
      dw[j] += dy[i] * x[i] * s;
    }
  }
  return { dx, dw };
}
