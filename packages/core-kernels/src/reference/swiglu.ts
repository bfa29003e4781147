const sigmoid = (g: number) => 1 / (1 + Math.exp(-g));

/** Float64 reference of SwiGLU: y = silu(gate)·up = gate·σ(gate)·up, elementwise. */
export function swigluRef(gate: ArrayLike<number>, up: ArrayLike<number>): Float64Array {
  const y = new Float64Array(gate.length);
  for (let i = 0; i < y.length; i++) y[i] = gate[i] * sigmoid(gate[i]) * up[i];
  return y;
}

/** Backward of `swigluRef`: d silu(g)/dg = σ(g)·(1 + g·(1 − σ(g))). */
export function swigluBackwardRef(
  dy: ArrayLike<number>,
  gate: ArrayLike<number>,
  up: ArrayLike<number>,
): { dgate: Float64Array; dup: Float64Array } {
  const dgate = new Float64Array(gate.length);
  const dup = new Float64Array(gate.length);
  for (let i = 0; i < gate.length; i++) {
    const s = sigmoid(gate[i]);
    dgate[i] = dy[i] * up[i] * s * (1 + gate[i] * (1 - s));
    dup[i] = dy[i] * gate[i] * s;
  }
  return { dgate, dup };
}

/** Splits a fused [rows, 2I] gate_up into gate and up halves, and joins them back. */
export function splitGateUp(gu: ArrayLike<number>, inner: number): { gate: Float64Array; up: Float64Array } {
  const rows = gu.length / (2 * inner);
  const gate = new Float64Array(rows * inner);
  const up = new Float64Array(rows * inner);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < inner; c++) {
      gate[r * inner + c] = gu[r * 2 * inner + c];
      up[r * inner + c] = gu[r * 2 * inner + inner + c];
    }
  }
  return { gate, up };
}

export function joinGateUp(gate: ArrayLike<number>, up: ArrayLike<number>, inner: number): Float64Array {
  const rows = gate.length / inner;
  const gu = new Float64Array(2 * gate.length);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < inner; c++) {
      gu[r * 2 * inner + c] = gate[r * inner + c];
      gu[r * 2 * inner + inner + c] = up[r * inner + c];
    }
  }
  return gu;
}
