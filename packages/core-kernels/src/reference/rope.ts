/**
 * Float64 reference of rotate-half RoPE (HF apply_rotary_pos_emb) over x [tokens, H, D] with one position per
 * token: y[i] = x[i]·cos − x[i+D/2]·sin, y[i+D/2] = x[i+D/2]·cos + x[i]·sin, angle = pos·theta^(−2i/D), or
 * pos·invFreq[i] with a scaling, whose attention factor multiplies cos and sin.
 * `inverse` rotates by −angle, which is the backward (the rotation is orthogonal; a factor m stays m).
 */
export function ropeRef(
  x: ArrayLike<number>,
  positions: ArrayLike<number>,
  h: number,
  d: number,
  theta: number,
  inverse = false,
  scaling?: { invFreq: ArrayLike<number>; attentionFactor?: number },
): Float64Array {
  const half = d / 2;
  const m = scaling?.attentionFactor ?? 1;
  const y = new Float64Array(x.length);
  for (let tok = 0; tok < positions.length; tok++) {
    for (let i = 0; i < half; i++) {
      const angle = positions[tok] * (scaling ? scaling.invFreq[i] : theta ** ((-2 * i) / d));
      const c = m * Math.cos(angle);
      const s = m * (inverse ? -Math.sin(angle) : Math.sin(angle));
      for (let head = 0; head < h; head++) {
        const o = (tok * h + head) * d + i;
        y[o] = x[o] * c - x[o + half] * s;
        y[o + half] = x[o + half] * c + x[o] * s;
      }
    }
  }
  return y;
}

/** Backward of `ropeRef`: dx is dy rotated by −angle. */
export function ropeBackwardRef(
  dy: ArrayLike<number>,
  positions: ArrayLike<number>,
  h: number,
  d: number,
  theta: number,
  scaling?: { invFreq: ArrayLike<number>; attentionFactor?: number },
): Float64Array {
  return ropeRef(dy, positions, h, d, theta, true, scaling);
}
