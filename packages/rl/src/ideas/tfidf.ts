// TF-IDF embedding of short texts over word unigrams and bigrams.
//
// Why TF-IDF and not a neural embedding: it runs offline and in milliseconds with no model to load, it is fully
// deterministic (the same texts always give the same vectors, so the diverse-idea selection is reproducible from
// a seed), and for idea descriptions, which differ mostly in their technical terms ("gradient boosting", "char
// n-grams", "dropout"), shared words are exactly the signal we want. Template words shared by every candidate
// get a low IDF and so barely count.

/** A sparse, L2-normalised vector: term index -> weight. */
export type SparseVector = Map<number, number>;

export interface TfIdfModel {
  /** The vocabulary: term -> index. */
  vocabulary: Map<string, number>;
  /** Inverse document frequency per term index. */
  idf: Float64Array;
  /** One normalised vector per input text, in input order. */
  vectors: SparseVector[];
}

const STOP_WORDS = new Set(
  'a an and are as at be by for from in into is it its of on or the then this to with'.split(' '),
);

/** Lower-cased word tokens (letters, digits, and inner dots/dashes as in "0.1" or "k-fold"), stop words removed. */
export function tokenize(text: string): string[] {
  const words = text.toLowerCase().match(/[a-z0-9]+(?:[.\-_][a-z0-9]+)*/g) ?? [];
  return words.filter((w) => !STOP_WORDS.has(w));
}

/** Unigrams and bigrams (bigrams joined by a space) of a text. */
export function terms(text: string): string[] {
  const t = tokenize(text);
  const out = [...t];
  for (let i = 0; i + 1 < t.length; i++) out.push(`${t[i]} ${t[i + 1]}`);
  return out;
}

/**
 * Fits TF-IDF on `texts` and embeds them: tf = raw count, idf = ln((1 + n) / (1 + df)) + 1 (smoothed, as in
 * scikit-learn), each vector L2-normalised. An empty text gives an empty (all-zero) vector.
 */
export function tfidf(texts: readonly string[]): TfIdfModel {
  const vocabulary = new Map<string, number>();
  const counts: Map<number, number>[] = [];
  const df: number[] = [];
  for (const text of texts) {
    const c = new Map<number, number>();
    for (const term of terms(text)) {
      let id = vocabulary.get(term);
      if (id === undefined) {
        id = vocabulary.size;
        vocabulary.set(term, id);
        df.push(0);
      }
      c.set(id, (c.get(id) ?? 0) + 1);
    }
    for (const id of c.keys()) df[id]++;
    counts.push(c);
  }
  const n = texts.length;
  const idf = new Float64Array(df.length);
  for (let i = 0; i < df.length; i++) idf[i] = Math.log((1 + n) / (1 + df[i])) + 1;
  const vectors = counts.map((c) => {
    const v: SparseVector = new Map();
    let norm = 0;
    for (const [id, tf] of c) {
      const w = tf * idf[id];
      v.set(id, w);
      norm += w * w;
    }
    norm = Math.sqrt(norm);
    if (norm > 0) for (const [id, w] of v) v.set(id, w / norm);
    return v;
  });
  return { vocabulary, idf, vectors };
}

/** Cosine similarity of two L2-normalised sparse vectors (0 when either is empty). */
export function cosineSimilarity(a: SparseVector, b: SparseVector): number {
  const [small, large] = a.size <= b.size ? [a, b] : [b, a];
  let dot = 0;
  for (const [id, w] of small) {
    const u = large.get(id);
    if (u !== undefined) dot += w * u;
  }
  return dot;
}

/** Cosine distance 1 - cos, in [0, 1] for non-negative vectors such as TF-IDF's. */
export function cosineDistance(a: SparseVector, b: SparseVector): number {
  return Math.max(0, 1 - cosineSimilarity(a, b));
}
