import type { QwenConfig } from '../config.js';

/**
 * A batch of variable-length sequences, right-padded to the longest: row b·T + t holds token t of sequence b.
 * Row b·T + t predicts token t + 1, so the per-token values of token t (t ≥ 1) live in row b·T + t − 1.
 */
export interface PaddedBatch {
  B: number;
  T: number;
  lengths: number[];
  /** [B·T] token ids, padding 0. */
  ids: Int32Array;
  /** [B·T] next-token targets: ids[b][t+1], or −1 at each sequence's last token and in the padding. */
  targets: Int32Array;
}

/** Validates and pads sequences (every id in [0, vocab), every sequence at least `minLength` long). */
export function padBatch(op: string, cfg: QwenConfig, seqs: readonly (readonly number[])[], minLength = 1): PaddedBatch {
  if (!Array.isArray(seqs) || seqs.length === 0) throw new Error(`${op}: needs at least one sequence`);
  const lengths = seqs.map((s, b) => {
    if (!Array.isArray(s) || s.length < minLength) {
      throw new Error(`${op}: sequence ${b} has ${Array.isArray(s) ? s.length : 'no'} tokens; at least ${minLength} needed`);
    }
    return s.length;
  });
  const B = seqs.length;
  const T = Math.max(...lengths);
  if (T > cfg.maxPositionEmbeddings) throw new Error(`${op}: sequence of ${T} tokens exceeds max_position_embeddings ${cfg.maxPositionEmbeddings}`);
  const ids = new Int32Array(B * T);
  const targets = new Int32Array(B * T).fill(-1);
  seqs.forEach((s, b) => {
    s.forEach((id: number, t: number) => {
      if (!Number.isInteger(id) || id < 0 || id >= cfg.vocabSize) {
        throw new Error(`${op}: token id ${id} at [${b}, ${t}] is outside the vocabulary [0, ${cfg.vocabSize})`);
      }
      ids[b * T + t] = id;
      if (t > 0) targets[b * T + t - 1] = id;
    });
  });
  return { B, T, lengths, ids, targets };
}

/**
 * Per-token host values [b][t] (t ≥ 1; index 0 ignored) to rows of the padded batch (row b·T + t − 1); zero
 * elsewhere. Checks the shape against the batch and that every value is finite.
 */
export function tokensToRows(op: string, name: string, batch: PaddedBatch, values: readonly ArrayLike<number>[]): Float32Array {
  if (!Array.isArray(values) || values.length !== batch.B) {
    throw new Error(`${op}: ${name} needs one array per sequence (${batch.B}), got ${Array.isArray(values) ? values.length : typeof values}`);
  }
  const rows = new Float32Array(batch.B * batch.T);
  values.forEach((v, b) => {
    const n = batch.lengths[b];
    if (!v || v.length !== n) throw new Error(`${op}: ${name}[${b}] has ${v?.length} values; sequence ${b} has ${n} tokens`);
    for (let t = 1; t < n; t++) {
      if (!Number.isFinite(v[t])) throw new Error(`${op}: ${name}[${b}][${t}] is ${v[t]}, not a finite number`);
      rows[b * batch.T + t - 1] = v[t];
    }
  });
  return rows;
}

/** Rows of the padded batch (row b·T + t − 1) back to per-token arrays [b][t], with 0 at t = 0. */
export function rowsToTokens(batch: PaddedBatch, rows: Float32Array): Float32Array[] {
  return batch.lengths.map((n, b) => {
    const out = new Float32Array(n);
    out.set(rows.subarray(b * batch.T, b * batch.T + n - 1), 1);
    return out;
  });
}
