/** Float64 reference of an embedding lookup: row ids[i] of table [V, h] for each id. */
export function embeddingRef(ids: ArrayLike<number>, table: ArrayLike<number>, h: number): Float64Array {
  const y = new Float64Array(ids.length * h);
  for (let i = 0; i < ids.length; i++) {
    for (let j = 0; j < h; j++) y[i * h + j] = table[ids[i] * h + j];
  }
  return y;
}

/** Backward of `embeddingRef`: dTable [V, h] with row v = Σ of dy rows of the tokens whose id is v. */
export function embeddingBackwardRef(ids: ArrayLike<number>, dy: ArrayLike<number>, vocab: number, h: number): Float64Array {
  const dt = new Float64Array(vocab * h);
  for (let i = 0; i < ids.length; i++) {
    for (let j = 0; j < h; j++) dt[ids[i] * h + j] += dy[i * h + j];
  }
  return dt;
}
