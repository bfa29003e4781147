import { SeededRng } from '@mlagent/core-kernels';

/** Seeded Fisher-Yates shuffle of 0..n-1. */
export function shuffledIndices(n: number, seed: number): number[] {
  const rng = new SeededRng(seed);
  const idx = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = rng.int(0, i);
    [idx[i], idx[j]] = [idx[j], idx[i]];
  }
  return idx;
}

/** Splits example indices into train and held-out eval (a seeded fraction; at least one of each when possible). */
export function trainEvalSplit(n: number, evalFraction: number, seed: number): { train: number[]; eval: number[] } {
  // A negative fraction made slice(0, -k) hand most of the data to eval; NaN held nothing out without a word.
  if (!Number.isInteger(n) || n < 0) throw new RangeError(`trainEvalSplit: n must be a non-negative integer, got ${n}`);
  if (!(evalFraction >= 0 && evalFraction < 1)) throw new RangeError(`trainEvalSplit: evalFraction must be a number in [0, 1), got ${evalFraction}`);
  const order = shuffledIndices(n, seed ^ 0x5eed);
  let nEval = Math.round(n * evalFraction);
  if (evalFraction > 0 && n >= 2) nEval = Math.min(n - 1, Math.max(1, nEval));
  return { eval: order.slice(0, nEval).sort((a, b) => a - b), train: order.slice(nEval) };
}

/**
 * The micro-batches of one epoch, a pure function of (seed, epoch), so a resumed run replays the same order.
 * With bucketing, examples are shuffled, cut into windows of `batchSize · 16`, sorted by length within each
 * window and batched, and the batches shuffled: similar lengths share a batch (less padding) while the order
 * stays random.
 */
export function epochBatches(items: number[], lengths: (i: number) => number, o: { batchSize: number; seed: number; epoch: number; bucketing: boolean }): number[][] {
  // A batch size of 0 (or below) never advanced the loop (a hang), and NaN gave no batches at all.
  if (!Number.isInteger(o.batchSize) || o.batchSize < 1) throw new RangeError(`epochBatches: batchSize must be an integer >= 1, got ${o.batchSize}`);
  const seed = (o.seed * 1000003 + o.epoch * 7919) >>> 0;
  const order = shuffledIndices(items.length, seed).map((k) => items[k]);
  const batches: number[][] = [];
  const window = o.bucketing ? o.batchSize * 16 : o.batchSize;
  for (let w = 0; w < order.length; w += window) {
    const chunk = order.slice(w, w + window);
    if (o.bucketing) chunk.sort((a, b) => lengths(a) - lengths(b));
    for (let b = 0; b < chunk.length; b += o.batchSize) batches.push(chunk.slice(b, b + o.batchSize));
  }
  if (!o.bucketing) return batches;
  return shuffledIndices(batches.length, seed ^ 0xb0c4).map((k) => batches[k]);
}
